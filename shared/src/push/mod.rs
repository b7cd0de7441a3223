//! The `Push` port: sending a frame to a connected client (or closing it), and its adapters.
//!
//! - [`management::ManagementPush`]: the API Gateway Management API (`PostToConnection`).
//! - [`recording::RecordingPush`]: records frames in memory, with injectable outcomes.

use std::future::Future;

use crate::domain::ConnectionId;

#[cfg(feature = "management")]
pub mod management;
pub mod recording;

/// What happened to a posted frame. A gone client is an outcome, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    /// API Gateway accepted the frame for the connection.
    Delivered,
    /// The connection no longer exists (HTTP 410): its records should be deleted.
    Gone,
}

/// A failed post, classified for retrying.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Throttled (HTTP 429): worth retrying after a pause.
    #[error("throttled by the Management API")]
    Throttled(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A server-side or transport failure (5xx, timeout, connection reset): worth retrying.
    #[error("Management API unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Refused for good (403, 400, payload too large): retrying will not help.
    #[error("Management API refused the post")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl PushError {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Unavailable(_))
    }
}

/// Sends frames to connected clients.
pub trait Push: Send + Sync {
    /// Posts `frame` (JSON bytes) to connection `id`.
    fn post(
        &self,
        id: &ConnectionId,
        frame: &[u8],
    ) -> impl Future<Output = Result<Posted, PushError>> + Send;

    /// Whether connection `id` is still open (`GetConnection`). API Gateway now and then
    /// answers a post with 410 for a connection that is open; this is the second opinion
    /// asked before anything is deleted.
    fn is_connected(
        &self,
        id: &ConnectionId,
    ) -> impl Future<Output = Result<bool, PushError>> + Send;

    /// Closes connection `id` (`DeleteConnection`): [`Posted::Delivered`] when it was open
    /// and is now closing, [`Posted::Gone`] when it was already gone. API Gateway then runs
    /// `$disconnect` for it.
    fn disconnect(
        &self,
        id: &ConnectionId,
    ) -> impl Future<Output = Result<Posted, PushError>> + Send;
}
