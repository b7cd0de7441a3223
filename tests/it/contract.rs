//! One contract for every `Store` adapter: the in-memory fake cannot drift from DynamoDB.

use marquee::domain::{Artist, ArtistKey, Connection, ConnectionId, EventId, Scope, Shard, UserId};
use marquee::store::memory::MemoryStore;
use marquee::store::{
    Admission, Admitted, Applied, Audience, Bucket, Claim, HandOff, RateLimit, Removed, Span,
    Spend, Store,
};
use marquee::testing::ConnectionBuilder;

const NOW: i64 = 1_900_000_000;

/// Connection `id` of `alice`, connected ten seconds before [`NOW`] and live for an hour after.
fn a_connection(id: &str) -> ConnectionBuilder {
    Connection::builder(id)
        .connected_at(NOW - 10)
        .expires_at(NOW + 3600)
}

fn connection(id: &str, scope: Scope) -> Connection {
    a_connection(id).scope(scope).build()
}

fn artists(names: &[&str]) -> Vec<Artist> {
    names.iter().map(|n| Artist::parse(n).unwrap()).collect()
}

fn keys(names: &[&str]) -> Vec<ArtistKey> {
    artists(names).iter().map(|a| a.key().clone()).collect()
}

/// Every live subscriber of `artist` in `span`, page by page: (ids, pages read).
async fn scan<S: Store>(store: &S, artist: &str, span: Span, limit: u32) -> (Vec<String>, u32) {
    let audience = Audience::Artist(Artist::parse(artist).unwrap().key().clone());
    let (mut ids, mut pages, mut span) = (Vec::new(), 0, span);
    loop {
        let page = store
            .subscribers(&audience, &span, NOW, limit)
            .await
            .unwrap();
        pages += 1;
        ids.extend(page.connections.iter().map(|c| c.as_str().to_owned()));
        match page.next {
            Some(after) => span.after = Some(after),
            None => return (ids, pages),
        }
    }
}

/// Every live subscriber of `artist` over all shards, sorted: (ids, pages read).
async fn all_subscribers<S: Store>(store: &S, artist: &str, limit: u32) -> (Vec<String>, u32) {
    let (mut ids, mut pages) = (Vec::new(), 0);
    for shard in Shard::all() {
        let (found, read) = scan(store, artist, Span::whole(shard), limit).await;
        ids.extend(found);
        pages += read;
    }
    ids.sort();
    (ids, pages)
}

fn id(raw: &str) -> ConnectionId {
    ConnectionId::parse(raw).unwrap()
}

async fn a_connection_reads_back_with_its_scope<S: Store>(store: S) {
    let scoped = a_connection("c-scoped")
        .scope(Scope::Only(keys(&["Adele", "Muse"])))
        .publish(&["Muse"])
        .build();
    let open = connection("c-open", Scope::Any);
    store.put_connection(&scoped).await.unwrap();
    store.put_connection(&open).await.unwrap();
    let state = store
        .connection_state(&scoped.id, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.connection, scoped);
    assert_eq!((state.version, state.subscriptions.len()), (0, 0));
    let state = store
        .connection_state(&open.id, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.connection.scope, Scope::Any);
    assert!(state.connection.publish.is_empty(), "subscribe-only");
}

async fn unknown_and_expired_connections_read_as_none<S: Store>(store: S) {
    let c = connection("c1", Scope::Any);
    store.put_connection(&c).await.unwrap();
    assert!(
        store
            .connection_state(&c.id, c.expires_at)
            .await
            .unwrap()
            .is_none()
    );
    let ghost = ConnectionId::parse("ghost").unwrap();
    assert!(store.connection_state(&ghost, NOW).await.unwrap().is_none());
}

async fn subscriptions_are_added_under_the_version_check<S: Store>(store: S) {
    let c = connection("c1", Scope::Any);
    store.put_connection(&c).await.unwrap();
    let added = store
        .add_subscriptions(&c, 0, &artists(&["Muse", "Adele"]))
        .await
        .unwrap();
    assert_eq!(added, Applied::Yes);
    let stale = store
        .add_subscriptions(&c, 0, &artists(&["Queen"]))
        .await
        .unwrap();
    assert_eq!(stale, Applied::Conflict);
    let state = store.connection_state(&c.id, NOW).await.unwrap().unwrap();
    assert_eq!(state.subscriptions, keys(&["Adele", "Muse"]));
    assert_eq!(state.version, 1, "one change, one revision");
}

async fn subscriptions_are_removed_under_the_version_check<S: Store>(store: S) {
    let c = connection("c1", Scope::Any);
    store.put_connection(&c).await.unwrap();
    store
        .add_subscriptions(&c, 0, &artists(&["Muse", "Adele"]))
        .await
        .unwrap();
    let stale = store
        .remove_subscriptions(&c.id, 0, &keys(&["Muse"]))
        .await
        .unwrap();
    assert_eq!(stale, Applied::Conflict);
    let removed = store
        .remove_subscriptions(&c.id, 1, &keys(&["Muse"]))
        .await
        .unwrap();
    assert_eq!(removed, Applied::Yes);
    let state = store.connection_state(&c.id, NOW).await.unwrap().unwrap();
    assert_eq!((state.subscriptions, state.version), (keys(&["Adele"]), 2));
}

