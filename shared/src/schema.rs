//! The single-table schema, defined once. `template.yaml`, `marquee-local create-table` and
//! the tests all follow it; a test checks the template against [`TABLE`].
//!
//! | item | `pk` | `sk` | `gsi1pk` (index `by-artist`, range `pk`) | other |
//! |---|---|---|---|---|
//! | connection | `CONN#<id>` | `META` | `LIVE#<shard>` | `user_id`, `connected_at`, `expires_at`, `version`, `scope`, `publish`, `rate_tokens`, `rate_at` |
//! | subscription | `CONN#<id>` | `SUB#<artist key>` | `ARTIST#<artist key>#<shard>` | `artist`, `expires_at` |
//! | event claim | `EVENT#<id>` | `EVENT` | | `state`, `lease_until`, `expires_at` |
//! | event sequence | `EVENT#<id>` | `SEQ` | | `seq`, `expires_at` |
//! | hand-off | `EVENT#<id>` | `HANDOFF#<shard> <after> <until>` | | `next`, `sent`, `expires_at` |
//! | delivery report | `EVENT#<id>` | `REPORT` | | `kind`, `artist`, `audience`, `time`, `opened_at`, the counts, `items`, `finished`, `outstanding`, `dead_lettered`, `published_at`, `first_post_ms`, `last_post_ms`, `expires_at` |
//! | report item | `EVENT#<id>` | `ITEM#<item key>` | | `state` (`open`, `done`, `dead`), `first_post_ms`, `last_post_ms`, `expires_at` |
//! | artist counter | `ARTIST#<artist key>` | `META` | | `last_seq`, `expires_at` |
//! | subscriber count | `ARTIST#<artist key>` | `COUNT#<shard>` | `gsi2pk` `COUNTS#<shard>` (index `by-count`, range `subscribers`) | `subscribers`, `artist`, `expires_at` |
//! | totals | `STATS#<shard>` | `COUNT` | | `connections`, `subscriptions` |
//! | presence told | `ARTIST#<artist key>` | `PRESENCE#<user id>` | | `told` (`joined`, `left`), `told_ms`, `settle_ms`, `expires_at` |
//! | history entry | `ARTIST#<artist key>` | `SEQ#<seq, 20 digits>` | | `event_id`, `artist`, `detail`, `time`, `expires_at` |
//! | user's connections | `USER#<user id>` | `CONNS` | | `conns` (map: connection id → its `expires_at`), `expires_at` |
//! | revocation | `USER#<user id>` | `REVOKED` | | `revoked_at`, `expires_at` |
//!
//! The index is sharded: a connection's subscriptions sit under shard
//! [`Shard::of`](crate::domain::Shard::of) its id, one of [`SHARDS`], in its artists'
//! partitions, and its record under the same shard in the live-connections partitions
//! (`LIVE#<shard>`), which a broadcast to everyone reads the way a notification reads an
//! artist's. The index is named `by-artist` for its first use; renaming an index means
//! rebuilding it.
//!
//! The artists by subscribers: each subscriber counter carries `gsi2pk` = `COUNTS#<shard>`, so
//! the sparse index `by-count` (range key `subscribers`, a number) holds, per shard, every
//! artist's counter of that shard in count order. The top artists are read from the top of
//! the 16 lists (a threshold read, `Inspect::top_artists`), never by a scan. The totals of
//! connection records and subscriptions are counters of their own, one item per shard
//! (`STATS#<shard>`/`COUNT`), moved by `ADD` after each write they count
//! (`docs/decisions.md`, "Operator counts").
//!
//! The way from a user to their connections is one item per user (`USER#<id>`/`CONNS`), not
//! an index: `$connect` admits a connection with one conditional update of it (the per-user
//! cap, exact under concurrency), `$disconnect` and every 410 cleanup remove the connection
//! from it, and a revocation reads it. Each entry carries its connection's expiry, so an entry
//! whose connection lapsed without a `$disconnect` stops counting then, and the next
//! `$connect` of the user prunes it. A revocation (`USER#<id>`/`REVOKED`) sits beside it, in
//! the same partition, so one query reads both.

use crate::domain::{ArtistKey, ConnectionId, EventId, Shard, UserId};
use crate::store::{Audience, Span};

