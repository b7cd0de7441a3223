//! The local gateway end to end, with real WebSocket clients, against the embedded store and
//! against DynamoDB Local (the same suite twice).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use marquee::lambda::notify::DEFAULT_ON_SALE_DETAIL_TYPE;
use marquee::report::{DEFAULT_EVENT_SOURCE, FANOUT_COMPLETED_DETAIL_TYPE};
use marquee_local::gateway::{Gateway, Limits, PushPath};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::support::gateway::{
    Backing, Client, PATIENCE, connect, fill_until_refused, gateway, gateway_with, next_frame,
    only_connection, post_to, publish, send, subscribe, wait_until_gone,
};

/// Waits for the server's close frame; returns its code.
async fn close_code(client: &mut Client) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("a close in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

async fn a_bad_token_is_refused_at_the_handshake_with_401(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let refused = connect_async(gateway.ws_url("not-a-token")).await;
    let Err(WsError::Http(response)) = refused else {
        panic!("expected an HTTP refusal, got {refused:?}");
    };
    assert_eq!(response.status(), 401);
    assert_eq!(gateway.open_connections(), 0);
}

async fn a_subscriber_receives_the_notification_for_its_artist(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let mut client = connect(&gateway, "alice").await;
    subscribe(&mut client, &["Adele"]).await;
    let event_id = publish(&gateway, "adele").await;
    let frame = next_frame(&mut client).await;
    assert_eq!(frame["type"], "notification");
    assert_eq!(frame["id"], event_id.as_str());
    assert_eq!(frame["detail"]["venue"], "Test Hall");
}

async fn two_clients_on_different_artists_each_get_only_their_own(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let mut adele_fan = connect(&gateway, "a").await;
    let mut muse_fan = connect(&gateway, "b").await;
    subscribe(&mut adele_fan, &["Adele"]).await;
    subscribe(&mut muse_fan, &["Muse"]).await;
    publish(&gateway, "Adele").await;
    publish(&gateway, "Muse").await;
    assert_eq!(next_frame(&mut adele_fan).await["artist"], "Adele");
    assert_eq!(next_frame(&mut muse_fan).await["artist"], "Muse");
    // A third publish proves nothing else was queued before it for either client.
    publish(&gateway, "Adele").await;
    assert_eq!(next_frame(&mut adele_fan).await["artist"], "Adele");
    publish(&gateway, "Muse").await;
    assert_eq!(next_frame(&mut muse_fan).await["artist"], "Muse");
}

async fn an_unknown_action_gets_an_error_frame_and_the_socket_stays_open(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let mut client = connect(&gateway, "alice").await;
    send(&mut client, json!({"action": "dance"})).await;
    let reply = next_frame(&mut client).await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("unknown_action"))
    );
    client.send(Message::text("not json")).await.unwrap();
    assert_eq!(next_frame(&mut client).await["code"], "invalid_json");
    subscribe(&mut client, &["Adele"]).await;
}

async fn an_oversize_frame_closes_with_1009(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let mut client = connect(&gateway, "alice").await;
    let big = format!(
        r#"{{"action":"subscribe","artists":["{}"]}}"#,
        "a".repeat(40 * 1024)
    );
    client.send(Message::text(big)).await.unwrap();
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Size));
}

async fn deleting_a_connection_closes_its_socket_and_removes_its_records(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let mut client = connect(&gateway, "alice").await;
    subscribe(&mut client, &["Adele"]).await;
    let ids = gateway.connection_ids();
    assert_eq!(ids.len(), 1);
    let id = ids[0].clone();
    assert_eq!(gateway.has_record(&id).await.unwrap(), Some(true));

    let sdk = marquee::lambda::deps::sdk_config(marquee::lambda::deps::Target::Local).await;
    let management = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(format!("{}/local", gateway.http_url()))
            .build(),
    );
    let info = management
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        info.identity().and_then(|i| i.source_ip()),
        Some("127.0.0.1")
    );
    management
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();

    assert_eq!(close_code(&mut client).await, Some(CloseCode::Normal));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while gateway.has_record(&id).await.unwrap() == Some(true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "$disconnect never removed the records"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone = management
        .post_to_connection()
        .connection_id(&id)
        .data(b"x".to_vec().into())
        .send()
        .await;
    assert!(gone.unwrap_err().into_service_error().is_gone_exception());
}

async fn an_idle_socket_is_closed_after_the_idle_timeout(backing: Backing) {
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let gateway = gateway(backing, limits).await;
    let mut client = connect(&gateway, "alice").await;
    let started = tokio::time::Instant::now();
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Away));
    assert!(started.elapsed() >= Duration::from_millis(250));
}

