//! `deliver`: one work item from the queue, that is one page of one shard of an artist's
//! index, posted to with bounded concurrency.
//!
//! - **Hand-off first.** When the page is not the last of its stretch, the rest of the stretch
//!   is enqueued as a continuation *before* posting, so the next page is read and posted by
//!   another invocation at the same time. Parallelism grows with the audience up to the event
//!   source's `MaximumConcurrency`, instead of stopping at the shard count.
//! - **Hand-offs happen once, at one place.** A crash after the hand-off makes SQS redeliver
//!   the item, and its redelivery would hand off the same rest again, duplicating the whole
//!   remainder of the shard. And it may read another first page: the fans found gone by the
//!   first attempt are deleted by then, so the page reaches further, into the continuation's
//!   stretch, and both would count those fans in the delivery report. So the first attempt
//!   pins where its page ends in the table before sending the continuation, and marks it
//!   sent after. A later attempt reads its page up to the pin, whatever it finds, and sends
//!   the continuation only if it is not marked sent (a crash in between costs a duplicate
//!   continuation of the same stretch, which the report counts once).
//! - **Near the deadline**, no new post starts; the unstarted rest of the page is enqueued as
//!   a continuation bounded by `until`, and the item succeeds.
//! - **A crash** (timeout, out of memory, a killed process) leaves the item on the queue:
//!   SQS redelivers it after the visibility timeout. Delivery is at least once.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::FanoutSettings;
use crate::domain::{ConnectionId, EpochSeconds};
use crate::push::Push;
use crate::queue::{Queue, QueueError};
use crate::report::ItemOutcome;
use crate::routes::fanout::{Ports, Tally, as_millis, close_lapsed};
use crate::routes::report::{self, ReportError, Reported};
use crate::store::{Audience, Span, Store, StoreError, SubscriberPage};
use crate::work::{ROLE_NEXT, ROLE_REST, WorkItem};

/// Continuations a work item may descend from: one hop is one page (`FANOUT_PAGE_SIZE`
/// subscribers) of one shard, so this bounds an artist at about 160 million subscribers at
/// the default page size. Every continuation's stretch starts strictly after its parent's,
/// so a chain ends anyway; this is a guard against a bug turning it into a loop.
pub const MAX_HOPS: u32 = 10_000;

/// Rounds of re-driving fans that failed every attempt (throttled or unavailable throughout),
/// each after a longer pause (2, 4, 8, 16, 32 s). An item still failing after the last round
/// fails itself: SQS redelivers it, then sets it aside in the dead-letter queue, where the
/// connections it names can be read.
pub const MAX_REDRIVE_ROUNDS: u32 = 5;

pub use crate::work::redrive_delay;

/// What one work item did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Outcomes of the posts.
    #[serde(flatten)]
    pub tally: Tally,
    /// Live subscribers on the page.
    pub page: u64,
    /// Whether the rest of the stretch was handed to a continuation by this attempt.
    pub handed_off: bool,
    /// Subscribers of the page left to a continuation because the deadline came close.
    pub deferred: u64,
    /// Subscribers that failed every attempt, sent to a re-drive item.
    pub redriven: u64,
    /// The smallest concurrency window throttling brought this item down to.
    pub lowest_window: u64,
    /// The item's hop.
    pub hop: u32,
    /// What its finish did for the delivery report.
    pub report: Reported,
    /// Wall time.
    #[serde(rename = "duration_ms", serialize_with = "as_millis")]
    pub duration: Duration,
}

