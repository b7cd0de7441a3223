//! Users on the table: each user's list of connections (`USER#<id>`/`CONNS`, the per-user
//! cap and the way to a user's connections) and their revocation (`USER#<id>`/`REVOKED`).
//!
//! The list is a map from connection id to that connection's expiry. A connect adds itself
//! with one conditional `UpdateItem`: `size(conns) < limit`, plus the entries it prunes (those
//! lapsed) still being there as read. Plain updates of one item are applied one at a time, so
//! however many connects of a user race, at most the cap pass, and the rest read the list
//! again and are refused, without the conflicts that transactions on one item would meet.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{DynamoStore, Item, n, num_attr, s, str_attr};
use crate::domain::{Connection, ConnectionId, EpochSeconds, UserId};
use crate::schema::{
    EXPIRES_AT, PK, REVOKED_AT, REVOKED_SK, SK, USER_CONNECTIONS, USER_CONNECTIONS_SK, user_pk,
};
use crate::store::{Admission, Admitted, StoreError, is_revoked};

/// Reads of the list before a connect gives up (each lost race means another connect of the
/// same user got in, or pruned what this one meant to).
const ADMIT_ATTEMPTS: u32 = 8;
/// Lapsed entries pruned by one update: an update expression may be at most 4 KB. A list with
/// more (a cap in the hundreds, all lapsed) is pruned by updates of their own first.
const PRUNE_MAX: usize = 32;

/// What a user's partition holds: the listed connections and the standing revocation.
#[derive(Debug, Default)]
struct UserItems {
    /// `None` when there is no list yet.
    listed: Option<HashMap<ConnectionId, EpochSeconds>>,
    revoked_at: Option<EpochSeconds>,
}

async fn read(
    store: &DynamoStore,
    user: &UserId,
    now: EpochSeconds,
) -> Result<UserItems, StoreError> {
    let out = store
        .client
        .query()
        .table_name(&store.table)
        .key_condition_expression("#pk = :pk")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_values(":pk", s(user_pk(user)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| StoreError::backend("Query", e))?;
    let mut items = UserItems::default();
    for item in out.items.unwrap_or_default() {
        match str_attr(&item, SK)? {
            USER_CONNECTIONS_SK => items.listed = Some(listed(&item)?),
            REVOKED_SK if num_attr(&item, EXPIRES_AT)? > now => {
                items.revoked_at = Some(num_attr(&item, REVOKED_AT)?);
            }
            _ => {}
        }
    }
    Ok(items)
}

/// The connections on `user`'s list (none without a list), with their expiries.
pub(super) async fn listed_of(
    store: &DynamoStore,
    user: &UserId,
) -> Result<HashMap<ConnectionId, EpochSeconds>, StoreError> {
    Ok(read(store, user, 0).await?.listed.unwrap_or_default())
}

fn listed(item: &Item) -> Result<HashMap<ConnectionId, EpochSeconds>, StoreError> {
    let Some(AttributeValue::M(map)) = item.get(USER_CONNECTIONS) else {
        return Err(super::corrupt(item, "conns is not a map"));
    };
    let mut listed = HashMap::with_capacity(map.len());
    for (id, expires_at) in map {
        let id = ConnectionId::parse(id)
            .map_err(|_| super::corrupt(item, "conns holds a bad connection id"))?;
        let AttributeValue::N(expires_at) = expires_at else {
            return Err(super::corrupt(item, "conns holds a non-number"));
        };
        let expires_at = expires_at
            .parse()
            .map_err(|_| super::corrupt(item, "conns holds a non-integer"))?;
        listed.insert(id, expires_at);
    }
    Ok(listed)
}

pub(super) async fn admit(
    store: &DynamoStore,
    connection: &Connection,
    admission: Admission<'_>,
    now: EpochSeconds,
) -> Result<Admitted, StoreError> {
    let user = &connection.user_id;
    let mut lost = 0;
    while lost < ADMIT_ATTEMPTS {
        let items = read(store, user, now).await?;
        if is_revoked(admission.issued_at, items.revoked_at) {
            return Ok(Admitted::Revoked);
        }
        let request = store
            .client
            .update_item()
            .table_name(&store.table)
            .key(PK, s(user_pk(user)))
            .key(SK, s(USER_CONNECTIONS_SK))
            .expression_attribute_names("#c", USER_CONNECTIONS)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":keep", n(admission.keep_until));
        let request = match items.listed {
            None => request
                .update_expression("SET #c = :fresh, #e = :keep")
                .condition_expression("attribute_not_exists(#c)")
                .expression_attribute_values(
                    ":fresh",
                    AttributeValue::M(HashMap::from([(
                        connection.id.as_str().to_owned(),
                        n(connection.expires_at),
                    )])),
                ),
            Some(listed) => {
                let (live, lapsed): (Vec<_>, Vec<_>) = listed
                    .iter()
                    .partition(|(_, expires_at)| **expires_at > now);
                if lapsed.len() > PRUNE_MAX
                    && let Some(first) = lapsed.get(..PRUNE_MAX)
                {
                    prune(store, user, first).await?;
                    continue;
                }
                let replacing = admission.replaces.filter(|old| {
                    *old != &connection.id && listed.get(*old).is_some_and(|e| *e > now)
                });
                let limit = usize::try_from(admission.cap)
                    .unwrap_or(usize::MAX)
                    .saturating_add(usize::from(replacing.is_some()));
                if live.len() >= limit {
                    return Ok(Admitted::Full);
                }
                let mut conditions = vec!["size(#c) < :limit".to_owned()];
                let mut removes = Vec::with_capacity(lapsed.len());
                let mut request = request
                    .expression_attribute_names("#new", connection.id.as_str())
                    .expression_attribute_values(":exp", n(connection.expires_at))
                    .expression_attribute_values(
                        ":limit",
                        n(i64::try_from(limit.saturating_add(lapsed.len())).unwrap_or(i64::MAX)),
                    );
                for (i, (id, expires_at)) in lapsed.iter().enumerate() {
                    request = request
                        .expression_attribute_names(format!("#l{i}"), id.as_str())
                        .expression_attribute_values(format!(":l{i}"), n(**expires_at));
                    conditions.push(format!("#c.#l{i} = :l{i}"));
                    removes.push(format!("#c.#l{i}"));
                }
                if let Some(old) = replacing {
                    request = request
                        .expression_attribute_names("#old", old.as_str())
                        .expression_attribute_values(":now", n(now));
                    conditions.push("#c.#old > :now".to_owned());
                }
                let mut update = "SET #c.#new = :exp, #e = :keep".to_owned();
                if !removes.is_empty() {
                    update.push_str(" REMOVE ");
                    update.push_str(&removes.join(", "));
                }
                request
                    .update_expression(update)
                    .condition_expression(conditions.join(" AND "))
            }
        };
        match request.send().await {
            Ok(_) => return Ok(Admitted::Yes),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                lost += 1;
            }
            Err(e) => return Err(StoreError::backend("UpdateItem", e)),
        }
    }
    Err(StoreError::Contended {
        operation: "UpdateItem",
    })
}

