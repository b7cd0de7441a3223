//! `$connect`: authorise the token and record the connection.

use crate::auth::{TokenError, TokenVerifier};
use crate::domain::{Connection, ConnectionId, EpochSeconds};
use crate::store::{Store, StoreError};

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The token was missing, bad, or grants nothing (401 or 403).
    #[error("token refused: {0}")]
    Token(#[from] TokenError),
    /// The connection record could not be written (500).
    #[error("could not record the connection")]
    Store(#[from] StoreError),
}

impl ConnectError {
    /// The HTTP status that refuses the handshake.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::Token(e) => e.status(),
            Self::Store(_) => 500,
        }
    }
}

/// Verifies `token` and, if it is good, writes the connection record, expiring
/// `ttl_seconds` from `now`. Never posts to the connection: it does not exist until this
/// returns.
///
/// # Errors
/// [`ConnectError`]: a refused token writes nothing.
pub async fn connect<S: Store>(
    store: &S,
    verifier: &TokenVerifier,
    ttl_seconds: i64,
    id: ConnectionId,
    token: Option<&str>,
    now: EpochSeconds,
) -> Result<Connection, ConnectError> {
    let grant = verifier.verify(token, now)?;
    let connection = Connection {
        id,
        user_id: grant.user_id,
        connected_at: now,
        expires_at: now.saturating_add(ttl_seconds),
        scope: grant.scope,
    };
    store.put_connection(&connection).await?;
    Ok(connection)
}
