//! The `deliver` handler: the work queue's SQS event source, with partial batch responses.

use crate::function::Function;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tokio::time::Instant;

use super::DeliverDeps;
use crate::domain::now_epoch_seconds;
use crate::lambda::notify::{fanout_metrics, report_metrics};
use crate::metrics::{Metrics, WORK_ITEM_FAILURES};
use crate::push::Push;
use crate::queue::lease::{self, LEASE};
use crate::queue::{Inbox, Queue};
use crate::routes::deliver::deliver;
use crate::store::Store;
use crate::trace::{self, TraceHeader};
use crate::work::WorkItem;
use tracing::Instrument;

/// Delivers each record's work item in turn; the records that failed are reported in
/// `batchItemFailures`, so SQS redelivers only those (and dead-letters them after the queue's
/// receive limit). A body that is not a work item fails for good the same way: it ends in the
/// dead-letter queue, where it can be read.
///
/// While it works on an item, the item is leased ([`lease::hold`]): hidden for [`LEASE`],
/// renewed [`lease::RENEWALS_PER_LEASE`] times per lease, so a crashed invocation's item comes
/// back within the lease instead of the queue's visibility timeout. A failed item is hidden
/// for [`lease::retry_after`] the lease and its receive count.
///
/// Runs as [`Function::Deliver`].
pub async fn handle<S: Store, P: Push, Q: Queue + Inbox>(
    deps: &DeliverDeps<S, P, Q>,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    handle_leased(deps, event, deadline, LEASE).await
}

/// [`handle`] with another lease: for tests and the benchmark, which cannot wait out the
/// real one.
pub async fn handle_leased<S: Store, P: Push, Q: Queue + Inbox>(
    deps: &DeliverDeps<S, P, Q>,
    event: SqsEvent,
    deadline: Option<Instant>,
    lease: Duration,
) -> SqsBatchResponse {
    Function::Deliver
        .run(Box::pin(serve(deps, event, deadline, lease)))
        .await
}

async fn serve<S: Store, P: Push, Q: Queue + Inbox>(
    deps: &DeliverDeps<S, P, Q>,
    event: SqsEvent,
    deadline: Option<Instant>,
    lease: Duration,
) -> SqsBatchResponse {
    let ports = deps.ports();
    let mut response = SqsBatchResponse::default();
    let mut metrics = Metrics::new("deliver");
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let item = match WorkItem::from_json(record.body.as_deref().unwrap_or_default()) {
            Ok(item) => item,
            Err(err) => {
                tracing::error!(message_id, error = %err, retryable = false, "invalid work item");
                metrics.count(WORK_ITEM_FAILURES, 1);
                response.add_failure(message_id);
                continue;
            }
        };
        let broadcast = &item.broadcast;
        // The queue the item came from: its lane's (room messages may have their own).
        let inbox = deps.queue.lane(broadcast.lane);
        // A link to the producer (`notify`), not a parent; what this item hands on carries
        // the producer's header, so every item of the event links to one trace.
        let producer = TraceHeader::of_record(&record.attributes);
        let span = trace::consumer_span(&message_id, producer.as_ref());
        let work = deliver(&ports, &item, now_epoch_seconds(), deadline);
        let receipt = record.receipt_handle.as_deref().unwrap_or_default();
        let result = trace::carrying(producer.clone(), async {
            if receipt.is_empty() {
                work.await
            } else {
                lease::hold(inbox, &message_id, receipt, lease, work).await
            }
        })
        .instrument(span)
        .await;
        let link = producer.as_ref().map(TraceHeader::trace_id);
        if result.is_err() && !receipt.is_empty() {
            let receives = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            lease::hide(
                inbox,
                &message_id,
                receipt,
                lease::retry_after(lease, receives),
            )
            .await;
        }
        match &result {
            Ok(summary) => {
                fanout_metrics(&mut metrics, &summary.tally, &broadcast.time);
                report_metrics(&mut metrics, summary.report);
                metrics
                    .count("Redriven", summary.redriven)
                    .count("Deferred", summary.deferred);
            }
            Err(err) => {
                metrics.count(WORK_ITEM_FAILURES, 1);
                report_metrics(&mut metrics, err.reported());
            }
        }
        match result {
            Ok(summary) => tracing::info!(
                message_id,
                event_id = %broadcast.id,
                audience = %broadcast.audience,
                shard = item.shard.number(),
                hop = summary.hop,
                page = summary.page,
                handed_off = summary.handed_off,
                deferred = summary.deferred,
                redriven = summary.redriven,
                lowest_window = summary.lowest_window,
                delivered = summary.tally.delivered,
                gone = summary.tally.gone,
                failed = summary.tally.failed,
                retried = summary.tally.retried,
                duration_ms = crate::domain::saturating_u64(summary.duration.as_millis()),
                messaging.system = "aws_sqs",
                link.trace_id = link,
                "work item delivered"
            ),
            Err(err) => {
                tracing::error!(
                    message_id,
                    event_id = %broadcast.id,
                    shard = item.shard.number(),
                    hop = item.hop,
                    error = &err as &dyn std::error::Error,
                    retryable = true,
                    link.trace_id = link,
                    "work item failed"
                );
                response.add_failure(message_id);
            }
        }
    }
    metrics.emit();
    response
}
