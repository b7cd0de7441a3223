//! The single-table schema, defined once. `template.yaml`, `marquee-local create-table` and
//! the tests all follow it; a test checks the template against [`TABLE`].
//!
//! | item | `pk` | `sk` | `gsi1pk` (index `by-artist`, range `pk`) | other |
//! |---|---|---|---|---|
//! | connection | `CONN#<id>` | `META` | | `user_id`, `connected_at`, `expires_at`, `version`, `scope` |
//! | subscription | `CONN#<id>` | `SUB#<artist key>` | `ARTIST#<artist key>` | `artist`, `expires_at` |
//! | processed event | `EVENT#<id>` | `EVENT` | | `expires_at` |

use crate::domain::{ArtistKey, ConnectionId, EventId};

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// Partition key of the artist index.
pub const GSI1PK: &str = "gsi1pk";
/// The index from artist to connections.
pub const BY_ARTIST_INDEX: &str = "by-artist";
/// The TTL attribute (epoch seconds) carried by every item.
pub const EXPIRES_AT: &str = "expires_at";

/// Sort key of a connection record.
pub const META: &str = "META";
/// Sort key of a processed-event record.
pub const EVENT_SK: &str = "EVENT";

const CONN_PREFIX: &str = "CONN#";
const SUB_PREFIX: &str = "SUB#";
const ARTIST_PREFIX: &str = "ARTIST#";
const EVENT_PREFIX: &str = "EVENT#";

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
    /// Key attributes (all strings) that need an attribute definition.
    pub string_attributes: &'static [&'static str],
    /// Table key schema, hash first.
    pub key: [KeyPart; 2],
    /// Global secondary indexes.
    pub indexes: &'static [Index],
    /// TTL attribute.
    pub ttl_attribute: &'static str,
}

/// Marquee's table.
pub const TABLE: Table = Table {
    string_attributes: &[PK, SK, GSI1PK],
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
    indexes: &[Index {
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
    }],
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

/// `ARTIST#<artist key>`
#[must_use]
pub fn artist_pk(key: &ArtistKey) -> String {
    format!("{ARTIST_PREFIX}{key}")
}

/// `EVENT#<id>`
#[must_use]
pub fn event_pk(id: &EventId) -> String {
    format!("{EVENT_PREFIX}{id}")
}