pub use crate::domain::SHARDS;

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// Partition key of the artist index.
pub const GSI1PK: &str = "gsi1pk";
/// Partition key of the count index (`COUNTS#<shard>` on subscriber counters only).
pub const GSI2PK: &str = "gsi2pk";
/// The index from a shard to its artists' subscriber counters, in count order.
pub const BY_COUNT_INDEX: &str = "by-count";
/// A subscriber counter's display name of its artist (as first subscribed to).
pub const ARTIST_NAME: &str = "artist";
/// The index from artist to connections.
pub const BY_ARTIST_INDEX: &str = "by-artist";
/// The TTL attribute (epoch seconds) carried by every item.
pub const EXPIRES_AT: &str = "expires_at";

/// Sort key of a connection record.
pub const META: &str = "META";
/// Sort key of an artist's room bucket: the posts its messages may make
/// (`ARTIST#<key>`/`POSTS`).
pub const ROOM_POSTS_SK: &str = "POSTS";
/// Sort key of an event claim.
pub const EVENT_SK: &str = "EVENT";
/// An event claim's state attribute: [`EVENT_PENDING`] or [`EVENT_DONE`].
pub const EVENT_STATE: &str = "state";
/// Until when (epoch seconds) a pending claim belongs to the invocation that took it.
pub const EVENT_LEASE_UNTIL: &str = "lease_until";
/// A claimed event whose work is not all handed over yet.
pub const EVENT_PENDING: &str = "pending";
/// A claimed event whose every subscriber was reached or handed to the work queue.
pub const EVENT_DONE: &str = "done";

/// Sort key of an event's delivery report ([`crate::report`]).
pub const REPORT_SK: &str = "REPORT";
/// Sort key prefix of a report's work items (`ITEM#<item key>`), one per item, counted once.
pub const ITEM_PREFIX: &str = "ITEM#";
/// A report item's state: [`ITEM_OPEN`] (registered, not finished), [`ITEM_DONE`] or
/// [`ITEM_DEAD`] (failed for good).
pub const ITEM_STATE: &str = "state";
/// A registered report item not finished yet.
pub const ITEM_OPEN: &str = "open";
/// A finished report item (its counts were added).
pub const ITEM_DONE: &str = "done";
/// A report item that failed for good (to the dead-letter queue).
pub const ITEM_DEAD: &str = "dead";

/// A hand-off record's cursor: the continuation starts after this connection id, pinned by
/// the first attempt of the item.
pub const HAND_OFF_NEXT: &str = "next";
/// Whether a hand-off record's continuation was sent (a boolean).
pub const HAND_OFF_SENT: &str = "sent";

/// Sort key of an event's sequence number.
pub const EVENT_SEQ_SK: &str = "SEQ";
/// An event sequence item's number attribute.
pub const SEQ: &str = "seq";
/// An artist counter's latest sequence number attribute.
pub const LAST_SEQ: &str = "last_seq";
/// A subscription's catch-up watermark: the `seq` up to which a catch-up replayed everything
/// to its connection.
pub const REPLAYED: &str = "replayed";
/// A subscriber counter's count attribute.
pub const SUBSCRIBERS: &str = "subscribers";
/// Sort key prefix of an artist's subscriber counters, one per index shard.
pub const COUNT_PREFIX: &str = "COUNT#";
/// Sort key of a shard's totals item (`STATS#<shard>`/`COUNT`).
pub const STATS_SK: &str = "COUNT";
/// A totals item's count of connection records.
pub const STATS_CONNECTIONS: &str = "connections";
/// A totals item's count of subscriptions.
pub const STATS_SUBSCRIPTIONS: &str = "subscriptions";

const CONN_PREFIX: &str = "CONN#";
const SEQ_PREFIX: &str = "SEQ#";
const SUB_PREFIX: &str = "SUB#";
const ARTIST_PREFIX: &str = "ARTIST#";
const EVENT_PREFIX: &str = "EVENT#";
const LIVE_PREFIX: &str = "LIVE#";
const HANDOFF_PREFIX: &str = "HANDOFF#";
const BUDGET_PREFIX: &str = "BUDGET#";
const WINDOW_PREFIX: &str = "WINDOW#";
const USER_PREFIX: &str = "USER#";
/// Partition key prefix of the operator totals (`STATS#<shard>`).
pub const STATS_PREFIX: &str = "STATS#";
const PRESENCE_PREFIX: &str = "PRESENCE#";
const COUNTS_PREFIX: &str = "COUNTS#";

