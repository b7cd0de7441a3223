//! The `lambda` mode: the release function binaries as Lambda runs them, at Lambda's CPU
//! share, over TLS, one process each.
//!
//! For each memory size (128, 256, 512, 1,024 and 1,769 MB by default):
//!
//! - **CPU share.** A cgroup v1 quota of `cpu.cfs_period_us` × memory / 1,769 (one vCPU at
//!   1,769 MB), which each process joins before it execs ([`cgroup`]).
//! - **Cold init**: process start to its first request for work, `--starts` starts of each
//!   function (connect, subscribe, notify, deliver), median.
//! - **deliver**: a fresh process gets one work item (one page of `--fans` subscribers, all in
//!   one index shard), then `--warm` more. Its first invocation includes the TLS handshakes.
//!   CPU per post is the cgroup's CPU time over a warm invocation divided by its posts (the
//!   page's query, the lease and the hand-off included); posts/s is posts over the invocation's
//!   duration, at the stand-in's round trip (`--latency-ms`, 20 by default).
//! - **notify**: a fresh process gets a `TicketsOnSale` event for an artist with `--fans`
//!   subscribers over all 16 shards (inline: at most `INLINE_MAX_SUBSCRIBERS`), then a second.
//! - **Cost per million fans** through `deliver` ([`cost`]): Lambda GB-s and requests at the
//!   warm invocation's duration, the DynamoDB capacity units it consumed, the SQS requests its
//!   work item costs, beside the floor (API Gateway's message charge).
//!
//! **Where the functions talk** ([`standin`]): DynamoDB Local through a TLS front, and one
//! HTTPS stand-in for the Management API, SQS and Secrets Manager, with a certificate signed by
//! a throwaway CA that `scripts/bench lambda` makes; the functions trust it through
//! `SSL_CERT_FILE` (a local endpoint makes `marquee` use the system's trust store, which
//! `rustls-native-certs` reads from that file). The functions run with their own defaults,
//! except `FANOUT_BUDGET=0` (no pacing, so that the posts' CPU is measured, not the budget's
//! wait); `--env NAME=VALUE` sets any variable. `AWS_LAMBDA_INITIALIZATION_TYPE` is not set:
//! with it, the functions would refuse the local endpoints.

mod cgroup;
mod cost;
mod runtime;
mod standin;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use marquee::domain::{Artist, Connection, ConnectionId, EventId, Shard, now_epoch_seconds};
use marquee::store::ConnectionStore;
use marquee::store::dynamo::DynamoStore;
use marquee::work::{Notification, WorkItem};
use serde_json::{Value, json};

use crate::BoxError;
use crate::coldstart::{SECRET_ARN, named_path};
use crate::sim::{Delay, RoundTrip};
use cgroup::Share;
use cost::{PageUse, US_EAST_1};
use runtime::{Invoked, Process};
use standin::{AwsCounts, DynamoCounts};

/// Options of the `lambda` mode.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Memory sizes, in MB.
    #[arg(long, value_delimiter = ',', default_value = "128,256,512,1024,1769")]
    memory: Vec<u64>,
    /// A function binary, as NAME=PATH (connect, subscribe, notify, deliver; repeat).
    #[arg(long = "function", value_parser = named_path)]
    functions: Vec<(String, PathBuf)>,
    /// DynamoDB Local's URL (plain HTTP; the functions reach it through a TLS front).
    #[arg(long)]
    dynamodb_endpoint: String,
    /// The throwaway CA's certificate (PEM), which the functions trust.
    #[arg(long)]
    ca: PathBuf,
    /// The stand-ins' certificate chain (PEM), for 127.0.0.1.
    #[arg(long)]
    cert: PathBuf,
    /// The stand-ins' private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The cgroup v1 `cpu` directory to create each memory size's group in.
    #[arg(long)]
    cpu_cgroup: PathBuf,
    /// The cgroup v1 `cpuacct` directory to create each memory size's group in.
    #[arg(long)]
    cpuacct_cgroup: PathBuf,
    /// The Management API's simulated round trip, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Subscribers of deliver's page and of notify's inline audience.
    #[arg(long, default_value_t = 1000)]
    fans: usize,
    /// Warm deliver invocations per memory size (after the first).
    #[arg(long, default_value_t = 3)]
    warm: usize,
    /// Cold starts of each function per memory size.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// A variable for every function, as NAME=VALUE (repeat; `FANOUT_BUDGET=5000` restores
    /// the default pacing).
    #[arg(long = "env", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// Where each process's output goes (one file per function and memory size).
    #[arg(long, default_value = "target/bench-lambda")]
    logs: PathBuf,
}

