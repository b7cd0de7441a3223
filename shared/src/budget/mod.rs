//! The `Budget` port: the account's posting budget, one token per `PostToConnection`, shared by
//! every poster (inline notify, deliver, room messages, announcements, catch-up replays and
//! presence frames), and its adapters.
//!
//! API Gateway throttles the account, not an API: every `@connections` call of every function
//! (and every `$connect` and client frame) shares one quota per Region. So the budget is the
//! account's, and every invocation that posts leases its tokens from it in blocks.
//!
//! # The plan: fixed windows over a few items
//! Time is cut into windows ([`Plan::window`], 100 ms at the default rates). Each window holds
//! `rate × window` tokens, split over [`Plan::items`] items (`BUDGET#<n>`, one per window:
//! `WINDOW#<index>`) so that no single item takes every lease. A lease is one conditional
//! `UpdateItem` that adds the tokens taken to the item's count only while the count stays at or
//! under the item's share of the window: the sum over a window can never pass the window's
//! tokens, however many invocations ask at once.
//!
//! **Fair shares.** Each item also counts what each poster (an event, a room message) took in
//! the window, and the set of posters that asked. In the first half of a window a poster may
//! take at most its share, the item's tokens divided by the posters seen; in the second half
//! whatever is left goes to whoever asks. With K events on sale at once each gets about 1/K of
//! the budget, and an event alone gets all of it (the inline path of a small audience posts at
//! the whole budget).
//!
//! **Lanes.** Every poster is in a [`Lane`]. On-sale notifications, announcements and the
//! catch-up replays of notifications are [`Lane::Sale`]; room messages are [`Lane::Rooms`].
//! Room traffic may take at most [`ROOMS_PART`] of each item's tokens, and its fair shares are
//! counted among room posters only: however busy the rooms, a sale always has the rest of
//! every window, and its first-half share is never diluted by room messages.
//!
//! Tokens are good until their window ends ([`Grant::lasts`]); unspent ones are dropped, so
//! the posts started in any window never exceed its tokens.
//!
//! Adapters:
//! - [`dynamo::DynamoBudget`]: the items in the table (production);
//! - [`memory::MemoryBudget`]: the same plan in process (the local gateway, tests, benches);
//! - [`Unlimited`]: no budget (`FANOUT_BUDGET=0`).
//!
//! [`Allowance`] is the poster's side: it takes one token per post, leasing a block when it has
//! none, and waits for the next window when the budget is spent.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::store::StoreError;

mod allowance;
pub mod dynamo;
pub mod memory;

pub use allowance::Allowance;

/// The shortest window: a lease a poster spends within about one round trip of posts.
pub const MIN_WINDOW: Duration = Duration::from_millis(100);
/// Items each window is split over (`BUDGET#0` and `BUDGET#1`): leases land on one at random,
/// and move on to the other when it is spent. Two halve each item's writes (a lease is one
/// write; an item takes at most 1,000 a second) while a poster still gets its share of a
/// window in two requests.
pub const ITEMS: u32 = 2;

/// Room traffic takes at most this part of each item's tokens: a quarter (`1 / ROOMS_PART`),
/// so a sale always has three quarters of the account's posting rate at once.
pub const ROOMS_PART: u32 = 4;

/// Who a poster is, for the budget's priority: on-sale traffic, or room traffic.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// On-sale notifications, announcements, and catch-up replays of notifications: may take
    /// every token.
    #[default]
    Sale,
    /// Room messages: at most [`ROOMS_PART`] of the tokens, shared among room posters.
    Rooms,
}

impl Lane {
    /// Whether this is [`Lane::Sale`] (the serialised default, left out).
    #[must_use]
    pub fn is_sale(&self) -> bool {
        matches!(self, Self::Sale)
    }
}

