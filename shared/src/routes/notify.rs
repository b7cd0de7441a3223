//! `notify`: fan a "tickets on sale" event out to every live subscriber of its artist.
//!
//! - The event id is claimed first (a conditional write with a TTL), so an EventBridge
//!   redelivery delivers nothing twice.
//! - Subscribers are read from the artist index page by page and posted to with bounded
//!   concurrency; at most one page plus the posts in flight are held in memory, however many
//!   subscribers the artist has.
//! - 410 is an outcome: that connection's records are deleted. 429 and 5xx are retried with
//!   full-jitter exponential backoff, within a per-connection attempt limit, an event-wide
//!   retry budget and the invocation's deadline.
//! - If reading the index fails, the claim is released and the error returned, so the
//!   event is retried (connections already reached may then see it twice; the notification
//!   `id` lets clients drop the copy).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;

use crate::config::FanoutSettings;
use crate::domain::{Artist, ArtistKey, ConnectionId, EpochSeconds, EventId};
use crate::push::{Posted, Push};
use crate::store::{Claim, Cursor, Store, StoreError, SubscriberPage};
use crate::wire::Frame;

/// Retries are not started when less than this is left before the invocation's deadline.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// A validated "tickets on sale" event.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// EventBridge's event id.
    pub id: EventId,
    /// `detail.artist`.
    pub artist: Artist,
    /// The whole `detail`, forwarded to clients.
    pub detail: Value,
    /// The event's time (RFC 3339).
    pub time: String,
}

impl Notification {
    /// The frame clients receive.
    #[must_use]
    pub fn frame(&self) -> Frame {
        Frame::Notification {
            id: self.id.as_str().to_owned(),
            artist: self.artist.name().to_owned(),
            detail: self.detail.clone(),
            time: self.time.clone(),
        }
    }
}

/// What one notify did. Logged as one line per event, and the invocation's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// The event was a redelivery: nothing was sent.
    pub duplicate: bool,
    /// Frames API Gateway accepted.
    pub delivered: u64,
    /// Connections found gone (410) and cleaned up.
    pub gone: u64,
    /// Connections that could not be reached within the retry limits.
    pub failed: u64,
    /// Retries spent.
    pub retried: u64,
    /// Index pages read.
    pub pages: u64,
    /// Wall time.
    #[serde(rename = "duration_ms", serialize_with = "as_millis")]
    pub duration: Duration,
}

/// Why a notify failed as a whole (the event should be retried).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The table failed while claiming the event or reading subscribers.
    #[error("fan-out aborted: the store failed")]
    Store(#[from] StoreError),
}

fn as_millis<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Delivered { retries: u32 },
    Gone { retries: u32 },
    Failed { retries: u32 },
}

