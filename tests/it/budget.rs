//! One contract for every `Budget` adapter (the in-memory one and the table's items on
//! DynamoDB Local): under concurrent leases no window ever issues more than its tokens, and
//! two events asking at once each get a fair share, however many invocations ask for each.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use marquee::budget::dynamo::DynamoBudget;
use marquee::budget::memory::MemoryBudget;
use marquee::budget::{Budget, Grant, Lane, Plan};
use tokio::time::Instant;

/// 2,000 posts/s: 1,000 tokens a 500 ms window, 500 per item. The window is five times the
/// production one so that DynamoDB Local's round trips on a loaded machine (tens of
/// milliseconds, against a few in AWS) stay a small part of it, as AWS's do of 100 ms.
const RATE: u32 = 2000;
/// How long the leasing goes on.
const RUN: Duration = Duration::from_millis(3000);

fn plan() -> Plan {
    Plan::with_window(RATE, Duration::from_millis(500)).unwrap()
}

/// Both adapters, fresh.
async fn adapters() -> Vec<(&'static str, Arc<dyn Budget>)> {
    let store = marquee_tests::fresh_table().await;
    vec![
        ("memory", Arc::new(MemoryBudget::new(plan()))),
        (
            "dynamodb",
            Arc::new(DynamoBudget::new(
                store.client().clone(),
                store.table(),
                plan(),
            )),
        ),
    ]
}

/// Tokens granted, by window and by poster, and the leases refused.
#[derive(Default)]
struct Granted {
    by_window: BTreeMap<u64, u32>,
    /// Room traffic's tokens, by window.
    rooms_by_window: BTreeMap<u64, u32>,
    by_poster: BTreeMap<String, u64>,
    refused: u64,
}

/// `tasks` tasks per poster lease blocks of `want` for [`RUN`], as invocations do: spend
/// (here: drop) what they got, wait out a refusal.
async fn lease_for_a_while(
    budget: &Arc<dyn Budget>,
    posters: &[(&str, Lane, usize)],
    want: u32,
) -> Granted {
    let granted = Arc::new(Mutex::new(Granted::default()));
    let until = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for &(poster, lane, count) in posters {
        for _ in 0..count {
            let (budget, granted, poster) =
                (Arc::clone(budget), Arc::clone(&granted), poster.to_owned());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let grant: Grant = budget.take(&poster, lane, want).await.unwrap();
                    assert!(grant.tokens <= want);
                    if grant.tokens == 0 {
                        granted.lock().unwrap().refused += 1;
                        tokio::time::sleep(grant.lasts).await;
                        continue;
                    }
                    let mut granted = granted.lock().unwrap();
                    *granted.by_window.entry(grant.window).or_default() += grant.tokens;
                    if lane == Lane::Rooms {
                        *granted.rooms_by_window.entry(grant.window).or_default() += grant.tokens;
                    }
                    *granted.by_poster.entry(poster.clone()).or_default() +=
                        u64::from(grant.tokens);
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(granted).ok().unwrap().into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_window_issues_more_than_its_tokens_under_concurrent_leases() {
    for (name, budget) in adapters().await {
        let granted =
            lease_for_a_while(&budget, &[("e1", Lane::Sale, 8), ("e2", Lane::Sale, 8)], 60).await;
        let most = plan().window_tokens();
        for (window, tokens) in &granted.by_window {
            assert!(
                *tokens <= most,
                "{name}: window {window} issued {tokens} > {most}"
            );
        }
        // The leasing was contended: the budget refused some leases.
        assert!(granted.refused > 0, "{name}: no lease was refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_events_each_get_a_fair_share_whatever_their_invocations() {
    for (name, budget) in adapters().await {
        // The big sale has six deliver invocations, the small one a single inline notify.
        let granted = lease_for_a_while(
            &budget,
            &[("big", Lane::Sale, 6), ("small", Lane::Sale, 1)],
            1000,
        )
        .await;
        let big = granted.by_poster.get("big").copied().unwrap_or(0);
        let small = granted.by_poster.get("small").copied().unwrap_or(0);
        let total = big + small;
        assert!(total > 0, "{name}: nothing granted");
        // Without shares the six would take about six sevenths.
        assert!(
            small * 10 >= total * 3,
            "{name}: the single invocation got {small} of {total}"
        );
        let most = plan().window_tokens();
        assert!(granted.by_window.values().all(|t| *t <= most), "{name}");
    }
}

/// Issue 18, item 3: one fan's burst of room messages (twenty posters) beside one sale. Room
/// traffic never takes more than its part of a window, and the sale keeps the rest: without
/// lanes, twenty-one equal shares would leave it a twenty-first of each window's first half.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn room_traffic_never_takes_more_than_its_part_and_a_sale_keeps_the_rest() {
    let rooms: Vec<String> = (0..20).map(|i| format!("m-{i}")).collect();
    for (name, budget) in adapters().await {
        let mut posters: Vec<(&str, Lane, usize)> =
            rooms.iter().map(|m| (m.as_str(), Lane::Rooms, 1)).collect();
        posters.push(("sale", Lane::Sale, 1));
        let granted = lease_for_a_while(&budget, &posters, 1000).await;
        let part: u32 = (0..plan().items())
            .map(|item| plan().lane_tokens(item, Lane::Rooms))
            .sum();
        for (window, tokens) in &granted.rooms_by_window {
            assert!(
                *tokens <= part,
                "{name}: room traffic took {tokens} > {part} in window {window}"
            );
        }
        let sale = granted.by_poster.get("sale").copied().unwrap_or(0);
        let total: u64 = granted.by_poster.values().sum();
        assert!(total > 0, "{name}: nothing granted");
        // The rooms' part is a quarter: the sale gets at least about three quarters.
        assert!(
            sale * 100 >= total * 65,
            "{name}: the sale got {sale} of {total} beside twenty room messages"
        );
        let most = plan().window_tokens();
        assert!(granted.by_window.values().all(|t| *t <= most), "{name}");
    }
}
