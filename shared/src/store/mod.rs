//! The `Store` port: connections, subscriptions, processed events and each artist's
//! notification history, and its adapters.
//!
//! - [`dynamo::DynamoStore`]: the production adapter (one DynamoDB table, see [`crate::schema`]).
//! - [`memory::MemoryStore`]: in memory, for fast tests and the local gateway's default.
//!
//! Both pass one contract test suite (in the `marquee-tests` crate) so they cannot drift.
//! The store holds no policy: the cap, scope and idempotency rules live in [`crate::routes`];
//! the store offers the optimistic-concurrency primitives they need.

use std::collections::BTreeMap;
use std::future::Future;

use crate::domain::{
    Artist, ArtistKey, Connection, ConnectionId, EpochSeconds, EventId, Shard, UserId,
};

pub mod dynamo;
pub mod inspect;
pub mod memory;
pub mod presence;
pub mod reports;

pub use presence::{Notice, Pacing, Told};
pub use reports::Reports;

/// A connection with its live subscriptions, read in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionState {
    /// The connection record.
    pub connection: Connection,
    /// Keys of its subscriptions, sorted.
    pub subscriptions: Vec<ArtistKey>,
    /// The record's revision, bumped by every subscription change: the version that
    /// [`ConnectionStore::add_subscriptions`] and [`ConnectionStore::remove_subscriptions`] check.
    pub version: u32,
    /// For each subscription a catch-up went through, the `seq` up to which every notification
    /// (or the gap standing for it) was replayed to this connection
    /// ([`ConnectionStore::mark_replayed`]). It goes with the subscription: an unsubscribe removes it.
    pub replayed: BTreeMap<ArtistKey, u64>,
}

/// Whether an optimistic write applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written.
    Yes,
    /// The connection changed (or vanished) since it was read: read again and retry.
    Conflict,
}

/// One page of one shard of an artist's subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriberPage {
    /// Connections subscribed to the artist whose records are live (may be empty mid-scan).
    pub connections: Vec<ConnectionId>,
    /// Connections whose records lapsed less than [`LAPSED_WINDOW_SECONDS`] ago (their token
    /// expired): they must get nothing more, and may still be open, so they should be closed.
    pub lapsed: Vec<ConnectionId>,
    /// Where the next page starts (after this connection); `None` after the last page.
    pub next: Option<ConnectionId>,
}

/// How long after its records lapse a connection may still be open: API Gateway ends every
/// connection 2 hours after it opened, and a record never outlives that (it lapses earlier
/// when the token expires first).
pub const LAPSED_WINDOW_SECONDS: i64 = 2 * 60 * 60;

/// How long an artist's sequence counter is kept after its last notification. An artist
/// silent for longer starts again at 1 (a client's `since` from before then is ahead of it,
/// and gets nothing replayed).
pub const SEQUENCE_KEPT_SECONDS: i64 = 400 * 24 * 60 * 60;

/// What deleting a connection removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Removed {
    /// Items deleted (its record and its subscriptions).
    pub items: usize,
    /// Who it was (when its record was still there).
    pub user: Option<UserId>,
    /// The artists it was subscribed to, as it named them (whose rooms it left).
    pub artists: Vec<Artist>,
}

/// What `$connect` asks of a user's connections ([`ConnectionStore::admit_connection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission<'a> {
    /// Most live connections the user may hold (`MAX_CONNECTIONS_PER_USER`).
    pub cap: u32,
    /// A live connection of the same user that the new one replaces (make before break): the
    /// new one may take the user one over the cap while both are open, and only one such
    /// overlap is open at a time.
    pub replaces: Option<&'a ConnectionId>,
    /// The token's `iat`: refused when the user was revoked at or after it (or when it has
    /// none and the user was revoked).
    pub issued_at: Option<EpochSeconds>,
    /// Until when the user's connections item is kept (its TTL): past the expiry of any
    /// connection it can list, so that a revocation still finds a lapsed one that may be open.
    pub keep_until: EpochSeconds,
}

/// The answer to an [`Admission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Counted in: the connection is listed under its user.
    Yes,
    /// The user holds the cap already (one over, with a replacement); nothing was written.
    Full,
    /// The token was issued at or before the user's revocation; nothing was written.
    Revoked,
}