/// Delivers `notification` to every live subscriber of its artist.
///
/// `deadline` is when the invocation must have returned (Lambda's); retries stop short of it.
///
/// # Errors
/// [`NotifyError`] when the store fails; per-connection failures are counted, not returned.
pub async fn notify<S: Store, P: Push>(
    store: &S,
    push: &P,
    settings: &FanoutSettings,
    notification: &Notification,
    now: EpochSeconds,
    deadline: Option<Instant>,
) -> Result<Summary, NotifyError> {
    let started = Instant::now();
    let claim = store
        .claim_event(
            &notification.id,
            now,
            now.saturating_add(settings.dedup_ttl_seconds),
        )
        .await?;
    if claim == Claim::Duplicate {
        return Ok(Summary {
            duplicate: true,
            duration: started.elapsed(),
            ..Summary::default()
        });
    }
    let frame = notification.frame().to_bytes();
    let budget = AtomicU32::new(settings.retry_budget);
    let artist = notification.artist.key();
    let concurrency = settings.concurrency.max(1);

    // At most one page is buffered and one fetched ahead, plus `concurrency` posts in flight:
    // memory does not grow with the number of subscribers.
    let mut summary = Summary::default();
    let mut pending: VecDeque<ConnectionId> = VecDeque::new();
    let mut in_flight = FuturesUnordered::new();
    let mut cursor: Option<Cursor> = None;
    let mut fetch = Some(Box::pin(fetch_page(
        store,
        artist,
        now,
        None,
        settings.page_size,
    )));
    loop {
        while in_flight.len() < concurrency {
            let Some(id) = pending.pop_front() else { break };
            in_flight.push(deliver(
                store, push, settings, id, &frame, &budget, deadline,
            ));
        }
        if fetch.is_none()
            && pending.len() < concurrency
            && let Some(after) = cursor.take()
        {
            fetch = Some(Box::pin(fetch_page(
                store,
                artist,
                now,
                Some(after),
                settings.page_size,
            )));
        }
        if fetch.is_none() && in_flight.is_empty() && pending.is_empty() {
            break;
        }
        tokio::select! {
            page = async {
                match fetch.as_mut() {
                    Some(page) => page.await,
                    None => std::future::pending().await,
                }
            } => {
                fetch = None;
                match page {
                    Ok(page) => {
                        summary.pages += 1;
                        pending.extend(page.connections);
                        cursor = page.next;
                    }
                    Err(err) => {
                        release(store, &notification.id).await;
                        return Err(err.into());
                    }
                }
            }
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => summary.count(outcome),
        }
    }
    summary.duration = started.elapsed();
    Ok(summary)
}

/// One page read, owning its cursor so the fetch can run beside the posts.
async fn fetch_page<S: Store>(
    store: &S,
    artist: &ArtistKey,
    now: EpochSeconds,
    after: Option<Cursor>,
    limit: u32,
) -> Result<SubscriberPage, StoreError> {
    store.subscribers(artist, now, after.as_ref(), limit).await
}

async fn release<S: Store>(store: &S, id: &EventId) {
    if let Err(err) = store.release_event(id).await {
        tracing::error!(
            event_id = %id,
            error = &err as &dyn std::error::Error,
            "could not release the event claim; a retry will be treated as a duplicate"
        );
    }
}

impl Summary {
    fn count(&mut self, outcome: Outcome) {
        let retries = match outcome {
            Outcome::Delivered { retries } => {
                self.delivered += 1;
                retries
            }
            Outcome::Gone { retries } => {
                self.gone += 1;
                retries
            }
            Outcome::Failed { retries } => {
                self.failed += 1;
                retries
            }
        };
        self.retried += u64::from(retries);
    }
}

