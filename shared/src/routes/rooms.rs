//! `publish`: a client's message to everyone else in an artist's room.
//!
//! The token's `publish` claim must name the room, each connection has a token bucket
//! (`PUBLISH_RATE_PER_SECOND`, `PUBLISH_BURST`) kept on its record, and the message goes out
//! exactly as a notification does: inline to a small room, through the work queue to a large
//! one, at least once, with 410 cleanup, never to the sender.

use chrono::SecondsFormat;
use serde_json::Value;

use crate::budget::Lane;
use crate::config::PostLimits;
use crate::domain::{Artist, ConnectionId, EpochSeconds, EventId};
use crate::push::Push;
use crate::queue::Queue;
use crate::routes::fanout::Ports;
use crate::routes::reach::{NotifyError, reach};
use crate::routes::reply::posted_too_much;
use crate::routes::subscriptions::unknown_connection;
use crate::store::{Audience, Bucket, RateLimit, Spend, Store};
use crate::wire::{ErrorCode, Frame};
use crate::work::Broadcast;

/// Publishes `data` from connection `id` to `artist`'s room: `published` with the message's
/// id, or the error frame that refused it (nothing is sent then). Inline posting stops short
/// of the invocation's `deadline`; the members not reached by then go to the work queue.
///
/// # Errors
/// [`NotifyError`] when the store or the queue fails.
pub async fn publish<S: Store, P: Push, Q: Queue>(
    ports: &Ports<'_, S, P, Q>,
    (rate, posts): (RateLimit, PostLimits),
    id: &ConnectionId,
    (artist, data): (&Artist, Value),
    (now, deadline): (EpochSeconds, Option<tokio::time::Instant>),
) -> Result<Frame, NotifyError> {
    let store = ports.store;
    let Some(state) = store.connection_state(id, now).await? else {
        return Ok(unknown_connection());
    };
    if !state.connection.may_publish(artist.key()) {
        return Ok(Frame::error(
            ErrorCode::Forbidden,
            format!("your token may not publish to {}", artist.name()),
        ));
    }
    let at = chrono::Utc::now();
    if !store
        .spend(
            Bucket::Messages(id),
            Spend::one(),
            rate,
            at.timestamp_millis(),
        )
        .await?
    {
        return Ok(Frame::error(
            ErrorCode::RateLimited,
            format!(
                "at most {} messages a second (bursts of {}); nothing was sent",
                rate.per_second, rate.burst
            ),
        ));
    }
    // What the message will post: the room but the sender. The sender's connection and the
    // room must both hold that many posts (or be full, for a room larger than their burst).
    let cost = store
        .subscriber_count(artist.key())
        .await?
        .saturating_sub(1);
    let now_ms = at.timestamp_millis();
    let sender = Bucket::Posts(id);
    if !store
        .spend(
            sender,
            Spend::upfront(cost, posts.connection),
            posts.connection,
            now_ms,
        )
        .await?
    {
        return Ok(posted_too_much(posts.connection));
    }
    if !store
        .spend(
            Bucket::Room(artist.key()),
            Spend::upfront(cost, posts.room),
            posts.room,
            now_ms,
        )
        .await?
    {
        store
            .spend(sender, Spend::refund(cost), posts.connection, now_ms)
            .await?;
        return Ok(Frame::error(
            ErrorCode::RateLimited,
            format!(
                "the room {} is busy: its messages may make {} posts a second (bursts of {}), \
                 and this one would make {cost}; nothing was sent, try again in a few seconds",
                artist.name(),
                posts.room.per_second,
                posts.room.burst
            ),
        ));
    }
    let message_id = EventId::parse(&format!(
        "m-{}-{:016x}",
        at.timestamp_millis(),
        fastrand::u64(..)
    ))
    .map_err(|e| NotifyError::Undeliverable(crate::work::Undeliverable(e.to_string())))?;
    let time = at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let frame = Frame::Message {
        id: message_id.as_str().to_owned(),
        artist: artist.name().to_owned(),
        from: state.connection.user_id.as_str().to_owned(),
        data,
        time: time.clone(),
    };
    let broadcast = Broadcast::new(
        &message_id,
        Audience::Artist(artist.key().clone()),
        &frame,
        Some(id.clone()),
        time,
    )?
    .in_lane(Lane::Rooms);
    let summary = reach(ports, &broadcast, now, deadline).await?;
    tracing::info!(
        connection_id = %id,
        message_id = %message_id,
        artist = artist.name(),
        mode = ?summary.mode,
        audience = summary.audience,
        delivered = summary.tally.delivered,
        "room message published"
    );
    Ok(Frame::Published {
        id: message_id.as_str().to_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::FanoutSettings;
    use crate::push::recording::RecordingPush;
    use crate::queue::memory::MemoryQueue;
    use crate::store::memory::MemoryStore;

    const NOW: EpochSeconds = 1_800_000_000;

    /// Issue 18, item 8: a room message was posted inline with no deadline, so the subscribe
    /// function's timeout could kill it mid-room. Out of time, the members go to the queue.
    #[tokio::test]
    async fn a_room_message_out_of_time_goes_to_the_queue_instead_of_past_the_deadline() {
        let (store, push) = (MemoryStore::new(), RecordingPush::new());
        let queue = MemoryQueue::new(Duration::from_secs(30), 5);
        let adele = Artist::parse("Adele").unwrap();
        store.fans_for_tests("m", "Adele", 20, NOW).await;
        let settings = FanoutSettings::default();
        let ports = Ports::new(&store, &push, &queue, &settings);
        let sender = ConnectionId::parse("m-0000").unwrap();
        let rate = RateLimit {
            per_second: 10,
            burst: 20,
        };
        // The invocation's deadline has come: no post may start.
        let deadline = Some(tokio::time::Instant::now());
        let data = serde_json::json!({"text": "hi"});
        let limits = (rate, PostLimits::default());
        let frame = publish(&ports, limits, &sender, (&adele, data), (NOW, deadline))
            .await
            .unwrap();

        assert!(matches!(frame, Frame::Published { .. }), "{frame:?}");
        assert!(
            push.delivered().is_empty(),
            "nothing posted past the deadline"
        );
        assert!(queue.sent() > 0, "the members went to the work queue");
    }
}
