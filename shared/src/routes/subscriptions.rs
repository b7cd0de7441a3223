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

/// Subscribes `id` to `artists`: the reply, and what changed when it applied.
pub(crate) async fn subscribe<S: Store>(
    store: &S,
    id: &ConnectionId,
    artists: &ArtistList,
    cap: u32,
    now: EpochSeconds,
) -> Result<(Frame, Option<Changed>), StoreError> {
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
        if new.is_empty() {
            return Ok((subscribed(artists), Some(changed(new))));
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
            return Ok((subscribed(artists), Some(changed(new))));
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

fn subscribed(artists: &ArtistList) -> Frame {
    Frame::Subscribed {
        artists: artists.names(),
        seq: BTreeMap::new(),
    }
}

/// Each artist's latest `seq`, read after the subscription was written: the point from which
/// live notifications (or a catch-up) take over.
pub(crate) async fn latest_seqs<S: Store>(
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
