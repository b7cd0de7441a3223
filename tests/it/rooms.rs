//! Rooms through the route logic against DynamoDB Local and the Management API stand-in:
//! the publish scope, the size and rate limits, the sender left out, exact counts under
//! concurrency, presence switched off above the cap, and a broadcast to every connection.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use marquee::budget::Lane;
use marquee::config::{Config, FanoutSettings};
use marquee::domain::{Artist, ArtistKey, Connection, ConnectionId, now_epoch_seconds};
use marquee::function::Function;
use marquee::lambda::{DisconnectDeps, disconnect};
use marquee::push::management::ManagementPush;
use marquee::queue::Inbox;
use marquee::routes::notify::{Mode, announce};
use marquee::routes::subscribe::{ClientFrame, SubscribeSettings, handle_frame};
use marquee::store::RateLimit;
use marquee::store::dynamo::DynamoStore;
use marquee::work::Announcement;
use marquee_tests::pipeline::Workers;
use marquee_tests::{fresh_rooms_queue, websocket_event};
use serde_json::{Value, json};

use crate::support::world::{World, world_with};
use marquee::store::{ConnectionStore, RoomStore};

fn settings(presence_max: u64) -> FanoutSettings {
    FanoutSettings {
        presence_max,
        rate_per_invocation: None,
        retry_base: Duration::from_millis(5),
        ..FanoutSettings::default()
    }
}

/// No test here crashes a worker, so nothing should come back after its visibility timeout:
/// 30 s, so that a loaded machine's slow `deliver` is not redelivered (the "exactly once"
/// checks would then see the copies the queue's at-least-once promise allows).
///
/// Room messages' work items go to a rooms queue of their own, as in AWS (`RoomsQueue`).
async fn rooms(presence_max: u64) -> World {
    let mut w = world_with(settings(presence_max), Duration::from_secs(30)).await;
    let (rooms, _) = fresh_rooms_queue(Duration::from_secs(30), 50).await;
    w.deps.queue = w.deps.queue.clone().with_rooms(Some(rooms.url()));
    w.deliver.queue = w.deliver.queue.clone().with_rooms(Some(rooms.url()));
    w
}

fn keys(names: &[&str]) -> Vec<ArtistKey> {
    names
        .iter()
        .map(|n| Artist::parse(n).unwrap().key().clone())
        .collect()
}

impl World {
    /// Records connection `id` of user `id`, which may publish to `publish`.
    async fn fan(&self, id: &str, publish: &[&str]) -> ConnectionId {
        let now = now_epoch_seconds();
        let connection = Connection::builder(id)
            .user(id)
            .connected_at(now)
            .lifetime(600)
            .publish(publish)
            .build();
        self.deps.store.put_connection(&connection).await.unwrap();
        connection.id
    }

    async fn say(&self, id: &ConnectionId, body: Value, rate: RateLimit) -> Value {
        let settings = SubscribeSettings {
            publish_rate: rate,
            ..SubscribeSettings::default()
        };
        let text = body.to_string();
        let outcome = Function::Subscribe
            .run(Box::pin(handle_frame(
                &self.deps.ports(),
                &settings,
                ClientFrame {
                    connection: id,
                    body: Some(&text),
                    is_base64_encoded: false,
                    now: now_epoch_seconds(),
                    deadline: None,
                },
            )))
            .await;
        assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
        serde_json::to_value(&outcome.reply).unwrap()
    }

    async fn join(&self, id: &ConnectionId, artist: &str) -> Value {
        self.say(
            id,
            json!({"action": "subscribe", "artists": [artist]}),
            usual(),
        )
        .await
    }

    /// `$disconnect`'s deps over the world's table and stand-in, with its presence limit.
    fn disconnect_deps(&self) -> DisconnectDeps<DynamoStore, ManagementPush> {
        let mut config = Config::new(self.deps.store.table());
        config.fanout = self.deps.fanout.clone();
        DisconnectDeps::new(&config, self.deps.store.clone(), self.deps.push.clone())
    }

    async fn fan_owned(&self, id: String) -> ConnectionId {
        self.fan(&id, &[]).await
    }

    /// Frames `id` got of `kind`.
    fn got(&self, id: &ConnectionId, kind: &str) -> Vec<Value> {
        self.api
            .delivered_to(id.as_str())
            .iter()
            .map(|d| d.json().unwrap())
            .filter(|f| f["type"] == kind)
            .collect()
    }
}

