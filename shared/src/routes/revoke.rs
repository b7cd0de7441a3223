//! Revoking a user, live: record the revocation (so `$connect` refuses the user's tokens issued
//! at or before it), then close every connection on the user's list with a last `revoked`
//! frame, and clean up their records as a 410 would.
//!
//! The revocation is recorded before the list is read, and `$connect` reads the revocation
//! after it lists itself and writes its record: either the revocation finds a racing connect
//! in the list, or that connect finds the revocation and undoes itself. Running the same
//! revocation twice is harmless (EventBridge delivers at least once): a redelivery records the
//! same time and finds the connections already gone.

use futures_util::future::join_all;

use crate::domain::{ConnectionId, EpochSeconds, UserId, now_epoch_seconds};
use crate::push::{Posted, Push};
use crate::routes::presence;
use crate::routes::reply::post_reply;
use crate::store::{Store, StoreError};
use crate::wire::Frame;

/// Connections closed at once.
const CLOSE_CONCURRENCY: usize = 8;
/// Tries at closing one connection when the Management API throttles or fails.
const CLOSE_ATTEMPTS: u32 = 3;

/// A user to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The user (a token's `sub`).
    pub user: UserId,
    /// When the revocation took effect: the user's tokens issued at or before it are refused.
    pub at: EpochSeconds,
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Revoked {
    /// Connections on the user's list.
    pub listed: u64,
    /// Of those, open ones that were sent `revoked` and closed.
    pub closed: u64,
    /// Of those, already gone (their records were cleaned up).
    pub gone: u64,
}

/// Why a revocation must be retried.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The revocation could not be recorded, or the user's list read.
    #[error("the revocation could not be recorded")]
    Store(#[from] StoreError),
    /// Some connections could not be closed (the Management API failed): they stay on the
    /// user's list for the retry.
    #[error("{0} of the user's connections could not be closed")]
    Unclosed(u64),
}

/// Records `revocation` (kept `keep_seconds` from now) and closes every connection of
/// the user: `{"type":"revoked"}`, then `DeleteConnection`, then its records go (and its rooms
/// are told it left, as after a 410).
///
/// # Errors
/// [`RevokeError`]: the event should be retried.
pub async fn revoke<S: Store, P: Push>(
    store: &S,
    push: &P,
    revocation: &Revocation,
    keep_seconds: i64,
    presence_max: u64,
    now: EpochSeconds,
) -> Result<Revoked, RevokeError> {
    // Kept from now, not from its time: a revocation processed late (EventBridge retries for up
    // to an hour) still stands for the whole of `keep_seconds`.
    let until = now.max(revocation.at).saturating_add(keep_seconds);
    let ids = store
        .revoke_user(&revocation.user, revocation.at, until, now)
        .await?;
    let mut revoked = Revoked {
        listed: crate::domain::saturating_u64(ids.len()),
        ..Revoked::default()
    };
    let mut unclosed = 0;
    for chunk in ids.chunks(CLOSE_CONCURRENCY) {
        let outcomes = join_all(
            chunk
                .iter()
                .map(|id| close(store, push, &revocation.user, id, presence_max)),
        )
        .await;
        for outcome in outcomes {
            match outcome {
                Some(Posted::Delivered) => revoked.closed += 1,
                Some(Posted::Gone) => revoked.gone += 1,
                None => unclosed += 1,
            }
        }
    }
    if unclosed > 0 {
        return Err(RevokeError::Unclosed(unclosed));
    }
    Ok(revoked)
}

/// Closes one connection of a revoked user and removes its records: whether it was open, or
/// `None` when it could not be closed (its records are kept, for the retry to find).
async fn close<S: Store, P: Push>(
    store: &S,
    push: &P,
    user: &UserId,
    id: &ConnectionId,
    presence_max: u64,
) -> Option<Posted> {
    // The last frame is best effort: a connection that is gone, or slow, is closed anyway.
    if let Err(err) = post_reply(push, id, &Frame::Revoked.to_bytes()).await {
        tracing::warn!(
            connection_id = %id,
            error = &err as &dyn std::error::Error,
            "could not tell a revoked connection; closing it anyway"
        );
    }
    let mut attempt = 1;
    let closed = loop {
        match push.disconnect(id).await {
            Ok(posted) => break posted,
            Err(err) if err.is_retryable() && attempt < CLOSE_ATTEMPTS => attempt += 1,
            Err(err) => {
                tracing::warn!(
                    connection_id = %id,
                    error = &err as &dyn std::error::Error,
                    "could not close a revoked connection"
                );
                return None;
            }
        }
    };
    match store.delete_connection(id).await {
        Ok(removed) => {
            if removed.user.is_none() {
                // Its record was gone already (TTL, or a `$disconnect` first): the list
                // entry is all that is left of it.
                if let Err(err) = store.release_connection(user, id).await {
                    tracing::warn!(
                        connection_id = %id,
                        error = &err as &dyn std::error::Error,
                        "could not take a closed connection off its user's list; it lapses"
                    );
                }
            }
            presence::left(store, push, id, &removed, presence_max, now_epoch_seconds()).await;
        }
        Err(err) => tracing::warn!(
            connection_id = %id,
            error = &err as &dyn std::error::Error,
            "could not delete the records of a revoked connection; TTL will"
        ),
    }
    tracing::info!(
        connection_id = %id,
        user_id = %user,
        open = closed == Posted::Delivered,
        "closed a revoked connection"
    );
    Some(closed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::Connection;
    use crate::push::recording::RecordingPush;
    use crate::store::ConnectionStore;
    use crate::store::memory::MemoryStore;
    use crate::store::{Admission, Admitted};

    const NOW: EpochSeconds = 1_800_000_000;

    async fn connected(store: &MemoryStore, user: &str, id: &str) -> ConnectionId {
        let connection = Connection::builder(id)
            .user(user)
            .connected_at(NOW)
            .lifetime(3600)
            .build();
        let admission = Admission {
            cap: 5,
            replaces: None,
            issued_at: Some(NOW - 10),
            keep_until: NOW + 7200,
        };
        assert_eq!(
            store
                .admit_connection(&connection, admission, NOW)
                .await
                .unwrap(),
            Admitted::Yes
        );
        store.put_connection(&connection).await.unwrap();
        connection.id
    }

    #[tokio::test]
    async fn every_connection_of_the_user_gets_revoked_then_is_closed_and_forgotten() {
        let store = MemoryStore::new();
        let push = RecordingPush::new();
        let mallory = [
            connected(&store, "mallory", "m-1").await,
            connected(&store, "mallory", "m-2").await,
        ];
        let alice = connected(&store, "alice", "a-1").await;
        let revocation = Revocation {
            user: UserId::parse("mallory").unwrap(),
            at: NOW,
        };

        let revoked = revoke(&store, &push, &revocation, 86_400, 100, NOW)
            .await
            .unwrap();

        assert_eq!(
            revoked,
            Revoked {
                listed: 2,
                closed: 2,
                gone: 0
            }
        );
        for id in &mallory {
            assert_eq!(
                push.frames_to(id),
                vec![serde_json::json!({"type": "revoked"})]
            );
            assert_eq!(store.connection_state(id, NOW).await.unwrap(), None);
        }
        assert_eq!(push.closed(), mallory.to_vec());
        assert!(push.frames_to(&alice).is_empty());
        assert!(store.connection_state(&alice, NOW).await.unwrap().is_some());
        assert_eq!(
            store.revocation(&revocation.user, NOW).await.unwrap(),
            Some(NOW)
        );
    }
}
