//! The `Queue` port: handing fan-out [`WorkItem`]s to `deliver`, and its adapters.
//!
//! - [`sqs::SqsQueue`]: Amazon SQS (in AWS, Lambda's event source mapping feeds `deliver`).
//! - [`memory::MemoryQueue`]: in process, with SQS's semantics (visibility timeout,
//!   redelivery, a receive limit and dead letters), for the local gateway, tests and the
//!   benchmark.
//!
//! Route logic only sends ([`Queue`]). Receiving and deleting ([`Inbox`]) are for whoever
//! plays Lambda's event source mapping outside AWS: [`mapping`]. One contract suite (in
//! `marquee-tests`) runs against both adapters.

use std::future::Future;
use std::time::Duration;

use crate::work::WorkItem;

pub mod mapping;
pub mod memory;
#[cfg(feature = "sqs")]
pub mod sqs;

/// SQS takes at most 10 messages per `SendMessageBatch` and `ReceiveMessage`.
pub const BATCH_MAX: usize = 10;

/// A queue failure, with its source chain kept.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue service failed or could not be reached.
    #[error("queue request {operation} failed")]
    Backend {
        /// Which request failed.
        operation: &'static str,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Some messages of a batch kept failing.
    #[error("queue request {operation} left {count} messages unsent after retries")]
    Unsent {
        /// Which request.
        operation: &'static str,
        /// How many messages.
        count: usize,
    },
}

impl QueueError {
    /// A failed request of an adapter's backend (SQS's, behind the `sqs` feature).
    pub fn backend(
        operation: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            operation,
            source: Box::new(source),
        }
    }
}

/// SQS delays a message by at most 15 minutes.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Where fan-out work goes.
pub trait Queue: Send + Sync {
    /// Sends `items`, all or an error (an error may follow a partial send: delivery is at
    /// least once, so a retry that sends some twice is fine).
    fn send(&self, items: &[WorkItem]) -> impl Future<Output = Result<(), QueueError>> + Send {
        self.send_after(items, Duration::ZERO)
    }

    /// As [`Queue::send`], the items becoming visible only after `delay` (at most
    /// [`MAX_DELAY`]).
    fn send_after(
        &self,
        items: &[WorkItem],
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// A received message, as Lambda's SQS event source hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The queue's id for the message.
    pub message_id: String,
    /// Handle for deleting this receipt of it.
    pub receipt: String,
    /// The body.
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
}

/// The consuming side of a queue, for [`mapping`].
pub trait Inbox: Send + Sync {
    /// Up to `max` visible messages, waiting up to `wait` for one; each stays hidden for the
    /// queue's visibility timeout unless deleted.
    fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Received>, QueueError>> + Send;

    /// Deletes a received message for good.
    fn delete(&self, receipt: &str) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Messages not yet deleted, visible or in flight (approximate on SQS).
    fn backlog(&self) -> impl Future<Output = Result<usize, QueueError>> + Send;
}
