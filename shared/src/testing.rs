//! Test support (the crate's own tests, and the `test-support` feature: the integration tests
//! and the benchmark): builders for the domain values tests write by the hundred, so that a
//! test names only what it is about. The Lambda binaries are built without it.
//!
//! The builders panic on a value that does not parse, as a test's `unwrap` would: what they are
//! given is a test's literal.
#![allow(clippy::expect_used)]

use crate::domain::{
    Artist, ArtistKey, Connection, ConnectionId, EpochSeconds, Scope, UserId, now_epoch_seconds,
};

/// How long a built connection lives unless told otherwise.
pub const DEFAULT_LIFETIME_SECONDS: i64 = 600;

impl Connection {
    /// A [`Connection`] with id `id`: of user `alice`, connected now, live for
    /// [`DEFAULT_LIFETIME_SECONDS`], any artist in scope, publishing to no room. Set what the
    /// test is about, then [`build`](ConnectionBuilder::build):
    /// `Connection::builder("c1").user("ann").connected_at(NOW).lifetime(100).build()`.
    ///
    /// # Panics
    /// When `id` is not a valid connection id.
    pub fn builder(id: &str) -> ConnectionBuilder {
        ConnectionBuilder {
            id: ConnectionId::parse(id).expect("a valid connection id"),
            user_id: UserId::parse("alice").expect("a valid user id"),
            connected_at: now_epoch_seconds(),
            expiry: Expiry::After(DEFAULT_LIFETIME_SECONDS),
            scope: Scope::Any,
            publish: Vec::new(),
        }
    }
}

/// A [`Connection`] being built ([`Connection::builder`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct ConnectionBuilder {
    id: ConnectionId,
    user_id: UserId,
    connected_at: EpochSeconds,
    expiry: Expiry,
    scope: Scope,
    publish: Vec<ArtistKey>,
}

/// When a built connection's records lapse.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    /// This many seconds after it connected.
    After(i64),
    /// At this time.
    At(EpochSeconds),
}

impl ConnectionBuilder {
    /// Of user `user`.
    ///
    /// # Panics
    /// When `user` is not a valid user id.
    pub fn user(mut self, user: &str) -> Self {
        self.user_id = UserId::parse(user).expect("a valid user id");
        self
    }

    /// Connected at `at` (its expiry, unless set with [`expires_at`](Self::expires_at), moves
    /// with it).
    pub fn connected_at(mut self, at: EpochSeconds) -> Self {
        self.connected_at = at;
        self
    }

    /// Live for `seconds` after it connected.
    pub fn lifetime(mut self, seconds: i64) -> Self {
        self.expiry = Expiry::After(seconds);
        self
    }

    /// Its records lapse at `at`.
    pub fn expires_at(mut self, at: EpochSeconds) -> Self {
        self.expiry = Expiry::At(at);
        self
    }

    /// It may subscribe to `scope`.
    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// It may publish to the rooms of the artists `names` (kept as sorted keys, as a token's
    /// `publish` claim is).
    ///
    /// # Panics
    /// When a name is not a valid artist.
    pub fn publish(mut self, names: &[&str]) -> Self {
        let mut keys: Vec<ArtistKey> = names
            .iter()
            .map(|name| Artist::parse(name).expect("a valid artist").key().clone())
            .collect();
        keys.sort();
        keys.dedup();
        self.publish = keys;
        self
    }

    /// The connection.
    #[must_use]
    pub fn build(self) -> Connection {
        let expires_at = match self.expiry {
            Expiry::After(seconds) => self.connected_at.saturating_add(seconds),
            Expiry::At(at) => at,
        };
        Connection {
            id: self.id,
            user_id: self.user_id,
            connected_at: self.connected_at,
            expires_at,
            scope: self.scope,
            publish: self.publish,
        }
    }
}
