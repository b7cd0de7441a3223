//! The `gateway` mode: load and soak of the local gateway (`marquee-local`) over real
//! WebSockets.
//!
//! The gateway is `marquee-local serve` (a release build, embedded store) started as a child
//! process on 127.0.0.1 and a free port (see [`crate::local`]), so its memory is measured apart
//! from the clients': its resident set, `VmRSS` of `/proc/<pid>/status`. The clients are
//! tokio-tungstenite sockets in this process, with small read buffers. Every loop is bounded,
//! and every byte goes to loopback.
//!
//! **Load** (`--connections N --subscribers S`), once per posting path (`--push`, see
//! `marquee_local::gateway::PushPath`), each in a fresh gateway: its RSS is read once it is up,
//! then N sockets connect (`--connect-concurrency` handshakes in flight, each running
//! `$connect` with a dev token) and sit idle; a second later the RSS is read again. KiB per idle
//! connection is the growth over N (everything the gateway holds for a socket: task, buffers,
//! registry entry, store records); the connect rate is N over the time to open them all. Then
//! S of them subscribe to one artist, one event is published (`POST /events`), and each
//! subscriber's publish-to-receive time runs from just before the POST to the moment its
//! notification is read: p50 and p99 (nearest rank) over the S, and the subscribers with no
//! notification within `--patience-seconds` ("lost").
//!
//! **Soak** (`--soak-seconds T --soak-connections C`, in a fresh gateway, posting through the
//! Management API): C sockets, all subscribed, each pinging every minute as a live client
//! does (the idle timeout is 10 minutes), and one publish every `--soak-interval` seconds for
//! T seconds. Reports the notifications lost over all publishes, the sockets the gateway
//! closed, and the gateway's RSS after the first publish, a minute in, at the end, and its
//! highest sample.
//!
//! The gateway runs with `RUST_LOG=warn` (a log line per post would measure the terminal) and
//! `--fanout-budget 0`: the budget paces posts to API Gateway's account limit (500 a second per
//! invocation by default, so 1,000 subscribers take two seconds by design), which is not what
//! this measures.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::local::{GatewayProcess, Listeners, Socket, check_fd_limit, field, subscribe_all};
use crate::stats::percentile;
use crate::{ARTIST, BoxError, progress, write_out};

/// Most connections one run may open (each is a file descriptor here and in the gateway).
const MAX_CONNECTIONS: usize = 50_000;
/// Longest soak.
const MAX_SOAK_SECONDS: u64 = 3 * 3600;
/// How often soak clients ping (well inside the gateway's 10-minute idle timeout).
const SOAK_PING: Duration = Duration::from_secs(60);

/// How the gateway's in-process routes post (`marquee-local serve [--direct-push]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Push {
    /// Through the gateway's Management API over HTTP, with the SDK client (the default there).
    ManagementApi,
    /// Straight into the sockets (`--direct-push`).
    Direct,
}

impl Push {
    fn describe(self) -> &'static str {
        match self {
            Self::ManagementApi => "Management API (SDK over HTTP)",
            Self::Direct => "direct (--direct-push)",
        }
    }
}

/// A fresh gateway with `--fanout-budget` and the posting path of `push`.
async fn start_gateway(args: &Args, push: Push) -> Result<GatewayProcess, BoxError> {
    let mut options = vec!["--fanout-budget".to_owned(), args.fanout_budget.to_string()];
    if push == Push::Direct {
        options.push("--direct-push".into());
    }
    GatewayProcess::start(&args.gateway_bin, &options).await
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Idle connections to hold in each load run (0: no load run).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Of those, how many subscribe to the artist and are timed from publish to receive.
    #[arg(long, default_value_t = 1_000)]
    subscribers: usize,
    /// Load runs, one per posting path.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "management-api,direct"
    )]
    push: Vec<Push>,
    /// Handshakes (and subscribes) in flight at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Soak: hold `--soak-connections` this many seconds with periodic publishes (0: no soak).
    #[arg(long, default_value_t = 0)]
    soak_seconds: u64,
    /// Soak: connections, all subscribed.
    #[arg(long, default_value_t = 1_000)]
    soak_connections: usize,
    /// Soak: seconds between publishes.
    #[arg(long, default_value_t = 5)]
    soak_interval: u64,
    /// A notification not read within this many seconds of its publish is lost.
    #[arg(long, default_value_t = 30)]
    patience_seconds: u64,
    /// The gateway's `--fanout-budget` (posts per second; 0: unpaced).
    #[arg(long, default_value_t = 0)]
    fanout_budget: u32,
    /// The `marquee-local` binary (a release build; `scripts/bench gateway` builds it).
    #[arg(long, default_value = "target/release/marquee-local")]
    gateway_bin: PathBuf,
}

