//! The local gateway (`marquee-local serve`) as a child process, and WebSocket clients of it:
//! what the `gateway` and `lastfan` modes share.
//!
//! The gateway is a release build started on 127.0.0.1 and a free port, with `RUST_LOG=warn`
//! (a log line per post would measure the terminal) and without the variables it reads for its
//! settings ([`SETTINGS_VARIABLES`]), so it runs at its defaults plus the options a mode passes
//! and nothing the caller's shell happens to export. The clients are tokio-tungstenite sockets
//! in this process with small read buffers, each bound to a source address on 127.0.0.x
//! ([`source_address`]) so that tens of thousands of them do not run out of ephemeral ports.
//! Every byte goes to loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::BoxError;

/// A client's WebSocket.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Client read buffer: the clients' memory is not measured, but 10,000 of tungstenite's
/// default 128 KiB would still be 1.25 GiB here.
const CLIENT_READ_BUFFER: usize = 4 * 1024;
/// File descriptors a process needs beyond one per connection. The gateway's own Management
/// API connections (pooled, both ends in its process), its DynamoDB connections, the listener
/// and the standard streams come out of these.
const SPARE_FDS: usize = 2048;
/// Client sockets per source address: well inside Linux's default ephemeral range (32768 to
/// 60999, 28,232 ports), which a bound source address has to itself.
const CLIENTS_PER_SOURCE_ADDRESS: usize = 20_000;
/// The variables `marquee-local serve` reads for its settings; none reaches the child.
pub(crate) const SETTINGS_VARIABLES: [&str; 12] = [
    "DYNAMODB_ENDPOINT",
    "TABLE_NAME",
    "WORK_QUEUE_URL",
    "SQS_ENDPOINT",
    "DELIVER_MAX_CONCURRENCY",
    "INLINE_MAX_SUBSCRIBERS",
    "FANOUT_BUDGET",
    "TOKEN_SECRET",
    "TOKEN_AUDIENCE",
    "MAX_SUBSCRIPTIONS",
    "PUBLISH_RATE_PER_SECOND",
    "PUBLISH_BURST",
];

/// The source address of client `i` of a run: 127.0.0.2 for the first
/// [`CLIENTS_PER_SOURCE_ADDRESS`], then 127.0.0.3, and so on (the gateway is on 127.0.0.1).
pub(crate) fn source_address(i: usize) -> Result<Ipv4Addr, BoxError> {
    let last = u8::try_from(2 + i / CLIENTS_PER_SOURCE_ADDRESS)
        .ok()
        .filter(|last| *last < 255)
        .ok_or_else(|| format!("client {i} is beyond 127.0.0.254"))?;
    Ok(Ipv4Addr::new(127, 0, 0, last))
}

/// Refuses to start when this process may not open enough sockets (the gateway inherits the
/// same limit, and holds the other end of each): `connections` plus [`SPARE_FDS`].
/// `scripts/bench` raises the soft limit to the hard one; only a process with
/// `CAP_SYS_RESOURCE` can raise the hard limit.
pub(crate) fn check_fd_limit(connections: usize) -> Result<(), BoxError> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let Some(line) = limits.lines().find(|l| l.starts_with("Max open files")) else {
        return Ok(());
    };
    let mut numbers = line
        .split_whitespace()
        .skip(3)
        .map(|n| n.parse::<usize>().ok());
    let (soft, hard) = (numbers.next().flatten(), numbers.next().flatten());
    let needed = connections + SPARE_FDS;
    match (soft, hard) {
        (_, Some(hard)) if hard < needed => Err(format!(
            "{connections} connections need {needed} open files in this process and in the \
             gateway, above the hard limit ({hard}), which only a process with \
             CAP_SYS_RESOURCE can raise: at most {} connections here",
            hard.saturating_sub(SPARE_FDS)
        )
        .into()),
        (Some(soft), _) if soft < needed => Err(format!(
            "{connections} connections need more open files than the soft limit ({soft}): \
             run `ulimit -n {needed}` first (scripts/bench raises it to the hard limit)"
        )
        .into()),
        _ => Ok(()),
    }
}

