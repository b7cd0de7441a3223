//! `subscribe`, `unsubscribe` and `$default`: parse a client message, apply it, reply.
//!
//! All three routes run [`handle_message`]: the route key only tells which API Gateway route
//! matched, while the message itself says what to do, so `$default` answers a well-formed
//! subscribe as well as an unknown action.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};

use crate::config::{
    Config, DEFAULT_HISTORY_MAX_PER_ARTIST, DEFAULT_MAX_CONNECTION_SECONDS,
    DEFAULT_MAX_SUBSCRIPTIONS,
};
use futures_util::future::join_all;

use crate::domain::{Artist, ArtistKey, ArtistList, ConnectionId, EpochSeconds};
use crate::push::{Posted, Push, PushError};
use crate::routes::catch_up::{self, Replayed};
use crate::store::{Applied, ConnectionState, Store, StoreError};
use crate::wire::{ErrorCode, Frame, Request, Since, parse_message};

/// Reads-then-writes that lose a race with another change of the same connection are tried
/// again this many times before the client is told `busy`.
pub const MAX_CONFLICT_RETRIES: u32 = 5;

/// The limits the message routes apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSettings {
    /// Cap on subscriptions per connection (`MAX_SUBSCRIPTIONS`).
    pub max_subscriptions: u32,
    /// How long the gateway keeps a connection open at most (`MAX_CONNECTION_SECONDS`).
    pub max_connection_seconds: i64,
    /// Most notifications replayed per artist in a catch-up (`HISTORY_MAX_PER_ARTIST`).
    pub history_limit: u32,
}

impl Default for MessageSettings {
    fn default() -> Self {
        Self {
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_connection_seconds: DEFAULT_MAX_CONNECTION_SECONDS,
            history_limit: DEFAULT_HISTORY_MAX_PER_ARTIST,
        }
    }
}

impl From<&Config> for MessageSettings {
    fn from(config: &Config) -> Self {
        Self {
            max_subscriptions: config.max_subscriptions,
            max_connection_seconds: config.max_connection_seconds,
            history_limit: config.fanout.history.max_per_artist,
        }
    }
}

/// An inbound message from a connection.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// Who sent it.
    pub connection: &'a ConnectionId,
    /// The frame's text (API Gateway's `body`).
    pub body: Option<&'a str>,
    /// Whether API Gateway base64-encoded the body (a binary frame).
    pub is_base64_encoded: bool,
    /// The current time.
    pub now: EpochSeconds,
}

/// What handling a message did.
#[derive(Debug)]
pub struct MessageOutcome {
    /// The frame sent back to the client.
    pub reply: Frame,
    /// The infrastructure failure behind an `internal_error` reply, if any.
    pub failure: Option<StoreError>,
    /// How posting the reply went.
    pub posted: Result<Posted, PushError>,
    /// What a catch-up after a `subscribe` with `since` sent.
    pub replayed: Replayed,
    /// Whether the connection was closed because it has no live record (its token expired).
    pub closed: bool,
}

/// What to do after the reply.
enum Then {
    Nothing,
    /// Replay what the client missed.
    CatchUp(Vec<Since>),
    /// Close the connection: it has no live record, so it would never receive anything.
    Close,
}

/// Applies a client message and posts the reply to the sender (with the request's `ref`).
/// Client mistakes become error frames and write nothing; a sender that is gone has its
/// records deleted; a `subscribe` with `since` is followed by the catch-up; a connection whose
/// records lapsed (its token expired) is told so and closed.
pub async fn handle_message<S: Store, P: Push>(
    store: &S,
    push: &P,
    settings: &MessageSettings,
    message: Message<'_>,
) -> MessageOutcome {
    let inbound = parse_message(message.body, message.is_base64_encoded);
    let (reply, then, failure) = match inbound.request {
        Err(rejection) => (rejection.frame(), Then::Nothing, None),
        Ok(request) => {
            match respond(store, settings, message.connection, request, message.now).await {
                Ok((frame, then)) => (frame, then, None),
                Err(err) => (
                    Frame::error(
                        ErrorCode::InternalError,
                        "something went wrong on our side; try again",
                    ),
                    Then::Nothing,
                    Some(err),
                ),
            }
        }
    };
    let posted = post_reply(
        push,
        message.connection,
        &reply.reply_bytes(inbound.reference.as_ref()),
    )
    .await;
    let mut outcome = MessageOutcome {
        reply,
        failure,
        posted,
        replayed: Replayed::default(),
        closed: false,
    };
    if matches!(outcome.posted, Ok(Posted::Gone)) {
        crate::routes::fanout::clean_up_if_gone(store, push, message.connection).await;
        return outcome;
    }
    match then {
        Then::Nothing => {}
        Then::CatchUp(since) => {
            outcome.replayed = catch_up::replay(
                store,
                push,
                message.connection,
                &since,
                message.now,
                settings.history_limit,
            )
            .await;
            if outcome.replayed.gone {
                crate::routes::fanout::clean_up_if_gone(store, push, message.connection).await;
            }
        }
        Then::Close => {
            outcome.closed = matches!(
                push.disconnect(message.connection).await,
                Ok(Posted::Delivered)
            );
        }
    }
    outcome
}