/// Whether a token issued at `issued_at` is refused by a revocation at `revoked_at`: issued
/// at or before it (in whole seconds, so a token of the revocation's own second is refused),
/// or with no `iat` to tell.
#[must_use]
pub fn is_revoked(issued_at: Option<EpochSeconds>, revoked_at: Option<EpochSeconds>) -> bool {
    match (issued_at, revoked_at) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(issued), Some(revoked)) => issued <= revoked,
    }
}

/// A token bucket: `per_second` tokens added each second, at most `burst` kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Refill rate.
    pub per_second: u32,
    /// Bucket size.
    pub burst: u32,
}

/// The tokens in a bucket that held `tokens` at `at_millis`, refilled up to `now_millis`
/// (never above the burst; a clock that went back refills nothing).
#[must_use]
pub fn refill(tokens: f64, at_millis: i64, now_millis: i64, limit: RateLimit) -> f64 {
    let elapsed = now_millis.saturating_sub(at_millis).max(0);
    #[allow(clippy::cast_precision_loss)] // milliseconds fit f64 exactly far past any clock
    let added = elapsed as f64 * f64::from(limit.per_second) / 1000.0;
    (tokens + added).min(f64::from(limit.burst))
}

/// A token bucket a [`RoomStore::spend`] draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket<'a> {
    /// A connection's room messages, one token each (`PUBLISH_RATE_PER_SECOND`), on its
    /// record.
    Messages(&'a ConnectionId),
    /// What a connection's frames make the server post: room messages by their room's size,
    /// catch-up replays and presence notices (`CONNECTION_POSTS_PER_SECOND`), on its record.
    Posts(&'a ConnectionId),
    /// What messages to an artist's room post, by the room's size (`ROOM_POSTS_PER_SECOND`),
    /// on an item of the artist's.
    Room(&'a ArtistKey),
}

/// What a [`RoomStore::spend`] takes from a bucket.
///
/// A bucket may go into debt: a cost above what it holds is taken whole when the bucket holds
/// what [`Spend::need`] asks (for a room message, its cost or a full bucket), and the next
/// spend waits until the refill has paid the debt. So a message to a room larger than the
/// burst goes out, and the room then waits as long as its posts take at the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spend {
    /// Tokens the bucket must hold for the spend to go ahead (`None`: it always does).
    pub need: Option<u32>,
    /// Tokens taken (negative: given back).
    pub cost: i64,
}

impl Spend {
    /// One token, when the bucket holds one.
    #[must_use]
    pub fn one() -> Self {
        Self {
            need: Some(1),
            cost: 1,
        }
    }

    /// `cost` tokens, when the bucket holds them, or is full when `cost` is above its burst.
    #[must_use]
    pub fn upfront(cost: u64, limit: RateLimit) -> Self {
        Self {
            need: Some(u32::try_from(cost).unwrap_or(u32::MAX).min(limit.burst)),
            cost: i64::try_from(cost).unwrap_or(i64::MAX),
        }
    }

    /// Nothing, when the bucket is not in debt: a check before an action whose cost is
    /// known only after it ([`Spend::after`]). Reads, never writes.
    #[must_use]
    pub fn check() -> Self {
        Self {
            need: Some(0),
            cost: 0,
        }
    }

    /// `cost` tokens, whatever the bucket holds: the cost of an action that has been done.
    #[must_use]
    pub fn after(cost: u64) -> Self {
        Self {
            need: None,
            cost: i64::try_from(cost).unwrap_or(i64::MAX),
        }
    }

    /// `cost` tokens given back, whatever the bucket holds (an upfront spend whose action did
    /// not happen).
    #[must_use]
    pub fn refund(cost: u64) -> Self {
        Self {
            need: None,
            cost: i64::try_from(cost).map_or(i64::MIN, |c| -c),
        }
    }

    /// What a bucket that held `tokens` (refilled) holds after this spend, or `None` when it
    /// does not go ahead.
    #[must_use]
    pub fn from(self, tokens: f64) -> Option<f64> {
        if self.need.is_some_and(|need| tokens < f64::from(need)) {
            return None;
        }
        #[allow(clippy::cast_precision_loss)] // a cost never nears 2^53 posts
        Some(tokens - self.cost as f64)
    }
}

/// How much history each artist keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Entries expire this long after they were written.
    pub window_seconds: i64,
    /// At most this many entries per artist: writing one deletes the entry this many places
    /// back.
    pub max_per_artist: u32,
}

