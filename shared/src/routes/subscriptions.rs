//! Subscribing and unsubscribing: the cap, the scope and the revision check on the
//! connection record, retried when a concurrent change of the same connection wins.
//!
//! A subscribe reads each artist's latest `seq` (the baseline) before it writes anything. A
//! baseline it needs (for an artist it adds, or one whose catch-up was asked for with `since`)
//! that cannot be read fails the request before the write: nothing is written, and the client
//! is told `internal_error` and asks again. An artist the connection already has, and that the
//! request asks no catch-up of, needs none: the reply is `subscribed`, with that artist left out
//! of `seq`, as the subscription stands.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use crate::domain::{Artist, ArtistKey, ArtistList, ConnectionId, EpochSeconds, UserId};
use crate::store::{Applied, ConnectionState, ConnectionStore, HistoryStore, StoreError};
use crate::wire::{ErrorCode, Frame, Since};

/// Reads-then-writes that lose a race with another change of the same connection are tried
/// again this many times before the client is told `busy`.
pub const MAX_CONFLICT_RETRIES: u32 = 5;

/// Who changed which rooms: the artists a subscribe added or an unsubscribe removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// The connection's user (its token's `sub`).
    pub user: UserId,
    /// The artists, as the client named them.
    pub artists: Vec<Artist>,
}

/// One artist's catch-up after a subscribe: what the client saw last, and the artist's latest
/// `seq` read before the subscription was written. The catch-up owes the client what lies
/// between: everything after `latest` reaches the connection live (or shows as a jump in `seq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The client's `since` for the artist.
    pub since: Since,
    /// The artist's latest `seq` before the subscription was written (0: none yet).
    pub latest: u64,
}

/// What a subscribe that applied leads to.
#[derive(Debug)]
pub(crate) struct Entered {
    /// The rooms entered.
    pub(crate) changed: Changed,
    /// The catch-up of each artist in the request's `since`.
    pub(crate) resume: Vec<Resume>,
}

/// Each artist's latest `seq` (by key), or why it could not be read.
type Baseline = BTreeMap<ArtistKey, Result<u64, StoreError>>;

/// Subscribes `id` to `artists`: the reply (with each artist's latest `seq`, read before the
/// subscription is written), and, when it applied, the rooms entered and the catch-up owed for
/// each artist in `since`.
pub(crate) async fn subscribe<S: ConnectionStore + HistoryStore>(
    store: &S,
    id: &ConnectionId,
    artists: &ArtistList,
    since: Vec<Since>,
    cap: u32,
    now: EpochSeconds,
) -> Result<(Frame, Option<Entered>), StoreError> {
    let mut kept: Option<Baseline> = None;
    let mut tries = Tries::default();
    loop {
        let state = match tries.next(store, id, now).await? {
            Ok(state) => state,
            Err(reply) => return Ok((reply, None)),
        };
        let denied: Vec<&str> = artists
            .as_slice()
            .iter()
            .filter(|a| !state.connection.scope.allows(a.key()))
            .map(Artist::name)
            .collect();
        if !denied.is_empty() {
            return Ok((
                Frame::error(
                    ErrorCode::Forbidden,
                    format!("your token does not allow: {}", denied.join(", ")),
                ),
                None,
            ));
        }
        let new: Vec<Artist> = artists
            .as_slice()
            .iter()
            .filter(|a| state.subscriptions.binary_search(a.key()).is_err())
            .cloned()
            .collect();
        // Before the write: a notification numbered after this baseline either reaches the
        // new subscription or shows as a jump in `seq`, even one whose fan-out read the index
        // before the subscription showed in it. Read once; any earlier baseline also holds.
        let mut baseline = match kept.take() {
            Some(baseline) => baseline,
            None => latest_seqs(store, artists, now).await,
        };
        // Needed: where a new subscription starts, and where a catch-up ends.
        let needed = new
            .iter()
            .map(Artist::key)
            .chain(since.iter().map(|since| since.artist.key()));
        if let Some(err) = unread(&mut baseline, needed) {
            return Err(err);
        }
        let entered = |artists: Vec<Artist>, since: Vec<Since>| Entered {
            changed: Changed {
                user: state.connection.user_id.clone(),
                artists,
            },
            resume: since
                .into_iter()
                .map(|since| behind(since, &state.replayed))
                .map(|since| Resume {
                    // Read (`unread` found none missing): the fallback owes nothing.
                    latest: latest(&baseline, since.artist.key()).unwrap_or(since.seq),
                    since,
                })
                .collect(),
        };
        let seq = known(&baseline, artists);
        if new.is_empty() {
            return Ok((subscribed(artists, seq), Some(entered(new, since))));
        }
        let total = state.subscriptions.len() + new.len();
        if total > cap as usize {
            return Ok((
                Frame::error(
                    ErrorCode::TooManySubscriptions,
                    format!(
                        "a connection may hold {cap} subscriptions; it has {} and this adds {}",
                        state.subscriptions.len(),
                        new.len()
                    ),
                ),
                None,
            ));
        }
        if store
            .add_subscriptions(&state.connection, state.version, &new)
            .await?
            == Applied::Yes
        {
            return Ok((subscribed(artists, seq), Some(entered(new, since))));
        }
        kept = Some(baseline);
    }
}

