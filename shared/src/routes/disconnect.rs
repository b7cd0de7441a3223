//! `$disconnect`: forget the connection and its subscriptions, and tell the rooms it was in.

use crate::domain::{ConnectionId, EpochSeconds};
use crate::push::Push;
use crate::routes::presence;
use crate::store::{Removed, Store, StoreError};

/// Deletes the connection record and every subscription of it, then tells the others in the
/// rooms it left (rooms of at most `presence_max`). Idempotent: an unknown connection deletes
/// nothing and succeeds.
///
/// # Errors
/// [`StoreError`] when the table cannot be reached.
pub async fn disconnect<S: Store, P: Push>(
    store: &S,
    push: &P,
    id: &ConnectionId,
    presence_max: u64,
    now: EpochSeconds,
) -> Result<Removed, StoreError> {
    let removed = store.delete_connection(id).await?;
    presence::left(store, push, id, &removed, presence_max, now).await;
    Ok(removed)
}
