//! `notify` through its handler, against DynamoDB Local and the Management API stand-in
//! reached by the real SDK client (so 410, 429 and 500 travel over HTTP).

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use futures_util::StreamExt;
use marquee::config::FanoutSettings;
use marquee::domain::{ArtistList, Connection, ConnectionId, Scope, UserId, now_epoch_seconds};
use marquee::lambda::notify::NotifyFailure;
use marquee::lambda::{NotifyDeps, notify};
use marquee::push::management::ManagementPush;
use marquee::store::Store;
use marquee::store::dynamo::DynamoStore;
use marquee_tests::mgmt::ManagementApi;
use marquee_tests::{all_items, event_json, fresh_table, management_api, management_push};
use serde_json::{Value, json};

struct World {
    deps: NotifyDeps<DynamoStore, ManagementPush>,
    api: ManagementApi,
}

async fn world(page_size: u32) -> World {
    let api = management_api().await;
    World {
        deps: NotifyDeps {
            store: fresh_table().await,
            push: management_push(&api).await,
            fanout: FanoutSettings {
                page_size,
                retry_base: Duration::from_millis(5),
                ..FanoutSettings::default()
            },
        },
        api,
    }
}

impl World {
    /// Records `count` connections `<prefix>-NNNN` subscribed to `artist`, expiring in `ttl`.
    async fn subscribers(&self, prefix: &str, artist: &str, count: usize, ttl: i64) -> Vec<String> {
        let now = now_epoch_seconds();
        let artists = ArtistList::parse(&[artist]).unwrap();
        let ids: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:04}")).collect();
        futures_util::stream::iter(ids.clone())
            .for_each_concurrent(16, |id| {
                let artists = &artists;
                async move {
                    let connection = Connection {
                        id: ConnectionId::parse(&id).unwrap(),
                        user_id: UserId::parse("fan").unwrap(),
                        connected_at: now,
                        expires_at: now + ttl,
                        scope: Scope::Any,
                    };
                    self.deps.store.put_connection(&connection).await.unwrap();
                    self.deps
                        .store
                        .add_subscriptions(&connection, 0, artists.as_slice())
                        .await
                        .unwrap();
                }
            })
            .await;
        ids
    }

    async fn notify(
        &self,
        event: Value,
    ) -> Result<marquee::routes::notify::Summary, NotifyFailure> {
        let event: EventBridgeEvent<Value> = serde_json::from_value(event).unwrap();
        notify::handle(&self.deps, event, None).await
    }

    fn delivery_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for d in self.api.delivered() {
            *counts.entry(d.connection_id).or_default() += 1;
        }
        counts
    }

    async fn pks(&self) -> Vec<String> {
        all_items(self.deps.store.table())
            .await
            .iter()
            .map(|i| i["pk"].as_s().unwrap().clone())
            .collect()
    }
}

fn tickets_on_sale(id: &str, artist: &str) -> Value {
    let mut event = event_json("notify.json");
    event["id"] = json!(id);
    event["detail"]["artist"] = json!(artist);
    event
}

#[tokio::test]
async fn a_thousand_subscribers_across_pages_each_get_exactly_one_notification() {
    let w = world(100).await;
    let fans = w.subscribers("fan", "Adele", 1000, 600).await;
    let others = w.subscribers("other", "Muse", 20, 600).await;

    let summary = w
        .notify(tickets_on_sale("evt-1000", "adele"))
        .await
        .unwrap();

    assert_eq!(
        (summary.delivered, summary.failed, summary.gone),
        (1000, 0, 0)
    );
    assert!(summary.pages >= 10, "{} pages", summary.pages);
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
    assert_eq!(summary.delivered, 3);
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
    assert_eq!((summary.delivered, summary.gone), (2, 1));
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
        (summary.delivered, summary.failed, summary.retried),
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
    assert_eq!((summary.delivered, summary.retried), (1, 1));
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
    assert_eq!((summary.delivered, summary.failed), (4, 1));
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
    assert_eq!((first.delivered, first.duplicate), (3, false));
    assert_eq!((again.delivered, again.duplicate), (0, true));
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
