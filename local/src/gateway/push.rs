//! How the in-process routes post to sockets ([`GatewayPush`]):
//!
//! - [`PushPath::ManagementApi`] (the default): the real [`ManagementPush`], the SDK client
//!   over HTTP to this gateway's own Management API, exactly as the functions post through
//!   API Gateway in AWS. Every post is signed, sent, routed and answered.
//! - [`PushPath::Direct`]: straight into the sockets' outboxes, with the Management API's
//!   outcomes (410 gone, 429 outbox full, 413 too large) mapped as `ManagementPush` maps them.
//!   About ten times less CPU per post (measured in `docs/benchmarks.md`): for large local
//!   audiences, at the price of not exercising `ManagementPush`.

use std::sync::Arc;

use axum::body::Bytes;
use marquee::domain::ConnectionId;
use marquee::push::management::ManagementPush;
use marquee::push::{Posted, Push, PushError};

use super::registry::{PostError, Registry};

/// Which way the in-process routes post.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PushPath {
    /// Through the Management API over HTTP, with the SDK client (as in AWS).
    #[default]
    ManagementApi,
    /// Straight into the sockets' outboxes.
    Direct,
}

/// The in-process routes' [`Push`].
#[derive(Debug, Clone)]
pub enum GatewayPush {
    /// See [`PushPath::ManagementApi`].
    ManagementApi(ManagementPush),
    /// See [`PushPath::Direct`].
    Direct(DirectPush),
}

/// Posts into the registry's outboxes.
#[derive(Debug, Clone)]
pub struct DirectPush {
    registry: Arc<Registry>,
    max_message_bytes: usize,
}

impl DirectPush {
    /// Posts to the sockets of `registry`, refusing frames over `max_message_bytes`.
    #[must_use]
    pub fn new(registry: Arc<Registry>, max_message_bytes: usize) -> Self {
        Self {
            registry,
            max_message_bytes,
        }
    }

    fn post(&self, id: &ConnectionId, frame: &[u8]) -> Result<Posted, PushError> {
        if frame.len() > self.max_message_bytes {
            return Err(PushError::Refused(
                format!("a frame of {} bytes is over the message limit", frame.len()).into(),
            ));
        }
        match self
            .registry
            .post(id.as_str(), Bytes::copy_from_slice(frame))
        {
            Ok(()) => Ok(Posted::Delivered),
            Err(PostError::Gone) => Ok(Posted::Gone),
            Err(PostError::Throttled) => Err(PushError::Throttled(
                "the WebSocket client side buffer is full".into(),
            )),
        }
    }
}

impl Push for GatewayPush {
    async fn post(&self, id: &ConnectionId, frame: &[u8]) -> Result<Posted, PushError> {
        match self {
            Self::ManagementApi(push) => push.post(id, frame).await,
            Self::Direct(push) => push.post(id, frame),
        }
    }

    async fn is_connected(&self, id: &ConnectionId) -> Result<bool, PushError> {
        match self {
            Self::ManagementApi(push) => push.is_connected(id).await,
            Self::Direct(push) => Ok(push.registry.report(id.as_str()).is_some()),
        }
    }

    async fn disconnect(&self, id: &ConnectionId) -> Result<Posted, PushError> {
        match self {
            Self::ManagementApi(push) => push.disconnect(id).await,
            Self::Direct(push) => Ok(match push.registry.disconnect(id.as_str()) {
                Ok(()) => Posted::Delivered,
                Err(_) => Posted::Gone,
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::gateway::events::SocketInfo;

    fn id(text: &str) -> ConnectionId {
        ConnectionId::parse(text).unwrap()
    }

    #[tokio::test]
    async fn direct_posts_have_the_management_apis_outcomes() {
        let registry = Arc::new(Registry::default());
        let _outbox = registry.open(
            SocketInfo {
                connection_id: "live=".into(),
                connected_at: SystemTime::now(),
                source_ip: "127.0.0.1".into(),
                user_agent: None,
                domain_name: "localhost".into(),
                stage: "local".into(),
            },
            10,
        );
        let push = GatewayPush::Direct(DirectPush::new(Arc::clone(&registry), 20));

        assert_eq!(
            push.post(&id("live="), b"hello").await.unwrap(),
            Posted::Delivered
        );
        assert!(matches!(
            push.post(&id("live="), b"full now").await,
            Err(PushError::Throttled(_))
        ));
        assert!(matches!(
            push.post(&id("live="), &[b'x'; 21]).await,
            Err(PushError::Refused(_))
        ));
        assert_eq!(
            push.post(&id("gone="), b"hello").await.unwrap(),
            Posted::Gone
        );
        assert!(push.is_connected(&id("live=")).await.unwrap());
        assert!(!push.is_connected(&id("gone=")).await.unwrap());
        assert_eq!(
            push.disconnect(&id("live=")).await.unwrap(),
            Posted::Delivered
        );
        assert_eq!(push.disconnect(&id("gone=")).await.unwrap(), Posted::Gone);
    }
}
