//! The `pipeline` mode: the whole fan-out at scale, `notify` → work queue → W concurrent
//! `deliver` invocations, in one process.
//!
//! Once, one artist gets N subscribers in the in-memory store (`bench-0000000` …); every row
//! reuses that store with a fresh event id (so the claim is new) and a fresh queue. For each
//! worker count W (one row):
//!
//! 1. W workers start, each a tokio task playing one `deliver` invocation at a time, as Lambda's
//!    SQS event source does: it loops `poll_once(queue, 1, …)` with the real handler
//!    (`marquee::lambda::deliver::handle`) and its own `DeliverDeps`: its own push client
//!    (simulated round trip, counting into one shared per-subscriber delivery counter), its own
//!    settings, one in-memory account budget when a budget is given, and clones of the
//!    shared store and queue.
//! 2. Crash injection (`--crash-rate p`): with probability p per received item, the handler
//!    runs under a timeout drawn uniformly between 0 and the page's expected processing time
//!    (page size / concurrency × round trip, or page size / per-invocation rate if slower). When
//!    it fires, the handler's future is dropped at whatever await point it had reached, so
//!    nothing is deleted and nothing renews the item's lease: the queue redelivers it when the
//!    lease lapses, exactly what SQS does after a Lambda crash. The timings are AWS's: the
//!    handler holds its item on `marquee::queue::lease::LEASE` (10 s; `--lease-ms`), and the
//!    queue's visibility timeout is the template's 360 s (`--visibility-ms`), which only a
//!    crash before the lease is taken would wait out. Crashes are counted, and the slowest
//!    recovery (a crash to the next receive of its item) is reported.
//! 3. The clock starts as `notify` is called (it claims the event and enqueues one work item
//!    per shard) and stops when the queue is empty: every item (page) was processed and
//!    deleted. Continuations are enqueued before their parent is deleted, so the queue is
//!    never empty while work remains. Then the workers stop.
//!
//! Each row reports posts/s (every successful post, duplicates included, over the time), the
//! ideal posts/s (the smaller of W × concurrency / round trip and the budget) and their ratio;
//! the measured mean round trip (the push aims a little early to make up for tokio's
//! millisecond timer, see [`crate::sim::RoundTrip`]) and the ratio against an ideal at that
//! measured value, so the compensation can be checked; the peak heap per worker (see
//! [`crate::heap`]: bytes allocated during the worker's own polls, not OS RSS, because all
//! workers share one process and one seeded store); the process's peak RSS during the row
//! (`VmHWM`, mostly the seeded store); the subscribers never reached ("lost", must be 0); the
//! duplicate posts (deliveries beyond the first); the injected crashes; and the work items the
//! workers received (redeliveries included).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use marquee::config::FanoutSettings;
use marquee::domain::now_epoch_seconds;
use marquee::lambda::DeliverDeps;
use marquee::queue::QueueError;
use marquee::queue::lease::LEASE;
use marquee::queue::mapping::poll_once;
use marquee::queue::memory::MemoryQueue;
use marquee::routes::fanout::Ports;
use marquee::routes::notify::{Mode, notify};
use marquee::store::memory::MemoryStore;
use tokio::time::Instant;

use crate::heap::{self, FIRST_WORKER, TAGS};
use crate::sim::{BenchPush, BenchQueue, BenchStore, Deliveries, RoundTrip};
use crate::{BoxError, kib_to_mib, memory_kib, notification, reset_peak_memory, seed_memory};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Subscribers of the one artist.
    #[arg(long, default_value_t = 1_000_000)]
    subscribers: usize,
    /// Concurrent deliver invocations to run, comma-separated: one row each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    workers: Vec<usize>,
    /// Simulated Management API round trip per post, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Posts per second for the whole fan-out: one in-memory account budget every worker and
    /// notify lease from.
    #[arg(long)]
    budget: Option<u32>,
    /// Fraction of received work items whose invocation is cut short at a random point.
    #[arg(long, default_value_t = 0.0)]
    crash_rate: f64,
    /// Posts in flight per invocation.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Index records per page (one work item is one page).
    #[arg(long, default_value_t = 1000)]
    page_size: u32,
    /// The queue's visibility timeout, in milliseconds (the template's 360 s).
    #[arg(long, default_value_t = 360_000)]
    visibility_ms: u64,
    /// The lease `deliver` holds on its item, in milliseconds (`marquee::queue::lease::LEASE`):
    /// how long a crashed item stays hidden.
    #[arg(long, default_value_t = marquee::domain::saturating_u64(LEASE.as_millis()))]
    lease_ms: u64,
    /// Give up on a row after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_seconds: u64,
}

