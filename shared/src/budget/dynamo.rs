//! [`Budget`] on the table: one item per budget item and window (`BUDGET#<n>`,
//! `WINDOW#<index>`), each lease one conditional `UpdateItem`.

use std::sync::Mutex;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use futures_util::future::BoxFuture;

use super::{Budget, Grant, Held, Lane, Plan, allowed, now_ms, retry_after};
use crate::schema::{
    BUDGET_KEEP_SECONDS, BUDGET_POSTER_PREFIX, BUDGET_POSTERS, BUDGET_ROOM_POSTERS,
    BUDGET_ROOMS_USED, BUDGET_USED, EXPIRES_AT, PK, SK, budget_pk, budget_window_sk,
};
use crate::store::StoreError;

type Item = std::collections::HashMap<String, AttributeValue>;

/// Leases on one item before moving on to the next: the first with what the poster guessed,
/// a second with what the refusal showed was left.
const TRIES_PER_ITEM: u32 = 2;

/// The account budget in the table. Leases start at a random item and move on to the next
/// while one is spent.
#[derive(Debug)]
pub struct DynamoBudget {
    client: Client,
    table: String,
    plan: Plan,
    /// How many posters the leases saw asking, this window and the one before: the guess at
    /// a window's fair share before the item says (the first to ask in a new window must not
    /// take the whole item before the others are seen), per lane.
    seen: Mutex<SeenByLane>,
}

/// The attribute holding `lane`'s set of posters.
fn posters_attribute(lane: Lane) -> &'static str {
    match lane {
        Lane::Sale => BUDGET_POSTERS,
        Lane::Rooms => BUDGET_ROOM_POSTERS,
    }
}

#[derive(Debug, Default)]
struct Seen {
    window: u64,
    now: u32,
    before: u32,
}

impl Seen {
    fn note(&mut self, window: u64, posters: u32) {
        if window != self.window {
            self.before = if window == self.window + 1 {
                self.now
            } else {
                0
            };
            self.window = window;
            self.now = 0;
        }
        self.now = self.now.max(posters);
    }

    fn guess(&self, window: u64) -> u32 {
        let before = if window == self.window + 1 {
            self.now
        } else if window == self.window {
            self.now.max(self.before)
        } else {
            0
        };
        before.max(1)
    }
}