async fn deliver<S: Store, P: Push>(
    store: &S,
    push: &P,
    settings: &FanoutSettings,
    id: ConnectionId,
    frame: &[u8],
    budget: &AtomicU32,
    deadline: Option<Instant>,
) -> Outcome {
    let mut retries = 0;
    loop {
        match push.post(&id, frame).await {
            Ok(Posted::Delivered) => return Outcome::Delivered { retries },
            Ok(Posted::Gone) => {
                match store.delete_connection(&id).await {
                    Ok(_) => tracing::debug!(connection_id = %id, "gone connection removed"),
                    Err(err) => tracing::warn!(
                        connection_id = %id,
                        error = &err as &dyn std::error::Error,
                        "could not delete a gone connection; TTL will"
                    ),
                }
                return Outcome::Gone { retries };
            }
            Err(err) => {
                let pause = backoff(settings, retries);
                let may_retry = err.is_retryable()
                    && retries + 1 < settings.max_attempts
                    && deadline.is_none_or(|d| {
                        d.saturating_duration_since(Instant::now()) > pause + DEADLINE_MARGIN
                    })
                    && take_one(budget);
                if !may_retry {
                    tracing::warn!(
                        connection_id = %id,
                        attempts = retries + 1,
                        error = &err as &dyn std::error::Error,
                        "could not deliver"
                    );
                    return Outcome::Failed { retries };
                }
                retries += 1;
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Full jitter: a random pause below `base * 2^retries`, capped.
fn backoff(settings: &FanoutSettings, retries: u32) -> Duration {
    let ceiling = settings
        .retry_base
        .saturating_mul(1 << retries.min(16))
        .min(settings.retry_cap);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=millis))
}

fn take_one(budget: &AtomicU32) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::{ArtistList, Connection, Scope, UserId};
    use crate::push::recording::{Failure, RecordingPush};
    use crate::store::memory::MemoryStore;

    const NOW: EpochSeconds = 1_800_000_000;

    fn fast() -> FanoutSettings {
        FanoutSettings {
            page_size: 7,
            retry_base: Duration::from_millis(1),
            ..FanoutSettings::default()
        }
    }

    fn event(id: &str) -> Notification {
        Notification {
            id: EventId::parse(id).unwrap(),
            artist: Artist::parse("Adele").unwrap(),
            detail: serde_json::json!({"artist": "Adele", "venue": "O2"}),
            time: "2026-11-22T10:00:00Z".into(),
        }
    }

    async fn subscriber(store: &MemoryStore, id: &str, artist: &str) -> ConnectionId {
        let connection = Connection {
            id: ConnectionId::parse(id).unwrap(),
            user_id: UserId::parse("u").unwrap(),
            connected_at: NOW,
            expires_at: NOW + 100,
            scope: Scope::Any,
        };
        store.put_connection(&connection).await.unwrap();
        let artists = ArtistList::parse(&[artist]).unwrap();
        store
            .add_subscriptions(&connection, 0, artists.as_slice())
            .await
            .unwrap();
        connection.id
    }

    #[tokio::test]
    async fn every_subscriber_of_the_artist_gets_one_frame_across_pages() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        for i in 0..50 {
            subscriber(&store, &format!("a{i:02}"), "Adele").await;
        }
        subscriber(&store, "other", "Muse").await;
        let summary = notify(&store, &push, &fast(), &event("e1"), NOW, None)
            .await
            .unwrap();
        assert_eq!(summary.delivered, 50);
        assert!(summary.pages >= 8, "{summary:?}");
        assert_eq!(push.delivered().len(), 50);
        assert!(
            push.frames_to(&ConnectionId::parse("other").unwrap())
                .is_empty()
        );
    }

    #[tokio::test]
    async fn retries_stop_at_the_attempt_limit() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let id = subscriber(&store, "c1", "Adele").await;
        push.fail_next(&id, Failure::Unavailable, 10);
        let summary = notify(&store, &push, &fast(), &event("e1"), NOW, None)
            .await
            .unwrap();
        assert_eq!((summary.failed, summary.retried), (1, 3));
        assert_eq!(push.attempts(&id), 4);
    }

    #[tokio::test]
    async fn refusals_are_not_retried() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let id = subscriber(&store, "c1", "Adele").await;
        push.fail_next(&id, Failure::Refused, 1);
        let summary = notify(&store, &push, &fast(), &event("e1"), NOW, None)
            .await
            .unwrap();
        assert_eq!((summary.failed, summary.retried), (1, 0));
    }

    #[tokio::test]
    async fn an_exhausted_retry_budget_stops_retrying() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let a = subscriber(&store, "c1", "Adele").await;
        let b = subscriber(&store, "c2", "Adele").await;
        push.fail_next(&a, Failure::Throttled, 10);
        push.fail_next(&b, Failure::Throttled, 10);
        let settings = FanoutSettings {
            retry_budget: 2,
            ..fast()
        };
        let summary = notify(&store, &push, &settings, &event("e1"), NOW, None)
            .await
            .unwrap();
        assert_eq!((summary.failed, summary.retried), (2, 2));
    }

    #[tokio::test]
    async fn no_retry_starts_past_the_deadline() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let id = subscriber(&store, "c1", "Adele").await;
        push.fail_next(&id, Failure::Throttled, 1);
        let summary = notify(
            &store,
            &push,
            &fast(),
            &event("e1"),
            NOW,
            Some(Instant::now()),
        )
        .await
        .unwrap();
        assert_eq!((summary.failed, summary.retried), (1, 0));
    }
}