async fn a_busy_socket_is_still_closed_at_the_maximum_duration(backing: Backing) {
    let limits = Limits {
        idle_timeout: Duration::from_millis(300),
        max_duration: Duration::from_millis(900),
        ..Limits::default()
    };
    let gateway = gateway(backing, limits).await;
    let mut client = connect(&gateway, "alice").await;
    let started = tokio::time::Instant::now();
    let code = loop {
        // Pings every 100 ms keep the socket from going idle.
        client.send(Message::Ping(Vec::new().into())).await.ok();
        match tokio::time::timeout(Duration::from_millis(100), client.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(_)) | None) => break None,
        }
        assert!(started.elapsed() < PATIENCE, "never closed");
    };
    assert_eq!(code, Some(CloseCode::Away));
    assert!(
        started.elapsed() >= Duration::from_millis(850),
        "{:?}",
        started.elapsed()
    );
}

async fn two_hundred_clients_on_one_artist_all_receive_one_publish(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let mut clients = Vec::new();
    for i in 0..200 {
        let mut client = connect(&gateway, &format!("fan-{i}")).await;
        subscribe(&mut client, &["Adele"]).await;
        clients.push(client);
    }
    let event_id = publish(&gateway, "Adele").await;
    let received = futures_util::future::join_all(clients.iter_mut().map(next_frame)).await;
    assert!(received.iter().all(|f| f["id"] == event_id.as_str()));
    assert_eq!(received.len(), 200);
}

