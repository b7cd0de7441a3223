//! One contract for every `Queue` adapter: the in-process queue behaves as SQS does (here, a
//! real SQS-compatible server started by `scripts/test`).

use std::time::Duration;

use marquee::domain::{Artist, ConnectionId, EventId, Shard};
use marquee::queue::memory::MemoryQueue;
use marquee::queue::{Inbox, MESSAGE_MAX_BYTES, Queue, Received};
use marquee::work::{Notification, WorkItem};

const VISIBILITY: Duration = Duration::from_secs(1);

/// The visibility timeout of the queues the lease cases run on: far longer than the cases
/// wait, so an item that comes back came back at its lease.
const LONG_VISIBILITY: Duration = Duration::from_secs(60);

fn items(count: u16) -> Vec<WorkItem> {
    items_of(count, serde_json::json!({"artist": "Adele", "venue": "O2"}))
}

/// Items whose frame holds a seat map of about `bytes` bytes of JSON, quotes and all:
/// escaped again as a string, as items once held their frame, it grew by a quarter.
fn big_items(count: u16, bytes: usize) -> Vec<WorkItem> {
    let seat = serde_json::json!({"row": "K", "n": 12});
    let seats = vec![seat; bytes / r#"{"row":"K","n":12},"#.len()];
    items_of(
        count,
        serde_json::json!({"artist": "Adele", "venue": "O2", "seats": seats}),
    )
}

fn items_of(count: u16, detail: serde_json::Value) -> Vec<WorkItem> {
    let notification = Notification::new(
        EventId::parse("evt-q").unwrap(),
        Artist::parse("Adele").unwrap(),
        detail,
        "2026-11-22T10:00:00Z".into(),
    )
    .unwrap();
    (0..count)
        .map(|n| {
            WorkItem::first(
                notification.broadcast().unwrap(),
                Shard::new(n % 16).unwrap(),
            )
        })
        .map(|item| WorkItem { hop: 1, ..item })
        .collect()
}

/// Receives until `want` messages arrived or a few empty polls in a row.
async fn receive_all<I: Inbox>(inbox: &I, want: usize) -> Vec<Received> {
    let mut got = Vec::new();
    let mut empty = 0;
    while got.len() < want && empty < 3 {
        let batch = inbox.receive(10, Duration::from_millis(200)).await.unwrap();
        empty = if batch.is_empty() { empty + 1 } else { 0 };
        got.extend(batch);
    }
    got
}

async fn sent_items_arrive_whole_and_deleted_ones_never_return<Q: Queue + Inbox, D: Inbox>(
    queue: Q,
    _dead: D,
) {
    let sent = items(23);
    queue.send(&sent).await.unwrap();
    let got = receive_all(&queue, 23).await;
    let mut bodies: Vec<WorkItem> = got
        .iter()
        .map(|m| WorkItem::from_json(&m.body).unwrap())
        .collect();
    bodies.sort_by_key(|i| (i.shard, i.hop));
    let mut expected = sent.clone();
    expected.sort_by_key(|i| (i.shard, i.hop));
    assert_eq!(bodies, expected);
    assert!(got.iter().all(|m| m.receive_count == 1));
    for m in &got {
        queue.delete(&m.receipt).await.unwrap();
    }
    tokio::time::sleep(VISIBILITY + Duration::from_millis(300)).await;
    assert!(receive_all(&queue, 1).await.is_empty());
    assert_eq!(queue.backlog().await.unwrap(), 0);
}

async fn an_undeleted_item_comes_back_after_the_visibility_timeout<Q: Queue + Inbox, D: Inbox>(
    queue: Q,
    _dead: D,
) {
    queue.send(&items(1)).await.unwrap();
    let first = receive_all(&queue, 1).await;
    assert_eq!(first.len(), 1);
    assert!(
        queue.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "hidden while in flight"
    );
    assert_eq!(queue.backlog().await.unwrap(), 1, "in flight still counts");
    tokio::time::sleep(VISIBILITY + Duration::from_millis(300)).await;
    let again = receive_all(&queue, 1).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, first[0].message_id);
    assert_eq!(
        (again[0].body.as_str(), again[0].receive_count),
        (first[0].body.as_str(), 2)
    );
}

