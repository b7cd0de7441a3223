//! Resuming through the local gateway with real WebSocket clients, on both stores: catch-up
//! after a dropped socket, a gap beyond the history window, ping and pong, and subscribing
//! through the token at connect.

use std::time::Duration;

use marquee_local::gateway::{DevToken, Gateway, Limits};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;

use crate::support::gateway::{
    Backing, Client, connect, gateway, gateway_with, next_frame, publish, send,
};

/// Reads `count` frames, which must all be notifications: `(id, seq)` of each.
async fn notifications(client: &mut Client, count: usize) -> Vec<(String, u64)> {
    let mut got = Vec::new();
    for _ in 0..count {
        let frame = next_frame(client).await;
        assert_eq!(frame["type"], "notification", "{frame}");
        got.push((
            frame["id"].as_str().unwrap().to_owned(),
            frame["seq"].as_u64().unwrap(),
        ));
    }
    got
}

/// Sends a ping and returns the pong: every frame queued before it has been read by then.
async fn ping(client: &mut Client, reference: &str) -> Value {
    send(client, json!({"action": "ping", "ref": reference})).await;
    let pong = next_frame(client).await;
    assert_eq!(pong["type"], "pong", "nothing else may come first: {pong}");
    pong
}

async fn resubscribe(client: &mut Client, since: u64) -> Value {
    send(
        client,
        json!({"action": "subscribe", "artists": ["Adele"], "since": {"Adele": since}}),
    )
    .await;
    next_frame(client).await
}

