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

use crate::budget::Lane;
use crate::work::WorkItem;

pub mod lease;
pub mod mapping;
pub mod memory;
#[cfg(feature = "sqs")]
pub mod sqs;

/// SQS takes at most 10 messages per `SendMessageBatch` and `ReceiveMessage`.
pub const BATCH_MAX: usize = 10;

/// The largest message body sent: 256 KiB. SQS accepts up to 1 MiB since August 2025, but
/// only on queues whose `MaximumMessageSize` allows it, and older queues, other partitions
/// and SQS-compatible servers keep 256 KiB. `template.yaml` sets the work queue and its
/// dead-letter queue to exactly this (a test checks), and a work item, whose frame is at most
/// 128 KiB, fits it with room to spare (see [`crate::work`]).
pub const MESSAGE_MAX_BYTES: usize = 256 * 1024;

/// The largest `SendMessageBatch` sent, summed over its message bodies: 256 KiB, the limit
/// before August 2025 (1 MiB since). Bigger batches would save round trips only: SQS bills
/// every 64 KiB of a request as one request either way.
pub const BATCH_MAX_BYTES: usize = 256 * 1024;

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
    /// A message is over [`MESSAGE_MAX_BYTES`]: SQS would refuse it, so nothing was sent.
    #[error("a queue message of {bytes} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// The message's size.
        bytes: usize,
        /// The limit it is over.
        limit: usize,
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

/// The message bodies of `items`, each within [`MESSAGE_MAX_BYTES`]: an item that re-drives
/// so many connections (`only`) that it would not fit is split into items that do.
///
/// # Errors
/// [`QueueError::TooLarge`] for an item that is still too large with one connection in
/// `only` (or none); nothing is sent then.
pub fn bodies(items: &[WorkItem]) -> Result<Vec<String>, QueueError> {
    let mut bodies = Vec::with_capacity(items.len());
    let mut pending: Vec<WorkItem> = items.iter().rev().cloned().collect();
    while let Some(item) = pending.pop() {
        let body = item.to_json();
        if body.len() <= MESSAGE_MAX_BYTES {
            bodies.push(body);
        } else if item.only.len() > 1 {
            let mut first = item;
            let second = first.only.split_off(first.only.len() / 2);
            pending.push(WorkItem {
                only: second,
                ..first.clone()
            });
            pending.push(first);
        } else {
            return Err(QueueError::TooLarge {
                bytes: body.len(),
                limit: MESSAGE_MAX_BYTES,
            });
        }
    }
    Ok(bodies)
}

