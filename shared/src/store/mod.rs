//! The `Store` port: connections, subscriptions and processed events, and its adapters.
//!
//! - [`dynamo::DynamoStore`]: the production adapter (one DynamoDB table, see [`crate::schema`]).
//! - [`memory::MemoryStore`]: in memory, for fast tests and the local gateway's default.
//!
//! Both pass one contract test suite (in the `marquee-tests` crate) so they cannot drift.
//! The store holds no policy: the cap, scope and idempotency rules live in [`crate::routes`];
//! the store offers the optimistic-concurrency primitives they need.

use std::future::Future;

use crate::domain::{Artist, ArtistKey, Connection, ConnectionId, EpochSeconds, EventId};

pub mod dynamo;
pub mod memory;

/// A connection with its live subscriptions, read in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionState {
    /// The connection record.
    pub connection: Connection,
    /// Keys of its subscriptions, sorted.
    pub subscriptions: Vec<ArtistKey>,
    /// The record's subscription counter: the version that
    /// [`Store::add_subscriptions`] and [`Store::remove_subscriptions`] check.
    pub version: u32,
}

/// Whether an optimistic write applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written.
    Yes,
    /// The connection changed (or vanished) since it was read: read again and retry.
    Conflict,
}

/// One page of an artist's subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriberPage {
    /// Connections subscribed to the artist whose records are live (may be empty mid-scan).
    pub connections: Vec<ConnectionId>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<Cursor>,
}

/// Where a scan of an artist's subscribers resumes: after this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub ConnectionId);

/// Outcome of claiming an event id for processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First time this id is seen (within the de-duplication window): process it.
    New,
    /// Already processed or being processed: deliver nothing.
    Duplicate,
}

/// A storage failure: the adapter's error with its source chain kept.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing service failed or could not be reached.
    #[error("store request {operation} failed")]
    Backend {
        /// Which request failed.
        operation: &'static str,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backing service kept leaving part of a batch unprocessed (throttling).
    #[error("store request {operation} left {count} items unprocessed after retries")]
    Unprocessed {
        /// Which request.
        operation: &'static str,
        /// How many items were left.
        count: usize,
    },
    /// An item in the table did not have the shape this code writes.
    #[error("corrupt item {pk}/{sk}: {reason}")]
    Corrupt {
        /// Partition key of the item.
        pk: String,
        /// Sort key of the item.
        sk: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn backend(
        operation: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            operation,
            source: Box::new(source),
        }
    }
}

/// Connections, subscriptions and processed events.
///
/// Every read filters records whose `expires_at` is not after `now`: TTL deletion is lazy.
pub trait Store: Send + Sync {
    /// Writes (or overwrites) a connection record with no subscriptions.
    fn put_connection(
        &self,
        connection: &Connection,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads a live connection and its subscriptions; `None` when there is no live record.
    fn connection_state(
        &self,
        id: &ConnectionId,
        now: EpochSeconds,
    ) -> impl Future<Output = Result<Option<ConnectionState>, StoreError>> + Send;

    /// Adds subscriptions for `artists` (none of which the connection has) and sets the
    /// connection's version to `version + artists.len()`, all or nothing, if the version is
    /// still `version`. Subscriptions expire with the connection.
    fn add_subscriptions(
        &self,
        connection: &Connection,
        version: u32,
        artists: &[Artist],
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Removes the subscriptions for `keys` (all of which the connection has) and sets the
    /// version to `version - keys.len()`, all or nothing, if the version is still `version`.
    fn remove_subscriptions(
        &self,
        id: &ConnectionId,
        version: u32,
        keys: &[ArtistKey],
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Deletes a connection record and all its subscriptions; returns how many items went.
    /// Deleting an unknown connection is not an error.
    fn delete_connection(
        &self,
        id: &ConnectionId,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// One page (at most `limit` records examined) of the live subscribers of `artist`,
    /// in connection-id order, starting after `after`.
    fn subscribers(
        &self,
        artist: &ArtistKey,
        now: EpochSeconds,
        after: Option<&Cursor>,
        limit: u32,
    ) -> impl Future<Output = Result<SubscriberPage, StoreError>> + Send;

    /// Claims an event id until `expires_at`; a second claim within that window is a
    /// [`Claim::Duplicate`].
    fn claim_event(
        &self,
        id: &EventId,
        now: EpochSeconds,
        expires_at: EpochSeconds,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Gives a claim back, so a retry of the event can process it.
    fn release_event(&self, id: &EventId) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A shared store is a store: one in-memory store can back every route of the local gateway.
impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    fn put_connection(
        &self,
        connection: &Connection,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put_connection(connection)
    }

    fn connection_state(
        &self,
        id: &ConnectionId,
        now: EpochSeconds,
    ) -> impl Future<Output = Result<Option<ConnectionState>, StoreError>> + Send {
        (**self).connection_state(id, now)
    }

    fn add_subscriptions(
        &self,
        connection: &Connection,
        version: u32,
        artists: &[Artist],
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send {
        (**self).add_subscriptions(connection, version, artists)
    }

    fn remove_subscriptions(
        &self,
        id: &ConnectionId,
        version: u32,
        keys: &[ArtistKey],
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send {
        (**self).remove_subscriptions(id, version, keys)
    }

    fn delete_connection(
        &self,
        id: &ConnectionId,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        (**self).delete_connection(id)
    }

    fn subscribers(
        &self,
        artist: &ArtistKey,
        now: EpochSeconds,
        after: Option<&Cursor>,
        limit: u32,
    ) -> impl Future<Output = Result<SubscriberPage, StoreError>> + Send {
        (**self).subscribers(artist, now, after, limit)
    }

    fn claim_event(
        &self,
        id: &EventId,
        now: EpochSeconds,
        expires_at: EpochSeconds,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        (**self).claim_event(id, now, expires_at)
    }

    fn release_event(&self, id: &EventId) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).release_event(id)
    }
}
