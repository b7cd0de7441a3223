//! The posting engine shared by `notify` (small audiences, inline) and `deliver` (one page of
//! one index shard per work item): post one frame to a list of connections with bounded
//! concurrency, under a rate limit, retrying throttles and failures, cleaning up gone
//! connections, and stopping short of the invocation's deadline.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::budget::{Allowance, Budget};
use crate::config::FanoutSettings;
use crate::domain::{ConnectionId, now_epoch_seconds};
use crate::push::{Posted, Push, PushError};
use crate::routes::presence;
use crate::store::Store;
use crate::work::Broadcast;

pub use crate::report::Tally;

impl Tally {
    fn count(&mut self, outcome: Outcome) {
        let retries = match outcome {
            Outcome::Delivered { retries } => {
                self.delivered += 1;
                retries
            }
            Outcome::Gone { retries } => {
                self.gone += 1;
                retries
            }
            Outcome::Failed { retries } => {
                self.failed += 1;
                retries
            }
        };
        self.retried += u64::from(retries);
    }

    /// Adds another tally's counts.
    pub fn add(&mut self, other: Self) {
        self.delivered += other.delivered;
        self.gone += other.gone;
        self.failed += other.failed;
        self.retried += other.retried;
        self.closed += other.closed;
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Delivered { retries: u32 },
    Gone { retries: u32 },
    Failed { retries: u32 },
}

/// The ports and limits `notify` and `deliver` work with.
#[derive(Debug)]
pub struct Ports<'a, S, P, Q> {
    /// Subscriptions and claims.
    pub store: &'a S,
    /// Where inline frames go.
    pub push: &'a P,
    /// Where work items go.
    pub queue: &'a Q,
    /// Limits.
    pub settings: &'a FanoutSettings,
    /// The account's posting budget, shared with every other poster.
    pub budget: &'a dyn Budget,
    /// Where `FanoutCompleted` goes when a fan-out's last work item finishes.
    pub events: &'a dyn crate::report::Events,
}

impl<'a, S, P, Q> Ports<'a, S, P, Q> {
    /// The ports with no posting budget ([`crate::budget::Unlimited`]) and no report events
    /// ([`crate::report::NoEvents`]): set [`Ports::budget`] and [`Ports::events`] for those.
    #[must_use]
    pub fn new(store: &'a S, push: &'a P, queue: &'a Q, settings: &'a FanoutSettings) -> Self {
        Self {
            store,
            push,
            queue,
            settings,
            budget: &crate::budget::Unlimited,
            events: &crate::report::NoEvents,
        }
    }

    /// These ports, drawing on `budget`.
    #[must_use]
    pub fn with_budget(self, budget: &'a dyn Budget) -> Self {
        Self { budget, ..self }
    }

    /// The posting engine over these ports for `broadcast` (the event or message being
    /// posted: the unit of the budget's fair shares, in its lane), which has `need` posts to
    /// make, stopping short of `deadline`.
    #[must_use]
    pub fn engine(
        &self,
        broadcast: &Broadcast,
        need: usize,
        deadline: Option<Instant>,
    ) -> Engine<'a, S, P> {
        Engine {
            store: self.store,
            push: self.push,
            settings: self.settings,
            allowance: Allowance::new(
                self.budget,
                (broadcast.id.as_str(), broadcast.lane),
                need,
                self.settings.rate_per_invocation,
            ),
            deadline,
        }
    }
}

/// Serialises a duration as whole milliseconds.
pub(crate) fn as_millis<S: serde::Serializer>(
    duration: &Duration,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_u64(crate::domain::saturating_u64(duration.as_millis()))
}

/// What [`Engine::post_all`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Posting {
    /// The outcomes.
    pub tally: Tally,
    /// How many of the connections were started (in order); fewer than all when the deadline
    /// came close. Every started one has finished.
    pub started: usize,
    /// The connections not reached within the attempt limit: to be re-driven, never only
    /// logged.
    pub failed: Vec<ConnectionId>,
    /// The smallest concurrency window throttling brought the fan-out down to.
    pub lowest_window: usize,
    /// When the first frame API Gateway accepted was posted (epoch milliseconds).
    pub first_post_ms: Option<i64>,
    /// When the last frame API Gateway accepted was posted (epoch milliseconds).
    pub last_post_ms: Option<i64>,
}

/// Posts in flight, adapted to throttling: halved on a 429 (at most once per
/// `retry_base`), grown by one per window's worth of successes, between 1 and the configured
/// concurrency. Throttling so slows the fan-out down instead of burning retries.
#[derive(Debug)]
struct Window {
    size: AtomicUsize,
    most: usize,
    successes: AtomicUsize,
    last_cut: Mutex<Option<Instant>>,
    cool_down: Duration,
    lowest: AtomicUsize,
}

