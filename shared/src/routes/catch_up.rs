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
//! A catch-up that cannot finish ends in one `gap` with `"retry": true` naming what was not
//! replayed yet (still held), so the client subscribes again with `since: from - 1` and gets
//! the rest. That happens when
//! - it runs into [`DEADLINE_RESERVE`] before the invocation's deadline (`subscribe`'s Timeout
//!   is under API Gateway's fixed 29 s integration timeout);
//! - a frame cannot be posted (429 or 5xx on every attempt): the gap covers it and the rest;
//! - the history cannot be read: the gap runs from `since + 1` to the artist's latest `seq` as
//!   read before the subscription was written (later ones reach the connection live), and
//!   there is none when the client already has that.
//!
//! Never silently: should the gap itself not get through, the client still learns from the
//! `subscribed` reply's `seq`, ahead of what it received, and asks again.
//!
//! Once per subscription: how far each artist's replay got (every frame up to there posted)
//! is kept on the subscription ([`ConnectionStore::mark_replayed`]), and a catch-up asked for
//! again on the same connection starts there rather than at the client's `since` (see
//! `subscriptions::behind`). A frame sent again and again cannot make the server post the
//! history again and again.
//!
//! [`ConnectionStore::mark_replayed`]: crate::store::ConnectionStore::mark_replayed

use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::budget::{Allowance, Budget, Lane};
use crate::domain::{ConnectionId, EpochSeconds};
use crate::push::{Posted, Push};
use crate::routes::reply::post_reply;
use crate::routes::subscriptions::Resume;
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

