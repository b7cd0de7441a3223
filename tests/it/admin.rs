//! `marquee-admin`'s commands against DynamoDB Local (and the memory store, which must agree),
//! the Management API stand-in, and moto's SQS and EventBridge.

use std::time::Duration;

use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, MessageSystemAttributeNameForSends,
    MessageSystemAttributeValue,
};
use marquee::domain::{
    Artist, ArtistKey, Connection, ConnectionId, EpochSeconds, EventId, Shard, UserId,
};
use marquee::lambda::deps::Target;
use marquee::lambda::notify::DEFAULT_ON_SALE_DETAIL_TYPE;
use marquee::report::DEFAULT_EVENT_SOURCE;
use marquee::store::ConnectionStore;
use marquee::store::inspect::{ArtistCount, Inspect, Totals};
use marquee::store::memory::MemoryStore;
use marquee::store::{Admission, Admitted, Applied, Removed, Store};
use marquee::work::{Notification, WorkItem};
use marquee_admin::commands::{self, ConnectionStatus, Disconnected, Stats};
use marquee_admin::dlq::{
    self, DeadLetters, EventLetters, Kind, Method, Redrive, Redriven, Redrives, Summaries, Summary,
};
use marquee_admin::render::Output;
use serde_json::json;

const NOW: EpochSeconds = 1_800_000_000;

fn artist(name: &str) -> Artist {
    Artist::parse(name).unwrap()
}

fn key(name: &str) -> ArtistKey {
    artist(name).key().clone()
}

/// Admits, records and subscribes connection `id` of `user`, connected `age` seconds before
/// [`NOW`] and lapsing `left` seconds after it.
async fn connect<S: Store>(
    store: &S,
    user: &str,
    id: &str,
    age: i64,
    left: i64,
    artists: &[&str],
) -> ConnectionId {
    let connection = Connection::builder(id)
        .user(user)
        .connected_at(NOW - age)
        .expires_at(NOW + left)
        .build();
    let admission = Admission {
        cap: 5,
        replaces: None,
        issued_at: None,
        keep_until: NOW + 86_400,
    };
    assert_eq!(
        store
            .admit_connection(&connection, admission, NOW - age)
            .await
            .unwrap(),
        Admitted::Yes
    );
    store.put_connection(&connection).await.unwrap();
    if !artists.is_empty() {
        let artists: Vec<Artist> = artists.iter().map(|a| artist(a)).collect();
        assert_eq!(
            store
                .add_subscriptions(&connection, 0, &artists)
                .await
                .unwrap(),
            Applied::Yes
        );
    }
    connection.id
}

async fn stats_counts_records_and_ranks_artists_from_the_counters<S: Store + Inspect>(store: S) {
    connect(&store, "ann", "c-1", 60, 600, &["Adele", "Muse", "Björk"]).await;
    connect(&store, "bo", "c-2", 60, 600, &["Adele", "Muse"]).await;
    let c3 = connect(&store, "cy", "c-3", 60, 600, &["Adele", "Muse"]).await;
    let c4 = connect(&store, "di", "c-4", 60, 600, &["Adele", "Taylor Swift"]).await;
    // Muse loses one fan to an unsubscribe, Taylor Swift her only fan to a disconnect.
    assert_eq!(
        store
            .remove_subscriptions(&c3, 1, &[key("Muse")])
            .await
            .unwrap(),
        Applied::Yes
    );
    store.delete_connection(&c4).await.unwrap();

    let stats = commands::stats(&store, 2).await.unwrap();

    assert_eq!(
        stats,
        Stats {
            totals: Totals {
                connections: 3,
                subscriptions: 6,
            },
            top: vec![
                ArtistCount {
                    key: key("Adele"),
                    name: "Adele".into(),
                    subscribers: 3,
                },
                ArtistCount {
                    key: key("Muse"),
                    name: "Muse".into(),
                    subscribers: 2,
                },
            ],
        }
    );
    assert_eq!(
        stats.table(),
        "CONNECTIONS  SUBSCRIPTIONS\n3            6\n\n\
         RANK  ARTIST  KEY    SUBSCRIBERS\n\
         1     Adele   adele  3\n\
         2     Muse    muse   2\n"
    );
    assert_eq!(
        stats.json(),
        json!({
            "connections": 3,
            "subscriptions": 6,
            "top": [
                {"artist": "Adele", "key": "adele", "subscribers": 3},
                {"artist": "Muse", "key": "muse", "subscribers": 2},
            ],
        })
    );
}