/// What a catch-up still owes: from the client's `since`, or from where an earlier catch-up of
/// the same subscription got to, whichever is later. Those notifications were posted to this
/// very connection already, so a client asking for them again (the same `since`, sent again
/// and again) gets only what came since, not the whole history once more.
fn behind(since: Since, replayed: &BTreeMap<ArtistKey, u64>) -> Since {
    match replayed.get(since.artist.key()) {
        Some(&through) if through > since.seq => Since {
            seq: through,
            ..since
        },
        _ => since,
    }
}

/// The failure of the first of `needed` whose baseline could not be read, taken out of
/// `baseline` (the request fails with it).
fn unread<'a>(
    baseline: &mut Baseline,
    mut needed: impl Iterator<Item = &'a ArtistKey>,
) -> Option<StoreError> {
    let key = needed.find(|key| matches!(baseline.get(*key), Some(Err(_))))?;
    baseline.remove(key)?.err()
}

/// `artist`'s latest `seq`, when it was read.
fn latest(baseline: &Baseline, artist: &ArtistKey) -> Option<u64> {
    baseline.get(artist)?.as_ref().ok().copied()
}

/// The reply's `seq`: each artist's latest, by the name the client used, for those read.
fn known(baseline: &Baseline, artists: &ArtistList) -> BTreeMap<String, u64> {
    artists
        .as_slice()
        .iter()
        .filter_map(|artist| Some((artist.name().to_owned(), latest(baseline, artist.key())?)))
        .collect()
}

/// Unsubscribes `id` from `artists`: the reply, and what changed when it applied.
pub(crate) async fn unsubscribe<S: ConnectionStore>(
    store: &S,
    id: &ConnectionId,
    artists: &ArtistList,
    now: EpochSeconds,
) -> Result<(Frame, Option<Changed>), StoreError> {
    let mut tries = Tries::default();
    loop {
        let state = match tries.next(store, id, now).await? {
            Ok(state) => state,
            Err(reply) => return Ok((reply, None)),
        };
        let held: Vec<&Artist> = artists
            .as_slice()
            .iter()
            .filter(|artist| state.subscriptions.binary_search(artist.key()).is_ok())
            .collect();
        let keys: Vec<ArtistKey> = held.iter().map(|artist| artist.key().clone()).collect();
        if keys.is_empty()
            || store.remove_subscriptions(id, state.version, &keys).await? == Applied::Yes
        {
            let changed = Changed {
                user: state.connection.user_id.clone(),
                artists: held.into_iter().cloned().collect(),
            };
            return Ok((
                Frame::Unsubscribed {
                    artists: artists.names(),
                },
                Some(changed),
            ));
        }
    }
}

/// The tries of a change under the connection's revision check: each reads the connection
/// afresh, after a short random pause when the last one conflicted (another frame of the
/// connection changed it first), up to [`MAX_CONFLICT_RETRIES`] retries.
#[derive(Debug, Default)]
struct Tries {
    done: u32,
}

impl Tries {
    /// The connection's state for the next try; `Err` is the reply instead:
    /// `unknown_connection` without a live record, `busy` when every retry conflicted.
    async fn next<S: ConnectionStore>(
        &mut self,
        store: &S,
        id: &ConnectionId,
        now: EpochSeconds,
    ) -> Result<Result<ConnectionState, Frame>, StoreError> {
        if self.done > MAX_CONFLICT_RETRIES {
            return Ok(Err(busy()));
        }
        if self.done > 0 {
            tokio::time::sleep(conflict_pause()).await;
        }
        self.done += 1;
        Ok(store
            .connection_state(id, now)
            .await?
            .ok_or_else(unknown_connection))
    }
}

fn subscribed(artists: &ArtistList, seq: BTreeMap<String, u64>) -> Frame {
    Frame::Subscribed {
        artists: artists.names(),
        seq,
    }
}

/// Each artist's latest `seq`, read before the subscription is written: the point from which
/// live notifications (or a catch-up) take over. A read that fails is kept as its error (the
/// caller decides whether the request needs it) and logged.
async fn latest_seqs<S: HistoryStore>(
    store: &S,
    artists: &ArtistList,
    now: EpochSeconds,
) -> Baseline {
    let reads = join_all(artists.as_slice().iter().map(|artist| async move {
        let read = store.history(artist.key(), u64::MAX, now, 0).await;
        if let Err(err) = &read {
            tracing::warn!(
                artist = artist.name(),
                error = err as &dyn std::error::Error,
                "could not read an artist's latest seq"
            );
        }
        (artist.key().clone(), read.map(|history| history.last_seq))
    }))
    .await;
    reads.into_iter().collect()
}