/// A notification to add to its artist's history.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    /// The event's id.
    pub event: &'a EventId,
    /// The artist, as the event named it.
    pub artist: &'a Artist,
    /// The event's `detail`, as JSON text.
    pub detail: &'a str,
    /// The event's time (RFC 3339).
    pub time: &'a str,
}

/// A notification kept in its artist's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its place in the artist's sequence.
    pub seq: u64,
    /// The event's id.
    pub event: EventId,
    /// The artist, as the event named it.
    pub artist: String,
    /// The event's `detail`, as JSON text.
    pub detail: String,
    /// The event's time (RFC 3339).
    pub time: String,
}

/// What an artist's history holds after a sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    /// The artist's latest sequence number (0: none yet).
    pub last_seq: u64,
    /// The live entries after the asked-for sequence number, oldest first.
    pub entries: Vec<HistoryEntry>,
}

/// An index the fan-out reads: an artist's subscribers (its room), or every live connection.
/// Both are sharded the same way, by [`Shard::of`] the connection id.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "AudienceWire", into = "AudienceWire")]
pub enum Audience {
    /// The subscribers of an artist.
    Artist(ArtistKey),
    /// Every live connection.
    Everyone,
}

/// `{"artist":"<key>"}` or `"everyone"`; a key read back is parsed again, as a key.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum AudienceWire {
    Artist(String),
    Everyone,
}

impl TryFrom<AudienceWire> for Audience {
    type Error = crate::domain::InvalidArtistKey;

    fn try_from(wire: AudienceWire) -> Result<Self, Self::Error> {
        Ok(match wire {
            // A key, not a display name: NFKC may have made it longer than a name may be.
            AudienceWire::Artist(key) => Self::Artist(ArtistKey::parse(&key)?),
            AudienceWire::Everyone => Self::Everyone,
        })
    }
}

impl From<Audience> for AudienceWire {
    fn from(audience: Audience) -> Self {
        match audience {
            Audience::Artist(key) => Self::Artist(key.as_str().to_owned()),
            Audience::Everyone => Self::Everyone,
        }
    }
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Artist(key) => write!(f, "artist {key}"),
            Self::Everyone => f.write_str("everyone"),
        }
    }
}

/// A stretch of one shard of an artist's index, in connection-id order: the connections after
/// `after` (all of them when `None`) up to and including `until` (to the end when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Span {
    /// The index shard.
    pub shard: Shard,
    /// Start after this connection.
    pub after: Option<ConnectionId>,
    /// Stop after this connection.
    pub until: Option<ConnectionId>,
}

impl Span {
    /// The whole of `shard`.
    #[must_use]
    pub fn whole(shard: Shard) -> Self {
        Self {
            shard,
            after: None,
            until: None,
        }
    }
}

/// Where the rest of a stretch is handed on: pinned by the first attempt that read the
/// stretch's first page, and kept by every later one. A later attempt may read a different
/// first page (a gone fan's records deleted meanwhile, a fan subscribed meanwhile); it still
/// covers just what the first did, so that the item and its continuation never both count a
/// fan in the delivery report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandOff {
    /// The continuation starts after this connection; `None` for a hand-off recorded by a
    /// version before the pin (it recorded only that its continuation was sent, not where).
    pub next: Option<ConnectionId>,
    /// Whether the continuation was sent (pinned first, sent next, marked sent last).
    pub sent: bool,
}