async fn a_revision_is_never_reused_so_a_stale_write_conflicts<S: Store>(store: S) {
    // Subscribe then unsubscribe: with a subscription count for a version, the record would be
    // back at 0 and a write decided before both would apply.
    let c = connection("c1", Scope::Any);
    store.put_connection(&c).await.unwrap();
    let adele = artists(&["Adele"]);
    assert_eq!(
        store.add_subscriptions(&c, 0, &adele).await.unwrap(),
        Applied::Yes
    );
    assert_eq!(
        store
            .remove_subscriptions(&c.id, 1, &keys(&["Adele"]))
            .await
            .unwrap(),
        Applied::Yes
    );
    for stale in [0, 1] {
        let applied = store
            .add_subscriptions(&c, stale, &artists(&["Muse", "Queen"]))
            .await
            .unwrap();
        assert_eq!(
            applied,
            Applied::Conflict,
            "a write decided at revision {stale}"
        );
    }
    let state = store.connection_state(&c.id, NOW).await.unwrap().unwrap();
    assert_eq!((state.subscriptions.len(), state.version), (0, 2));
}

async fn each_subscription_write_is_conditioned_on_the_item_itself<S: Store>(store: S) {
    let c = connection("c1", Scope::Any);
    store.put_connection(&c).await.unwrap();
    store
        .add_subscriptions(&c, 0, &artists(&["Adele"]))
        .await
        .unwrap();
    let again = store
        .add_subscriptions(&c, 1, &artists(&["Muse", "Adele"]))
        .await
        .unwrap();
    assert_eq!(again, Applied::Conflict, "adding one already held");
    let absent = store
        .remove_subscriptions(&c.id, 1, &keys(&["Adele", "Queen"]))
        .await
        .unwrap();
    assert_eq!(absent, Applied::Conflict, "removing one not held");
    let state = store.connection_state(&c.id, NOW).await.unwrap().unwrap();
    assert_eq!((state.subscriptions, state.version), (keys(&["Adele"]), 1));
}

async fn a_subscriptions_catch_up_watermark_only_rises_and_goes_with_it<S: Store>(store: S) {
    let c = connection("c1", Scope::Any);
    store.put_connection(&c).await.unwrap();
    store
        .add_subscriptions(&c, 0, &artists(&["Muse", "Adele"]))
        .await
        .unwrap();
    let adele = &keys(&["Adele"])[0];
    store.mark_replayed(&c.id, adele, 12).await.unwrap();
    // An earlier catch-up finishing late does not lower it.
    store.mark_replayed(&c.id, adele, 7).await.unwrap();
    // Nothing is written for a subscription the connection does not hold.
    store
        .mark_replayed(&c.id, &keys(&["Queen"])[0], 3)
        .await
        .unwrap();
    let state = store.connection_state(&c.id, NOW).await.unwrap().unwrap();
    assert_eq!(
        state.replayed.into_iter().collect::<Vec<_>>(),
        [(adele.clone(), 12)]
    );
    assert_eq!(state.subscriptions, keys(&["Adele", "Muse"]));

    store
        .remove_subscriptions(&c.id, 1, std::slice::from_ref(adele))
        .await
        .unwrap();
    store
        .add_subscriptions(&c, 2, &artists(&["Adele"]))
        .await
        .unwrap();
    let state = store.connection_state(&c.id, NOW).await.unwrap().unwrap();
    assert!(state.replayed.is_empty(), "{:?}", state.replayed);
    assert_eq!(state.version, 3);
}

async fn subscribing_a_vanished_connection_conflicts<S: Store>(store: S) {
    let c = connection("c1", Scope::Any);
    let applied = store
        .add_subscriptions(&c, 0, &artists(&["Adele"]))
        .await
        .unwrap();
    assert_eq!(applied, Applied::Conflict);
    let (ids, _) = all_subscribers(&store, "Adele", 10).await;
    assert!(ids.is_empty());
}

async fn deleting_a_connection_removes_it_and_all_its_subscriptions<S: Store>(store: S) {
    let (a, b) = (connection("a", Scope::Any), connection("b", Scope::Any));
    for c in [&a, &b] {
        store.put_connection(c).await.unwrap();
        store
            .add_subscriptions(c, 0, &artists(&["Adele", "Muse"]))
            .await
            .unwrap();
    }
    let removed = store.delete_connection(&a.id).await.unwrap();
    assert_eq!(removed.items, 3);
    assert_eq!(removed.user.unwrap().as_str(), "alice");
    let mut left: Vec<&str> = removed.artists.iter().map(Artist::name).collect();
    left.sort_unstable();
    assert_eq!(
        left,
        vec!["Adele", "Muse"],
        "the rooms it left, as it named them"
    );
    assert!(store.connection_state(&a.id, NOW).await.unwrap().is_none());
    assert_eq!(all_subscribers(&store, "Adele", 10).await.0, vec!["b"]);
    assert_eq!(
        store.delete_connection(&a.id).await.unwrap(),
        Removed::default()
    );
}

