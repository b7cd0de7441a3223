//! Lambda's SQS event source mapping, played outside AWS: pollers receive batches from an
//! [`Inbox`], hand each to a handler as the [`SqsEvent`] Lambda would build, and delete every
//! message the handler did not report in `batchItemFailures`. A handler that fails or is
//! dropped deletes nothing, so its messages come back after the visibility timeout, as in AWS.
//!
//! The local gateway runs `deliver` behind it; tests and the benchmark use it to run workers.

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};

use super::{Inbox, QueueError, Received};

/// The `eventSourceARN` reported in events built outside AWS.
pub const LOCAL_QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:000000000000:marquee-local-work";

/// The event Lambda's SQS event source builds for `batch`.
#[must_use]
pub fn sqs_event(batch: &[Received]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = batch
        .iter()
        .map(|received| {
            let mut message = SqsMessage::default();
            message.message_id = Some(received.message_id.clone());
            message.receipt_handle = Some(received.receipt.clone());
            message.body = Some(received.body.clone());
            message.attributes.insert(
                "ApproximateReceiveCount".into(),
                received.receive_count.to_string(),
            );
            if let Some(header) = &received.trace_header {
                message
                    .attributes
                    .insert(crate::trace::AWS_TRACE_HEADER.into(), header.clone());
            }
            message.event_source = Some("aws:sqs".into());
            message.event_source_arn = Some(LOCAL_QUEUE_ARN.into());
            message.aws_region = Some("us-east-1".into());
            message
        })
        .collect();
    event
}

/// Receives one batch (up to `batch_size`, waiting up to `wait`), runs `handler` on it and
/// deletes what succeeded. Returns how many messages were received.
///
/// # Errors
/// The queue's error; a handler's failure is not an error here (its messages come back).
pub async fn poll_once<I, H, F, E>(
    inbox: &I,
    batch_size: usize,
    wait: Duration,
    handler: H,
) -> Result<usize, QueueError>
where
    I: Inbox,
    H: FnOnce(SqsEvent) -> F,
    F: Future<Output = Result<SqsBatchResponse, E>>,
{
    let batch = inbox.receive(batch_size, wait).await?;
    if batch.is_empty() {
        return Ok(0);
    }
    let Ok(response) = handler(sqs_event(&batch)).await else {
        // The invocation failed as a whole: every message comes back.
        return Ok(batch.len());
    };
    for received in &batch {
        let failed = response
            .batch_item_failures
            .iter()
            .any(|f| f.item_identifier == received.message_id);
        if !failed {
            inbox.delete(&received.receipt).await?;
        }
    }
    Ok(batch.len())
}

/// Polls `inbox` one message at a time for ever, as one concurrent invocation of an event
/// source mapping: each batch goes to `handler`; a failing queue is logged and retried after
/// a second.
pub async fn poll_forever<I, H, F, E>(inbox: &I, handler: H)
where
    I: Inbox,
    H: Fn(SqsEvent) -> F,
    F: Future<Output = Result<SqsBatchResponse, E>>,
{
    loop {
        if let Err(err) = poll_once(inbox, 1, std::time::Duration::from_secs(5), &handler).await {
            tracing::error!(
                error = &err as &dyn std::error::Error,
                "work queue poll failed"
            );
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}
