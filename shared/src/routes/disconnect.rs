//! `$disconnect`: forget the connection and its subscriptions.

use crate::domain::ConnectionId;
use crate::store::{Store, StoreError};

/// Deletes the connection record and every subscription of it; returns how many records went.
/// Idempotent: an unknown connection deletes nothing and succeeds.
///
/// # Errors
/// [`StoreError`] when the table cannot be reached.
pub async fn disconnect<S: Store>(store: &S, id: &ConnectionId) -> Result<usize, StoreError> {
    store.delete_connection(id).await
}