/// Tries to post a reply: a throttle or a server error must not lose it.
pub const REPLY_ATTEMPTS: u32 = 3;

/// Posts `frame` to `id`, retrying a 429 or 5xx up to [`REPLY_ATTEMPTS`] in all, with short
/// full-jitter pauses (25 ms, then 50 ms ceilings): a reply is small and the client is waiting.
pub(crate) async fn post_reply<P: Push>(
    push: &P,
    id: &ConnectionId,
    frame: &[u8],
) -> Result<Posted, PushError> {
    let mut attempt = 1;
    loop {
        match push.post(id, frame).await {
            Err(err) if err.is_retryable() && attempt < REPLY_ATTEMPTS => {
                let ceiling = 25u64 << (attempt - 1);
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=ceiling))).await;
                attempt += 1;
            }
            posted => return posted,
        }
    }
}

/// Decides the reply to a request, applying it to the store, and what follows the reply.
async fn respond<S: Store>(
    store: &S,
    settings: &MessageSettings,
    id: &ConnectionId,
    request: Request,
    now: EpochSeconds,
) -> Result<(Frame, Then), StoreError> {
    let frame = match request {
        Request::Subscribe { artists, since } => {
            let mut frame = subscribe(store, id, &artists, settings.max_subscriptions, now).await?;
            if let Frame::Subscribed { seq, .. } = &mut frame {
                *seq = latest_seqs(store, &artists, now).await?;
            }
            let then = match &frame {
                Frame::Subscribed { .. } if !since.is_empty() => Then::CatchUp(since),
                _ => then_for(&frame),
            };
            return Ok((frame, then));
        }
        Request::Unsubscribe(artists) => unsubscribe(store, id, &artists, now).await?,
        Request::Ping => match store.connection_state(id, now).await? {
            Some(state) => pong(&state, settings.max_connection_seconds),
            None => unknown_connection(),
        },
    };
    let then = then_for(&frame);
    Ok((frame, then))
}

fn then_for(frame: &Frame) -> Then {
    match frame {
        Frame::Error {
            code: ErrorCode::UnknownConnection,
            ..
        } => Then::Close,
        _ => Then::Nothing,
    }
}

/// The answer to a ping: the connection ends at the earlier of its record's expiry (the
/// token's) and the gateway's maximum duration.
fn pong(state: &ConnectionState, max_connection_seconds: i64) -> Frame {
    let connection = &state.connection;
    let ends = connection.expires_at.min(
        connection
            .connected_at
            .saturating_add(max_connection_seconds),
    );
    Frame::Pong {
        connection_id: connection.id.as_str().to_owned(),
        expires_at: DateTime::from_timestamp(ends, 0)
            .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default(),
    }
}

async fn subscribe<S: Store>(
    store: &S,
    id: &ConnectionId,
    artists: &ArtistList,
    cap: u32,
    now: EpochSeconds,
) -> Result<Frame, StoreError> {
    for attempt in 0..=MAX_CONFLICT_RETRIES {
        if attempt > 0 {
            tokio::time::sleep(conflict_pause()).await;
        }
        let Some(state) = store.connection_state(id, now).await? else {
            return Ok(unknown_connection());
        };
        let denied: Vec<&str> = artists
            .as_slice()
            .iter()
            .filter(|a| !state.connection.scope.allows(a.key()))
            .map(Artist::name)
            .collect();
        if !denied.is_empty() {
            return Ok(Frame::error(
                ErrorCode::Forbidden,
                format!("your token does not allow: {}", denied.join(", ")),
            ));
        }
        let new: Vec<Artist> = artists
            .as_slice()
            .iter()
            .filter(|a| state.subscriptions.binary_search(a.key()).is_err())
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(subscribed(artists));
        }
        let total = state.subscriptions.len() + new.len();
        if total > cap as usize {
            return Ok(Frame::error(
                ErrorCode::TooManySubscriptions,
                format!(
                    "a connection may hold {cap} subscriptions; it has {} and this adds {}",
                    state.subscriptions.len(),
                    new.len()
                ),
            ));
        }
        if store
            .add_subscriptions(&state.connection, state.version, &new)
            .await?
            == Applied::Yes
        {
            return Ok(subscribed(artists));
        }
    }
    Ok(busy())
}