/// A running `marquee-local serve`; killed when dropped.
pub(crate) struct GatewayProcess {
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

impl std::fmt::Debug for GatewayProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayProcess")
            .field("pid", &self.pid)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl GatewayProcess {
    /// Starts `bin serve` on 127.0.0.1 and a free port with `options` added, and reads its
    /// address from the banner.
    pub(crate) async fn start(bin: &Path, options: &[String]) -> Result<Self, BoxError> {
        let mut command = Command::new(bin);
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(options)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for variable in SETTINGS_VARIABLES {
            command.env_remove(variable);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
        let pid = child.id().ok_or("the gateway exited at once")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .map_err(|_| "no banner from the gateway within 30 s")??
                .ok_or("the gateway exited before its banner")?;
            if let Some(page) = line.trim().strip_prefix("page:") {
                let page = page.trim().trim_start_matches("http://");
                break page.trim_end_matches('/').to_owned();
            }
        };
        // Keep reading, so the gateway never blocks on its stdout.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("the gateway's banner names {addr:?}, not an address"))?;
        if addr.ip() != Ipv4Addr::LOCALHOST {
            return Err(format!("the gateway listens on {addr}, not on 127.0.0.1").into());
        }
        Ok(Self { child, pid, addr })
    }

    /// Its resident set, in KiB.
    pub(crate) fn rss_kib(&self) -> Result<u64, BoxError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS in /proc/<pid>/status".into())
    }

    /// The CPU time it has used so far (user and system), in seconds.
    pub(crate) fn cpu_seconds(&self) -> Result<f64, BoxError> {
        cpu_seconds_of(self.pid)
    }

    /// Kills it (by its PID, through the child handle) and reaps it.
    pub(crate) async fn stop(mut self) {
        let _killed = self.child.kill().await;
    }

