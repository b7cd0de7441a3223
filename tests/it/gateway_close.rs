//! How the local gateway ends a socket, seen from a real client over TCP: a client that never
//! reads is cut off (its connection reset) when it cannot take the close frame, and a client's
//! close frame is echoed.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use marquee_local::gateway::{Gateway, Limits};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{WebSocketStream, client_async};

use crate::support::gateway::{
    Backing, PATIENCE, connect, fill_until_refused, gateway, only_connection, wait_until_gone,
};

/// A client whose socket receives into a few kilobytes at most, so that what the gateway
/// writes to it backs up into the gateway's own buffers as soon as it stops reading.
async fn small_window_client(
    gateway: &Gateway,
    sub: &str,
) -> (WebSocketStream<TcpStream>, SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4 * 1024).unwrap();
    let tcp = socket.connect(gateway.addr()).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (client, response) = client_async(gateway.ws_url(&gateway.token(sub, None)), tcp)
        .await
        .expect("handshake");
    assert_eq!(response.status(), 101);
    (client, local)
}

/// The state of the gateway's end of the TCP connection from `client`, as the kernel lists it
/// in `/proc/net/tcp` (`01` established, `04` FIN-WAIT-1, ...); `None` once it holds no such
/// socket.
fn server_side_state(gateway: SocketAddr, client: SocketAddr) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp (Linux) readable");
    let port = |address: &str| {
        address
            .rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, state) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
        (port(local) == Some(gateway.port()) && port(remote) == Some(client.port()))
            .then(|| (*state).to_owned())
    })
}

/// Waits until the kernel holds no socket for the gateway's end of the connection from
/// `client`; panics with its state when that takes longer than `within`.
async fn wait_until_the_server_side_is_gone(
    gateway: SocketAddr,
    client: SocketAddr,
    within: Duration,
) {
    let started = tokio::time::Instant::now();
    while let Some(state) = server_side_state(gateway, client) {
        assert!(
            started.elapsed() < within,
            "the gateway's end is still in TCP state {state} after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that never reads, with megabytes posted to it, is cut off within `within` of the
/// posts being refused: the gateway forgets it, its end of the connection is gone, and the
/// client (reading at last) sees the connection reset rather than a close behind what was
/// queued.
async fn a_client_that_never_reads_is_cut_off(limits: Limits, within: Duration) {
    let gateway = gateway(Backing::Memory, limits).await;
    let (mut never_reads, client_addr) = small_window_client(&gateway, "sloth").await;
    let id = only_connection(&gateway);
    assert_eq!(fill_until_refused(&gateway, &id).await, 429);

    wait_until_gone(&gateway, &id, within).await;
    wait_until_the_server_side_is_gone(gateway.addr(), client_addr, Duration::from_secs(1)).await;

    let ended = loop {
        match tokio::time::timeout(PATIENCE, never_reads.next())
            .await
            .expect("the connection ends in time")
        {
            Some(Ok(Message::Text(_))) => {}
            other => break other,
        }
    };
    assert!(
        matches!(ended, Some(Err(_))),
        "expected the connection reset, got {ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_at_the_maximum_duration() {
    let limits = Limits {
        max_duration: Duration::from_secs(3),
        outbox_bytes: 256 * 1024,
        send_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    // The maximum duration, plus a second for a close frame it never takes, with room to spare.
    Box::pin(a_client_that_never_reads_is_cut_off(
        limits,
        Duration::from_secs(8),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_as_a_slow_consumer() {
    let limits = Limits {
        outbox_bytes: 256 * 1024,
        send_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    Box::pin(a_client_that_never_reads_is_cut_off(
        limits,
        Duration::from_secs(6),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_close_frame_is_echoed_with_its_code() {
    let gateway = gateway(Backing::Memory, Limits::default()).await;
    let mut client = connect(&gateway, "alice").await;

    client
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Library(4001),
            reason: "done here".into(),
        })))
        .await
        .unwrap();

    let reply = tokio::time::timeout(PATIENCE, client.next())
        .await
        .expect("a close frame in time");
    let Some(Ok(Message::Close(Some(frame)))) = reply else {
        panic!("expected a close frame back, got {reply:?}");
    };
    assert_eq!(frame.code, CloseCode::Library(4001));
}