async fn subscribers_come_in_pages_in_id_order_without_expired_ones<S: Store>(store: S) {
    for i in 0..25 {
        let mut c = connection(&format!("c{i:02}"), Scope::Any);
        if i % 5 == 0 {
            c.expires_at = NOW;
        }
        store.put_connection(&c).await.unwrap();
        store
            .add_subscriptions(&c, 0, &artists(&["Adele"]))
            .await
            .unwrap();
    }
    // Artists on either side of "adele" in key order, so each scan must find its own range.
    for (id, artist) in [("before", "Abba"), ("after", "Muse")] {
        let other = connection(id, Scope::Any);
        store.put_connection(&other).await.unwrap();
        store
            .add_subscriptions(&other, 0, &artists(&[artist]))
            .await
            .unwrap();
    }

    let (ids, pages) = all_subscribers(&store, "adele", 10).await;
    let expected: Vec<String> = (0..25)
        .filter(|i| i % 5 != 0)
        .map(|i| format!("c{i:02}"))
        .collect();
    assert_eq!(ids, expected);
    assert!(pages >= 3, "{pages} pages");
    assert_eq!(all_subscribers(&store, "muse", 10).await.0, vec!["after"]);
    assert_eq!(all_subscribers(&store, "abba", 10).await.0, vec!["before"]);
    assert!(all_subscribers(&store, "queen", 10).await.0.is_empty());
}

async fn each_subscription_lands_in_its_connections_shard<S: Store>(store: S) {
    let ids: Vec<String> = (0..40).map(|i| format!("conn-{i:02}")).collect();
    for raw in &ids {
        let c = connection(raw, Scope::Any);
        store.put_connection(&c).await.unwrap();
        store
            .add_subscriptions(&c, 0, &artists(&["Adele"]))
            .await
            .unwrap();
    }
    for shard in Shard::all() {
        let (found, _) = scan(&store, "Adele", Span::whole(shard), 100).await;
        let mut expected: Vec<String> = ids
            .iter()
            .filter(|raw| Shard::of(&id(raw)) == shard)
            .cloned()
            .collect();
        expected.sort();
        assert_eq!(found, expected, "shard {shard}");
    }
}

async fn a_span_starts_after_its_cursor_and_stops_at_its_end<S: Store>(store: S) {
    // Ids that share one shard, so one span holds them all.
    let shard = Shard::new(3).unwrap();
    let ids: Vec<String> = (0..400)
        .map(|i| format!("s-{i:03}"))
        .filter(|raw| Shard::of(&id(raw)) == shard)
        .take(8)
        .collect();
    for raw in &ids {
        let c = connection(raw, Scope::Any);
        store.put_connection(&c).await.unwrap();
        store
            .add_subscriptions(&c, 0, &artists(&["Adele"]))
            .await
            .unwrap();
    }
    let span = Span {
        shard,
        after: Some(id(&ids[1])),
        until: Some(id(&ids[5])),
    };
    let (found, pages) = scan(&store, "Adele", span, 2).await;
    assert_eq!(found, ids[2..=5].to_vec());
    assert!(pages >= 2, "{pages} pages");
    let other = Span::whole(Shard::new(4).unwrap());
    assert!(scan(&store, "Adele", other, 10).await.0.is_empty());
}

async fn an_event_claim_is_a_lease_until_done<S: Store>(store: S) {
    let id = EventId::parse("evt-1").unwrap();
    let (lease, remember) = (NOW + 30, NOW + 3600);
    assert_eq!(
        store.claim_event(&id, NOW, lease, remember).await.unwrap(),
        Claim::New
    );
    assert_eq!(
        store
            .claim_event(&id, NOW + 1, NOW + 31, remember)
            .await
            .unwrap(),
        Claim::Running,
        "the holder's lease is running"
    );
    assert_eq!(
        store
            .claim_event(&id, lease, lease + 30, remember)
            .await
            .unwrap(),
        Claim::New,
        "a lapsed lease (the holder crashed) is taken over"
    );
    store.finish_event(&id, remember).await.unwrap();
    store.release_event(&id).await.unwrap();
    assert_eq!(
        store
            .claim_event(&id, NOW + 100, NOW + 130, remember)
            .await
            .unwrap(),
        Claim::Done,
        "a done claim stays done, released or not"
    );
    assert_eq!(
        store
            .claim_event(&id, remember, remember + 30, remember + 60)
            .await
            .unwrap(),
        Claim::New,
        "an expired claim that TTL has not yet deleted is free"
    );
}

async fn a_released_claim_is_free_at_once<S: Store>(store: S) {
    let id = EventId::parse("evt-2").unwrap();
    store
        .claim_event(&id, NOW, NOW + 30, NOW + 60)
        .await
        .unwrap();
    store.release_event(&id).await.unwrap();
    assert_eq!(
        store
            .claim_event(&id, NOW + 1, NOW + 31, NOW + 60)
            .await
            .unwrap(),
        Claim::New
    );
}

