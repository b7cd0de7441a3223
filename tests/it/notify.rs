//! `notify` through its handler, against DynamoDB Local and the Management API stand-in
//! reached by the real SDK client (so 410, 429 and 500 travel over HTTP).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use futures_util::StreamExt;
use marquee::config::{Config, FanoutSettings};
use marquee::domain::{ArtistList, Connection, now_epoch_seconds};
use marquee::lambda::deps::table_budget;
use marquee::lambda::notify::NotifyFailure;
use marquee::lambda::{DeliverDeps, NotifyDeps, notify};
use marquee::push::management::ManagementPush;
use marquee::queue::sqs::SqsQueue;
use marquee::routes::notify::{Mode, Summary};
use marquee::store::Store;
use marquee::store::dynamo::DynamoStore;
use marquee_tests::mgmt::ManagementApi;
use marquee_tests::pipeline::{Drained, Workers, drain};
use marquee_tests::{
    all_items, event_json, fresh_queue, fresh_table, management_api, management_push,
};
use serde_json::{Value, json};

/// The table, the stand-in, and a work queue on the SQS server, with `notify` and `deliver`
/// wired to them as in AWS.
pub(crate) struct World {
    pub(crate) deps: NotifyDeps<DynamoStore, ManagementPush, SqsQueue>,
    pub(crate) deliver: DeliverDeps<DynamoStore, ManagementPush, SqsQueue>,
    pub(crate) dead_letters: SqsQueue,
    pub(crate) api: ManagementApi,
}

pub(crate) fn fast(page_size: u32) -> FanoutSettings {
    FanoutSettings {
        page_size,
        retry_base: Duration::from_millis(5),
        budget: 0,
        rate_per_invocation: None,
        ..FanoutSettings::default()
    }
}

pub(crate) async fn world(page_size: u32) -> World {
    world_with(fast(page_size), Duration::from_secs(10)).await
}

/// A world whose queue hides a received item for `visibility` (longer than an item takes,
/// as the template's six times the function timeout: shorter makes copies), and
/// dead-letters it on its 50th receive.
pub(crate) async fn world_with(fanout: FanoutSettings, visibility: Duration) -> World {
    let api = management_api().await;
    let store = fresh_table().await;
    let push = management_push(&api).await;
    let (queue, dead_letters) = fresh_queue(visibility, 50).await;
    // One account budget in the table, shared by notify and deliver as in AWS.
    let budget = table_budget(&store, fanout.budget);
    let mut config = Config::new(store.table());
    config.fanout = fanout;
    World {
        deps: NotifyDeps::new(
            &config,
            store.clone(),
            push.clone(),
            queue.clone(),
            Arc::clone(&budget),
            Arc::new(marquee::report::NoEvents),
        ),
        deliver: DeliverDeps::new(
            &config,
            store,
            push,
            queue,
            budget,
            Arc::new(marquee::report::NoEvents),
        ),
        dead_letters,
        api,
    }
}

impl World {
    /// Records `count` connections `<prefix>-NNNN` subscribed to `artist`, expiring in `ttl`.
    pub(crate) async fn subscribers(
        &self,
        prefix: &str,
        artist: &str,
        count: usize,
        ttl: i64,
    ) -> Vec<String> {
        let ids: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:05}")).collect();
        subscribe_all(&self.deps.store, &ids, artist, ttl).await;
        ids
    }

    pub(crate) async fn notify(&self, event: Value) -> Result<Summary, NotifyFailure> {
        let event: EventBridgeEvent<Value> = serde_json::from_value(event).unwrap();
        notify::handle(&self.deps, event, None).await
    }

    /// Runs `deliver` workers until the work queue is empty.
    pub(crate) async fn drain(&self, workers: Workers) -> Drained {
        drain(&self.deliver, workers, Duration::from_secs(120)).await
    }

    pub(crate) fn delivery_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for d in self.api.delivered() {
            *counts.entry(d.connection_id).or_default() += 1;
        }
        counts
    }

    pub(crate) async fn pks(&self) -> Vec<String> {
        all_items(self.deps.store.table())
            .await
            .iter()
            .map(|i| i["pk"].as_s().unwrap().clone())
            .collect()
    }

    /// The `notification` frames the Management API stand-in took for `id`.
    pub(crate) fn notifications_to(&self, id: &str) -> usize {
        self.api
            .delivered_to(id)
            .iter()
            .filter(|d| d.json().unwrap()["type"] == "notification")
            .count()
    }

    /// The table's items of connection `id` (its record and its subscriptions).
    pub(crate) async fn records_of(&self, id: &str) -> usize {
        let pk = format!("CONN#{id}");
        self.pks().await.iter().filter(|p| **p == pk).count()
    }
}