impl Window {
    fn new(most: usize, cool_down: Duration) -> Self {
        Self {
            size: AtomicUsize::new(most),
            most,
            successes: AtomicUsize::new(0),
            last_cut: Mutex::new(None),
            cool_down,
            lowest: AtomicUsize::new(most),
        }
    }

    fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    fn throttled(&self) {
        let mut last = self
            .last_cut
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.cool_down) {
            return;
        }
        *last = Some(now);
        let halved = (self.size() / 2).max(1);
        self.size.store(halved, Ordering::Relaxed);
        self.successes.store(0, Ordering::Relaxed);
        self.lowest.fetch_min(halved, Ordering::Relaxed);
    }

    fn succeeded(&self) {
        let size = self.size();
        if size < self.most && self.successes.fetch_add(1, Ordering::Relaxed) + 1 >= size {
            self.successes.store(0, Ordering::Relaxed);
            self.size
                .store((size + 1).min(self.most), Ordering::Relaxed);
        }
    }
}

/// Everything one fan-out needs besides the connections and the frame.
#[derive(Debug)]
pub struct Engine<'a, S, P> {
    /// Where gone connections are cleaned up.
    pub store: &'a S,
    /// Where frames go.
    pub push: &'a P,
    /// Limits.
    pub settings: &'a FanoutSettings,
    /// The budget's tokens: one per attempt, retries included.
    pub allowance: Allowance<'a>,
    /// When the invocation must have returned; `None` when unknown.
    pub deadline: Option<Instant>,
}

