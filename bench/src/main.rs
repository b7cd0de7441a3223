//! `marquee-bench`: how the fan-out holds up as an artist's audience grows.
//!
//! Seven modes (see `scripts/bench`):
//!
//! - `fanout` (the default): one artist's subscribers, one `notify` and then one `deliver`
//!   invocation at a time draining its work items (the real handlers, an in-process queue),
//!   against a push that counts posts after an optional simulated round trip. Prints pages,
//!   delivered, time, posts per second and the process's peak memory growth (Linux `VmHWM`,
//!   reset before each run). Stores: the embedded in-memory store, or DynamoDB Local
//!   (`--dynamodb-endpoint`; `scripts/bench --dynamodb` starts it), whose data lives in
//!   another process, so the memory column is the fan-out's own.
//! - `pipeline`: the whole pipeline at scale, `notify` → queue → W concurrent `deliver`
//!   workers, optionally with a rate budget and crash injection; see [`pipeline`].
//! - `rooms`: what one room message costs at 10, 100 and 10,000 members (DynamoDB requests,
//!   posts, work items), counted against DynamoDB Local; see [`rooms`].
//! - `gateway`: load and soak of the local gateway (`marquee-local`, a child process) over
//!   real WebSockets: memory per idle connection, connect rate, publish-to-receive; see
//!   [`gateway`].
//! - `lastfan`: the time to the last fan. N real WebSocket clients of the local gateway at its
//!   defaults (a child process), on the embedded store and on DynamoDB Local, one EventBridge
//!   `PutEvents`, and the time from sending it to each fan's notification (first, last, p50,
//!   p99, lost) beside the floor N / `FANOUT_BUDGET`; see [`lastfan`].
//! - `coldstart`: each function's cold start (process start to its first request for work,
//!   against a Runtime API stand-in) beside a hello-world `lambda_runtime` function; see
//!   [`coldstart`].
//! - `lambda`: the release function binaries as Lambda runs them, at Lambda's CPU share (a
//!   cgroup quota of memory / 1,769 MB of a vCPU, for 128 to 1,769 MB) and over TLS to a
//!   Management API, SQS and Secrets Manager stand-in and to DynamoDB Local: cold init, the
//!   first and warm invocations of `deliver` and `notify`, CPU per post, posts/s, and the cost
//!   per million fans beside API Gateway's own charge; see [`lambda`].

mod coldstart;
mod fanout;
mod gateway;
mod heap;
mod lambda;
mod lastfan;
mod local;
mod pipeline;
mod rooms;
mod sim;
mod stats;

use clap::{Parser, Subcommand};
use marquee::config::{Config, FanoutSettings};
use marquee::domain::Artist;
use marquee::domain::{ArtistList, Connection, ConnectionId, EventId, now_epoch_seconds};
use marquee::store::ConnectionStore;
use marquee::store::memory::MemoryStore;
use marquee::work::Notification;

#[derive(Debug, Parser)]
#[command(
    name = "marquee-bench",
    about = "Fan-out benchmark",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand: the `fanout` mode.
    #[command(flatten)]
    fanout: fanout::Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One notify, then one deliver invocation at a time (the default).
    Fanout(fanout::Args),
    /// notify → queue → concurrent deliver workers, with an optional budget and crashes.
    Pipeline(pipeline::Args),
    /// The local gateway under load (idle connections, one publish) and over time (soak).
    Gateway(gateway::Args),
    /// What one room message costs (DynamoDB requests, posts, work items) by room size.
    Rooms(rooms::Args),
    /// The time from one on-sale event to the last fan's notification, through the local gateway.
    Lastfan(lastfan::Args),
    /// Cold starts of the function binaries against a hello-world baseline.
    Coldstart(coldstart::Args),
    /// The function binaries at Lambda's CPU share over TLS: init, invocations, CPU, cost.
    Lambda(lambda::Args),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    match cli.command {
        None => fanout::run(&cli.fanout).await,
        Some(Command::Fanout(args)) => fanout::run(&args).await,
        Some(Command::Pipeline(args)) => pipeline::run(&args).await,
        Some(Command::Gateway(args)) => gateway::run(&args).await,
        Some(Command::Rooms(args)) => rooms::run(&args).await,
        Some(Command::Lastfan(args)) => lastfan::run(&args).await,
        Some(Command::Coldstart(args)) => coldstart::run(&args).await,
        Some(Command::Lambda(args)) => lambda::run(&args).await,
    }
}

const ARTIST: &str = "Bench Artist";
const ID_PREFIX: &str = "bench-";

fn subscriber_id(i: usize) -> Result<ConnectionId, BoxError> {
    Ok(ConnectionId::parse(&format!("{ID_PREFIX}{i:07}"))?)
}

/// The subscriber number in a [`subscriber_id`].
fn subscriber_index(id: &ConnectionId) -> Option<usize> {
    id.as_str().strip_prefix(ID_PREFIX)?.parse().ok()
}

/// The on-sale event of run `run`: a fresh event id each time, so every run's claim is new.
fn notification(run: &str) -> Result<Notification, BoxError> {
    Ok(Notification::new(
        EventId::parse(&format!("bench-event-{run}"))?,
        Artist::parse(ARTIST)?,
        serde_json::json!({"artist": ARTIST, "venue": "Benchmark Arena", "url": "https://example.com/tickets"}),
        "2026-11-22T10:00:00Z".into(),
    )?)
}

/// The functions' configuration at its defaults, with the fan-out tunables `fanout`.
fn config_with(fanout: &FanoutSettings) -> Config {
    let mut config = Config::new("bench");
    config.fanout = fanout.clone();
    config
}

async fn seed_memory(store: &MemoryStore, count: usize) -> Result<(), BoxError> {
    let now = now_epoch_seconds();
    let artists = ArtistList::parse(&[ARTIST])?;
    for i in 0..count {
        let connection = Connection::builder(subscriber_id(i)?.as_str())
            .user("fan")
            .connected_at(now)
            .lifetime(24 * 3600)
            .build();
        store.put_connection(&connection).await?;
        store
            .add_subscriptions(&connection, 0, artists.as_slice())
            .await?;
    }
    Ok(())
}

/// A line of `/proc/self/status`, in KiB (0 where unavailable).
fn memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets `VmHWM` to the current RSS (Linux: `5` to `/proc/self/clear_refs`).
fn reset_peak_memory() {
    let _unsupported_elsewhere = std::fs::write("/proc/self/clear_refs", "5");
}

#[allow(clippy::cast_precision_loss)]
fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A progress line, on stderr (the tables go to stdout).
fn progress(line: &str) {
    eprintln!("{line}");
}

/// Writes `text` to stdout and flushes it, so each row shows as it is measured.
fn write_out(text: &str) -> Result<(), BoxError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
