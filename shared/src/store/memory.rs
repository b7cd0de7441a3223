//! An in-memory [`Store`] with the same semantics as the DynamoDB adapter (the contract suite
//! in `marquee-tests` runs against both). For unit tests and the local gateway's default.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Applied, Claim, ConnectionState, Cursor, Store, StoreError, SubscriberPage};
use crate::domain::{Artist, ArtistKey, Connection, ConnectionId, EpochSeconds, EventId};

#[derive(Debug, Default)]
struct State {
    connections: HashMap<ConnectionId, (Connection, u32)>,
    /// (connection, artist) -> expires_at: the table's `SUB#` items.
    subscriptions: BTreeMap<(ConnectionId, ArtistKey), EpochSeconds>,
    /// (artist, connection) -> expires_at: the `by-artist` index.
    by_artist: BTreeMap<(ArtistKey, ConnectionId), EpochSeconds>,
    events: HashMap<EventId, EpochSeconds>,
}

/// [`Store`] in process memory. Cheap to create; share it behind an `Arc` if needed.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than the panic itself; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many subscription records exist (live or not), for tests and diagnostics.
    #[must_use]
    pub fn subscription_count(&self) -> usize {
        self.state().subscriptions.len()
    }
}

impl Store for MemoryStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        self.state()
            .connections
            .insert(connection.id.clone(), (connection.clone(), 0));
        Ok(())
    }

    async fn connection_state(
        &self,
        id: &ConnectionId,
        now: EpochSeconds,
    ) -> Result<Option<ConnectionState>, StoreError> {
        let state = self.state();
        let Some((connection, version)) = state.connections.get(id) else {
            return Ok(None);
        };
        if !connection.is_live(now) {
            return Ok(None);
        }
        let subscriptions = subscriptions_of(&state.subscriptions, id)
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(key, _)| key.clone())
            .collect();
        Ok(Some(ConnectionState {
            connection: connection.clone(),
            subscriptions,
            version: *version,
        }))
    }

    async fn add_subscriptions(
        &self,
        connection: &Connection,
        version: u32,
        artists: &[Artist],
    ) -> Result<Applied, StoreError> {
        let mut state = self.state();
        let Some((_, current)) = state.connections.get_mut(&connection.id) else {
            return Ok(Applied::Conflict);
        };
        if *current != version {
            return Ok(Applied::Conflict);
        }
        let added = u32::try_from(artists.len()).unwrap_or(u32::MAX);
        *current = version.saturating_add(added);
        for artist in artists {
            let key = artist.key().clone();
            state
                .subscriptions
                .insert((connection.id.clone(), key.clone()), connection.expires_at);
            state
                .by_artist
                .insert((key, connection.id.clone()), connection.expires_at);
        }
        Ok(Applied::Yes)
    }

    async fn remove_subscriptions(
        &self,
        id: &ConnectionId,
        version: u32,
        keys: &[ArtistKey],
    ) -> Result<Applied, StoreError> {
        let mut state = self.state();
        let Some((_, current)) = state.connections.get_mut(id) else {
            return Ok(Applied::Conflict);
        };
        if *current != version {
            return Ok(Applied::Conflict);
        }
        let removed = u32::try_from(keys.len()).unwrap_or(u32::MAX);
        *current = version.saturating_sub(removed);
        for key in keys {
            state.subscriptions.remove(&(id.clone(), key.clone()));
            state.by_artist.remove(&(key.clone(), id.clone()));
        }
        Ok(Applied::Yes)
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<usize, StoreError> {
        let mut state = self.state();
        let mut count = usize::from(state.connections.remove(id).is_some());
        let keys: Vec<ArtistKey> = subscriptions_of(&state.subscriptions, id)
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            state.subscriptions.remove(&(id.clone(), key.clone()));
            state.by_artist.remove(&(key, id.clone()));
            count += 1;
        }
        Ok(count)
    }

    async fn subscribers(
        &self,
        artist: &ArtistKey,
        now: EpochSeconds,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<SubscriberPage, StoreError> {
        let state = self.state();
        let start = match after {
            Some(Cursor(id)) => Bound::Excluded((artist.clone(), id.clone())),
            None => Bound::Included((artist.clone(), ConnectionId::lowest())),
        };
        let examined = state
            .by_artist
            .range((start, Bound::Unbounded))
            .take_while(|((key, _), _)| key == artist)
            .take(usize::try_from(limit.max(1)).unwrap_or(usize::MAX));
        let mut page = SubscriberPage::default();
        let mut last = None;
        for ((_, id), expires_at) in examined {
            if *expires_at > now {
                page.connections.push(id.clone());
            }
            last = Some(id);
        }
        let more = last.is_some_and(|id| {
            state
                .by_artist
                .range((
                    Bound::Excluded((artist.clone(), id.clone())),
                    Bound::Unbounded,
                ))
                .next()
                .is_some_and(|((key, _), _)| key == artist)
        });
        if more {
            page.next = last.map(|id| Cursor(id.clone()));
        }
        Ok(page)
    }

    async fn claim_event(
        &self,
        id: &EventId,
        now: EpochSeconds,
        expires_at: EpochSeconds,
    ) -> Result<Claim, StoreError> {
        let mut state = self.state();
        match state.events.get(id) {
            Some(held_until) if *held_until > now => Ok(Claim::Duplicate),
            _ => {
                state.events.insert(id.clone(), expires_at);
                Ok(Claim::New)
            }
        }
    }

    async fn release_event(&self, id: &EventId) -> Result<(), StoreError> {
        self.state().events.remove(id);
        Ok(())
    }
}

/// One connection's subscriptions, in artist-key order.
fn subscriptions_of<'a>(
    subscriptions: &'a BTreeMap<(ConnectionId, ArtistKey), EpochSeconds>,
    id: &'a ConnectionId,
) -> impl Iterator<Item = (&'a ArtistKey, EpochSeconds)> + 'a {
    let first = (id.clone(), ArtistKey::from_stored(String::new()));
    subscriptions
        .range((Bound::Included(first), Bound::Unbounded))
        .take_while(move |((owner, _), _)| owner == id)
        .map(|((_, key), expires_at)| (key, *expires_at))
}
