//! Presence: how many are in an artist's room, and who comes and goes.
//!
//! - Every subscribe is answered with a `welcome` per artist: the room's subscriber count (an
//!   exact counter kept with the subscription writes).
//! - In a room of at most `PRESENCE_MAX_MEMBERS` (100 by default), the others are told
//!   `joined` and `left`, with the new count. Above it only the count is kept: a join costs one
//!   count read, never a post to every member, so presence is never O(n^2) on a big room. In a
//!   small room a join or a leave costs one index read per shard and at most the cap's posts.
//! - Presence frames are best effort: a member that cannot be reached is left to the next
//!   fan-out to clean up.
//! - Coalesced per user and room ([`crate::store::presence`]): a notice equal to the last one
//!   told is not posted again, and a subscribe or unsubscribe within [`WINDOW_MS`] of the
//!   last notice is settled at the window's end by one of them (which waits for it, at most
//!   the window), telling what is true then. A connection that is gone is told at once.

use futures_util::future::join_all;

use crate::domain::{Artist, ConnectionId, EpochSeconds, Shard, UserId};
use crate::push::Push;
use crate::routes::reply::post_reply;
use crate::store::{Audience, Notice, Pacing, Removed, Span, Store, StoreError, Told};
use crate::wire::Frame;

/// Posts to a room's members at once.
const POSTS_AT_ONCE: usize = 16;

/// The `welcome` frame for each of `artists`: its room's subscriber count.
///
/// # Errors
/// [`StoreError`] when a count cannot be read.
pub async fn welcomes<S: Store>(store: &S, artists: &[Artist]) -> Result<Vec<Frame>, StoreError> {
    join_all(artists.iter().map(|artist| async move {
        Ok(Frame::Welcome {
            artist: artist.name().to_owned(),
            subscribers: store.subscriber_count(artist.key()).await?,
        })
    }))
    .await
    .into_iter()
    .collect()
}

/// The window within which a user's subscribes and unsubscribes to one room are told as at
/// most two notices: the first at once, and what is true at the window's end.
pub const WINDOW_MS: i64 = 1000;

/// A subscribe's or an unsubscribe's pacing.
const COALESCED: Pacing = Pacing::Coalesced {
    window_ms: WINDOW_MS,
};

/// Tells the others in each of `artists`' rooms (those with presence on) that `user` entered;
/// returns the posts that took.
pub async fn joined<S: Store, P: Push>(
    store: &S,
    push: &P,
    who: (&ConnectionId, &UserId),
    artists: &[Artist],
    presence_max: u64,
    now: EpochSeconds,
) -> u64 {
    let notice = (Notice::Joined, COALESCED);
    notify_rooms(store, push, notice, who, artists, presence_max, now).await
}

/// Tells the others in the rooms a removed connection was in (those with presence on) that it
/// left, at once.
pub async fn left<S: Store, P: Push>(
    store: &S,
    push: &P,
    id: &ConnectionId,
    removed: &Removed,
    presence_max: u64,
    now: EpochSeconds,
) {
    let Some(user) = &removed.user else {
        return;
    };
    let notice = (Notice::Left, Pacing::Now);
    let artists = &removed.artists;
    notify_rooms(store, push, notice, (id, user), artists, presence_max, now).await;
}

/// Tells the others in `artists`' rooms (those with presence on) that `user` left (an
/// unsubscribe: coalesced); returns the posts that took.
pub async fn left_rooms<S: Store, P: Push>(
    store: &S,
    push: &P,
    who: (&ConnectionId, &UserId),
    artists: &[Artist],
    presence_max: u64,
    now: EpochSeconds,
) -> u64 {
    let notice = (Notice::Left, COALESCED);
    notify_rooms(store, push, notice, who, artists, presence_max, now).await
}

