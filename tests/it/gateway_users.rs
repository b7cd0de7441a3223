//! One user's connections through the local gateway with real WebSocket clients, on both
//! stores: revoking a user live (a last `revoked` frame, the socket closed, the old token
//! refused, a newer one accepted), and the cap on live connections per user under 50
//! concurrent connects, with the one overlap a make-before-break replacement may take.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use marquee::auth::{Secret, TokenClaims, mint};
use marquee::config::DEV_TOKEN_SECRET;
use marquee::domain::now_epoch_seconds;
use marquee::lambda::notify::REVOKE_DETAIL_TYPE;
use marquee::report::DEFAULT_EVENT_SOURCE;
use marquee_local::gateway::{Gateway, Limits};
use serde_json::json;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::support::gateway::{Backing, Client, PATIENCE, gateway, next_any_frame, send};

/// The handshake's status (101 when it opened), and the client when it did.
async fn handshake(url: &str) -> (u16, Option<Client>) {
    match connect_async(url).await {
        Ok((client, response)) => (response.status().as_u16(), Some(client)),
        Err(WsError::Http(response)) => (response.status().as_u16(), None),
        Err(other) => panic!("handshake failed below HTTP: {other:?}"),
    }
}

/// A dev token for `sub` issued at `iat`.
fn token_issued_at(sub: &str, iat: i64) -> String {
    mint(
        &Secret::new(DEV_TOKEN_SECRET).unwrap(),
        &TokenClaims {
            sub: sub.into(),
            aud: "marquee".into(),
            iat,
            exp: iat + 3600,
            nbf: None,
            artists: None,
            subscribe: None,
            publish: None,
        },
    )
    .unwrap()
}

/// The connection id, from a `pong`.
async fn connection_id(client: &mut Client) -> String {
    send(client, json!({"action": "ping"})).await;
    let pong = next_any_frame(client).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    pong["connectionId"].as_str().unwrap().to_owned()
}

/// Whether the server closed the socket (a close frame, or the stream's end) within `within`.
async fn closed_within(client: &mut Client, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Err(_) => return false,
            Ok(Some(Ok(Message::Close(_))) | Some(Err(_)) | None) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn revoke(gateway: &Gateway, user: &str) {
    let answer = marquee_local::post_json(
        &format!("{}/events", gateway.http_url()),
        &json!({"Entries": [{
            "Source": DEFAULT_EVENT_SOURCE,
            "DetailType": REVOKE_DETAIL_TYPE,
            "Detail": json!({"user": user, "reason": "chargeback"}).to_string(),
        }]}),
    )
    .await
    .unwrap();
    assert_eq!(answer["FailedEntryCount"], 0, "{answer}");
}

async fn a_revoked_users_three_sockets_are_closed_within_two_seconds_and_their_token_refused(
    backing: Backing,
) {
    let gateway = gateway(backing, Limits::default()).await;
    let old_token = token_issued_at("mallory", now_epoch_seconds() - 5);
    let mut mallory = Vec::new();
    for _ in 0..3 {
        let (status, client) = handshake(&gateway.ws_url(&old_token)).await;
        assert_eq!(status, 101);
        mallory.push(client.unwrap());
    }
    let (_, alice) = handshake(&gateway.ws_url(&gateway.token("alice", None))).await;
    let mut alice = alice.unwrap();

    let started = Instant::now();
    revoke(&gateway, "mallory").await;

    for client in &mut mallory {
        let last = next_any_frame(client).await;
        assert_eq!(last, json!({"type": "revoked"}));
        assert!(closed_within(client, Duration::from_secs(2)).await);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "all three closed in {:?}",
        started.elapsed()
    );
    connection_id(&mut alice).await; // alice's socket is open and answers
    let (refused, _) = handshake(&gateway.ws_url(&old_token)).await;
    assert_eq!(refused, 401, "a token issued before the revocation");
    let newer = token_issued_at("mallory", now_epoch_seconds() + 2);
    let (accepted, _) = handshake(&gateway.ws_url(&newer)).await;
    assert_eq!(accepted, 101, "a token issued after it");
}

/// A frame posted just before `DeleteConnection` (as a revocation's last `revoked`, or a
/// 410's cleanup) still reaches the client, then the close: both calls answered, in that order,
/// with no step in between for the socket's task.
async fn a_frame_posted_right_before_a_close_is_written_before_the_close(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let (_, client) = handshake(&gateway.ws_url(&gateway.token("ann", None))).await;
    let mut client = client.unwrap();
    let id = connection_id(&mut client).await;

    let registry = gateway.registry();
    registry
        .post(
            &id,
            tokio_tungstenite::tungstenite::Bytes::from_static(br#"{"type":"revoked"}"#),
        )
        .unwrap();
    registry.disconnect(&id).unwrap();

    assert_eq!(
        next_any_frame(&mut client).await,
        json!({"type": "revoked"})
    );
    assert!(closed_within(&mut client, Duration::from_secs(2)).await);
}

async fn fifty_concurrent_connects_of_one_user_leave_five_open_and_one_overlap_for_a_renewal(
    backing: Backing,
) {
    let gateway = gateway(backing, Limits::default()).await;
    let token = gateway.token("swarm", None);
    let url = gateway.ws_url(&token);

    let attempts = futures_util::future::join_all((0..50).map(|_| handshake(&url))).await;

    let mut statuses: Vec<u16> = attempts.iter().map(|(status, _)| *status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [[101; 5].as_slice(), &[429; 45]].concat());
    assert_eq!(gateway.open_connections(), 5);

    let mut open: Vec<Client> = attempts.into_iter().filter_map(|(_, c)| c).collect();
    let old = connection_id(&mut open[0]).await;
    // Connection ids are base64-like (`+`, `/`, `=`): encoded, as the client library's
    // URLSearchParams does.
    let encoded: String = old
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.' => c.to_string(),
            other => format!("%{:02X}", u32::from(other)),
        })
        .collect();
    let renewal = format!("{url}&replaces={encoded}");
    let (first_overlap, _renewed) = handshake(&renewal).await;
    let (second_overlap, _) = handshake(&renewal).await;
    assert_eq!(
        (first_overlap, second_overlap),
        (101, 429),
        "one over the cap for a replacement, one overlap at a time"
    );
    let (bad, _) = handshake(&format!("{url}&replaces=%20")).await;
    assert_eq!(bad, 400, "a replaces that is not a connection id");
}

async fn a_closed_socket_gives_its_place_back(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let url = gateway.ws_url(&gateway.token("solo", None));
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(handshake(&url).await.1.unwrap());
    }
    assert_eq!(handshake(&url).await.0, 429);

    let mut leaving = open.pop().unwrap();
    leaving.close(None).await.unwrap();

    // `$disconnect` runs after the close, on its own: ask until it has.
    let started = Instant::now();
    loop {
        let (status, _) = handshake(&url).await;
        if status == 101 {
            break;
        }
        assert_eq!(status, 429);
        assert!(started.elapsed() < PATIENCE, "the place never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

both_stores!(
    a_revoked_users_three_sockets_are_closed_within_two_seconds_and_their_token_refused,
    a_frame_posted_right_before_a_close_is_written_before_the_close,
    fifty_concurrent_connects_of_one_user_leave_five_open_and_one_overlap_for_a_renewal,
    a_closed_socket_gives_its_place_back,
);
