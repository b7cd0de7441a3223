//! The benchmark's stand-ins: a push that counts deliveries per subscriber after a simulated
//! round trip, and the in-memory store and queue wrapped so that the data they keep is
//! counted under [`heap::STAND_INS`] rather than under the worker that called them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use marquee::budget::Lane;
use marquee::domain::{Artist, ArtistKey, Connection, ConnectionId, EpochSeconds, EventId, UserId};
use marquee::push::{Posted, Push, PushError};
use marquee::queue::memory::MemoryQueue;
use marquee::queue::{Inbox, Queue, QueueError, Received};
use marquee::store::memory::MemoryStore;
use marquee::store::{
    Applied, Audience, Bucket, Claim, ConnectionState, HandOff, History, NewEntry, Notice, Pacing,
    RateLimit, Removed, Retention, Span, Spend, StoreError, SubscriberPage, Told,
};
use marquee::work::WorkItem;
use tokio::time::Instant;

use crate::heap::{self, STAND_INS};
use crate::subscriber_index;
use marquee::store::{ConnectionStore, EventStore, HistoryStore, RoomStore};

/// One delivery counter per subscriber (index `i` is `bench-000000i`), shared by every push.
#[derive(Debug)]
pub(crate) struct Deliveries {
    counts: Vec<AtomicU32>,
    reached: AtomicUsize,
    strays: AtomicU64,
}

/// What [`Deliveries`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reach {
    /// Successful posts, duplicates included.
    pub(crate) posts: u64,
    /// Subscribers never reached.
    pub(crate) lost: u64,
    /// Posts beyond the first to the same subscriber.
    pub(crate) duplicates: u64,
    /// Posts to connections that are not benchmark subscribers (always 0).
    pub(crate) strays: u64,
}

impl Deliveries {
    pub(crate) fn new(subscribers: usize) -> Self {
        Self {
            counts: (0..subscribers).map(|_| AtomicU32::new(0)).collect(),
            reached: AtomicUsize::new(0),
            strays: AtomicU64::new(0),
        }
    }