/// Why a work item failed (SQS redelivers it; after the receive limit, it is dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The table failed.
    #[error("delivery aborted: the store failed")]
    Store(#[from] StoreError),
    /// The queue refused a continuation.
    #[error("delivery aborted: the work queue failed")]
    Queue(#[from] QueueError),
    /// The item descends from too many continuations.
    #[error("work item is {0} hops deep; the limit is {MAX_HOPS}")]
    TooDeep(u32, Reported),
    /// Fans still failing after every re-drive round.
    #[error("{0} connections still failed after {MAX_REDRIVE_ROUNDS} re-drive rounds")]
    Unreachable(usize, Reported),
    /// The delivery report could not be written, or `FanoutCompleted` not sent.
    #[error("delivery aborted: the delivery report failed")]
    Report(#[from] ReportError),
}

impl DeliverError {
    /// What the item's finish did for its report, when it failed for good (and so finished).
    #[must_use]
    pub fn reported(&self) -> Reported {
        match self {
            Self::TooDeep(_, reported) | Self::Unreachable(_, reported) => *reported,
            _ => Reported::None,
        }
    }
}

/// Delivers one work item. `deadline` is when the invocation must have returned (`None`
/// when unknown). Its posts take their tokens from the account's budget (`ports.budget`), as
/// the item's event.
///
/// # Errors
/// [`DeliverError`]: the item should be redelivered.
pub async fn deliver<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    item: &WorkItem,
    now: EpochSeconds,
    deadline: Option<Instant>,
) -> Result<Summary, DeliverError> {
    let started = Instant::now();
    if item.hop > MAX_HOPS {
        if let Some(key) = &item.key {
            let dead = ItemOutcome {
                dead: true,
                ..ItemOutcome::default()
            };
            let reported = report::finish(ports, &item.broadcast, key, &dead, now).await?;
            return Err(DeliverError::TooDeep(item.hop, reported));
        }
        return Err(DeliverError::TooDeep(item.hop, Reported::None));
    }
    if !item.only.is_empty() {
        return redrive(ports, item, now, deadline, started).await;
    }
    let settings: &FanoutSettings = ports.settings;
    let broadcast = &item.broadcast;
    let span = item.span();
    let id = &broadcast.id;
    let audience = &broadcast.audience;
    let limit = settings.page_size;
    // An earlier attempt's pin fixes the page: a gone fan it cleaned up, or a fan subscribed
    // since, must not move where this item ends and its continuation starts.
    let pinned = ports.store.hand_off(id, &span).await?;
    let mut page = match pinned.as_ref().and_then(|pin| pin.next.as_ref()) {
        Some(last) => through(ports.store, audience, &span, last, now, limit).await?,
        None => ports.store.subscribers(audience, &span, now, limit).await?,
    };
    let mut children = Vec::new();
    let mut handed_off = false;
    if let Some(next) = page.next.clone() {
        let hand_off = match pinned {
            Some(pin) => pin,
            None => {
                let expires_at = now.saturating_add(settings.dedup_ttl_seconds);
                let pin = ports
                    .store
                    .pin_hand_off(id, &span, &next, expires_at)
                    .await?;
                // Another attempt of this item (its lease lapsed) pinned first: end where it ends.
                if let Some(first) = pin.next.as_ref().filter(|first| **first != next) {
                    page = through(ports.store, audience, &span, first, now, limit).await?;
                }
                pin
            }
        };
        if !hand_off.sent {
            let rest = Span {
                shard: span.shard,
                after: Some(hand_off.next.unwrap_or(next)),
                until: span.until.clone(),
            };
            ports
                .queue
                .send(&[item.continuation(rest, ROLE_NEXT)])
                .await?;
            ports.store.hand_off_sent(id, &span).await?;
            handed_off = true;
        }
        // Sent by this attempt or an earlier one: registered (once) either way.
        children.extend(item.child_key(ROLE_NEXT));
        report::register(ports, broadcast, std::mem::take(&mut children), now).await?;
    }
    let mut summary = Summary {
        page: crate::domain::saturating_u64(page.connections.len()),
        hop: item.hop,
        handed_off,
        ..Summary::default()
    };
    let recipients = broadcast.recipients(page.connections);
    let engine = ports.engine(broadcast, recipients.len(), deadline);
    let posting = engine.post_all(&recipients, broadcast.bytes()).await;
    summary.tally = posting.tally;
    summary.lowest_window = crate::domain::saturating_u64(posting.lowest_window);
    if !page.lapsed.is_empty() && engine.has_time() {
        summary.tally.closed =
            close_lapsed(ports.store, ports.push, &page.lapsed, settings.presence_max).await;
    }
    if !posting.failed.is_empty() {
        summary.redriven = crate::domain::saturating_u64(posting.failed.len());
        let again = item.redrive(posting.failed.clone());
        ports
            .queue
            .send_after(std::slice::from_ref(&again), redrive_delay(1))
            .await?;
        children.extend(again.key);
    }
    if posting.started < recipients.len() {
        let after = match posting.started.checked_sub(1) {
            Some(last) => recipients.get(last).cloned(),
            None => span.after.clone(),
        };
        let rest = Span {
            shard: span.shard,
            after,
            until: page.next.clone().or(span.until),
        };
        let deferred = item.continuation(rest, ROLE_REST);
        ports.queue.send(std::slice::from_ref(&deferred)).await?;
        children.extend(deferred.key);
        summary.deferred = crate::domain::saturating_u64(recipients.len() - posting.started);
    }
    if let Some(key) = &item.key {
        report::register(ports, broadcast, children, now).await?;
        let outcome = ItemOutcome {
            tally: summary.tally,
            ..report::outcome(&posting, summary.redriven, false)
        };
        summary.report = report::finish(ports, broadcast, key, &outcome, now).await?;
    }
    summary.duration = started.elapsed();
    Ok(summary)
}

/// The whole of `span` up to and including `last` (where an attempt of the item pinned its
/// hand-off), in pages of `limit` when fans subscribed since; its `next` is `last`.
async fn through<S: Store>(
    store: &S,
    audience: &Audience,
    span: &Span,
    last: &ConnectionId,
    now: EpochSeconds,
    limit: u32,
) -> Result<SubscriberPage, StoreError> {
    let mut stretch = Span {
        shard: span.shard,
        after: span.after.clone(),
        until: Some(last.clone()),
    };
    let mut whole = SubscriberPage::default();
    loop {
        let page = store.subscribers(audience, &stretch, now, limit).await?;
        whole.connections.extend(page.connections);
        whole.lapsed.extend(page.lapsed);
        match page.next {
            Some(next) if next < *last && stretch.after.as_ref() < Some(&next) => {
                stretch.after = Some(next);
            }
            _ => break,
        }
    }
    whole.next = Some(last.clone());
    Ok(whole)
}

/// Posts to the connections a re-drive item names; those failing again go to the next round.
async fn redrive<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    item: &WorkItem,
    now: EpochSeconds,
    deadline: Option<Instant>,
    started: Instant,
) -> Result<Summary, DeliverError> {
    let engine = ports.engine(&item.broadcast, item.only.len(), deadline);
    let posting = engine.post_all(&item.only, item.broadcast.bytes()).await;
    let mut again = posting.failed.clone();
    // Out of time: whoever was not started is re-driven too (this round did not count).
    again.extend(item.only.iter().skip(posting.started).cloned());
    if !again.is_empty() && item.round >= MAX_REDRIVE_ROUNDS {
        // Failed for good: on to the dead-letter queue, and its report cannot be complete.
        let reported = match &item.key {
            Some(key) => {
                let dead = report::outcome(&posting, 0, true);
                report::finish(ports, &item.broadcast, key, &dead, now).await?
            }
            None => Reported::None,
        };
        return Err(DeliverError::Unreachable(again.len(), reported));
    }
    let redriven = crate::domain::saturating_u64(again.len());
    if !again.is_empty() {
        let next = item.redrive(again);
        ports
            .queue
            .send_after(std::slice::from_ref(&next), redrive_delay(item.round + 1))
            .await?;
        report::register(ports, &item.broadcast, next.key.into_iter().collect(), now).await?;
    }
    let reported = match &item.key {
        Some(key) => {
            let outcome = report::outcome(&posting, redriven, false);
            report::finish(ports, &item.broadcast, key, &outcome, now).await?
        }
        None => Reported::None,
    };
    Ok(Summary {
        tally: posting.tally,
        page: crate::domain::saturating_u64(item.only.len()),
        redriven,
        lowest_window: crate::domain::saturating_u64(posting.lowest_window),
        hop: item.hop,
        report: reported,
        duration: started.elapsed(),
        ..Summary::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::domain::{Artist, ArtistList, Connection, ConnectionId, EventId, Shard};
    use crate::push::recording::RecordingPush;
    use crate::queue::Inbox;
    use crate::queue::memory::MemoryQueue;
    use crate::store::ConnectionStore;
    use crate::store::EventStore;
    use crate::store::memory::MemoryStore;
    use crate::work::Notification;

    const NOW: EpochSeconds = 1_800_000_000;

    struct Rig {
        store: MemoryStore,
        push: RecordingPush,
        queue: MemoryQueue,
        settings: FanoutSettings,
    }

    impl Rig {
        fn new(page_size: u32) -> Self {
            Self {
                store: MemoryStore::new(),
                push: RecordingPush::new(),
                queue: MemoryQueue::new(Duration::from_secs(30), 5),
                settings: FanoutSettings {
                    page_size,
                    rate_per_invocation: None,
                    retry_base: Duration::from_millis(1),
                    ..FanoutSettings::default()
                },
            }
        }

        fn ports(&self) -> Ports<'_, MemoryStore, RecordingPush, MemoryQueue> {
            Ports::new(&self.store, &self.push, &self.queue, &self.settings)
        }

        /// `count` subscribers of Adele, all in `shard`; their ids in order.
        async fn subscribers_in(&self, shard: Shard, count: usize) -> Vec<ConnectionId> {
            let mut ids: Vec<ConnectionId> = (0..)
                .map(|i| ConnectionId::parse(&format!("c{i:04}")).unwrap())
                .filter(|id| Shard::of(id) == shard)
                .take(count)
                .collect();
            ids.sort();
            for id in &ids {
                let connection = Connection::builder(id.as_str())
                    .user("u")
                    .connected_at(NOW)
                    .lifetime(100)
                    .build();
                self.store.put_connection(&connection).await.unwrap();
                let artists = ArtistList::parse(&["Adele"]).unwrap();
                self.store
                    .add_subscriptions(&connection, 0, artists.as_slice())
                    .await
                    .unwrap();
            }
            ids
        }

        async fn queued(&self) -> Vec<WorkItem> {
            self.queue
                .receive(10, Duration::ZERO)
                .await
                .unwrap()
                .iter()
                .map(|m| WorkItem::from_json(&m.body).unwrap())
                .collect()
        }
    }

    fn item(shard: Shard) -> WorkItem {
        let notification = Notification::new(
            EventId::parse("e1").unwrap(),
            Artist::parse("Adele").unwrap(),
            serde_json::json!({"artist": "Adele"}),
            "2026-11-22T10:00:00Z".into(),
        )
        .unwrap();
        WorkItem::first(notification.broadcast().unwrap(), shard)
    }

    #[tokio::test]
    async fn one_page_is_posted_and_the_rest_of_the_shard_handed_on_first() {
        let rig = Rig::new(3);
        let shard = Shard::new(4).unwrap();
        let ids = rig.subscribers_in(shard, 7).await;

        let summary = deliver(&rig.ports(), &item(shard), NOW, None)
            .await
            .unwrap();

        assert_eq!((summary.tally.delivered, summary.handed_off), (3, true));
        let posted: Vec<ConnectionId> =
            rig.push.delivered().into_iter().map(|(id, _)| id).collect();
        assert_eq!(posted, ids[..3].to_vec());
        let next = rig.queued().await;
        assert_eq!(next.len(), 1);
        assert_eq!(
            (next[0].after.as_ref(), next[0].until.as_ref(), next[0].hop),
            (Some(&ids[2]), None, 1)
        );
    }

    #[tokio::test]
    async fn a_redelivered_item_does_not_hand_its_rest_on_twice() {
        let rig = Rig::new(3);
        let shard = Shard::new(4).unwrap();
        rig.subscribers_in(shard, 7).await;
        deliver(&rig.ports(), &item(shard), NOW, None)
            .await
            .unwrap();

        let again = deliver(&rig.ports(), &item(shard), NOW, None)
            .await
            .unwrap();

        assert!(!again.handed_off);
        assert_eq!(rig.queue.sent(), 1, "one continuation in all");
        assert_eq!(
            rig.push.delivered().len(),
            6,
            "the page itself is posted again"
        );
    }

    #[tokio::test]
    async fn a_redelivered_item_ends_its_page_where_the_first_attempt_handed_on() {
        let rig = Rig::new(3);
        let shard = Shard::new(4).unwrap();
        let ids = rig.subscribers_in(shard, 7).await;
        rig.push.mark_gone(&ids[1]);
        deliver(&rig.ports(), &item(shard), NOW, None)
            .await
            .unwrap();
        assert_eq!(rig.queue.sent(), 1);

        // The gone fan's records are deleted: a fresh read of the first page would reach
        // ids[3], which the continuation (after ids[2]) covers.
        let again = deliver(&rig.ports(), &item(shard), NOW, None)
            .await
            .unwrap();

        assert_eq!((again.page, again.handed_off), (2, false));
        assert_eq!(rig.push.attempts(&ids[3]), 0, "left to the continuation");
        assert_eq!(rig.push.attempts(&ids[2]), 2);
        let next = rig.queued().await;
        assert_eq!(next.len(), 1, "one continuation in all");
        assert_eq!(next[0].after.as_ref(), Some(&ids[2]));
    }

    #[tokio::test]
    async fn a_redelivered_item_reads_past_new_subscribers_up_to_where_it_handed_on() {
        let rig = Rig::new(3);
        let shard = Shard::new(4).unwrap();
        let ids = rig.subscribers_in(shard, 40).await;
        // The first attempt pinned its page at the third of every fourth fan; the rest
        // subscribed after it.
        let early: Vec<ConnectionId> = ids.iter().step_by(4).cloned().collect();
        let late: Vec<ConnectionId> = ids
            .iter()
            .filter(|id| !early.contains(id))
            .cloned()
            .collect();
        let pin = early[2].clone();
        rig.store
            .pin_hand_off(
                &item(shard).broadcast.id,
                &item(shard).span(),
                &pin,
                NOW + 60,
            )
            .await
            .unwrap();

        let again = deliver(&rig.ports(), &item(shard), NOW, None)
            .await
            .unwrap();

        let posted: Vec<ConnectionId> =
            rig.push.delivered().into_iter().map(|(id, _)| id).collect();
        let expected: Vec<ConnectionId> = ids.iter().filter(|id| **id <= pin).cloned().collect();
        assert_eq!(
            posted, expected,
            "every fan up to the pin, over several pages"
        );
        assert!(late.iter().any(|id| *id < pin));
        assert!(
            again.handed_off,
            "the pinned continuation had not been sent"
        );
        let next = rig.queued().await;
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].after.as_ref(), Some(&pin));
    }

    #[tokio::test]
    async fn the_last_page_hands_nothing_on() {
        let rig = Rig::new(10);
        let shard = Shard::new(1).unwrap();
        rig.subscribers_in(shard, 4).await;
        let summary = deliver(&rig.ports(), &item(shard), NOW, None)
            .await
            .unwrap();
        assert_eq!((summary.tally.delivered, summary.handed_off), (4, false));
        assert_eq!(rig.queue.sent(), 0);
    }

    #[tokio::test]
    async fn near_the_deadline_the_unstarted_rest_of_the_page_goes_to_a_bounded_continuation() {
        let rig = Rig::new(3);
        let shard = Shard::new(4).unwrap();
        let ids = rig.subscribers_in(shard, 7).await;

        let summary = deliver(&rig.ports(), &item(shard), NOW, Some(Instant::now()))
            .await
            .unwrap();

        assert_eq!((summary.tally.delivered, summary.deferred), (0, 3));
        let queued = rig.queued().await;
        assert_eq!(queued.len(), 2, "the hand-off and the deferred page");
        let deferred = queued.iter().find(|i| i.after.is_none()).unwrap();
        assert_eq!(
            deferred.until.as_ref(),
            Some(&ids[2]),
            "it stops where the page did"
        );
    }

    #[tokio::test]
    async fn fans_throttled_past_every_attempt_are_re_driven_not_written_off() {
        use crate::push::recording::Failure;
        let rig = Rig::new(100);
        let shard = Shard::new(2).unwrap();
        let ids = rig.subscribers_in(shard, 40).await;
        // Every other fan is throttled far past the attempt limit.
        for id in ids.iter().step_by(2) {
            rig.push.fail_next(id, Failure::Throttled, 6);
        }

        let first = deliver(&rig.ports(), &item(shard), NOW, None)
            .await
            .unwrap();

        assert_eq!((first.tally.delivered, first.redriven), (20, 20));
        assert!(
            first.lowest_window < 64,
            "throttling shrank the window: {first:?}"
        );
        // The re-drive item is delayed; play it (and the next round) as SQS would.
        tokio::time::pause();
        let mut rounds = 0;
        while rig.push.delivered().len() < 40 {
            tokio::time::advance(redrive_delay(rounds + 1)).await;
            let queued = rig.queued().await;
            assert_eq!(queued.len(), 1, "one re-drive item per round");
            assert_eq!(queued[0].round, rounds + 1);
            deliver(&rig.ports(), &queued[0], NOW, None).await.unwrap();
            rounds += 1;
        }
        let mut reached: Vec<ConnectionId> =
            rig.push.delivered().into_iter().map(|(id, _)| id).collect();
        reached.sort();
        assert_eq!(reached, ids, "everyone, once");
    }

    #[tokio::test]
    async fn fans_failing_every_round_fail_the_item_for_the_dead_letter_queue() {
        use crate::push::recording::Failure;
        let rig = Rig::new(100);
        let shard = Shard::new(2).unwrap();
        let ids = rig.subscribers_in(shard, 3).await;
        rig.push.fail_next(&ids[0], Failure::Unavailable, 1000);
        let last = WorkItem {
            round: MAX_REDRIVE_ROUNDS,
            ..item(shard).redrive(ids.clone())
        };

        let err = deliver(&rig.ports(), &last, NOW, None).await.unwrap_err();

        assert!(
            matches!(err, DeliverError::Unreachable(1, Reported::None)),
            "{err:?}"
        );
        assert_eq!(rig.push.delivered().len(), 2);
    }

    #[tokio::test]
    async fn an_item_past_the_hop_limit_fails_for_the_dead_letter_queue() {
        let rig = Rig::new(3);
        let deep = WorkItem {
            hop: MAX_HOPS + 1,
            ..item(Shard::new(0).unwrap())
        };
        let err = deliver(&rig.ports(), &deep, NOW, None).await.unwrap_err();
        assert!(matches!(err, DeliverError::TooDeep(..)), "{err:?}");
    }
}
