//! The fan-out pipeline at scale: `notify` → the work queue (a real SQS-compatible server) →
//! `deliver` workers, against DynamoDB Local and the Management API stand-in reached by the
//! real SDK client. Crashes, faults and a hot artist.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use futures_util::StreamExt;
use marquee::config::FanoutSettings;
use marquee::domain::{ConnectionId, Shard, now_epoch_seconds};
use marquee::function::Function;
use marquee::lambda::{deliver, notify};
use marquee::push::management::ManagementPush;
use marquee::push::recording::RecordingPush;
use marquee::queue::mapping::poll_once;
use marquee::queue::memory::MemoryQueue;
use marquee::queue::sqs::SqsQueue;
use marquee::queue::{Inbox, Queue, QueueError};
use marquee::routes::fanout::Ports;
use marquee::routes::notify::{Mode, NotifyError};
use marquee::routes::subscribe::{ClientFrame, SubscribeSettings, handle_frame};
use marquee::store::{Audience, Span};
use marquee::wire::Frame;
use marquee::work::WorkItem;
use marquee_tests::pipeline::Workers;
use serde_json::Value;

use crate::support::world::{World, connect_all, fast, tickets_on_sale, world, world_with};
use marquee::store::{ConnectionStore, RoomStore};

/// Every id's shard, counted.
fn per_shard(ids: &[String]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts
            .entry(Shard::of(&ConnectionId::parse(id).unwrap()).number())
            .or_default() += 1;
    }
    counts
}

/// Deliveries beyond the first, over `ids`; panics naming anyone who got nothing.
fn duplicates_among(counts: &HashMap<String, usize>, ids: &[String]) -> usize {
    let missed: Vec<&String> = ids.iter().filter(|id| !counts.contains_key(*id)).collect();
    assert!(
        missed.is_empty(),
        "{} never notified: {missed:?}",
        missed.len()
    );
    ids.iter().map(|id| counts[id] - 1).sum()
}

