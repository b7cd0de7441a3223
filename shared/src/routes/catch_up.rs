//! Catch-up after a reconnect: replaying what a client missed of an artist, from the
//! artist's history, after a `subscribe` that carried `since`.
//!
//! What a client can rely on, per artist named in `since`:
//! - the `subscribed` reply comes first;
//! - then, when the history no longer reaches back to `since + 1`, one `gap` frame naming the
//!   missing numbers (`from` to `to`, inclusive);
//! - then every held notification numbered above `since`, once, in `seq` order, with the `id`
//!   and `seq` it had live;
//! - a notification published while this happens may also arrive live, before, between or
//!   after these (and so twice): drop copies by `id`. The subscription is written before the
//!   history is read, so a notification is either in what is read or fanned out to the new
//!   subscription, except for DynamoDB's index lag (usually well under a second): a
//!   notification sequenced in that instant arrives only with the next catch-up. A client
//!   that sees `seq` jump (`n` then `n + 2`) subscribes again with `since: n`.
//!
//! Artists are replayed side by side, each in order.
//!
//! A catch-up stops [`DEADLINE_RESERVE`] before the invocation's deadline (`subscribe`'s
//! Timeout is under API Gateway's fixed 29 s integration timeout): for each artist not
//! finished, one `gap` with `"retry": true` names what was not replayed yet, so the client
//! subscribes again with `since: from - 1` and gets the rest.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::domain::{ConnectionId, EpochSeconds};
use crate::push::{Posted, Push};
use crate::routes::messages::post_reply;
use crate::store::{Store, StoreError};
use crate::wire::{Frame, Since};
use crate::work::Notification;

/// Artists replayed at once for one subscribe.
const ARTISTS_AT_ONCE: usize = 4;

/// No catch-up frame is posted when less than this is left before the deadline: the `gap`
/// frames that say where the replay stopped, and the reply's metrics, need the rest.
pub const DEADLINE_RESERVE: Duration = Duration::from_secs(2);

/// What a catch-up sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Notifications sent again.
    pub notifications: u64,
    /// `gap` frames sent.
    pub gaps: u64,
    /// Whether the client was found gone on the way (the replay stopped).
    pub gone: bool,
}

/// The frames that bring a client from `since` to the artist's latest notification:
/// a `gap` for each stretch no longer held, then the held notifications, in `seq` order.
///
/// # Errors
/// [`StoreError`] when the history cannot be read.
pub async fn frames<S: Store>(
    store: &S,
    since: &Since,
    now: EpochSeconds,
    limit: u32,
) -> Result<Vec<Frame>, StoreError> {
    let history = store
        .history(since.artist.key(), since.seq, now, limit)
        .await?;
    let mut frames = Vec::with_capacity(history.entries.len() + 1);
    let mut expected = since.seq.saturating_add(1);
    for entry in &history.entries {
        if entry.seq > expected {
            frames.push(gap(since, expected, entry.seq - 1));
        }
        match Notification::from_history(entry) {
            Ok(notification) => frames.push(notification.frame()),
            Err(err) => {
                // Written by notify from a validated event, so this is not expected; the
                // client is told it is missing rather than left to wonder.
                tracing::error!(
                    artist = since.artist.name(),
                    seq = entry.seq,
                    error = &err as &dyn std::error::Error,
                    "a history entry could not be read back"
                );
                frames.push(gap(since, entry.seq, entry.seq));
            }
        }
        expected = entry.seq.saturating_add(1);
    }
    if history.last_seq >= expected {
        frames.push(gap(since, expected, history.last_seq));
    }
    Ok(frames)
}

fn gap(since: &Since, from: u64, to: u64) -> Frame {
    Frame::Gap {
        artist: since.artist.name().to_owned(),
        from,
        to,
        retry: false,
    }
}

/// The numbers `frames` cover, lowest and highest.
fn span(frames: &[Frame]) -> Option<(u64, u64)> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Notification { seq: Some(seq), .. } => Some((*seq, *seq)),
            Frame::Gap { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .reduce(|(low, high), (from, to)| (low.min(from), high.max(to)))
}

/// Whether a frame may still be posted before `deadline`.
fn in_time(deadline: Option<Instant>) -> bool {
    deadline.is_none_or(|deadline| Instant::now() + DEADLINE_RESERVE < deadline)
}

/// Replays what `connection` missed of each artist in `since`, stopping short of `deadline`
/// (`None`: unknown, no stop) with a `gap` that can be retried. A history that cannot be read
/// is logged and that artist skipped: the client, seeing no frames, still holds its `since`
/// and can ask again.
pub async fn replay<S: Store, P: Push>(
    store: &S,
    push: &P,
    connection: &ConnectionId,
    since: &[Since],
    now: EpochSeconds,
    limit: u32,
    deadline: Option<Instant>,
) -> Replayed {
    let mut total = Replayed::default();
    // Plain chunks of `join_all`: a stream combinator over borrowed entries would not be
    // `Send` for every lifetime the Lambda runtime asks of it.
    for chunk in since.chunks(ARTISTS_AT_ONCE) {
        let done = join_all(
            chunk
                .iter()
                .map(|since| replay_one(store, push, connection, since, now, limit, deadline)),
        )
        .await;
        for one in done {
            total.notifications += one.notifications;
            total.gaps += one.gaps;
            total.gone |= one.gone;
        }
        if total.gone {
            break;
        }
    }
    total
}

async fn replay_one<S: Store, P: Push>(
    store: &S,
    push: &P,
    connection: &ConnectionId,
    since: &Since,
    now: EpochSeconds,
    limit: u32,
    deadline: Option<Instant>,
) -> Replayed {
    let mut replayed = Replayed::default();
    let frames = match frames(store, since, now, limit).await {
        Ok(frames) => frames,
        Err(err) => {
            tracing::error!(
                connection_id = %connection,
                artist = since.artist.name(),
                error = &err as &dyn std::error::Error,
                "could not read the history for a catch-up"
            );
            return replayed;
        }
    };
    let mut frames = frames.into_iter();
    while let Some(mut frame) = frames.next() {
        if !in_time(deadline) {
            let rest: Vec<Frame> = std::iter::once(frame).chain(frames.by_ref()).collect();
            let Some((from, to)) = span(&rest) else { break };
            tracing::warn!(
                connection_id = %connection,
                artist = since.artist.name(),
                from,
                to,
                "the catch-up ran out of time; the client is told to ask again"
            );
            frame = Frame::Gap {
                artist: since.artist.name().to_owned(),
                from,
                to,
                retry: true,
            };
        }
        match post_reply(push, connection, &frame.to_bytes()).await {
            Ok(Posted::Delivered) => {}
            Ok(Posted::Gone) => {
                replayed.gone = true;
                break;
            }
            Err(err) => {
                tracing::warn!(
                    connection_id = %connection,
                    error = &err as &dyn std::error::Error,
                    "a catch-up frame could not be posted; stopping this artist's replay"
                );
                break;
            }
        }
        match frame {
            Frame::Gap { .. } => replayed.gaps += 1,
            _ => replayed.notifications += 1,
        }
    }
    replayed
}