async fn a_hand_off_is_pinned_once_per_event_and_span_then_marked_sent<S: Store>(store: S) {
    let (e1, e2) = (EventId::parse("e1").unwrap(), EventId::parse("e2").unwrap());
    let span = Span {
        shard: Shard::new(2).unwrap(),
        after: Some(id("abc")),
        until: None,
    };
    assert_eq!(store.hand_off(&e1, &span).await.unwrap(), None);
    let first = HandOff {
        next: Some(id("abm")),
        sent: false,
    };
    assert_eq!(
        store
            .pin_hand_off(&e1, &span, &id("abm"), NOW + 60)
            .await
            .unwrap(),
        first
    );
    // A later attempt that read a longer page gets the first pin back.
    assert_eq!(
        store
            .pin_hand_off(&e1, &span, &id("abz"), NOW + 60)
            .await
            .unwrap(),
        first
    );
    assert_eq!(store.hand_off(&e1, &span).await.unwrap(), Some(first));
    store.hand_off_sent(&e1, &span).await.unwrap();
    let sent = HandOff {
        next: Some(id("abm")),
        sent: true,
    };
    assert_eq!(
        store.hand_off(&e1, &span).await.unwrap(),
        Some(sent.clone())
    );
    assert_eq!(
        store
            .pin_hand_off(&e1, &span, &id("abq"), NOW + 60)
            .await
            .unwrap(),
        sent
    );
    assert_eq!(store.hand_off(&e2, &span).await.unwrap(), None);
    assert_eq!(
        store
            .hand_off(&e1, &Span::whole(Shard::new(2).unwrap()))
            .await
            .unwrap(),
        None
    );
}

