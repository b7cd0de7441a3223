//! `marquee-bench`: how `notify` holds up as an artist's subscribers grow.
//!
//! For each subscriber count it seeds one artist's subscribers, runs the real fan-out
//! (`marquee::routes::notify::notify`) against a push that counts posts (optionally after a
//! simulated round trip), and prints a table: pages, delivered, time, posts per second, and the
//! process's peak memory growth during the fan-out (Linux `VmHWM`, reset before each run).
//!
//! Stores: the embedded in-memory store, or DynamoDB Local (`--dynamodb-endpoint`; use
//! `scripts/bench`, which starts it). With DynamoDB the store's data lives in another process,
//! so the memory column is the fan-out's own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use clap::Parser;
use futures_util::StreamExt;
use marquee::config::FanoutSettings;
use marquee::domain::{
    Artist, ArtistList, Connection, ConnectionId, EventId, Scope, UserId, now_epoch_seconds,
};
use marquee::push::{Posted, Push, PushError};
use marquee::routes::notify::{Notification, notify};
use marquee::schema;
use marquee::store::Store;
use marquee::store::memory::MemoryStore;

#[derive(Debug, Parser)]
#[command(name = "marquee-bench", about = "Fan-out benchmark")]
struct Args {
    /// Subscriber counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    subscribers: Vec<usize>,
    /// Posts in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Index records per query page.
    #[arg(long, default_value_t = 1000)]
    page_size: u32,
    /// Simulated Management API round trip per post, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Use DynamoDB (Local) at this URL instead of the in-memory store.
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
}

/// A push that only counts, after an optional simulated round trip.
#[derive(Debug)]
struct CountingPush {
    posts: AtomicU64,
    latency: Duration,
}

impl Push for CountingPush {
    async fn post(&self, _id: &ConnectionId, frame: &[u8]) -> Result<Posted, PushError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        std::hint::black_box(frame.len());
        self.posts.fetch_add(1, Ordering::Relaxed);
        Ok(Posted::Delivered)
    }
}

struct Row {
    store: &'static str,
    subscribers: usize,
    pages: u64,
    delivered: u64,
    seconds: f64,
    rss_before_mib: f64,
    peak_growth_mib: f64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let settings = FanoutSettings {
        concurrency: args.concurrency,
        page_size: args.page_size,
        ..FanoutSettings::default()
    };
    let push = CountingPush {
        posts: AtomicU64::new(0),
        latency: Duration::from_millis(args.latency_ms),
    };
    let mut rows = Vec::new();
    for (run, &count) in args.subscribers.iter().enumerate() {
        let row = match &args.dynamodb_endpoint {
            None => {
                let store = MemoryStore::new();
                seed_memory(&store, count).await?;
                measure("memory", &store, &push, &settings, count, run).await?
            }
            Some(endpoint) => {
                let table = format!("bench-{}-{run}", std::process::id());
                let store = marquee_local::dynamo_store(endpoint, &table).await;
                store.create_table().await?;
                seed_dynamo(endpoint, &table, count).await?;
                measure("dynamodb-local", &store, &push, &settings, count, run).await?
            }
        };
        rows.push(row);
    }
    print_table(&args, &rows)
}

const ARTIST: &str = "Bench Artist";

fn subscriber_id(i: usize) -> Result<ConnectionId, BoxError> {
    Ok(ConnectionId::parse(&format!("bench-{i:07}"))?)
}

async fn seed_memory(store: &MemoryStore, count: usize) -> Result<(), BoxError> {
    let now = now_epoch_seconds();
    let artists = ArtistList::parse(&[ARTIST])?;
    for i in 0..count {
        let connection = Connection {
            id: subscriber_id(i)?,
            user_id: UserId::parse("fan")?,
            connected_at: now,
            expires_at: now + 3600,
            scope: Scope::Any,
        };
        store.put_connection(&connection).await?;
        store
            .add_subscriptions(&connection, 0, artists.as_slice())
            .await?;
    }
    Ok(())
}

