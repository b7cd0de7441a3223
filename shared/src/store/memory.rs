//! An in-memory [`Store`](super::Store) with the same semantics as the DynamoDB adapter (the
//! contract suite in `marquee-tests` runs against both). For unit tests, the local gateway's default and the
//! benchmark. Clones share one store.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::Reports;
use super::inspect::{ArtistCount, Inspect, Listed, Totals, rank};
use super::presence::{self, Notice, Pacing, PresenceRecord, Told};
use super::{
    Admission, Admitted, Applied, Audience, Bucket, Claim, ConnectionState, ConnectionStore,
    EventStore, HandOff, History, HistoryEntry, HistoryStore, LAPSED_WINDOW_SECONDS, NewEntry,
    RateLimit, Removed, Retention, RoomStore, SEQUENCE_KEPT_SECONDS, Span, Spend, StoreError,
    SubscriberPage, refill,
};
use crate::domain::{
    Artist, ArtistKey, Connection, ConnectionId, EpochSeconds, EventId, Shard, UserId,
};
use crate::report::{DeliveryReport, Finished, ItemKey, ItemOutcome, ReportStart};

/// An event claim: the table's `EVENT#` item.
#[derive(Debug, Clone, Copy)]
struct EventClaim {
    done: bool,
    lease_until: EpochSeconds,
    expires_at: EpochSeconds,
}

/// Which bucket, owned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BucketKey {
    Messages(ConnectionId),
    Posts(ConnectionId),
    Room(ArtistKey),
}

#[derive(Debug, Default)]
struct State {
    connections: HashMap<ConnectionId, (Connection, u32)>,
    /// (connection, artist) -> (expires_at, display name): the table's `SUB#` items.
    subscriptions: BTreeMap<(ConnectionId, ArtistKey), (EpochSeconds, String)>,
    /// (connection, artist) -> the subscription's catch-up watermark (`replayed`); goes with
    /// the subscription.
    replayed: HashMap<(ConnectionId, ArtistKey), u64>,
    /// (artist, shard) -> subscriptions: the `ARTIST#`/`COUNT#` counters.
    counts: HashMap<(ArtistKey, Shard), i64>,
    /// artist -> the name its counters keep (the first one subscribed to).
    names: HashMap<ArtistKey, String>,
    /// bucket -> (tokens, at millis): the buckets on the connection records (messages and
    /// posts) and on the `ARTIST#`/`POSTS` items.
    buckets: HashMap<BucketKey, (f64, i64)>,
    /// (audience, shard, connection) -> expires_at: the sharded `by-artist` index, with its
    /// artist partitions (subscriptions) and its live-connection partitions (records).
    index: BTreeMap<(Audience, Shard, ConnectionId), EpochSeconds>,
    events: HashMap<EventId, EventClaim>,
    /// (event, stretch) -> expires_at: the `HANDOFF#` items.
    hand_offs: HashMap<(EventId, Span), (HandOff, EpochSeconds)>,
    /// artist -> (last seq, expires_at): the `ARTIST#`/`META` counters.
    sequences: HashMap<ArtistKey, (u64, EpochSeconds)>,
    /// (artist, seq) -> (entry, expires_at): the `ARTIST#`/`SEQ#` items.
    history: BTreeMap<(ArtistKey, u64), (HistoryEntry, EpochSeconds)>,
    /// event -> (seq, expires_at): the `EVENT#`/`SEQ` items.
    event_seqs: HashMap<EventId, (u64, EpochSeconds)>,
    /// artist -> history reads still to fail ([`MemoryStore::fail_history`]).
    history_failures: HashMap<ArtistKey, u32>,
    /// user -> connection -> expires_at: the `USER#`/`CONNS` items.
    users: HashMap<UserId, BTreeMap<ConnectionId, EpochSeconds>>,
    /// user -> (revoked_at, until): the `USER#`/`REVOKED` items.
    revocations: HashMap<UserId, (EpochSeconds, EpochSeconds)>,
    /// event -> its delivery report: the `EVENT#`/`REPORT` and `EVENT#`/`ITEM#` items.
    reports: HashMap<EventId, StoredReport>,
    /// What each room was last told of each user, and until when it is kept (seconds).
    presence: HashMap<(ArtistKey, UserId), (PresenceRecord, EpochSeconds)>,
}

