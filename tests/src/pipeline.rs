//! Plays Lambda's SQS event source for `deliver` in tests: a few workers poll the work queue
//! and run the real handler, optionally crashing on a share of their items, until no message
//! is left.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use marquee::budget::Lane;
use marquee::function::Function;
use marquee::lambda::{DeliverDeps, deliver};
use marquee::push::Push;
use marquee::queue::lease::LEASE;
use marquee::queue::mapping::poll_once;
use marquee::queue::{Inbox, Queue};
use marquee::store::Store;

/// How the workers behave.
#[derive(Debug, Clone, Copy)]
pub struct Workers {
    /// `deliver` invocations at once.
    pub count: usize,
    /// Share of received items whose invocation is killed part way (0.0 to 1.0).
    pub crash_rate: f64,
    /// A killed invocation dies at a random instant up to this long after it starts.
    pub crash_within: Duration,
    /// Seed for the crash dice, so a failure reproduces.
    pub seed: u64,
    /// The lease `deliver` holds on its item (`marquee::queue::lease::LEASE` in AWS): a
    /// killed invocation's item comes back within it.
    pub lease: Duration,
}

impl Workers {
    /// `count` workers that never crash.
    #[must_use]
    pub fn steady(count: usize) -> Self {
        Self {
            count,
            crash_rate: 0.0,
            crash_within: Duration::ZERO,
            seed: 1,
            lease: LEASE,
        }
    }
}

/// What the workers did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Items received (redeliveries included).
    pub received: usize,
    /// Invocations killed part way.
    pub crashes: usize,
    /// Items received again (`ApproximateReceiveCount` above 1): after a crash, or a lease
    /// that lapsed before its renewal on a starved machine. Only these may post twice.
    pub redelivered: usize,
}

/// Runs the workers until the queue holds no message (none visible, none in flight), or
/// panics after `limit`.
pub async fn drain<S, P, Q>(
    deps: &DeliverDeps<S, P, Q>,
    workers: Workers,
    limit: Duration,
) -> Drained
where
    S: Store,
    P: Push,
    Q: Queue + Inbox,
{
    let redelivered = &AtomicUsize::new(0);
    let run = async {
        let totals = futures_util::future::join_all((0..workers.count.max(1)).map(|n| {
            let mut dice = fastrand::Rng::with_seed(workers.seed.wrapping_add(n as u64));
            async move {
                let mut mine = Drained::default();
                // Each worker polls the work queue and, when room messages have their own
                // (another event source of the same function in AWS), that one in turn.
                let rooms = deps.queue.lane(Lane::Rooms);
                let sale = deps.queue.lane(Lane::Sale);
                let queues: Vec<&Q> = if std::ptr::eq(rooms, sale) {
                    vec![sale]
                } else {
                    vec![sale, rooms]
                };
                for turn in 0usize.. {
                    let queue = queues.get(turn % queues.len()).copied().unwrap_or(sale);
                    let crash = dice.f64() < workers.crash_rate;
                    let dies_after = workers.crash_within.mul_f64(dice.f64());
                    // Lambda's event source polls with the function's role.
                    let received = Function::Deliver
                        .run(poll_once(
                            queue,
                            1,
                            Duration::from_millis(100),
                            |event| async move {
                                let again = event
                                    .records
                                    .iter()
                                    .filter(|r| {
                                        r.attributes
                                            .get("ApproximateReceiveCount")
                                            .and_then(|n| n.parse::<u32>().ok())
                                            .is_some_and(|n| n > 1)
                                    })
                                    .count();
                                redelivered.fetch_add(again, Ordering::Relaxed);
                                let handled =
                                    deliver::handle_leased(deps, event, None, workers.lease);
                                if crash {
                                    // The invocation is killed: its future is dropped wherever
                                    // it is.
                                    tokio::time::timeout(dies_after, handled)
                                        .await
                                        .map_err(|_| "killed")?;
                                    Err("killed after finishing, before the event source deleted it")
                                } else {
                                    Ok(handled.await)
                                }
                            },
                        ))
                        .await
                        .expect("poll the work queue");
                    mine.received += received;
                    mine.crashes += usize::from(crash && received > 0);
                    if received == 0 && backlog(&queues).await == 0 {
                        return mine;
                    }
                }
                mine
            }
        }))
        .await;
        totals
            .into_iter()
            .fold(Drained::default(), |sum, one| Drained {
                received: sum.received + one.received,
                crashes: sum.crashes + one.crashes,
                redelivered: redelivered.load(Ordering::Relaxed),
            })
    };
    tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("the work queue was not drained within {limit:?}"))
}

/// What `queues` hold between them, visible or in flight.
async fn backlog<Q: Inbox>(queues: &[&Q]) -> usize {
    let mut total = 0;
    for queue in queues {
        total += queue.backlog().await.expect("queue backlog");
    }
    total
}
