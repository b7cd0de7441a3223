//! The `Inspect` port: read-only views for operators (`marquee-admin`), kept beside the
//! [`Store`](super::Store) rather than in it: the functions never need them.
//!
//! Every view reads counters or keyed items, never a scan: the totals are counters of their
//! own (`STATS#<shard>`/`COUNT`), the top artists come from the top of the `by-count` index's
//! 16 lists, and a user's connections from the user's list (`USER#<sub>`/`CONNS`).

use std::future::Future;

use crate::domain::{ArtistKey, ConnectionId, EpochSeconds, UserId};
use crate::store::StoreError;

/// The table's totals, from their counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Totals {
    /// Connection records: every connection `$connect` admitted and no `$disconnect`, 410
    /// cleanup or close has removed yet (one whose token lapsed is counted until then).
    pub connections: u64,
    /// Subscriptions of those connections.
    pub subscriptions: u64,
}

/// An artist and its subscriber count (the presence counters, summed over the shards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtistCount {
    /// The artist's key.
    pub key: ArtistKey,
    /// The name it was first subscribed to by (the key when none is kept).
    pub name: String,
    /// Its subscriptions.
    pub subscribers: u64,
}

/// A connection on a user's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The connection.
    pub id: ConnectionId,
    /// When its record lapses (the list's copy of its `expires_at`).
    pub expires_at: EpochSeconds,
}

/// Read-only views of the table for operators.
pub trait Inspect: Send + Sync {
    /// The totals of connection records and subscriptions.
    fn totals(&self) -> impl Future<Output = Result<Totals, StoreError>> + Send;

    /// The `limit` artists with the most subscribers (more than none), most first, ties by
    /// key; exact counts.
    fn top_artists(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ArtistCount>, StoreError>> + Send;

    /// The connections on `user`'s list, by id (lapsed ones included, until pruned).
    fn user_connections(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<Vec<Listed>, StoreError>> + Send;
}

/// Orders artist counts most first, ties by key.
pub(crate) fn rank(counts: &mut [ArtistCount]) {
    counts.sort_by(|a, b| b.subscribers.cmp(&a.subscribers).then(a.key.cmp(&b.key)));
}
