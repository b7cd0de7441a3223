//! Delivery reports through the whole pipeline: `notify` → the work queue (moto) → `deliver`
//! workers killed at random, against DynamoDB Local and the Management API stand-in, with
//! `FanoutCompleted` sent through the EventBridge SDK client to moto (so the IAM check sees
//! `events:PutEvents`). The report's counts are held to what the stand-in took.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use marquee::domain::{EventId, now_epoch_seconds};
use marquee::report::eventbridge::EventBridgeEvents;
use marquee::report::{
    BoxFuture, DEFAULT_EVENT_SOURCE, DeliveryReport, Events, EventsError, FanoutCompleted,
    RecordingEvents,
};
use marquee::store::Reports;
use marquee_tests::pipeline::Workers;

use crate::support::world::{World, fast, tickets_on_sale, world_with};

/// Sends through EventBridge (moto) and keeps a copy of what was accepted.
#[derive(Debug)]
struct Tee {
    bus: EventBridgeEvents,
    sent: RecordingEvents,
}

impl Events for Tee {
    fn fanout_completed<'a>(
        &'a self,
        detail: &'a FanoutCompleted,
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async move {
            self.bus.fanout_completed(detail).await?;
            self.sent.fanout_completed(detail).await
        })
    }
}

/// A world whose `notify` and `deliver` send `FanoutCompleted` to moto's EventBridge; what
/// was sent.
async fn reporting_world(page: u32) -> (World, RecordingEvents) {
    let mut w = world_with(fast(page), Duration::from_secs(3)).await;
    let endpoint = std::env::var("SQS_ENDPOINT").expect("scripts/test sets SQS_ENDPOINT (moto)");
    let sdk = marquee::lambda::deps::sdk_config(marquee::lambda::deps::Target::Local).await;
    let sent = RecordingEvents::new();
    let events: Arc<dyn Events> = Arc::new(Tee {
        bus: EventBridgeEvents::new(&sdk, "default", DEFAULT_EVENT_SOURCE, Some(&endpoint)),
        sent: sent.clone(),
    });
    w.deps.events = Arc::clone(&events);
    w.deliver.events = events;
    (w, sent)
}

/// `count` fans of Adele: every tenth gone, every seventh throttled once, every thirteenth
/// answered 500 once. (live, gone)
async fn fans_with_faults(w: &World, count: usize) -> (Vec<String>, Vec<String>) {
    let fans = w.subscribers("fan", "Adele", count, 600).await;
    let (mut live, mut gone) = (Vec::new(), Vec::new());
    for (n, id) in fans.iter().enumerate() {
        if n % 10 == 3 {
            w.api.mark_gone(id);
            gone.push(id.clone());
            continue;
        }
        if n % 7 == 1 {
            w.api.fail_next(id, 429, 1);
        } else if n % 13 == 2 {
            w.api.fail_next(id, 500, 1);
        }
        live.push(id.clone());
    }
    (live, gone)
}

/// Frames the stand-in accepted, per connection.
fn accepted(w: &World) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for d in w.api.delivered() {
        *counts.entry(d.connection_id).or_default() += 1;
    }
    counts
}

async fn report_of(w: &World, id: &str) -> DeliveryReport {
    w.deps
        .store
        .delivery_report(&EventId::parse(id).unwrap(), now_epoch_seconds())
        .await
        .unwrap()
        .expect("a report is kept")
}