/// Outcome of claiming an event id for processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours: first time this id is seen, or an earlier attempt's lease ran out before it
    /// finished (it crashed or timed out). Do the whole work.
    New,
    /// Another attempt holds a live lease on it: it may still finish. Try again later.
    Running,
    /// Its work was all done or handed over: deliver nothing.
    Done,
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
    /// Concurrent writers kept winning an optimistic race, past the retries.
    #[error("store request {operation} kept losing races with concurrent writers")]
    Contended {
        /// Which request.
        operation: &'static str,
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

/// The whole store, by capability: connections ([`ConnectionStore`]), rooms ([`RoomStore`]),
/// processed events ([`EventStore`]), history ([`HistoryStore`]) and delivery reports
/// ([`Reports`]). Routes ask for `S: Store`; an adapter implements each part, and gets this one
/// for free.
///
/// Every read filters records whose `expires_at` is not after `now`: TTL deletion is lazy.
pub trait Store: ConnectionStore + RoomStore + EventStore + HistoryStore + Reports {}

impl<T: ConnectionStore + RoomStore + EventStore + HistoryStore + Reports> Store for T {}

/// Connections and their subscriptions, and each user's list of connections (the cap and
/// revocations): what `$connect`, `$disconnect`, subscribe and unsubscribe write. Part of
/// [`Store`].
pub trait ConnectionStore: Send + Sync {
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
    /// connection's version to `version + 1`, all or nothing, if the version is still `version`
    /// and none of the subscriptions exists yet; each artist's subscriber count goes up with
    /// it. Subscriptions expire with the connection.
    fn add_subscriptions(
        &self,
        connection: &Connection,
        version: u32,
        artists: &[Artist],
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Removes the subscriptions for `keys` (all of which the connection has) and sets the
    /// version to `version + 1`, all or nothing, if the version is still `version` and every one
    /// of the subscriptions exists; each artist's subscriber count goes down with it.
    fn remove_subscriptions(
        &self,
        id: &ConnectionId,
        version: u32,
        keys: &[ArtistKey],
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Notes that connection `id`'s catch-up of `artist` replayed every notification up to
    /// `through` (the subscription's watermark, read back by
    /// [`ConnectionStore::connection_state`]). The mark only goes up, and only on a subscription that exists; otherwise nothing is
    /// written and it is not an error.
    fn mark_replayed(
        &self,
        id: &ConnectionId,
        artist: &ArtistKey,
        through: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes a connection record and all its subscriptions (counting each out of its
    /// artist's subscriber count once, however many deletes race); says what went. Deleting an
    /// unknown connection is not an error.
    fn delete_connection(
        &self,
        id: &ConnectionId,
    ) -> impl Future<Output = Result<Removed, StoreError>> + Send;

    /// The users of those of `ids` that have a live record (in no particular order).
    fn users(
        &self,
        ids: &[ConnectionId],
        now: EpochSeconds,
    ) -> impl Future<Output = Result<Vec<(ConnectionId, UserId)>, StoreError>> + Send;

    /// Lists `connection` under its user, if the user holds fewer than `admission.cap` live
    /// connections (one more when it replaces a live one of theirs, and no other replacement
    /// is open) and no revocation refuses the token; prunes the user's entries that lapsed.
    /// Exact under concurrency: however many connects of one user race, at most the cap are
    /// admitted. The connection's record is not written here.
    fn admit_connection(
        &self,
        connection: &Connection,
        admission: Admission<'_>,
        now: EpochSeconds,
    ) -> impl Future<Output = Result<Admitted, StoreError>> + Send;

    /// Takes connection `id` off `user`'s list (a connect that failed after its admission, or
    /// a connection whose record was already gone). [`ConnectionStore::delete_connection`] does this
    /// itself when the record names the user. Unknown ones are not an error.
    fn release_connection(
        &self,
        user: &UserId,
        id: &ConnectionId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// When `user` was last revoked, while that revocation stands (until its `until`).
    fn revocation(
        &self,
        user: &UserId,
        now: EpochSeconds,
    ) -> impl Future<Output = Result<Option<EpochSeconds>, StoreError>> + Send;

    /// Revokes `user` at `at` (kept until `until`; a later revocation already recorded stays),
    /// then lists every connection of the user's list, lapsed or not: the ones to close. A
    /// connect admitted before the revocation was recorded is in the list; one admitted after
    /// it sees the revocation ([`ConnectionStore::revocation`]).
    fn revoke_user(
        &self,
        user: &UserId,
        at: EpochSeconds,
        until: EpochSeconds,
        now: EpochSeconds,
    ) -> impl Future<Output = Result<Vec<ConnectionId>, StoreError>> + Send;
}

/// Who is in an artist's room (or everyone's), read page by page for a fan-out; the
/// subscriber counts; presence; and the token buckets that meter what rooms and connections
/// make the server post. Part of [`Store`].
pub trait RoomStore: Send + Sync {
    /// Decides whether `artist`'s room is told `notice` of `user` now, and records it if so:
    /// [`Told::Tell`] when the room was last told otherwise (or never) and, when coalesced,
    /// not within the window; [`Told::Skip`] when it was last told the same, or a settle is
    /// armed; [`Told::Settle`] arms one (one caller per window). Kept a day.
    fn presence_told(
        &self,
        artist: &ArtistKey,
        user: &UserId,
        notice: Notice,
        pacing: Pacing,
        now_ms: i64,
    ) -> impl Future<Output = Result<Told, StoreError>> + Send;

    /// Settles the notice armed for `armed_ms` ([`Told::Settle`]): records `state` (what is
    /// true now) as told and says whether the room must be told it (it was last told
    /// otherwise), disarming the settle. Does nothing when the settle is no longer armed (a
    /// notice was told since).
    fn settle_presence(
        &self,
        artist: &ArtistKey,
        user: &UserId,
        state: Notice,
        armed_ms: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// How many subscriptions `artist` has: a counter kept with every subscription write (one
    /// per index shard, summed), exact under concurrency.
    fn subscriber_count(
        &self,
        artist: &ArtistKey,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Spends from `bucket` (refilled by `limit` up to `now_millis`): `false` when the
    /// bucket does not hold what the spend needs (or the connection it is on is gone), and
    /// then nothing is written. A spend of nothing only reads.
    fn spend(
        &self,
        bucket: Bucket<'_>,
        spend: Spend,
        limit: RateLimit,
        now_millis: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// One page (at most `limit` index records examined) of the live members of `audience`
    /// within `span`, in connection-id order: an artist's subscribers, or every connection.
    fn subscribers(
        &self,
        audience: &Audience,
        span: &Span,
        now: EpochSeconds,
        limit: u32,
    ) -> impl Future<Output = Result<SubscriberPage, StoreError>> + Send;
}

/// Processed events: the claim that makes `notify` idempotent, and the hand-off records that
/// keep a work item's continuation single. Part of [`Store`].
pub trait EventStore: Send + Sync {
    /// Claims an event id: a pending claim held until `lease_until`, remembered until
    /// `expires_at`. A claim that is done, or pending with a lease still running, is not taken.
    fn claim_event(
        &self,
        id: &EventId,
        now: EpochSeconds,
        lease_until: EpochSeconds,
        expires_at: EpochSeconds,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Marks a claimed event done: a later claim is [`Claim::Done`] until `expires_at`.
    fn finish_event(
        &self,
        id: &EventId,
        expires_at: EpochSeconds,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The hand-off of `span`'s rest (for event `id`), if an attempt pinned one (a
    /// consistent read).
    fn hand_off(
        &self,
        id: &EventId,
        span: &Span,
    ) -> impl Future<Output = Result<Option<HandOff>, StoreError>> + Send;

    /// Pins where `span`'s rest (for event `id`) starts: after `next`, unless an attempt
    /// pinned it first. Kept until `expires_at`. Returns the pinned hand-off, this one's or
    /// the first.
    fn pin_hand_off(
        &self,
        id: &EventId,
        span: &Span,
        next: &ConnectionId,
        expires_at: EpochSeconds,
    ) -> impl Future<Output = Result<HandOff, StoreError>> + Send;

    /// Records that the pinned hand-off of `span`'s rest (for event `id`) was sent.
    fn hand_off_sent(
        &self,
        id: &EventId,
        span: &Span,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives a pending claim back, so a retry of the event can take it at once. A done
    /// claim is kept.
    fn release_event(&self, id: &EventId) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Each artist's numbered notification history, for catch-up. Part of [`Store`].
pub trait HistoryStore: Send + Sync {
    /// The event's sequence number in its artist's sequence. The first call for an event
    /// takes the artist's next number and writes the history entry (dropping the entry
    /// `retention.max_per_artist` places back) in one transaction; later calls, until
    /// `remember_until`, return the same number and write nothing. Numbers are never skipped
    /// or given twice, however many events of one artist are sequenced at once.
    ///
    /// # Errors
    /// [`StoreError::Contended`] when other events of the artist kept winning the race.
    fn sequence(
        &self,
        entry: NewEntry<'_>,
        retention: Retention,
        now: EpochSeconds,
        remember_until: EpochSeconds,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The artist's latest sequence number and its live history entries numbered above
    /// `after`, oldest first: at most the newest `limit` of them.
    fn history(
        &self,
        artist: &ArtistKey,
        after: u64,
        now: EpochSeconds,
        limit: u32,
    ) -> impl Future<Output = Result<History, StoreError>> + Send;
}