    fn record(&self, id: &ConnectionId) {
        match subscriber_index(id).and_then(|i| self.counts.get(i)) {
            Some(count) => {
                if count.fetch_add(1, Ordering::Relaxed) == 0 {
                    self.reached.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.strays.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Subscribers reached at least once so far.
    pub(crate) fn reached(&self) -> usize {
        self.reached.load(Ordering::Relaxed)
    }

    pub(crate) fn reach(&self) -> Reach {
        let mut reach = Reach {
            strays: self.strays.load(Ordering::Relaxed),
            ..Reach::default()
        };
        for count in &self.counts {
            let n = u64::from(count.load(Ordering::Relaxed));
            reach.posts += n;
            match n {
                0 => reach.lost += 1,
                n => reach.duplicates += n - 1,
            }
        }
        reach.posts += reach.strays;
        reach
    }
}

/// The simulated Management API round trip of a [`BenchPush`].
///
/// tokio's timer fires on whole-millisecond ticks and rounds a deadline up to the next one, and
/// the runtime wakes a little after the tick, so a plain `sleep(20 ms)` averages about 21.4 ms
/// on the benchmark machine: every post would be slower than the nominal round trip, and the
/// benchmark would blame the pipeline for the timer. So each push aims a little early, by a
/// *lead* that it adjusts after every post by a fraction (`1 / gain`) of how far the measured
/// round trip missed the nominal one (an integral controller): the measured mean round trip
/// settles on the nominal value, and the tables print it so that this can be checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoundTrip {
    /// What a post should take on average (zero: no wait at all).
    pub(crate) nominal: Duration,
    /// The lead to start with (the previous run's, so a run starts on target).
    pub(crate) lead: Duration,
    /// The controller's divisor: posts in flight per client × 4 moves the lead by about a
    /// quarter of the error per round of posts.
    pub(crate) gain: u32,
}

/// A simulated round trip that aims early by a lead it adjusts after every wait ([`RoundTrip`]),
/// so that its measured mean is the nominal value; it keeps the total time waited. Shared by
/// the in-process push ([`BenchPush`]) and the `lambda` mode's Management API stand-in.
#[derive(Debug)]
pub(crate) struct Delay {
    round_trip: RoundTrip,
    lead_nanos: AtomicI64,
    waited_nanos: AtomicU64,
}

impl Delay {
    pub(crate) fn new(round_trip: RoundTrip) -> Self {
        Self {
            round_trip,
            lead_nanos: AtomicI64::new(nanos(round_trip.lead)),
            waited_nanos: AtomicU64::new(0),
        }
    }

    /// Total time its completed waits took.
    pub(crate) fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }

    /// How early it aims now.
    pub(crate) fn lead(&self) -> Duration {
        Duration::from_nanos(
            u64::try_from(self.lead_nanos.load(Ordering::Relaxed)).unwrap_or_default(),
        )
    }

    /// Waits one round trip.
    pub(crate) async fn wait(&self) {
        let nominal = self.round_trip.nominal;
        if nominal.is_zero() {
            return;
        }
        let started = Instant::now();
        tokio::time::sleep(nominal.saturating_sub(self.lead())).await;
        let waited = started.elapsed();
        self.waited_nanos.fetch_add(
            marquee::domain::saturating_u64(waited.as_nanos()),
            Ordering::Relaxed,
        );
        let step =
            nanos(waited).saturating_sub(nanos(nominal)) / i64::from(self.round_trip.gain.max(1));
        let most = nanos(nominal) / 2;
        let _always_some =
            self.lead_nanos
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |lead| {
                    Some(lead.saturating_add(step).clamp(0, most))
                });
    }
}

/// A push client: counts each post into the shared [`Deliveries`] after a simulated round
/// trip (`tokio::time::sleep`, see [`RoundTrip`]), and keeps its own post count and the time
/// its posts spent waiting.
#[derive(Debug)]
pub(crate) struct BenchPush {
    delay: Delay,
    deliveries: Arc<Deliveries>,
    posts: AtomicU64,
}

impl BenchPush {
    pub(crate) fn new(round_trip: RoundTrip, deliveries: Arc<Deliveries>) -> Self {
        Self {
            delay: Delay::new(round_trip),
            deliveries,
            posts: AtomicU64::new(0),
        }
    }

    /// Posts this client completed.
    pub(crate) fn posts(&self) -> u64 {
        self.posts.load(Ordering::Relaxed)
    }

    /// Total time its completed posts spent in the simulated round trip.
    pub(crate) fn waited(&self) -> Duration {
        self.delay.waited()
    }

    /// How early it aims now.
    pub(crate) fn lead(&self) -> Duration {
        self.delay.lead()
    }

    async fn round_trip(&self) {
        self.delay.wait().await;
    }
}

fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

impl Push for BenchPush {
    async fn post(&self, id: &ConnectionId, frame: &[u8]) -> Result<Posted, PushError> {
        self.round_trip().await;
        std::hint::black_box(frame.len());
        self.posts.fetch_add(1, Ordering::Relaxed);
        self.deliveries.record(id);
        Ok(Posted::Delivered)
    }

    async fn is_connected(&self, _id: &ConnectionId) -> Result<bool, PushError> {
        // The benchmark's push never answers 410, so this is never asked.
        Ok(true)
    }

    async fn disconnect(&self, _id: &ConnectionId) -> Result<Posted, PushError> {
        // The benchmark's subscribers never lapse, so no fan-out closes one.
        self.round_trip().await;
        Ok(Posted::Delivered)
    }
}

/// The in-memory store; what it writes is counted under [`STAND_INS`], what it reads under
/// the caller. Clones share one store.
#[derive(Debug, Clone)]
pub(crate) struct BenchStore(pub(crate) MemoryStore);

impl marquee::store::Reports for BenchStore {
    async fn open_report(
        &self,
        id: &EventId,
        start: &marquee::report::ReportStart,
        expires_at: EpochSeconds,
    ) -> Result<(), StoreError> {
        self.0.open_report(id, start, expires_at).await
    }

