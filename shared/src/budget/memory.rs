//! [`Budget`] in process: the same plan as the DynamoDB items (fixed windows, items, fair
//! shares), for the local gateway, tests and benchmarks.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::{Budget, Grant, Held, Lane, Plan, allowed, retry_after};
use crate::store::StoreError;

/// One item's count in one window.
#[derive(Debug, Default)]
struct Window {
    used: u32,
    rooms: u32,
    by_poster: HashMap<(Lane, String), u32>,
}

impl Window {
    fn posters(&self, lane: Lane) -> usize {
        self.by_poster.keys().filter(|(l, _)| *l == lane).count()
    }
}

/// The account budget of one process.
#[derive(Debug)]
pub struct MemoryBudget {
    plan: Plan,
    /// Its clock: tokio's, so a test with paused time moves windows along with its sleeps.
    started: Instant,
    started_ms: u64,
    windows: Mutex<HashMap<(u32, u64), Window>>,
}

impl MemoryBudget {
    /// A budget that follows `plan`.
    #[must_use]
    pub fn new(plan: Plan) -> Self {
        Self {
            plan,
            started: Instant::now(),
            started_ms: super::now_ms(),
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started_ms
            .saturating_add(crate::domain::saturating_u64(
                self.started.elapsed().as_millis(),
            ))
    }

    fn lease(&self, poster: &str, lane: Lane, want: u32) -> Grant {
        let now = self.now_ms();
        let window = self.plan.window_of(now);
        let lasts = self.plan.left_of(now);
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        windows.retain(|(_, w), _| *w + 1 >= window);
        let key = (lane, poster.to_owned());
        // From a random item, on to the next while they are spent, as the DynamoDB adapter.
        let first = fastrand::u32(0..self.plan.items());
        for step in 0..self.plan.items() {
            let item = (first + step) % self.plan.items();
            // Those who asked in the item's last window count too: the first to ask in a new
            // window must not take the whole item before the others are seen.
            let before = windows
                .get(&(item, window.wrapping_sub(1)))
                .map_or(0, |state| state.posters(lane));
            let state = windows.entry((item, window)).or_default();
            let asked = state.by_poster.contains_key(&key);
            let now_asking = state.posters(lane) + usize::from(!asked);
            let held = Held {
                used: state.used,
                rooms: state.rooms,
                mine: state.by_poster.get(&key).copied().unwrap_or(0),
                posters: u32::try_from(now_asking.max(before)).unwrap_or(u32::MAX),
            };
            let tokens = allowed(&self.plan, (item, lane), now, want, held);
            // Known to this window even when refused, so its share counts from now on.
            let taken = state.by_poster.entry(key.clone()).or_default();
            if let Some(tokens) = tokens {
                *taken += tokens;
                state.used += tokens;
                if lane == Lane::Rooms {
                    state.rooms += tokens;
                }
                return Grant {
                    tokens,
                    lasts,
                    window,
                };
            }
        }
        Grant {
            tokens: 0,
            lasts: retry_after(&self.plan, now),
            window,
        }
    }
}

impl Budget for MemoryBudget {
    fn take<'a>(
        &'a self,
        poster: &'a str,
        lane: Lane,
        want: u32,
    ) -> BoxFuture<'a, Result<Grant, StoreError>> {
        let grant = self.lease(poster, lane, want);
        Box::pin(async move { Ok(grant) })
    }
}