async fn notify_rooms<S: Store, P: Push>(
    store: &S,
    push: &P,
    notice: (Notice, Pacing),
    who: (&ConnectionId, &UserId),
    artists: &[Artist],
    presence_max: u64,
    now: EpochSeconds,
) -> u64 {
    let posts = join_all(
        artists
            .iter()
            .map(|artist| tell(store, push, artist, who, notice, (presence_max, now))),
    )
    .await;
    posts.into_iter().sum()
}

/// The frame telling `artist`'s room that `user` came or went, with the room's count.
fn frame(notice: Notice, artist: &Artist, user: &UserId, subscribers: u64) -> Frame {
    let (artist, user) = (artist.name().to_owned(), user.as_str().to_owned());
    match notice {
        Notice::Joined => Frame::Joined {
            artist,
            user,
            subscribers,
        },
        Notice::Left => Frame::Left {
            artist,
            user,
            subscribers,
        },
    }
}

/// Tells `artist`'s room (all but the connection `who` names) that its user came or went,
/// when the room has presence on (at most `presence_max` subscribers), the user has no other
/// connection in it (presence is per user, so a client that replaces its connection, a
/// reconnect before the 2-hour cap or a second tab, neither enters nor leaves), and the
/// room's record of the user says so ([`RoomStore::presence_told`]). Returns the posts made.
async fn tell<S: Store, P: Push>(
    store: &S,
    push: &P,
    artist: &Artist,
    (except, user): (&ConnectionId, &UserId),
    (notice, pacing): (Notice, Pacing),
    (presence_max, now): (u64, EpochSeconds),
) -> u64 {
    let warn = |err: &StoreError, what: &str| {
        tracing::warn!(
            artist = artist.name(),
            error = err as &dyn std::error::Error,
            "could not {what} for presence"
        );
    };
    let room = match Members::read(store, artist, user, presence_max, now).await {
        Ok(Some(room)) => room,
        Ok(None) => return 0,
        Err(err) => {
            warn(&err, "read a room");
            return 0;
        }
    };
    if room.others_of_user.iter().any(|id| id != except) {
        return 0;
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    match store
        .presence_told(artist.key(), user, notice, pacing, now_ms)
        .await
    {
        Ok(Told::Tell) => {
            let recipients: Vec<&ConnectionId> =
                room.others.iter().filter(|id| *id != except).collect();
            post_all(push, &recipients, &frame(notice, artist, user, room.count)).await
        }
        Ok(Told::Skip) => 0,
        Ok(Told::Settle { at_ms }) => {
            let wait = at_ms.saturating_sub(now_ms).clamp(0, WINDOW_MS);
            tokio::time::sleep(std::time::Duration::from_millis(
                u64::try_from(wait).unwrap_or(0),
            ))
            .await;
            settle(store, push, artist, user, at_ms, (presence_max, now)).await
        }
        Err(err) => {
            warn(&err, "read what a room was told");
            0
        }
    }
}

/// At the end of a window: tells `artist`'s room what is true of `user` now, if the room was
/// last told otherwise and the settle armed for `armed_ms` still stands. A frame applied
/// between the room's read and the record's write is caught by one more read: told at once.
/// Returns the posts made.
async fn settle<S: Store, P: Push>(
    store: &S,
    push: &P,
    artist: &Artist,
    user: &UserId,
    armed_ms: i64,
    (presence_max, now): (u64, EpochSeconds),
) -> u64 {
    let room = match Members::read(store, artist, user, presence_max, now).await {
        Ok(Some(room)) => room,
        // Above the cap now: presence is off, and the room is told nothing.
        Ok(None) => return 0,
        Err(err) => {
            tracing::warn!(
                artist = artist.name(),
                error = &err as &dyn std::error::Error,
                "could not read a room to settle its presence"
            );
            return 0;
        }
    };
    let state = room.state();
    let now_ms = chrono::Utc::now().timestamp_millis();
    match store
        .settle_presence(artist.key(), user, state, armed_ms, now_ms)
        .await
    {
        Ok(true) => {
            let recipients: Vec<&ConnectionId> = room.others.iter().collect();
            let mut posts =
                post_all(push, &recipients, &frame(state, artist, user, room.count)).await;
            // A subscribe or unsubscribe applied after the read above saw the room told the
            // opposite of what it did, and held back: tell it now.
            if let Ok(Some(again)) = Members::read(store, artist, user, presence_max, now).await
                && again.state() != state
            {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let changed = again.state();
                if let Ok(Told::Tell) = store
                    .presence_told(artist.key(), user, changed, Pacing::Now, now_ms)
                    .await
                {
                    let recipients: Vec<&ConnectionId> = again.others.iter().collect();
                    let frame = frame(changed, artist, user, again.count);
                    posts += post_all(push, &recipients, &frame).await;
                }
            }
            posts
        }
        Ok(false) => 0,
        Err(err) => {
            tracing::warn!(
                artist = artist.name(),
                error = &err as &dyn std::error::Error,
                "could not settle a room's presence"
            );
            0
        }
    }
}

/// Posts `frame` to each of `recipients`, a few at once; returns the posts made.
async fn post_all<P: Push>(push: &P, recipients: &[&ConnectionId], frame: &Frame) -> u64 {
    let bytes = frame.to_bytes();
    for chunk in recipients.chunks(POSTS_AT_ONCE) {
        join_all(chunk.iter().map(|id| post_reply(push, id, &bytes))).await;
    }
    crate::domain::saturating_u64(recipients.len())
}

/// A room with presence on, as seen from one user.
struct Members {
    /// Its subscriber count.
    count: u64,
    /// Its live members of other users.
    others: Vec<ConnectionId>,
    /// The user's own connections in it.
    others_of_user: Vec<ConnectionId>,
}

impl Members {
    /// What is true of the user: in the room (`joined`) or not (`left`).
    fn state(&self) -> Notice {
        if self.others_of_user.is_empty() {
            Notice::Left
        } else {
            Notice::Joined
        }
    }

    /// `artist`'s room, split into `user`'s connections and the rest; `None` when presence is
    /// off (above `presence_max`).
    async fn read<S: Store>(
        store: &S,
        artist: &Artist,
        user: &UserId,
        presence_max: u64,
        now: EpochSeconds,
    ) -> Result<Option<Self>, StoreError> {
        let Some((count, members)) = room(store, artist, presence_max, now).await? else {
            return Ok(None);
        };
        let users = store.users(&members, now).await?;
        let (mine, _): (Vec<_>, Vec<_>) = users.into_iter().partition(|(_, u)| u == user);
        let mine: Vec<ConnectionId> = mine.into_iter().map(|(id, _)| id).collect();
        let others = members
            .into_iter()
            .filter(|id| !mine.contains(id))
            .collect();
        Ok(Some(Self {
            count,
            others,
            others_of_user: mine,
        }))
    }
}

/// The subscriber count and the live members of a room with presence on; `None` when its
/// count is above `presence_max`. The members are read from the index (one first page per
/// shard).
async fn room<S: Store>(
    store: &S,
    artist: &Artist,
    presence_max: u64,
    now: EpochSeconds,
) -> Result<Option<(u64, Vec<ConnectionId>)>, StoreError> {
    let count = store.subscriber_count(artist.key()).await?;
    if count > presence_max {
        return Ok(None);
    }
    let audience = Audience::Artist(artist.key().clone());
    let limit = u32::try_from(presence_max.saturating_add(1)).unwrap_or(u32::MAX);
    let audience = &audience;
    let pages = join_all(Shard::all().map(|shard| async move {
        store
            .subscribers(audience, &Span::whole(shard), now, limit)
            .await
    }))
    .await;
    let mut members = Vec::new();
    for page in pages {
        members.extend(page?.connections);
    }
    if crate::domain::saturating_u64(members.len()) > presence_max {
        return Ok(None);
    }
    Ok(Some((count, members)))
}
