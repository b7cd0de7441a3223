//! One WebSocket's life, as API Gateway runs it: `$connect` decides the handshake, every frame
//! is routed by `$request.body.action`, frames posted through the Management API go out, and
//! `$disconnect` runs whenever the socket ends, from either side.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};

use super::Shared;
use super::backend::Route;
use super::events::{self, SocketInfo};
use super::registry::Outbox;
use super::tcp::Peer;

/// Close code for a message or frame over the limits.
const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for idle and maximum-duration closes.
const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code when `DeleteConnection` closes the socket.
const CLOSE_NORMAL: u16 = 1000;
/// Close code for a slow consumer: a frame not written within the send timeout (a policy of
/// this gateway, so 1008 "policy violation"; the client should reconnect).
const CLOSE_SLOW_CONSUMER: u16 = 1008;
/// Reported to `$disconnect` when the socket ended without a close frame.
const CLOSE_ABNORMAL: u16 = 1006;
/// Reported when the close frame had no code.
const CLOSE_NO_STATUS: u16 = 1005;
/// Longest the gateway tries to write its close frame (a client that does not read never
/// takes it).
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Routes of one socket that may run at once (API Gateway invokes the integration for each
/// message as it comes; this bound keeps one client from holding the gateway's every task).
const ROUTES_PER_SOCKET: usize = 8;
/// Bytes read from the socket at once. Small, because every idle socket keeps its read
/// buffer: tungstenite's default (128 KiB, zero-filled on the first read) made an idle
/// connection cost over 128 KiB. A larger frame grows the buffer for as long as it needs.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Runs `$connect` for an upgrade request and, on 2xx, accepts the socket.
pub(super) async fn accept(
    gateway: Arc<Shared>,
    upgrade: WebSocketUpgrade,
    peer: Peer,
    headers: &HeaderMap,
    query: BTreeMap<String, String>,
) -> Response {
    let header_map: BTreeMap<String, String> = headers
        .iter()
        .filter_map(|(name, value)| {
            Some((title_case(name.as_str()), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let info = SocketInfo {
        connection_id: events::connection_id(),
        connected_at: SystemTime::now(),
        source_ip: peer.addr.ip().to_string(),
        user_agent: header_map.get("User-Agent").cloned(),
        domain_name: host.split(':').next().unwrap_or(host).to_owned(),
        stage: gateway.stage.clone(),
    };
    let id = info.connection_id.clone();
    let started = Instant::now();
    let event = events::connect_event(&info, &header_map, &query);
    let status = match gateway.backend.route(Route::Connect, event).await {
        Ok(status) => status,
        Err(err) => {
            tracing::error!(connection_id = %id, error = &err as &dyn std::error::Error, "$connect failed");
            500
        }
    };
    if !(200..300).contains(&status) {
        tracing::info!(connection_id = %id, status, ms = elapsed_ms(started), "$connect refused the handshake");
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, status.canonical_reason().unwrap_or("Refused")).into_response();
    }
    tracing::info!(connection_id = %id, peer = %peer.addr, ms = elapsed_ms(started), "connected");
    let outbox = gateway
        .registry
        .open(info.clone(), gateway.limits.outbox_bytes);
    let failed = Arc::clone(&gateway);
    let failed_info = info.clone();
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        // Every frame is flushed at once; the outbox, not tungstenite, holds what waits.
        .write_buffer_size(0)
        .max_frame_size(gateway.limits.max_frame_bytes)
        .max_message_size(gateway.limits.max_message_bytes)
        .on_failed_upgrade(move |err| {
            tracing::warn!(connection_id = %failed_info.connection_id, error = %err, "upgrade failed after $connect");
            tokio::spawn(async move {
                finish(&failed, &failed_info, CLOSE_ABNORMAL, "Upgrade failed").await;
            });
        })
        .on_upgrade(move |socket| run(gateway, info, peer, outbox, socket))
}

type Sink = SplitSink<WebSocket, Message>;

/// How a socket ends: the close code and reason `$disconnect` is told, and what the gateway
/// still sends the client.
struct End {
    code: u16,
    reason: String,
    farewell: Farewell,
}

/// What the gateway sends as the socket ends.
enum Farewell {
    /// Its own close frame, with this code and reason.
    Close(u16, &'static str),
    /// The client sent a close frame: it gets one back with the same code (RFC 6455 5.5.1, and
    /// API Gateway does so).
    Echo,
    /// Nothing: the connection is already broken or closed.
    Nothing,
}

impl End {
    fn closing(code: u16, reason: &'static str, disconnect_reason: &str) -> Self {
        Self {
            code,
            reason: disconnect_reason.into(),
            farewell: Farewell::Close(code, reason),
        }
    }

    fn broken(reason: &str) -> Self {
        Self {
            code: CLOSE_ABNORMAL,
            reason: reason.into(),
            farewell: Farewell::Nothing,
        }
    }
}

/// The socket's life: one task reads client frames, writes the outbox one frame at a time,
/// and watches the timers. Writing never blocks the loop: a frame is handed to the socket,
/// then flushed in a `select!` arm beside the others, so the idle, maximum-duration and send
/// timers fire whatever the client does.
///
/// When it ends, the gateway's last frame (its close, or the echo of the client's) gets
/// [`CLOSE_GRACE`] to be written. A client that does not read never takes it, and a graceful
/// TCP close would then leave the connection half open behind what is queued, so the connection
/// is reset instead ([`Peer::reset_on_close`]). Then `$disconnect` runs.
async fn run(
    gateway: Arc<Shared>,
    info: SocketInfo,
    peer: Peer,
    outbox: Arc<Outbox>,
    socket: WebSocket,
) {
    let (mut sink, mut stream) = socket.split();
    let end = serve(&gateway, &info, &outbox, &mut sink, &mut stream).await;
    let said_goodbye = match end.farewell {
        Farewell::Close(code, reason) => goodbye(&mut sink, code, reason).await,
        Farewell::Echo => echo(&mut sink).await,
        Farewell::Nothing => true,
    };
    if !said_goodbye {
        tracing::warn!(
            connection_id = %info.connection_id,
            grace_ms = elapsed_ms_of(CLOSE_GRACE),
            "the close frame was not written in time; resetting the connection"
        );
        peer.reset_on_close();
    }
    // The connection closes (or is reset) here, before `$disconnect` runs, as in AWS.
    drop((sink, stream));
    finish(&gateway, &info, end.code, &end.reason).await;
}

/// Routes the client's frames and writes the outbox until the socket ends; says how.
///
/// Each frame's route runs on a task of its own, as API Gateway invokes the integration for
/// every message as it comes, without waiting for the one before: a long catch-up neither holds
/// up the socket's writes nor the client's next frame, and two frames of one client race as
/// they do in AWS. At most [`ROUTES_PER_SOCKET`] run at once; past that the socket is not read
/// until one ends (the client's frames wait in TCP).
async fn serve(
    gateway: &Arc<Shared>,
    info: &SocketInfo,
    outbox: &Outbox,
    sink: &mut Sink,
    stream: &mut SplitStream<WebSocket>,
) -> End {
    let limits = &gateway.limits;
    let ends = tokio::time::sleep(limits.max_duration);
    let idle = tokio::time::sleep(limits.idle_timeout);
    // Armed when a frame is handed to the socket: it must be out by then.
    let send_deadline = tokio::time::sleep(limits.send_timeout);
    tokio::pin!(ends, idle, send_deadline);
    // The size of the frame being written.
    let mut writing: Option<usize> = None;
    let routes = Arc::new(tokio::sync::Semaphore::new(ROUTES_PER_SOCKET));
    loop {
        // A close waits for the frames posted before it: `PostToConnection` answered 200 for
        // them (a last `revoked`, say), and the outbox takes no frame after the close.
        if writing.is_none() && outbox.closing() && outbox.is_empty() {
            return End::closing(CLOSE_NORMAL, "Connection deleted", "Connection deleted");
        }
        if writing.is_none()
            && let Some(frame) = outbox.next_frame()
        {
            let bytes = frame.len();
            // Ready at once: the previous frame was flushed, and nothing is flushed here.
            if sink.feed(message(frame)).await.is_err() {
                return End::broken("Connection reset");
            }
            writing = Some(bytes);
            send_deadline
                .as_mut()
                .reset(tokio::time::Instant::now() + limits.send_timeout);
        }
        tokio::select! {
            // Nothing more is routed once `DeleteConnection` closed the connection.
            incoming = stream.next(), if routes.available_permits() > 0 && !outbox.closing() => {
                let message = match incoming {
                    Some(Ok(message)) => message,
                    Some(Err(err)) => {
                        if is_capacity(err) {
                            return End::closing(CLOSE_TOO_BIG, "Message too big", "Message too big");
                        }
                        return End::broken("Connection reset");
                    }
                    None => return End::broken("Connection closed without a close frame"),
                };
                gateway.registry.touch(&info.connection_id);
                idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                match message {
                    Message::Text(text) => {
                        spawn_route(gateway, info, &routes, text.as_str().to_owned(), false);
                    }
                    Message::Binary(bytes) => {
                        let body = base64::engine::general_purpose::STANDARD.encode(&bytes);
                        spawn_route(gateway, info, &routes, body, true);
                    }
                    Message::Close(frame) => {
                        let (code, reason) = frame.map_or((CLOSE_NO_STATUS, String::new()), |f| {
                            (f.code, f.reason.as_str().to_owned())
                        });
                        return End { code, reason, farewell: Farewell::Echo };
                    }
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            flushed = sink.flush(), if writing.is_some() => {
                if flushed.is_err() {
                    return End::broken("Connection reset");
                }
                if let Some(bytes) = writing.take() {
                    outbox.written(bytes);
                }
            }
            // A new frame (taken once the one being written is out), or a close.
            () = outbox.changed() => {}
            () = &mut send_deadline, if writing.is_some() => {
                tracing::warn!(
                    connection_id = %info.connection_id,
                    timeout_ms = elapsed_ms_of(limits.send_timeout),
                    "slow consumer: a frame was not written in time; closing"
                );
                return End::closing(CLOSE_SLOW_CONSUMER, "Slow consumer", "Slow consumer");
            }
            () = &mut idle => {
                return End::closing(CLOSE_GOING_AWAY, "Going away", "Idle timeout");
            }
            () = &mut ends => {
                return End::closing(CLOSE_GOING_AWAY, "Going away", "Maximum connection duration");
            }
        }
    }
}

/// A posted frame as API Gateway sends it: text when it is UTF-8, binary otherwise.
fn message(frame: Bytes) -> Message {
    match Utf8Bytes::try_from(frame.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(frame),
    }
}

/// Sends a close frame (after the frame being written, if any), for at most [`CLOSE_GRACE`];
/// whether it was written.
async fn goodbye(sink: &mut Sink, code: u16, reason: &'static str) -> bool {
    matches!(
        tokio::time::timeout(CLOSE_GRACE, sink.send(close(code, reason))).await,
        Ok(Ok(()))
    )
}

/// Writes the reply to the client's close frame, which tungstenite queued with the client's
/// code when it read that frame, for at most [`CLOSE_GRACE`]; whether it was written.
async fn echo(sink: &mut Sink) -> bool {
    matches!(
        tokio::time::timeout(CLOSE_GRACE, sink.flush()).await,
        Ok(Ok(()))
    )
}

/// Forgets the socket and runs `$disconnect`.
async fn finish(gateway: &Shared, info: &SocketInfo, code: u16, reason: &str) {
    gateway.registry.close(&info.connection_id);
    let started = Instant::now();
    let event = events::disconnect_event(info, code, reason);
    match gateway.backend.route(Route::Disconnect, event).await {
        Ok(status) => tracing::info!(
            connection_id = %info.connection_id,
            code,
            reason,
            status,
            ms = elapsed_ms(started),
            "disconnected"
        ),
        Err(err) => tracing::error!(
            connection_id = %info.connection_id,
            error = &err as &dyn std::error::Error,
            "$disconnect failed"
        ),
    }
}

/// Runs a frame's route on a task of its own, holding one of the socket's route permits
/// (taken here: the caller reads a frame only while one is free).
fn spawn_route(
    gateway: &Arc<Shared>,
    info: &SocketInfo,
    routes: &Arc<tokio::sync::Semaphore>,
    body: String,
    is_base64: bool,
) {
    // The socket is read only while a permit is free, and only its own task takes them, so
    // there is always one here; were there none, the route still runs, unbounded.
    let permit = Arc::clone(routes).try_acquire_owned().ok();
    let (gateway, info) = (Arc::clone(gateway), info.clone());
    tokio::spawn(async move {
        route_message(&gateway, &info, &body, is_base64).await;
        drop(permit);
    });
}

async fn route_message(gateway: &Shared, info: &SocketInfo, body: &str, is_base64: bool) {
    let route_key = if is_base64 {
        "$default"
    } else {
        select_route(body, &gateway.message_routes)
    };
    let started = Instant::now();
    let event = events::message_event(info, route_key, body, is_base64);
    match gateway.backend.route(Route::Subscribe, event).await {
        Ok(status) => tracing::info!(
            connection_id = %info.connection_id,
            route = route_key,
            status,
            bytes = body.len(),
            ms = elapsed_ms(started),
            "routed"
        ),
        Err(err) => tracing::error!(
            connection_id = %info.connection_id,
            route = route_key,
            error = &err as &dyn std::error::Error,
            "route failed"
        ),
    }
}

/// `$request.body.action`: the route whose key equals the body's `action`, else `$default`
/// (also for bodies that are not JSON objects).
fn select_route<'a>(body: &str, routes: &'a [String]) -> &'a str {
    let action = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("action")?.as_str().map(str::to_owned));
    action
        .and_then(|action| routes.iter().find(|r| **r == action))
        .map_or("$default", String::as_str)
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn is_capacity(err: axum::Error) -> bool {
    err.into_inner()
        .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)))
}

/// `sec-websocket-key` -> `Sec-Websocket-Key`: header names as API Gateway presents them.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn elapsed_ms(since: Instant) -> u64 {
    elapsed_ms_of(since.elapsed())
}

fn elapsed_ms_of(duration: Duration) -> u64 {
    marquee::domain::saturating_u64(duration.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_selected_by_the_body_action_with_default_as_fallback() {
        let routes = vec!["subscribe".to_owned(), "unsubscribe".to_owned()];
        assert_eq!(
            select_route(r#"{"action":"subscribe"}"#, &routes),
            "subscribe"
        );
        assert_eq!(select_route(r#"{"action":"dance"}"#, &routes), "$default");
        assert_eq!(select_route(r#"{"action":7}"#, &routes), "$default");
        assert_eq!(select_route("not json", &routes), "$default");
        assert_eq!(select_route("[]", &routes), "$default");
    }

    #[test]
    fn header_names_are_title_cased() {
        assert_eq!(title_case("sec-websocket-key"), "Sec-Websocket-Key");
        assert_eq!(title_case("host"), "Host");
    }
}