/// What a lease gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tokens taken (0 when the window, or this poster's share of it, is spent).
    pub tokens: u32,
    /// How long they stay good (until the window ends); when none were given, when to ask
    /// again ([`retry_after`]).
    pub lasts: Duration,
    /// The window they belong to ([`Plan::window_of`]; 0 for [`Unlimited`]).
    pub window: u64,
}

/// The account's posting budget.
pub trait Budget: Send + Sync + Debug {
    /// Takes up to `want` tokens (at least 1 is asked for) for `poster` (an event's or
    /// message's id: the unit of fairness), in `lane`.
    ///
    /// # Errors
    /// [`StoreError`] when the budget's store cannot be reached.
    fn take<'a>(
        &'a self,
        poster: &'a str,
        lane: Lane,
        want: u32,
    ) -> BoxFuture<'a, Result<Grant, StoreError>>;

    /// Whether every post is allowed at once ([`Unlimited`]).
    fn is_unlimited(&self) -> bool {
        false
    }
}

/// A budget shared by the handlers of one process.
pub type SharedBudget = Arc<dyn Budget>;

/// No budget: every lease is granted whole.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl Budget for Unlimited {
    fn take<'a>(
        &'a self,
        _poster: &'a str,
        _lane: Lane,
        want: u32,
    ) -> BoxFuture<'a, Result<Grant, StoreError>> {
        Box::pin(async move {
            Ok(Grant {
                tokens: want.max(1),
                lasts: Duration::from_secs(3600),
                window: 0,
            })
        })
    }

    fn is_unlimited(&self) -> bool {
        true
    }
}

/// [`Unlimited`], shared.
#[must_use]
pub fn unlimited() -> SharedBudget {
    Arc::new(Unlimited)
}

/// The budget for `rate` posts/s (0: [`Unlimited`]) in process.
#[must_use]
pub fn in_memory(rate: u32) -> SharedBudget {
    match Plan::new(rate) {
        Some(plan) => Arc::new(memory::MemoryBudget::new(plan)),
        None => unlimited(),
    }
}

/// How a rate is cut into windows and items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    rate: u32,
    window_ms: u64,
    items: u32,
}

impl Plan {
    /// The plan for `rate` posts/s; `None` for 0 (no budget). The window is [`MIN_WINDOW`], or
    /// longer when the rate is so low that a window would hold fewer tokens than there are
    /// items.
    #[must_use]
    pub fn new(rate: u32) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let min_ms = u64::try_from(MIN_WINDOW.as_millis()).unwrap_or(100);
        let window_ms = min_ms.max((1000 * u64::from(ITEMS)).div_ceil(u64::from(rate)));
        Some(Self {
            rate,
            window_ms,
            items: ITEMS,
        })
    }

    /// The plan for `rate` posts/s with windows of at least `window` (tests on a slow
    /// DynamoDB Local, whose round trips would be a large part of a 100 ms window).
    #[must_use]
    pub fn with_window(rate: u32, window: Duration) -> Option<Self> {
        let mut plan = Self::new(rate)?;
        plan.window_ms = plan
            .window_ms
            .max(crate::domain::saturating_u64(window.as_millis()));
        Some(plan)
    }

    /// Posts per second.
    #[must_use]
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// A window's length.
    #[must_use]
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// How many items a window is split over.
    #[must_use]
    pub fn items(&self) -> u32 {
        self.items
    }

    /// The index of the window holding `now_ms` (epoch milliseconds).
    #[must_use]
    pub fn window_of(&self, now_ms: u64) -> u64 {
        now_ms / self.window_ms
    }

    /// How long from `now_ms` until its window ends.
    #[must_use]
    pub fn left_of(&self, now_ms: u64) -> Duration {
        Duration::from_millis(self.window_ms - now_ms % self.window_ms)
    }

    /// Whether `now_ms` is in the first half of its window, where fair shares apply.
    #[must_use]
    pub fn in_first_half(&self, now_ms: u64) -> bool {
        now_ms % self.window_ms < self.window_ms / 2
    }

    /// The tokens of one window: `rate × window`, rounded down (the window is long enough for
    /// at least one per item).
    #[must_use]
    pub fn window_tokens(&self) -> u32 {
        u32::try_from(u64::from(self.rate) * self.window_ms / 1000).unwrap_or(u32::MAX)
    }

    /// Item `item`'s part of a window's tokens; the parts add up to [`Self::window_tokens`].
    #[must_use]
    pub fn item_tokens(&self, item: u32) -> u32 {
        let total = self.window_tokens();
        total / self.items + u32::from(item < total % self.items)
    }

    /// The most of item `item`'s tokens `lane` may take in a window: all of them for a sale,
    /// [`ROOMS_PART`] of them (at least one) for room traffic.
    #[must_use]
    pub fn lane_tokens(&self, item: u32, lane: Lane) -> u32 {
        let tokens = self.item_tokens(item);
        match lane {
            Lane::Sale => tokens,
            Lane::Rooms => (tokens / ROOMS_PART).max(1),
        }
    }

    /// A poster's share of `item_tokens` when `posters` posters asked in the window (at least
    /// 1 token).
    #[must_use]
    pub fn share(item_tokens: u32, posters: u32) -> u32 {
        item_tokens.div_ceil(posters.max(1)).max(1)
    }
}