    /// Opens `count` sockets, each with a dev token of its own user (`bench-<i>`: one user may
    /// hold only `MAX_CONNECTIONS_PER_USER`), `concurrency` handshakes at a time, client `i`
    /// from [`source_address`]`(i)`. With a `room`, every token may publish to it.
    pub(crate) async fn connect(
        &self,
        count: usize,
        concurrency: usize,
        room: Option<&str>,
    ) -> Result<Vec<Socket>, BoxError> {
        let publish = room.map(|room| vec![room.to_owned()]);
        let secret = marquee::auth::Secret::new(marquee::config::DEV_TOKEN_SECRET.to_owned())?;
        let now = marquee::domain::now_epoch_seconds();
        let addr = self.addr;
        let url = move |i: usize| -> Result<String, BoxError> {
            let token = marquee::auth::mint(
                &secret,
                &marquee::auth::TokenClaims {
                    sub: format!("bench-{i}"),
                    aud: marquee::config::DEFAULT_AUDIENCE.into(),
                    iat: now,
                    exp: now + 3 * 3600,
                    nbf: None,
                    artists: None,
                    subscribe: None,
                    publish: publish.clone(),
                },
            )?;
            Ok(format!("ws://{addr}/?token={token}"))
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(CLIENT_READ_BUFFER)
            .write_buffer_size(0);
        let to = self.addr;
        let sockets: Vec<Result<Socket, BoxError>> = futures_util::stream::iter(0..count)
            .map(|i| {
                let url = url(i);
                async move {
                    let url = url?;
                    let socket = TcpSocket::new_v4()?;
                    socket.bind(SocketAddr::new(source_address(i)?.into(), 0))?;
                    let stream = socket.connect(to).await?;
                    stream.set_nodelay(true)?;
                    let (socket, _) = tokio_tungstenite::client_async_with_config(
                        url,
                        MaybeTlsStream::Plain(stream),
                        Some(config),
                    )
                    .await?;
                    Ok(socket)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        sockets.into_iter().collect()
    }

    /// Sends one on-sale event for `artist` as EventBridge's `PutEvents` to the gateway's
    /// endpoint (`POST /events`), with the source and detail type its rule matches; returns
    /// the event id.
    pub(crate) async fn publish(&self, artist: &str, n: usize) -> Result<String, BoxError> {
        let rule = marquee_local::gateway::GatewayConfig::local_defaults();
        let detail = json!({"artist": artist, "venue": "Benchmark Arena", "n": n});
        let answer = marquee_local::post_json(
            &format!("http://{}/events", self.addr),
            &json!({"Entries": [{
                "Source": rule.event_source,
                "DetailType": rule.detail_type,
                "Detail": detail.to_string(),
            }]}),
        )
        .await?;
        answer
            .pointer("/Entries/0/EventId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("PutEvents answered {answer}").into())
    }
}

/// Linux's clock ticks a second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every architecture's
/// user-space ABI).
const USER_HZ: f64 = 100.0;

/// The CPU time (user and system, all threads) process `pid` has used, in seconds.
pub(crate) fn cpu_seconds_of(pid: u32) -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    cpu_seconds_in(&stat).ok_or_else(|| format!("no CPU times in /proc/{pid}/stat").into())
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds. The command name (second field)
/// may hold spaces and parentheses, so the fields are counted after its last `)`.
fn cpu_seconds_in(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)]
    Some((user + system) as f64 / USER_HZ)
}

/// Subscribes every socket to `artist` and waits for each `subscribed` reply.
pub(crate) async fn subscribe_all(
    sockets: Vec<Socket>,
    artist: &str,
    concurrency: usize,
) -> Result<Vec<Socket>, BoxError> {
    let request = json!({"action": "subscribe", "artists": [artist]}).to_string();
    let subscribed: Vec<Result<Socket, BoxError>> = futures_util::stream::iter(sockets)
        .map(|mut socket| {
            let request = request.clone();
            async move {
                socket.send(Message::text(request)).await?;
                let deadline = Instant::now() + Duration::from_secs(60);
                // Another fan's `joined` may come first: routes run side by side, as in AWS.
                let mut reply = next_json(&mut socket, deadline).await?;
                while reply
                    .as_ref()
                    .is_some_and(|r| matches!(field(r, "type"), Some("joined" | "left")))
                {
                    reply = next_json(&mut socket, deadline).await?;
                }
                match reply {
                    Some(reply) if field(&reply, "type") == Some("subscribed") => Ok(socket),
                    other => Err(format!("subscribe answered {other:?}").into()),
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    subscribed.into_iter().collect()
}

/// A notification's event id and the moment it was read.
type Arrival = (String, Instant);

/// Clients waiting for a notification, each in a task of its own.
#[derive(Debug)]
pub(crate) struct Listeners(Vec<JoinHandle<(Option<Arrival>, Socket)>>);

impl Listeners {
    /// Every socket waits for its first `notification` frame until `deadline`, passing over
    /// any other (`welcome` and presence frames follow a subscribe).
    pub(crate) fn spawn(sockets: Vec<Socket>, deadline: Instant) -> Self {
        Self(
            sockets
                .into_iter()
                .map(|mut socket| {
                    tokio::spawn(async move {
                        let arrival = first_notification(&mut socket, deadline).await;
                        (arrival, socket)
                    })
                })
                .collect(),
        )
    }

    /// Waits for every listener. Returns the seconds from `sent` to each notification of
    /// `event_id` (the fans without one have none), and the sockets, still open.
    pub(crate) async fn arrivals(
        self,
        event_id: &str,
        sent: Instant,
    ) -> Result<(Vec<f64>, Vec<Socket>), BoxError> {
        let mut delays = Vec::with_capacity(self.0.len());
        let mut sockets = Vec::with_capacity(self.0.len());
        for listener in self.0 {
            let (arrival, socket) = listener.await?;
            sockets.push(socket);
            if let Some((id, at)) = arrival
                && id == event_id
            {
                delays.push(at.saturating_duration_since(sent).as_secs_f64());
            }
        }
        Ok((delays, sockets))
    }
}

/// The id of the first `notification` frame and the moment it was read; `None` when the
/// socket ended or none came by `deadline`.
async fn first_notification(socket: &mut Socket, deadline: Instant) -> Option<Arrival> {
    loop {
        let frame = next_json(socket, deadline).await.ok().flatten()?;
        let at = Instant::now();
        if field(&frame, "type") == Some("notification") {
            return Some((field(&frame, "id").unwrap_or_default().to_owned(), at));
        }
    }
}

/// The next text frame as JSON; `None` when the socket ended or nothing came by `deadline`.
pub(crate) async fn next_json(
    socket: &mut Socket,
    deadline: Instant,
) -> Result<Option<Value>, BoxError> {
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, socket.next()).await else {
            return Ok(None);
        };
        match next {
            Some(Ok(Message::Text(text))) => return Ok(Some(serde_json::from_str(text.as_str())?)),
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Ok(None),
            Some(Ok(_)) => {}
        }
    }
}

/// A string field of a JSON frame.
pub(crate) fn field<'a>(frame: &'a Value, name: &str) -> Option<&'a str> {
    frame.get(name).and_then(Value::as_str)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn clients_take_twenty_thousand_ports_of_each_source_address_from_127_0_0_2() {
        let addresses: Vec<Ipv4Addr> = [0, 19_999, 20_000, 49_999, 50_000]
            .into_iter()
            .map(|i| source_address(i).unwrap())
            .collect();
        assert_eq!(
            addresses,
            [
                Ipv4Addr::new(127, 0, 0, 2),
                Ipv4Addr::new(127, 0, 0, 2),
                Ipv4Addr::new(127, 0, 0, 3),
                Ipv4Addr::new(127, 0, 0, 4),
                Ipv4Addr::new(127, 0, 0, 4),
            ]
        );
    }

    #[test]
    fn cpu_time_is_user_plus_system_ticks_after_the_command_name() {
        let stat = "4242 (marquee (local)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 \
                    12 0 100 1000000 2000 18446744073709551615";

        assert_eq!(cpu_seconds_in(stat), Some(3.25));
    }

    #[test]
    fn no_client_is_given_the_broadcast_address() {
        assert_eq!(
            source_address(252 * 20_000).unwrap(),
            Ipv4Addr::new(127, 0, 0, 254)
        );
        assert!(source_address(253 * 20_000).is_err());
    }
}
