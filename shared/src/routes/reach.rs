//! Reaching an audience: the part of a fan-out shared by notifications, announcements and
//! room messages. Inline for a small audience (lowest latency), or one work item per index
//! shard to the work queue, where `deliver` takes over.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::budget::Lane;
use crate::domain::{ConnectionId, EpochSeconds, EventId, Shard};
use crate::push::Push;
use crate::queue::{Queue, QueueError};
use crate::report::ItemKey;
use crate::routes::fanout::{Ports, Tally, as_millis, close_lapsed};
use crate::routes::report::{self, Reported};
use crate::store::Audience;
use crate::store::{Span, Store, StoreError, SubscriberPage};
use crate::work::{Broadcast, ROLE_REDRIVE, Undeliverable, WorkItem};

/// Why a notify failed as a whole (the event should be retried).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The table failed while claiming the event or reading subscribers.
    #[error("fan-out aborted: the store failed")]
    Store(#[from] StoreError),
    /// The work queue refused the work items.
    #[error("fan-out aborted: the work queue failed")]
    Queue(#[from] QueueError),
    /// Another attempt holds the event's lease: it may still finish. Retry later.
    #[error("another attempt is processing event {0}")]
    InProgress(EventId),
    /// The frame cannot be posted (too large): retrying will not help.
    #[error("the event cannot be delivered")]
    Undeliverable(#[from] Undeliverable),
    /// The delivery report could not be written, or `FanoutCompleted` not sent.
    #[error("fan-out aborted: the delivery report failed")]
    Report(#[from] report::ReportError),
}

/// How a fan-out reached its audience.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Nothing was done: the event was already done.
    #[default]
    Duplicate,
    /// Posted from this invocation.
    Inline,
    /// Handed to the work queue, one item per shard.
    Queued,
}

/// What one fan-out (a notify, an announcement, a room message) did. Logged as one line per
/// event, and the invocation's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// How the audience was reached.
    pub mode: Mode,
    /// A notification's place in its artist's sequence (0 when nothing was done, and for
    /// broadcasts that are not numbered).
    pub seq: u64,
    /// Subscribers found by the probe (all of them when inline; at least this many when
    /// queued).
    pub audience: u64,
    /// Work items enqueued.
    pub enqueued: u64,
    /// Outcomes of inline posts.
    #[serde(flatten)]
    pub tally: Tally,
    /// Index pages read.
    pub pages: u64,
    /// What the root's finish did for the delivery report.
    pub report: Reported,
    /// Wall time.
    #[serde(rename = "duration_ms", serialize_with = "as_millis")]
    pub duration: Duration,
}

/// Reaches every live member of the broadcast's audience (but the excluded connection): by
/// posting inline when the whole audience fits in one probe page per shard and at most
/// `INLINE_MAX_SUBSCRIBERS`, otherwise by handing one work item per non-empty shard to the
/// queue. Inline posting stops short of `deadline`; what is left goes to the queue.
///
/// # Errors
/// [`NotifyError`] when the store or the queue fails.
pub async fn reach<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    broadcast: &Broadcast,
    now: EpochSeconds,
    deadline: Option<Instant>,
) -> Result<Summary, NotifyError> {
    let settings = ports.settings;
    let audience = &broadcast.audience;
    let probe_limit = settings
        .page_size
        .min(u32::try_from(settings.inline_max).unwrap_or(u32::MAX))
        .max(1);
    let probes = join_all(Shard::all().map(|shard| async move {
        let page = ports
            .store
            .subscribers(audience, &Span::whole(shard), now, probe_limit)
            .await;
        page.map(|page| (shard, page))
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<(Shard, SubscriberPage)>, StoreError>>()?;
    let members: usize = probes.iter().map(|(_, page)| page.connections.len()).sum();
    let mut summary = Summary {
        audience: crate::domain::saturating_u64(members),
        pages: crate::domain::saturating_u64(probes.len()),
        ..Summary::default()
    };
    let complete = probes.iter().all(|(_, page)| page.next.is_none());
    let root = ItemKey::root();
    if !complete || members > settings.inline_max {
        let audience = match &broadcast.audience {
            Audience::Artist(key) => ports.store.subscriber_count(key).await?,
            Audience::Everyone => summary.audience,
        };
        report::open(ports, broadcast, audience, now).await?;
        let items: Vec<WorkItem> = probes
            .iter()
            .filter(|(_, page)| {
                !page.connections.is_empty() || !page.lapsed.is_empty() || page.next.is_some()
            })
            .map(|(shard, _)| {
                WorkItem::first(broadcast.clone(), *shard)
                    .keyed(root.child(&format!("shard-{}", shard.number())))
            })
            .collect();
        ports.queue.send(&items).await?;
        report::register(ports, broadcast, keys(&items), now).await?;
        summary.mode = Mode::Queued;
        summary.enqueued = crate::domain::saturating_u64(items.len());
        summary.report = report::finish(
            ports,
            broadcast,
            &root,
            &crate::report::ItemOutcome::default(),
            now,
        )
        .await?;
        return Ok(summary);
    }
    // A room message small enough to go inline has no report: it is not an event.
    let reported = broadcast.lane != Lane::Rooms;
    if reported {
        report::open(ports, broadcast, summary.audience, now).await?;
    }
    let mut ids: Vec<ConnectionId> = Vec::with_capacity(members);
    let mut lapsed: Vec<ConnectionId> = Vec::new();
    for (_, page) in probes {
        ids.extend(broadcast.recipients(page.connections));
        lapsed.extend(page.lapsed);
    }
    // The only poster of this event: it may take the account's whole budget, less what the
    // other posters of the moment take (their fair shares).
    let engine = ports.engine(broadcast, ids.len(), deadline);
    let posting = engine.post_all(&ids, broadcast.bytes()).await;
    summary.mode = Mode::Inline;
    summary.tally = posting.tally;
    if !lapsed.is_empty() && engine.has_time() {
        summary.tally.closed =
            close_lapsed(ports.store, ports.push, &lapsed, settings.presence_max).await;
    }
    let mut sent: Vec<WorkItem> = Vec::new();
    let redriven = crate::domain::saturating_u64(posting.failed.len());
    if let Some(first) = posting.failed.first() {
        // Fans that failed every attempt go to a re-drive item, in the queue's hands now.
        let shard = Shard::of(first);
        let mut again = WorkItem::first(broadcast.clone(), shard).redrive(posting.failed.clone());
        if reported {
            again = again.keyed(root.child(ROLE_REDRIVE));
        }
        ports
            .queue
            .send_after(std::slice::from_ref(&again), crate::work::redrive_delay(1))
            .await?;
        sent.push(again);
        summary.enqueued += 1;
    }
    if let Some(rest) = ids.get(posting.started..).filter(|rest| !rest.is_empty()) {
        // Out of time: the shards of whoever was not started go to the queue whole (those
        // already reached in them may see the notification twice).
        let mut shards: Vec<Shard> = rest.iter().map(Shard::of).collect();
        shards.sort_unstable();
        shards.dedup();
        let items: Vec<WorkItem> = shards
            .into_iter()
            .map(|shard| {
                let item = WorkItem::first(broadcast.clone(), shard);
                if reported {
                    item.keyed(root.child(&format!("rest-{}", shard.number())))
                } else {
                    item
                }
            })
            .collect();
        ports.queue.send(&items).await?;
        summary.enqueued += crate::domain::saturating_u64(items.len());
        sent.extend(items);
    }
    if reported {
        report::register(ports, broadcast, keys(&sent), now).await?;
        let mut outcome = report::outcome(&posting, redriven, false);
        outcome.tally = summary.tally;
        summary.report = report::finish(ports, broadcast, &root, &outcome, now).await?;
    }
    Ok(summary)
}

/// The report keys of `items`.
fn keys(items: &[WorkItem]) -> Vec<ItemKey> {
    items.iter().filter_map(|item| item.key.clone()).collect()
}