impl Replayed {
    /// Counts a frame that was posted.
    fn count(&mut self, frame: &Frame) {
        match frame {
            Frame::Gap { .. } => self.gaps += 1,
            _ => self.notifications += 1,
        }
    }
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

/// `from..=to` is still held but was not replayed: ask again.
fn retry_gap(since: &Since, from: u64, to: u64) -> Frame {
    Frame::Gap {
        artist: since.artist.name().to_owned(),
        from,
        to,
        retry: true,
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

/// Replays what `connection` missed of each artist in `resume`, stopping short of `deadline`
/// (`None`: unknown, no stop). An artist's replay that cannot finish (out of time, a frame
/// that cannot be posted, a history that cannot be read) ends in a `gap` that can be retried.
///
/// `out` is where frames go and the account's posting budget: every replayed notification
/// takes a token, as the connection's (a replay is a fan-out of history to one fan, up to
/// `limit` frames per artist, not a single reply).
pub async fn replay<S: Store, P: Push>(
    store: &S,
    out: (&P, &dyn Budget),
    connection: &ConnectionId,
    resume: &[Resume],
    now: EpochSeconds,
    limit: u32,
    deadline: Option<Instant>,
) -> Replayed {
    let (push, budget) = out;
    let most = resume
        .len()
        .saturating_mul(usize::try_from(limit).unwrap_or(usize::MAX));
    let allowance = Allowance::new(budget, (connection.as_str(), Lane::Sale), most, None);
    let push = (push, &allowance);
    let mut total = Replayed::default();
    // Plain chunks of `join_all`: a stream combinator over borrowed entries would not be
    // `Send` for every lifetime the Lambda runtime asks of it.
    for chunk in resume.chunks(ARTISTS_AT_ONCE) {
        let done = join_all(
            chunk
                .iter()
                .map(|resume| replay_one(store, push, connection, resume, now, limit, deadline)),
        )
        .await;
        for (resume, (one, through)) in chunk.iter().zip(done) {
            total.notifications += one.notifications;
            total.gaps += one.gaps;
            total.gone |= one.gone;
            if !one.gone && through > resume.since.seq {
                mark(store, connection, resume, through).await;
            }
        }
        if total.gone {
            break;
        }
    }
    total
}

async fn replay_one<S: Store, P: Push>(
    store: &S,
    (push, allowance): (&P, &Allowance<'_>),
    connection: &ConnectionId,
    resume: &Resume,
    now: EpochSeconds,
    limit: u32,
    deadline: Option<Instant>,
) -> (Replayed, u64) {
    let since = &resume.since;
    let mut replayed = Replayed::default();
    // Every notification up to here was posted (or stood for by a gap of what is no longer
    // held): the subscription's new watermark.
    let mut through = since.seq;
    let frames = match frames(store, since, now, limit).await {
        Ok(frames) => frames,
        Err(err) => {
            // What the catch-up owes ends at the baseline: anything later reaches the
            // connection live.
            tracing::error!(
                connection_id = %connection,
                artist = since.artist.name(),
                from = since.seq.saturating_add(1),
                to = resume.latest,
                error = &err as &dyn std::error::Error,
                "could not read the history for a catch-up; the client is told to ask again"
            );
            if resume.latest <= since.seq {
                return (replayed, through);
            }
            vec![retry_gap(since, since.seq.saturating_add(1), resume.latest)]
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
            frame = retry_gap(since, from, to);
        }
        allowance.take().await;
        match post_reply(push, connection, &frame.to_bytes()).await {
            Ok(Posted::Delivered) => {
                replayed.count(&frame);
                through = through.max(covered(&frame));
            }
            Ok(Posted::Gone) => {
                replayed.gone = true;
                break;
            }
            Err(err) => {
                tracing::warn!(
                    connection_id = %connection,
                    artist = since.artist.name(),
                    error = &err as &dyn std::error::Error,
                    "a catch-up frame could not be posted; the client is told to ask again"
                );
                let rest: Vec<Frame> = std::iter::once(frame).chain(frames.by_ref()).collect();
                give_up(push, connection, since, &rest, &mut replayed).await;
                break;
            }
        }
    }
    (replayed, through)
}

/// The highest `seq` a posted catch-up frame settles: a notification's own, the end of a gap
/// of what is no longer held; nothing for a gap to be asked for again.
fn covered(frame: &Frame) -> u64 {
    match frame {
        Frame::Notification { seq: Some(seq), .. } => *seq,
        Frame::Gap {
            to, retry: false, ..
        } => *to,
        _ => 0,
    }
}

/// Records how far a catch-up of `resume`'s artist got, so that asking again for the same
/// (`since` sent again) replays only what came since. A failure costs that saving only.
async fn mark<S: Store>(store: &S, connection: &ConnectionId, resume: &Resume, through: u64) {
    if let Err(err) = store
        .mark_replayed(connection, resume.since.artist.key(), through)
        .await
    {
        tracing::warn!(
            connection_id = %connection,
            artist = resume.since.artist.name(),
            through,
            error = &err as &dyn std::error::Error,
            "could not record how far a catch-up got"
        );
    }
}

/// Ends an artist's replay whose frame `rest[0]` could not be posted: one retry `gap` naming
/// `rest` (unless that frame was such a gap already), so the client asks again.
async fn give_up<P: Push>(
    push: &P,
    connection: &ConnectionId,
    since: &Since,
    rest: &[Frame],
    replayed: &mut Replayed,
) {
    if matches!(rest.first(), Some(Frame::Gap { retry: true, .. })) {
        return;
    }
    let Some((from, to)) = span(rest) else { return };
    let gap = retry_gap(since, from, to);
    match post_reply(push, connection, &gap.to_bytes()).await {
        Ok(Posted::Delivered) => replayed.count(&gap),
        Ok(Posted::Gone) => replayed.gone = true,
        // The `subscribed` reply's `seq` still tells the client what it is missing.
        Err(err) => tracing::error!(
            connection_id = %connection,
            artist = since.artist.name(),
            from,
            to,
            error = &err as &dyn std::error::Error,
            "the gap ending a catch-up cut short could not be posted either"
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::Artist;
    use crate::push::recording::{Failure, RecordingPush};
    use crate::routes::reply::REPLY_ATTEMPTS;
    use crate::store::memory::MemoryStore;

    const NOW: EpochSeconds = 1_800_000_000;

    /// A store holding Adele's notifications 1 to `count`.
    async fn adele_published(count: u64) -> MemoryStore {
        let store = MemoryStore::new();
        store
            .publish_for_tests(&Artist::parse("Adele").unwrap(), count, NOW)
            .await;
        store
    }

    /// Adele's catch-up from `since`, owed up to `latest`.
    fn adele_from(since: u64, latest: u64) -> Resume {
        Resume {
            since: Since {
                artist: Artist::parse("Adele").unwrap(),
                seq: since,
            },
            latest,
        }
    }

    async fn replay_adele(
        store: &MemoryStore,
        push: &RecordingPush,
        id: &ConnectionId,
        resume: Resume,
    ) -> Replayed {
        replay(
            store,
            (push, &crate::budget::Unlimited),
            id,
            &[resume],
            NOW,
            100,
            None,
        )
        .await
    }

    /// `(type, seq or from..to, retry)` of each frame.
    fn shape(frames: &[Value]) -> Vec<Value> {
        frames
            .iter()
            .map(|f| match f["type"].as_str() {
                Some("notification") => json!(["notification", f["seq"]]),
                _ => json!([f["type"], f["from"], f["to"], f["retry"]]),
            })
            .collect()
    }

    /// A replay is a fan-out of history to one fan: its frames take the account budget's
    /// tokens like any other post (issue 17, item 3).
    #[tokio::test(start_paused = true)]
    async fn a_replay_takes_its_frames_from_the_account_budget() {
        let store = adele_published(60).await;
        let (push, id) = (RecordingPush::new(), ConnectionId::parse("c1").unwrap());
        // 200 posts/s: 20 a 100 ms window, at most 10 in each half for one poster.
        let budget = crate::budget::in_memory(200);
        let started = Instant::now();

        let replayed = replay(
            &store,
            (&push, budget.as_ref()),
            &id,
            &[adele_from(0, 60)],
            NOW,
            100,
            None,
        )
        .await;

        assert_eq!(replayed.notifications, 60);
        // 60 frames at 20 a window: three windows, so past two window ends (the first window
        // may be all but over when the replay starts), not at once.
        let took = started.elapsed();
        assert!(took > Duration::from_millis(100), "{took:?}");
        assert!(took <= Duration::from_millis(400), "{took:?}");
    }

    #[tokio::test]
    async fn a_frame_that_fails_every_attempt_ends_the_replay_in_a_retry_gap_naming_the_rest() {
        let store = adele_published(12).await;
        let (push, id) = (RecordingPush::new(), ConnectionId::parse("c1").unwrap());
        // Seqs 1 to 10 get through; 11 is throttled on every attempt.
        push.fail_after(&id, 10, Failure::Throttled, REPLY_ATTEMPTS);

        let replayed = replay_adele(&store, &push, &id, adele_from(0, 12)).await;

        let mut expected: Vec<Value> = (1..=10).map(|n| json!(["notification", n])).collect();
        expected.push(json!(["gap", 11, 12, true]));
        assert_eq!(shape(&push.frames_to(&id)), expected);
        assert_eq!(
            replayed,
            Replayed {
                notifications: 10,
                gaps: 1,
                gone: false
            }
        );
    }

    #[tokio::test]
    async fn a_history_that_cannot_be_read_ends_in_a_retry_gap_up_to_the_baseline() {
        let store = adele_published(7).await;
        let (push, id) = (RecordingPush::new(), ConnectionId::parse("c1").unwrap());
        store.fail_history(Artist::parse("Adele").unwrap().key(), 1);

        let replayed = replay_adele(&store, &push, &id, adele_from(2, 5)).await;

        // 6 and 7 came after the baseline: they reach the connection live.
        assert_eq!(
            push.frames_to(&id),
            vec![json!({"type":"gap","artist":"Adele","from":3,"to":5,"retry":true})]
        );
        assert_eq!(replayed.gaps, 1);
    }

    #[tokio::test]
    async fn a_history_that_cannot_be_read_owes_nothing_to_a_client_at_the_baseline() {
        let store = adele_published(5).await;
        let (push, id) = (RecordingPush::new(), ConnectionId::parse("c1").unwrap());
        store.fail_history(Artist::parse("Adele").unwrap().key(), 1);

        let replayed = replay_adele(&store, &push, &id, adele_from(5, 5)).await;

        assert_eq!(push.frames_to(&id), Vec::<Value>::new());
        assert_eq!(replayed, Replayed::default());
    }

    #[tokio::test]
    async fn a_retry_gap_that_cannot_be_posted_either_is_given_up_after_its_attempts() {
        let store = adele_published(3).await;
        let (push, id) = (RecordingPush::new(), ConnectionId::parse("c1").unwrap());
        push.fail_next(&id, Failure::Unavailable, 10 * REPLY_ATTEMPTS);

        let replayed = replay_adele(&store, &push, &id, adele_from(0, 3)).await;

        // The first notification's attempts, then the gap's: no more.
        assert_eq!(push.attempts(&id), 2 * REPLY_ATTEMPTS);
        assert_eq!(push.frames_to(&id), Vec::<Value>::new());
        assert_eq!(replayed, Replayed::default());
    }
}