    async fn register_items(
        &self,
        id: &EventId,
        keys: &[marquee::report::ItemKey],
        expires_at: EpochSeconds,
    ) -> Result<(), StoreError> {
        self.0.register_items(id, keys, expires_at).await
    }

    async fn finish_item(
        &self,
        id: &EventId,
        key: &marquee::report::ItemKey,
        outcome: &marquee::report::ItemOutcome,
        expires_at: EpochSeconds,
    ) -> Result<marquee::report::Finished, StoreError> {
        self.0.finish_item(id, key, outcome, expires_at).await
    }

    async fn delivery_report(
        &self,
        id: &EventId,
        now: EpochSeconds,
    ) -> Result<Option<marquee::report::DeliveryReport>, StoreError> {
        self.0.delivery_report(id, now).await
    }

    async fn claim_publication(
        &self,
        id: &EventId,
        now: EpochSeconds,
    ) -> Result<Option<marquee::report::DeliveryReport>, StoreError> {
        self.0.claim_publication(id, now).await
    }

    async fn release_publication(&self, id: &EventId) -> Result<(), StoreError> {
        self.0.release_publication(id).await
    }
}

impl ConnectionStore for BenchStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        heap::tagged(STAND_INS, self.0.put_connection(connection)).await
    }

    async fn connection_state(
        &self,
        id: &ConnectionId,
        now: EpochSeconds,
    ) -> Result<Option<ConnectionState>, StoreError> {
        self.0.connection_state(id, now).await
    }

    async fn add_subscriptions(
        &self,
        connection: &Connection,
        version: u32,
        artists: &[Artist],
    ) -> Result<Applied, StoreError> {
        heap::tagged(
            STAND_INS,
            self.0.add_subscriptions(connection, version, artists),
        )
        .await
    }

    async fn remove_subscriptions(
        &self,
        id: &ConnectionId,
        version: u32,
        keys: &[ArtistKey],
    ) -> Result<Applied, StoreError> {
        heap::tagged(STAND_INS, self.0.remove_subscriptions(id, version, keys)).await
    }

    async fn mark_replayed(
        &self,
        id: &ConnectionId,
        artist: &ArtistKey,
        through: u64,
    ) -> Result<(), StoreError> {
        heap::tagged(STAND_INS, self.0.mark_replayed(id, artist, through)).await
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<Removed, StoreError> {
        heap::tagged(STAND_INS, self.0.delete_connection(id)).await
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
        admission: marquee::store::Admission<'_>,
        now: EpochSeconds,
    ) -> Result<marquee::store::Admitted, StoreError> {
        self.0.admit_connection(connection, admission, now).await
    }

    async fn release_connection(&self, user: &UserId, id: &ConnectionId) -> Result<(), StoreError> {
        self.0.release_connection(user, id).await
    }

    async fn revocation(
        &self,
        user: &UserId,
        now: EpochSeconds,
    ) -> Result<Option<EpochSeconds>, StoreError> {
        self.0.revocation(user, now).await
    }

    async fn revoke_user(
        &self,
        user: &UserId,
        at: EpochSeconds,
        until: EpochSeconds,
        now: EpochSeconds,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        self.0.revoke_user(user, at, until, now).await
    }
}

impl RoomStore for BenchStore {
    async fn presence_told(
        &self,
        artist: &ArtistKey,
        user: &UserId,
        notice: Notice,
        pacing: Pacing,
        now_ms: i64,
    ) -> Result<Told, StoreError> {
        let told = self.0.presence_told(artist, user, notice, pacing, now_ms);
        heap::tagged(STAND_INS, told).await
    }

