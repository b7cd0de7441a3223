//! Reaching an audience: the part of a fan-out shared by notifications, announcements and
//! room messages. Inline for a small audience (lowest latency), or one work item per index
//! shard to the work queue, where `deliver` takes over.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::domain::{ConnectionId, EpochSeconds, Shard};
use crate::push::Push;
use crate::queue::Queue;
use crate::routes::fanout::{Ports, Tally, as_millis, close_lapsed};
use crate::routes::notify::NotifyError;
use crate::store::{Span, Store, StoreError, SubscriberPage};
use crate::work::{Broadcast, WorkItem};

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
        audience: u64::try_from(members).unwrap_or(u64::MAX),
        pages: u64::try_from(probes.len()).unwrap_or(u64::MAX),
        ..Summary::default()
    };
    let complete = probes.iter().all(|(_, page)| page.next.is_none());
    if !complete || members > settings.inline_max {
        let items: Vec<WorkItem> = probes
            .iter()
            .filter(|(_, page)| {
                !page.connections.is_empty() || !page.lapsed.is_empty() || page.next.is_some()
            })
            .map(|(shard, _)| WorkItem::first(broadcast.clone(), *shard))
            .collect();
        ports.queue.send(&items).await?;
        summary.mode = Mode::Queued;
        summary.enqueued = u64::try_from(items.len()).unwrap_or(u64::MAX);
        return Ok(summary);
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
    if let Some(first) = posting.failed.first() {
        // Fans that failed every attempt go to a re-drive item, in the queue's hands now.
        let shard = Shard::of(first);
        let again = WorkItem::first(broadcast.clone(), shard).redrive(posting.failed);
        ports
            .queue
            .send_after(&[again], crate::routes::deliver::redrive_delay(1))
            .await?;
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
            .map(|shard| WorkItem::first(broadcast.clone(), shard))
            .collect();
        ports.queue.send(&items).await?;
        summary.enqueued += u64::try_from(items.len()).unwrap_or(u64::MAX);
    }
    Ok(summary)
}