/// Removes `lapsed` entries from `user`'s list, each only if it still holds the expiry read
/// (a connection listed again under the same id is kept). Losing a race is fine: the caller
/// reads the list again.
async fn prune(
    store: &DynamoStore,
    user: &UserId,
    lapsed: &[(&ConnectionId, &EpochSeconds)],
) -> Result<(), StoreError> {
    let mut request = store
        .client
        .update_item()
        .table_name(&store.table)
        .key(PK, s(user_pk(user)))
        .key(SK, s(USER_CONNECTIONS_SK))
        .expression_attribute_names("#c", USER_CONNECTIONS);
    let (mut conditions, mut removes) = (Vec::new(), Vec::new());
    for (i, (id, expires_at)) in lapsed.iter().enumerate() {
        request = request
            .expression_attribute_names(format!("#l{i}"), id.as_str())
            .expression_attribute_values(format!(":l{i}"), n(**expires_at));
        conditions.push(format!("#c.#l{i} = :l{i}"));
        removes.push(format!("#c.#l{i}"));
    }
    match request
        .update_expression(format!("REMOVE {}", removes.join(", ")))
        .condition_expression(conditions.join(" AND "))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
        {
            Ok(())
        }
        Err(e) => Err(StoreError::backend("UpdateItem", e)),
    }
}

pub(super) async fn release(
    store: &DynamoStore,
    user: &UserId,
    id: &ConnectionId,
) -> Result<(), StoreError> {
    let result = store
        .client
        .update_item()
        .table_name(&store.table)
        .key(PK, s(user_pk(user)))
        .key(SK, s(USER_CONNECTIONS_SK))
        .update_expression("REMOVE #c.#id")
        // Without a list there is nothing to take off (and no map to remove a key from).
        .condition_expression("attribute_exists(#c)")
        .expression_attribute_names("#c", USER_CONNECTIONS)
        .expression_attribute_names("#id", id.as_str())
        .send()
        .await;
    super::unless_condition_failed(result, "UpdateItem").map(|_| ())
}

pub(super) async fn revocation(
    store: &DynamoStore,
    user: &UserId,
    now: EpochSeconds,
) -> Result<Option<EpochSeconds>, StoreError> {
    let out = store
        .client
        .get_item()
        .table_name(&store.table)
        .key(PK, s(user_pk(user)))
        .key(SK, s(REVOKED_SK))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| StoreError::backend("GetItem", e))?;
    match out.item.filter(|item| !item.is_empty()) {
        Some(item) if num_attr(&item, EXPIRES_AT)? > now => Ok(Some(num_attr(&item, REVOKED_AT)?)),
        _ => Ok(None),
    }
}

pub(super) async fn revoke(
    store: &DynamoStore,
    user: &UserId,
    at: EpochSeconds,
    until: EpochSeconds,
    now: EpochSeconds,
) -> Result<Vec<ConnectionId>, StoreError> {
    // The revocation first, then the list: a connect admitted after this read of the list
    // finds the revocation when it checks, before it answers.
    let put = store
        .client
        .put_item()
        .table_name(&store.table)
        .item(PK, s(user_pk(user)))
        .item(SK, s(REVOKED_SK))
        .item(REVOKED_AT, n(at))
        .item(EXPIRES_AT, n(until))
        // A redelivered (or older) revocation never moves a later one back.
        .condition_expression("attribute_not_exists(#r) OR #r <= :at OR #e <= :now")
        .expression_attribute_names("#r", REVOKED_AT)
        .expression_attribute_names("#e", EXPIRES_AT)
        .expression_attribute_values(":at", n(at))
        .expression_attribute_values(":now", n(now))
        .send()
        .await;
    match put {
        Ok(_) => {}
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) => {}
        Err(e) => return Err(StoreError::backend("PutItem", e)),
    }
    let items = read(store, user, now).await?;
    let mut ids: Vec<ConnectionId> = items.listed.unwrap_or_default().into_keys().collect();
    ids.sort();
    Ok(ids)
}