/// Writes the subscription items straight into the table (25 per batch): the index is all the
/// fan-out reads, and this is far faster than one transaction per subscriber.
async fn seed_dynamo(endpoint: &str, table: &str, count: usize) -> Result<(), BoxError> {
    let sdk = marquee::lambda::deps::sdk_config(true).await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(endpoint)
            .build(),
    );
    let artist = Artist::parse(ARTIST)?;
    let expires_at = (now_epoch_seconds() + 3600).to_string();
    let batches: Vec<Vec<usize>> = (0..count)
        .collect::<Vec<_>>()
        .chunks(25)
        .map(<[usize]>::to_vec)
        .collect();
    let results: Vec<Result<(), BoxError>> = futures_util::stream::iter(batches)
        .map(|batch| {
            let (client, artist, expires_at) = (&client, &artist, &expires_at);
            async move {
                let mut requests = Vec::with_capacity(batch.len());
                for i in batch {
                    let item = HashMap::from([
                        (
                            schema::PK.to_owned(),
                            AttributeValue::S(schema::connection_pk(&subscriber_id(i)?)),
                        ),
                        (
                            schema::SK.to_owned(),
                            AttributeValue::S(schema::subscription_sk(artist.key())),
                        ),
                        (
                            schema::GSI1PK.to_owned(),
                            AttributeValue::S(schema::artist_pk(artist.key())),
                        ),
                        (
                            schema::EXPIRES_AT.to_owned(),
                            AttributeValue::N(expires_at.clone()),
                        ),
                    ]);
                    let put = PutRequest::builder().set_item(Some(item)).build()?;
                    requests.push(WriteRequest::builder().put_request(put).build());
                }
                let mut pending = requests;
                while !pending.is_empty() {
                    let out = client
                        .batch_write_item()
                        .request_items(table, pending)
                        .send()
                        .await?;
                    pending = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(table))
                        .unwrap_or_default();
                }
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn measure<S: Store>(
    store_name: &'static str,
    store: &S,
    push: &CountingPush,
    settings: &FanoutSettings,
    count: usize,
    run: usize,
) -> Result<Row, BoxError> {
    let notification = Notification {
        id: EventId::parse(&format!("bench-event-{run}"))?,
        artist: Artist::parse(ARTIST)?,
        detail: serde_json::json!({"artist": ARTIST, "venue": "Benchmark Arena", "url": "https://example.com/tickets"}),
        time: "2026-11-22T10:00:00Z".into(),
    };
    let rss_before = memory_kib("VmRSS:");
    reset_peak_memory();
    let started = Instant::now();
    let summary = notify(
        store,
        push,
        settings,
        &notification,
        now_epoch_seconds(),
        None,
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = memory_kib("VmHWM:");
    if summary.delivered != count as u64 {
        return Err(format!("delivered {} of {count}", summary.delivered).into());
    }
    Ok(Row {
        store: store_name,
        subscribers: count,
        pages: summary.pages,
        delivered: summary.delivered,
        seconds,
        rss_before_mib: kib_to_mib(rss_before),
        peak_growth_mib: kib_to_mib(peak.saturating_sub(rss_before)),
    })
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

#[allow(clippy::print_stdout, clippy::cast_precision_loss)]
fn print_table(args: &Args, rows: &[Row]) -> Result<(), BoxError> {
    println!(
        "fan-out: concurrency {}, page size {}, simulated round trip {} ms",
        args.concurrency, args.page_size, args.latency_ms
    );
    println!();
    println!(
        "| store | subscribers | pages | delivered | seconds | posts/s | RSS before (MiB) | peak growth during notify (MiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0} | {:.1} | {:.1} |",
            row.store,
            row.subscribers,
            row.pages,
            row.delivered,
            row.seconds,
            row.delivered as f64 / row.seconds.max(f64::EPSILON),
            row.rss_before_mib,
            row.peak_growth_mib,
        );
    }
    Ok(())
}