/// Milliseconds since the epoch, now.
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| crate::domain::saturating_u64(d.as_millis()))
}

/// What an item holds in a window, as a lease sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Tokens taken from the item, by every lane.
    pub used: u32,
    /// Tokens room traffic took from it ([`Lane::Rooms`]).
    pub rooms: u32,
    /// Tokens this poster took from it.
    pub mine: u32,
    /// Posters of this poster's lane that asked (this one included).
    pub posters: u32,
}

/// What a lease in `lane` may take, given what the item `held`. `None` when nothing can be
/// taken now.
#[must_use]
pub fn allowed(
    plan: &Plan,
    (item, lane): (u32, Lane),
    now_ms: u64,
    want: u32,
    held: Held,
) -> Option<u32> {
    let tokens = plan.item_tokens(item);
    let lane_tokens = plan.lane_tokens(item, lane);
    let mut room = tokens.saturating_sub(held.used);
    if lane == Lane::Rooms {
        room = room.min(lane_tokens.saturating_sub(held.rooms));
    }
    if plan.in_first_half(now_ms) {
        // At least two shares: a poster alone in the first half leaves half for whoever comes
        // next, and takes it in the second half if no one does.
        room = room.min(Plan::share(lane_tokens, held.posters.max(2)).saturating_sub(held.mine));
    }
    Some(want.max(1).min(room)).filter(|n| *n > 0)
}