async fn an_item_received_too_often_moves_to_the_dead_letter_queue<Q: Queue + Inbox, D: Inbox>(
    queue: Q,
    dead: D,
) {
    queue.send(&items(1)).await.unwrap();
    for attempt in 1..=2 {
        let got = receive_all(&queue, 1).await;
        assert_eq!(got.len(), 1, "receive {attempt}");
        tokio::time::sleep(VISIBILITY + Duration::from_millis(300)).await;
    }
    assert!(receive_all(&queue, 1).await.is_empty(), "past the limit");
    let dead = receive_all(&dead, 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(WorkItem::from_json(&dead[0].body).unwrap(), items(1)[0]);
}

/// Every received message as a work item, sorted by shard.
fn sorted(got: &[Received]) -> Vec<WorkItem> {
    let mut items: Vec<WorkItem> = got
        .iter()
        .map(|m| WorkItem::from_json(&m.body).unwrap())
        .collect();
    items.sort_by_key(|i| (i.shard, i.hop));
    items
}

async fn sixteen_items_with_98_kb_seat_maps_all_arrive_whole<Q: Queue + Inbox, D: Inbox>(
    queue: Q,
    _dead: D,
) {
    let sent = big_items(16, 98_000);
    assert!(sent[0].broadcast.frame.len() > 98_000);

    queue.send(&sent).await.unwrap();

    let got = receive_all(&queue, 16).await;
    assert!(got.iter().all(|m| m.body.len() <= MESSAGE_MAX_BYTES));
    let mut expected = sent;
    expected.sort_by_key(|i| (i.shard, i.hop));
    assert_eq!(sorted(&got), expected);
}

async fn a_redrive_too_large_for_one_message_arrives_split_with_every_connection<
    Q: Queue + Inbox,
    D: Inbox,
>(
    queue: Q,
    _dead: D,
) {
    let failed: Vec<ConnectionId> = (0..10_000)
        .map(|n| ConnectionId::parse(&format!("conn{n:012}=")).unwrap())
        .collect();
    let item = big_items(1, 100_000)[0].redrive(failed.clone());
    assert!(item.to_json().len() > MESSAGE_MAX_BYTES);

    queue.send(std::slice::from_ref(&item)).await.unwrap();

    let got = receive_all(&queue, 4).await;
    assert!(got.len() > 1, "split into {} messages", got.len());
    let mut again: Vec<ConnectionId> = Vec::new();
    for part in sorted(&got) {
        assert_eq!((&part.broadcast, part.round), (&item.broadcast, item.round));
        again.extend(part.only);
    }
    again.sort();
    assert_eq!(again, failed);
}

/// The first messages to arrive within `limit`, or none.
async fn receive_within<I: Inbox>(inbox: &I, limit: Duration) -> Vec<Received> {
    let started = tokio::time::Instant::now();
    let mut got = Vec::new();
    while got.is_empty() && started.elapsed() < limit {
        got = inbox.receive(10, Duration::from_secs(1)).await.unwrap();
    }
    got
}

/// Sends one item and receives it, then hides it for `hidden` from now.
async fn send_receive_and_hide<Q: Queue + Inbox>(queue: &Q, hidden: Duration) -> Received {
    queue.send(&items(1)).await.unwrap();
    let got = receive_all(queue, 1).await;
    assert_eq!(got.len(), 1);
    queue.hide_for(&got[0].receipt, hidden).await.unwrap();
    got.into_iter().next().unwrap()
}

async fn an_item_hidden_for_a_short_lease_comes_back_at_the_lease_not_the_visibility_timeout<
    Q: Queue + Inbox,
    D: Inbox,
>(
    queue: Q,
    _dead: D,
) {
    let hidden_at = tokio::time::Instant::now();
    let first = send_receive_and_hide(&queue, Duration::from_secs(2)).await;
    assert!(
        queue.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "hidden for the lease"
    );

    let again = receive_within(&queue, LONG_VISIBILITY / 4).await;

    assert_eq!(
        again.len(),
        1,
        "back within a quarter of the visibility timeout"
    );
    assert_eq!(
        (again[0].message_id.as_str(), again[0].receive_count),
        (first.message_id.as_str(), 2)
    );
    assert!(
        hidden_at.elapsed() >= Duration::from_millis(1500),
        "not before the lease"
    );
}

async fn a_renewed_lease_keeps_the_item_hidden_past_the_first_lease<Q: Queue + Inbox, D: Inbox>(
    queue: Q,
    _dead: D,
) {
    let first = send_receive_and_hide(&queue, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    queue
        .hide_for(&first.receipt, Duration::from_secs(4))
        .await
        .unwrap();

    // Past the first lease (2 s), well before the renewed one ends (5 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
    let again = receive_within(&queue, LONG_VISIBILITY / 4).await;
    assert_eq!(
        again
            .iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        [first.message_id.as_str()]
    );
}

async fn a_deleted_item_cannot_be_hidden_again<Q: Queue + Inbox, D: Inbox>(queue: Q, _dead: D) {
    queue.send(&items(1)).await.unwrap();
    let got = receive_all(&queue, 1).await;
    queue.delete(&got[0].receipt).await.unwrap();

    let hidden = queue
        .hide_for(&got[0].receipt, Duration::from_secs(5))
        .await;

    assert!(hidden.is_err(), "{hidden:?}");
    assert_eq!(queue.backlog().await.unwrap(), 0);
}

macro_rules! contract {
    ($memory:ident, $sqs:ident, $visibility:expr; $($case:ident),* $(,)?) => {
        mod $memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let queue = super::MemoryQueue::new($visibility, 2);
                    let dead = queue.dead_letter_queue().unwrap();
                    super::$case(queue, dead).await;
                }
            )*
        }
        mod $sqs {
            $(
                #[tokio::test]
                async fn $case() {
                    let (queue, dead) = marquee_tests::fresh_queue($visibility, 2).await;
                    super::$case(queue, dead).await;
                }
            )*
        }
    };
}