/// Receives after which the queue dead-letters a message: far more than crashes could cause
/// here, so a dead letter means a bug (and shows as lost subscribers).
const MAX_RECEIVES: u32 = 100;
/// How long an idle worker's receive waits before looking at the stop flag again.
const POLL_WAIT: Duration = Duration::from_millis(20);
/// How often the clock checks whether the queue is empty.
const WATCH_EVERY: Duration = Duration::from_millis(1);
/// How often a running row reports progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// When an invocation crashes.
#[derive(Debug, Clone, Copy)]
struct Crash {
    rate: f64,
    /// The longest an invocation runs before its injected crash.
    up_to: Duration,
}

impl Crash {
    /// For this received item: `Some(after)` to crash it after `after`.
    fn draw(self) -> Option<Duration> {
        (self.rate > 0.0 && fastrand::f64() < self.rate)
            .then(|| self.up_to.mul_f64(fastrand::f64()))
    }
}

/// What a worker did in a row.
#[derive(Debug, Clone, Copy)]
struct WorkerReport {
    posts: u64,
    waited: Duration,
    lead: Duration,
    received: u64,
    /// Time spent in the handler (crashed attempts included).
    busy: Duration,
}

#[derive(Debug)]
struct Row {
    subscribers: usize,
    workers: usize,
    latency_ms: u64,
    measured_round_trip_ms: f64,
    budget: Option<u32>,
    seconds: f64,
    posts: u64,
    ideal: Option<f64>,
    ideal_at_measured: Option<f64>,
    peak_heap_mib: f64,
    peak_rss_mib: f64,
    lost: u64,
    duplicates: u64,
    crashes: u64,
    received: u64,
    slowest_recovery: Option<Duration>,
}

/// When each crashed item was killed, and the longest it took to come back.
#[derive(Debug, Default)]
struct Recoveries {
    killed: Mutex<HashMap<String, Instant>>,
    slowest: Mutex<Option<Duration>>,
}

impl Recoveries {
    fn killed(&self, message_id: &str) {
        self.killed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(message_id.to_owned(), Instant::now());
    }

    fn received(&self, message_id: &str) {
        let killed_at = self
            .killed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(message_id);
        if let Some(killed_at) = killed_at {
            let took = killed_at.elapsed();
            let mut slowest = self.slowest.lock().unwrap_or_else(PoisonError::into_inner);
            *slowest = Some(slowest.map_or(took, |s| s.max(took)));
        }
    }