impl<S: Store, P: Push> Engine<'_, S, P> {
    /// Whether there is still time to start work: at least the settings' reserve is left.
    #[must_use]
    pub fn has_time(&self) -> bool {
        self.deadline.is_none_or(|d| {
            d.saturating_duration_since(Instant::now()) > self.settings.deadline_reserve
        })
    }

    /// Posts `frame` to each of `ids` in order, at most `concurrency` at once. Stops starting
    /// new posts when the deadline comes within the reserve, and lets the started ones finish.
    pub async fn post_all(&self, ids: &[ConnectionId], frame: &[u8]) -> Posting {
        let budget = AtomicU32::new(self.settings.retry_budget);
        let window = Window::new(self.settings.concurrency.max(1), self.settings.retry_base);
        let mut posting = Posting::default();
        let mut in_flight = FuturesUnordered::new();
        let mut ids = ids.iter();
        loop {
            while in_flight.len() < window.size() && self.has_time() {
                let Some(id) = ids.next() else { break };
                posting.started += 1;
                let (budget, window) = (&budget, &window);
                in_flight.push(async move { (id, self.post_one(id, frame, budget, window).await) });
            }
            match in_flight.next().await {
                Some((id, outcome)) => {
                    if matches!(outcome, Outcome::Failed { .. }) {
                        posting.failed.push(id.clone());
                    }
                    if matches!(outcome, Outcome::Delivered { .. }) {
                        let at = chrono::Utc::now().timestamp_millis();
                        posting.first_post_ms.get_or_insert(at);
                        posting.last_post_ms = Some(at);
                    }
                    posting.tally.count(outcome);
                }
                None => {
                    posting.lowest_window = window.lowest.load(Ordering::Relaxed);
                    return posting;
                }
            }
        }
    }

    async fn post_one(
        &self,
        id: &ConnectionId,
        frame: &[u8],
        budget: &AtomicU32,
        window: &Window,
    ) -> Outcome {
        let settings = self.settings;
        let mut retries = 0;
        loop {
            self.allowance.take().await;
            let posted = self.push.post(id, frame).await;
            match &posted {
                Err(PushError::Throttled(_)) => window.throttled(),
                Ok(Posted::Delivered) => window.succeeded(),
                _ => {}
            }
            let posted = match posted {
                Ok(Posted::Gone) => {
                    match clean_up_if_gone(self.store, self.push, id, settings.presence_max).await {
                        Confirmed::Gone => return Outcome::Gone { retries },
                        Confirmed::Open => Ok(Posted::Gone),
                        // Not known to be gone: a failure like a 5xx, retried and re-driven.
                        Confirmed::Unknown => Err(PushError::Unavailable(
                            "a 410 that GetConnection could not confirm".into(),
                        )),
                    }
                }
                other => other,
            };
            match posted {
                Ok(Posted::Delivered) => return Outcome::Delivered { retries },
                Ok(Posted::Gone) if retries + 1 < settings.max_attempts => {
                    // A 410 for a connection that is still open: post again.
                    retries += 1;
                    tokio::time::sleep(backoff(settings, retries)).await;
                }
                Ok(Posted::Gone) => {
                    tracing::warn!(connection_id = %id, attempts = retries + 1, "every post answered 410 but the connection is open");
                    return Outcome::Failed { retries };
                }
                Err(err) => {
                    let pause = backoff(settings, retries);
                    let may_retry = err.is_retryable()
                        && retries + 1 < settings.max_attempts
                        && self.deadline.is_none_or(|d| {
                            d.saturating_duration_since(Instant::now())
                                > pause + settings.deadline_reserve / 2
                        })
                        && take_one(budget);
                    if !may_retry {
                        tracing::warn!(
                            connection_id = %id,
                            attempts = retries + 1,
                            error = &err as &dyn std::error::Error,
                            "could not deliver"
                        );
                        return Outcome::Failed { retries };
                    }
                    retries += 1;
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// What the second opinion on a 410 said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// `GetConnection` answered 410 too: the records were deleted (or TTL will).
    Gone,
    /// `GetConnection` found the connection open: the 410 was false.
    Open,
    /// `GetConnection` failed (throttled, 5xx): nothing is known, nothing was deleted.
    Unknown,
}

/// After a post answered 410: asks API Gateway again (`GetConnection`), and deletes the
/// connection's records only when that confirms it is gone.
///
/// API Gateway is known to answer 410 now and then for a connection that is open
/// (aws-sdk-js #3773, aws-sdk-js-v3 #2763); deleting on the first 410 would silently
/// unsubscribe a live fan from everything. Every caller that meets a 410 uses this. When the
/// second opinion cannot be had, nothing is deleted (TTL removes a really gone connection's
/// records) and the answer is [`Confirmed::Unknown`]: a fan-out must treat that as a failed post
/// (retried, then re-driven), never as a fan written off as gone.
pub async fn clean_up_if_gone<S: Store, P: Push>(
    store: &S,
    push: &P,
    id: &ConnectionId,
    presence_max: u64,
) -> Confirmed {
    match push.is_connected(id).await {
        Ok(true) => {
            tracing::info!(connection_id = %id, "a post answered 410, but the connection is open");
            return Confirmed::Open;
        }
        Ok(false) => {}
        Err(err) => {
            tracing::warn!(
                connection_id = %id,
                error = &err as &dyn std::error::Error,
                "could not confirm a 410; keeping the records and posting again"
            );
            return Confirmed::Unknown;
        }
    }
    match store.delete_connection(id).await {
        Ok(removed) => {
            tracing::debug!(connection_id = %id, "gone connection removed");
            presence::left(store, push, id, &removed, presence_max, now_epoch_seconds()).await;
        }
        Err(err) => tracing::warn!(
            connection_id = %id,
            error = &err as &dyn std::error::Error,
            "could not delete the records of a gone connection; TTL will"
        ),
    }
    Confirmed::Gone
}

/// Closes at most this many lapsed connections at once.
const CLOSE_CONCURRENCY: usize = 8;

/// Closes connections whose records lapsed (their token expired): they must get nothing more,
/// and `DeleteConnection` makes their clients reconnect with a fresh token. Their records are
/// deleted too, so the next fan-out does not meet them again. Returns how many were open.
pub async fn close_lapsed<S: Store, P: Push>(
    store: &S,
    push: &P,
    ids: &[ConnectionId],
    presence_max: u64,
) -> u64 {
    let mut closed = 0;
    // Plain chunks of `join_all`: a stream combinator over borrowed ids would not be `Send`
    // for every lifetime the Lambda runtime asks of it.
    for chunk in ids.chunks(CLOSE_CONCURRENCY) {
        let opened = futures_util::future::join_all(
            chunk
                .iter()
                .map(|id| close_one(store, push, id, presence_max)),
        )
        .await;
        closed += opened.into_iter().map(u64::from).sum::<u64>();
    }
    closed
}

async fn close_one<S: Store, P: Push>(
    store: &S,
    push: &P,
    id: &ConnectionId,
    presence_max: u64,
) -> bool {
    let open = match push.disconnect(id).await {
        Ok(Posted::Delivered) => true,
        Ok(Posted::Gone) => false,
        Err(err) => {
            tracing::warn!(
                connection_id = %id,
                error = &err as &dyn std::error::Error,
                "could not close a connection whose token expired"
            );
            return false;
        }
    };
    match store.delete_connection(id).await {
        Ok(removed) => {
            presence::left(store, push, id, &removed, presence_max, now_epoch_seconds()).await;
        }
        Err(err) => tracing::warn!(
            connection_id = %id,
            error = &err as &dyn std::error::Error,
            "could not delete the records of an expired connection; TTL will"
        ),
    }
    tracing::info!(connection_id = %id, open, "closed a connection whose token expired");
    open
}

/// Full jitter: a random pause below `base * 2^retries`, capped.
fn backoff(settings: &FanoutSettings, retries: u32) -> Duration {
    let ceiling = settings
        .retry_base
        .saturating_mul(1 << retries.min(16))
        .min(settings.retry_cap);
    let millis = crate::domain::saturating_u64(ceiling.as_millis());
    Duration::from_millis(fastrand::u64(0..=millis))
}

fn take_one(budget: &AtomicU32) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}
