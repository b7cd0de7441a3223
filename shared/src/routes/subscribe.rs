//! The `subscribe` function's routes (`subscribe`, `unsubscribe`, `ping`, `publish` and
//! `$default`): parse a client's frame, apply
//! it, reply, and do what follows the reply (welcomes and catch-up after a subscribe, presence
//! notices to the rooms, closing an expired connection).
//!
//! Every route of the function runs [`handle_frame`]: the route key only tells which API
//! Gateway route matched, while the frame itself says what to do, so `$default` answers a
//! well-formed subscribe as well as an unknown action.

use chrono::{DateTime, SecondsFormat};

use crate::config::{
    Config, DEFAULT_HISTORY_MAX_PER_ARTIST, DEFAULT_MAX_CONNECTION_SECONDS,
    DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_PUBLISH_BURST, DEFAULT_PUBLISH_RATE_PER_SECOND, PostLimits,
};
use crate::domain::{Artist, ConnectionId, EpochSeconds};
use crate::push::{Posted, Push, PushError};
use crate::queue::Queue;
use crate::routes::catch_up::{self, Replayed};
use crate::routes::fanout::{Ports, clean_up_if_gone};
use crate::routes::reach::NotifyError;
pub use crate::routes::reply::REPLY_ATTEMPTS;
use crate::routes::reply::{post_reply, posted_too_much};
use crate::routes::subscriptions::{self, Changed, Resume, unknown_connection};
use crate::routes::{presence, rooms};
use crate::store::{Bucket, ConnectionState, RateLimit, Spend, Store};
use crate::wire::{ErrorCode, Frame, Request, parse_message};

pub use crate::routes::subscriptions::MAX_CONFLICT_RETRIES;

/// The limits the `subscribe` function's routes apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeSettings {
    /// Cap on subscriptions per connection (`MAX_SUBSCRIPTIONS`).
    pub max_subscriptions: u32,
    /// How long the gateway keeps a connection open at most (`MAX_CONNECTION_SECONDS`).
    pub max_connection_seconds: i64,
    /// Most notifications replayed per artist in a catch-up (`HISTORY_MAX_PER_ARTIST`).
    pub history_limit: u32,
    /// Each connection's room message limit (`PUBLISH_RATE_PER_SECOND`, `PUBLISH_BURST`).
    pub publish_rate: RateLimit,
    /// What a connection's frames, and the messages to a room, may make the server post.
    pub post_limits: PostLimits,
}

impl Default for SubscribeSettings {
    fn default() -> Self {
        Self {
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_connection_seconds: DEFAULT_MAX_CONNECTION_SECONDS,
            history_limit: DEFAULT_HISTORY_MAX_PER_ARTIST,
            publish_rate: RateLimit {
                per_second: DEFAULT_PUBLISH_RATE_PER_SECOND,
                burst: DEFAULT_PUBLISH_BURST,
            },
            post_limits: PostLimits::default(),
        }
    }
}

impl From<&Config> for SubscribeSettings {
    fn from(config: &Config) -> Self {
        Self {
            max_subscriptions: config.max_subscriptions,
            max_connection_seconds: config.max_connection_seconds,
            history_limit: config.fanout.history.max_per_artist,
            publish_rate: config.publish_rate,
            post_limits: config.post_limits,
        }
    }
}

/// A frame from a connection, as API Gateway hands it over.
#[derive(Debug, Clone, Copy)]
pub struct ClientFrame<'a> {
    /// Who sent it.
    pub connection: &'a ConnectionId,
    /// The frame's text (API Gateway's `body`).
    pub body: Option<&'a str>,
    /// Whether API Gateway base64-encoded the body (a binary frame).
    pub is_base64_encoded: bool,
    /// The current time.
    pub now: EpochSeconds,
    /// The invocation's deadline, when known: a catch-up stops short of it.
    pub deadline: Option<tokio::time::Instant>,
}

/// What handling a frame did.
#[derive(Debug)]
pub struct FrameOutcome {
    /// The frame sent back to the client.
    pub reply: Frame,
    /// The infrastructure failure behind an `internal_error` reply, if any.
    pub failure: Option<NotifyError>,
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
    /// After a subscribe: a welcome per artist, `joined` to the rooms entered, the catch-up.
    Entered {
        artists: Vec<Artist>,
        changed: Changed,
        resume: Vec<Resume>,
    },
    /// After an unsubscribe: `left` to the rooms left.
    Left(Changed),
    /// Close the connection: it has no live record, so it would never receive anything.
    Close,
}