/// Waits until the gateway has only `open` sockets open (a dropped one's `$disconnect` ran).
async fn until_open(gateway: &Gateway, open: usize) {
    for _ in 0..200 {
        if gateway.open_connections() == open {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the dropped socket is still open");
}

/// A client that stays subscribed to Adele throughout: publishing is asynchronous (as
/// `PutEvents` is), and the witness's frames show when each publish has been fanned out.
async fn witness(gateway: &Gateway) -> Client {
    let mut client = connect(gateway, "witness").await;
    crate::support::gateway::subscribe(&mut client, &["Adele"]).await;
    client
}

async fn a_fan_who_drops_gets_exactly_what_was_missed_in_order_then_live_ones(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let mut witness = witness(&gateway).await;
    let mut client = connect(&gateway, "alice").await;
    crate::support::gateway::subscribe(&mut client, &["Adele"]).await;
    let mut early = Vec::new();
    for _ in 0..3 {
        early.push(publish(&gateway, "Adele").await);
    }
    // Live notifications of one artist are fanned out independently: any order.
    let mut seen = notifications(&mut client, 3).await;
    seen.sort_by_key(|(_, seq)| *seq);
    assert_eq!(
        seen.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    client.close(None).await.unwrap();
    drop(client);
    until_open(&gateway, 1).await;

    let mut missed = vec![
        publish(&gateway, "Adele").await,
        publish(&gateway, "Adele").await,
    ];
    // Which number each event was given (concurrent publishes take them in any order).
    let mut numbered = notifications(&mut witness, 5).await;
    numbered.sort_by_key(|(_, seq)| *seq);
    let mut client = connect(&gateway, "alice").await;
    let reply = resubscribe(&mut client, 3).await;
    let replayed = notifications(&mut client, 2).await;
    let live = publish(&gateway, "Adele").await;
    let after = notifications(&mut client, 1).await;
    ping(&mut client, "end").await;

    assert_eq!(
        reply,
        json!({"type": "subscribed", "artists": ["Adele"], "seq": {"Adele": 5}}),
        "the latest seq when the subscription took effect"
    );
    assert_eq!(
        replayed,
        numbered[3..].to_vec(),
        "exactly the two missed, in order"
    );
    let mut replayed_ids: Vec<String> = replayed.into_iter().map(|(id, _)| id).collect();
    replayed_ids.sort();
    missed.sort();
    assert_eq!(replayed_ids, missed);
    assert_eq!(after, vec![(live, 6)]);
    let mut seen_ids: Vec<String> = seen.into_iter().map(|(id, _)| id).collect();
    seen_ids.sort();
    early.sort();
    assert_eq!(seen_ids, early);
}

/// Issue 18, item 7: a route ran inside its socket's loop, so the socket's writes stopped
/// while it ran. A catch-up larger than the outbox then met a full outbox (429) on every retry
/// and was cut short. Routes now run on tasks of their own, and the socket drains as it fills.
async fn a_catch_up_larger_than_the_outbox_arrives_whole(backing: Backing) {
    let limits = Limits {
        outbox_bytes: 2 * 1024,
        ..Limits::default()
    };
    let gateway = gateway(backing, limits).await;
    let mut witness = witness(&gateway).await;
    for _ in 0..40 {
        publish(&gateway, "Adele").await;
    }
    // Every one numbered and kept (the witness has them all) before the fan comes.
    notifications(&mut witness, 40).await;

    let mut client = connect(&gateway, "alice").await;
    let reply = resubscribe(&mut client, 0).await;
    let replayed = notifications(&mut client, 40).await;
    ping(&mut client, "end").await;

    assert_eq!(reply["seq"]["Adele"], 40, "{reply}");
    assert_eq!(
        replayed.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<u64>>(),
        "all 40, in order, no gap"
    );
}

async fn a_notification_older_than_the_window_is_reported_as_a_gap(backing: Backing) {
    // Expiry is kept in whole seconds: an entry written at `now` lives until `now + window`,
    // so between 3 and 4 s of wall time with this window. The two old ones are numbered before
    // the witness sees them, so after it has and 5.1 s more they are gone; the held one has
    // at least 3 s left when bob subscribes, which takes well under that even on a busy
    // machine. (A window of 1 s let the held one lapse too, about one run in five.)
    const WINDOW_SECONDS: u64 = 4;
    let gateway = gateway_with(backing, Limits::default(), |config| {
        config.functions.fanout.history.window_seconds = WINDOW_SECONDS.cast_signed();
    })
    .await;
    let mut witness = witness(&gateway).await;
    publish(&gateway, "Adele").await;
    publish(&gateway, "Adele").await;
    notifications(&mut witness, 2).await;
    tokio::time::sleep(Duration::from_secs(WINDOW_SECONDS) + Duration::from_millis(1100)).await;
    let held = publish(&gateway, "Adele").await;
    notifications(&mut witness, 1).await;

    let mut client = connect(&gateway, "bob").await;
    resubscribe(&mut client, 0).await;
    let gap = next_frame(&mut client).await;
    let replayed = notifications(&mut client, 1).await;
    ping(&mut client, "end").await;

    assert_eq!(
        gap,
        json!({"type": "gap", "artist": "Adele", "from": 1, "to": 2})
    );
    assert_eq!(replayed, vec![(held, 3)]);
}

async fn a_ping_is_answered_with_when_the_connection_ends(backing: Backing) {
    let limits = Limits {
        max_duration: Duration::from_secs(30),
        ..Limits::default()
    };
    let gateway = gateway(backing, limits).await;
    let mut client = connect(&gateway, "carol").await;
    let before = marquee::domain::now_epoch_seconds();

    let pong = ping(&mut client, "k1").await;

    let ends = chrono::DateTime::parse_from_rfc3339(pong["expiresAt"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!((before + 28..=before + 30).contains(&ends), "{pong}");
    assert_eq!(pong["ref"], "k1");
    assert_eq!(
        pong["connectionId"].as_str().unwrap(),
        gateway.connection_ids()[0]
    );
}

async fn a_token_can_subscribe_at_connect(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let token = gateway.token_with(
        "dave",
        &DevToken {
            subscribe: Some(vec!["Adele".into()]),
            ..DevToken::default()
        },
    );
    let (mut client, _) = connect_async(gateway.ws_url(&token)).await.unwrap();

    let id = publish(&gateway, "Adele").await;

    assert_eq!(notifications(&mut client, 1).await, vec![(id, 1)]);
}

async fn a_subscribe_claim_beyond_the_scope_refuses_the_handshake(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let token = gateway.token_with(
        "eve",
        &DevToken {
            artists: Some(vec!["Muse".into()]),
            subscribe: Some(vec!["Adele".into()]),
            ..DevToken::default()
        },
    );
    let refused = connect_async(gateway.ws_url(&token)).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("expected an HTTP refusal, got {refused:?}");
    };
    assert_eq!(response.status(), 403);
    assert_eq!(gateway.open_connections(), 0);
}

both_stores!(
    a_fan_who_drops_gets_exactly_what_was_missed_in_order_then_live_ones,
    a_catch_up_larger_than_the_outbox_arrives_whole,
    a_notification_older_than_the_window_is_reported_as_a_gap,
    a_ping_is_answered_with_when_the_connection_ends,
    a_token_can_subscribe_at_connect,
    a_subscribe_claim_beyond_the_scope_refuses_the_handshake,
);
