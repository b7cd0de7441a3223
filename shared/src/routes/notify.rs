//! `notify`: validate and claim an on-sale event, then reach every live subscriber of its
//! artist: inline for a small audience (lowest latency), or by handing one work item per index
//! shard to the work queue, where `deliver` takes over.
//!
//! - The claim is a lease, not a verdict. It is taken as *pending* until the invocation's
//!   deadline and marked *done* only once every subscriber was reached or handed to the queue.
//!   An attempt that crashed, timed out or ran out of memory leaves a pending claim whose lease
//!   runs out, and Lambda's retry takes it over and does the whole work again: at least once,
//!   never silently lost. A retry that arrives while another attempt holds the lease fails, so
//!   Lambda tries again later.
//! - The audience is measured by reading the first page of every shard side by side. When
//!   every shard fits in one page and the total is at most `INLINE_MAX_SUBSCRIBERS`, those
//!   connections are posted to at once; otherwise each non-empty shard becomes a work item.
//! - If the store or the queue fails, the claim is given back and the error returned, so the
//!   event is retried (connections already reached may see it twice: the notification `id`
//!   lets clients drop the copy).

use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::domain::{ConnectionId, EpochSeconds, EventId, Shard};
use crate::push::Push;
use crate::queue::{Queue, QueueError};
use crate::routes::fanout::{Pacer, Ports, Tally, as_millis, close_lapsed};
use crate::store::{Claim, NewEntry, Span, Store, StoreError, SubscriberPage};
use crate::work::{Notification, WorkItem};

/// How a notify reached the audience.
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

/// What one notify did. Logged as one line per event, and the invocation's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// How the audience was reached.
    pub mode: Mode,
    /// The notification's place in its artist's sequence (0 when nothing was done).
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
}

/// Reaches every live subscriber of the notification's artist, inline or through the queue.
///
/// `deadline` is when the invocation must have returned (`None` when unknown): the claim's
/// lease ends there, and inline posting stops short of it (what is left goes to the queue).
///
/// # Errors
/// [`NotifyError`]: the event should be retried.
pub async fn notify<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    notification: &Notification,
    now: EpochSeconds,
    deadline: Option<Instant>,
) -> Result<Summary, NotifyError> {
    let started = Instant::now();
    let settings = ports.settings;
    let lease = deadline.map_or(settings.claim_lease_seconds, |d| {
        i64::try_from(d.saturating_duration_since(started).as_secs()).unwrap_or(i64::MAX) + 1
    });
    let claim = ports
        .store
        .claim_event(
            &notification.id,
            now,
            now.saturating_add(lease),
            now.saturating_add(settings.dedup_ttl_seconds),
        )
        .await?;
    match claim {
        Claim::Done => {
            return Ok(Summary {
                duration: started.elapsed(),
                ..Summary::default()
            });
        }
        Claim::Running => return Err(NotifyError::InProgress(notification.id.clone())),
        Claim::New => {}
    }
    let result = match sequence(ports, notification, now).await {
        Ok(sequenced) => reach(ports, &sequenced, now, deadline)
            .await
            .map(|summary| Summary {
                seq: sequenced.seq.unwrap_or_default(),
                ..summary
            }),
        Err(err) => Err(err.into()),
    };
    match result {
        Ok(mut summary) => {
            if let Err(err) = ports
                .store
                .finish_event(
                    &notification.id,
                    now.saturating_add(settings.dedup_ttl_seconds),
                )
                .await
            {
                // The work is done or handed over; the pending claim lapses with its lease,
                // and only a redelivery of the event after that would repeat it.
                tracing::warn!(
                    event_id = %notification.id,
                    error = &err as &dyn std::error::Error,
                    "could not mark the event done"
                );
            }
            summary.duration = started.elapsed();
            Ok(summary)
        }
        Err(err) => {
            release(ports.store, &notification.id).await;
            Err(err)
        }
    }
}

/// Gives the notification its place in the artist's sequence and keeps it in the history
/// (a redelivered event gets the number it was given the first time).
async fn sequence<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    notification: &Notification,
    now: EpochSeconds,
) -> Result<Notification, StoreError> {
    let detail = notification.detail.to_string();
    let seq = ports
        .store
        .sequence(
            NewEntry {
                event: &notification.id,
                artist: &notification.artist,
                detail: &detail,
                time: &notification.time,
            },
            ports.settings.history,
            now,
            now.saturating_add(ports.settings.dedup_ttl_seconds),
        )
        .await?;
    Ok(notification.clone().with_seq(seq))
}