/// More artists than one page of the count index holds, with counts spread over the shards:
/// the threshold read still finds the exact top.
async fn the_top_is_exact_past_the_first_page_of_every_shard<S: Store + Inspect>(store: S) {
    // Artist `A<n>` has n subscribers, n = 1..=24, from connections f-0 .. f-23.
    let names: Vec<String> = (1..=24).map(|n| format!("A{n:02}")).collect();
    for fan in 0..24_usize {
        let artists: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(n, _)| *n >= fan)
            .map(|(_, name)| name.as_str())
            .collect();
        connect(
            &store,
            &format!("u{fan}"),
            &format!("f-{fan}"),
            1,
            600,
            &artists,
        )
        .await;
    }

    let top = store.top_artists(3).await.unwrap();

    assert_eq!(
        top.iter()
            .map(|a| (a.name.as_str(), a.subscribers))
            .collect::<Vec<_>>(),
        [("A24", 24), ("A23", 23), ("A22", 22)]
    );
}

async fn user_lists_each_connection_with_its_age_expiry_and_subscriptions<S: Store + Inspect>(
    store: S,
) {
    connect(&store, "alice", "a-1", 300, 3_300, &["Adele", "Muse"]).await;
    connect(&store, "alice", "a-2", 7_322, 60, &[]).await;
    connect(&store, "alice", "a-3", 7_200, -30, &["Adele"]).await;
    connect(&store, "bob", "b-1", 10, 600, &["Adele"]).await;

    let view = commands::user(&store, &UserId::parse("alice").unwrap(), NOW)
        .await
        .unwrap();

    assert_eq!(
        view.connections,
        vec![
            (
                ConnectionId::parse("a-1").unwrap(),
                ConnectionStatus::Live {
                    connected_at: NOW - 300,
                    expires_at: NOW + 3_300,
                    subscriptions: vec![key("Adele"), key("Muse")],
                }
            ),
            (
                ConnectionId::parse("a-2").unwrap(),
                ConnectionStatus::Live {
                    connected_at: NOW - 7_322,
                    expires_at: NOW + 60,
                    subscriptions: vec![],
                }
            ),
            (
                ConnectionId::parse("a-3").unwrap(),
                ConnectionStatus::Lapsed {
                    expires_at: NOW - 30
                }
            ),
        ]
    );
    assert_eq!(
        view.table(),
        "CONNECTION  STATUS  AGE   EXPIRES                         SUBSCRIPTIONS\n\
         a-1         live    5m    2027-01-15T08:55:00Z (in 55m)   adele,muse\n\
         a-2         live    2h2m  2027-01-15T08:01:00Z (in 1m)    -\n\
         a-3         lapsed  -     2027-01-15T07:59:30Z (30s ago)  -\n"
    );
    assert_eq!(
        view.json()["connections"][0],
        json!({
            "id": "a-1",
            "status": "live",
            "connected_at": "2027-01-15T07:55:00Z",
            "age_seconds": 300,
            "expires_at": "2027-01-15T08:55:00Z",
            "expires_in_seconds": 3300,
            "subscriptions": ["adele", "muse"],
        })
    );
}

contract!(
    stats_counts_records_and_ranks_artists_from_the_counters,
    the_top_is_exact_past_the_first_page_of_every_shard,
    user_lists_each_connection_with_its_age_expiry_and_subscriptions,
);

