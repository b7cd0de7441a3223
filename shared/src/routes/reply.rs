//! Replies to one connection: a frame posted with a few quick retries, and the refusal frames
//! more than one route gives. A leaf of the routes: it uses none of them.

use std::time::Duration;

use crate::domain::ConnectionId;
use crate::push::{Posted, Push, PushError};
use crate::store::RateLimit;
use crate::wire::{ErrorCode, Frame};

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

/// The refusal of a frame whose connection made the server post too much lately.
pub(crate) fn posted_too_much(limit: RateLimit) -> Frame {
    Frame::error(
        ErrorCode::RateLimited,
        format!(
            "this connection made the server post too much lately (catch-up, presence and room \
             messages: {} posts a second, bursts of {}); nothing was changed, try again in a few \
             seconds",
            limit.per_second, limit.burst
        ),
    )
}
