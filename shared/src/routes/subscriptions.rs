//! Subscribing and unsubscribing: the cap, the scope and the revision check on the
//! connection record, retried when a concurrent change of the same connection wins.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use crate::domain::{Artist, ArtistKey, ArtistList, ConnectionId, EpochSeconds, UserId};
use crate::store::{Applied, Store, StoreError};
use crate::wire::{ErrorCode, Frame};

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

/// Subscribes `id` to `artists`: the reply (with each artist's latest `seq`, read before the
/// subscription is written), and what changed when it applied.
pub(crate) async fn subscribe<S: Store>(
    store: &S,
    id: &ConnectionId,
    artists: &ArtistList,
    cap: u32,
    now: EpochSeconds,
) -> Result<(Frame, Option<Changed>), StoreError> {
    let mut baseline = None;
    for attempt in 0..=MAX_CONFLICT_RETRIES {
        if attempt > 0 {
            tokio::time::sleep(conflict_pause()).await;
        }
        let Some(state) = store.connection_state(id, now).await? else {
            return Ok((unknown_connection(), None));
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
        let changed = |artists: Vec<Artist>| Changed {
            user: state.connection.user_id.clone(),
            artists,
        };
        // Before the write: a notification numbered after this baseline either reaches the
        // new subscription or shows as a jump in `seq`, even one whose fan-out read the index
        // before the subscription showed in it. Read once; any earlier baseline also holds.
        let seq = match &baseline {
            Some(seq) => BTreeMap::clone(seq),
            None => BTreeMap::clone(baseline.insert(latest_seqs(store, artists, now).await?)),
        };
        if new.is_empty() {
            return Ok((subscribed(artists, seq), Some(changed(new))));
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
            return Ok((subscribed(artists, seq), Some(changed(new))));
        }
    }
    Ok((busy(), None))
}

/// Unsubscribes `id` from `artists`: the reply, and what changed when it applied.
pub(crate) async fn unsubscribe<S: Store>(
    store: &S,
    id: &ConnectionId,
    artists: &ArtistList,
    now: EpochSeconds,
) -> Result<(Frame, Option<Changed>), StoreError> {
    for attempt in 0..=MAX_CONFLICT_RETRIES {
        if attempt > 0 {
            tokio::time::sleep(conflict_pause()).await;
        }
        let Some(state) = store.connection_state(id, now).await? else {
            return Ok((unknown_connection(), None));
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
    Ok((busy(), None))
}

fn subscribed(artists: &ArtistList, seq: BTreeMap<String, u64>) -> Frame {
    Frame::Subscribed {
        artists: artists.names(),
        seq,
    }
}

/// Each artist's latest `seq`, read before the subscription is written: the point from which
/// live notifications (or a catch-up) take over.
async fn latest_seqs<S: Store>(
    store: &S,
    artists: &ArtistList,
    now: EpochSeconds,
) -> Result<BTreeMap<String, u64>, StoreError> {
    let reads = join_all(artists.as_slice().iter().map(|artist| async move {
        let history = store.history(artist.key(), u64::MAX, now, 0).await?;
        Ok::<_, StoreError>((artist.name().to_owned(), history.last_seq))
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
    use crate::domain::{Connection, EventId, Scope, Shard};
    use crate::store::memory::MemoryStore;
    use crate::store::{
        Audience, Claim, ConnectionState, History, NewEntry, RateLimit, Removed, Retention, Span,
        SubscriberPage,
    };

    const NOW: EpochSeconds = 1_800_000_000;

    /// The memory store, where a notification for an artist is numbered while a subscription to
    /// it is being written and its fan-out misses the subscription: DynamoDB's index lag, made
    /// to happen every time.
    struct NumberedDuringTheWrite(MemoryStore);

    impl Store for NumberedDuringTheWrite {
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
        async fn subscriber_count(&self, artist: &ArtistKey) -> Result<u64, StoreError> {
            self.0.subscriber_count(artist).await
        }
        async fn take_token(
            &self,
            id: &ConnectionId,
            limit: RateLimit,
            now_millis: i64,
        ) -> Result<bool, StoreError> {
            self.0.take_token(id, limit, now_millis).await
        }
        async fn subscribers(
            &self,
            audience: &Audience,
            span: &Span,
            now: EpochSeconds,
            limit: u32,
        ) -> Result<SubscriberPage, StoreError> {
            self.0.subscribers(audience, span, now, limit).await
        }
        async fn claim_event(
            &self,
            id: &EventId,
            now: EpochSeconds,
            lease_until: EpochSeconds,
            expires_at: EpochSeconds,
        ) -> Result<Claim, StoreError> {
            self.0.claim_event(id, now, lease_until, expires_at).await
        }
        async fn finish_event(
            &self,
            id: &EventId,
            expires_at: EpochSeconds,
        ) -> Result<(), StoreError> {
            self.0.finish_event(id, expires_at).await
        }
        async fn hand_off_recorded(&self, id: &EventId, span: &Span) -> Result<bool, StoreError> {
            self.0.hand_off_recorded(id, span).await
        }
        async fn record_hand_off(
            &self,
            id: &EventId,
            span: &Span,
            expires_at: EpochSeconds,
        ) -> Result<(), StoreError> {
            self.0.record_hand_off(id, span, expires_at).await
        }
        async fn release_event(&self, id: &EventId) -> Result<(), StoreError> {
            self.0.release_event(id).await
        }
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
            .put_connection(&Connection {
                id: id.clone(),
                user_id: UserId::parse("alice").unwrap(),
                connected_at: NOW,
                expires_at: NOW + 100,
                scope: Scope::Any,
                publish: Vec::new(),
            })
            .await
            .unwrap();
        let artists = ArtistList::parse(&["Adele"]).unwrap();

        let (reply, _) = subscribe(&store, &id, &artists, 50, NOW).await.unwrap();

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
}