fn key_value(raw: &str) -> Result<(String, String), String> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {raw:?}"))?;
    Ok((key.to_owned(), value.to_owned()))
}

/// The functions measured for their cold init, in this order.
const COLD: [&str; 4] = ["connect", "subscribe", "notify", "deliver"];
const INLINE_ARTIST: &str = "Bench Inline";
const PAGE_ARTIST: &str = "Bench Page";
/// Requests in flight per invocation (`FANOUT_CONCURRENCY`'s default), for the ideal rate.
const CONCURRENCY: u64 = 64;

/// Runs the mode and prints its table.
pub(crate) async fn run(args: &Args) -> Result<(), BoxError> {
    let binaries: BTreeMap<&str, &Path> = args
        .functions
        .iter()
        .map(|(name, path)| (name.as_str(), path.as_path()))
        .collect();
    for name in COLD {
        if !binaries.contains_key(name) {
            return Err(format!("--function {name}=PATH is missing").into());
        }
    }
    if args.warm == 0 || args.starts == 0 {
        return Err("--warm and --starts must be at least 1".into());
    }
    std::fs::create_dir_all(&args.logs)?;

    let tls = standin::server_config(&args.cert, &args.key)?;
    let aws_counts = Arc::new(AwsCounts::default());
    let latency = Duration::from_millis(args.latency_ms);
    let delay = Arc::new(Delay::new(RoundTrip {
        nominal: latency,
        lead: Duration::from_micros(1100),
        gain: u32::try_from(CONCURRENCY * 4)?,
    }));
    let aws = standin::serve_aws(
        Arc::clone(&tls),
        Arc::clone(&aws_counts),
        Arc::clone(&delay),
    )
    .await?;
    let dynamo_counts = Arc::new(DynamoCounts::default());
    let dynamo =
        standin::serve_dynamodb(tls, &args.dynamodb_endpoint, Arc::clone(&dynamo_counts)).await?;

    let table = format!("marquee-bench-lambda-{:08x}", fastrand::u32(..));
    let store = seed_store(&args.dynamodb_endpoint, &table).await?;
    seed(&store, INLINE_ARTIST, args.fans, None).await?;
    seed(&store, PAGE_ARTIST, args.fans, Some(Shard::new(0)?)).await?;
    eprintln!("lambda: seeded {table}");

    let base = Environment {
        table,
        aws_port: aws.port,
        dynamodb_port: dynamo.port,
        ca: args.ca.canonicalize()?,
        overrides: args.env.clone(),
    };
    let counters = Counters {
        aws: &aws_counts,
        dynamo: &dynamo_counts,
    };
    let mut rows = Vec::new();
    for &memory_mb in &args.memory {
        let share = Share::create(&args.cpu_cgroup, &args.cpuacct_cgroup, memory_mb)?;
        let row = measure(args, &binaries, &base, &share, memory_mb, &counters).await;
        drop(share);
        let row = row?;
        eprintln!("lambda: {memory_mb} MB done: {row:?}");
        rows.push(row);
    }
    let mean_round_trip = {
        let posts = aws_counts.posts.load(Ordering::Relaxed);
        delay.waited().as_secs_f64() * 1000.0 / posts.max(1) as f64
    };
    print_table(args, &rows, mean_round_trip);
    Ok(())
}

/// Where the stand-ins are, and what every process gets.
#[derive(Debug)]
struct Environment {
    table: String,
    aws_port: u16,
    dynamodb_port: u16,
    ca: PathBuf,
    overrides: Vec<(String, String)>,
}