#[tokio::test]
async fn under_redelivery_of_finished_items_the_report_matches_the_stand_in_exactly_and_completes_once()
 {
    let (w, sent) = reporting_world(50).await;
    let (live, gone) = fans_with_faults(&w, 1500).await;

    w.notify(tickets_on_sale("evt-report", "Adele"))
        .await
        .unwrap();
    // A tenth of the invocations are killed after their work (at a random instant within a
    // day, so after an item's few seconds), before the event source deleted the item: SQS
    // hands it out again, and it posts its whole page again.
    let drained = w
        .drain(Workers {
            count: 4,
            crash_rate: 0.1,
            crash_within: Duration::from_secs(24 * 60 * 60),
            seed: 20,
            lease: Duration::from_secs(4),
        })
        .await;

    let report = report_of(&w, "evt-report").await;
    let counts = accepted(&w);
    let total: u64 = counts.values().sum();
    let mut reached: Vec<&String> = counts.keys().collect();
    reached.sort();
    let mut expected: Vec<&String> = live.iter().collect();
    expected.sort();
    assert!(drained.crashes > 0, "some items were killed: {drained:?}");
    assert_eq!(reached, expected, "every live fan, no gone one");
    assert_eq!(
        (report.delivered, report.duplicates),
        (live.len() as u64, total - live.len() as u64),
        "delivered once per fan, every repeat known: {report:?}"
    );
    // Every gone fan, unless a starved machine let a lease lapse (more redeliveries than
    // kills): then two attempts of an item ran at once, and the one that finished first may
    // have read its page after the other had deleted a gone fan.
    if drained.redelivered == drained.crashes {
        assert_eq!(report.gone, gone.len() as u64, "{report:?}");
    } else {
        assert!(report.gone <= gone.len() as u64, "{report:?} {drained:?}");
    }
    assert_eq!(
        (
            report.outstanding,
            report.finished,
            report.dead_lettered,
            report.complete,
            report.published
        ),
        (0, report.items, 0, true, true)
    );
    assert_eq!(report.audience, 1500, "the artist's subscriber count");
    let completed = sent.sent();
    assert_eq!(
        completed.len(),
        1,
        "FanoutCompleted sent once: {completed:?}"
    );
    assert_sent_as_stored(&completed[0], &report);
    assert!(
        completed[0].seconds_to_first_post.unwrap() <= completed[0].seconds_to_last_post.unwrap()
    );
}

/// `FanoutCompleted` says what the stored report says, but for the repeats of items
/// redelivered after it was sent (their duplicates are added to the stored report only).
fn assert_sent_as_stored(sent: &FanoutCompleted, report: &DeliveryReport) {
    let stored = report.completed();
    assert!(sent.duplicates <= stored.duplicates, "{sent:?} {stored:?}");
    assert_eq!(
        FanoutCompleted {
            duplicates: stored.duplicates,
            ..sent.clone()
        },
        stored
    );
}

#[tokio::test]
async fn under_kills_mid_page_every_fan_is_counted_once_and_the_report_completes_once() {
    let (w, sent) = reporting_world(50).await;
    let (live, gone) = fans_with_faults(&w, 1500).await;

    w.notify(tickets_on_sale("evt-report-kill", "Adele"))
        .await
        .unwrap();
    // The pipeline's crash mix: a tenth of the invocations killed at a random instant.
    let drained = w
        .drain(Workers {
            count: 4,
            crash_rate: 0.1,
            crash_within: Duration::from_millis(300),
            seed: 21,
            lease: Duration::from_secs(2),
        })
        .await;

    let report = report_of(&w, "evt-report-kill").await;
    let counts = accepted(&w);
    let total: u64 = counts.values().sum();
    assert!(drained.crashes > 0, "some items were killed: {drained:?}");
    assert_eq!(counts.len(), live.len(), "every live fan reached");
    // Each fan's delivery is counted by the one item that finished its stretch; posts of an
    // attempt killed before it finished are repeats the report cannot know of.
    assert_eq!(report.delivered, live.len() as u64, "{report:?}");
    assert!(
        report.duplicates <= total - live.len() as u64,
        "{report:?}, {total} posts"
    );
    // A killed attempt may have cleaned up a gone fan its redelivery no longer meets.
    assert!(report.gone <= gone.len() as u64, "{report:?}");
    assert_eq!(
        (
            report.outstanding,
            report.finished,
            report.dead_lettered,
            report.complete
        ),
        (0, report.items, 0, true)
    );
    let completed = sent.sent();
    assert_eq!(
        completed.len(),
        1,
        "FanoutCompleted sent once: {completed:?}"
    );
    assert_sent_as_stored(&completed[0], &report);
}

#[tokio::test]
async fn an_inline_fan_out_is_one_item_and_its_report_is_published_by_notify() {
    let (w, sent) = reporting_world(100).await;
    let (live, gone) = fans_with_faults(&w, 40).await;

    let summary = w
        .notify(tickets_on_sale("evt-inline-report", "Adele"))
        .await
        .unwrap();

    let report = report_of(&w, "evt-inline-report").await;
    assert_eq!(summary.mode, marquee::routes::notify::Mode::Inline);
    assert_eq!(
        (
            report.delivered,
            report.gone,
            report.duplicates,
            report.items,
            report.audience,
            report.complete
        ),
        (live.len() as u64, gone.len() as u64, 0, 1, 40, true)
    );
    let completed = sent.sent();
    assert_eq!(completed, vec![report.completed()]);
    assert_eq!(completed[0].event_id, "evt-inline-report");
    assert_eq!(completed[0].artist.as_deref(), Some("adele"));
}