/// Applies a client's frame and posts the reply to the sender (with the request's `ref`).
/// Client mistakes become error frames and write nothing; a sender that is gone has its
/// records deleted; a `subscribe` is followed by the welcomes and, with `since`, the catch-up;
/// a connection whose records lapsed (its token expired) is told so and closed. A room message
/// goes out through `ports` like a notification, inline or through the work queue.
pub async fn handle_frame<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    settings: &SubscribeSettings,
    incoming: ClientFrame<'_>,
) -> FrameOutcome {
    let (store, push) = (ports.store, ports.push);
    let id = incoming.connection;
    let inbound = parse_message(incoming.body, incoming.is_base64_encoded);
    let (reply, then, failure) = match inbound.request {
        Err(rejection) => (rejection.frame(), Then::Nothing, None),
        Ok(request) => match respond(
            ports,
            settings,
            id,
            request,
            (incoming.now, incoming.deadline),
        )
        .await
        {
            Ok((frame, then)) => (frame, then, None),
            Err(err) => (
                Frame::error(
                    ErrorCode::InternalError,
                    "something went wrong on our side; try again",
                ),
                Then::Nothing,
                Some(err),
            ),
        },
    };
    let posted = post_reply(push, id, &reply.reply_bytes(inbound.reference.as_ref())).await;
    let mut outcome = FrameOutcome {
        reply,
        failure,
        posted,
        replayed: Replayed::default(),
        closed: false,
    };
    let presence_max = ports.settings.presence_max;
    if matches!(outcome.posted, Ok(Posted::Gone)) {
        clean_up_if_gone(store, push, id, presence_max).await;
        return outcome;
    }
    match then {
        Then::Nothing => {}
        Then::Entered {
            artists,
            changed,
            resume,
        } => {
            let presence_posts;
            (outcome.replayed, presence_posts) =
                enter(ports, settings, id, (&artists, &changed, &resume), incoming).await;
            if outcome.replayed.gone {
                clean_up_if_gone(store, push, id, presence_max).await;
            } else {
                let replayed = outcome.replayed.notifications + outcome.replayed.gaps;
                charge(store, settings, id, presence_posts + replayed).await;
            }
        }
        Then::Left(changed) => {
            let posts = presence::left_rooms(
                store,
                push,
                (id, &changed.user),
                &changed.artists,
                presence_max,
                incoming.now,
            )
            .await;
            charge(store, settings, id, posts).await;
        }
        Then::Close => {
            outcome.closed = matches!(push.disconnect(id).await, Ok(Posted::Delivered));
        }
    }
    outcome
}

/// Charges `posts`, made for connection `id`'s frame, to its posts bucket (after the fact:
/// the next subscribe or unsubscribe waits while the bucket is in debt).
async fn charge<S: Store>(store: &S, settings: &SubscribeSettings, id: &ConnectionId, posts: u64) {
    if posts == 0 {
        return;
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let limit = settings.post_limits.connection;
    if let Err(err) = store
        .spend(Bucket::Posts(id), Spend::after(posts), limit, now_ms)
        .await
    {
        tracing::warn!(
            connection_id = %id,
            posts,
            error = &err as &dyn std::error::Error,
            "could not charge a frame's posts to its connection"
        );
    }
}

/// Whether connection `id` may send a frame that makes the server post (a subscribe or an
/// unsubscribe): its posts bucket is not in debt.
async fn may_post<S: Store>(
    store: &S,
    settings: &SubscribeSettings,
    id: &ConnectionId,
) -> Result<bool, NotifyError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let limit = settings.post_limits.connection;
    if store
        .spend(Bucket::Posts(id), Spend::check(), limit, now_ms)
        .await?
    {
        return Ok(true);
    }
    // No bucket without a record: let the frame through, to be told `unknown_connection`.
    let now = now_ms / 1000;
    Ok(store.connection_state(id, now).await?.is_none())
}