async fn reach<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    notification: &Notification,
    now: EpochSeconds,
    deadline: Option<Instant>,
) -> Result<Summary, NotifyError> {
    let settings = ports.settings;
    let artist = notification.artist.key();
    let probe_limit = settings
        .page_size
        .min(u32::try_from(settings.inline_max).unwrap_or(u32::MAX))
        .max(1);
    let probes = join_all(Shard::all().map(|shard| async move {
        let page = ports
            .store
            .subscribers(artist, &Span::whole(shard), now, probe_limit)
            .await;
        page.map(|page| (shard, page))
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<(Shard, SubscriberPage)>, StoreError>>()?;
    let audience: usize = probes.iter().map(|(_, page)| page.connections.len()).sum();
    let mut summary = Summary {
        audience: u64::try_from(audience).unwrap_or(u64::MAX),
        pages: u64::try_from(probes.len()).unwrap_or(u64::MAX),
        ..Summary::default()
    };
    let complete = probes.iter().all(|(_, page)| page.next.is_none());
    if !complete || audience > settings.inline_max {
        let items: Vec<WorkItem> = probes
            .iter()
            .filter(|(_, page)| {
                !page.connections.is_empty() || !page.lapsed.is_empty() || page.next.is_some()
            })
            .map(|(shard, _)| WorkItem::first(notification.clone(), *shard))
            .collect();
        ports.queue.send(&items).await?;
        summary.mode = Mode::Queued;
        summary.enqueued = u64::try_from(items.len()).unwrap_or(u64::MAX);
        return Ok(summary);
    }
    let mut ids: Vec<ConnectionId> = Vec::with_capacity(audience);
    let mut lapsed: Vec<ConnectionId> = Vec::new();
    for (_, page) in probes {
        ids.extend(page.connections);
        lapsed.extend(page.lapsed);
    }
    let pacer = Pacer::new(settings.rate_per_invocation);
    let engine = ports.engine(pacer.as_ref(), deadline);
    let posting = engine
        .post_all(&ids, &notification.frame().to_bytes())
        .await;
    summary.mode = Mode::Inline;
    summary.tally = posting.tally;
    if !lapsed.is_empty() && engine.has_time() {
        summary.tally.closed = close_lapsed(ports.store, ports.push, &lapsed).await;
    }
    if let Some(first) = posting.failed.first() {
        // Fans that failed every attempt go to a re-drive item, in the queue's hands now.
        let shard = Shard::of(first);
        let again = WorkItem::first(notification.clone(), shard).redrive(posting.failed);
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
            .map(|shard| WorkItem::first(notification.clone(), shard))
            .collect();
        ports.queue.send(&items).await?;
        summary.enqueued += u64::try_from(items.len()).unwrap_or(u64::MAX);
    }
    Ok(summary)
}

async fn release<S: Store>(store: &S, id: &EventId) {
    if let Err(err) = store.release_event(id).await {
        tracing::error!(
            event_id = %id,
            error = &err as &dyn std::error::Error,
            "could not release the event claim; a retry can take it once its lease ends"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::FanoutSettings;
    use crate::domain::{Artist, ArtistList, Connection, ConnectionId, Scope, UserId};
    use crate::push::recording::RecordingPush;
    use crate::queue::memory::MemoryQueue;
    use crate::store::memory::MemoryStore;

    const NOW: EpochSeconds = 1_800_000_000;

    fn event(id: &str) -> Notification {
        Notification::new(
            EventId::parse(id).unwrap(),
            Artist::parse("Adele").unwrap(),
            serde_json::json!({"artist": "Adele"}),
            "2026-11-22T10:00:00Z".into(),
        )
        .unwrap()
    }

    async fn fans(store: &MemoryStore, count: usize) {
        for i in 0..count {
            let connection = Connection {
                id: ConnectionId::parse(&format!("fan-{i:04}")).unwrap(),
                user_id: UserId::parse("u").unwrap(),
                connected_at: NOW,
                expires_at: NOW + 100,
                scope: Scope::Any,
            };
            store.put_connection(&connection).await.unwrap();
            let artists = ArtistList::parse(&["Adele"]).unwrap();
            store
                .add_subscriptions(&connection, 0, artists.as_slice())
                .await
                .unwrap();
        }
    }

    async fn run(
        inline_max: usize,
        count: usize,
        id: &str,
    ) -> (Result<Summary, NotifyError>, RecordingPush, MemoryQueue) {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let queue = MemoryQueue::new(Duration::from_secs(30), 5);
        fans(&store, count).await;
        let settings = FanoutSettings {
            inline_max,
            rate_per_invocation: None,
            ..FanoutSettings::default()
        };
        let ports = Ports {
            store: &store,
            push: &push,
            queue: &queue,
            settings: &settings,
        };
        let result = notify(&ports, &event(id), NOW, None).await;
        (result, push, queue)
    }

    #[tokio::test]
    async fn a_small_audience_is_posted_to_inline() {
        let (summary, push, queue) = run(100, 40, "e1").await;
        let summary = summary.unwrap();
        assert_eq!((summary.mode, summary.tally.delivered), (Mode::Inline, 40));
        assert_eq!((push.delivered().len(), queue.sent()), (40, 0));
    }

    #[tokio::test]
    async fn a_large_audience_becomes_one_work_item_per_non_empty_shard() {
        let (summary, push, queue) = run(10, 40, "e1").await;
        let summary = summary.unwrap();
        let shards = {
            let mut s: Vec<Shard> = (0..40)
                .map(|i| Shard::of(&ConnectionId::parse(&format!("fan-{i:04}")).unwrap()))
                .collect();
            s.sort_unstable();
            s.dedup();
            s.len()
        };
        assert_eq!(summary.mode, Mode::Queued);
        assert_eq!(summary.enqueued, shards as u64);
        assert_eq!(
            (push.delivered().len() as u64, queue.sent()),
            (0, shards as u64)
        );
    }

    #[tokio::test]
    async fn a_false_410_is_confirmed_before_anything_is_deleted_and_the_post_is_retried() {
        use crate::push::recording::Failure;
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let queue = MemoryQueue::new(Duration::from_secs(30), 5);
        fans(&store, 2).await;
        let (live, gone) = (
            ConnectionId::parse("fan-0000").unwrap(),
            ConnectionId::parse("fan-0001").unwrap(),
        );
        push.fail_next(&live, Failure::FalseGone, 1);
        push.mark_gone(&gone);
        let settings = FanoutSettings {
            retry_base: Duration::from_millis(1),
            ..FanoutSettings::default()
        };
        let ports = Ports {
            store: &store,
            push: &push,
            queue: &queue,
            settings: &settings,
        };

        let summary = notify(&ports, &event("e1"), NOW, None).await.unwrap();

        assert_eq!((summary.tally.delivered, summary.tally.gone), (1, 1));
        assert_eq!(
            push.frames_to(&live).len(),
            1,
            "posted again after the false 410"
        );
        assert!(
            store.connection_state(&live, NOW).await.unwrap().is_some(),
            "kept"
        );
        assert!(
            store.connection_state(&gone, NOW).await.unwrap().is_none(),
            "deleted"
        );
    }

    #[tokio::test]
    async fn an_event_is_done_once_and_a_running_claim_is_retried_later() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let queue = MemoryQueue::new(Duration::from_secs(30), 5);
        fans(&store, 3).await;
        let settings = FanoutSettings::default();
        let ports = Ports {
            store: &store,
            push: &push,
            queue: &queue,
            settings: &settings,
        };
        let other = event("e2");
        store
            .claim_event(&other.id, NOW, NOW + 30, NOW + 60)
            .await
            .unwrap();

        let first = notify(&ports, &event("e1"), NOW, None).await.unwrap();
        let again = notify(&ports, &event("e1"), NOW + 1, None).await.unwrap();
        let running = notify(&ports, &other, NOW + 1, None).await;

        assert_eq!((first.mode, again.mode), (Mode::Inline, Mode::Duplicate));
        assert!(
            matches!(running, Err(NotifyError::InProgress(_))),
            "{running:?}"
        );
        assert_eq!(push.delivered().len(), 3);
    }
}