/// A report item's state: the `ITEM#` item's `state`, first and last post times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemState {
    Open,
    Done,
    Dead,
}

/// A delivery report and its items.
#[derive(Debug, Clone)]
struct StoredReport {
    report: DeliveryReport,
    items: HashMap<ItemKey, (ItemState, Option<i64>, Option<i64>)>,
    expires_at: EpochSeconds,
}

impl StoredReport {
    /// The report with its first and last post times gathered from its items.
    fn read(&self) -> DeliveryReport {
        let mut report = self.report.clone();
        report.first_post_ms = self.items.values().filter_map(|i| i.1).min();
        report.last_post_ms = self.items.values().filter_map(|i| i.2).max();
        report.finished_all = report.outstanding == 0;
        report.complete = report.finished_all && report.dead_lettered == 0;
        report
    }
}

impl State {
    fn revoked_at(&self, user: &UserId, now: EpochSeconds) -> Option<EpochSeconds> {
        self.revocations
            .get(user)
            .filter(|(_, until)| *until > now)
            .map(|(at, _)| *at)
    }

    /// What `key`'s room was last told of its user, unless it expired.
    fn presence_record(&self, key: &(ArtistKey, UserId), now_ms: i64) -> Option<PresenceRecord> {
        let now = now_ms.div_euclid(1000);
        self.presence
            .get(key)
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(record, _)| *record)
    }

    /// Keeps `write` (if any) as `key`'s record for [`presence::KEPT_SECONDS`].
    fn keep_presence(
        &mut self,
        key: (ArtistKey, UserId),
        write: Option<PresenceRecord>,
        now_ms: i64,
    ) {
        if let Some(write) = write {
            let expires_at = now_ms.div_euclid(1000) + presence::KEPT_SECONDS;
            self.presence.insert(key, (write, expires_at));
        }
    }
}

/// [`Store`](super::Store) in process memory. Cheap to create and to clone (clones share the data).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
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

    /// The next `times` reads of `artist`'s history (its latest `seq` included) fail, as they
    /// would with DynamoDB throttled or unavailable: for tests.
    pub fn fail_history(&self, artist: &ArtistKey, times: u32) {
        *self
            .state()
            .history_failures
            .entry(artist.clone())
            .or_default() += times;
    }
}

impl Reports for MemoryStore {
    async fn open_report(
        &self,
        id: &EventId,
        start: &ReportStart,
        expires_at: EpochSeconds,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        if state
            .reports
            .get(id)
            .is_some_and(|r| r.expires_at > start.opened_at)
        {
            return Ok(());
        }
        let report = DeliveryReport {
            event_id: id.as_str().to_owned(),
            kind: start.kind,
            artist: start.artist.clone(),
            audience: start.audience,
            time: start.time.clone(),
            delivered: 0,
            gone: 0,
            failed: 0,
            retried: 0,
            redriven: 0,
            closed: 0,
            duplicates: 0,
            items: 1,
            finished: 0,
            outstanding: 1,
            dead_lettered: 0,
            first_post_ms: None,
            last_post_ms: None,
            opened_at: start.opened_at,
            finished_all: false,
            complete: false,
            published: false,
        };
        let items = HashMap::from([(ItemKey::root(), (ItemState::Open, None, None))]);
        state.reports.insert(
            id.clone(),
            StoredReport {
                report,
                items,
                expires_at,
            },
        );
        Ok(())
    }

    async fn register_items(
        &self,
        id: &EventId,
        keys: &[ItemKey],
        _expires_at: EpochSeconds,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let Some(stored) = state.reports.get_mut(id) else {
            return Ok(());
        };
        for key in keys {
            if !stored.items.contains_key(key) {
                stored
                    .items
                    .insert(key.clone(), (ItemState::Open, None, None));
                stored.report.items += 1;
                stored.report.outstanding += 1;
            }
        }
        Ok(())
    }

