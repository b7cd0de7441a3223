//! Every file in `events/` through its handler, in the order a person would play them,
//! against DynamoDB Local and the Management API stand-in. A new file in `events/` without an
//! expectation here fails the suite.

use std::collections::BTreeSet;

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsEvent;
use marquee::config::Config;
use marquee::lambda::notify::NotifyFailure;
use marquee::lambda::{
    ConnectDeps, DeliverDeps, DisconnectDeps, NotifyDeps, SubscribeDeps, connect, deliver,
    disconnect, notify, subscribe,
};
use marquee::report::SharedEvents;
use marquee::store::ConnectionStore;
use marquee_tests::{
    all_items, dev_verifier, event_json, events_dir, fresh_queue, fresh_table, management_api,
    management_push, websocket_event,
};
use serde_json::{Value, json};

const ALICE: &str = "Tz1RxcgYvHcCF9A=";
const BOB: &str = "Uq2SydhZwIcCGaB=";
const DAVE: &str = "Vr3TzeiAxJdDHbC=";

#[tokio::test]
async fn every_sample_event_gives_its_documented_result() {
    let store = fresh_table().await;
    let api = management_api().await;
    let push = management_push(&api).await;
    // Every setting at its default, as a cold start without overrides reads them.
    let config = Config::new(store.table());
    let connect_deps = ConnectDeps::new(&config, store.clone(), dev_verifier().into());
    let (queue, _) = fresh_queue(Duration::from_secs(30), 5).await;
    // The account budget in the table, at its default rate: every poster leases from it.
    let budget = marquee::lambda::deps::table_budget(&store, config.fanout.budget);
    let no_events = || -> SharedEvents { Arc::new(marquee::report::NoEvents) };
    let subscribe_deps = SubscribeDeps::new(
        &config,
        store.clone(),
        push.clone(),
        queue.clone(),
        Arc::clone(&budget),
        no_events(),
    );
    let notify_deps = NotifyDeps::new(
        &config,
        store.clone(),
        push.clone(),
        queue.clone(),
        Arc::clone(&budget),
        no_events(),
    );
    let deliver_deps = DeliverDeps::new(
        &config,
        store.clone(),
        push.clone(),
        queue,
        budget,
        no_events(),
    );
    let disconnect_deps = DisconnectDeps::new(&config, store.clone(), push);
    let mut played = BTreeSet::new();

    for (file, status) in [
        ("connect.json", 200),
        ("connect-scoped.json", 200),
        ("connect-no-token.json", 401),
        ("connect-bad-token.json", 401),
        ("connect-expired-token.json", 401),
        ("connect-forbidden.json", 403),
        ("connect-subscribe.json", 200),
    ] {
        let response = connect::handle(&connect_deps, websocket_event(file)).await;
        assert_eq!(response.status_code, status, "{file}");
        played.insert(file);
    }
    let connections: BTreeSet<String> = all_items(store.table())
        .await
        .iter()
        .map(|i| i["pk"].as_s().unwrap().clone())
        .filter(|pk| pk.starts_with("CONN#"))
        .collect();
    assert_eq!(
        connections,
        BTreeSet::from([
            format!("CONN#{ALICE}"),
            format!("CONN#{BOB}"),
            format!("CONN#{DAVE}")
        ]),
        "refused connections wrote nothing"
    );
    let dave = marquee::domain::ConnectionId::parse(DAVE).unwrap();
    let state = store
        .connection_state(&dave, marquee::domain::now_epoch_seconds())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        state
            .subscriptions
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>(),
        vec!["adele"],
        "dave's token subscribed him to Adele during $connect"
    );

    for (file, reply) in [
        (
            "subscribe.json",
            json!({"type":"subscribed","artists":["Adele","Taylor Swift"],"seq":{"Adele":0,"Taylor Swift":0}}),
        ),
        ("subscribe-invalid.json", json!("invalid_message")),
        (
            "unsubscribe.json",
            json!({"type":"unsubscribed","artists":["Taylor Swift"]}),
        ),
        ("default.json", json!("unknown_action")),
        ("ping.json", json!("pong")),
    ] {
        let before = api.delivered_to(ALICE).len();
        let response = subscribe::handle(&subscribe_deps, websocket_event(file)).await;
        assert_eq!(response.status_code, 200, "{file}");
        // The reply comes first; a subscribe's welcomes follow it.
        let got = api.delivered_to(ALICE)[before].json().unwrap();
        match reply {
            Value::String(pong) if pong == "pong" => {
                assert_eq!(got["type"], "pong", "{file}");
                assert_eq!(got["connectionId"], ALICE, "{file}");
                assert_eq!(got["ref"], "keepalive-1", "{file}");
                let ends = chrono::DateTime::parse_from_rfc3339(got["expiresAt"].as_str().unwrap())
                    .unwrap()
                    .timestamp();
                let now = marquee::domain::now_epoch_seconds();
                assert!(
                    (now + 7190..=now + 7200).contains(&ends),
                    "the 2-hour cap (the token lasts to 2100): {got}"
                );
            }
            Value::String(code) => {
                assert_eq!(got["type"], "error", "{file}");
                assert_eq!(got["code"], Value::String(code), "{file}");
            }
            frame => assert_eq!(got, frame, "{file}"),
        }
        played.insert(file);
    }

    let event: EventBridgeEvent<Value> = serde_json::from_value(event_json("notify.json")).unwrap();
    let summary = notify::handle(&notify_deps, event, None).await.unwrap();
    assert_eq!(
        (summary.tally.delivered, summary.seq),
        (2, 1),
        "alice and dave are Adele's subscribers; it is Adele's first notification"
    );
    for fan in [ALICE, DAVE] {
        let frame = api.delivered_to(fan).last().unwrap().json().unwrap();
        assert_eq!(frame["type"], "notification");
        assert_eq!(frame["artist"], "Adele");
        assert_eq!(frame["seq"], 1);
    }
    assert!(api.delivered_to(BOB).is_empty());
    played.insert("notify.json");

    let before = api.delivered_to(ALICE).len();
    let response =
        subscribe::handle(&subscribe_deps, websocket_event("subscribe-since.json")).await;
    assert_eq!(response.status_code, 200);
    let frames: Vec<Value> = api.delivered_to(ALICE)[before..]
        .iter()
        .map(|f| f.json().unwrap())
        .collect();
    assert_eq!(
        frames,
        vec![
            json!({"type":"subscribed","artists":["Adele"],"seq":{"Adele":1},"ref":"resume-1"}),
            json!({"type":"welcome","artist":"Adele","subscribers":2}),
            json!({
                "type": "notification",
                "id": event_json("notify.json")["id"],
                "seq": 1,
                "artist": "Adele",
                "detail": event_json("notify.json")["detail"],
                "time": event_json("notify.json")["time"],
            }),
        ],
        "the reply, the room's count (alice and dave), then the one notification after since 0, again"
    );
    played.insert("subscribe-since.json");

    // Dave may talk in Adele's room: alice (in it) gets his message, he gets `published`.
    let before = api.delivered_to(ALICE).len();
    let response = subscribe::handle(&subscribe_deps, websocket_event("publish.json")).await;
    assert_eq!(response.status_code, 200);
    let reply = api.delivered_to(DAVE).last().unwrap().json().unwrap();
    assert_eq!(
        (reply["type"].as_str(), reply["ref"].as_str()),
        (Some("published"), Some("chat-1"))
    );
    let message = api.delivered_to(ALICE)[before].json().unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["id"], reply["id"]);
    assert_eq!(message["from"], "dave");
    assert_eq!(message["artist"], "Adele");
    assert_eq!(
        message["data"],
        json!({"kind": "chat", "text": "Queue opens in 5!"})
    );
    played.insert("publish.json");

    // An announcement reaches every connection: alice, bob and dave.
    let event: EventBridgeEvent<Value> =
        serde_json::from_value(event_json("announce.json")).unwrap();
    let summary = notify::handle(&notify_deps, event, None).await.unwrap();
    assert_eq!(summary.tally.delivered, 3);
    for fan in [ALICE, BOB, DAVE] {
        let frame = api.delivered_to(fan).last().unwrap().json().unwrap();
        assert_eq!(
            frame,
            json!({"type": "announcement", "id": "5c2e8f10-4a7b-4d93-b1e6-0f8a3c7d2e91", "message": "The Adele sale is delayed 10 minutes", "time": "2026-11-22T10:02:00Z"}),
            "{fan}"
        );
    }
    played.insert("announce.json");

    let event: EventBridgeEvent<Value> =
        serde_json::from_value(event_json("notify-invalid.json")).unwrap();
    let failure = notify::handle(&notify_deps, event, None).await.unwrap_err();
    assert!(matches!(failure, NotifyFailure::Invalid(_)), "{failure:?}");
    played.insert("notify-invalid.json");

    for file in ["deliver.json", "deliver-continuation.json"] {
        let before = api.delivered_to(ALICE).len();
        let event: SqsEvent = serde_json::from_value(event_json(file)).unwrap();
        let response = deliver::handle(&deliver_deps, event, None).await;
        assert!(response.batch_item_failures.is_empty(), "{file}");
        let frames = api.delivered_to(ALICE);
        assert_eq!(
            frames.len(),
            before + 1,
            "{file}: alice gets one notification"
        );
        let frame = frames.last().unwrap().json().unwrap();
        assert_eq!(frame["type"], "notification", "{file}");
        assert_eq!(
            frame["id"], "9a1d7c52-3e4b-4f0a-8c6d-2b5e7f1a0c93",
            "{file}"
        );
        assert_eq!(
            api.delivered_to(BOB).len(),
            1,
            "{file}: bob (not subscribed to Adele) has only the announcement"
        );
        played.insert(file);
    }
    let event: SqsEvent = serde_json::from_value(event_json("deliver-invalid.json")).unwrap();
    let message_id = event.records[0].message_id.clone().unwrap();
    let before = api.delivered().len();
    let response = deliver::handle(&deliver_deps, event, None).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        vec![message_id.as_str()],
        "reported for redelivery, then the DLQ"
    );
    assert_eq!(api.delivered().len(), before, "nothing sent");
    played.insert("deliver-invalid.json");

    // Bob is revoked: his connection gets `revoked`, is closed, and his token no longer
    // connects.
    let event: EventBridgeEvent<Value> = serde_json::from_value(event_json("revoke.json")).unwrap();
    let summary = notify::handle(&notify_deps, event, None).await.unwrap();
    assert_eq!((summary.audience, summary.tally.closed), (1, 1));
    let last = api.delivered_to(BOB).last().unwrap().json().unwrap();
    assert_eq!(last, json!({"type": "revoked"}));
    assert!(
        api.deleted().contains(&BOB.to_owned()),
        "bob's socket closed"
    );
    let bob = marquee::domain::ConnectionId::parse(BOB).unwrap();
    let now = marquee::domain::now_epoch_seconds();
    assert!(store.connection_state(&bob, now).await.unwrap().is_none());
    let response = connect::handle(&connect_deps, websocket_event("connect-scoped.json")).await;
    assert_eq!(response.status_code, 401, "bob's token was issued before");
    played.insert("revoke.json");

    let response = disconnect::handle(&disconnect_deps, websocket_event("disconnect.json")).await;
    assert_eq!(response.status_code, 200);
    let alice = marquee::domain::ConnectionId::parse(ALICE).unwrap();
    assert!(
        store
            .connection_state(&alice, marquee::domain::now_epoch_seconds())
            .await
            .unwrap()
            .is_none()
    );
    let left = all_items(store.table()).await;
    assert!(
        left.iter()
            .all(|i| i["pk"].as_s().unwrap() != &format!("CONN#{ALICE}")),
        "alice's subscriptions went with her"
    );
    played.insert("disconnect.json");

    let on_disk: BTreeSet<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    let played: BTreeSet<String> = played.into_iter().map(str::to_owned).collect();
    assert_eq!(
        on_disk, played,
        "every file in events/ has an expectation here"
    );
}
