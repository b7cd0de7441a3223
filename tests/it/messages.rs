//! The message routes and `$disconnect` through their handlers, against DynamoDB Local and
//! the Management API stand-in reached by the real SDK client.

use marquee::domain::{Artist, Connection, ConnectionId, Scope, now_epoch_seconds};
use marquee::lambda::deps::table_budget;
use marquee::lambda::{DisconnectDeps, SubscribeDeps, disconnect, subscribe};
use marquee::push::management::ManagementPush;
use std::time::Duration;

use marquee::config::Config;
use marquee::queue::memory::MemoryQueue;
use marquee::store::ConnectionStore;
use marquee::store::dynamo::DynamoStore;
use marquee_tests::mgmt::ManagementApi;
use marquee_tests::{
    all_items, fresh_table, management_api, management_push, records_but_totals, websocket_event,
};
use serde_json::{Value, json};

struct World {
    deps: SubscribeDeps<DynamoStore, ManagementPush, MemoryQueue>,
    api: ManagementApi,
}

async fn world(max_subscriptions: u32) -> World {
    let api = management_api().await;
    let store = fresh_table().await;
    let mut config = Config::new(store.table());
    config.max_subscriptions = max_subscriptions;
    World {
        deps: SubscribeDeps::new(
            &config,
            store.clone(),
            management_push(&api).await,
            MemoryQueue::new(Duration::from_secs(30), 5),
            table_budget(&store, config.fanout.budget),
            std::sync::Arc::new(marquee::report::NoEvents),
        ),
        api,
    }
}

impl World {
    /// `$disconnect`'s deps over the same table and stand-in, with the default presence limit.
    fn disconnect_deps(&self) -> DisconnectDeps<DynamoStore, ManagementPush> {
        let config = Config::new(self.deps.posting.store.table());
        DisconnectDeps::new(
            &config,
            self.deps.posting.store.clone(),
            self.deps.posting.push.clone(),
        )
    }

    async fn connect(&self, id: &str, scope: Scope) -> ConnectionId {
        let now = now_epoch_seconds();
        let id = ConnectionId::parse(id).unwrap();
        self.deps
            .posting
            .store
            .put_connection(
                &Connection::builder(id.as_str())
                    .connected_at(now)
                    .lifetime(600)
                    .scope(scope)
                    .build(),
            )
            .await
            .unwrap();
        id
    }
}

/// `events/subscribe.json` from connection `id` on `route` with `body`.
fn message_event(
    id: &ConnectionId,
    route: &str,
    body: &str,
) -> aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest {
    let mut event = marquee_tests::event_json("subscribe.json");
    event["requestContext"]["connectionId"] = json!(id.as_str());
    event["requestContext"]["routeKey"] = json!(route);
    event["body"] = json!(body);
    serde_json::from_value(event).unwrap()
}

impl World {
    /// Sends `body` from `id` through the subscribe handler and returns the reply frame.
    async fn send(&self, id: &ConnectionId, route: &str, body: &str) -> Value {
        let before = self.api.delivered_to(id.as_str()).len();
        let response = subscribe::handle(&self.deps, message_event(id, route, body)).await;
        assert_eq!(response.status_code, 200);
        let frames = self.api.delivered_to(id.as_str());
        let reply = frames[before].json().unwrap();
        let rest: Vec<Value> = frames[before + 1..]
            .iter()
            .map(|f| f.json().unwrap())
            .collect();
        let welcomes = if reply["type"] == "subscribed" {
            reply["artists"].as_array().unwrap().len()
        } else {
            0
        };
        assert_eq!(
            rest.len(),
            welcomes,
            "one reply, then a welcome per artist: {rest:?}"
        );
        assert!(rest.iter().all(|f| f["type"] == "welcome"), "{rest:?}");
        reply
    }

    /// Items of connections (records and subscriptions) in the table; the artists' counters
    /// are not counted.
    async fn connection_items(&self) -> usize {
        all_items(self.deps.posting.store.table())
            .await
            .iter()
            .filter(|i| i["pk"].as_s().unwrap().starts_with("CONN#"))
            .count()
    }