    async fn finish_item(
        &self,
        id: &EventId,
        key: &ItemKey,
        outcome: &ItemOutcome,
        _expires_at: EpochSeconds,
    ) -> Result<Finished, StoreError> {
        let mut state = self.state();
        let Some(stored) = state.reports.get_mut(id) else {
            return Ok(Finished::NoReport);
        };
        let finished = if outcome.dead {
            ItemState::Dead
        } else {
            ItemState::Done
        };
        let times = (outcome.first_post_ms, outcome.last_post_ms);
        let report = &mut stored.report;
        match stored.items.get(key).map(|item| item.0) {
            Some(ItemState::Done | ItemState::Dead) => {
                report.duplicates += outcome.tally.delivered;
                return Ok(Finished::Again);
            }
            Some(ItemState::Open) => {
                report.outstanding = report.outstanding.saturating_sub(1);
            }
            // Finished before its parent registered it: it never counted as outstanding.
            None => report.items += 1,
        }
        stored
            .items
            .insert(key.clone(), (finished, times.0, times.1));
        let tally = outcome.tally;
        report.delivered += tally.delivered;
        report.gone += tally.gone;
        report.failed += tally.failed;
        report.retried += tally.retried;
        report.closed += tally.closed;
        report.redriven += outcome.redriven;
        report.finished += 1;
        report.dead_lettered += u64::from(outcome.dead);
        Ok(Finished::Counted)
    }

    async fn delivery_report(
        &self,
        id: &EventId,
        now: EpochSeconds,
    ) -> Result<Option<DeliveryReport>, StoreError> {
        Ok(self
            .state()
            .reports
            .get(id)
            .filter(|r| r.expires_at > now)
            .map(StoredReport::read))
    }

    async fn claim_publication(
        &self,
        id: &EventId,
        now: EpochSeconds,
    ) -> Result<Option<DeliveryReport>, StoreError> {
        let mut state = self.state();
        let Some(stored) = state.reports.get_mut(id).filter(|r| r.expires_at > now) else {
            return Ok(None);
        };
        if stored.report.outstanding > 0 || stored.report.published {
            return Ok(None);
        }
        stored.report.published = true;
        Ok(Some(stored.read()))
    }

    async fn release_publication(&self, id: &EventId) -> Result<(), StoreError> {
        if let Some(stored) = self.state().reports.get_mut(id) {
            stored.report.published = false;
        }
        Ok(())
    }
}

#[cfg(test)]
impl MemoryStore {
    /// Numbers `count` notifications of `artist` (events `e1`, `e2`, …, detail `{}`) at `now`,
    /// kept for an hour: a history for tests to replay.
    #[allow(clippy::unwrap_used)]
    pub(crate) async fn publish_for_tests(&self, artist: &Artist, count: u64, now: EpochSeconds) {
        for n in 1..=count {
            let event = EventId::parse(&format!("e{n}")).unwrap();
            let entry = NewEntry {
                event: &event,
                artist,
                detail: "{}",
                time: "2027-01-15T08:00:00Z",
            };
            let retention = Retention {
                window_seconds: 3600,
                max_per_artist: 100,
            };
            self.sequence(entry, retention, now, now + 3600)
                .await
                .unwrap();
        }
    }

    /// Records `count` connections `<prefix>-0000`, `<prefix>-0001`, … (user `u<i>`, live
    /// from `now` for 100 s, allowed to publish to `artist`) each subscribed to `artist`.
    #[allow(clippy::unwrap_used)]
    pub(crate) async fn fans_for_tests(
        &self,
        prefix: &str,
        artist: &str,
        count: usize,
        now: EpochSeconds,
    ) {
        let artists = crate::domain::ArtistList::parse(&[artist]).unwrap();
        for i in 0..count {
            let connection = Connection::builder(&format!("{prefix}-{i:04}"))
                .user(&format!("u{i}"))
                .connected_at(now)
                .lifetime(100)
                .publish(&[artist])
                .build();
            self.put_connection(&connection).await.unwrap();
            self.add_subscriptions(&connection, 0, artists.as_slice())
                .await
                .unwrap();
        }
    }
}

impl Inspect for MemoryStore {
    async fn totals(&self) -> Result<Totals, StoreError> {
        // The records held, live or lapsed: what the table's counters count.
        let state = self.state();
        Ok(Totals {
            connections: crate::domain::saturating_u64(state.connections.len()),
            subscriptions: crate::domain::saturating_u64(state.subscriptions.len()),
        })
    }