async fn a_large_audience_goes_through_the_work_queue_to_every_client_once(backing: Backing) {
    // Nothing inline, small pages: notify → queue → many deliver items and continuations.
    let gateway = gateway_with(backing, Limits::default(), |config| {
        config.functions.fanout.inline_max = 0;
        config.functions.fanout.page_size = 5;
        config.deliver_workers = 3;
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..60 {
        let mut client = connect(&gateway, &format!("fan-{i}")).await;
        subscribe(&mut client, &["Adele"]).await;
        clients.push(client);
    }
    let event_id = publish(&gateway, "Adele").await;
    let received = futures_util::future::join_all(clients.iter_mut().map(next_frame)).await;
    assert!(received.iter().all(|f| f["id"] == event_id.as_str()));
    // Exactly once: nothing more arrives on any socket but presence frames (a later fan's
    // `joined` may come after the notification: each subscribe is its own route, as in AWS).
    for client in &mut clients {
        while let Ok(more) = tokio::time::timeout(Duration::from_millis(50), client.next()).await {
            let Some(Ok(Message::Text(text))) = more else {
                panic!("a second frame: {more:?}");
            };
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            assert!(
                matches!(frame["type"].as_str(), Some("joined" | "left" | "welcome")),
                "a second frame: {frame}"
            );
        }
    }
}

async fn an_artist_whose_key_is_longer_than_a_name_is_reached_through_the_work_queue(
    backing: Backing,
) {
    let gateway = gateway_with(backing, Limits::default(), |config| {
        config.functions.fanout.inline_max = 0;
    })
    .await;
    let mut fan = connect(&gateway, "fan").await;
    subscribe(&mut fan, &[crate::support::LONG_KEY_NAME]).await;

    let event_id = publish(&gateway, crate::support::LONG_KEY_NAME).await;

    let frame = next_frame(&mut fan).await;
    assert_eq!(
        (
            frame["type"].as_str(),
            frame["id"].as_str(),
            frame["artist"].as_str()
        ),
        (
            Some("notification"),
            Some(event_id.as_str()),
            Some(crate::support::LONG_KEY_NAME)
        ),
        "{frame}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_gets_429s_then_is_closed_as_a_slow_consumer() {
    let limits = Limits {
        outbox_bytes: 256 * 1024,
        send_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let gateway = gateway(Backing::Memory, limits).await;
    let _never_reads = connect(&gateway, "sloth").await;
    let id = only_connection(&gateway);

    assert_eq!(fill_until_refused(&gateway, &id).await, 429);

    wait_until_gone(&gateway, &id, PATIENCE).await;
    assert_eq!(post_to(&gateway, &id, 10).await, 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timer_fires_while_a_write_is_blocked() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(1500),
        send_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let gateway = gateway(Backing::Memory, limits).await;
    let _never_reads = connect(&gateway, "sloth").await;
    let id = only_connection(&gateway);

    fill_until_refused(&gateway, &id).await;

    // The idle timeout, plus at most a second for a close frame nobody reads.
    wait_until_gone(&gateway, &id, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maximum_duration_fires_while_a_write_is_blocked() {
    let limits = Limits {
        max_duration: Duration::from_millis(1500),
        send_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let gateway = gateway(Backing::Memory, limits).await;
    let _never_reads = connect(&gateway, "sloth").await;
    let id = only_connection(&gateway);

    fill_until_refused(&gateway, &id).await;

    wait_until_gone(&gateway, &id, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_answers_429_and_the_client_gets_every_accepted_frame_once_it_reads() {
    let limits = Limits {
        outbox_bytes: 256 * 1024,
        ..Limits::default()
    };
    let gateway = gateway(Backing::Memory, limits).await;
    let mut late_reader = connect(&gateway, "late").await;
    let id = only_connection(&gateway);
    let mut accepted = 0;
    loop {
        match post_to(&gateway, &id, 64 * 1024).await {
            200 => accepted += 1,
            429 => break,
            other => panic!("a post answered {other}"),
        }
        assert!(accepted < 1024, "never a 429");
    }

    for _ in 0..accepted {
        let frame = tokio::time::timeout(PATIENCE, late_reader.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        assert_eq!(frame.into_text().unwrap().len(), 64 * 1024 + 2);
    }
    assert_eq!(post_to(&gateway, &id, 10).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_direct_push_a_subscriber_gets_its_reply_and_the_notification() {
    let gateway = gateway_with(Backing::Memory, Limits::default(), |config| {
        config.push = PushPath::Direct;
    })
    .await;
    let mut client = connect(&gateway, "alice").await;
    subscribe(&mut client, &["Adele"]).await;

    let event_id = publish(&gateway, "Adele").await;

    let frame = next_frame(&mut client).await;
    assert_eq!(frame["type"], "notification");
    assert_eq!(frame["id"], event_id.as_str());
}

/// One raw HTTP/1.1 exchange with the given `Host` (and `Origin`); the status and body.
async fn raw_request(
    gateway: &Gateway,
    method: &str,
    path: &str,
    host: &str,
    origin: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", gateway.addr().port()))
        .await
        .unwrap();
    let origin = origin.map_or_else(String::new, |o| format!("Origin: {o}\r\n"));
    let body = json!({"Entries": [{
        "Source": DEFAULT_EVENT_SOURCE,
        "DetailType": DEFAULT_ON_SALE_DETAIL_TYPE,
        "Detail": json!({"artist": "Adele"}).to_string(),
    }]})
    .to_string();
    let body = if method == "POST" { body.as_str() } else { "" };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_elsewhere_cannot_publish_events() {
    let gateway = gateway(Backing::Memory, Limits::default()).await;
    let host = format!("127.0.0.1:{}", gateway.addr().port());

    let (status, body) = raw_request(
        &gateway,
        "POST",
        "/events",
        &host,
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Origin \"https://evil.example\""), "{body}");

    let own_page = format!("http://{host}");
    let (status, body) = raw_request(&gateway, "POST", "/events", &host, Some(&own_page)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_host_name_cannot_fetch_a_dev_token() {
    let gateway = gateway(Backing::Memory, Limits::default()).await;
    let port = gateway.addr().port();

    let (status, body) = raw_request(
        &gateway,
        "GET",
        "/dev/token?sub=mallory",
        &format!("rebind.evil.example:{port}"),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Host \"rebind.evil.example:"), "{body}");
    assert!(!body.contains("token\""), "{body}");

    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let (status, body) = raw_request(&gateway, "GET", "/dev/token?sub=dev", &host, None).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_cannot_open_a_socket() {
    let gateway = gateway(Backing::Memory, Limits::default()).await;
    let handshake = |origin: &str| {
        let mut request = gateway
            .ws_url(&gateway.token("alice", None))
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    };

    let refused = connect_async(handshake("https://evil.example")).await;
    let Err(WsError::Http(response)) = refused else {
        panic!("expected an HTTP refusal, got {refused:?}");
    };
    assert_eq!(response.status(), 403);
    assert_eq!(gateway.open_connections(), 0);

    let own_page = format!("http://127.0.0.1:{}", gateway.addr().port());
    let (_client, response) = connect_async(handshake(&own_page))
        .await
        .expect("handshake");
    assert_eq!(response.status(), 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_bound_beyond_loopback_serves_no_dev_token() {
    let gateway = gateway_with(Backing::Memory, Limits::default(), |config| {
        config.host = std::net::Ipv4Addr::UNSPECIFIED.into();
    })
    .await;
    let host = format!("127.0.0.1:{}", gateway.addr().port());
    assert!(gateway.is_exposed());

    let (status, body) = raw_request(&gateway, "GET", "/dev/token?sub=dev", &host, None).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = raw_request(&gateway, "GET", "/health", &host, None).await;
    assert_eq!(status, 200);
}

/// `GET /events/{id}` until it answers 200 (the fan-out's last item finished); its body.
async fn completed_report(gateway: &Gateway, event_id: &str) -> Value {
    let host = format!("127.0.0.1:{}", gateway.addr().port());
    let started = std::time::Instant::now();
    loop {
        let (status, body) =
            raw_request(gateway, "GET", &format!("/events/{event_id}"), &host, None).await;
        if status == 200 {
            return serde_json::from_str(&body).unwrap();
        }
        assert_eq!(status, 404, "{body}");
        assert!(
            started.elapsed() < PATIENCE,
            "no FanoutCompleted for {event_id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_queued_fan_outs_fanout_completed_is_served_on_get_events(backing: Backing) {
    let gateway = gateway_with(backing, Limits::default(), |config| {
        config.functions.fanout.inline_max = 0;
        config.functions.fanout.page_size = 5;
        config.deliver_workers = 3;
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..12 {
        let mut client = connect(&gateway, &format!("fan-{i}")).await;
        subscribe(&mut client, &["Adele"]).await;
        clients.push(client);
    }
    let event_id = publish(&gateway, "Adele").await;
    futures_util::future::join_all(clients.iter_mut().map(next_frame)).await;

    let report = completed_report(&gateway, &event_id).await;

    assert_eq!(
        (
            &report["event_id"],
            &report["kind"],
            &report["artist"],
            &report["audience"],
            &report["delivered"],
            &report["gone"],
            &report["failed"],
            &report["complete"]
        ),
        (
            &json!(event_id),
            &json!("notification"),
            &json!("adele"),
            &json!(12),
            &json!(12),
            &json!(0),
            &json!(0),
            &json!(true)
        ),
        "{report}"
    );
    assert!(report["seconds_to_last_post"].as_f64().unwrap() >= 0.0);
    let host = format!("127.0.0.1:{}", gateway.addr().port());
    let (status, listed) = raw_request(&gateway, "GET", "/events", &host, None).await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!((status, listed), (200, json!([report])), "sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanout_completed_put_to_the_gateway_is_served_and_a_malformed_one_refused() {
    let gateway = gateway(Backing::Memory, Limits::default()).await;
    let detail = json!({
        "event_id": "e-outside", "kind": "announcement", "artist": null, "audience": 3,
        "delivered": 2, "gone": 1, "failed": 0, "retried": 0, "redriven": 0, "closed": 0,
        "duplicates": 0, "items": 1, "dead_lettered": 0, "seconds_to_first_post": 0.5,
        "seconds_to_last_post": 0.75, "complete": true
    });
    let entry = |detail: String| {
        json!({"Entries": [{
            "Source": DEFAULT_EVENT_SOURCE, "DetailType": FANOUT_COMPLETED_DETAIL_TYPE, "Detail": detail
        }]})
    };
    let url = format!("{}/events", gateway.http_url());

    let bad = marquee_local::post_json(&url, &entry(json!({"event_id": 7}).to_string()))
        .await
        .unwrap();
    let good = marquee_local::post_json(&url, &entry(detail.to_string()))
        .await
        .unwrap();

    assert_eq!(bad["FailedEntryCount"], 1, "{bad}");
    assert_eq!(good["FailedEntryCount"], 0, "{good}");
    assert_eq!(completed_report(&gateway, "e-outside").await, detail);
}

both_stores!(
    a_bad_token_is_refused_at_the_handshake_with_401,
    a_subscriber_receives_the_notification_for_its_artist,
    two_clients_on_different_artists_each_get_only_their_own,
    an_unknown_action_gets_an_error_frame_and_the_socket_stays_open,
    an_oversize_frame_closes_with_1009,
    deleting_a_connection_closes_its_socket_and_removes_its_records,
    an_idle_socket_is_closed_after_the_idle_timeout,
    a_busy_socket_is_still_closed_at_the_maximum_duration,
    two_hundred_clients_on_one_artist_all_receive_one_publish,
    a_large_audience_goes_through_the_work_queue_to_every_client_once,
    an_artist_whose_key_is_longer_than_a_name_is_reached_through_the_work_queue,
    a_queued_fan_outs_fanout_completed_is_served_on_get_events,
);