pub(crate) async fn run(args: &Args) -> Result<(), BoxError> {
    if args.connections > MAX_CONNECTIONS || args.soak_connections > MAX_CONNECTIONS {
        return Err(format!("at most {MAX_CONNECTIONS} connections").into());
    }
    if args.connections > 0 && args.subscribers > args.connections {
        return Err("--subscribers cannot exceed --connections".into());
    }
    if args.soak_seconds > MAX_SOAK_SECONDS || args.soak_interval == 0 {
        return Err(format!(
            "--soak-seconds at most {MAX_SOAK_SECONDS}, --soak-interval at least 1"
        )
        .into());
    }
    check_fd_limit(args.connections.max(args.soak_connections))?;
    if args.connections > 0 && !args.push.is_empty() {
        let mut rows = Vec::with_capacity(args.push.len());
        for &push in &args.push {
            rows.push(load(args, push).await?);
        }
        print_load(args, &rows)?;
    }
    if args.soak_seconds > 0 {
        let soak = soak(args).await?;
        print_soak(args, &soak)?;
    }
    Ok(())
}

/// One load run's row.
#[derive(Debug)]
struct Load {
    push: Push,
    kib_per_connection: f64,
    connect_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    lost: usize,
}

async fn load(args: &Args, push: Push) -> Result<Load, BoxError> {
    let gateway = start_gateway(args, push).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = gateway.rss_kib()?;
    let started = Instant::now();
    let mut sockets = gateway
        .connect(args.connections, args.connect_concurrency, None)
        .await?;
    let connect_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = gateway.rss_kib()?;
    progress(&format!(
        "{}: {} idle connections in {:.1} s; gateway RSS {rss_before} -> {rss_idle} KiB",
        push.describe(),
        args.connections,
        connect_time.as_secs_f64()
    ));

    let idle = sockets.split_off(args.subscribers);
    let subscribers = subscribe_all(sockets, ARTIST, args.connect_concurrency).await?;
    let patience = Duration::from_secs(args.patience_seconds);
    let listeners = Listeners::spawn(subscribers, Instant::now() + patience);
    let published = Instant::now();
    let event_id = gateway.publish(ARTIST, 0).await?;
    let (delays, held) = listeners.arrivals(&event_id, published).await?;
    let lost = held.len() - delays.len();
    let mut latencies: Vec<f64> = delays.into_iter().map(|s| s * 1000.0).collect();
    latencies.sort_by(f64::total_cmp);
    drop((idle, held));
    gateway.stop().await;
    Ok(Load {
        push,
        kib_per_connection: per(rss_idle.saturating_sub(rss_before), args.connections),
        connect_rate: per_second(args.connections, connect_time),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        lost,
    })
}

/// The soak's row.
#[derive(Debug)]
struct Soak {
    publishes: usize,
    expected: usize,
    lost: usize,
    closed: usize,
    rss_start_kib: u64,
    rss_minute_kib: u64,
    rss_end_kib: u64,
    rss_max_kib: u64,
}

/// Notifications read per event id, and sockets that ended, shared by the soak clients.
#[derive(Debug, Default)]
struct Tally {
    received: Mutex<HashMap<String, usize>>,
    closed: Mutex<usize>,
}

impl Tally {
    fn note(&self, id: &str) {
        let mut received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        *received.entry(id.to_owned()).or_default() += 1;
    }

    fn received(&self, id: &str) -> usize {
        let received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        received.get(id).copied().unwrap_or(0)
    }

    fn note_closed(&self) {
        *self.closed.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    }