impl Environment {
    /// The whole environment of `function` at `memory_mb`: what Lambda sets, the function's
    /// configuration pointing at the stand-ins, then `--env`.
    fn of(&self, function: &str, memory_mb: u64) -> Vec<(String, String)> {
        let aws = format!("https://127.0.0.1:{}", self.aws_port);
        let name = format!("marquee-bench-{function}");
        let mut env: BTreeMap<String, String> = crate::coldstart::lambda_platform(&name, memory_mb)
            .into_iter()
            .chain([
                ("SSL_CERT_FILE", self.ca.display().to_string()),
                ("TABLE_NAME", self.table.clone()),
                (
                    "DYNAMODB_ENDPOINT",
                    format!("https://127.0.0.1:{}", self.dynamodb_port),
                ),
                ("WEBSOCKET_ENDPOINT", format!("{aws}/live")),
                ("WORK_QUEUE_URL", format!("{aws}/123456789012/marquee-work")),
                ("SQS_ENDPOINT", aws.clone()),
                ("TOKEN_SECRET_ARN", SECRET_ARN.to_owned()),
                ("AWS_ENDPOINT_URL_SECRETS_MANAGER", aws),
                ("FANOUT_BUDGET", "0".to_owned()),
            ])
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        env.extend(self.overrides.iter().cloned());
        env.into_iter().collect()
    }
}

/// The stand-ins' counters.
#[derive(Debug, Clone, Copy)]
struct Counters<'a> {
    aws: &'a AwsCounts,
    dynamo: &'a DynamoCounts,
}

/// What the stand-ins counted at one moment.
#[derive(Debug, Clone, Default)]
struct Seen {
    posts: u64,
    sqs: BTreeMap<String, u64>,
    dynamodb: BTreeMap<String, u64>,
    read_units: f64,
    write_units: f64,
}

impl Counters<'_> {
    fn seen(&self) -> Seen {
        let (read_units, write_units) = self.dynamo.units();
        Seen {
            posts: self.aws.posts.load(Ordering::Relaxed),
            sqs: self.aws.operations.snapshot(),
            dynamodb: self.dynamo.operations.snapshot(),
            read_units,
            write_units,
        }
    }
}

