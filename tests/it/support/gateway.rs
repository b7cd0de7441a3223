//! The local gateway harness: a gateway on either store, real WebSocket clients, and what the
//! gateway suites (gateway, gateway_close, gateway_identity, gateway_resume, gateway_rooms,
//! gateway_users) send and wait for.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use marquee_local::gateway::{Gateway, GatewayConfig, Limits, StoreChoice};
use marquee_local::http::JsonClient;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub(crate) type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for a frame that should arrive.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub(crate) enum Backing {
    Memory,
    Dynamo,
}

pub(crate) async fn gateway(backing: Backing, limits: Limits) -> Gateway {
    gateway_with(backing, limits, |_| {}).await
}

pub(crate) async fn gateway_with(
    backing: Backing,
    limits: Limits,
    tweak: impl FnOnce(&mut GatewayConfig),
) -> Gateway {
    let mut config = GatewayConfig::local_defaults();
    tweak(&mut config);
    config.port = 0;
    config.limits = limits;
    if let Backing::Dynamo = backing {
        config.store = StoreChoice::Dynamo {
            endpoint: marquee_tests::dynamodb_endpoint(),
        };
        config.functions.table_name = marquee_tests::unique_name("gw");
    }
    Gateway::start(config).await.expect("gateway starts")
}

pub(crate) async fn connect(gateway: &Gateway, sub: &str) -> Client {
    let (client, response) = connect_async(gateway.ws_url(&gateway.token(sub, None)))
        .await
        .expect("handshake");
    assert_eq!(response.status(), 101);
    client
}

pub(crate) async fn send(client: &mut Client, body: Value) {
    client
        .send(Message::text(body.to_string()))
        .await
        .expect("send");
}

/// The next text frame as JSON, presence frames (`welcome`, `joined`, `left`) and WebSocket
/// pings and pongs skipped: what the notification tests look at.
pub(crate) async fn next_frame(client: &mut Client) -> Value {
    loop {
        let frame = next_any_frame(client).await;
        if !matches!(frame["type"].as_str(), Some("welcome" | "joined" | "left")) {
            return frame;
        }
    }
}

/// The next text frame as JSON, whatever it is (WebSocket pings and pongs skipped).
pub(crate) async fn next_any_frame(client: &mut Client) -> Value {
    loop {
        let message = tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

pub(crate) async fn subscribe(client: &mut Client, artists: &[&str]) {
    send(client, json!({"action": "subscribe", "artists": artists})).await;
    let reply = next_frame(client).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
}

pub(crate) async fn publish(gateway: &Gateway, artist: &str) -> String {
    let answer = marquee_local::post_json(
        &format!("{}/events", gateway.http_url()),
        &json!({"Entries": [{
            "Source": marquee::report::DEFAULT_EVENT_SOURCE,
            "DetailType": marquee::lambda::notify::DEFAULT_ON_SALE_DETAIL_TYPE,
            "Detail": json!({"artist": artist, "venue": "Test Hall"}).to_string(),
        }]}),
    )
    .await
    .expect("publish");
    assert_eq!(answer["FailedEntryCount"], 0, "{answer}");
    answer["Entries"][0]["EventId"].as_str().unwrap().to_owned()
}

/// The only open connection's id.
pub(crate) fn only_connection(gateway: &Gateway) -> String {
    let ids = gateway.connection_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

/// Posts `bytes` bytes of text to `id` through the gateway's Management API; the status.
pub(crate) async fn post_to(gateway: &Gateway, id: &str, bytes: usize) -> u16 {
    let url = format!(
        "{}/local/@connections/{}",
        gateway.http_url(),
        id.replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D")
    );
    let answer = JsonClient::default()
        .post(&url, &json!("x".repeat(bytes)))
        .await
        .expect("an answer");
    answer.status.as_u16()
}

/// Posts 64 KiB frames to a client that never reads until the gateway refuses one: 429 when
/// its outbox is full (so a write to the socket is blocked), or 410 when it already closed the
/// socket. Returns that status; panics when 64 MiB went through.
pub(crate) async fn fill_until_refused(gateway: &Gateway, id: &str) -> u16 {
    for _ in 0..1024 {
        match post_to(gateway, id, 64 * 1024).await {
            200 => {}
            refused @ (410 | 429) => return refused,
            other => panic!("a post answered {other}"),
        }
    }
    panic!("64 MiB posted to a client that never reads, and never refused");
}

/// Waits until the gateway has forgotten `id` (closed, and `$disconnect` ran); returns how long
/// that took.
pub(crate) async fn wait_until_gone(gateway: &Gateway, id: &str, within: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    while gateway.connection_ids().iter().any(|open| open == id)
        || gateway.has_record(id).await.unwrap() == Some(true)
    {
        assert!(
            started.elapsed() < within,
            "still open after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}