    fn closed(&self) -> usize {
        *self.closed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `expected` notifications of `id` arrived or `patience` passed.
    async fn wait_for(&self, id: &str, expected: usize, patience: Duration) {
        let deadline = Instant::now() + patience;
        while self.received(id) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One soak client: counts notifications by id, and pings every [`SOAK_PING`], until `until`.
async fn soak_client(mut socket: Socket, tally: Arc<Tally>, until: Instant) {
    let mut ping = tokio::time::interval_at(Instant::now() + SOAK_PING, SOAK_PING);
    loop {
        tokio::select! {
            next = socket.next() => match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    if let Some(id) = field(&frame, "id") {
                        tally.note(id);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    tally.note_closed();
                    return;
                }
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    tally.note_closed();
                    return;
                }
            }
            () = tokio::time::sleep_until(until) => return,
        }
    }
}

async fn soak(args: &Args) -> Result<Soak, BoxError> {
    let gateway = start_gateway(args, Push::ManagementApi).await?;
    let sockets = gateway
        .connect(args.soak_connections, args.connect_concurrency, None)
        .await?;
    let sockets = subscribe_all(sockets, ARTIST, args.connect_concurrency).await?;
    let count = sockets.len();
    let patience = Duration::from_secs(args.patience_seconds);
    let interval = Duration::from_secs(args.soak_interval);
    let publishes = usize::try_from(args.soak_seconds / args.soak_interval)?.max(1);
    let ends = Instant::now() + Duration::from_secs(args.soak_seconds) + patience + interval;
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = sockets
        .into_iter()
        .map(|socket| tokio::spawn(soak_client(socket, Arc::clone(&tally), ends)))
        .collect();

    let mut ids = Vec::with_capacity(publishes);
    let (mut rss_start, mut rss_minute, mut rss_max) = (0, 0, 0);
    let started = Instant::now();
    let mut next = started;
    for n in 0..publishes {
        tokio::time::sleep_until(next).await;
        next += interval;
        let id = gateway.publish(ARTIST, n).await?;
        if n == 0 {
            // Read once the first fan-out is done: its one-off allocations are warm-up.
            tally.wait_for(&id, count, patience).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            rss_start = gateway.rss_kib()?;
        }
        let rss = gateway.rss_kib()?;
        rss_max = rss_max.max(rss);
        if rss_minute == 0 && started.elapsed() >= Duration::from_secs(60) {
            rss_minute = rss;
        }
        ids.push(id);
        if (n + 1) % 12 == 0 {
            progress(&format!(
                "soak: {} of {publishes} publishes, {} lost so far, gateway RSS {rss} KiB",
                n + 1,
                // The last publish may still be on its way.
                lost_so_far(
                    &tally,
                    ids.split_last().map_or(&[], |(_, done)| done),
                    count
                )
            ));
        }
    }
    if let Some(last) = ids.last() {
        tally.wait_for(last, count, patience).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_end = gateway.rss_kib()?;
    let expected = count * ids.len();
    let lost = lost_so_far(&tally, &ids, count);
    let closed = tally.closed();
    for client in clients {
        client.abort();
    }
    gateway.stop().await;
    Ok(Soak {
        publishes: ids.len(),
        expected,
        lost,
        closed,
        rss_start_kib: rss_start,
        rss_minute_kib: rss_minute,
        rss_end_kib: rss_end,
        rss_max_kib: rss_max.max(rss_end),
    })
}

/// Notifications of `ids` that `count` subscribers did not read.
fn lost_so_far(tally: &Tally, ids: &[String], count: usize) -> usize {
    ids.iter()
        .map(|id| count.saturating_sub(tally.received(id)))
        .sum()
}

#[allow(clippy::cast_precision_loss)]
fn per(total: u64, count: usize) -> f64 {
    if count == 0 {
        0.0
    } else {
        total as f64 / count as f64
    }
}

#[allow(clippy::cast_precision_loss)]
fn per_second(count: usize, time: Duration) -> f64 {
    count as f64 / time.as_secs_f64().max(f64::EPSILON)
}

fn print_load(args: &Args, rows: &[Load]) -> Result<(), BoxError> {
    let mut text = format!(
        "Local gateway load: {} idle connections, {} of them subscribed to one artist, one \
         publish (marquee-local release build, embedded store, fan-out budget {})\n\n\
         | posting | connections | KiB per idle connection | connect rate /s | p50 ms | p99 ms | lost |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        args.connections,
        args.subscribers,
        budget(args.fanout_budget),
    );
    for row in rows {
        text.push_str(&format!(
            "| {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {} of {} |\n",
            row.push.describe(),
            args.connections,
            row.kib_per_connection,
            row.connect_rate,
            row.p50_ms,
            row.p99_ms,
            row.lost,
            args.subscribers,
        ));
    }
    text.push('\n');
    write_out(&text)
}

fn print_soak(args: &Args, soak: &Soak) -> Result<(), BoxError> {
    #[allow(clippy::cast_precision_loss)]
    let mib = |kib: u64| kib as f64 / 1024.0;
    write_out(&format!(
        "Local gateway soak: {} connections, all subscribed, for {} s, a publish every {} s \
         (posting through the Management API)\n\n\
         | connections | seconds | publishes | notifications expected | lost | closed by the gateway | RSS after the first publish MiB | after 1 min | at the end | highest |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n\n",
        args.soak_connections,
        args.soak_seconds,
        args.soak_interval,
        args.soak_connections,
        args.soak_seconds,
        soak.publishes,
        soak.expected,
        soak.lost,
        soak.closed,
        mib(soak.rss_start_kib),
        mib(soak.rss_minute_kib),
        mib(soak.rss_end_kib),
        mib(soak.rss_max_kib),
    ))
}

fn budget(posts_per_second: u32) -> String {
    if posts_per_second == 0 {
        "off".into()
    } else {
        format!("{posts_per_second} posts/s")
    }
}