impl Seen {
    /// What happened between `self` and `later`.
    fn until(&self, later: &Self) -> Self {
        let minus = |after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>| {
            after
                .iter()
                .map(|(op, n)| {
                    (
                        op.clone(),
                        n.saturating_sub(before.get(op).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        Self {
            posts: later.posts.saturating_sub(self.posts),
            sqs: minus(&later.sqs, &self.sqs),
            dynamodb: minus(&later.dynamodb, &self.dynamodb),
            read_units: later.read_units - self.read_units,
            write_units: later.write_units - self.write_units,
        }
    }
}

/// One memory size's results.
#[derive(Debug)]
struct Row {
    memory_mb: u64,
    quota_us: u64,
    /// Median cold init per function of [`COLD`], and the median of its CPU time.
    cold: Vec<(Duration, Duration)>,
    deliver_first: Invoked,
    deliver_warm: Invoked,
    /// Posts of the warm invocation.
    posts: u64,
    notify_first: Duration,
    notify_warm: Duration,
    /// What the warm deliver invocation did, as the stand-ins counted it.
    page: Seen,
    throttled: cgroup::Throttling,
}

async fn measure(
    args: &Args,
    binaries: &BTreeMap<&str, &Path>,
    base: &Environment,
    share: &Share,
    memory_mb: u64,
    counters: &Counters<'_>,
) -> Result<Row, BoxError> {
    let log = |function: &str| args.logs.join(format!("{function}-{memory_mb}.log"));
    let start = |function: &'static str| {
        let binary = binaries.get(function).copied().unwrap_or(Path::new(""));
        let env = base.of(function, memory_mb);
        let log = log(function);
        async move { Process::start(binary, &env, share, &log).await }
    };

    let mut cold: BTreeMap<&str, (Vec<Duration>, Vec<Duration>)> = BTreeMap::new();
    for _ in 0..args.starts {
        for function in COLD {
            let (process, init) = start(function).await?;
            process.stop().await?;
            let samples = cold.entry(function).or_default();
            samples.0.push(init.duration);
            samples.1.push(Duration::from_nanos(init.cpu_nanos));
        }
    }

    let run_id = format!("{memory_mb}-{:06x}", fastrand::u32(..1 << 24));
    let (mut deliver, _) = start("deliver").await?;
    let mut deliver_invocations = Vec::new();
    for n in 0..=args.warm {
        let before = counters.seen();
        let invoked = deliver
            .invoke(deliver_event(&format!("page-{run_id}-{n}"))?, share)
            .await?;
        let seen = before.until(&counters.seen());
        if seen.posts != u64::try_from(args.fans)? {
            return Err(format!(
                "deliver at {memory_mb} MB posted {} times, not {}",
                seen.posts, args.fans
            )
            .into());
        }
        deliver_invocations.push((invoked, seen));
    }
    deliver.stop().await?;

    let (mut notify, _) = start("notify").await?;
    let mut notify_times = Vec::new();
    for n in 0..2 {
        let before = counters.seen();
        let invoked = notify
            .invoke(notify_event(&format!("inline-{run_id}-{n}")), share)
            .await?;
        let posts = before.until(&counters.seen()).posts;
        if posts != u64::try_from(args.fans)? {
            return Err(format!(
                "notify at {memory_mb} MB posted {posts} times, not {} (inline?)",
                args.fans
            )
            .into());
        }
        notify_times.push(invoked.duration);
    }
    notify.stop().await?;

    let mut deliver_invocations = deliver_invocations.into_iter();
    let (deliver_first, _) = deliver_invocations.next().ok_or("no deliver invocation")?;
    let mut warm: Vec<(Invoked, Seen)> = deliver_invocations.collect();
    warm.sort_by_key(|(invoked, _)| invoked.duration);
    let (deliver_warm, page) = warm
        .get(warm.len() / 2)
        .cloned()
        .ok_or("no warm deliver invocation")?;
    Ok(Row {
        memory_mb,
        quota_us: share.quota_us(),
        cold: COLD
            .iter()
            .map(|f| {
                cold.get(f)
                    .map_or((Duration::ZERO, Duration::ZERO), |(wall, cpu)| {
                        (median(wall), median(cpu))
                    })
            })
            .collect(),
        deliver_first,
        posts: page.posts,
        deliver_warm,
        notify_first: notify_times.first().copied().unwrap_or_default(),
        notify_warm: notify_times.get(1).copied().unwrap_or_default(),
        page,
        throttled: share.throttling()?,
    })
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// An SQS event of one work item: the first page of shard 0 of the page artist.
fn deliver_event(event_id: &str) -> Result<String, BoxError> {
    let notification = Notification::new(
        EventId::parse(event_id)?,
        Artist::parse(PAGE_ARTIST)?,
        detail(PAGE_ARTIST),
        "2026-12-05T10:00:00Z".into(),
    )?;
    let item = WorkItem::first(notification.broadcast()?, Shard::new(0)?);
    let now_ms = now_epoch_seconds() * 1000;
    Ok(json!({
        "Records": [{
            "messageId": format!("{event_id}-message"),
            "receiptHandle": format!("{event_id}-receipt"),
            "body": item.to_json(),
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": now_ms.to_string(),
                "SenderId": "AROABENCHBENCHBENCH:marquee-bench-notify",
                "ApproximateFirstReceiveTimestamp": now_ms.to_string(),
            },
            "messageAttributes": {},
            "md5OfBody": "00000000000000000000000000000000",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:marquee-work",
            "awsRegion": "us-east-1",
        }]
    })
    .to_string())
}

/// An EventBridge `TicketsOnSale` event for the inline artist.
fn notify_event(event_id: &str) -> String {
    json!({
        "version": "0",
        "id": event_id,
        "detail-type": marquee::lambda::notify::DEFAULT_ON_SALE_DETAIL_TYPE,
        "source": marquee::report::DEFAULT_EVENT_SOURCE,
        "account": "123456789012",
        "time": "2026-12-05T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail(INLINE_ARTIST),
    })
    .to_string()
}

fn detail(artist: &str) -> Value {
    json!({
        "artist": artist,
        "venue": "Benchmark Arena",
        "onSaleAt": "2026-12-05T10:00:00Z",
        "url": "https://tickets.example.com/events/bench",
    })
}

/// A fresh table in DynamoDB Local, reached directly (plain HTTP) for seeding.
async fn seed_store(endpoint: &str, table: &str) -> Result<DynamoStore, BoxError> {
    let sdk = marquee::lambda::deps::sdk_config(marquee::lambda::deps::Target::Local).await;
    let store = marquee::lambda::deps::dynamo_store(&sdk, table, Some(endpoint));
    store.create_table().await?;
    Ok(store)
}

/// Subscribes `count` connections to `artist`: spread over every shard, or all in `shard`.
async fn seed(
    store: &DynamoStore,
    artist: &str,
    count: usize,
    shard: Option<Shard>,
) -> Result<(), BoxError> {
    let artist = Artist::parse(artist)?;
    let prefix = artist.key().as_str().replace(' ', "-");
    let ids: Vec<ConnectionId> = (0..)
        .map(|i| ConnectionId::parse(&format!("{prefix}-{i:07}")))
        .filter(|id| match (id, shard) {
            (Ok(id), Some(shard)) => Shard::of(id) == shard,
            _ => true,
        })
        .take(count)
        .collect::<Result<_, _>>()?;
    let now = now_epoch_seconds();
    let results: Vec<Result<(), BoxError>> = futures_util::stream::iter(ids)
        .map(|id| {
            let artist = artist.clone();
            async move {
                let connection = Connection::builder(id.as_str())
                    .user("fan")
                    .connected_at(now)
                    .lifetime(24 * 3600)
                    .build();
                store.put_connection(&connection).await?;
                store
                    .add_subscriptions(&connection, 0, std::slice::from_ref(&artist))
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[allow(clippy::print_stdout, clippy::cast_precision_loss)]
fn print_table(args: &Args, rows: &[Row], mean_round_trip_ms: f64) {
    println!(
        "release binaries, one process each under a cgroup CPU quota of memory / 1,769 MB of a vCPU; TLS to the stand-ins; {} fans per page and inline; Management API round trip {} ms (measured mean {mean_round_trip_ms:.1} ms); ideal posts/s per invocation {} / round trip = {:.0}; prices US East (N. Virginia), arm64",
        args.fans,
        args.latency_ms,
        CONCURRENCY,
        CONCURRENCY as f64 * 1000.0 / args.latency_ms.max(1) as f64,
    );
    println!();
    println!(
        "| memory (MB) | vCPU | cold init (ms): connect / subscribe / notify / deliver | its CPU (ms) | deliver: first invocation (ms) | deliver: warm invocation (ms) | posts/s per invocation | CPU µs per post | CPU-bound ceiling (posts/s) | notify inline, {} fans: first / warm (ms) | $ per million fans: Lambda | DynamoDB | SQS | API Gateway (floor) | total | × floor |",
        args.fans
    );
    println!("|---:|---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let cold = row
            .cold
            .iter()
            .map(|(wall, _)| format!("{:.0}", millis(*wall)))
            .collect::<Vec<_>>()
            .join(" / ");
        let cold_cpu = row
            .cold
            .iter()
            .map(|(_, cpu)| format!("{:.1}", millis(*cpu)))
            .collect::<Vec<_>>()
            .join(" / ");
        let posts = row.posts.max(1) as f64;
        let cpu_per_post_us = row.deliver_warm.cpu_nanos as f64 / posts / 1000.0;
        let vcpu = cgroup::vcpus(row.quota_us);
        let sqs_per_page = row
            .page
            .sqs
            .get("ChangeMessageVisibility")
            .copied()
            .unwrap_or(0)
            + 3;
        let cost = cost::per_million_fans(
            &PageUse {
                memory_mb: row.memory_mb,
                duration: row.deliver_warm.duration,
                fans: row.posts,
                read_units: row.page.read_units,
                write_units: row.page.write_units,
                sqs_requests: sqs_per_page,
            },
            &US_EAST_1,
        );
        println!(
            "| {} | {vcpu:.3} | {cold} | {cold_cpu} | {:.0} | {:.0} | {:.0} | {cpu_per_post_us:.0} | {:.0} | {:.0} / {:.0} | {:.4} | {:.4} | {:.4} | {:.2} | {:.4} | {:.3} |",
            row.memory_mb,
            millis(row.deliver_first.duration),
            millis(row.deliver_warm.duration),
            posts / row.deliver_warm.duration.as_secs_f64(),
            vcpu * 1e6 / cpu_per_post_us,
            millis(row.notify_first),
            millis(row.notify_warm),
            cost.lambda,
            cost.dynamodb,
            cost.sqs,
            cost.api_gateway,
            cost.total(),
            cost.over_floor(),
        );
    }
    println!();
    for row in rows {
        println!(
            "- {} MB: a warm deliver page: CPU {:.1} ms, first invocation CPU {:.1} ms; DynamoDB {:?} ({:.1} read, {:.1} write units); SQS {:?} (+ the event source's receive and delete, and the item's own send); throttled {} periods, {:.0} ms in all",
            row.memory_mb,
            row.deliver_warm.cpu_nanos as f64 / 1e6,
            row.deliver_first.cpu_nanos as f64 / 1e6,
            row.page.dynamodb,
            row.page.read_units,
            row.page.write_units,
            row.page.sqs,
            row.throttled.periods,
            row.throttled.nanos as f64 / 1e6,
        );
    }
}