/// Records a connection for each of `ids`, subscribed to `artist` when given, expiring in
/// `ttl`.
async fn record_all<S: Store>(store: &S, ids: &[String], artist: Option<&str>, ttl: i64) {
    let now = now_epoch_seconds();
    let artists = artist.map(|a| ArtistList::parse(&[a]).unwrap());
    futures_util::stream::iter(ids)
        .for_each_concurrent(32, |id| {
            let artists = artists.as_ref();
            async move {
                let connection = Connection::builder(id)
                    .user("fan")
                    .connected_at(now)
                    .lifetime(ttl)
                    .build();
                store.put_connection(&connection).await.unwrap();
                if let Some(artists) = artists {
                    store
                        .add_subscriptions(&connection, 0, artists.as_slice())
                        .await
                        .unwrap();
                }
            }
        })
        .await;
}

/// Records a connection for each of `ids`, subscribed to `artist`, expiring in `ttl`.
pub(crate) async fn subscribe_all<S: Store>(store: &S, ids: &[String], artist: &str, ttl: i64) {
    record_all(store, ids, Some(artist), ttl).await;
}

/// Records one connection `id` with no subscription, expiring in 10 minutes; returns its id.
pub(crate) async fn connect_fresh(w: &World, id: &str) -> String {
    connect_all(&w.deps.store, &[id.to_owned()], 600).await;
    id.to_owned()
}

/// Records a connection for each of `ids`, with no subscription, expiring in `ttl`.
pub(crate) async fn connect_all<S: Store>(store: &S, ids: &[String], ttl: i64) {
    record_all(store, ids, None, ttl).await;
}

pub(crate) fn tickets_on_sale(id: &str, artist: &str) -> Value {
    let mut event = event_json("notify.json");
    event["id"] = json!(id);
    event["detail"]["artist"] = json!(artist);
    event
}