/// How long a refused poster waits: until the window's second half when it was refused in
/// the first (its share was spent, what is left may be its in the second), else until the
/// next window.
#[must_use]
pub fn retry_after(plan: &Plan, now_ms: u64) -> Duration {
    let left = plan.left_of(now_ms);
    if plan.in_first_half(now_ms) {
        left.saturating_sub(plan.window() / 2)
    } else {
        left
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_the_rate_times_its_length_split_over_the_items() {
        let plan = Plan::new(5000).unwrap();
        assert_eq!(plan.window(), Duration::from_millis(100));
        assert_eq!(plan.window_tokens(), 500);
        let parts: Vec<u32> = (0..ITEMS).map(|i| plan.item_tokens(i)).collect();
        assert_eq!(parts, vec![250, 250]);
        let odd = Plan::new(1250).unwrap();
        assert_eq!(odd.window_tokens(), 125);
        assert_eq!((0..ITEMS).map(|i| odd.item_tokens(i)).sum::<u32>(), 125);
    }

    #[test]
    fn a_low_rate_gets_a_longer_window_with_a_token_per_item() {
        let plan = Plan::new(1).unwrap();
        assert_eq!(plan.window(), Duration::from_secs(2));
        assert_eq!(plan.window_tokens(), 2);
        assert!((0..ITEMS).all(|i| plan.item_tokens(i) == 1));
        // Rounded down: never more than the rate.
        for rate in [1, 3, 7, 30, 39, 41, 1250, 5000, 9999] {
            let plan = Plan::new(rate).unwrap();
            let per_second = u64::from(plan.window_tokens()) * 1000 / plan.window_ms;
            assert!(per_second <= u64::from(rate), "{rate}: {per_second}");
            assert!(plan.window_tokens() >= ITEMS, "{rate}");
        }
    }

    #[test]
    fn no_rate_is_no_plan() {
        assert_eq!(Plan::new(0), None);
    }

    #[test]
    fn shares_apply_in_the_first_half_only() {
        let plan = Plan::new(5000).unwrap();
        let early = 1_000_000_010;
        let late = 1_000_000_060;
        // Two posters: 125 each in the first half.
        let sale = (0, Lane::Sale);
        let held = |used, mine, posters| Held {
            used,
            rooms: 0,
            mine,
            posters,
        };
        assert_eq!(allowed(&plan, sale, early, 1000, held(0, 0, 2)), Some(125));
        assert_eq!(allowed(&plan, sale, early, 1000, held(125, 125, 2)), None);
        // In the second half what is left goes to whoever asks.
        assert_eq!(
            allowed(&plan, sale, late, 1000, held(125, 125, 2)),
            Some(125)
        );
        assert_eq!(allowed(&plan, sale, late, 1000, held(250, 125, 2)), None);
        // Never more than asked for; alone, half the item in the first half.
        assert_eq!(allowed(&plan, sale, early, 5, held(0, 0, 1)), Some(5));
        assert_eq!(allowed(&plan, sale, early, 1000, held(0, 0, 1)), Some(125));
        assert_eq!(
            allowed(&plan, sale, late, 1000, held(125, 125, 1)),
            Some(125)
        );
        // Refused early: ask again at half time; late: at the next window.
        assert_eq!(retry_after(&plan, early), Duration::from_millis(40));
        assert_eq!(retry_after(&plan, late), Duration::from_millis(40));
    }

    /// Issue 18, item 3: room traffic takes at most a quarter of each item, and a sale's
    /// share is counted among sale posters only, however many room messages ask.
    #[test]
    fn room_traffic_never_takes_more_than_its_part_nor_dilutes_a_sales_share() {
        let plan = Plan::new(5000).unwrap();
        let (early, late) = (1_000_000_010, 1_000_000_060);
        let rooms = (0, Lane::Rooms);
        assert_eq!(plan.lane_tokens(0, Lane::Rooms), 62);
        // Twenty room messages: each a share of the rooms' 62 in the first half.
        let twenty = Held {
            posters: 20,
            ..Held::default()
        };
        assert_eq!(allowed(&plan, rooms, early, 1000, twenty), Some(4));
        // However late and however much is left, never past the rooms' part.
        let spent = Held {
            used: 62,
            rooms: 62,
            mine: 4,
            posters: 20,
        };
        assert_eq!(allowed(&plan, rooms, late, 1000, spent), None);
        // A sale asking into that item still gets half the item at once: the room posters do
        // not count in its share.
        let sale = Held {
            used: 62,
            rooms: 62,
            mine: 0,
            posters: 1,
        };
        assert_eq!(
            allowed(&plan, (0, Lane::Sale), early, 1000, sale),
            Some(125)
        );
        assert_eq!(allowed(&plan, (0, Lane::Sale), late, 1000, sale), Some(188));
    }

    #[test]
    fn windows_are_numbered_from_the_epoch() {
        let plan = Plan::new(5000).unwrap();
        assert_eq!(plan.window_of(1_000_000_099), 10_000_000);
        assert_eq!(plan.left_of(1_000_000_099), Duration::from_millis(1));
        assert_eq!(plan.left_of(1_000_000_100), Duration::from_millis(100));
    }
}