/// After a subscribe: the welcomes (to the subscriber), `joined` (to the others in the rooms
/// it entered), then the catch-up. Returns what the catch-up sent, and the presence posts.
async fn enter<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    settings: &SubscribeSettings,
    id: &ConnectionId,
    (artists, changed, resume): (&[Artist], &Changed, &[Resume]),
    incoming: ClientFrame<'_>,
) -> (Replayed, u64) {
    let now = incoming.now;
    let (store, push) = (ports.store, ports.push);
    match presence::welcomes(store, artists).await {
        Ok(welcomes) => {
            for welcome in welcomes {
                if matches!(
                    post_reply(push, id, &welcome.to_bytes()).await,
                    Ok(Posted::Gone)
                ) {
                    let gone = Replayed {
                        gone: true,
                        ..Replayed::default()
                    };
                    return (gone, 0);
                }
            }
        }
        Err(err) => tracing::warn!(
            connection_id = %id,
            error = &err as &dyn std::error::Error,
            "could not read the rooms' counts for the welcome"
        ),
    }
    let presence_posts = presence::joined(
        store,
        push,
        (id, &changed.user),
        &changed.artists,
        ports.settings.presence_max,
        now,
    )
    .await;
    if resume.is_empty() {
        return (Replayed::default(), presence_posts);
    }
    let replayed = catch_up::replay(
        store,
        (push, ports.budget),
        id,
        resume,
        now,
        settings.history_limit,
        incoming.deadline,
    )
    .await;
    (replayed, presence_posts)
}