async fn dead_letter_count(world: &World) -> usize {
    world
        .dead_letters
        .receive(10, Duration::ZERO)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn ten_thousand_subscribers_over_every_shard_are_each_reached_and_copies_come_only_from_redeliveries()
 {
    let w = world(200).await;
    let fans = w.subscribers("fan", "Adele", 10_000, 600).await;
    let others = w.subscribers("other", "Muse", 50, 600).await;
    assert_eq!(per_shard(&fans).len(), 16, "every shard holds fans");

    let summary = w.notify(tickets_on_sale("evt-10k", "Adele")).await.unwrap();
    let drained = w.drain(Workers::steady(4)).await;

    assert_eq!((summary.mode, summary.enqueued), (Mode::Queued, 16));
    let counts = w.delivery_counts();
    // Exactly once unless an item came back: on a starved machine a lease can lapse before
    // its renewal, and the item is then worked twice (at least once is the promise; clients
    // drop duplicates by id). Then at most that item's page is posted again.
    let duplicates = duplicates_among(&counts, &fans);
    assert!(
        duplicates <= drained.redelivered * 200,
        "{duplicates} duplicates with {drained:?}"
    );
    if drained.redelivered == 0 {
        assert_eq!(duplicates, 0);
    }
    assert_eq!(counts.len(), fans.len(), "{others:?} got nothing");
    assert!(
        drained.received >= 50,
        "about one item per page: {drained:?}"
    );
    assert_eq!(dead_letter_count(&w).await, 0);
}

#[tokio::test]
async fn deliver_killed_on_a_fifth_of_its_items_still_reaches_everyone_with_bounded_copies() {
    let page = 50;
    let w = world_with(fast(page), Duration::from_secs(3)).await;
    let fans = w.subscribers("fan", "Adele", 3000, 600).await;

    w.notify(tickets_on_sale("evt-crash", "Adele"))
        .await
        .unwrap();
    let drained = w
        .drain(Workers {
            count: 4,
            crash_rate: 0.2,
            crash_within: Duration::from_millis(300),
            seed: 7,
            lease: Duration::from_secs(2),
        })
        .await;

    assert!(
        drained.crashes * 10 >= drained.received,
        "at least 10% of the items were killed: {drained:?}"
    );
    let duplicates = duplicates_among(&w.delivery_counts(), &fans);
    // A kill repeats at most its own page and one page of a duplicated continuation.
    let bound = drained.crashes * 2 * page as usize;
    eprintln!("crash run: {drained:?}, {duplicates} duplicates (bound {bound})");
    assert!(duplicates <= bound, "{duplicates} duplicates > {bound}");
    assert_eq!(dead_letter_count(&w).await, 0);
}

#[tokio::test]
async fn a_deliver_killed_mid_page_is_redelivered_within_its_lease_not_the_visibility_timeout() {
    // Items go through the queue, and each takes about two seconds: some twenty fans per
    // shard, posted one at a time, each first post answered after 100 ms.
    let slow = FanoutSettings {
        inline_max: 0,
        concurrency: 1,
        ..fast(50)
    };
    let visibility = Duration::from_secs(60);
    let lease = Duration::from_secs(2);
    let w = world_with(slow, visibility).await;
    let fans = w.subscribers("fan", "Adele", 320, 600).await;
    for fan in &fans {
        w.api.stall_next(fan, Duration::from_millis(100), 1);
    }
    w.notify(tickets_on_sale("evt-lease", "Adele"))
        .await
        .unwrap();

    // One invocation is killed a second into its item, its future dropped mid-page.
    let died = AtomicBool::new(false);
    let received = Function::Deliver
        .run(poll_once(
            &w.deliver.queue,
            1,
            Duration::from_secs(1),
            |event| {
                let handled = deliver::handle_leased(&w.deliver, event, None, lease);
                async {
                    tokio::time::timeout(Duration::from_secs(1), handled)
                        .await
                        .inspect_err(|_| died.store(true, Ordering::Relaxed))
                }
            },
        ))
        .await
        .unwrap();
    let killed_at = Instant::now();
    let posted_before_the_kill = w.api.delivered().len();
    let drained = w
        .drain(Workers {
            lease,
            ..Workers::steady(8)
        })
        .await;

    assert_eq!(received, 1);
    assert!(
        died.load(Ordering::Relaxed),
        "killed before its item was done"
    );
    assert!(
        posted_before_the_kill > 0,
        "killed after it started posting"
    );
    // The queue is drained only once the killed item came back and was worked: within its
    // lease (and the others' few seconds of work), not at the 60 s visibility timeout.
    let recovered_in = killed_at.elapsed();
    assert!(
        recovered_in < visibility / 3,
        "drained {recovered_in:?} after the kill: {drained:?}"
    );
    let counts = w.delivery_counts();
    assert_eq!(counts.len(), fans.len(), "every fan reached");
    assert_eq!(dead_letter_count(&w).await, 0);
}

#[tokio::test]
async fn an_artist_whose_key_is_longer_than_a_name_is_reached_through_the_queue() {
    let queued_only = FanoutSettings {
        inline_max: 0,
        ..fast(50)
    };
    let w = world_with(queued_only, Duration::from_secs(10)).await;
    let fans = w
        .subscribers("fan", crate::support::LONG_KEY_NAME, 3, 600)
        .await;

    let summary = w
        .notify(tickets_on_sale(
            "evt-long-key",
            crate::support::LONG_KEY_NAME,
        ))
        .await
        .unwrap();
    w.drain(Workers::steady(2)).await;

    assert_eq!(summary.mode, Mode::Queued);
    let expected: HashMap<String, usize> = fans.iter().map(|id| (id.clone(), 1)).collect();
    assert_eq!(w.delivery_counts(), expected);
    assert_eq!(dead_letter_count(&w).await, 0);
}

/// Sends the first `limit` items of a send to the real queue, then never returns: a `notify`
/// killed half way through enqueueing.
struct DiesMidway {
    queue: SqsQueue,
    limit: usize,
}

impl Queue for DiesMidway {
    fn send_after(
        &self,
        items: &[WorkItem],
        delay: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        let first: Vec<WorkItem> = items.iter().take(self.limit).cloned().collect();
        async move {
            self.queue.send_after(&first, delay).await?;
            std::future::pending().await
        }
    }
}

#[tokio::test]
async fn a_notify_that_dies_half_way_through_enqueueing_is_finished_by_its_retry() {
    let w = world(100).await;
    let fans = w.subscribers("fan", "Adele", 3000, 600).await;
    let event: EventBridgeEvent<Value> =
        serde_json::from_value(tickets_on_sale("evt-dies", "Adele")).unwrap();
    let notification = notify::parse_event(&event).unwrap();
    let dying = DiesMidway {
        queue: w.deliver.queue.clone(),
        limit: 7,
    };
    let ports = Ports::new(&w.deps.store, &w.deps.push, &dying, &w.deps.fanout)
        .with_budget(w.deps.budget.as_ref());
    // The lease runs to the deadline (whole seconds, plus one).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let killed = tokio::time::timeout(
        Duration::from_millis(1500),
        Function::Notify.run(marquee::routes::notify::notify(
            &ports,
            &notification,
            now_epoch_seconds(),
            Some(deadline),
        )),
    )
    .await;
    assert!(killed.is_err(), "the first attempt never finished");

    let early = w.notify(tickets_on_sale("evt-dies", "Adele")).await;
    assert!(
        matches!(
            early,
            Err(notify::NotifyFailure::Fanout(NotifyError::InProgress(_)))
        ),
        "a retry inside the lease waits: {early:?}"
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let retry = w
        .notify(tickets_on_sale("evt-dies", "Adele"))
        .await
        .unwrap();
    w.drain(Workers::steady(4)).await;

    assert_eq!((retry.mode, retry.enqueued), (Mode::Queued, 16));
    let duplicates = duplicates_among(&w.delivery_counts(), &fans);
    eprintln!("notify killed after 7 of 16 items: {duplicates} duplicates");
    assert!(
        duplicates <= fans.len() * 7 / 16 * 2,
        "at most the 7 first shards twice: {duplicates}"
    );
}

#[tokio::test]
async fn a_fault_mix_reaches_every_live_fan_and_cleans_up_every_gone_one() {
    let mut w = world(100).await;
    // Posts that outlast a second count as timed out, and are retried. (Short enough to keep
    // the test quick, long enough that a loaded machine's slow answers do not time out too.)
    let sdk = marquee::lambda::deps::sdk_config(marquee::lambda::deps::Target::Local).await;
    w.deliver.push = ManagementPush::with_timeout(&sdk, &w.api.endpoint(), Duration::from_secs(1));
    let fans = w.subscribers("fan", "Adele", 3000, 600).await;
    let mut dice = fastrand::Rng::with_seed(11);
    let (mut gone, mut live) = (Vec::new(), Vec::new());
    for id in &fans {
        match dice.u32(0..100) {
            0..10 => {
                w.api.mark_gone(id);
                gone.push(id.clone());
                continue;
            }
            10..15 => w.api.fail_next(id, 429, 2),
            15..17 => w.api.fail_next(id, 500, 1),
            17..19 => w.api.stall_next(id, Duration::from_secs(3), 1),
            _ => {}
        }
        live.push(id.clone());
    }

    w.notify(tickets_on_sale("evt-mix", "Adele")).await.unwrap();
    w.drain(Workers::steady(4)).await;

    let counts = w.delivery_counts();
    duplicates_among(&counts, &live);
    assert!(gone.iter().all(|id| !counts.contains_key(id)));
    let pks = w.pks().await;
    let left: Vec<&String> = gone
        .iter()
        .filter(|id| pks.contains(&format!("CONN#{id}")))
        .collect();
    assert!(left.is_empty(), "gone connections still recorded: {left:?}");
    for id in &live {
        let records = pks.iter().filter(|pk| **pk == format!("CONN#{id}")).count();
        assert_eq!(records, 2, "{id} keeps its connection and subscription");
    }
}

#[tokio::test]
async fn cargo_lambda_watchs_1970_deadline_still_lets_a_429_be_retried() {
    let w = world(100).await;
    let ids = w.subscribers("c", "Adele", 2, 600).await;
    w.api.fail_next(&ids[0], 429, 2);
    let deadline = marquee::lambda::deadline(600_000);
    assert_eq!(deadline, None, "a deadline in 1970 is not credible");

    let event: EventBridgeEvent<Value> =
        serde_json::from_value(tickets_on_sale("evt-watch", "Adele")).unwrap();
    let summary = notify::handle(&w.deps, event, deadline).await.unwrap();

    assert_eq!(
        (
            summary.tally.delivered,
            summary.tally.retried,
            summary.tally.failed
        ),
        (2, 2, 0)
    );
    assert_eq!(w.api.delivered_to(&ids[0]).len(), 1);
}

#[tokio::test]
async fn a_hot_artist_takes_20000_concurrent_subscribes_and_the_cap_holds() {
    let w = world(1000).await;
    let push = RecordingPush::new();
    let store = &w.deps.store;
    let ids: Vec<String> = (0..20_000).map(|i| format!("hot-{i:05}")).collect();
    connect_all(store, &ids, 600).await;
    let cap = 3;
    let capped: Vec<&String> = ids.iter().step_by(1000).collect();
    let mut messages: Vec<(ConnectionId, String)> = ids
        .iter()
        .map(|id| {
            (
                ConnectionId::parse(id).unwrap(),
                r#"{"action":"subscribe","artists":["Hot Artist"]}"#.to_owned(),
            )
        })
        .collect();
    for id in &capped {
        for n in 0..4 {
            messages.push((
                ConnectionId::parse(id).unwrap(),
                format!(r#"{{"action":"subscribe","artists":["Extra {n}"]}}"#),
            ));
        }
    }
    fastrand::Rng::with_seed(3).shuffle(&mut messages);

    let now = now_epoch_seconds();
    let queue = MemoryQueue::new(Duration::from_secs(30), 5);
    let fanout = FanoutSettings::default();
    let budget = w.deps.budget.as_ref();
    let replies: Vec<Frame> = futures_util::stream::iter(&messages)
        .map(|(connection, body)| {
            let (push, queue, fanout) = (&push, &queue, &fanout);
            async move {
                let message = ClientFrame {
                    connection,
                    body: Some(body),
                    is_base64_encoded: false,
                    now,
                    deadline: None,
                };
                let settings = SubscribeSettings {
                    max_subscriptions: cap,
                    ..SubscribeSettings::default()
                };
                let ports = Ports::new(store, push, queue, fanout).with_budget(budget);
                Function::Subscribe
                    .run(Box::pin(handle_frame(&ports, &settings, message)))
                    .await
                    .reply
            }
        })
        .buffer_unordered(128)
        .collect()
        .await;

    let refused = |code: &str| {
        replies
            .iter()
            .filter(|f| matches!(f, Frame::Error { code: c, .. } if c.as_str() == code))
            .count()
    };
    assert_eq!(refused("internal_error"), 0);
    let mut indexed = Vec::new();
    let key = marquee::domain::Artist::parse("Hot Artist")
        .unwrap()
        .key()
        .clone();
    for shard in Shard::all() {
        let mut span = Span::whole(shard);
        loop {
            let page = store
                .subscribers(&Audience::Artist(key.clone()), &span, now, 1000)
                .await
                .unwrap();
            indexed.extend(page.connections.iter().map(|c| c.as_str().to_owned()));
            match page.next {
                Some(after) => span.after = Some(after),
                None => break,
            }
        }
    }
    indexed.sort();
    let busy = refused("busy");
    let full = refused("too_many_subscriptions");
    eprintln!(
        "hot artist: {} indexed, {busy} busy, {full} over the cap",
        indexed.len()
    );
    // Only the capped connections raced themselves; every other subscribe landed.
    let uncapped: Vec<&String> = ids.iter().filter(|id| !capped.contains(id)).collect();
    assert!(uncapped.iter().all(|id| indexed.binary_search(id).is_ok()));
    for id in &capped {
        let state = store
            .connection_state(&ConnectionId::parse(id).unwrap(), now)
            .await
            .unwrap()
            .unwrap();
        assert!(
            state.subscriptions.len() <= cap as usize,
            "{id} holds {:?}",
            state.subscriptions
        );
    }
    let shards = per_shard(&indexed);
    assert_eq!(shards.len(), 16);
    assert!(
        shards.values().all(|n| (900..=1600).contains(n)),
        "writes spread over the shards: {shards:?}"
    );
}

#[tokio::test]
async fn a_false_410_from_the_management_api_deletes_nothing_and_the_fan_still_gets_it() {
    let w = world(100).await;
    let ids = w.subscribers("c", "Adele", 3, 600).await;
    // API Gateway answers 410 for an open connection now and then; ids[2] is really gone.
    w.api.false_gone_next(&ids[0], 1);
    w.api.mark_gone(&ids[2]);

    let summary = w
        .notify(tickets_on_sale("evt-false-410", "Adele"))
        .await
        .unwrap();

    assert_eq!((summary.tally.delivered, summary.tally.gone), (2, 1));
    assert_eq!(
        w.notifications_to(&ids[0]),
        1,
        "posted again after the false 410"
    );
    assert_eq!(
        w.api.attempts(&ids[0]),
        2,
        "the false 410 and the post again (the fans here are one user, so no left notice)"
    );
    assert_eq!(
        w.records_of(&ids[0]).await,
        2,
        "the live fan keeps its connection and subscription"
    );
    assert_eq!(w.records_of(&ids[2]).await, 0, "the gone one is cleaned up");
}

/// Issue 18, item 5: a false 410 whose `GetConnection` is then throttled used to write the live
/// fan off as gone (no retry, no re-drive, the event done). Unconfirmed, it is a failed post:
/// posted again, and the fan gets the notification.
#[tokio::test]
async fn a_false_410_that_cannot_be_confirmed_is_posted_again_not_written_off() {
    let w = world(100).await;
    let ids = w.subscribers("c", "Adele", 2, 600).await;
    w.api.false_gone_next(&ids[0], 1);
    w.api.fail_get_next(&ids[0], 429, 1);

    let summary = w
        .notify(tickets_on_sale("evt-unconfirmed-410", "Adele"))
        .await
        .unwrap();

    assert_eq!(
        (
            summary.tally.delivered,
            summary.tally.gone,
            summary.tally.failed
        ),
        (2, 0, 0),
        "{summary:?}"
    );
    assert_eq!(summary.tally.retried, 1, "{summary:?}");
    assert_eq!(
        w.notifications_to(&ids[0]),
        1,
        "posted again after the unconfirmed 410"
    );
    assert_eq!(
        w.records_of(&ids[0]).await,
        2,
        "nothing deleted: its connection and subscription"
    );
}

/// A sale whose frame is 105 KB: the 16 work items of a queued audience used to go out ten
/// to a `SendMessageBatch`, over a megabyte, and SQS refused every retry
/// (`BatchRequestTooLong`).
#[tokio::test]
async fn a_105_kb_notification_to_a_queued_audience_reaches_every_fan() {
    let w = world_with(
        FanoutSettings {
            inline_max: 0,
            ..fast(500)
        },
        Duration::from_secs(10),
    )
    .await;
    let fans = w.subscribers("fan", "Adele", 200, 600).await;
    assert_eq!(per_shard(&fans).len(), 16, "every shard holds fans");
    let mut event = tickets_on_sale("evt-105kb", "Adele");
    event["detail"]["seats"] = Value::String("A".repeat(105_000));

    let summary = w.notify(event).await.unwrap();
    w.drain(Workers::steady(4)).await;

    assert_eq!((summary.mode, summary.enqueued), (Mode::Queued, 16));
    let counts = w.delivery_counts();
    assert_eq!(duplicates_among(&counts, &fans), 0);
    for delivery in w.api.delivered() {
        let frame = delivery.json().unwrap();
        assert_eq!(
            (
                frame["type"].as_str(),
                frame["detail"]["seats"].as_str().map(str::len)
            ),
            (Some("notification"), Some(105_000)),
            "{} got the whole frame",
            delivery.connection_id
        );
    }
    assert_eq!(dead_letter_count(&w).await, 0);
}