/// Sort key of a user's connections item.
pub const USER_CONNECTIONS_SK: &str = "CONNS";
/// A user's connections item's map of connection id to that connection's `expires_at`.
pub const USER_CONNECTIONS: &str = "conns";
/// Sort key of a user's revocation.
pub const REVOKED_SK: &str = "REVOKED";
/// A revocation's time (epoch seconds): tokens of the user issued at or before it are refused.
pub const REVOKED_AT: &str = "revoked_at";

/// A budget window item's count of tokens taken.
pub const BUDGET_USED: &str = "used";
/// A budget window item's set of the posters that asked.
pub const BUDGET_POSTERS: &str = "posters";
/// A budget window item's count of the tokens room traffic took ([`crate::budget::Lane::Rooms`]).
pub const BUDGET_ROOMS_USED: &str = "rooms";
/// A budget window item's set of the room-traffic posters that asked.
pub const BUDGET_ROOM_POSTERS: &str = "room_posters";
/// Prefix of a budget window item's per-poster counts (`p#<poster>`).
pub const BUDGET_POSTER_PREFIX: &str = "p#";
/// How long a budget window item is kept after its window (its TTL; it is never read again).
pub const BUDGET_KEEP_SECONDS: i64 = 60;

/// A key attribute of the table or an index: its name, and whether it is the hash key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPart {
    /// Attribute name.
    pub attribute: &'static str,
    /// `HASH` when true, `RANGE` otherwise.
    pub hash: bool,
}

/// A global secondary index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    /// Index name.
    pub name: &'static str,
    /// Key schema, hash first.
    pub key: [KeyPart; 2],
    /// Non-key attributes projected (`INCLUDE`).
    pub include: &'static [&'static str],
}

/// The whole table definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// Key attributes that are strings (each needs an attribute definition).
    pub string_attributes: &'static [&'static str],
    /// Key attributes that are numbers.
    pub number_attributes: &'static [&'static str],
    /// Table key schema, hash first.
    pub key: [KeyPart; 2],
    /// Global secondary indexes.
    pub indexes: &'static [Index],
    /// TTL attribute.
    pub ttl_attribute: &'static str,
}

/// Marquee's table.
pub const TABLE: Table = Table {
    string_attributes: &[PK, SK, GSI1PK, GSI2PK],
    number_attributes: &[SUBSCRIBERS],
    key: [
        KeyPart {
            attribute: PK,
            hash: true,
        },
        KeyPart {
            attribute: SK,
            hash: false,
        },
    ],
    indexes: &[
        Index {
            name: BY_ARTIST_INDEX,
            key: [
                KeyPart {
                    attribute: GSI1PK,
                    hash: true,
                },
                KeyPart {
                    attribute: PK,
                    hash: false,
                },
            ],
            // Fan-out needs only the connection id (`pk`, a key) and the expiry to filter on.
            include: &[EXPIRES_AT],
        },
        Index {
            name: BY_COUNT_INDEX,
            key: [
                KeyPart {
                    attribute: GSI2PK,
                    hash: true,
                },
                KeyPart {
                    attribute: SUBSCRIBERS,
                    hash: false,
                },
            ],
            // The top artists need the artist (`pk`, a key), the count (a key) and a name to show.
            include: &[ARTIST_NAME],
        },
    ],
    ttl_attribute: EXPIRES_AT,
};

/// `CONN#<id>`
#[must_use]
pub fn connection_pk(id: &ConnectionId) -> String {
    format!("{CONN_PREFIX}{id}")
}

/// The connection id inside a `CONN#<id>` key.
#[must_use]
pub fn connection_id_from_pk(pk: &str) -> Option<ConnectionId> {
    pk.strip_prefix(CONN_PREFIX)
        .and_then(|id| ConnectionId::parse(id).ok())
}

/// `SUB#<artist key>`
#[must_use]
pub fn subscription_sk(key: &ArtistKey) -> String {
    format!("{SUB_PREFIX}{key}")
}

/// The artist key inside a `SUB#<key>` sort key.
#[must_use]
pub fn artist_key_from_sk(sk: &str) -> Option<ArtistKey> {
    sk.strip_prefix(SUB_PREFIX)
        .map(|k| ArtistKey::from_stored(k.to_owned()))
}

/// `ARTIST#<artist key>#<shard>`: the index partition of one shard of an artist's subscribers.
/// The shard comes last and never contains `#`, so two (artist, shard) pairs never share a key.
#[must_use]
pub fn artist_shard_pk(key: &ArtistKey, shard: Shard) -> String {
    format!("{ARTIST_PREFIX}{key}#{shard}")
}

