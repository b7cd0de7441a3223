//! `$connect`: authorise the token, admit the connection under its user's cap and any
//! revocation, and record it, with the subscriptions its `subscribe` claim asks for.

use crate::auth::{TokenError, TokenVerifier};
use crate::domain::{Connection, ConnectionId, EpochSeconds};
use crate::store::{
    Admission, Admitted, Applied, LAPSED_WINDOW_SECONDS, Store, StoreError, is_revoked,
};

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The token was missing, bad, or grants nothing (401 or 403).
    #[error("token refused: {0}")]
    Token(#[from] TokenError),
    /// The user was revoked at or after the token's `iat` (401: a token issued after the
    /// revocation is accepted).
    #[error("the token was issued before its user was revoked")]
    Revoked,
    /// The user holds `MAX_CONNECTIONS_PER_USER` live connections already (429).
    #[error("the user holds the most live connections allowed")]
    TooManyConnections,
    /// The connection record could not be written (500).
    #[error("could not record the connection")]
    Store(#[from] StoreError),
}

impl ConnectError {
    /// A short fixed name for a refusal (`ConnectRefusals` by `Reason`); `None` for a failure
    /// on our side.
    #[must_use]
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Token(e) => Some(e.reason()),
            Self::Revoked => Some("revoked"),
            Self::TooManyConnections => Some("too_many_connections"),
            Self::Store(_) => None,
        }
    }
}

/// `$connect`'s answer to API Gateway, decided here alone: its status and body. Any status but
/// 200 refuses the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200: connected.
    Connected,
    /// 400: the request is malformed (no connection id, a `replaces` that is not one).
    BadRequest,
    /// 401: no token, a bad one, or one issued before its user was revoked.
    Unauthorized,
    /// 403: an authentic token that grants nothing.
    Forbidden,
    /// 429: the user holds the most live connections allowed.
    TooManyRequests,
    /// 500: our side failed.
    Failed,
}

impl Answer {
    /// The answer to a connect's outcome.
    #[must_use]
    pub fn of<T>(result: &Result<T, ConnectError>) -> Self {
        match result {
            Ok(_) => Self::Connected,
            Err(err) => Self::from(err),
        }
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::Connected => 200,
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::TooManyRequests => 429,
            Self::Failed => 500,
        }
    }

    /// The body (plain text).
    #[must_use]
    pub fn body(self) -> &'static str {
        match self {
            Self::Connected => "Connected",
            Self::BadRequest => "Bad Request",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::TooManyRequests => "Too Many Requests",
            Self::Failed => "Internal Server Error",
        }
    }
}

impl From<&TokenError> for Answer {
    fn from(err: &TokenError) -> Self {
        match err {
            TokenError::Forbidden(_) => Self::Forbidden,
            _ => Self::Unauthorized,
        }
    }
}

impl From<&ConnectError> for Answer {
    fn from(err: &ConnectError) -> Self {
        match err {
            ConnectError::Token(e) => Self::from(e),
            ConnectError::Revoked => Self::Unauthorized,
            ConnectError::TooManyConnections => Self::TooManyRequests,
            ConnectError::Store(_) => Self::Failed,
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
    /// Cap on live connections per user (`MAX_CONNECTIONS_PER_USER`).
    pub max_connections_per_user: u32,
}

/// Verifies `token` and, if it is good, admits the connection under its user's cap (one over
/// when it `replaces` a live connection of the same user) unless a revocation refuses the
/// token, then writes the connection record and the subscriptions of its `subscribe` claim.
/// The records expire with the token, or `ttl_seconds` from `now` if that comes first: a
/// connection never outlives its token. Last, the revocation is read again: a revocation that
/// read the user's connections before this one was listed is seen here, and this one
/// undone. Never posts to the connection: it does not exist until this returns.
///
/// # Errors
/// [`ConnectError`]: a refused token, a revoked one, or a user at the cap, writes nothing.
pub async fn connect<S: Store>(
    store: &S,
    verifier: &TokenVerifier,
    limits: ConnectLimits,
    (id, replaces): (ConnectionId, Option<&ConnectionId>),
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
    let admission = Admission {
        cap: limits.max_connections_per_user,
        replaces,
        issued_at: grant.issued_at,
        keep_until: now
            .saturating_add(limits.ttl_seconds)
            .saturating_add(LAPSED_WINDOW_SECONDS),
    };
    match store.admit_connection(&connection, admission, now).await? {
        Admitted::Yes => {}
        Admitted::Full => return Err(ConnectError::TooManyConnections),
        Admitted::Revoked => return Err(ConnectError::Revoked),
    }
    if let Err(err) = store.put_connection(&connection).await {
        if let Err(undo) = store
            .release_connection(&connection.user_id, &connection.id)
            .await
        {
            tracing::warn!(
                connection_id = %connection.id,
                error = &undo as &dyn std::error::Error,
                "could not take a failed connect off its user's list; it lapses with its expiry"
            );
        }
        return Err(err.into());
    }
    if let Some(list) = &grant.subscribe {
        // A fresh record has revision 0 and no subscriptions, so only a store failure (or a
        // `$disconnect` already racing) stops this.
        let applied = store
            .add_subscriptions(&connection, 0, list.as_slice())
            .await;
        if !matches!(applied, Ok(Applied::Yes)) {
            undo(store, &connection.id).await;
            return Err(match applied {
                Err(err) => err.into(),
                Ok(_) => StoreError::Contended {
                    operation: "TransactWriteItems",
                }
                .into(),
            });
        }
    }
    match store.revocation(&connection.user_id, now).await {
        Ok(revoked_at) if is_revoked(grant.issued_at, revoked_at) => {
            undo(store, &connection.id).await;
            Err(ConnectError::Revoked)
        }
        Ok(_) => Ok(connection),
        Err(err) => {
            undo(store, &connection.id).await;
            Err(err.into())
        }
    }
}

/// Removes a half-made connection: its record, its subscriptions and its place on its user's
/// list.
async fn undo<S: Store>(store: &S, id: &ConnectionId) {
    if let Err(err) = store.delete_connection(id).await {
        tracing::warn!(
            connection_id = %id,
            error = &err as &dyn std::error::Error,
            "could not remove a half-made connection; TTL will"
        );
    }
}
