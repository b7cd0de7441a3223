//! The history half of the `Store` contract (sequence numbers, history entries) and the
//! lapsed subscribers of expired tokens, on both stores.

use futures_util::future::join_all;
use marquee::domain::{Artist, Connection, EventId, Shard};
use marquee::store::memory::MemoryStore;
use marquee::store::{Audience, LAPSED_WINDOW_SECONDS, NewEntry, Retention, Span, Store};

const NOW: i64 = 1_900_000_000;
const KEEP: Retention = Retention {
    window_seconds: 3600,
    max_per_artist: 100,
};

fn adele() -> Artist {
    Artist::parse("Adele").unwrap()
}

fn event(n: usize) -> EventId {
    EventId::parse(&format!("event-{n:03}")).unwrap()
}

/// Sequences event `n` of `artist` with a detail naming `n`.
async fn sequence<S: Store>(store: &S, artist: &Artist, n: usize, keep: Retention) -> u64 {
    let detail = format!(r#"{{"n":{n}}}"#);
    store
        .sequence(
            NewEntry {
                event: &event(n),
                artist,
                detail: &detail,
                time: "2026-11-23T10:00:00Z",
            },
            keep,
            NOW,
            NOW + 86_400,
        )
        .await
        .unwrap()
}

async fn seqs_after<S: Store>(store: &S, after: u64, now: i64, limit: u32) -> (u64, Vec<u64>) {
    let history = store
        .history(adele().key(), after, now, limit)
        .await
        .unwrap();
    (
        history.last_seq,
        history.entries.iter().map(|e| e.seq).collect(),
    )
}

async fn numbers_count_up_per_artist_and_an_event_keeps_its_own<S: Store>(store: S) {
    let muse = Artist::parse("Muse").unwrap();
    let first: Vec<u64> = [
        sequence(&store, &adele(), 1, KEEP).await,
        sequence(&store, &adele(), 2, KEEP).await,
        sequence(&store, &muse, 3, KEEP).await,
        sequence(&store, &adele(), 4, KEEP).await,
    ]
    .into();
    assert_eq!(first, vec![1, 2, 1, 3]);

    // Redelivered (after its claim was given back, even): the same number, nothing new kept.
    store.release_event(&event(2)).await.unwrap();
    assert_eq!(sequence(&store, &adele(), 2, KEEP).await, 2);

    let history = store.history(adele().key(), 0, NOW, 100).await.unwrap();
    assert_eq!(history.last_seq, 3);
    let kept: Vec<(u64, &str, &str, &str)> = history
        .entries
        .iter()
        .map(|e| {
            (
                e.seq,
                e.event.as_str(),
                e.artist.as_str(),
                e.detail.as_str(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        vec![
            (1, "event-001", "Adele", r#"{"n":1}"#),
            (2, "event-002", "Adele", r#"{"n":2}"#),
            (3, "event-004", "Adele", r#"{"n":4}"#),
        ]
    );
}

async fn history_after_a_number_holds_only_what_came_later<S: Store>(store: S) {
    for n in 1..=5 {
        sequence(&store, &adele(), n, KEEP).await;
    }
    assert_eq!(seqs_after(&store, 3, NOW, 100).await, (5, vec![4, 5]));
    assert_eq!(seqs_after(&store, 5, NOW, 100).await, (5, vec![]));
    assert_eq!(seqs_after(&store, 9, NOW, 100).await, (5, vec![]));
    assert_eq!(
        seqs_after(&store, 0, NOW, 2).await,
        (5, vec![4, 5]),
        "the newest `limit` of them"
    );
    let unknown = Artist::parse("Nobody Yet").unwrap();
    let none = store.history(unknown.key(), 0, NOW, 100).await.unwrap();
    assert_eq!((none.last_seq, none.entries.len()), (0, 0));
}

async fn the_history_keeps_the_newest_up_to_its_cap<S: Store>(store: S) {
    let keep = Retention {
        window_seconds: 3600,
        max_per_artist: 3,
    };
    for n in 1..=5 {
        sequence(&store, &adele(), n, keep).await;
    }
    assert_eq!(seqs_after(&store, 0, NOW, 100).await, (5, vec![3, 4, 5]));
}

async fn expired_history_is_ignored_but_the_count_goes_on<S: Store>(store: S) {
    for n in 1..=2 {
        sequence(&store, &adele(), n, KEEP).await;
    }
    let later = NOW + KEEP.window_seconds;
    assert_eq!(seqs_after(&store, 0, later, 100).await, (2, vec![]));
}

async fn concurrent_events_of_one_artist_each_get_their_own_number<S: Store>(store: S) {
    let store = &store;
    let numbers = join_all((1..=20).map(|n| async move {
        let artist = adele();
        sequence(store, &artist, n, KEEP).await
    }))
    .await;
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=20).collect::<Vec<u64>>(), "{numbers:?}");
    let history = store.history(adele().key(), 0, NOW, 100).await.unwrap();
    for entry in &history.entries {
        let n: usize = entry.event.as_str()[6..].parse().unwrap();
        assert_eq!(
            numbers[n - 1],
            entry.seq,
            "event {n} is kept under its number"
        );
    }
    assert_eq!(history.entries.len(), 20);
}

async fn lapsed_subscribers_are_listed_apart_for_two_hours<S: Store>(store: S) {
    let ids = ["live", "lapsed", "long-gone"];
    let expiries = [NOW + 60, NOW - 60, NOW - LAPSED_WINDOW_SECONDS - 1];
    for (id, expires_at) in ids.iter().zip(expiries) {
        let connection = Connection::builder(id)
            .user("u")
            .connected_at(NOW - 7000)
            .expires_at(expires_at)
            .build();
        store.put_connection(&connection).await.unwrap();
        store
            .add_subscriptions(&connection, 0, &[adele()])
            .await
            .unwrap();
    }
    let (mut live, mut lapsed) = (Vec::new(), Vec::new());
    for shard in Shard::all() {
        let page = store
            .subscribers(
                &Audience::Artist(adele().key().clone()),
                &Span::whole(shard),
                NOW,
                100,
            )
            .await
            .unwrap();
        live.extend(page.connections.iter().map(|c| c.as_str().to_owned()));
        lapsed.extend(page.lapsed.iter().map(|c| c.as_str().to_owned()));
    }
    assert_eq!(
        (live, lapsed),
        (vec!["live".to_owned()], vec!["lapsed".to_owned()])
    );
}

contract!(
    numbers_count_up_per_artist_and_an_event_keeps_its_own,
    history_after_a_number_holds_only_what_came_later,
    the_history_keeps_the_newest_up_to_its_cap,
    expired_history_is_ignored_but_the_count_goes_on,
    concurrent_events_of_one_artist_each_get_their_own_number,
    lapsed_subscribers_are_listed_apart_for_two_hours,
);