async fn a_rate_bucket_holds_its_burst_and_refills_by_the_millisecond<S: Store>(store: S) {
    let ann = connection("ann", Scope::Any);
    store.put_connection(&ann).await.unwrap();
    let limit = RateLimit {
        per_second: 2,
        burst: 3,
    };
    let t = NOW * 1000;
    let mut taken = Vec::new();
    for at in [t, t, t, t, t + 499, t + 500, t + 500, t + 10_000] {
        taken.push(
            store
                .spend(Bucket::Messages(&ann.id), Spend::one(), limit, at)
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        taken,
        // The burst, then empty; half a second later one token (2 a second), and only one;
        // ten seconds later the bucket is full again, not fuller than the burst.
        [true, true, true, false, false, true, false, true]
    );
    let mut more = Vec::new();
    for _ in 0..3 {
        more.push(
            store
                .spend(Bucket::Messages(&ann.id), Spend::one(), limit, t + 10_000)
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        more,
        [true, true, false],
        "refilled to the burst of 3, no more"
    );
    assert!(
        !store
            .spend(Bucket::Messages(&id("gone")), Spend::one(), limit, t)
            .await
            .unwrap(),
        "no bucket for an unknown connection"
    );
}

/// Issue 18, items 3 and 6: buckets by cost. A cost above what the bucket holds goes out
/// from a full bucket and leaves it in debt; a check reads the debt without writing; what is
/// charged after an action is taken whatever the bucket holds; a refund gives back. A
/// connection's posts, its messages and a room's posts are three buckets.
async fn a_cost_bucket_goes_into_debt_and_refills_out_of_it<S: Store>(store: S) {
    let ann = connection("ann", Scope::Any);
    store.put_connection(&ann).await.unwrap();
    let limit = RateLimit {
        per_second: 100,
        burst: 200,
    };
    let t = NOW * 1000;
    let room = Artist::parse("Adele").unwrap().key().clone();
    let posts = Bucket::Posts(&ann.id);
    for bucket in [posts, Bucket::Room(&room)] {
        // A message to a room of 500 from a full bucket of 200: out, leaving -300.
        assert!(
            store
                .spend(bucket, Spend::upfront(500, limit), limit, t)
                .await
                .unwrap()
        );
        assert!(
            !store.spend(bucket, Spend::check(), limit, t).await.unwrap(),
            "in debt"
        );
        assert!(
            !store
                .spend(bucket, Spend::upfront(1, limit), limit, t)
                .await
                .unwrap()
        );
        // Three seconds pay the debt (100 a second), and not before.
        let paid = t + 3000;
        assert!(
            !store
                .spend(bucket, Spend::check(), limit, paid - 10)
                .await
                .unwrap()
        );
        assert!(
            store
                .spend(bucket, Spend::check(), limit, paid)
                .await
                .unwrap()
        );
        // Charged after the fact whatever it holds, then refunded.
        assert!(
            store
                .spend(bucket, Spend::after(50), limit, paid)
                .await
                .unwrap()
        );
        assert!(
            !store
                .spend(bucket, Spend::check(), limit, paid)
                .await
                .unwrap()
        );
        assert!(
            store
                .spend(bucket, Spend::refund(50), limit, paid)
                .await
                .unwrap()
        );
        assert!(
            store
                .spend(bucket, Spend::check(), limit, paid)
                .await
                .unwrap()
        );
    }
    // The messages bucket was never touched by the posts: still its whole burst.
    let messages = RateLimit {
        per_second: 1,
        burst: 2,
    };
    for expected in [true, true, false] {
        let took = store
            .spend(Bucket::Messages(&ann.id), Spend::one(), messages, t)
            .await
            .unwrap();
        assert_eq!(took, expected);
    }
    // A room's bucket needs no record of its own first; a connection's does.
    let other = Artist::parse("Björk").unwrap().key().clone();
    assert!(
        store
            .spend(Bucket::Room(&other), Spend::upfront(10, limit), limit, t)
            .await
            .unwrap()
    );
    assert!(
        !store
            .spend(Bucket::Posts(&id("gone")), Spend::check(), limit, t)
            .await
            .unwrap()
    );
}

/// A connection `id` of `user`, live until `expires_at`.
fn users_connection(user: &str, id: &str, expires_at: i64) -> Connection {
    a_connection(id).user(user).expires_at(expires_at).build()
}

/// A cap-5 admission of a token issued at `NOW - 60`, replacing nothing.
fn admission() -> Admission<'static> {
    Admission {
        cap: 5,
        replaces: None,
        issued_at: Some(NOW - 60),
        keep_until: NOW + 4 * 3600,
    }
}

async fn admit<S: Store>(store: &S, user: &str, id: &str) -> Admitted {
    store
        .admit_connection(&users_connection(user, id, NOW + 3600), admission(), NOW)
        .await
        .unwrap()
}

async fn a_user_is_admitted_up_to_the_cap_and_no_further<S: Store>(store: S) {
    let mut answers = Vec::new();
    for i in 0..6 {
        answers.push(admit(&store, "bob", &format!("b-{i}")).await);
    }
    answers.push(admit(&store, "carol", "c-0").await);
    assert_eq!(
        answers,
        [
            Admitted::Yes,
            Admitted::Yes,
            Admitted::Yes,
            Admitted::Yes,
            Admitted::Yes,
            Admitted::Full,
            Admitted::Yes,
        ],
        "five of bob's, the sixth refused; carol is counted on her own"
    );
}

async fn fifty_concurrent_admissions_of_one_user_leave_exactly_the_cap<S: Store>(store: S) {
    let attempts = (0..50).map(|i| {
        let store = &store;
        async move { admit(store, "swarm", &format!("s-{i:02}")).await }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let admitted = answers.iter().filter(|a| **a == Admitted::Yes).count();
    let full = answers.iter().filter(|a| **a == Admitted::Full).count();
    assert_eq!((admitted, full), (5, 45), "{answers:?}");
    let mut listed = store
        .revoke_user(&UserId::parse("swarm").unwrap(), NOW - 1, NOW, NOW)
        .await
        .unwrap();
    listed.dedup();
    assert_eq!(
        listed.len(),
        5,
        "the list holds the five admitted: {listed:?}"
    );
}

async fn a_lapsed_entry_stops_counting_and_is_pruned<S: Store>(store: S) {
    let short = Admission {
        cap: 1,
        ..admission()
    };
    let lapsing = users_connection("dave", "d-old", NOW + 10);
    assert_eq!(
        store.admit_connection(&lapsing, short, NOW).await.unwrap(),
        Admitted::Yes
    );
    let next = users_connection("dave", "d-new", NOW + 3600);
    assert_eq!(
        store.admit_connection(&next, short, NOW).await.unwrap(),
        Admitted::Full,
        "live: counted"
    );

    let later = NOW + 11;
    let answer = store.admit_connection(&next, short, later).await.unwrap();

    assert_eq!(
        answer,
        Admitted::Yes,
        "lapsed without a $disconnect: healed"
    );
    let listed = store
        .revoke_user(&next.user_id, NOW - 1, NOW, later)
        .await
        .unwrap();
    assert_eq!(listed, vec![next.id], "the lapsed entry was pruned");
}

async fn a_long_list_of_lapsed_entries_is_pruned_in_rounds<S: Store>(store: S) {
    let big = Admission {
        cap: 40,
        ..admission()
    };
    for i in 0..40 {
        let lapsing = users_connection("hal", &format!("h-{i:02}"), NOW + 10);
        assert_eq!(
            store.admit_connection(&lapsing, big, NOW).await.unwrap(),
            Admitted::Yes
        );
    }
    let next = users_connection("hal", "h-new", NOW + 3600);
    let later = NOW + 11;

    let answer = store.admit_connection(&next, big, later).await.unwrap();

    assert_eq!(answer, Admitted::Yes);
    let listed = store
        .revoke_user(&next.user_id, NOW - 1, NOW, later)
        .await
        .unwrap();
    assert_eq!(listed, vec![next.id], "all 40 lapsed entries were pruned");
}

async fn deleting_a_connection_gives_its_place_back<S: Store>(store: S) {
    let one = Admission {
        cap: 1,
        ..admission()
    };
    let first = users_connection("erin", "e-1", NOW + 3600);
    let second = users_connection("erin", "e-2", NOW + 3600);
    assert_eq!(
        store.admit_connection(&first, one, NOW).await.unwrap(),
        Admitted::Yes
    );
    store.put_connection(&first).await.unwrap();
    assert_eq!(
        store.admit_connection(&second, one, NOW).await.unwrap(),
        Admitted::Full
    );

    store.delete_connection(&first.id).await.unwrap();

    assert_eq!(
        store.admit_connection(&second, one, NOW).await.unwrap(),
        Admitted::Yes,
        "a $disconnect (or 410 cleanup) takes the connection off its user's list"
    );
    store
        .release_connection(&second.user_id, &second.id)
        .await
        .unwrap();
    let third = users_connection("erin", "e-3", NOW + 3600);
    assert_eq!(
        store.admit_connection(&third, one, NOW).await.unwrap(),
        Admitted::Yes,
        "so does a release"
    );
}

async fn a_replacement_may_go_one_over_while_one_overlap_is_open<S: Store>(store: S) {
    let one = Admission {
        cap: 1,
        ..admission()
    };
    let old = users_connection("fay", "f-old", NOW + 3600);
    assert_eq!(
        store.admit_connection(&old, one, NOW).await.unwrap(),
        Admitted::Yes
    );
    let stranger = users_connection("gus", "g-1", NOW + 3600);
    store.admit_connection(&stranger, one, NOW).await.unwrap();
    let try_replacing = |replaces| Admission {
        replaces: Some(replaces),
        ..one
    };

    let someone_elses = store
        .admit_connection(
            &users_connection("fay", "f-x", NOW + 3600),
            try_replacing(&stranger.id),
            NOW,
        )
        .await
        .unwrap();
    let renewal = store
        .admit_connection(
            &users_connection("fay", "f-new", NOW + 3600),
            try_replacing(&old.id),
            NOW,
        )
        .await
        .unwrap();
    let second_overlap = store
        .admit_connection(
            &users_connection("fay", "f-more", NOW + 3600),
            try_replacing(&old.id),
            NOW,
        )
        .await
        .unwrap();

    assert_eq!(
        [someone_elses, renewal, second_overlap],
        [Admitted::Full, Admitted::Yes, Admitted::Full],
        "only a live connection of the same user can be replaced, one overlap at a time"
    );
}

async fn a_revocation_lists_the_users_connections_and_refuses_older_tokens<S: Store>(store: S) {
    admit(&store, "mallory", "m-1").await;
    admit(&store, "mallory", "m-2").await;
    admit(&store, "alice", "a-1").await;
    let mallory = UserId::parse("mallory").unwrap();

    let listed = store
        .revoke_user(&mallory, NOW, NOW + 600, NOW)
        .await
        .unwrap();

    assert_eq!(listed, vec![id("m-1"), id("m-2")]);
    assert_eq!(store.revocation(&mallory, NOW).await.unwrap(), Some(NOW));
    let token_at = |issued_at| Admission {
        issued_at,
        ..admission()
    };
    let fresh = users_connection("mallory", "m-3", NOW + 3600);
    let mut answers = Vec::new();
    for issued_at in [Some(NOW - 60), Some(NOW), None, Some(NOW + 1)] {
        answers.push(
            store
                .admit_connection(&fresh, token_at(issued_at), NOW + 2)
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        answers,
        [
            Admitted::Revoked,
            Admitted::Revoked,
            Admitted::Revoked,
            Admitted::Yes
        ],
        "issued before, in the same second, or without iat: refused; after: admitted"
    );
    store
        .revoke_user(&mallory, NOW - 100, NOW + 500, NOW + 3)
        .await
        .unwrap();
    assert_eq!(
        store.revocation(&mallory, NOW + 3).await.unwrap(),
        Some(NOW),
        "an older revocation delivered late does not move the standing one back"
    );
    assert_eq!(
        store.revocation(&mallory, NOW + 600).await.unwrap(),
        None,
        "a revocation lapses with its TTL"
    );
    assert_eq!(
        store
            .revocation(&UserId::parse("alice").unwrap(), NOW)
            .await
            .unwrap(),
        None
    );
}

fn report_start() -> marquee::report::ReportStart {
    marquee::report::ReportStart {
        kind: marquee::report::ReportKind::Notification,
        artist: Some("adele".into()),
        audience: 2500,
        time: "2030-03-17T17:46:40Z".into(),
        opened_at: NOW,
    }
}

fn outcome(delivered: u64, gone: u64, first: i64, last: i64) -> marquee::report::ItemOutcome {
    marquee::report::ItemOutcome {
        tally: marquee::routes::fanout::Tally {
            delivered,
            gone,
            failed: 1,
            retried: 2,
            closed: 1,
        },
        redriven: 1,
        first_post_ms: Some(first),
        last_post_ms: Some(last),
        dead: false,
    }
}

async fn a_report_counts_each_item_once_and_is_published_once_when_the_last_finishes<S: Store>(
    store: S,
) {
    use marquee::report::{Finished, ItemKey, ReportKind};
    let event = EventId::parse("e-report").unwrap();
    let root = ItemKey::root();
    let (a, b) = (root.child("shard-1"), root.child("shard-2"));
    let c = a.child("next");
    store
        .open_report(&event, &report_start(), NOW + 600)
        .await
        .unwrap();
    store
        .open_report(&event, &report_start(), NOW + 600)
        .await
        .unwrap();
    store
        .register_items(&event, &[a.clone(), b.clone()], NOW + 600)
        .await
        .unwrap();
    store
        .register_items(&event, std::slice::from_ref(&a), NOW + 600)
        .await
        .unwrap();
    let root_done = marquee::report::ItemOutcome::default();
    assert_eq!(
        store
            .finish_item(&event, &root, &root_done, NOW + 600)
            .await
            .unwrap(),
        Finished::Counted
    );
    // c finishes before a registers it: it never counts as outstanding.
    assert_eq!(
        store
            .finish_item(&event, &c, &outcome(5, 0, 3_000, 3_500), NOW + 600)
            .await
            .unwrap(),
        Finished::Counted
    );
    store
        .register_items(&event, std::slice::from_ref(&c), NOW + 600)
        .await
        .unwrap();
    assert_eq!(
        store
            .finish_item(&event, &a, &outcome(10, 1, 1_000, 2_000), NOW + 600)
            .await
            .unwrap(),
        Finished::Counted
    );
    assert_eq!(
        store
            .finish_item(&event, &a, &outcome(10, 1, 4_000, 5_000), NOW + 600)
            .await
            .unwrap(),
        Finished::Again,
        "a redelivery of a finished item"
    );
    assert_eq!(store.claim_publication(&event, NOW).await.unwrap(), None);
    let running = store.delivery_report(&event, NOW).await.unwrap().unwrap();
    assert_eq!(
        (
            running.items,
            running.finished,
            running.outstanding,
            running.complete
        ),
        (4, 3, 1, false),
        "b is outstanding"
    );
    assert_eq!(
        store
            .finish_item(&event, &b, &outcome(7, 2, 900, 2_500), NOW + 600)
            .await
            .unwrap(),
        Finished::Counted
    );

    let published = store.claim_publication(&event, NOW).await.unwrap();
    let again = store.claim_publication(&event, NOW).await.unwrap();

    let expected = marquee::report::DeliveryReport {
        event_id: "e-report".into(),
        kind: ReportKind::Notification,
        artist: Some("adele".into()),
        audience: 2500,
        time: "2030-03-17T17:46:40Z".into(),
        delivered: 22,
        gone: 3,
        failed: 3,
        retried: 6,
        redriven: 3,
        closed: 3,
        duplicates: 10,
        items: 4,
        finished: 4,
        outstanding: 0,
        dead_lettered: 0,
        first_post_ms: Some(900),
        last_post_ms: Some(3_500),
        opened_at: NOW,
        finished_all: true,
        complete: true,
        published: true,
    };
    assert_eq!(published, Some(expected.clone()));
    assert_eq!(again, None, "published once");
    assert_eq!(
        store.delivery_report(&event, NOW).await.unwrap(),
        Some(expected)
    );
}

async fn a_dead_item_makes_the_report_incomplete_and_a_failed_send_is_released<S: Store>(store: S) {
    use marquee::report::ItemKey;
    let event = EventId::parse("e-dead").unwrap();
    let root = ItemKey::root();
    let a = root.child("shard-0");
    store
        .open_report(&event, &report_start(), NOW + 600)
        .await
        .unwrap();
    store
        .register_items(&event, std::slice::from_ref(&a), NOW + 600)
        .await
        .unwrap();
    store
        .finish_item(&event, &root, &Default::default(), NOW + 600)
        .await
        .unwrap();
    let dead = marquee::report::ItemOutcome {
        dead: true,
        ..outcome(3, 0, 10, 20)
    };
    store
        .finish_item(&event, &a, &dead, NOW + 600)
        .await
        .unwrap();

    let first = store.claim_publication(&event, NOW).await.unwrap().unwrap();
    store.release_publication(&event).await.unwrap();
    let retried = store.claim_publication(&event, NOW).await.unwrap().unwrap();

    assert_eq!(
        (first.dead_lettered, first.finished_all, first.complete),
        (1, true, false)
    );
    assert_eq!(retried, first, "given back, taken again");
    assert_eq!(
        store.delivery_report(&event, NOW + 600).await.unwrap(),
        None,
        "kept until its TTL"
    );
    assert_eq!(
        store
            .delivery_report(&EventId::parse("e-none").unwrap(), NOW)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .finish_item(
                &EventId::parse("e-none").unwrap(),
                &root,
                &Default::default(),
                NOW + 600
            )
            .await
            .unwrap(),
        marquee::report::Finished::NoReport,
        "no report is created by an item"
    );
}

/// What a room was last told of a user: the same notice is not told twice, a change within
/// the window arms one settle, a settle tells only what differs, a gone connection is told at
/// once, and users and rooms are kept apart.
async fn a_rooms_presence_record_coalesces_notices_per_user<S: Store>(store: S) {
    use marquee::store::{Notice, Pacing, Told};
    let window = Pacing::Coalesced { window_ms: 1000 };
    let (adele, muse) = (&keys(&["Adele"])[0], &keys(&["Muse"])[0]);
    let (bo, cy) = (UserId::parse("bo").unwrap(), UserId::parse("cy").unwrap());
    let t = NOW * 1000;
    let told =
        |artist, user, notice, pacing, at| store.presence_told(artist, user, notice, pacing, at);

    assert_eq!(
        told(adele, &bo, Notice::Joined, window, t).await.unwrap(),
        Told::Tell
    );
    assert_eq!(
        told(adele, &bo, Notice::Joined, window, t + 10)
            .await
            .unwrap(),
        Told::Skip,
        "told already"
    );
    // Another room, another user: their own records.
    assert_eq!(
        told(muse, &bo, Notice::Left, window, t + 20).await.unwrap(),
        Told::Tell
    );
    assert_eq!(
        told(adele, &cy, Notice::Joined, window, t + 30)
            .await
            .unwrap(),
        Told::Tell
    );

    // A leave within the window: one settle, at the window's end.
    assert_eq!(
        told(adele, &bo, Notice::Left, window, t + 100)
            .await
            .unwrap(),
        Told::Settle { at_ms: t + 1000 }
    );
    assert_eq!(
        told(adele, &bo, Notice::Left, window, t + 200)
            .await
            .unwrap(),
        Told::Skip
    );
    assert_eq!(
        told(adele, &bo, Notice::Joined, window, t + 300)
            .await
            .unwrap(),
        Told::Skip
    );
    // Bo is gone at the window's end: the settle tells it, once.
    let armed = t + 1000;
    assert!(
        store
            .settle_presence(adele, &bo, Notice::Left, armed, t + 1000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .settle_presence(adele, &bo, Notice::Left, armed, t + 1001)
            .await
            .unwrap()
    );
    assert_eq!(
        told(adele, &bo, Notice::Left, window, t + 1100)
            .await
            .unwrap(),
        Told::Skip
    );

    // Back a window later: told at once; a gone connection within the window too.
    assert_eq!(
        told(adele, &bo, Notice::Joined, window, t + 2100)
            .await
            .unwrap(),
        Told::Tell
    );
    assert_eq!(
        told(adele, &bo, Notice::Left, Pacing::Now, t + 2150)
            .await
            .unwrap(),
        Told::Tell
    );
    assert_eq!(
        told(adele, &bo, Notice::Left, Pacing::Now, t + 2160)
            .await
            .unwrap(),
        Told::Skip
    );

    // A settle disarmed by a notice told since does nothing.
    assert_eq!(
        told(adele, &cy, Notice::Left, window, t + 2200)
            .await
            .unwrap(),
        Told::Tell
    );
    assert_eq!(
        told(adele, &cy, Notice::Joined, window, t + 2300)
            .await
            .unwrap(),
        Told::Settle { at_ms: t + 3200 }
    );
    assert_eq!(
        told(adele, &cy, Notice::Joined, Pacing::Now, t + 2400)
            .await
            .unwrap(),
        Told::Tell
    );
    assert!(
        !store
            .settle_presence(adele, &cy, Notice::Left, t + 3200, t + 3200)
            .await
            .unwrap()
    );
    assert_eq!(
        told(adele, &cy, Notice::Joined, Pacing::Now, t + 3300)
            .await
            .unwrap(),
        Told::Skip
    );
}

contract!(
    a_report_counts_each_item_once_and_is_published_once_when_the_last_finishes,
    a_dead_item_makes_the_report_incomplete_and_a_failed_send_is_released,
    a_user_is_admitted_up_to_the_cap_and_no_further,
    fifty_concurrent_admissions_of_one_user_leave_exactly_the_cap,
    a_lapsed_entry_stops_counting_and_is_pruned,
    a_long_list_of_lapsed_entries_is_pruned_in_rounds,
    deleting_a_connection_gives_its_place_back,
    a_replacement_may_go_one_over_while_one_overlap_is_open,
    a_revocation_lists_the_users_connections_and_refuses_older_tokens,
    a_connection_reads_back_with_its_scope,
    unknown_and_expired_connections_read_as_none,
    subscriptions_are_added_under_the_version_check,
    subscriptions_are_removed_under_the_version_check,
    subscribing_a_vanished_connection_conflicts,
    a_subscriptions_catch_up_watermark_only_rises_and_goes_with_it,
    a_rooms_presence_record_coalesces_notices_per_user,
    deleting_a_connection_removes_it_and_all_its_subscriptions,
    subscribers_come_in_pages_in_id_order_without_expired_ones,
    a_revision_is_never_reused_so_a_stale_write_conflicts,
    each_subscription_write_is_conditioned_on_the_item_itself,
    each_subscription_lands_in_its_connections_shard,
    a_span_starts_after_its_cursor_and_stops_at_its_end,
    an_event_claim_is_a_lease_until_done,
    a_released_claim_is_free_at_once,
    a_hand_off_is_pinned_once_per_event_and_span_then_marked_sent,
    a_rate_bucket_holds_its_burst_and_refills_by_the_millisecond,
    a_cost_bucket_goes_into_debt_and_refills_out_of_it,
);