    async fn subscriptions(&self, id: &ConnectionId) -> Vec<String> {
        let state = self
            .deps
            .posting
            .store
            .connection_state(id, now_epoch_seconds())
            .await
            .unwrap();
        state
            .map(|s| {
                s.subscriptions
                    .iter()
                    .map(|k| k.as_str().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn subscribing_twice_is_one_subscription() {
    let w = world(50).await;
    let id = w.connect("c1", Scope::Any).await;
    let body = r#"{"action":"subscribe","artists":["Adele","Taylor Swift"]}"#;
    let first = w.send(&id, "subscribe", body).await;
    let again = w
        .send(
            &id,
            "subscribe",
            r#"{"action":"subscribe","artists":["taylor   SWIFT"]}"#,
        )
        .await;
    assert_eq!(
        first,
        json!({"type":"subscribed","artists":["Adele","Taylor Swift"],"seq":{"Adele":0,"Taylor Swift":0}})
    );
    assert_eq!(
        again,
        json!({"type":"subscribed","artists":["taylor SWIFT"],"seq":{"taylor SWIFT":0}})
    );
    assert_eq!(w.subscriptions(&id).await, vec!["adele", "taylor swift"]);
    assert_eq!(w.connection_items().await, 3);
}

#[tokio::test]
async fn a_scoped_connection_is_refused_other_artists_and_nothing_is_written() {
    let w = world(50).await;
    let adele = Artist::parse("Adele").unwrap().key().clone();
    let id = w.connect("c1", Scope::Only(vec![adele])).await;
    let refused = w
        .send(
            &id,
            "subscribe",
            r#"{"action":"subscribe","artists":["Adele","Muse"]}"#,
        )
        .await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "forbidden");
    assert!(w.subscriptions(&id).await.is_empty());
    let allowed = w
        .send(
            &id,
            "subscribe",
            r#"{"action":"subscribe","artists":["ADELE"]}"#,
        )
        .await;
    assert_eq!(allowed["type"], "subscribed");
}

#[tokio::test]
async fn the_subscription_cap_holds_and_refuses_the_whole_message() {
    let w = world(3).await;
    let id = w.connect("c1", Scope::Any).await;
    w.send(
        &id,
        "subscribe",
        r#"{"action":"subscribe","artists":["A","B"]}"#,
    )
    .await;
    let refused = w
        .send(
            &id,
            "subscribe",
            r#"{"action":"subscribe","artists":["C","D"]}"#,
        )
        .await;
    assert_eq!(refused["code"], "too_many_subscriptions");
    assert_eq!(w.subscriptions(&id).await, vec!["a", "b"]);
    let fits = w
        .send(
            &id,
            "subscribe",
            r#"{"action":"subscribe","artists":["B","C"]}"#,
        )
        .await;
    assert_eq!(fits["type"], "subscribed");
    assert_eq!(w.subscriptions(&id).await, vec!["a", "b", "c"]);
}

#[tokio::test]
async fn concurrent_subscribes_never_exceed_the_cap() {
    let w = world(5).await;
    let id = w.connect("c1", Scope::Any).await;
    let sends = (0..12).map(|i| {
        let body = format!(r#"{{"action":"subscribe","artists":["Artist {i}"]}}"#);
        let (w, id) = (&w, &id);
        async move { subscribe::handle(&w.deps, message_event(id, "subscribe", &body)).await }
    });
    let responses = futures_util::future::join_all(sends).await;
    assert!(responses.iter().all(|r| r.status_code == 200));
    let replies: Vec<Value> = w
        .api
        .delivered_to(id.as_str())
        .iter()
        .map(|d| d.json().unwrap())
        .filter(|f| f["type"] != "welcome")
        .collect();
    assert_eq!(replies.len(), 12, "every message gets exactly one reply");
    let subscribed = replies.iter().filter(|r| r["type"] == "subscribed").count();
    assert_eq!(w.subscriptions(&id).await.len(), subscribed);
    assert!(subscribed <= 5, "{subscribed} subscribed past a cap of 5");
    assert!(
        replies
            .iter()
            .filter(|r| r["type"] == "error")
            .all(|r| r["code"] == "too_many_subscriptions" || r["code"] == "busy"),
        "{replies:?}"
    );
}

#[tokio::test]
async fn unsubscribe_removes_only_the_named_artists() {
    let w = world(50).await;
    let id = w.connect("c1", Scope::Any).await;
    w.send(
        &id,
        "subscribe",
        r#"{"action":"subscribe","artists":["Adele","Muse"]}"#,
    )
    .await;
    let reply = w
        .send(
            &id,
            "unsubscribe",
            r#"{"action":"unsubscribe","artists":["muse","Queen"]}"#,
        )
        .await;
    assert_eq!(
        reply,
        json!({"type":"unsubscribed","artists":["muse","Queen"]})
    );
    assert_eq!(w.subscriptions(&id).await, vec!["adele"]);
    assert_eq!(w.connection_items().await, 2);
}

#[tokio::test]
async fn malformed_messages_get_error_frames_and_write_nothing() {
    let w = world(50).await;
    let id = w.connect("c1", Scope::Any).await;
    let cases = [
        ("$default", "not json", "invalid_json"),
        ("$default", r#"{"action":"dance"}"#, "unknown_action"),
        (
            "subscribe",
            r#"{"action":"subscribe","artists":"Adele"}"#,
            "invalid_message",
        ),
        (
            "subscribe",
            r#"{"action":"subscribe","artists":[]}"#,
            "invalid_artists",
        ),
        (
            "subscribe",
            r#"{"action":"subscribe","artists":["a\u0000b"]}"#,
            "invalid_artists",
        ),
    ];
    for (route, body, code) in cases {
        let reply = w.send(&id, route, body).await;
        assert_eq!(reply["type"], "error", "{body}");
        assert_eq!(reply["code"], code, "{body}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let huge = format!(
        r#"{{"action":"subscribe","artists":["{}"]}}"#,
        "a".repeat(marquee::wire::MAX_INBOUND_BYTES)
    );
    assert_eq!(
        w.send(&id, "subscribe", &huge).await["code"],
        "message_too_large"
    );
    assert_eq!(
        records_but_totals(w.deps.posting.store.table()).await.len(),
        1,
        "only the connection record"
    );
}

#[tokio::test]
async fn a_message_from_an_unknown_connection_is_told_to_reconnect() {
    let w = world(50).await;
    let ghost = ConnectionId::parse("ghost").unwrap();
    let reply = w
        .send(
            &ghost,
            "subscribe",
            r#"{"action":"subscribe","artists":["Adele"]}"#,
        )
        .await;
    assert_eq!(reply["code"], "unknown_connection");
    assert!(all_items(w.deps.posting.store.table()).await.is_empty());
}

#[tokio::test]
async fn disconnect_removes_the_connection_and_all_its_subscriptions_only() {
    let w = world(50).await;
    let gone = w.connect("c-gone", Scope::Any).await;
    let kept = w.connect("c-kept", Scope::Any).await;
    for id in [&gone, &kept] {
        w.send(
            id,
            "subscribe",
            r#"{"action":"subscribe","artists":["Adele","Muse"]}"#,
        )
        .await;
    }
    let deps = w.disconnect_deps();
    let mut event = websocket_event("disconnect.json");
    event.request_context.connection_id = Some(gone.as_str().to_owned());
    assert_eq!(
        disconnect::handle(&deps, event.clone()).await.status_code,
        200
    );
    let left: Vec<String> = all_items(w.deps.posting.store.table())
        .await
        .iter()
        .map(|i| i["pk"].as_s().unwrap().clone())
        .filter(|pk| pk.starts_with("CONN#"))
        .collect();
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|pk| pk == "CONN#c-kept"), "{left:?}");
    assert_eq!(
        disconnect::handle(&deps, event).await.status_code,
        200,
        "disconnecting twice is fine"
    );
}

#[tokio::test]
async fn a_reply_throttled_or_failed_once_is_retried_and_arrives() {
    let w = world(50).await;
    let id = w.connect("c1", Scope::Any).await;
    w.api.fail_next(id.as_str(), 429, 1);
    w.api.fail_next(id.as_str(), 503, 1);

    let response = subscribe::handle(
        &w.deps,
        message_event(
            &id,
            "subscribe",
            r#"{"action":"subscribe","artists":["Adele"]}"#,
        ),
    )
    .await;

    assert_eq!(response.status_code, 200);
    assert_eq!(
        w.api.attempts(id.as_str()),
        4,
        "3 for the reply, 1 for the welcome"
    );
    let replies = w.api.delivered_to(id.as_str());
    assert_eq!(replies.len(), 2, "the reply, then the welcome");
    assert_eq!(
        replies[0].json().unwrap(),
        json!({"type":"subscribed","artists":["Adele"],"seq":{"Adele":0}})
    );
}

#[tokio::test]
async fn subscribes_racing_a_disconnect_leave_no_orphan_subscription() {
    let w = world(50).await;
    let deps = w.disconnect_deps();
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(w.connect(&format!("race-{i:02}"), Scope::Any).await);
    }

    // Each connection: a burst of subscribes with its disconnect in the middle of them.
    futures_util::future::join_all(ids.iter().map(|id| {
        let (deps, w) = (&deps, &w);
        async move {
            let subscribes =
                futures_util::future::join_all((0..6).map(|n| {
                    let body = format!(r#"{{"action":"subscribe","artists":["A{n}"]}}"#);
                    async move {
                        subscribe::handle(&w.deps, message_event(id, "subscribe", &body)).await
                    }
                }));
            let mut event = websocket_event("disconnect.json");
            event.request_context.connection_id = Some(id.as_str().to_owned());
            let (_, response) = tokio::join!(subscribes, disconnect::handle(deps, event));
            assert_eq!(response.status_code, 200);
        }
    }))
    .await;

    // A subscribe that committed before the disconnect leaves its artist's counter item behind
    // at zero once the disconnect removed the subscription (counters expire by TTL, they are
    // not deleted): that is a count, not an orphan. Anything else left is.
    let left: Vec<String> = all_items(w.deps.posting.store.table())
        .await
        .iter()
        .filter(|i| {
            let counter = i["sk"].as_s().unwrap().starts_with("COUNT#");
            // The totals items (`STATS#<shard>`) stay too, and must be back at zero.
            let totals = i["pk"].as_s().unwrap().starts_with("STATS#");
            let zero = |name: &str| i.get(name).is_none_or(|n| n.as_n().unwrap() == "0");
            !(counter && i["subscribers"].as_n().unwrap() == "0"
                || totals && zero("connections") && zero("subscriptions"))
        })
        .map(|i| format!("{} {}", i["pk"].as_s().unwrap(), i["sk"].as_s().unwrap()))
        .collect();
    assert!(left.is_empty(), "orphans or counts off zero: {left:?}");
}

#[tokio::test]
async fn a_reply_to_a_gone_connection_takes_it_off_its_users_list() {
    let w = world(50).await;
    let now = now_epoch_seconds();
    let one = marquee::store::Admission {
        cap: 1,
        replaces: None,
        issued_at: Some(now - 10),
        keep_until: now + 7200,
    };
    let id = w.connect("gone-0000000000=", Scope::Any).await;
    let record = w
        .deps
        .posting
        .store
        .connection_state(&id, now)
        .await
        .unwrap()
        .unwrap()
        .connection;
    let admitted = w
        .deps
        .posting
        .store
        .admit_connection(&record, one, now)
        .await
        .unwrap();
    assert_eq!(admitted, marquee::store::Admitted::Yes);
    w.api.mark_gone(id.as_str());

    let response =
        subscribe::handle(&w.deps, message_event(&id, "ping", r#"{"action":"ping"}"#)).await;

    assert_eq!(response.status_code, 200);
    assert_eq!(
        w.connection_items().await,
        0,
        "the 410 cleanup removed its records"
    );
    let next = Connection {
        id: ConnectionId::parse("next-000000000=").unwrap(),
        ..record
    };
    assert_eq!(
        w.deps
            .posting
            .store
            .admit_connection(&next, one, now)
            .await
            .unwrap(),
        marquee::store::Admitted::Yes,
        "and its place on alice's list (a cap of 1)"
    );
}