/// Decides the reply to a request, applying it, and what follows the reply.
async fn respond<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    settings: &SubscribeSettings,
    id: &ConnectionId,
    request: Request,
    (now, deadline): (EpochSeconds, Option<tokio::time::Instant>),
) -> Result<(Frame, Then), NotifyError> {
    let store = ports.store;
    let (frame, then) = match request {
        Request::Subscribe { .. } | Request::Unsubscribe(_)
            if !may_post(store, settings, id).await? =>
        {
            (
                posted_too_much(settings.post_limits.connection),
                Then::Nothing,
            )
        }
        Request::Subscribe { artists, since } => {
            let (frame, entered) = subscriptions::subscribe(
                store,
                id,
                &artists,
                since,
                settings.max_subscriptions,
                now,
            )
            .await?;
            match (&frame, entered) {
                (Frame::Subscribed { .. }, Some(entered)) => {
                    let artists = artists.as_slice().to_vec();
                    (
                        frame,
                        Then::Entered {
                            artists,
                            changed: entered.changed,
                            resume: entered.resume,
                        },
                    )
                }
                _ => (frame, Then::Nothing),
            }
        }
        Request::Unsubscribe(artists) => {
            match subscriptions::unsubscribe(store, id, &artists, now).await? {
                (frame, Some(changed)) => (frame, Then::Left(changed)),
                (frame, None) => (frame, Then::Nothing),
            }
        }
        Request::Ping => match store.connection_state(id, now).await? {
            Some(state) => (pong(&state, settings.max_connection_seconds), Then::Nothing),
            None => (unknown_connection(), Then::Nothing),
        },
        Request::Publish { artist, data } => (
            rooms::publish(
                ports,
                (settings.publish_rate, settings.post_limits),
                id,
                (&artist, data),
                (now, deadline),
            )
            .await?,
            Then::Nothing,
        ),
    };
    let then = match (&frame, then) {
        (
            Frame::Error {
                code: ErrorCode::UnknownConnection,
                ..
            },
            _,
        ) => Then::Close,
        (_, then) => then,
    };
    Ok((frame, then))
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::store::ConnectionStore;
    use std::time::Duration;

    use super::*;
    use crate::config::FanoutSettings;
    use crate::domain::{Connection, Scope};
    use crate::push::recording::RecordingPush;
    use crate::queue::memory::MemoryQueue;
    use crate::store::memory::MemoryStore;
    use serde_json::json;

    #[test]
    fn the_default_settings_are_what_the_default_configuration_gives() {
        assert_eq!(
            SubscribeSettings::from(&Config::new("marquee")),
            SubscribeSettings::default()
        );
    }

    /// The replies `id` got (presence frames left out).
    fn replies(push: &RecordingPush, id: &ConnectionId) -> Vec<serde_json::Value> {
        push.frames_to(id)
            .into_iter()
            .filter(|f| f["type"] != "welcome")
            .collect()
    }

    const NOW: EpochSeconds = 1_800_000_000;

    async fn connected(store: &MemoryStore, id: &str, scope: Scope) -> ConnectionId {
        let id = ConnectionId::parse(id).unwrap();
        store
            .put_connection(
                &Connection::builder(id.as_str())
                    .connected_at(NOW)
                    .lifetime(100)
                    .scope(scope)
                    .build(),
            )
            .await
            .unwrap();
        id
    }

    async fn send(store: &MemoryStore, push: &RecordingPush, id: &ConnectionId, body: &str) {
        let settings = SubscribeSettings {
            max_subscriptions: 3,
            ..SubscribeSettings::default()
        };
        frame_with(store, push, &settings, (id, body)).await;
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
        let frames = replies(&push, &id);
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
        assert_eq!(replies(&push, &id)[1]["code"], "too_many_subscriptions");
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
        let frame = &replies(&push, &id)[0];
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
        assert_eq!(replies(&push, &id)[0]["code"], "unknown_connection");
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

    /// Handles `body` from `id` with `settings` and no budget; the reply's type.
    async fn frame_with(
        store: &MemoryStore,
        push: &RecordingPush,
        settings: &SubscribeSettings,
        (id, body): (&ConnectionId, &str),
    ) -> Frame {
        let queue = MemoryQueue::new(Duration::from_secs(30), 5);
        let fanout = FanoutSettings::default();
        let ports = Ports::new(store, push, &queue, &fanout);
        let incoming = ClientFrame {
            connection: id,
            body: Some(body),
            is_base64_encoded: false,
            now: NOW,
            deadline: None,
        };
        let outcome = handle_frame(&ports, settings, incoming).await;
        assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
        outcome.reply
    }

    fn is_rate_limited(frame: &Frame) -> bool {
        matches!(
            frame,
            Frame::Error {
                code: ErrorCode::RateLimited,
                ..
            }
        )
    }

    /// Issue 18, item 6: subscribing and unsubscribing over and over made the server tell a
    /// room of 99 each time (20 frames: about 2,000 posts). The posts are charged to the
    /// connection, and once its bucket is in debt the next such frame is refused.
    #[tokio::test]
    async fn subscribe_churn_stops_when_its_presence_posts_spend_the_connections_bucket() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        store.fans_for_tests("m", "Adele", 99, NOW).await;
        let churner = connected(&store, "c", Scope::Any).await;
        let settings = SubscribeSettings {
            post_limits: PostLimits {
                connection: RateLimit {
                    per_second: 1,
                    burst: 300,
                },
                ..PostLimits::default()
            },
            ..SubscribeSettings::default()
        };
        let mut refused = 0;
        for i in 0..20 {
            let body = if i % 2 == 0 {
                r#"{"action":"subscribe","artists":["Adele"]}"#
            } else {
                r#"{"action":"unsubscribe","artists":["Adele"]}"#
            };
            let reply = frame_with(&store, &push, &settings, (&churner, body)).await;
            refused += usize::from(is_rate_limited(&reply));
        }
        let to_others = push
            .delivered()
            .iter()
            .filter(|(to, _)| *to != churner)
            .count();
        // 300 posts, and the one frame that went into debt: at most 99 more.
        assert!(to_others <= 300 + 99, "{to_others} presence posts");
        assert!(to_others >= 99, "the first subscribe was told: {to_others}");
        assert!(refused >= 15, "{refused} of 20 frames refused");
    }

    /// Issue 18, item 3: a room's messages are limited by what they post. In a room of 100 a
    /// message costs 99 posts: a room bucket of 200 takes two, and refuses the third with
    /// `rate_limited`, sending nothing.
    #[tokio::test]
    async fn a_rooms_messages_are_limited_by_the_posts_they_make() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        store.fans_for_tests("m", "Adele", 100, NOW).await;
        let sender = ConnectionId::parse("m-0000").unwrap();
        let settings = SubscribeSettings {
            post_limits: PostLimits {
                room: RateLimit {
                    per_second: 1,
                    burst: 200,
                },
                ..PostLimits::default()
            },
            ..SubscribeSettings::default()
        };
        let body = r#"{"action":"publish","artist":"Adele","data":{"text":"hi"}}"#;
        let mut replies = Vec::new();
        for _ in 0..3 {
            replies.push(frame_with(&store, &push, &settings, (&sender, body)).await);
        }
        assert!(matches!(replies[0], Frame::Published { .. }), "{replies:?}");
        assert!(matches!(replies[1], Frame::Published { .. }), "{replies:?}");
        assert!(is_rate_limited(&replies[2]), "{replies:?}");
        let messages = push
            .delivered()
            .iter()
            .filter(|(to, _)| *to != sender)
            .count();
        assert_eq!(
            messages,
            2 * 99,
            "two messages to the 99 others, not a third"
        );
    }

    /// The `seq` of every notification `id` was sent, in order.
    fn notification_seqs(push: &RecordingPush, id: &ConnectionId) -> Vec<u64> {
        push.frames_to(id)
            .into_iter()
            .filter(|f| f["type"] == "notification")
            .filter_map(|f| f["seq"].as_u64())
            .collect()
    }

    /// Issue 18, item 6: every subscribe with `since` replayed the whole catch-up again, so
    /// one small frame, sent again and again, made the server post the history each time. A
    /// subscription remembers how far its catch-up got; asking again replays what came since.
    #[tokio::test]
    async fn a_catch_up_asked_for_again_replays_only_what_came_since_the_last_one() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let adele = Artist::parse("Adele").unwrap();
        store.publish_for_tests(&adele, 10, NOW).await;
        let id = connected(&store, "c1", Scope::Any).await;
        let again = r#"{"action":"subscribe","artists":["Adele"],"since":{"Adele":0}}"#;

        send(&store, &push, &id, again).await;
        send(&store, &push, &id, again).await;
        send(&store, &push, &id, again).await;

        assert_eq!(
            notification_seqs(&push, &id),
            (1..=10).collect::<Vec<u64>>(),
            "the history once, not three times"
        );
    }

    #[tokio::test]
    async fn a_catch_up_asked_for_again_still_replays_what_was_published_after_the_last_one() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let adele = Artist::parse("Adele").unwrap();
        store.publish_for_tests(&adele, 3, NOW).await;
        let id = connected(&store, "c1", Scope::Any).await;
        let again = r#"{"action":"subscribe","artists":["Adele"],"since":{"Adele":0}}"#;
        send(&store, &push, &id, again).await;
        // 4 and 5 are published while the client is subscribed (the recording push has no
        // fan-out here: as if their live posts were lost, which is what asking again is for).
        store.publish_for_tests(&adele, 5, NOW).await;

        send(&store, &push, &id, again).await;

        assert_eq!(notification_seqs(&push, &id), [1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn a_new_subscription_after_an_unsubscribe_replays_from_the_clients_since_again() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let adele = Artist::parse("Adele").unwrap();
        store.publish_for_tests(&adele, 4, NOW).await;
        let id = connected(&store, "c1", Scope::Any).await;
        let again = r#"{"action":"subscribe","artists":["Adele"],"since":{"Adele":0}}"#;
        send(&store, &push, &id, again).await;
        send(
            &store,
            &push,
            &id,
            r#"{"action":"unsubscribe","artists":["Adele"]}"#,
        )
        .await;

        send(&store, &push, &id, again).await;

        assert_eq!(notification_seqs(&push, &id), [1, 2, 3, 4, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_catch_up_cut_short_is_asked_for_again_from_where_it_stopped() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let adele = Artist::parse("Adele").unwrap();
        store.publish_for_tests(&adele, 6, NOW).await;
        let id = connected(&store, "c1", Scope::Any).await;
        // The subscribed reply, the welcome, then seqs 1 to 3; seq 4 fails every attempt.
        push.fail_after(
            &id,
            5,
            crate::push::recording::Failure::Throttled,
            REPLY_ATTEMPTS,
        );
        let again = r#"{"action":"subscribe","artists":["Adele"],"since":{"Adele":0}}"#;
        send(&store, &push, &id, again).await;

        send(&store, &push, &id, again).await;

        assert_eq!(notification_seqs(&push, &id), [1, 2, 3, 4, 5, 6]);
    }
}
