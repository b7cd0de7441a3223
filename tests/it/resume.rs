//! Resuming after a reconnect, through the route logic and the handlers, against DynamoDB
//! Local and the Management API stand-in: sequence numbers, catch-up with `since`, gaps,
//! expired history, and connections ending with their tokens.

use std::time::Duration;

use futures_util::future::join_all;
use marquee::auth::{TokenClaims, mint};
use marquee::config::{Config, FanoutSettings};
use marquee::domain::{Artist, ConnectionId, EventId, now_epoch_seconds};
use marquee::function::Function;
use marquee::lambda::{ConnectDeps, connect};
use marquee::routes::notify::notify;
use marquee::routes::subscribe::{ClientFrame, SubscribeSettings, handle_frame};
use marquee::store::{NewEntry, Retention};
use marquee::work::Notification;
use marquee_tests::{dev_secret, dev_verifier};
use serde_json::{Value, json};

use crate::support::world::{World, tickets_on_sale, world_with};
use marquee::store::{ConnectionStore, EventStore, HistoryStore};

fn settings(max_per_artist: u32) -> FanoutSettings {
    FanoutSettings {
        history: Retention {
            window_seconds: 3600,
            max_per_artist,
        },
        rate_per_invocation: None,
        retry_base: Duration::from_millis(5),
        ..FanoutSettings::default()
    }
}

async fn resume_world(max_per_artist: u32) -> World {
    world_with(settings(max_per_artist), Duration::from_secs(10)).await
}

impl World {
    /// Sends `body` from `id` through the message route at `now`; returns every frame `id` got
    /// for it (the reply first).
    async fn message_at(&self, id: &str, body: &str, now: i64) -> Vec<Value> {
        self.message_until(id, body, now, None).await
    }

    /// As [`World::message_at`], in an invocation whose deadline is `deadline`.
    async fn message_until(
        &self,
        id: &str,
        body: &str,
        now: i64,
        deadline: Option<tokio::time::Instant>,
    ) -> Vec<Value> {
        let connection = ConnectionId::parse(id).unwrap();
        let before = self.frames_to(id).len();
        let settings = SubscribeSettings {
            history_limit: self.deps.fanout.history.max_per_artist,
            ..SubscribeSettings::default()
        };
        let outcome = Function::Subscribe
            .run(Box::pin(handle_frame(
                &self.deps.ports(),
                &settings,
                ClientFrame {
                    connection: &connection,
                    body: Some(body),
                    is_base64_encoded: false,
                    now,
                    deadline,
                },
            )))
            .await;
        assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
        self.frames_to(id)[before..].to_vec()
    }

    async fn message(&self, id: &str, body: &str) -> Vec<Value> {
        self.message_at(id, body, now_epoch_seconds()).await
    }

    /// The frames `id` got, presence frames (welcome, joined, left) left out.
    fn frames_to(&self, id: &str) -> Vec<Value> {
        self.api
            .delivered_to(id)
            .iter()
            .map(|d| d.json().unwrap())
            .filter(|f| !matches!(f["type"].as_str(), Some("welcome" | "joined" | "left")))
            .collect()
    }

    /// Publishes `count` events of Adele, one after the other, named `<prefix>-N`.
    async fn publish(&self, prefix: &str, count: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for n in 1..=count {
            let id = format!("{prefix}-{n}");
            self.notify(tickets_on_sale(&id, "Adele")).await.unwrap();
            ids.push(id);
        }
        ids
    }
}

/// `(type, id or range, seq)` of each frame, to compare sequences at a glance.
fn shape(frames: &[Value]) -> Vec<(String, String, u64)> {
    frames
        .iter()
        .map(|f| {
            let kind = f["type"].as_str().unwrap().to_owned();
            match kind.as_str() {
                "notification" => (
                    kind,
                    f["id"].as_str().unwrap().to_owned(),
                    f["seq"].as_u64().unwrap(),
                ),
                "gap" => (kind, format!("{}..{}", f["from"], f["to"]), 0),
                _ => (kind, String::new(), 0),
            }
        })
        .collect()
}