#[tokio::test]
async fn disconnect_closes_the_connection_and_removes_its_records_as_a_410_would() {
    let store = marquee_tests::fresh_table().await;
    let api = marquee_tests::management_api().await;
    let push = marquee_tests::management_push(&api).await;
    let now = marquee::domain::now_epoch_seconds();
    let id = ConnectionId::parse("d-1").unwrap();
    let connection = Connection::builder(id.as_str())
        .user("dana")
        .connected_at(now)
        .lifetime(600)
        .build();
    let admission = Admission {
        cap: 5,
        replaces: None,
        issued_at: None,
        keep_until: now + 3600,
    };
    store
        .admit_connection(&connection, admission, now)
        .await
        .unwrap();
    store.put_connection(&connection).await.unwrap();
    store
        .add_subscriptions(&connection, 0, &[artist("Adele"), artist("Muse")])
        .await
        .unwrap();

    let done = commands::disconnect(&store, &push, &id, 100, now)
        .await
        .unwrap();

    assert_eq!(
        done,
        Disconnected {
            id: id.clone(),
            was_open: true,
            removed: Removed {
                items: 3,
                user: Some(UserId::parse("dana").unwrap()),
                artists: vec![artist("Adele"), artist("Muse")],
            },
        }
    );
    assert_eq!(api.deleted(), vec!["d-1".to_owned()]);
    assert_eq!(store.connection_state(&id, now).await.unwrap(), None);
    assert!(
        store
            .user_connections(&UserId::parse("dana").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.totals().await.unwrap(),
        Totals {
            connections: 0,
            subscriptions: 0
        }
    );
    assert!(store.top_artists(10).await.unwrap().is_empty());
    assert_eq!(
        done.json(),
        json!({
            "connection": "d-1",
            "was": "open",
            "user": "dana",
            "items_removed": 3,
            "rooms_left": ["Adele", "Muse"],
        })
    );
}

fn work_item(event: &str, shard: u16) -> String {
    let notification = Notification::new(
        EventId::parse(event).unwrap(),
        artist("Adele"),
        json!({"artist": "Adele"}),
        "2026-11-22T10:00:00Z".into(),
    )
    .unwrap();
    WorkItem::first(
        notification.broadcast().unwrap(),
        Shard::new(shard).unwrap(),
    )
    .to_json()
}

async fn fresh_plain_queue(sqs: &aws_sdk_sqs::Client) -> String {
    sqs.create_queue()
        .queue_name(marquee_tests::unique_name("dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// An on-sale event from `source` as EventBridge's dead-letter queue holds it.
fn event_body(source: &str) -> String {
    json!({
        "id": "ev-1", "source": source, "detail-type": DEFAULT_ON_SALE_DETAIL_TYPE,
        "time": "2026-11-22T10:00:00Z", "detail": {"artist": "Adele", "venue": "O2"}
    })
    .to_string()
}

#[tokio::test]
async fn dlq_summarises_each_queue_by_event_and_leaves_every_message_in_it() {
    let sqs = marquee_tests::sqs_client().await;
    let (work, events) = (fresh_plain_queue(&sqs).await, fresh_plain_queue(&sqs).await);
    for body in [
        work_item("e-1", 3),
        work_item("e-1", 4),
        work_item("e-2", 0),
    ] {
        sqs.send_message()
            .queue_url(&work)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    sqs.send_message()
        .queue_url(&events)
        .message_body(event_body(DEFAULT_EVENT_SOURCE))
        .message_attributes(
            "ERROR_MESSAGE",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("Lambda throttled")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let queues = [
        DeadLetters {
            kind: Kind::Events,
            url: events.clone(),
        },
        DeadLetters {
            kind: Kind::Work,
            url: work.clone(),
        },
    ];

    let summaries = dlq::summarise(&sqs, &queues, &mut |_| {}).await.unwrap();

    assert_eq!(
        summaries,
        Summaries(vec![
            Summary {
                kind: Kind::Events,
                events: vec![EventLetters {
                    event: "ev-1".into(),
                    messages: 1,
                    about: format!("{DEFAULT_ON_SALE_DETAIL_TYPE} Adele"),
                    error: "Lambda throttled".into(),
                }],
            },
            Summary {
                kind: Kind::Work,
                events: vec![
                    EventLetters {
                        event: "e-1".into(),
                        messages: 2,
                        about: "artist adele shard 3".into(),
                        error: "failed every receive".into(),
                    },
                    EventLetters {
                        event: "e-2".into(),
                        messages: 1,
                        about: "artist adele shard 0".into(),
                        error: "failed every receive".into(),
                    },
                ],
            },
        ])
    );
    assert_eq!(
        summaries.table(),
        "QUEUE   EVENT  MESSAGES  ABOUT                 ERROR\n\
         events  ev-1   1         TicketsOnSale Adele   Lambda throttled\n\
         work    e-1    2         artist adele shard 3  failed every receive\n\
         work    e-2    1         artist adele shard 0  failed every receive\n"
    );
    assert_eq!(
        marquee_tests::receive_all(&sqs, &work).await.len(),
        3,
        "still there, visible"
    );
    assert_eq!(
        marquee_tests::receive_all(&sqs, &events).await.len(),
        1,
        "still there, visible"
    );
}

#[tokio::test]
async fn a_work_redrive_sends_each_item_back_to_its_queue_with_its_trace_header() {
    let (queue, dead) = marquee_tests::fresh_queue(Duration::from_secs(30), 5).await;
    let sqs = marquee_tests::sqs_client().await;
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    sqs.send_message()
        .queue_url(dead.url())
        .message_body(work_item("e-9", 7))
        .message_system_attributes(
            MessageSystemAttributeNameForSends::AwsTraceHeader,
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(header)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let queues = [DeadLetters {
        kind: Kind::Work,
        url: dead.url().to_owned(),
    }];
    let how = Redrive {
        events: None,
        move_task: false,
    };

    let done = dlq::redrive(&sqs, &queues, &how, &mut |_| {})
        .await
        .unwrap();

    assert_eq!(
        done,
        Redrives(vec![Redriven {
            kind: Kind::Work,
            method: Method::Resent,
            moved: 1,
            failed: 0,
        }])
    );
    assert!(
        marquee_tests::receive_all(&sqs, dead.url())
            .await
            .is_empty()
    );
    let back = marquee_tests::receive_all(&sqs, queue.url()).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body(), Some(work_item("e-9", 7).as_str()));
    assert_eq!(
        back[0]
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))
            .map(String::as_str),
        Some(header)
    );
}

#[tokio::test]
async fn an_events_redrive_puts_each_event_on_the_bus_again_with_its_time() {
    let sqs = marquee_tests::sqs_client().await;
    let (dead, target) = (fresh_plain_queue(&sqs).await, fresh_plain_queue(&sqs).await);
    // A rule on moto's EventBridge that sends this test's source to a queue we can read.
    let source = marquee_tests::unique_name("tickets");
    let sdk = marquee::lambda::deps::sdk_config(Target::Local).await;
    let events = aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::config::Builder::from(&sdk)
            .endpoint_url(marquee_tests::sqs_endpoint())
            .build(),
    );
    let rule = marquee_tests::unique_name("rule");
    events
        .put_rule()
        .name(&rule)
        .event_pattern(json!({"source": [source]}).to_string())
        .send()
        .await
        .unwrap();
    let arn = target.rsplit('/').next().unwrap();
    events
        .put_targets()
        .rule(&rule)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("q")
                .arn(format!("arn:aws:sqs:us-east-1:123456789012:{arn}"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(&dead)
        .message_body(event_body(&source))
        .send()
        .await
        .unwrap();
    let queues = [DeadLetters {
        kind: Kind::Events,
        url: dead.clone(),
    }];
    let how = Redrive {
        events: Some((events, None)),
        move_task: true,
    };

    let done = dlq::redrive(&sqs, &queues, &how, &mut |_| {})
        .await
        .unwrap();

    assert_eq!(
        done,
        Redrives(vec![Redriven {
            kind: Kind::Events,
            method: Method::PutEvents,
            moved: 1,
            failed: 0,
        }])
    );
    assert!(marquee_tests::receive_all(&sqs, &dead).await.is_empty());
    let published = marquee_tests::receive_all(&sqs, &target).await;
    assert_eq!(published.len(), 1);
    let event: serde_json::Value = serde_json::from_str(published[0].body().unwrap()).unwrap();
    assert_eq!(
        (
            &event["source"],
            &event["detail-type"],
            &event["detail"],
            &event["time"]
        ),
        (
            &json!(source),
            &json!(DEFAULT_ON_SALE_DETAIL_TYPE),
            &json!({"artist": "Adele", "venue": "O2"}),
            &json!("2026-11-22T10:00:00Z")
        )
    );
}

#[tokio::test]
async fn event_reads_a_report_live_while_its_fan_out_runs_and_complete_after_it() {
    use crate::support::world::{fast, tickets_on_sale, world_with};
    use marquee::config::FanoutSettings;
    use marquee::store::Reports;
    use marquee_tests::pipeline::Workers;

    // Queued (nothing inline), pages of 40: 130 fans take several work items.
    let w = world_with(
        FanoutSettings {
            inline_max: 0,
            ..fast(40)
        },
        Duration::from_secs(10),
    )
    .await;
    let fans = w.subscribers("ev", "Adele", 130, 600).await;
    w.api.mark_gone(&fans[7]);
    w.notify(tickets_on_sale("evt-admin", "Adele"))
        .await
        .unwrap();
    let id = EventId::parse("evt-admin").unwrap();
    let now = marquee::domain::now_epoch_seconds();

    // Before any item ran: the report is there, running, nothing delivered yet.
    let running = commands::event(&w.deps.store, &id, now).await.unwrap();
    assert_eq!(running.state(), "running");
    assert!(running.report.outstanding > 0, "{:?}", running.report);
    assert_eq!(running.report.delivered, 0);
    assert_eq!(running.report.audience, 130);
    assert!(running.table().contains("running"), "{}", running.table());

    w.drain(Workers {
        count: 2,
        crash_rate: 0.0,
        crash_within: Duration::from_secs(1),
        seed: 1,
        lease: Duration::from_secs(4),
    })
    .await;
    let done = commands::event(&w.deps.store, &id, now).await.unwrap();
    let stored = w
        .deps
        .store
        .delivery_report(&id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.report, stored, "the command shows the stored report");
    assert_eq!(done.state(), "complete");
    assert_eq!((done.report.delivered, done.report.gone), (129, 1));
    assert_eq!(u64::try_from(w.api.delivered().len()).unwrap(), 129);
    assert_eq!(done.report.outstanding, 0);
    assert!(done.report.items > 1, "{:?}", done.report);

    let table = done.table();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("EVENT"), "{table}");
    for cell in [
        "evt-admin",
        "notification",
        "adele",
        "complete",
        "130",
        "129",
    ] {
        assert!(
            lines[1].split_whitespace().any(|c| c == cell),
            "{cell} in {table}"
        );
    }
    let json = done.json();
    assert_eq!(json["event_id"], "evt-admin");
    assert_eq!(json["state"], "complete");
    assert_eq!(json["delivered"], 129);
    assert_eq!(json["gone"], 1);
    assert!(json["seconds_to_last_post"].as_f64().is_some(), "{json}");

    // An id never fanned out has no report: a failure (exit 1), not an empty table.
    let missing = commands::event(&w.deps.store, &EventId::parse("evt-none").unwrap(), now).await;
    assert!(
        matches!(&missing, Err(marquee_admin::AdminError::Failed(m)) if m.contains("evt-none")),
        "{missing:?}"
    );
}