/// Splits `bodies` into `SendMessageBatch` requests: at most [`BATCH_MAX`] messages and
/// [`BATCH_MAX_BYTES`] in each, in order.
///
/// # Errors
/// [`QueueError::TooLarge`] when one body is over [`MESSAGE_MAX_BYTES`]; nothing is sent then.
pub fn batches(bodies: &[String]) -> Result<Vec<&[String]>, QueueError> {
    if let Some(big) = bodies.iter().find(|b| b.len() > MESSAGE_MAX_BYTES) {
        return Err(QueueError::TooLarge {
            bytes: big.len(),
            limit: MESSAGE_MAX_BYTES,
        });
    }
    let mut batches = Vec::new();
    let mut rest = bodies;
    while !rest.is_empty() {
        let mut bytes = 0;
        let count = rest
            .iter()
            .take(BATCH_MAX)
            .take_while(|body| {
                bytes += body.len();
                bytes <= BATCH_MAX_BYTES
            })
            .count()
            .max(1);
        let Some((batch, after)) = rest.split_at_checked(count) else {
            break;
        };
        batches.push(batch);
        rest = after;
    }
    Ok(batches)
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
    /// The producer's X-Ray trace header (`AWSTraceHeader`), when it sent one.
    pub trace_header: Option<String>,
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

    /// Hides a received message for `hidden` from now (SQS's `ChangeMessageVisibility`, in
    /// whole seconds, rounded up), shortening or extending what its receive set: unless
    /// deleted, it comes back then. `deliver` holds its item on a short lease this way
    /// ([`lease`]).
    ///
    /// # Errors
    /// The receipt is not that of a message in flight (deleted, received again since, or
    /// already visible again), or the queue failed.
    fn hide_for(
        &self,
        receipt: &str,
        hidden: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Messages not yet deleted, visible or in flight (approximate on SQS).
    fn backlog(&self) -> impl Future<Output = Result<usize, QueueError>> + Send;

    /// The queue that holds `lane`'s items: room messages have a queue of their own when
    /// one is configured, so that a busy room's items never wait ahead of a sale's, nor hold
    /// every worker (each queue has its own event source and concurrency). A received item's
    /// lease and delete go to the queue of its lane.
    fn lane(&self, lane: Lane) -> &Self;
}

/// How `items` split between the sale's queue and the rooms' (those of [`Lane::Rooms`]), in
/// their order within each.
#[must_use]
pub fn by_lane(items: &[WorkItem]) -> (Vec<WorkItem>, Vec<WorkItem>) {
    items
        .iter()
        .cloned()
        .partition(|item| item.broadcast.lane != Lane::Rooms)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::{ConnectionId, EventId, Shard};
    use crate::store::Audience;
    use crate::wire::Frame;
    use crate::work::Broadcast;

    fn body(bytes: usize) -> String {
        "x".repeat(bytes)
    }

    fn sizes(batches: &[&[String]]) -> Vec<Vec<usize>> {
        batches
            .iter()
            .map(|b| b.iter().map(String::len).collect())
            .collect()
    }

    #[test]
    fn small_messages_go_ten_to_a_batch() {
        let bodies: Vec<String> = (0..23).map(|_| body(100)).collect();
        let batches = batches(&bodies).unwrap();
        assert_eq!(
            batches.iter().map(|b| b.len()).collect::<Vec<_>>(),
            [10, 10, 3]
        );
    }

    #[test]
    fn big_messages_go_as_many_to_a_batch_as_its_byte_limit_takes() {
        let bodies: Vec<String> = (0..5).map(|_| body(105_000)).collect();
        assert_eq!(
            sizes(&batches(&bodies).unwrap()),
            [
                vec![105_000, 105_000],
                vec![105_000, 105_000],
                vec![105_000]
            ]
        );
    }

    #[test]
    fn a_message_of_exactly_the_limit_is_a_batch_of_its_own() {
        let bodies = vec![body(10), body(MESSAGE_MAX_BYTES), body(10)];
        assert_eq!(
            sizes(&batches(&bodies).unwrap()),
            [vec![10], vec![MESSAGE_MAX_BYTES], vec![10]]
        );
    }

    #[test]
    fn a_message_over_the_limit_is_refused_before_anything_is_sent() {
        let bodies = vec![body(10), body(MESSAGE_MAX_BYTES + 1)];
        assert!(matches!(
            batches(&bodies),
            Err(QueueError::TooLarge { bytes, limit })
                if bytes == MESSAGE_MAX_BYTES + 1 && limit == MESSAGE_MAX_BYTES
        ));
    }

    #[test]
    fn a_redrive_too_large_for_one_message_is_split_and_keeps_every_connection() {
        let broadcast = Broadcast::new(
            &EventId::parse("e1").unwrap(),
            Audience::Everyone,
            &Frame::Announcement {
                id: "e1".into(),
                message: "x".repeat(100_000),
                time: "2026-11-22T10:00:00Z".into(),
            },
            None,
            "2026-11-22T10:00:00Z".into(),
        )
        .unwrap();
        let failed: Vec<ConnectionId> = (0..10_000)
            .map(|n| ConnectionId::parse(&format!("conn{n:012}=")).unwrap())
            .collect();
        let item = WorkItem::first(broadcast, Shard::new(3).unwrap()).redrive(failed.clone());
        assert!(item.to_json().len() > MESSAGE_MAX_BYTES);

        let bodies = bodies(&[item]).unwrap();

        assert!(bodies.len() > 1);
        assert!(bodies.iter().all(|b| b.len() <= MESSAGE_MAX_BYTES));
        let again: Vec<ConnectionId> = bodies
            .iter()
            .flat_map(|b| WorkItem::from_json(b).unwrap().only)
            .collect();
        assert_eq!(again, failed);
    }
}