contract!(
    memory_leased,
    sqs_leased,
    super::LONG_VISIBILITY;
    an_item_hidden_for_a_short_lease_comes_back_at_the_lease_not_the_visibility_timeout,
    a_renewed_lease_keeps_the_item_hidden_past_the_first_lease,
    a_deleted_item_cannot_be_hidden_again,
);

contract!(
    memory,
    sqs,
    super::VISIBILITY;
    sent_items_arrive_whole_and_deleted_ones_never_return,
    an_undeleted_item_comes_back_after_the_visibility_timeout,
    an_item_received_too_often_moves_to_the_dead_letter_queue,
    sixteen_items_with_98_kb_seat_maps_all_arrive_whole,
    a_redrive_too_large_for_one_message_arrives_split_with_every_connection,
);

/// SQS's own limit, as `template.yaml` sets it: a body over it is refused by the server, not
/// only by the adapter's check.
#[tokio::test]
async fn the_test_queue_refuses_a_message_over_the_template_limit_as_sqs_would() {
    let (queue, _dead) = marquee_tests::fresh_queue(VISIBILITY, 2).await;
    let client = marquee_tests::sqs_client().await;

    let over = client
        .send_message()
        .queue_url(queue.url())
        .message_body("x".repeat(MESSAGE_MAX_BYTES + 1))
        .send()
        .await;
    let at = client
        .send_message()
        .queue_url(queue.url())
        .message_body("x".repeat(MESSAGE_MAX_BYTES))
        .send()
        .await;

    assert!(over.is_err(), "{over:?}");
    assert!(at.is_ok(), "{at:?}");
}