/// The default publish rate (10/s, bursts of 20).
fn usual() -> RateLimit {
    SubscribeSettings::default().publish_rate
}

fn publish(artist: &str, data: &Value) -> Value {
    json!({"action": "publish", "artist": artist, "data": data})
}

#[tokio::test]
async fn a_message_reaches_everyone_else_in_the_room_and_the_sender_is_told_published() {
    let w = rooms(100).await;
    let (ann, bo, cy) = (
        w.fan("ann", &["Adele"]).await,
        w.fan("bo", &[]).await,
        w.fan("cy", &[]).await,
    );
    let outsider = w.fan("dee", &[]).await;
    for fan in [&ann, &bo, &cy] {
        w.join(fan, "Adele").await;
    }
    w.join(&outsider, "Muse").await;

    let reply = w
        .say(
            &ann,
            publish("adele", &json!({"kind": "chat", "text": "hi"})),
            usual(),
        )
        .await;

    assert_eq!(reply["type"], "published");
    let id = reply["id"].as_str().unwrap();
    for fan in [&bo, &cy] {
        let messages = w.got(fan, "message");
        assert_eq!(messages.len(), 1, "{fan}");
        assert_eq!(messages[0]["id"], id);
        assert_eq!(messages[0]["artist"], "adele");
        assert_eq!(messages[0]["from"], "ann");
        assert_eq!(messages[0]["data"], json!({"kind": "chat", "text": "hi"}));
    }
    assert!(w.got(&ann, "message").is_empty(), "never to the sender");
    assert!(w.got(&outsider, "message").is_empty());
}

#[tokio::test]
async fn without_the_publish_claim_a_message_is_forbidden_and_nothing_is_sent() {
    let w = rooms(100).await;
    let (ann, bo) = (w.fan("ann", &["Muse"]).await, w.fan("bo", &[]).await);
    w.join(&bo, "Adele").await;
    let before = w.api.delivered_to(bo.as_str()).len();

    let reply = w.say(&ann, publish("Adele", &json!("hi")), usual()).await;

    assert_eq!(reply["code"], "forbidden");
    assert_eq!(
        w.api.delivered_to(bo.as_str()).len(),
        before,
        "nothing sent to the room"
    );
}

#[tokio::test]
async fn data_over_8_kib_is_refused_and_nothing_is_sent() {
    let w = rooms(100).await;
    let (ann, bo) = (w.fan("ann", &["Adele"]).await, w.fan("bo", &[]).await);
    w.join(&bo, "Adele").await;
    let before = w.api.delivered_to(bo.as_str()).len();

    let reply = w
        .say(
            &ann,
            publish("Adele", &json!("x".repeat(8 * 1024))),
            usual(),
        )
        .await;

    assert_eq!(reply["code"], "data_too_large");
    assert_eq!(
        w.api.delivered_to(bo.as_str()).len(),
        before,
        "nothing sent to the room"
    );
}