    async fn settle_presence(
        &self,
        artist: &ArtistKey,
        user: &UserId,
        state: Notice,
        armed_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let settled = self
            .0
            .settle_presence(artist, user, state, armed_ms, now_ms);
        heap::tagged(STAND_INS, settled).await
    }

    async fn subscriber_count(&self, artist: &ArtistKey) -> Result<u64, StoreError> {
        self.0.subscriber_count(artist).await
    }

    async fn spend(
        &self,
        bucket: Bucket<'_>,
        spend: Spend,
        limit: RateLimit,
        now_millis: i64,
    ) -> Result<bool, StoreError> {
        heap::tagged(STAND_INS, self.0.spend(bucket, spend, limit, now_millis)).await
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
}

impl EventStore for BenchStore {
    async fn claim_event(
        &self,
        id: &EventId,
        now: EpochSeconds,
        lease_until: EpochSeconds,
        expires_at: EpochSeconds,
    ) -> Result<Claim, StoreError> {
        heap::tagged(
            STAND_INS,
            self.0.claim_event(id, now, lease_until, expires_at),
        )
        .await
    }

    async fn finish_event(&self, id: &EventId, expires_at: EpochSeconds) -> Result<(), StoreError> {
        heap::tagged(STAND_INS, self.0.finish_event(id, expires_at)).await
    }

    async fn hand_off(&self, id: &EventId, span: &Span) -> Result<Option<HandOff>, StoreError> {
        heap::tagged(STAND_INS, self.0.hand_off(id, span)).await
    }

    async fn pin_hand_off(
        &self,
        id: &EventId,
        span: &Span,
        next: &ConnectionId,
        expires_at: EpochSeconds,
    ) -> Result<HandOff, StoreError> {
        heap::tagged(STAND_INS, self.0.pin_hand_off(id, span, next, expires_at)).await
    }

    async fn hand_off_sent(&self, id: &EventId, span: &Span) -> Result<(), StoreError> {
        heap::tagged(STAND_INS, self.0.hand_off_sent(id, span)).await
    }

    async fn release_event(&self, id: &EventId) -> Result<(), StoreError> {
        heap::tagged(STAND_INS, self.0.release_event(id)).await
    }
}

impl HistoryStore for BenchStore {
    async fn sequence(
        &self,
        entry: NewEntry<'_>,
        retention: Retention,
        now: EpochSeconds,
        remember_until: EpochSeconds,
    ) -> Result<u64, StoreError> {
        heap::tagged(
            STAND_INS,
            self.0.sequence(entry, retention, now, remember_until),
        )
        .await
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

/// The in-memory queue; the messages it keeps (sent, received, deleted) are counted under
/// [`STAND_INS`], what a receive hands over under the caller. Clones share one queue.
#[derive(Debug, Clone)]
pub(crate) struct BenchQueue(pub(crate) MemoryQueue);

impl Queue for BenchQueue {
    async fn send_after(&self, items: &[WorkItem], delay: Duration) -> Result<(), QueueError> {
        heap::tagged(STAND_INS, self.0.send_after(items, delay)).await
    }
}

impl Inbox for BenchQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        // A receive also writes to the queue (each message's new receipt), which the queue
        // frees later: so it runs as the queue's, and what it hands over is copied to the caller
        // (a worker's own memory) and the original freed as the queue's.
        let received = heap::tagged(STAND_INS, self.0.receive(max, wait)).await?;
        let handed_over = received.clone();
        heap::with_tag(STAND_INS, move || drop(received));
        Ok(handed_over)
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        heap::tagged(STAND_INS, self.0.delete(receipt)).await
    }

    async fn hide_for(&self, receipt: &str, hidden: Duration) -> Result<(), QueueError> {
        heap::tagged(STAND_INS, self.0.hide_for(receipt, hidden)).await
    }

    async fn backlog(&self) -> Result<usize, QueueError> {
        self.0.backlog().await
    }

    fn lane(&self, _lane: Lane) -> &Self {
        self
    }
}