fn note(id: &str, seq: u64) -> (String, String, u64) {
    ("notification".to_owned(), id.to_owned(), seq)
}

fn kind(name: &str) -> (String, String, u64) {
    (name.to_owned(), String::new(), 0)
}

#[tokio::test]
async fn concurrent_notifies_of_one_artist_get_consecutive_numbers() {
    let w = resume_world(100).await;
    let fan = w.subscribers("fan", "Adele", 1, 600).await.remove(0);

    let results =
        join_all((1..=12).map(|n| w.notify(tickets_on_sale(&format!("rush-{n}"), "Adele")))).await;

    let mut seqs: Vec<u64> = results.into_iter().map(|r| r.unwrap().seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=12).collect::<Vec<u64>>());
    let mut got: Vec<u64> = w
        .frames_to(&fan)
        .iter()
        .map(|f| f["seq"].as_u64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (1..=12).collect::<Vec<u64>>(), "one frame per number");
}

#[tokio::test]
async fn a_retry_after_a_crash_keeps_the_number_the_first_attempt_took() {
    let w = resume_world(100).await;
    let fan = w.subscribers("fan", "Adele", 1, 600).await.remove(0);
    let now = now_epoch_seconds();
    // The first attempt claimed the event and took its number, then died: its lease ran out.
    let id = EventId::parse("crashed-1").unwrap();
    w.deps
        .store
        .claim_event(&id, now - 120, now - 60, now + 3600)
        .await
        .unwrap();
    let adele = Artist::parse("Adele").unwrap();
    let taken = w
        .deps
        .store
        .sequence(
            NewEntry {
                event: &id,
                artist: &adele,
                detail: r#"{"artist":"Adele"}"#,
                time: "2026-11-23T10:00:00Z",
            },
            w.deps.fanout.history,
            now - 100,
            now + 3600,
        )
        .await
        .unwrap();

    let retry = w
        .notify(tickets_on_sale("crashed-1", "Adele"))
        .await
        .unwrap();
    let next = w.notify(tickets_on_sale("after-1", "Adele")).await.unwrap();

    assert_eq!((taken, retry.seq, next.seq), (1, 1, 2));
    assert_eq!(
        shape(&w.frames_to(&fan)),
        vec![note("crashed-1", 1), note("after-1", 2)]
    );
}

#[tokio::test]
async fn a_reconnecting_fan_gets_exactly_what_it_missed_in_order_then_live_ones() {
    let w = resume_world(100).await;
    let first = w.subscribers("phone", "Adele", 1, 600).await.remove(0);
    let seen = w.publish("early", 3).await;
    assert_eq!(w.frames_to(&first).len(), 3);
    // The phone changes networks: the old connection is gone, the new one has no records yet.
    w.deps
        .store
        .delete_connection(&ConnectionId::parse(&first).unwrap())
        .await
        .unwrap();
    let missed = w.publish("missed", 2).await;
    let again = crate::support::world::connect_fresh(&w, "phone-again").await;

    let frames = w
        .message(
            &again,
            r#"{"action":"subscribe","artists":["Adele"],"since":{"adele":3},"ref":"r1"}"#,
        )
        .await;
    w.publish("live", 1).await;

    assert_eq!(
        frames[0],
        json!({"type":"subscribed","artists":["Adele"],"seq":{"Adele":5},"ref":"r1"})
    );
    assert_eq!(
        shape(&frames[1..]),
        vec![note(&missed[0], 4), note(&missed[1], 5)]
    );
    assert_eq!(shape(&w.frames_to(&again)[3..]), vec![note("live-1", 6)]);
    assert_eq!(seen.len(), 3);
}