    async fn top_artists(&self, limit: usize) -> Result<Vec<ArtistCount>, StoreError> {
        let state = self.state();
        let mut totals: HashMap<&ArtistKey, i64> = HashMap::new();
        for ((key, _), count) in &state.counts {
            *totals.entry(key).or_default() += count;
        }
        let mut counts: Vec<ArtistCount> = totals
            .into_iter()
            .filter(|(_, total)| *total > 0)
            .map(|(key, total)| ArtistCount {
                key: key.clone(),
                name: state
                    .names
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| key.as_str().to_owned()),
                subscribers: u64::try_from(total).unwrap_or(0),
            })
            .collect();
        rank(&mut counts);
        counts.truncate(limit);
        Ok(counts)
    }

    async fn user_connections(&self, user: &UserId) -> Result<Vec<Listed>, StoreError> {
        Ok(self
            .state()
            .users
            .get(user)
            .map(|listed| {
                listed
                    .iter()
                    .map(|(id, expires_at)| Listed {
                        id: id.clone(),
                        expires_at: *expires_at,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl ConnectionStore for MemoryStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let mut state = self.state();
        state
            .connections
            .insert(connection.id.clone(), (connection.clone(), 0));
        state.index.insert(
            (
                Audience::Everyone,
                Shard::of(&connection.id),
                connection.id.clone(),
            ),
            connection.expires_at,
        );
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
        let subscriptions: Vec<ArtistKey> = subscriptions_of(&state.subscriptions, id)
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(key, _)| key.clone())
            .collect();
        let replayed = subscriptions
            .iter()
            .filter_map(|key| {
                let through = state.replayed.get(&(id.clone(), key.clone()))?;
                Some((key.clone(), *through))
            })
            .collect();
        Ok(Some(ConnectionState {
            connection: connection.clone(),
            subscriptions,
            version: *version,
            replayed,
        }))
    }

    async fn mark_replayed(
        &self,
        id: &ConnectionId,
        artist: &ArtistKey,
        through: u64,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let key = (id.clone(), artist.clone());
        if state.subscriptions.contains_key(&key) {
            let mark = state.replayed.entry(key).or_default();
            *mark = (*mark).max(through);
        }
        Ok(())
    }

    async fn add_subscriptions(
        &self,
        connection: &Connection,
        version: u32,
        artists: &[Artist],
    ) -> Result<Applied, StoreError> {
        let mut state = self.state();
        let held = artists.iter().any(|artist| {
            state
                .subscriptions
                .contains_key(&(connection.id.clone(), artist.key().clone()))
        });
        let Some((_, current)) = state.connections.get_mut(&connection.id) else {
            return Ok(Applied::Conflict);
        };
        if *current != version || held {
            return Ok(Applied::Conflict);
        }
        *current = version.wrapping_add(1);
        let shard = Shard::of(&connection.id);
        for artist in artists {
            let key = artist.key().clone();
            state.subscriptions.insert(
                (connection.id.clone(), key.clone()),
                (connection.expires_at, artist.name().to_owned()),
            );
            *state.counts.entry((key.clone(), shard)).or_default() += 1;
            state
                .names
                .entry(key.clone())
                .or_insert_with(|| artist.name().to_owned());
            state.index.insert(
                (Audience::Artist(key), shard, connection.id.clone()),
                connection.expires_at,
            );
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
        let all_held = keys
            .iter()
            .all(|key| state.subscriptions.contains_key(&(id.clone(), key.clone())));
        let Some((_, current)) = state.connections.get_mut(id) else {
            return Ok(Applied::Conflict);
        };
        if *current != version || !all_held {
            return Ok(Applied::Conflict);
        }
        *current = version.wrapping_add(1);
        let shard = Shard::of(id);
        for key in keys {
            state.subscriptions.remove(&(id.clone(), key.clone()));
            state.replayed.remove(&(id.clone(), key.clone()));
            state
                .index
                .remove(&(Audience::Artist(key.clone()), shard, id.clone()));
            *state.counts.entry((key.clone(), shard)).or_default() -= 1;
        }
        Ok(Applied::Yes)
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<Removed, StoreError> {
        let mut state = self.state();
        let record = state.connections.remove(id);
        let mut removed = Removed {
            items: usize::from(record.is_some()),
            user: record.map(|(connection, _)| connection.user_id),
            artists: Vec::new(),
        };
        if let Some(user) = &removed.user
            && let Some(listed) = state.users.get_mut(user)
        {
            listed.remove(id);
        }
        let shard = Shard::of(id);
        state.index.remove(&(Audience::Everyone, shard, id.clone()));
        state.buckets.remove(&BucketKey::Messages(id.clone()));
        state.buckets.remove(&BucketKey::Posts(id.clone()));
        let keys: Vec<ArtistKey> = subscriptions_of(&state.subscriptions, id)
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            state.replayed.remove(&(id.clone(), key.clone()));
            if let Some((_, name)) = state.subscriptions.remove(&(id.clone(), key.clone()))
                && let Ok(artist) = Artist::parse(&name).or_else(|_| Artist::parse(key.as_str()))
            {
                removed.artists.push(artist);
            }
            state
                .index
                .remove(&(Audience::Artist(key.clone()), shard, id.clone()));
            *state.counts.entry((key, shard)).or_default() -= 1;
            removed.items += 1;
        }
        Ok(removed)
    }

    async fn users(
        &self,
        ids: &[ConnectionId],
        now: EpochSeconds,
    ) -> Result<Vec<(ConnectionId, UserId)>, StoreError> {
        let state = self.state();
        Ok(ids
            .iter()
            .filter_map(|id| state.connections.get(id))
            .filter(|(connection, _)| connection.is_live(now))
            .map(|(connection, _)| (connection.id.clone(), connection.user_id.clone()))
            .collect())
    }

    async fn admit_connection(
        &self,
        connection: &Connection,
        admission: Admission<'_>,
        now: EpochSeconds,
    ) -> Result<Admitted, StoreError> {
        let mut state = self.state();
        let user = &connection.user_id;
        if super::is_revoked(admission.issued_at, state.revoked_at(user, now)) {
            return Ok(Admitted::Revoked);
        }
        let listed = state.users.entry(user.clone()).or_default();
        listed.retain(|_, expires_at| *expires_at > now);
        let replacing = admission
            .replaces
            .is_some_and(|old| old != &connection.id && listed.contains_key(old));
        let limit = usize::try_from(admission.cap)
            .unwrap_or(usize::MAX)
            .saturating_add(usize::from(replacing));
        if listed.len() >= limit {
            return Ok(Admitted::Full);
        }
        listed.insert(connection.id.clone(), connection.expires_at);
        Ok(Admitted::Yes)
    }

    async fn release_connection(&self, user: &UserId, id: &ConnectionId) -> Result<(), StoreError> {
        if let Some(listed) = self.state().users.get_mut(user) {
            listed.remove(id);
        }
        Ok(())
    }

    async fn revocation(
        &self,
        user: &UserId,
        now: EpochSeconds,
    ) -> Result<Option<EpochSeconds>, StoreError> {
        Ok(self.state().revoked_at(user, now))
    }

    async fn revoke_user(
        &self,
        user: &UserId,
        at: EpochSeconds,
        until: EpochSeconds,
        now: EpochSeconds,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let mut state = self.state();
        let later_stands = state.revoked_at(user, now).is_some_and(|held| held > at);
        if !later_stands {
            state.revocations.insert(user.clone(), (at, until));
        }
        Ok(state
            .users
            .get(user)
            .map(|listed| listed.keys().cloned().collect())
            .unwrap_or_default())
    }
}

impl RoomStore for MemoryStore {
    async fn presence_told(
        &self,
        artist: &ArtistKey,
        user: &UserId,
        notice: Notice,
        pacing: Pacing,
        now_ms: i64,
    ) -> Result<Told, StoreError> {
        let mut state = self.state();
        let key = (artist.clone(), user.clone());
        let record = state.presence_record(&key, now_ms);
        let (told, write) = presence::decide(record.as_ref(), notice, pacing, now_ms);
        state.keep_presence(key, write, now_ms);
        Ok(told)
    }

    async fn settle_presence(
        &self,
        artist: &ArtistKey,
        user: &UserId,
        notice: Notice,
        armed_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let key = (artist.clone(), user.clone());
        let record = state.presence_record(&key, now_ms);
        let (tell, write) = presence::settle(record.as_ref(), notice, armed_ms, now_ms);
        state.keep_presence(key, write, now_ms);
        Ok(tell)
    }

    async fn subscriber_count(&self, artist: &ArtistKey) -> Result<u64, StoreError> {
        let state = self.state();
        let total: i64 = Shard::all()
            .filter_map(|shard| state.counts.get(&(artist.clone(), shard)))
            .sum();
        Ok(u64::try_from(total).unwrap_or(0))
    }

    async fn spend(
        &self,
        bucket: Bucket<'_>,
        spend: Spend,
        limit: RateLimit,
        now_millis: i64,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let key = match bucket {
            Bucket::Messages(id) | Bucket::Posts(id) if !state.connections.contains_key(id) => {
                return Ok(false);
            }
            Bucket::Messages(id) => BucketKey::Messages(id.clone()),
            Bucket::Posts(id) => BucketKey::Posts(id.clone()),
            Bucket::Room(artist) => BucketKey::Room(artist.clone()),
        };
        let (tokens, at) = state
            .buckets
            .get(&key)
            .copied()
            .unwrap_or((f64::from(limit.burst), now_millis));
        // A spend whose clock was read before the last one's (frames run side by side) counts
        // from the last one's: the bucket's time never goes back, so no refill counts twice.
        let now_millis = now_millis.max(at);
        let Some(left) = spend.from(refill(tokens, at, now_millis, limit)) else {
            return Ok(false);
        };
        if spend.cost != 0 {
            state.buckets.insert(key, (left, now_millis));
        }
        Ok(true)
    }

    async fn subscribers(
        &self,
        audience: &Audience,
        span: &Span,
        now: EpochSeconds,
        limit: u32,
    ) -> Result<SubscriberPage, StoreError> {
        let state = self.state();
        let key = |id: &ConnectionId| (audience.clone(), span.shard, id.clone());
        let start = match &span.after {
            Some(id) => Bound::Excluded(key(id)),
            None => Bound::Included(key(&ConnectionId::lowest())),
        };
        let in_span = |(a, s, id): &(Audience, Shard, ConnectionId)| {
            a == audience && *s == span.shard && span.until.as_ref().is_none_or(|until| id <= until)
        };
        let examined = state
            .index
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| in_span(k))
            .take(usize::try_from(limit.max(1)).unwrap_or(usize::MAX));
        let mut page = SubscriberPage::default();
        let mut last = None;
        for ((_, _, id), expires_at) in examined {
            if *expires_at > now {
                page.connections.push(id.clone());
            } else if *expires_at > now.saturating_sub(LAPSED_WINDOW_SECONDS) {
                page.lapsed.push(id.clone());
            }
            last = Some(id);
        }
        let more = last.is_some_and(|id| {
            state
                .index
                .range((Bound::Excluded(key(id)), Bound::Unbounded))
                .next()
                .is_some_and(|(k, _)| in_span(k))
        });
        if more {
            page.next = last.cloned();
        }
        Ok(page)
    }
}

impl EventStore for MemoryStore {
    async fn claim_event(
        &self,
        id: &EventId,
        now: EpochSeconds,
        lease_until: EpochSeconds,
        expires_at: EpochSeconds,
    ) -> Result<Claim, StoreError> {
        let mut state = self.state();
        match state.events.get(id) {
            Some(claim) if claim.expires_at > now && claim.done => Ok(Claim::Done),
            Some(claim) if claim.expires_at > now && claim.lease_until > now => Ok(Claim::Running),
            _ => {
                state.events.insert(
                    id.clone(),
                    EventClaim {
                        done: false,
                        lease_until,
                        expires_at,
                    },
                );
                Ok(Claim::New)
            }
        }
    }

    async fn finish_event(&self, id: &EventId, expires_at: EpochSeconds) -> Result<(), StoreError> {
        let mut state = self.state();
        let claim = state.events.entry(id.clone()).or_insert(EventClaim {
            done: true,
            lease_until: 0,
            expires_at,
        });
        claim.done = true;
        claim.expires_at = expires_at;
        Ok(())
    }

    async fn hand_off(&self, id: &EventId, span: &Span) -> Result<Option<HandOff>, StoreError> {
        Ok(self
            .state()
            .hand_offs
            .get(&(id.clone(), span.clone()))
            .map(|(hand_off, _)| hand_off.clone()))
    }

    async fn pin_hand_off(
        &self,
        id: &EventId,
        span: &Span,
        next: &ConnectionId,
        expires_at: EpochSeconds,
    ) -> Result<HandOff, StoreError> {
        let mut state = self.state();
        let (pinned, _) = state
            .hand_offs
            .entry((id.clone(), span.clone()))
            .or_insert_with(|| {
                let hand_off = HandOff {
                    next: Some(next.clone()),
                    sent: false,
                };
                (hand_off, expires_at)
            });
        Ok(pinned.clone())
    }

    async fn hand_off_sent(&self, id: &EventId, span: &Span) -> Result<(), StoreError> {
        if let Some((hand_off, _)) = self.state().hand_offs.get_mut(&(id.clone(), span.clone())) {
            hand_off.sent = true;
        }
        Ok(())
    }

    async fn release_event(&self, id: &EventId) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.events.get(id).is_some_and(|claim| !claim.done) {
            state.events.remove(id);
        }
        Ok(())
    }
}

impl HistoryStore for MemoryStore {
    async fn sequence(
        &self,
        entry: NewEntry<'_>,
        retention: Retention,
        now: EpochSeconds,
        remember_until: EpochSeconds,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        if let Some((seq, expires_at)) = state.event_seqs.get(entry.event)
            && *expires_at > now
        {
            return Ok(*seq);
        }
        let key = entry.artist.key().clone();
        let last = match state.sequences.get(&key) {
            Some((last, expires_at)) if *expires_at > now => *last,
            _ => 0,
        };
        let seq = last + 1;
        state.sequences.insert(
            key.clone(),
            (seq, now.saturating_add(SEQUENCE_KEPT_SECONDS)),
        );
        if let Some(dropped) = seq.checked_sub(u64::from(retention.max_per_artist)) {
            state.history.remove(&(key.clone(), dropped));
        }
        state.history.insert(
            (key, seq),
            (
                HistoryEntry {
                    seq,
                    event: entry.event.clone(),
                    artist: entry.artist.name().to_owned(),
                    detail: entry.detail.to_owned(),
                    time: entry.time.to_owned(),
                },
                now.saturating_add(retention.window_seconds),
            ),
        );
        state
            .event_seqs
            .insert(entry.event.clone(), (seq, remember_until));
        Ok(seq)
    }

    async fn history(
        &self,
        artist: &ArtistKey,
        after: u64,
        now: EpochSeconds,
        limit: u32,
    ) -> Result<History, StoreError> {
        let mut state = self.state();
        if let Some(left) = state
            .history_failures
            .get_mut(artist)
            .filter(|left| **left > 0)
        {
            *left -= 1;
            return Err(StoreError::Backend {
                operation: "Query",
                source: "a scripted failure (MemoryStore::fail_history)".into(),
            });
        }
        let last_seq = match state.sequences.get(artist) {
            Some((last, expires_at)) if *expires_at > now => *last,
            _ => return Ok(History::default()),
        };
        if after >= last_seq {
            return Ok(History {
                last_seq,
                entries: Vec::new(),
            });
        }
        let from = (artist.clone(), after.saturating_add(1));
        let to = (artist.clone(), last_seq);
        let mut entries: Vec<HistoryEntry> = state
            .history
            .range(from..=to)
            .filter(|(_, (_, expires_at))| *expires_at > now)
            .map(|(_, (entry, _))| entry.clone())
            .collect();
        let keep = usize::try_from(limit).unwrap_or(usize::MAX);
        if entries.len() > keep {
            entries.drain(..entries.len() - keep);
        }
        Ok(History { last_seq, entries })
    }
}

/// One connection's subscriptions, in artist-key order.
fn subscriptions_of<'a>(
    subscriptions: &'a BTreeMap<(ConnectionId, ArtistKey), (EpochSeconds, String)>,
    id: &'a ConnectionId,
) -> impl Iterator<Item = (&'a ArtistKey, EpochSeconds)> + 'a {
    let first = (id.clone(), ArtistKey::from_stored(String::new()));
    subscriptions
        .range((Bound::Included(first), Bound::Unbounded))
        .take_while(move |((owner, _), _)| owner == id)
        .map(|((_, key), (expires_at, _))| (key, *expires_at))
}
