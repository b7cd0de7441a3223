//! The `fanout` mode: for each subscriber count, one artist's subscribers, one `notify` and
//! then one `deliver` invocation at a time draining the work items it enqueued (the real
//! handlers; the in-process queue), against a push that counts posts. With one invocation at a
//! time this is the engine's own cost and, with `--latency-ms`, one invocation's throughput.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures_util::StreamExt;
use marquee::config::FanoutSettings;
use marquee::domain::{Artist, Shard, now_epoch_seconds};
use marquee::lambda::DeliverDeps;
use marquee::lambda::deps::{Target, dynamo_store, sdk_config};
use marquee::queue::mapping::poll_once;
use marquee::queue::memory::MemoryQueue;
use marquee::routes::fanout::Ports;
use marquee::routes::notify::notify;
use marquee::schema;
use marquee::store::Store;
use marquee::store::memory::MemoryStore;

use crate::sim::{BenchPush, Deliveries, RoundTrip};
use crate::{
    ARTIST, BoxError, kib_to_mib, memory_kib, notification, reset_peak_memory, seed_memory,
    subscriber_id,
};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
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

struct Row {
    store: &'static str,
    subscribers: usize,
    pages: u64,
    delivered: u64,
    seconds: f64,
    rss_before_mib: f64,
    peak_growth_mib: f64,
}

pub(crate) async fn run(args: &Args) -> Result<(), BoxError> {
    let settings = FanoutSettings {
        concurrency: args.concurrency,
        page_size: args.page_size,
        budget: 0,
        rate_per_invocation: None,
        ..FanoutSettings::default()
    };
    let latency = Duration::from_millis(args.latency_ms);
    let mut rows = Vec::new();
    for (run, &count) in args.subscribers.iter().enumerate() {
        let row = match &args.dynamodb_endpoint {
            None => {
                let store = MemoryStore::new();
                seed_memory(&store, count).await?;
                measure("memory", store, latency, &settings, count, run).await?
            }
            Some(endpoint) => {
                let table = format!("bench-{}-{run}", std::process::id());
                let sdk = sdk_config(Target::Local).await;
                let store = dynamo_store(&sdk, &table, Some(endpoint));
                store.create_table().await?;
                seed_dynamo(endpoint, &table, count).await?;
                measure("dynamodb-local", store, latency, &settings, count, run).await?
            }
        };
        rows.push(row);
    }
    print_table(args, &rows);
    Ok(())
}

/// Writes the subscription items straight into the table (25 per batch): the index is all the
/// fan-out reads, and this is far faster than one transaction per subscriber.
async fn seed_dynamo(endpoint: &str, table: &str, count: usize) -> Result<(), BoxError> {
    let sdk = sdk_config(Target::Local).await;
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
                    let id = subscriber_id(i)?;
                    let item = HashMap::from([
                        (
                            schema::PK.to_owned(),
                            AttributeValue::S(schema::connection_pk(&id)),
                        ),
                        (
                            schema::SK.to_owned(),
                            AttributeValue::S(schema::subscription_sk(artist.key())),
                        ),
                        (
                            schema::GSI1PK.to_owned(),
                            AttributeValue::S(schema::artist_shard_pk(
                                artist.key(),
                                Shard::of(&id),
                            )),
                        ),
                        (
                            "artist".to_owned(),
                            AttributeValue::S(artist.name().to_owned()),
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

async fn measure<S: Store + Clone>(
    store_name: &'static str,
    store: S,
    latency: Duration,
    settings: &FanoutSettings,
    count: usize,
    run: usize,
) -> Result<Row, BoxError> {
    let notification = notification(&format!("fanout-{run}"))?;
    let deliveries = Arc::new(Deliveries::new(count));
    let queue = MemoryQueue::new(Duration::from_secs(900), 5);
    let deps = DeliverDeps::new(
        &crate::config_with(settings),
        store,
        BenchPush::new(
            RoundTrip {
                nominal: latency,
                lead: Duration::ZERO,
                gain: u32::try_from(settings.concurrency.saturating_mul(4)).unwrap_or(u32::MAX),
            },
            Arc::clone(&deliveries),
        ),
        queue.clone(),
        marquee::budget::in_memory(settings.budget),
        Arc::new(marquee::report::NoEvents),
    );
    let rss_before = memory_kib("VmRSS:");
    reset_peak_memory();
    let started = Instant::now();
    let summary = notify(
        &Ports::new(&deps.store, &deps.push, &queue, settings).with_budget(deps.budget.as_ref()),
        &notification,
        now_epoch_seconds(),
        None,
    )
    .await?;
    // One `deliver` invocation at a time, one work item each, until every item is deleted.
    let mut items = 0u64;
    while !queue.is_empty() {
        let received = poll_once(&queue, 1, Duration::ZERO, |event| async {
            Ok::<_, Infallible>(marquee::lambda::deliver::handle(&deps, event, None).await)
        })
        .await?;
        items += marquee::domain::saturating_u64(received);
        if received == 0 {
            // Every message is hidden: a failed item waits out its visibility timeout.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak = memory_kib("VmHWM:");
    let reach = deliveries.reach();
    if reach.lost != 0 || !queue.dead_letters().is_empty() {
        return Err(format!(
            "{} of {count} subscribers not reached ({} dead letters)",
            reach.lost,
            queue.dead_letters().len()
        )
        .into());
    }
    Ok(Row {
        store: store_name,
        subscribers: count,
        pages: summary.pages + items,
        delivered: reach.posts,
        seconds,
        rss_before_mib: kib_to_mib(rss_before),
        peak_growth_mib: kib_to_mib(peak.saturating_sub(rss_before)),
    })
}

#[allow(clippy::print_stdout, clippy::cast_precision_loss)]
fn print_table(args: &Args, rows: &[Row]) {
    println!(
        "fan-out (notify, then one deliver invocation at a time): concurrency {}, page size {}, simulated round trip {} ms",
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
}