/// The reply to a connection with no live record: it is closed after it.
pub(crate) fn unknown_connection() -> Frame {
    Frame::error(
        ErrorCode::UnknownConnection,
        "this connection has expired (or is not registered) and is being closed; reconnect with a fresh token",
    )
}

fn busy() -> Frame {
    Frame::error(
        ErrorCode::Busy,
        "too many concurrent changes to this connection; try again",
    )
}

/// A short random pause so racing writers to one connection spread out.
fn conflict_pause() -> Duration {
    Duration::from_millis(fastrand::u64(5..=40))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::{Connection, EventId, Shard};
    use crate::store::memory::MemoryStore;
    use crate::store::{
        Audience, ConnectionState, History, NewEntry, Removed, Retention, RoomStore, Span,
    };

    const NOW: EpochSeconds = 1_800_000_000;

    /// The memory store, where a notification for an artist is numbered while a subscription to
    /// it is being written and its fan-out misses the subscription: DynamoDB's index lag, made
    /// to happen every time.
    struct NumberedDuringTheWrite(MemoryStore);

    impl ConnectionStore for NumberedDuringTheWrite {
        async fn add_subscriptions(
            &self,
            connection: &Connection,
            version: u32,
            artists: &[Artist],
        ) -> Result<Applied, StoreError> {
            for artist in artists {
                let event = EventId::parse(&format!("during-{}", artist.key())).unwrap();
                let entry = NewEntry {
                    event: &event,
                    artist,
                    detail: "{}",
                    time: "2027-01-15T08:00:00Z",
                };
                let retention = Retention {
                    window_seconds: 3600,
                    max_per_artist: 10,
                };
                self.0.sequence(entry, retention, NOW, NOW + 3600).await?;
            }
            self.0.add_subscriptions(connection, version, artists).await
        }
        async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
            self.0.put_connection(connection).await
        }
        async fn connection_state(
            &self,
            id: &ConnectionId,
            now: EpochSeconds,
        ) -> Result<Option<ConnectionState>, StoreError> {
            self.0.connection_state(id, now).await
        }
        async fn remove_subscriptions(
            &self,
            id: &ConnectionId,
            version: u32,
            keys: &[ArtistKey],
        ) -> Result<Applied, StoreError> {
            self.0.remove_subscriptions(id, version, keys).await
        }
        async fn mark_replayed(
            &self,
            id: &ConnectionId,
            artist: &ArtistKey,
            through: u64,
        ) -> Result<(), StoreError> {
            self.0.mark_replayed(id, artist, through).await
        }
        async fn delete_connection(&self, id: &ConnectionId) -> Result<Removed, StoreError> {
            self.0.delete_connection(id).await
        }
        async fn users(
            &self,
            ids: &[ConnectionId],
            now: EpochSeconds,
        ) -> Result<Vec<(ConnectionId, UserId)>, StoreError> {
            self.0.users(ids, now).await
        }
        async fn admit_connection(
            &self,
            connection: &Connection,
            admission: crate::store::Admission<'_>,
            now: EpochSeconds,
        ) -> Result<crate::store::Admitted, StoreError> {
            self.0.admit_connection(connection, admission, now).await
        }
        async fn release_connection(
            &self,
            user: &crate::domain::UserId,
            id: &ConnectionId,
        ) -> Result<(), StoreError> {
            self.0.release_connection(user, id).await
        }
        async fn revocation(
            &self,
            user: &crate::domain::UserId,
            now: EpochSeconds,
        ) -> Result<Option<EpochSeconds>, StoreError> {
            self.0.revocation(user, now).await
        }
        async fn revoke_user(
            &self,
            user: &crate::domain::UserId,
            at: EpochSeconds,
            until: EpochSeconds,
            now: EpochSeconds,
        ) -> Result<Vec<ConnectionId>, StoreError> {
            self.0.revoke_user(user, at, until, now).await
        }
    }
    impl HistoryStore for NumberedDuringTheWrite {
        async fn sequence(
            &self,
            entry: NewEntry<'_>,
            retention: Retention,
            now: EpochSeconds,
            remember_until: EpochSeconds,
        ) -> Result<u64, StoreError> {
            self.0.sequence(entry, retention, now, remember_until).await
        }
        async fn history(
            &self,
            artist: &ArtistKey,
            after: u64,
            now: EpochSeconds,
            limit: u32,
        ) -> Result<History, StoreError> {
            self.0.history(artist, after, now, limit).await
        }
    }

    #[tokio::test]
    async fn the_seq_baseline_leaves_out_a_notification_numbered_while_the_subscription_is_written()
    {
        let store = NumberedDuringTheWrite(MemoryStore::new());
        let id = ConnectionId::parse("c1").unwrap();
        store
            .put_connection(
                &Connection::builder(id.as_str())
                    .connected_at(NOW)
                    .lifetime(100)
                    .build(),
            )
            .await
            .unwrap();
        let artists = ArtistList::parse(&["Adele"]).unwrap();

        let (reply, _) = subscribe(&store, &id, &artists, Vec::new(), 50, NOW)
            .await
            .unwrap();

        // Seq 1 never reached the new subscription (its fan-out read the index first), so the
        // baseline must not claim it: the client learns of it from the jump when seq 2 arrives.
        assert_eq!(
            reply,
            Frame::Subscribed {
                artists: vec!["Adele".into()],
                seq: BTreeMap::from([("Adele".to_owned(), 0)]),
            }
        );
        let adele = Artist::parse("Adele").unwrap();
        assert_eq!(
            store
                .history(adele.key(), 0, NOW, 10)
                .await
                .unwrap()
                .last_seq,
            1
        );
        let index = store
            .0
            .subscribers(
                &Audience::Artist(adele.key().clone()),
                &Span::whole(Shard::of(&id)),
                NOW,
                10,
            )
            .await
            .unwrap();
        assert_eq!(index.connections, vec![id]);
    }

    async fn alice_connected(store: &MemoryStore) -> ConnectionId {
        let id = ConnectionId::parse("c1").unwrap();
        store
            .put_connection(
                &Connection::builder(id.as_str())
                    .connected_at(NOW)
                    .lifetime(100)
                    .build(),
            )
            .await
            .unwrap();
        id
    }

    fn adele_key() -> ArtistKey {
        Artist::parse("Adele").unwrap().key().clone()
    }

    fn since(name: &str, seq: u64) -> Since {
        Since {
            artist: Artist::parse(name).unwrap(),
            seq,
        }
    }

    #[tokio::test]
    async fn a_baseline_that_cannot_be_read_fails_a_new_subscription_before_anything_is_written() {
        let store = MemoryStore::new();
        let id = alice_connected(&store).await;
        store.fail_history(&adele_key(), 1);
        let artists = ArtistList::parse(&["Adele", "Muse"]).unwrap();

        let result = subscribe(&store, &id, &artists, Vec::new(), 50, NOW).await;

        assert!(
            matches!(result, Err(StoreError::Backend { .. })),
            "{result:?}"
        );
        assert_eq!(store.subscription_count(), 0);
    }

    #[tokio::test]
    async fn an_artist_already_subscribed_whose_baseline_cannot_be_read_is_answered_subscribed_without_its_seq()
     {
        let store = MemoryStore::new();
        let id = alice_connected(&store).await;
        let artists = ArtistList::parse(&["Adele", "Muse"]).unwrap();
        subscribe(&store, &id, &artists, Vec::new(), 50, NOW)
            .await
            .unwrap();
        store.fail_history(&adele_key(), 1);

        let (reply, entered) = subscribe(&store, &id, &artists, Vec::new(), 50, NOW)
            .await
            .unwrap();

        assert_eq!(
            reply,
            Frame::Subscribed {
                artists: vec!["Adele".into(), "Muse".into()],
                seq: BTreeMap::from([("Muse".to_owned(), 0)]),
            }
        );
        assert!(entered.is_some_and(|entered| entered.resume.is_empty()));
        assert_eq!(store.subscription_count(), 2);
    }

    #[tokio::test]
    async fn a_catch_up_needs_its_artists_baseline_even_when_already_subscribed() {
        let store = MemoryStore::new();
        let id = alice_connected(&store).await;
        let artists = ArtistList::parse(&["Adele"]).unwrap();
        subscribe(&store, &id, &artists, Vec::new(), 50, NOW)
            .await
            .unwrap();
        store.fail_history(&adele_key(), 1);

        let result = subscribe(&store, &id, &artists, vec![since("adele", 0)], 50, NOW).await;

        assert!(
            matches!(result, Err(StoreError::Backend { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn the_catch_up_owed_ends_at_the_baseline_read_before_the_write() {
        let store = MemoryStore::new();
        let id = alice_connected(&store).await;
        store
            .publish_for_tests(&Artist::parse("Adele").unwrap(), 7, NOW)
            .await;
        let artists = ArtistList::parse(&["Adele"]).unwrap();

        let (_, entered) = subscribe(&store, &id, &artists, vec![since("ADELE", 3)], 50, NOW)
            .await
            .unwrap();

        assert_eq!(
            entered.unwrap().resume,
            vec![Resume {
                since: since("ADELE", 3),
                latest: 7,
            }]
        );
    }
}
