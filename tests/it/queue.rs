//! One contract for every `Queue` adapter: the in-process queue behaves as SQS does (here, a
//! real SQS-compatible server started by `scripts/test`).

use std::time::Duration;

use marquee::domain::{Artist, EventId, Shard};
use marquee::queue::memory::MemoryQueue;
use marquee::queue::{Inbox, Queue, Received};
use marquee::work::{Notification, WorkItem};

const VISIBILITY: Duration = Duration::from_secs(1);

fn items(count: u16) -> Vec<WorkItem> {
    let notification = Notification::new(
        EventId::parse("evt-q").unwrap(),
        Artist::parse("Adele").unwrap(),
        serde_json::json!({"artist": "Adele", "venue": "O2"}),
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

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let queue = super::MemoryQueue::new(super::VISIBILITY, 2);
                    let dead = queue.dead_letter_queue().unwrap();
                    super::$case(queue, dead).await;
                }
            )*
        }
        mod sqs {
            $(
                #[tokio::test]
                async fn $case() {
                    let (queue, dead) = marquee_tests::fresh_queue(super::VISIBILITY, 2).await;
                    super::$case(queue, dead).await;
                }
            )*
        }
    };
}

contract!(
    sent_items_arrive_whole_and_deleted_ones_never_return,
    an_undeleted_item_comes_back_after_the_visibility_timeout,
    an_item_received_too_often_moves_to_the_dead_letter_queue,
);
