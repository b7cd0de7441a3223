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

use futures_util::future::join_all;

use crate::domain::{Artist, ConnectionId, EpochSeconds, Shard, UserId};
use crate::push::Push;
use crate::routes::messages::post_reply;
use crate::store::{Audience, Removed, Span, Store, StoreError};
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

/// A presence notice: someone entered or left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// `joined`.
    Joined,
    /// `left`.
    Left,
}

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
    notify_rooms(store, push, Notice::Joined, who, artists, presence_max, now).await
}

/// Tells the others in the rooms a removed connection was in (those with presence on) that it
/// left.
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
    left_rooms(store, push, (id, user), &removed.artists, presence_max, now).await;
}

/// Tells the others in `artists`' rooms (those with presence on) that `user` left; returns
/// the posts that took.
pub async fn left_rooms<S: Store, P: Push>(
    store: &S,
    push: &P,
    who: (&ConnectionId, &UserId),
    artists: &[Artist],
    presence_max: u64,
    now: EpochSeconds,
) -> u64 {
    notify_rooms(store, push, Notice::Left, who, artists, presence_max, now).await
}

async fn notify_rooms<S: Store, P: Push>(
    store: &S,
    push: &P,
    notice: Notice,
    who: (&ConnectionId, &UserId),
    artists: &[Artist],
    presence_max: u64,
    now: EpochSeconds,
) -> u64 {
    let mut posts = 0;
    for artist in artists {
        posts += tell(store, push, artist, who, presence_max, now, |subscribers| {
            let (artist, user) = (artist.name().to_owned(), who.1.as_str().to_owned());
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
        })
        .await;
    }
    posts
}

/// Posts `frame(count)` to every member of `artist`'s room but the connection `who` names,
/// when the room has presence on (at most `presence_max` subscribers) and the user has no
/// other connection in it: presence is per user, so a client that replaces its connection
/// (a reconnect before the 2-hour cap, a second tab) neither enters nor leaves. Returns the
/// posts made.
async fn tell<S: Store, P: Push>(
    store: &S,
    push: &P,
    artist: &Artist,
    who: (&ConnectionId, &UserId),
    presence_max: u64,
    now: EpochSeconds,
    frame: impl Fn(u64) -> Frame,
) -> u64 {
    let (except, user) = who;
    let (count, members) = match room(store, artist, presence_max, now).await {
        Ok(Some(room)) => room,
        Ok(None) => return 0,
        Err(err) => {
            tracing::warn!(
                artist = artist.name(),
                error = &err as &dyn std::error::Error,
                "could not read a room for presence"
            );
            return 0;
        }
    };
    let others: Vec<ConnectionId> = members.into_iter().filter(|id| id != except).collect();
    match store.users(&others, now).await {
        Ok(users) if users.iter().any(|(_, other)| other == user) => return 0,
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(
                artist = artist.name(),
                error = &err as &dyn std::error::Error,
                "could not read a room's users for presence"
            );
            return 0;
        }
    }
    let bytes = frame(count).to_bytes();
    for chunk in others.chunks(POSTS_AT_ONCE) {
        join_all(chunk.iter().map(|id| post_reply(push, id, &bytes))).await;
    }
    u64::try_from(others.len()).unwrap_or(u64::MAX)
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
    if u64::try_from(members.len()).unwrap_or(u64::MAX) > presence_max {
        return Ok(None);
    }
    Ok(Some((count, members)))
}