/// `LIVE#<shard>`: the index partition of one shard of every live connection.
#[must_use]
pub fn live_shard_pk(shard: Shard) -> String {
    format!("{LIVE_PREFIX}{shard}")
}

/// The index partition of one shard of `audience`.
#[must_use]
pub fn audience_shard_pk(audience: &Audience, shard: Shard) -> String {
    match audience {
        Audience::Artist(key) => artist_shard_pk(key, shard),
        Audience::Everyone => live_shard_pk(shard),
    }
}

/// `ARTIST#<artist key>`: the partition of an artist's counter and history (a table key; the
/// index's `ARTIST#<key>#<shard>` values live in another attribute).
#[must_use]
pub fn artist_pk(key: &ArtistKey) -> String {
    format!("{ARTIST_PREFIX}{key}")
}

/// `COUNT#<shard>`: one of an artist's subscriber counters.
#[must_use]
pub fn count_sk(shard: Shard) -> String {
    format!("{COUNT_PREFIX}{shard}")
}

/// `PRESENCE#<user id>`: what an artist's room was last told of a user (in the artist's
/// partition, beside its counters).
#[must_use]
pub fn presence_sk(user: &UserId) -> String {
    format!("{PRESENCE_PREFIX}{}", user.as_str())
}

/// The last presence notice a room was told of a user: `joined` or `left`.
pub const TOLD: &str = "told";
/// When it was told (epoch milliseconds).
pub const TOLD_MS: &str = "told_ms";
/// When an armed trailing notice is due (epoch milliseconds); absent when none is armed.
pub const SETTLE_MS: &str = "settle_ms";

/// `COUNTS#<shard>`: the `by-count` partition of the subscriber counters of one shard.
#[must_use]
pub fn counts_pk(shard: Shard) -> String {
    format!("{COUNTS_PREFIX}{shard}")
}

/// The artist key inside an `ARTIST#<key>` partition key.
#[must_use]
pub fn artist_key_from_pk(pk: &str) -> Option<ArtistKey> {
    pk.strip_prefix(ARTIST_PREFIX)
        .map(|k| ArtistKey::from_stored(k.to_owned()))
}

/// `STATS#<shard>`: the partition of one shard's totals item.
#[must_use]
pub fn stats_pk(shard: Shard) -> String {
    format!("{STATS_PREFIX}{shard}")
}

/// `SEQ#<seq>`, zero-padded to 20 digits so the sort key orders entries by number.
#[must_use]
pub fn history_sk(seq: u64) -> String {
    format!("{SEQ_PREFIX}{seq:020}")
}

/// `EVENT#<id>`
#[must_use]
pub fn event_pk(id: &EventId) -> String {
    format!("{EVENT_PREFIX}{id}")
}

/// `ITEM#<item key>`: one work item of a delivery report.
#[must_use]
pub fn report_item_sk(key: &crate::report::ItemKey) -> String {
    format!("{ITEM_PREFIX}{key}")
}

/// `HANDOFF#<shard> <after> <until>` (empty for an open end): the record that a work item
/// for this stretch handed its rest on. Connection ids never contain a space.
#[must_use]
pub fn hand_off_sk(span: &Span) -> String {
    let end = |id: &Option<ConnectionId>| id.as_ref().map_or("", ConnectionId::as_str).to_owned();
    format!(
        "{HANDOFF_PREFIX}{} {} {}",
        span.shard,
        end(&span.after),
        end(&span.until)
    )
}

/// `USER#<user id>`: the partition of a user's connections item and revocation.
#[must_use]
pub fn user_pk(user: &UserId) -> String {
    format!("{USER_PREFIX}{user}")
}

/// `BUDGET#<n>`: one of the account budget's items ([`crate::budget`]).
#[must_use]
pub fn budget_pk(item: u32) -> String {
    format!("{BUDGET_PREFIX}{item}")
}

/// `WINDOW#<index>`: one window of a budget item.
#[must_use]
pub fn budget_window_sk(window: u64) -> String {
    format!("{WINDOW_PREFIX}{window}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_sort_keys_order_as_their_numbers_do() {
        let keys: Vec<String> = [1, 9, 10, 99, 100, u64::MAX].map(history_sk).into();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(history_sk(42), "SEQ#00000000000000000042");
    }
}