impl DynamoBudget {
    /// The budget `plan` kept in `table`.
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>, plan: Plan) -> Self {
        Self {
            client,
            table: table.into(),
            plan,
            seen: Mutex::new(SeenByLane::default()),
        }
    }

    fn guess(&self, lane: Lane, window: u64) -> u32 {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .of(lane)
            .guess(window)
    }

    fn note(&self, lane: Lane, window: u64, posters: u32) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .of(lane)
            .note(window, posters);
    }

    async fn lease(&self, poster: &str, lane: Lane, want: u32) -> Result<Grant, StoreError> {
        let now = now_ms();
        let window = self.plan.window_of(now);
        let lasts = self.plan.left_of(now);
        let first = fastrand::u32(0..self.plan.items());
        for step in 0..self.plan.items() {
            let item = (first + step) % self.plan.items();
            let guess = Held {
                posters: self.guess(lane, window),
                ..Held::default()
            };
            let mut ask = allowed(&self.plan, (item, lane), now, want, guess);
            let mut tries = 0;
            while let Some(tokens) = ask
                && tries < TRIES_PER_ITEM
            {
                tries += 1;
                match self
                    .try_take((item, lane), window, now, poster, tokens)
                    .await?
                {
                    Ok(posters) => {
                        self.note(lane, window, posters);
                        return Ok(Grant {
                            tokens,
                            lasts,
                            window,
                        });
                    }
                    Err((mut held, asked)) => {
                        held.posters += u32::from(!asked);
                        self.note(lane, window, held.posters);
                        ask = allowed(&self.plan, (item, lane), now, want, held);
                    }
                }
            }
        }
        Ok(Grant {
            tokens: 0,
            lasts: retry_after(&self.plan, now),
            window,
        })
    }

    /// One conditional `UpdateItem`: `Ok(Ok(posters))` when `tokens` were taken (with the
    /// number of the lane's posters in the window), `Ok(Err((held, asked)))` when the item
    /// refused (what it held, and whether this poster had asked in it before).
    async fn try_take(
        &self,
        (item, lane): (u32, Lane),
        window: u64,
        now: u64,
        poster: &str,
        tokens: u32,
    ) -> Result<Result<u32, (Held, bool)>, StoreError> {
        let item_tokens = self.plan.item_tokens(item);
        let lane_tokens = self.plan.lane_tokens(item, lane);
        let share = Plan::share(lane_tokens, self.guess(lane, window));
        let mut condition = "(attribute_not_exists(#used) OR #used <= :room)".to_owned();
        let mut update = "SET #e = :expires ADD #used :n, #mine :n, #posters :me".to_owned();
        if lane == Lane::Rooms {
            condition.push_str(" AND (attribute_not_exists(#rooms) OR #rooms <= :rooms_room)");
            update.push_str(", #rooms :n");
        }
        let fair = self.plan.in_first_half(now);
        if fair {
            condition.push_str(" AND (attribute_not_exists(#mine) OR #mine <= :share_room)");
        }
        let expires = i64::try_from(now / 1000)
            .unwrap_or(i64::MAX)
            .saturating_add(BUDGET_KEEP_SECONDS);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(budget_pk(item)))
            .key(SK, AttributeValue::S(budget_window_sk(window)))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_names("#used", BUDGET_USED)
            .expression_attribute_names("#mine", format!("{BUDGET_POSTER_PREFIX}{poster}"))
            .expression_attribute_names("#posters", posters_attribute(lane))
            .expression_attribute_values(":expires", number(expires))
            .expression_attribute_values(":n", number(tokens))
            .expression_attribute_values(":me", AttributeValue::Ss(vec![poster.to_owned()]))
            .expression_attribute_values(":room", number(item_tokens.saturating_sub(tokens)))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if fair {
            request = request
                .expression_attribute_values(":share_room", number(share.saturating_sub(tokens)));
        }
        if lane == Lane::Rooms {
            request = request
                .expression_attribute_names("#rooms", BUDGET_ROOMS_USED)
                .expression_attribute_values(
                    ":rooms_room",
                    number(lane_tokens.saturating_sub(tokens)),
                );
        }
        match request.send().await {
            Ok(out) => Ok(Ok(posters_in(out.attributes(), lane))),
            Err(SdkError::ServiceError(e)) => match e.err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => {
                    let old = failed.item();
                    let key = format!("{BUDGET_POSTER_PREFIX}{poster}");
                    let held = Held {
                        used: count_in(old, BUDGET_USED),
                        rooms: count_in(old, BUDGET_ROOMS_USED),
                        mine: count_in(old, &key),
                        posters: posters_in(old, lane),
                    };
                    Ok(Err((held, old.is_some_and(|o| o.contains_key(&key)))))
                }
                _ => Err(StoreError::backend("UpdateItem", SdkError::ServiceError(e))),
            },
            Err(e) => Err(StoreError::backend("UpdateItem", e)),
        }
    }
}

/// What the leases saw, per lane.
#[derive(Debug, Default)]
struct SeenByLane {
    sale: Seen,
    rooms: Seen,
}

impl SeenByLane {
    fn of(&mut self, lane: Lane) -> &mut Seen {
        match lane {
            Lane::Sale => &mut self.sale,
            Lane::Rooms => &mut self.rooms,
        }
    }
}

fn number(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn count_in(item: Option<&Item>, name: &str) -> u32 {
    match item.and_then(|i| i.get(name)) {
        Some(AttributeValue::N(n)) => n.parse().unwrap_or(u32::MAX),
        _ => 0,
    }
}

fn posters_in(item: Option<&Item>, lane: Lane) -> u32 {
    match item.and_then(|i| i.get(posters_attribute(lane))) {
        Some(AttributeValue::Ss(set)) => u32::try_from(set.len()).unwrap_or(u32::MAX),
        _ => 0,
    }
}

impl Budget for DynamoBudget {
    fn take<'a>(
        &'a self,
        poster: &'a str,
        lane: Lane,
        want: u32,
    ) -> BoxFuture<'a, Result<Grant, StoreError>> {
        Box::pin(self.lease(poster, lane, want))
    }
}