    fn slowest(&self) -> Option<Duration> {
        *self.slowest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) async fn run(args: &Args) -> Result<(), BoxError> {
    check(args)?;
    let started = Instant::now();
    let store = MemoryStore::new();
    seed_memory(&store, args.subscribers).await?;
    note(&format!(
        "seeded {} subscribers in {:.1} s; process RSS {:.0} MiB",
        args.subscribers,
        started.elapsed().as_secs_f64(),
        kib_to_mib(memory_kib("VmRSS:"))
    ));
    print_header(args);
    let mut lost = 0;
    let mut lead = Duration::ZERO;
    for (run, &workers) in args.workers.iter().enumerate() {
        let row = measure(args, &store, workers, run, &mut lead).await?;
        print_row(&row);
        lost += row.lost;
    }
    if lost > 0 {
        return Err(format!("{lost} subscribers were never reached").into());
    }
    Ok(())
}

fn check(args: &Args) -> Result<(), BoxError> {
    if args.subscribers == 0 {
        return Err("--subscribers must be at least 1".into());
    }
    if args
        .workers
        .iter()
        .any(|&w| w == 0 || w > TAGS - FIRST_WORKER)
    {
        return Err(format!("--workers must be between 1 and {}", TAGS - FIRST_WORKER).into());
    }
    if !(0.0..=1.0).contains(&args.crash_rate) {
        return Err("--crash-rate must be between 0 and 1".into());
    }
    if args.budget == Some(0) {
        return Err("--budget must be at least 1 post/s".into());
    }
    Ok(())
}

async fn measure(
    args: &Args,
    seeded: &MemoryStore,
    workers: usize,
    run: usize,
    lead: &mut Duration,
) -> Result<Row, BoxError> {
    let latency = Duration::from_millis(args.latency_ms);
    let round_trip = RoundTrip {
        nominal: latency,
        lead: *lead,
        gain: u32::try_from(args.concurrency.saturating_mul(4)).unwrap_or(u32::MAX),
    };
    let worker_count = u32::try_from(workers)?;
    let settings = FanoutSettings {
        concurrency: args.concurrency,
        page_size: args.page_size,
        budget: args.budget.unwrap_or(0),
        rate_per_invocation: args.budget.map(|b| (b / worker_count).max(1)),
        ..FanoutSettings::default()
    };
    let crash = Crash {
        rate: args.crash_rate,
        up_to: expected_page_time(&settings, latency),
    };
    let deliveries = Arc::new(Deliveries::new(args.subscribers));
    let store = BenchStore(seeded.clone());
    let queue = BenchQueue(MemoryQueue::new(
        Duration::from_millis(args.visibility_ms),
        MAX_RECEIVES,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let crashes = Arc::new(AtomicU64::new(0));
    let recoveries = Arc::new(Recoveries::default());
    let lease = Duration::from_millis(args.lease_ms);
    let tags = FIRST_WORKER..FIRST_WORKER + workers;
    heap::reset(tags.clone());
    let mut handles = Vec::with_capacity(workers);
    let budget = marquee::budget::in_memory(settings.budget);
    let config = crate::config_with(&settings);
    for tag in tags.clone() {
        let deps = DeliverDeps::new(
            &config,
            store.clone(),
            BenchPush::new(round_trip, Arc::clone(&deliveries)),
            queue.clone(),
            Arc::clone(&budget),
            Arc::new(marquee::report::NoEvents),
        );
        let work = worker(
            deps,
            Arc::clone(&stop),
            (crash, lease),
            Arc::clone(&crashes),
            Arc::clone(&recoveries),
        );
        handles.push(tokio::spawn(heap::tagged(tag, work)));
    }

    let notification = notification(&format!("pipeline-{run}"))?;
    let notify_push = BenchPush::new(round_trip, Arc::clone(&deliveries));
    reset_peak_memory();
    let started = Instant::now();
    let summary = notify(
        &Ports::new(&store, &notify_push, &queue, &settings).with_budget(budget.as_ref()),
        &notification,
        now_epoch_seconds(),
        None,
    )
    .await?;
    let give_up = started + Duration::from_secs(args.timeout_seconds);
    let mut next_note = started + PROGRESS_EVERY;
    while !queue.0.is_empty() && Instant::now() < give_up {
        tokio::time::sleep(WATCH_EVERY).await;
        if Instant::now() >= next_note {
            next_note += PROGRESS_EVERY;
            note(&format!(
                "{workers} workers: {:.0} s, {} of {} subscribers reached, {} items queued",
                started.elapsed().as_secs_f64(),
                deliveries.reached(),
                args.subscribers,
                queue.0.len()
            ));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_mib = kib_to_mib(memory_kib("VmHWM:"));
    let finished = queue.0.is_empty();
    stop.store(true, Ordering::Relaxed);
    let mut reports = Vec::with_capacity(workers);
    for handle in handles {
        reports.push(handle.await??);
    }
    if !finished {
        return Err(format!(
            "{workers} workers: the queue still held {} items after {} s",
            queue.0.len(),
            args.timeout_seconds
        )
        .into());
    }
    if summary.mode != Mode::Queued {
        return Err(format!("notify went {:?}, not through the queue", summary.mode).into());
    }
    let dead = queue.0.dead_letters().len();
    let reach = deliveries.reach();
    if reach.strays != 0 || dead != 0 {
        return Err(format!("{} stray posts, {dead} dead letters", reach.strays).into());
    }

    let posts: u64 = reports.iter().map(|r| r.posts).sum::<u64>() + notify_push.posts();
    let waited: Duration = reports.iter().map(|r| r.waited).sum();
    let measured_round_trip = if posts == 0 || latency.is_zero() {
        latency
    } else {
        waited.div_f64(as_f64(posts))
    };
    if !reports.is_empty() {
        *lead = reports.iter().map(|r| r.lead).sum::<Duration>() / worker_count;
    }
    let peaks: Vec<i64> = tags.clone().map(heap::peak).collect();
    let drift = tags.map(heap::live).map(i64::abs).max().unwrap_or(0);
    note(&format!(
        "{workers} workers: {:.2} s; {} work items received by the workers ({} sent, {} crashes); \
         workers busy {:.1}% of the time; heap per worker peak min {:.0} / max {:.0} KiB, \
         largest live at the end {:.1} KiB; round trip lead {:.2} ms",
        seconds,
        reports.iter().map(|r| r.received).sum::<u64>(),
        queue.0.sent(),
        crashes.load(Ordering::Relaxed),
        100.0
            * reports
                .iter()
                .map(|r| r.busy)
                .sum::<Duration>()
                .as_secs_f64()
            / (as_f64(workers) * seconds.max(f64::EPSILON)),
        bytes_to_kib(peaks.iter().copied().min().unwrap_or(0)),
        bytes_to_kib(peaks.iter().copied().max().unwrap_or(0)),
        bytes_to_kib(drift),
        lead.as_secs_f64() * 1000.0,
    ));
    Ok(Row {
        subscribers: args.subscribers,
        workers,
        latency_ms: args.latency_ms,
        measured_round_trip_ms: measured_round_trip.as_secs_f64() * 1000.0,
        budget: args.budget,
        seconds,
        posts: reach.posts,
        ideal: ideal(workers, args.concurrency, latency, args.budget),
        ideal_at_measured: ideal(workers, args.concurrency, measured_round_trip, args.budget),
        peak_heap_mib: bytes_to_kib(peaks.into_iter().max().unwrap_or(0)) / 1024.0,
        peak_rss_mib,
        lost: reach.lost,
        duplicates: reach.duplicates,
        crashes: crashes.load(Ordering::Relaxed),
        received: reports.iter().map(|r| r.received).sum(),
        slowest_recovery: recoveries.slowest(),
    })
}

/// One `deliver` invocation after another until told to stop; returns what it did.
async fn worker(
    deps: DeliverDeps<BenchStore, BenchPush, BenchQueue>,
    stop: Arc<AtomicBool>,
    (crash, lease): (Crash, Duration),
    crashes: Arc<AtomicU64>,
    recoveries: Arc<Recoveries>,
) -> Result<WorkerReport, QueueError> {
    let mut received = 0u64;
    let mut busy = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        let cut = crash.draw();
        let (deps_ref, crashes, recoveries, busy) = (&deps, &crashes, &recoveries, &mut busy);
        let n = poll_once(&deps.queue, 1, POLL_WAIT, |event| async move {
            let started = Instant::now();
            let message_id = event
                .records
                .first()
                .and_then(|r| r.message_id.clone())
                .unwrap_or_default();
            recoveries.received(&message_id);
            let handling = marquee::lambda::deliver::handle_leased(deps_ref, event, None, lease);
            let outcome = match cut {
                None => Ok(handling.await),
                // The invocation dies at whatever await point it has reached: nothing is
                // deleted or renewed, and the item comes back when its lease lapses.
                Some(after) => tokio::time::timeout(after, handling)
                    .await
                    .inspect_err(|_| {
                        crashes.fetch_add(1, Ordering::Relaxed);
                        recoveries.killed(&message_id);
                    }),
            };
            *busy += started.elapsed();
            outcome
        })
        .await?;
        received += marquee::domain::saturating_u64(n);
    }
    Ok(WorkerReport {
        posts: deps.push.posts(),
        waited: deps.push.waited(),
        lead: deps.push.lead(),
        received,
        busy,
    })
}

/// How long one page takes at best: its rounds of `concurrency` posts, or its posts at the
/// invocation's rate, whichever is slower.
fn expected_page_time(settings: &FanoutSettings, latency: Duration) -> Duration {
    let page = f64::from(settings.page_size);
    let by_round_trip = latency.mul_f64(page / as_f64(settings.concurrency.max(1)));
    let by_rate = settings.rate_per_invocation.map_or(Duration::ZERO, |rate| {
        Duration::from_secs_f64(page / f64::from(rate))
    });
    by_round_trip.max(by_rate)
}

/// The smaller of workers × concurrency / round trip and the budget (`None`: unbounded).
fn ideal(
    workers: usize,
    concurrency: usize,
    round_trip: Duration,
    budget: Option<u32>,
) -> Option<f64> {
    let by_round_trip =
        (!round_trip.is_zero()).then(|| as_f64(workers * concurrency) / round_trip.as_secs_f64());
    let by_budget = budget.map(f64::from);
    match (by_round_trip, by_budget) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[allow(clippy::cast_precision_loss)]
fn as_f64<N: TryInto<u64>>(n: N) -> f64 {
    n.try_into().unwrap_or(u64::MAX) as f64
}

#[allow(clippy::cast_precision_loss)]
fn bytes_to_kib(bytes: i64) -> f64 {
    bytes as f64 / 1024.0
}

#[allow(clippy::print_stderr)]
fn note(line: &str) {
    eprintln!("{line}");
}

#[allow(clippy::print_stdout)]
fn print_header(args: &Args) {
    println!(
        "pipeline: {} subscribers, concurrency {} per invocation, page size {}, simulated round trip {} ms, \
         budget {}, crash rate {}, visibility timeout {} ms, lease {} ms",
        args.subscribers,
        args.concurrency,
        args.page_size,
        args.latency_ms,
        args.budget
            .map_or_else(|| "none".to_owned(), |b| format!("{b} posts/s")),
        args.crash_rate,
        args.visibility_ms,
        args.lease_ms,
    );
    println!();
    println!(
        "| subscribers | workers | round trip (ms) | budget (posts/s) | seconds | posts/s | ideal posts/s | ratio \
         | measured round trip (ms) | ratio at measured round trip | peak heap per worker (MiB) \
         | process peak RSS (MiB) | lost | duplicates | crashes | slowest crash recovery (s) \
         | items received |"
    );
    println!(
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
}

#[allow(clippy::print_stdout)]
fn print_row(row: &Row) {
    let posts_per_second = as_f64(row.posts) / row.seconds.max(f64::EPSILON);
    let ratio = |ideal: Option<f64>| {
        ideal.map_or_else(
            || "n/a".to_owned(),
            |i| format!("{:.3}", posts_per_second / i),
        )
    };
    println!(
        "| {} | {} | {} | {} | {:.2} | {:.0} | {} | {} | {:.2} | {} | {:.3} | {:.0} | {} | {} | {} | {} | {} |",
        row.subscribers,
        row.workers,
        row.latency_ms,
        row.budget
            .map_or_else(|| "none".to_owned(), |b| b.to_string()),
        row.seconds,
        posts_per_second,
        row.ideal
            .map_or_else(|| "unbounded".to_owned(), |i| format!("{i:.0}")),
        ratio(row.ideal),
        row.measured_round_trip_ms,
        ratio(row.ideal_at_measured),
        row.peak_heap_mib,
        row.peak_rss_mib,
        row.lost,
        row.duplicates,
        row.crashes,
        row.slowest_recovery
            .map_or_else(|| "-".to_owned(), |d| format!("{:.1}", d.as_secs_f64())),
        row.received,
    );
}