async fn unsubscribe<S: Store>(
    store: &S,
    id: &ConnectionId,
    artists: &ArtistList,
    now: EpochSeconds,
) -> Result<Frame, StoreError> {
    for attempt in 0..=MAX_CONFLICT_RETRIES {
        if attempt > 0 {
            tokio::time::sleep(conflict_pause()).await;
        }
        let Some(state) = store.connection_state(id, now).await? else {
            return Ok(unknown_connection());
        };
        let held: Vec<ArtistKey> = artists
            .as_slice()
            .iter()
            .map(Artist::key)
            .filter(|key| state.subscriptions.binary_search(key).is_ok())
            .cloned()
            .collect();
        if held.is_empty()
            || store.remove_subscriptions(id, state.version, &held).await? == Applied::Yes
        {
            return Ok(Frame::Unsubscribed {
                artists: artists.names(),
            });
        }
    }
    Ok(busy())
}

fn subscribed(artists: &ArtistList) -> Frame {
    Frame::Subscribed {
        artists: artists.names(),
        seq: BTreeMap::new(),
    }
}

/// Each artist's latest `seq`, read after the subscription was written: the point from which
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

fn unknown_connection() -> Frame {
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
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::domain::{Connection, Scope, UserId};
    use crate::push::recording::RecordingPush;
    use crate::store::memory::MemoryStore;
    use serde_json::json;

    const NOW: EpochSeconds = 1_800_000_000;

    async fn connected(store: &MemoryStore, id: &str, scope: Scope) -> ConnectionId {
        let id = ConnectionId::parse(id).unwrap();
        store
            .put_connection(&Connection {
                id: id.clone(),
                user_id: UserId::parse("alice").unwrap(),
                connected_at: NOW,
                expires_at: NOW + 100,
                scope,
                publish: Vec::new(),
            })
            .await
            .unwrap();
        id
    }

    async fn send(store: &MemoryStore, push: &RecordingPush, id: &ConnectionId, body: &str) {
        let settings = MessageSettings {
            max_subscriptions: 3,
            ..MessageSettings::default()
        };
        let outcome = handle_message(
            store,
            push,
            &settings,
            Message {
                connection: id,
                body: Some(body),
                is_base64_encoded: false,
                now: NOW,
            },
        )
        .await;
        assert!(outcome.failure.is_none());
    }

    #[tokio::test]
    async fn subscribing_twice_keeps_one_subscription() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let id = connected(&store, "c1", Scope::Any).await;
        send(
            &store,
            &push,
            &id,
            r#"{"action":"subscribe","artists":["Adele"]}"#,
        )
        .await;
        send(
            &store,
            &push,
            &id,
            r#"{"action":"subscribe","artists":["adele "]}"#,
        )
        .await;
        assert_eq!(store.subscription_count(), 1);
        let frames = push.frames_to(&id);
        assert_eq!(
            frames[1],
            json!({"type":"subscribed","artists":["adele"],"seq":{"adele":0}})
        );
    }

    #[tokio::test]
    async fn the_cap_refuses_the_whole_message_and_writes_nothing() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let id = connected(&store, "c1", Scope::Any).await;
        send(
            &store,
            &push,
            &id,
            r#"{"action":"subscribe","artists":["A","B"]}"#,
        )
        .await;
        send(
            &store,
            &push,
            &id,
            r#"{"action":"subscribe","artists":["C","D"]}"#,
        )
        .await;
        assert_eq!(store.subscription_count(), 2);
        assert_eq!(push.frames_to(&id)[1]["code"], "too_many_subscriptions");
    }

    #[tokio::test]
    async fn a_scoped_token_may_subscribe_only_to_its_artists() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let adele = Artist::parse("Adele").unwrap();
        let id = connected(&store, "c1", Scope::Only(vec![adele.key().clone()])).await;
        send(
            &store,
            &push,
            &id,
            r#"{"action":"subscribe","artists":["Adele","Muse"]}"#,
        )
        .await;
        assert_eq!(store.subscription_count(), 0);
        let frame = &push.frames_to(&id)[0];
        assert_eq!(frame["code"], "forbidden");
        assert!(frame["message"].as_str().unwrap().contains("Muse"));
    }

    #[tokio::test]
    async fn messages_from_unknown_connections_are_told_to_reconnect() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let id = ConnectionId::parse("ghost").unwrap();
        send(
            &store,
            &push,
            &id,
            r#"{"action":"subscribe","artists":["Adele"]}"#,
        )
        .await;
        assert_eq!(push.frames_to(&id)[0]["code"], "unknown_connection");
        assert_eq!(store.subscription_count(), 0);
        assert_eq!(push.closed(), vec![id]);
    }

    #[tokio::test]
    async fn a_gone_sender_has_its_records_deleted() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let id = connected(&store, "c1", Scope::Any).await;
        send(
            &store,
            &push,
            &id,
            r#"{"action":"subscribe","artists":["Adele"]}"#,
        )
        .await;
        push.mark_gone(&id);
        send(
            &store,
            &push,
            &id,
            r#"{"action":"subscribe","artists":["Muse"]}"#,
        )
        .await;
        assert_eq!(store.connection_state(&id, NOW).await.unwrap(), None);
        assert_eq!(store.subscription_count(), 0);
    }
}
