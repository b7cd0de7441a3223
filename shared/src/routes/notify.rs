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

use std::future::Future;

use tokio::time::Instant;

use crate::domain::{EpochSeconds, EventId};
use crate::push::Push;
use crate::queue::Queue;
use crate::routes::fanout::Ports;
pub use crate::routes::reach::{Mode, NotifyError, Summary, reach};
use crate::store::{Claim, NewEntry, Store, StoreError};
use crate::work::{Announcement, Notification};

/// Numbers the notification in its artist's sequence, keeps it in the history, and reaches
/// every live subscriber of the artist, inline or through the queue; once per event id.
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
    // Boxed: the fan-out's future is large, and `once` holds it beside its own state.
    let work = Box::pin(async {
        let sequenced = sequence(ports, notification, now).await?;
        let seq = sequenced.seq.unwrap_or_default();
        let summary = reach(ports, &sequenced.broadcast()?, now, deadline).await?;
        Ok(Summary { seq, ..summary })
    });
    once(ports, &notification.id, now, deadline, work).await
}

/// Reaches every live connection with an operator's announcement; once per event id.
///
/// # Errors
/// [`NotifyError`]: the event should be retried.
pub async fn announce<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    announcement: &Announcement,
    now: EpochSeconds,
    deadline: Option<Instant>,
) -> Result<Summary, NotifyError> {
    let work = Box::pin(async { reach(ports, &announcement.broadcast()?, now, deadline).await });
    once(ports, &announcement.id, now, deadline, work).await
}

/// Runs `work` under a claim on event `id`: a lease until the deadline, marked done when the
/// work succeeds, given back when it fails. A done event does nothing; one whose lease another
/// attempt holds fails with [`NotifyError::InProgress`].
async fn once<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    id: &EventId,
    now: EpochSeconds,
    deadline: Option<Instant>,
    work: impl Future<Output = Result<Summary, NotifyError>>,
) -> Result<Summary, NotifyError> {
    let started = Instant::now();
    let settings = ports.settings;
    let lease = deadline.map_or(settings.claim_lease_seconds, |d| {
        i64::try_from(d.saturating_duration_since(started).as_secs()).unwrap_or(i64::MAX) + 1
    });
    let claim = ports
        .store
        .claim_event(
            id,
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
        Claim::Running => return Err(NotifyError::InProgress(id.clone())),
        Claim::New => {}
    }
    match work.await {
        Ok(mut summary) => {
            if let Err(err) = ports
                .store
                .finish_event(id, now.saturating_add(settings.dedup_ttl_seconds))
                .await
            {
                // The work is done or handed over; the pending claim lapses with its lease,
                // and only a redelivery of the event after that would repeat it.
                tracing::warn!(
                    event_id = %id,
                    error = &err as &dyn std::error::Error,
                    "could not mark the event done"
                );
            }
            summary.duration = started.elapsed();
            Ok(summary)
        }
        Err(err) => {
            release(ports.store, id).await;
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
    use crate::store::{ConnectionStore, EventStore};
    use std::time::Duration;

    use super::*;
    use crate::config::FanoutSettings;
    use crate::domain::Shard;
    use crate::domain::{Artist, ConnectionId};
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
        store.fans_for_tests("fan", "Adele", count, NOW).await;
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
        let ports = Ports::new(&store, &push, &queue, &settings);
        let result = notify(&ports, &event(id), NOW, None).await;
        (result, push, queue)
    }

    fn event_for(id: &str, artist: &str) -> Notification {
        Notification::new(
            EventId::parse(id).unwrap(),
            Artist::parse(artist).unwrap(),
            serde_json::json!({"artist": artist}),
            "2026-11-22T10:00:00Z".into(),
        )
        .unwrap()
    }

    /// Events notify at once, inline, each to its artist's `fans` fans (`(artist, fans)`),
    /// within one account budget of 5,000 posts/s; the virtual time each took.
    async fn inline_under_one_budget(events: &[(&str, usize)]) -> Vec<Duration> {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let queue = MemoryQueue::new(Duration::from_secs(30), 5);
        for (n, (artist, count)) in events.iter().enumerate() {
            store
                .fans_for_tests(&format!("fan-{n}"), artist, *count, NOW)
                .await;
        }
        let settings = FanoutSettings {
            inline_max: 2000,
            // What each invocation was held to before the budget was shared.
            rate_per_invocation: Some(500),
            ..FanoutSettings::default()
        };
        let budget = crate::budget::in_memory(5000);
        let ports = Ports::new(&store, &push, &queue, &settings).with_budget(budget.as_ref());
        let started = tokio::time::Instant::now();
        let runs = events.iter().enumerate().map(|(n, (artist, count))| {
            let ports = &ports;
            async move {
                let event = event_for(&format!("e{n}"), artist);
                let summary = notify(ports, &event, NOW, None).await.unwrap();
                assert_eq!(summary.mode, Mode::Inline);
                assert_eq!(summary.tally.delivered, *count as u64);
                started.elapsed()
            }
        });
        let took = futures_util::future::join_all(runs).await;
        let total: usize = events.iter().map(|(_, count)| count).sum();
        assert_eq!(push.delivered().len(), total);
        took
    }

    #[tokio::test(start_paused = true)]
    async fn inline_posting_takes_the_events_whole_budget() {
        let took = inline_under_one_budget(&[("Adele", 1000)]).await;
        // 1,000 fans at 5,000/s: 0.2 s (two 100 ms windows, the first perhaps cut short),
        // not the 2 s of a tenth of the budget.
        assert!(
            took.iter().all(|t| *t <= Duration::from_millis(250)),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_events_at_once_share_one_budget_fairly() {
        // The big sale asks first and could take every token; the small one still gets half.
        let took = inline_under_one_budget(&[("Adele", 2000), ("Björk", 250)]).await;
        // 2,250 posts within 5,000/s: more than four windows, the first perhaps cut short.
        let (big, small) = (took.first().unwrap(), took.get(1).unwrap());
        assert!(*big >= Duration::from_millis(300), "{took:?}");
        // The small event's 250 fans at half the budget: about a window, not the big one's
        // 0.4 s first.
        assert!(*small <= Duration::from_millis(200), "{took:?}");
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
        let ports = Ports::new(&store, &push, &queue, &settings);

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
        let ports = Ports::new(&store, &push, &queue, &settings);
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