/// Issue 18, item 6: the same subscribe with `since`, sent again on one connection, replayed
/// the whole history each time. The subscription now keeps how far its catch-up got (an
/// attribute of its item in the table), and asking again replays only what came since.
#[tokio::test]
async fn asking_again_for_a_catch_up_replays_only_what_came_since_the_last_one() {
    let w = resume_world(100).await;
    let held = w.publish("held", 4).await;
    let fan = crate::support::world::connect_fresh(&w, "again").await;
    let ask = r#"{"action":"subscribe","artists":["Adele"],"since":{"Adele":0}}"#;
    let first = w.message(&fan, ask).await;
    let later = w.publish("later", 1).await;
    let live = w.frames_to(&fan).len();

    let second = w.message(&fan, ask).await;
    let third = w.message(&fan, ask).await;

    let expected: Vec<_> = held
        .iter()
        .zip(1..)
        .map(|(id, seq)| note(id, seq))
        .collect();
    assert_eq!(shape(&first[1..]), expected, "the history, once");
    assert_eq!(live, first.len() + 1, "seq 5 reached the fan live");
    assert_eq!(
        shape(&second[1..]),
        vec![note(&later[0], 5)],
        "only what came after the first catch-up"
    );
    assert_eq!(
        shape(&third),
        vec![kind("subscribed")],
        "nothing more is owed"
    );
}

#[tokio::test]
async fn a_since_older_than_the_history_gets_a_gap_before_what_is_held() {
    let w = resume_world(2).await;
    w.publish("sale", 5).await;
    let fan = crate::support::world::connect_fresh(&w, "late").await;

    let frames = w
        .message(
            &fan,
            r#"{"action":"subscribe","artists":["Adele"],"since":{"Adele":1}}"#,
        )
        .await;

    assert_eq!(
        shape(&frames),
        vec![
            kind("subscribed"),
            ("gap".to_owned(), "2..3".to_owned(), 0),
            note("sale-4", 4),
            note("sale-5", 5),
        ]
    );
    assert_eq!(frames[1]["artist"], "Adele");
}

#[tokio::test]
async fn a_catch_up_cut_short_by_its_deadline_ends_in_a_gap_that_a_new_subscribe_fills() {
    let w = resume_world(100).await;
    let sale = w.publish("sale", 10).await;
    let fan = crate::support::world::connect_fresh(&w, "slow").await;
    // Every post takes 150 ms, and the invocation has a second beyond the reserve.
    w.api.stall_next(&fan, Duration::from_millis(150), 100);
    let deadline = tokio::time::Instant::now()
        + marquee::routes::catch_up::DEADLINE_RESERVE
        + Duration::from_secs(1);

    let frames = w
        .message_until(
            &fan,
            r#"{"action":"subscribe","artists":["Adele"],"since":{"Adele":0}}"#,
            now_epoch_seconds(),
            Some(deadline),
        )
        .await;

    assert_eq!(frames[0]["type"], "subscribed");
    let last = frames.last().unwrap();
    assert_eq!(
        (&last["type"], &last["artist"], &last["to"], &last["retry"]),
        (&json!("gap"), &json!("Adele"), &json!(10), &json!(true)),
        "{frames:?}"
    );
    let from = last["from"].as_u64().unwrap();
    let replayed: Vec<_> = (1..from)
        .map(|seq| note(&sale[usize::try_from(seq).unwrap() - 1], seq))
        .collect();
    assert_eq!(shape(&frames[1..frames.len() - 1]), replayed);
    assert!(from <= 10, "the cut came before the end: {frames:?}");

    // The client acts on it: it asks again from where the replay stopped.
    let rest = w
        .message(
            &fan,
            &format!(
                r#"{{"action":"subscribe","artists":["Adele"],"since":{{"Adele":{}}}}}"#,
                from - 1
            ),
        )
        .await;
    let expected: Vec<_> = (from..=10)
        .map(|seq| note(&sale[usize::try_from(seq).unwrap() - 1], seq))
        .collect();
    assert_eq!(shape(&rest[1..]), expected);
}

