//! A poster's side of the budget: one token per post, leased in blocks.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Budget, Lane};

/// How long an invocation paces itself by its own share after the budget could not be leased,
/// before it asks the budget again.
const DEGRADED_FOR: Duration = Duration::from_secs(1);
/// The most a refused poster adds to its wait for the next window, at random, so that the
/// posters refused in one window do not all ask at the same instant in the next.
const JITTER_MS: u64 = 10;

/// One poster's (one event's fan-out, in one invocation) tokens. Every post, retries included,
/// [`take`s](Self::take) one. With none in hand it leases a block of up to what it still has
/// to post; when the budget is spent it waits for the next window. When the budget cannot be
/// reached it does not stop posting: for a second at a time it paces itself at its
/// invocation's share, `FANOUT_BUDGET / DELIVER_MAX_CONCURRENCY`, the pace every invocation
/// kept before the budget was shared.
#[derive(Debug)]
pub struct Allowance<'a> {
    budget: &'a dyn Budget,
    poster: String,
    lane: Lane,
    fallback: Option<Pacer>,
    held: tokio::sync::Mutex<Held>,
}

#[derive(Debug)]
struct Held {
    tokens: u32,
    until: Instant,
    need: u64,
    degraded_until: Option<Instant>,
}

impl<'a> Allowance<'a> {
    /// An allowance for `poster`, in `lane`, who has `need` posts to make, paced at
    /// `fallback_rate` posts/s while the budget cannot be reached.
    #[must_use]
    pub fn new(
        budget: &'a dyn Budget,
        (poster, lane): (impl Into<String>, Lane),
        need: usize,
        fallback_rate: Option<u32>,
    ) -> Self {
        Self {
            budget,
            poster: poster.into(),
            lane,
            fallback: Pacer::new(fallback_rate),
            held: tokio::sync::Mutex::new(Held {
                tokens: 0,
                until: Instant::now(),
                need: crate::domain::saturating_u64(need),
                degraded_until: None,
            }),
        }
    }

    /// Waits for one token.
    pub async fn take(&self) {
        if self.budget.is_unlimited() {
            return;
        }
        let mut held = self.held.lock().await;
        loop {
            let now = Instant::now();
            if held.tokens > 0 && now < held.until {
                held.tokens -= 1;
                held.need = held.need.saturating_sub(1);
                return;
            }
            if held.degraded_until.is_some_and(|until| now < until) {
                drop(held);
                if let Some(pacer) = &self.fallback {
                    pacer.wait().await;
                }
                return;
            }
            let want = u32::try_from(held.need).unwrap_or(u32::MAX).max(1);
            match self.budget.take(&self.poster, self.lane, want).await {
                Ok(grant) if grant.tokens > 0 => {
                    held.tokens = grant.tokens;
                    held.until = later(Instant::now(), grant.lasts);
                }
                Ok(grant) => {
                    let jitter = Duration::from_millis(fastrand::u64(0..=JITTER_MS));
                    tokio::time::sleep(grant.lasts + jitter).await;
                }
                Err(err) => {
                    tracing::warn!(
                        error = &err as &dyn std::error::Error,
                        "could not lease from the posting budget; pacing by this invocation's share for a second"
                    );
                    held.degraded_until = Some(later(now, DEGRADED_FOR));
                }
            }
        }
    }
}

fn later(now: Instant, by: Duration) -> Instant {
    now.checked_add(by)
        .unwrap_or_else(|| now + Duration::from_secs(3600))
}

/// Spaces posts evenly to at most a given rate: the fallback while the budget cannot be
/// reached.
#[derive(Debug)]
pub(super) struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    /// At most `per_second` posts a second; `None` for no limit.
    #[must_use]
    pub(super) fn new(per_second: Option<u32>) -> Option<Self> {
        let per_second = per_second.filter(|n| *n > 0)?;
        Some(Self {
            interval: Duration::from_secs(1) / per_second,
            next: Mutex::new(Instant::now()),
        })
    }

    /// Waits for the next slot.
    pub(super) async fn wait(&self) {
        let slot = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::budget::{Grant, Unlimited, in_memory};
    use crate::store::StoreError;

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_budget_never_waits() {
        let budget = Unlimited;
        let allowance = Allowance::new(&budget, ("e", Lane::Sale), 10_000, None);
        let started = Instant::now();
        for _ in 0..10_000 {
            allowance.take().await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poster_alone_posts_at_the_whole_rate() {
        let budget = in_memory(5000);
        let allowance = Allowance::new(budget.as_ref(), ("e", Lane::Sale), 1000, None);
        let started = Instant::now();
        for _ in 0..1000 {
            allowance.take().await;
        }
        // 1,000 tokens at 500 a window: into the second window (windows start on the epoch's
        // tenths of a second, so the first may be cut short), the third at most.
        let took = started.elapsed();
        assert!(took <= Duration::from_millis(220), "{took:?}");
        assert!(took > Duration::ZERO, "{took:?}");
    }

    #[derive(Debug)]
    struct Broken(AtomicU32);

    impl crate::budget::Budget for Broken {
        fn take<'a>(
            &'a self,
            _poster: &'a str,
            _lane: Lane,
            _want: u32,
        ) -> BoxFuture<'a, Result<Grant, StoreError>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Box::pin(async {
                Err(StoreError::Backend {
                    operation: "UpdateItem",
                    source: "unreachable".into(),
                })
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_budget_falls_back_to_the_invocations_share() {
        let budget = Broken(AtomicU32::new(0));
        let allowance = Allowance::new(&budget, ("e", Lane::Sale), 1000, Some(100));
        let started = Instant::now();
        for _ in 0..250 {
            allowance.take().await;
        }
        let took = started.elapsed();
        // 250 posts at 100/s, asking the budget again once a second.
        assert!(took >= Duration::from_millis(2400), "{took:?}");
        assert!(took <= Duration::from_millis(2600), "{took:?}");
        assert_eq!(budget.0.load(Ordering::Relaxed), 3);
    }
}