#[tokio::test]
async fn a_connection_over_its_rate_is_told_rate_limited_and_nothing_is_sent() {
    let w = rooms(100).await;
    let (ann, bo) = (w.fan("ann", &["Adele"]).await, w.fan("bo", &[]).await);
    w.join(&bo, "Adele").await;
    let tight = RateLimit {
        per_second: 1,
        burst: 3,
    };

    // Against the wall clock the bucket refills while the messages go out, so how many pass
    // beyond the burst depends on how long they take: at most one a second here. (The store
    // contract checks the exact arithmetic, with explicit milliseconds.)
    let started = Instant::now();
    let mut replies: Vec<Value> = Vec::new();
    while replies.len() < 10 {
        let reply = w
            .say(&ann, publish("Adele", &json!(replies.len())), tight)
            .await;
        let limited = reply["code"] == "rate_limited";
        replies.push(reply);
        if limited {
            break;
        }
    }
    let refills = usize::try_from(started.elapsed().as_secs()).unwrap();
    let published = replies.iter().filter(|r| r["type"] == "published").count();

    assert_eq!(
        replies.last().unwrap()["code"],
        "rate_limited",
        "{replies:?}"
    );
    assert_eq!(published, replies.len() - 1, "{replies:?}");
    assert!(
        (3..=3 + refills).contains(&published),
        "the burst of 3, and at most {refills} refilled: {replies:?}"
    );
    assert_eq!(
        w.got(&bo, "message").len(),
        published,
        "a refused message reaches nobody"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = w.say(&ann, publish("Adele", &json!("later")), tight).await;
    assert_eq!(reply["type"], "published", "the bucket refills");
}

#[tokio::test]
async fn counts_stay_exact_under_50_concurrent_subscribes_and_unsubscribes() {
    let w = rooms(0).await;
    let fans = join_all((0..50).map(|i| w.fan_owned(format!("fan-{i:02}")))).await;

    join_all(fans.iter().map(|fan| w.join(fan, "Adele"))).await;
    let full = w
        .deps
        .store
        .subscriber_count(&keys(&["Adele"])[0])
        .await
        .unwrap();
    let leaving = fans.iter().take(20).map(|fan| {
        w.say(
            fan,
            json!({"action": "unsubscribe", "artists": ["ADELE"]}),
            usual(),
        )
    });
    let disconnecting = fans.iter().skip(20).take(10).map(|fan| async {
        let deps = w.disconnect_deps();
        let mut event = websocket_event("disconnect.json");
        event.request_context.connection_id = Some(fan.as_str().to_owned());
        // Twice, as a 410 cleanup racing `$disconnect` would: counted out once.
        let (a, b) = tokio::join!(
            disconnect::handle(&deps, event.clone()),
            disconnect::handle(&deps, event)
        );
        assert_eq!((a.status_code, b.status_code), (200, 200));
        Value::Null
    });
    tokio::join!(join_all(leaving), join_all(disconnecting));

    let left = w
        .deps
        .store
        .subscriber_count(&keys(&["Adele"])[0])
        .await
        .unwrap();
    assert_eq!((full, left), (50, 20));
}

#[tokio::test]
async fn presence_tells_a_small_room_who_comes_and_goes_and_is_off_above_the_cap() {
    let w = rooms(2).await;
    let (ann, bo, cy) = (
        w.fan("ann", &[]).await,
        w.fan("bo", &[]).await,
        w.fan("cy", &[]).await,
    );

    w.join(&ann, "Adele").await;
    w.join(&bo, "Adele").await; // a room of 2: presence on
    w.join(&cy, "Adele").await; // a room of 3: counts only

    assert_eq!(
        w.got(&ann, "joined"),
        vec![json!({"type": "joined", "artist": "Adele", "user": "bo", "subscribers": 2})],
        "bo's arrival, not cy's"
    );
    assert!(w.got(&bo, "joined").is_empty());
    assert_eq!(
        w.got(&cy, "welcome"),
        vec![json!({"type": "welcome", "artist": "Adele", "subscribers": 3})]
    );
    w.say(
        &cy,
        json!({"action": "unsubscribe", "artists": ["Adele"]}),
        usual(),
    )
    .await;
    assert_eq!(
        w.got(&ann, "left"),
        vec![json!({"type": "left", "artist": "Adele", "user": "cy", "subscribers": 2})],
        "back to 2: presence is on again"
    );
    assert_eq!(w.got(&bo, "left").len(), 1);
}

#[tokio::test]
async fn presence_is_per_user_so_a_replacement_connection_neither_enters_nor_leaves() {
    let w = rooms(100).await;
    let ann = w.fan("ann", &[]).await;
    let now = now_epoch_seconds();
    let bo_connection = |id: &str| {
        Connection::builder(id)
            .user("bo")
            .connected_at(now)
            .lifetime(600)
            .build()
    };
    let (old, new) = (bo_connection("bo-old"), bo_connection("bo-new"));
    for connection in [&old, &new] {
        w.deps.store.put_connection(connection).await.unwrap();
    }
    w.join(&ann, "Adele").await;
    w.join(&old.id, "Adele").await;

    // bo's client replaces its connection (make before break): same user, no news.
    w.join(&new.id, "Adele").await;
    let deps = w.disconnect_deps();
    let mut event = websocket_event("disconnect.json");
    event.request_context.connection_id = Some(old.id.as_str().to_owned());
    disconnect::handle(&deps, event).await;

    let notices: Vec<(String, String)> = w
        .api
        .delivered_to(ann.as_str())
        .iter()
        .map(|d| d.json().unwrap())
        .filter(|f| f["type"] == "joined" || f["type"] == "left")
        .map(|f| {
            (
                f["type"].as_str().unwrap().to_owned(),
                f["user"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        notices,
        vec![("joined".to_owned(), "bo".to_owned())],
        "bo entered once"
    );
}

/// `(type, user)` of the presence notices `id` got, in order.
fn notices(w: &World, id: &ConnectionId) -> Vec<(String, String)> {
    w.api
        .delivered_to(id.as_str())
        .iter()
        .map(|d| d.json().unwrap())
        .filter(|f| f["type"] == "joined" || f["type"] == "left")
        .map(|f| {
            (
                f["type"].as_str().unwrap().to_owned(),
                f["user"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn notice(kind: &str, user: &str) -> (String, String) {
    (kind.to_owned(), user.to_owned())
}

#[tokio::test]
async fn a_leave_within_the_window_of_a_join_is_told_at_the_windows_end() {
    let w = rooms(100).await;
    let (ann, bo) = (w.fan("ann", &[]).await, w.fan("bo", &[]).await);
    w.join(&ann, "Adele").await;
    w.join(&bo, "Adele").await;
    // At once: within the window of bo's `joined`, so this call settles the room at its end
    // (it waits for it), telling what is true then: bo left.
    let unsubscribe = json!({"action": "unsubscribe", "artists": ["Adele"]});
    w.say(&bo, unsubscribe, usual()).await;
    assert_eq!(
        notices(&w, &ann),
        vec![notice("joined", "bo"), notice("left", "bo")]
    );
}

#[tokio::test]
async fn a_fan_leaving_and_coming_back_within_the_window_is_not_news() {
    let w = rooms(100).await;
    let (ann, bo) = (w.fan("ann", &[]).await, w.fan("bo", &[]).await);
    w.join(&ann, "Adele").await;
    w.join(&bo, "Adele").await;
    // Unsubscribe, and subscribe again while the unsubscribe waits for the window's end: the
    // settle finds bo in the room, as the room was told. (Before: joined, left, joined.)
    let unsubscribe = json!({"action": "unsubscribe", "artists": ["Adele"]});
    let (left, back) = tokio::join!(w.say(&bo, unsubscribe, usual()), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        w.join(&bo, "Adele").await
    });
    assert_eq!(left["type"], "unsubscribed", "{left}");
    assert_eq!(back["type"], "subscribed", "{back}");
    assert_eq!(notices(&w, &ann), vec![notice("joined", "bo")]);
    let state = w
        .deps
        .store
        .connection_state(&bo, now_epoch_seconds())
        .await
        .unwrap();
    assert_eq!(state.unwrap().subscriptions, keys(&["Adele"]), "bo is in");
}

#[tokio::test]
async fn twenty_subscribe_and_unsubscribe_frames_in_a_second_tell_the_room_at_most_twice() {
    let w = rooms(100).await;
    let (ann, bo) = (w.fan("ann", &[]).await, w.fan("bo", &[]).await);
    w.join(&ann, "Adele").await;
    // Twenty frames, alternating, 40 ms apart, as a client looping would send them (each its
    // own invocation, as API Gateway runs them). Before: one notice to ann per frame applied.
    let frames = (0..20u64).map(|i| {
        let action = if i % 2 == 0 {
            "subscribe"
        } else {
            "unsubscribe"
        };
        let w = &w;
        let bo = &bo;
        async move {
            tokio::time::sleep(Duration::from_millis(40 * i)).await;
            w.say(bo, json!({"action": action, "artists": ["Adele"]}), usual())
                .await
        }
    });
    join_all(frames).await;
    let told = notices(&w, &ann);
    assert!(!told.is_empty() && told.len() <= 2, "{told:?}");
    // What the room was told last is true.
    let state = w
        .deps
        .store
        .connection_state(&bo, now_epoch_seconds())
        .await
        .unwrap();
    let inside = state.unwrap().subscriptions.contains(&keys(&["Adele"])[0]);
    let last = told.last().unwrap();
    assert_eq!(last.0 == "joined", inside, "{told:?}");
}

#[tokio::test]
async fn an_announcement_reaches_every_connection_exactly_once() {
    let w = rooms(0).await;
    let fans = join_all((0..2500).map(|i| w.fan_owned(format!("all-{i:04}")))).await;
    let now = now_epoch_seconds();
    let announcement = Announcement::new(
        marquee::domain::EventId::parse("ann-1").unwrap(),
        "The sale is delayed 10 minutes",
        "2026-11-23T10:00:00Z".into(),
    )
    .unwrap();

    let summary = Function::Notify
        .run(announce(&w.deps.ports(), &announcement, now, None))
        .await
        .unwrap();
    let drained = w.drain(Workers::steady(8)).await;

    assert_eq!(summary.mode, Mode::Queued, "2,500 is past the inline limit");
    let counts = w.delivery_counts();
    assert_eq!(counts.len(), 2500);
    assert!(fans.iter().all(|fan| counts.get(fan.as_str()) == Some(&1)));
    assert_eq!(drained.crashes, 0);
    let frame = w.api.delivered_to(fans[0].as_str())[0].json().unwrap();
    assert_eq!(
        frame,
        json!({"type": "announcement", "id": "ann-1", "message": "The sale is delayed 10 minutes", "time": "2026-11-23T10:00:00Z"})
    );
    let again = Function::Notify
        .run(announce(&w.deps.ports(), &announcement, now, None))
        .await
        .unwrap();
    assert_eq!(again.mode, Mode::Duplicate, "once per event id");
}

#[tokio::test]
async fn a_large_room_gets_a_message_through_the_work_queue_once_each_but_the_sender() {
    let w = rooms(0).await;
    let sender = w.fan("sender", &["Adele"]).await;
    w.join(&sender, "Adele").await;
    let others = w.subscribers("big", "Adele", 2100, 600).await;

    let reply = w
        .say(
            &sender,
            publish("Adele", &json!({"kind": "chat", "text": "hello all"})),
            usual(),
        )
        .await;
    let queued = (
        w.deps.queue.backlog().await.unwrap(),
        w.deps.queue.lane(Lane::Rooms).backlog().await.unwrap(),
    );
    w.drain(Workers::steady(8)).await;

    assert_eq!(reply["type"], "published");
    assert_eq!(queued.0, 0, "nothing of the room's in the work queue");
    assert!(queued.1 > 0, "the room's items are in the rooms queue");
    let counts = w.delivery_counts();
    assert!(others.iter().all(|id| counts.get(id) == Some(&1)));
    assert!(w.got(&sender, "message").is_empty());
}

/// Issue 18, item 3: a busy room's work items waited in the work queue ahead of a sale's, so
/// the sale's first fan waited for them (1.47 s in `scripts/bench lastfan --busy-room` at
/// 1,001 members). Room items now have a queue of their own: the sale's items are the only
/// ones in the work queue, whatever the rooms hold.
#[tokio::test]
async fn a_sale_queued_behind_a_busy_rooms_messages_finds_the_work_queue_holding_only_its_own() {
    let w = rooms(0).await;
    let sender = w.fan("sender", &["Adele"]).await;
    w.join(&sender, "Adele").await;
    w.subscribers("big", "Adele", 600, 600).await;
    for n in 0..2 {
        let said = json!({"kind": "chat", "text": format!("busy {n}")});
        let reply = w.say(&sender, publish("Adele", &said), usual()).await;
        assert_eq!(reply["type"], "published");
    }

    w.notify(crate::support::world::tickets_on_sale("sale-1", "Adele"))
        .await
        .unwrap();

    let work = w.deps.queue.lane(Lane::Sale);
    let mut bodies = Vec::new();
    loop {
        let got = work.receive(10, Duration::from_millis(200)).await.unwrap();
        if got.is_empty() {
            break;
        }
        for message in got {
            work.delete(&message.receipt).await.unwrap();
            bodies.push(message.body);
        }
    }
    let events: std::collections::BTreeSet<String> = bodies
        .iter()
        .map(|body| {
            marquee::work::WorkItem::from_json(body)
                .unwrap()
                .broadcast
                .id
                .as_str()
                .to_owned()
        })
        .collect();
    assert_eq!(
        events.into_iter().collect::<Vec<_>>(),
        ["sale-1"],
        "the work queue holds the sale's items only"
    );
    assert_eq!(bodies.len(), 16, "one item per index shard");
    let rooms_backlog = w.deps.queue.lane(Lane::Rooms).backlog().await.unwrap();
    assert_eq!(rooms_backlog, 32, "two messages' items, one per shard each");
}