#[tokio::test]
async fn expired_history_is_not_replayed_and_the_client_is_told_of_the_gap() {
    let w = resume_world(100).await;
    w.publish("old", 3).await;
    let fan = "sleeper".to_owned();
    crate::support::world::connect_all(&w.deps.store, std::slice::from_ref(&fan), 7200).await;
    let later = now_epoch_seconds() + 3600 + 1;

    let frames = w
        .message_at(
            &fan,
            r#"{"action":"subscribe","artists":["Adele"],"since":{"Adele":0}}"#,
            later - 7000,
        )
        .await;
    assert_eq!(
        shape(&frames)[1..],
        [note("old-1", 1), note("old-2", 2), note("old-3", 3)]
    );

    // An hour on the client comes back on a new connection (the one above already had 1 to 3
    // replayed: asked again, it would replay nothing), having kept only 1.
    let back = "sleeper-back".to_owned();
    crate::support::world::connect_all(&w.deps.store, std::slice::from_ref(&back), 7200).await;
    let frames = w
        .message_at(
            &back,
            r#"{"action":"subscribe","artists":["Adele"],"since":{"Adele":1}}"#,
            later,
        )
        .await;
    assert_eq!(
        shape(&frames),
        vec![kind("subscribed"), ("gap".to_owned(), "2..3".to_owned(), 0)]
    );
}

#[tokio::test]
async fn a_connection_ends_with_its_token() {
    let w = resume_world(100).await;
    let now = now_epoch_seconds();
    let exp = now + 60;
    let token = mint(
        &dev_secret(),
        &TokenClaims {
            sub: "erin".into(),
            aud: "marquee".into(),
            iat: now,
            exp,
            nbf: None,
            artists: None,
            subscribe: Some(vec!["Adele".into()]),
            publish: None,
        },
    )
    .unwrap();
    let mut event = marquee_tests::event_json("connect.json");
    event["requestContext"]["connectionId"] = json!("erin-conn");
    event["queryStringParameters"]["token"] = json!(token);
    event["multiValueQueryStringParameters"]["token"] = json!([token]);
    let config = Config::new(w.deps.store.table());
    let deps = ConnectDeps::new(&config, w.deps.store.clone(), dev_verifier().into());
    let response = connect::handle(&deps, serde_json::from_value(event).unwrap()).await;
    assert_eq!(response.status_code, 200);

    // Subscribed by its token, told when it ends (the token's expiry, with its leeway).
    let pong = w.message("erin-conn", r#"{"action":"ping"}"#).await;
    let ends = chrono::DateTime::parse_from_rfc3339(pong[0]["expiresAt"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(ends, exp + marquee::auth::TOKEN_LEEWAY_SECONDS);
    w.publish("before", 1).await;
    assert_eq!(
        shape(&w.frames_to("erin-conn")[1..]),
        vec![note("before-1", 1)]
    );

    // After that, a fan-out skips it and closes it, and its records go.
    let after = ends + 1;
    let notification = Notification::new(
        EventId::parse("after-exp").unwrap(),
        Artist::parse("Adele").unwrap(),
        json!({"artist": "Adele"}),
        "2026-11-23T10:00:00Z".into(),
    )
    .unwrap();
    let summary = Function::Notify
        .run(notify(&w.deps.ports(), &notification, after, None))
        .await
        .unwrap();
    assert_eq!((summary.tally.delivered, summary.tally.closed), (0, 1));
    assert_eq!(w.api.deleted(), vec!["erin-conn".to_owned()]);
    assert_eq!(
        w.frames_to("erin-conn").len(),
        2,
        "nothing after the token expired"
    );
    assert!(w.pks().await.iter().all(|pk| pk != "CONN#erin-conn"));
}

#[tokio::test]
async fn a_frame_from_an_expired_connection_is_answered_then_the_connection_closed() {
    let w = resume_world(100).await;
    let fan = w.subscribers("brief", "Adele", 1, 30).await.remove(0);

    let frames = w
        .message_at(
            &fan,
            r#"{"action":"ping","ref":"p"}"#,
            now_epoch_seconds() + 31,
        )
        .await;

    assert_eq!(frames[0]["code"], "unknown_connection");
    assert_eq!(frames[0]["ref"], "p");
    assert_eq!(w.api.deleted(), vec![fan]);
}
