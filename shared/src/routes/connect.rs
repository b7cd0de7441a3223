//! `$connect`: authorise the token and record the connection, with the subscriptions its
//! `subscribe` claim asks for.

use crate::auth::{TokenError, TokenVerifier};
use crate::domain::{Connection, ConnectionId, EpochSeconds};
use crate::store::{Applied, Store, StoreError};

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

/// The limits `$connect` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectLimits {
    /// Longest life of a connection record (`CONNECTION_TTL_SECONDS`); a token that expires
    /// sooner shortens it.
    pub ttl_seconds: i64,
    /// Cap on subscriptions per connection, which a `subscribe` claim must respect.
    pub max_subscriptions: u32,
}

/// Verifies `token` and, if it is good, writes the connection record and the subscriptions
/// of its `subscribe` claim. The records expire with the token, or `ttl_seconds` from `now`
/// if that comes first: a connection never outlives its token. Never posts to the
/// connection: it does not exist until this returns.
///
/// # Errors
/// [`ConnectError`]: a refused token writes nothing.
pub async fn connect<S: Store>(
    store: &S,
    verifier: &TokenVerifier,
    limits: ConnectLimits,
    id: ConnectionId,
    token: Option<&str>,
    now: EpochSeconds,
) -> Result<Connection, ConnectError> {
    let grant = verifier.verify(token, now)?;
    if let Some(list) = &grant.subscribe
        && list.as_slice().len() > limits.max_subscriptions as usize
    {
        return Err(TokenError::Forbidden("subscribe claim exceeds the subscription cap").into());
    }
    let connection = Connection {
        id,
        user_id: grant.user_id,
        connected_at: now,
        expires_at: now.saturating_add(limits.ttl_seconds).min(grant.expires_at),
        scope: grant.scope,
        publish: grant.publish,
    };
    store.put_connection(&connection).await?;
    if let Some(list) = &grant.subscribe {
        // A fresh record has revision 0 and no subscriptions, so only a store failure (or a
        // `$disconnect` already racing) stops this.
        let applied = store
            .add_subscriptions(&connection, 0, list.as_slice())
            .await;
        if !matches!(applied, Ok(Applied::Yes)) {
            if let Err(err) = store.delete_connection(&connection.id).await {
                tracing::warn!(
                    connection_id = %connection.id,
                    error = &err as &dyn std::error::Error,
                    "could not remove a half-made connection; TTL will"
                );
            }
            return Err(match applied {
                Err(err) => err.into(),
                Ok(_) => StoreError::Contended {
                    operation: "TransactWriteItems",
                }
                .into(),
            });
        }
    }
    Ok(connection)
}