#[tokio::test]
async fn a_thousand_subscribers_across_every_shard_each_get_exactly_one_notification_inline() {
    // Inline up to 1,000 here (the default is 500): one invocation, every shard's pages.
    let w = world_with(
        FanoutSettings {
            inline_max: 1000,
            ..fast(100)
        },
        Duration::from_secs(10),
    )
    .await;
    let fans = w.subscribers("fan", "Adele", 1000, 600).await;
    let others = w.subscribers("other", "Muse", 20, 600).await;

    let summary = w
        .notify(tickets_on_sale("evt-1000", "adele"))
        .await
        .unwrap();

    assert_eq!(summary.mode, Mode::Inline);
    assert_eq!(
        (
            summary.tally.delivered,
            summary.tally.failed,
            summary.tally.gone
        ),
        (1000, 0, 0)
    );
    assert_eq!(summary.pages, 16, "one probe page per shard");
    let counts = w.delivery_counts();
    assert_eq!(counts.len(), 1000);
    assert!(fans.iter().all(|id| counts.get(id) == Some(&1)));
    assert!(others.iter().all(|id| !counts.contains_key(id)));
    let frame = w.api.delivered_to(&fans[0])[0].json().unwrap();
    assert_eq!(frame["type"], "notification");
    assert_eq!(frame["id"], "evt-1000");
    assert_eq!(frame["artist"], "adele");
    assert_eq!(frame["detail"]["artist"], "adele");
    assert!(
        frame["detail"]["venue"].is_string(),
        "the whole detail is forwarded"
    );
    assert!(frame["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn expired_records_are_not_notified() {
    let w = world(100).await;
    let live = w.subscribers("live", "Adele", 3, 600).await;
    let expired = w.subscribers("old", "Adele", 3, -1).await;
    let summary = w.notify(tickets_on_sale("evt-exp", "Adele")).await.unwrap();
    assert_eq!(summary.tally.delivered, 3);
    let counts = w.delivery_counts();
    assert!(live.iter().all(|id| counts.contains_key(id)));
    assert!(expired.iter().all(|id| !counts.contains_key(id)));
}

#[tokio::test]
async fn a_gone_connection_is_cleaned_up_and_only_that_one() {
    let w = world(100).await;
    let ids = w.subscribers("c", "Adele", 3, 600).await;
    w.api.mark_gone(&ids[1]);
    let summary = w.notify(tickets_on_sale("evt-410", "Adele")).await.unwrap();
    assert_eq!((summary.tally.delivered, summary.tally.gone), (2, 1));
    let pks = w.pks().await;
    assert!(
        !pks.iter().any(|pk| pk == &format!("CONN#{}", ids[1])),
        "{pks:?}"
    );
    for kept in [&ids[0], &ids[2]] {
        let records = pks
            .iter()
            .filter(|pk| **pk == format!("CONN#{kept}"))
            .count();
        assert_eq!(records, 2, "{kept} keeps its connection and subscription");
    }
}

#[tokio::test]
async fn a_throttled_post_is_retried_then_delivered() {
    let w = world(100).await;
    let ids = w.subscribers("c", "Adele", 2, 600).await;
    w.api.fail_next(&ids[0], 429, 2);
    let summary = w.notify(tickets_on_sale("evt-429", "Adele")).await.unwrap();
    assert_eq!(
        (
            summary.tally.delivered,
            summary.tally.failed,
            summary.tally.retried
        ),
        (2, 0, 2)
    );
    assert_eq!(w.api.attempts(&ids[0]), 3);
    assert_eq!(w.api.delivered_to(&ids[0]).len(), 1);
}

#[tokio::test]
async fn a_server_error_is_retried_then_delivered() {
    let w = world(100).await;
    let ids = w.subscribers("c", "Adele", 1, 600).await;
    w.api.fail_next(&ids[0], 500, 1);
    let summary = w.notify(tickets_on_sale("evt-500", "Adele")).await.unwrap();
    assert_eq!((summary.tally.delivered, summary.tally.retried), (1, 1));
}

#[tokio::test]
async fn a_connection_failing_past_the_attempt_limit_does_not_hold_up_the_rest() {
    let w = world(100).await;
    let ids = w.subscribers("c", "Adele", 5, 600).await;
    w.api.fail_next(&ids[2], 500, 100);
    let summary = w
        .notify(tickets_on_sale("evt-fail", "Adele"))
        .await
        .unwrap();
    assert_eq!((summary.tally.delivered, summary.tally.failed), (4, 1));
    assert_eq!(
        w.api.attempts(&ids[2]),
        FanoutSettings::default().max_attempts
    );
}

#[tokio::test]
async fn a_redelivered_event_is_delivered_once() {
    let w = world(100).await;
    w.subscribers("c", "Adele", 3, 600).await;
    let first = w.notify(tickets_on_sale("evt-dup", "Adele")).await.unwrap();
    let again = w.notify(tickets_on_sale("evt-dup", "Adele")).await.unwrap();
    assert_eq!((first.tally.delivered, first.mode), (3, Mode::Inline));
    assert_eq!((again.tally.delivered, again.mode), (0, Mode::Duplicate));
    assert_eq!(w.api.delivered().len(), 3);
}

#[tokio::test]
async fn an_event_without_a_valid_artist_fails_without_retry_and_writes_nothing() {
    let w = world(100).await;
    w.subscribers("c", "Adele", 1, 600).await;
    let before = w.pks().await.len();
    for detail in [json!({}), json!({"artist": 7}), json!({"artist": "  "})] {
        let mut event = event_json("notify.json");
        event["detail"] = detail.clone();
        let err = w.notify(event).await.unwrap_err();
        assert!(
            matches!(err, NotifyFailure::Invalid(_)),
            "{detail}: {err:?}"
        );
        assert!(err.to_string().starts_with("invalid_event"), "{err}");
    }
    assert!(w.api.delivered().is_empty());
    assert_eq!(w.pks().await.len(), before, "no claim was written");
}

#[tokio::test]
async fn an_event_whose_frame_would_exceed_128_kib_is_invalid_and_writes_nothing() {
    let w = world(100).await;
    w.subscribers("c", "Adele", 2, 600).await;
    let before = w.pks().await.len();
    let mut event = tickets_on_sale("evt-big", "Adele");
    event["detail"]["blurb"] = json!("x".repeat(marquee::wire::MAX_OUTBOUND_BYTES));

    let err = w.notify(event).await.unwrap_err();

    assert!(matches!(err, NotifyFailure::Invalid(_)), "{err:?}");
    assert_eq!(
        err.error_type(),
        "InvalidEvent",
        "it lands in the dead-letter queue"
    );
    assert!(w.api.delivered().is_empty(), "no post was even tried");
    assert_eq!(w.api.attempts("c-00000"), 0);
    assert_eq!(w.pks().await.len(), before, "no claim was written");
}

#[tokio::test]
async fn a_revocation_without_a_usable_user_or_reason_fails_without_retry_and_writes_nothing() {
    let w = world(100).await;
    w.subscribers("c", "Adele", 1, 600).await;
    let before = w.pks().await.len();
    for detail in [
        json!({}),
        json!({"user": 7}),
        json!({"user": "  "}),
        json!({"user": "x".repeat(257)}),
        json!({"user": "mallory", "reason": 7}),
        json!({"user": "mallory", "reason": "x".repeat(501)}),
    ] {
        let mut event = event_json("revoke.json");
        event["detail"] = detail.clone();

        let err = w.notify(event).await.unwrap_err();

        assert!(
            matches!(err, NotifyFailure::Invalid(_)),
            "{detail}: {err:?}"
        );
        assert_eq!(err.error_type(), "InvalidEvent", "{detail}");
    }
    assert!(w.api.delivered().is_empty());
    assert!(w.api.deleted().is_empty(), "nobody was closed");
    assert_eq!(w.pks().await.len(), before, "no revocation was written");
}
