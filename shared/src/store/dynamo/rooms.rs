//! Rooms on the table: each artist's subscriber count and each connection's publish bucket.
//!
//! The count is kept in one counter item per index shard (`ARTIST#<key>`/`COUNT#<shard>`),
//! moved by `ADD` inside the transaction that writes or deletes the subscription: exact under
//! concurrency, and a hot artist's subscribes spread over as many counter items as the index
//! has shards, so no single item takes every write of a sale. Reading the count is one query
//! of 16 small items.
//! The bucket lives on the connection record (`rate_tokens`, `rate_at`), moved by a
//! conditional update from the values read.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, TransactWriteItem, Update};

use super::{DynamoStore, Item, n, s};
use crate::domain::{ArtistKey, ConnectionId, EpochSeconds, Shard, UserId};
use crate::schema::{
    COUNT_PREFIX, EXPIRES_AT, META, PK, SK, SUBSCRIBERS, artist_pk, connection_pk, count_sk,
};
use crate::store::{RateLimit, SEQUENCE_KEPT_SECONDS, StoreError, refill};

/// BatchGetItem takes at most 100 keys.
const BATCH_GET_MAX: usize = 100;
/// Rounds of asking again for the keys a batch left unprocessed.
const UNPROCESSED_ROUNDS: u32 = 5;

const RATE_TOKENS: &str = "rate_tokens";
const RATE_AT: &str = "rate_at";
/// Tries at taking a token while other messages of the same connection move the bucket.
const TOKEN_ATTEMPTS: u32 = 3;

/// The transaction item that moves `artist`'s count in `shard` by `delta`.
pub(super) fn count_update(
    table: &str,
    artist: &ArtistKey,
    shard: Shard,
    delta: i64,
    now: i64,
) -> Result<TransactWriteItem, StoreError> {
    let update = Update::builder()
        .table_name(table)
        .key(PK, s(artist_pk(artist)))
        .key(SK, s(count_sk(shard)))
        .update_expression("ADD #n :d SET #e = :kept")
        .expression_attribute_names("#n", SUBSCRIBERS)
        .expression_attribute_names("#e", EXPIRES_AT)
        .expression_attribute_values(":d", n(delta))
        .expression_attribute_values(":kept", n(now.saturating_add(SEQUENCE_KEPT_SECONDS)))
        .build()
        .map_err(|e| StoreError::backend("TransactWriteItems", e))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

pub(super) async fn subscriber_count(
    store: &DynamoStore,
    artist: &ArtistKey,
) -> Result<u64, StoreError> {
    let out = store
        .client
        .query()
        .table_name(&store.table)
        .key_condition_expression("#pk = :pk AND begins_with(#sk, :count)")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_names("#sk", SK)
        .expression_attribute_values(":pk", s(artist_pk(artist)))
        .expression_attribute_values(":count", s(COUNT_PREFIX))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| StoreError::backend("Query", e))?;
    let mut total: i64 = 0;
    for item in out.items.unwrap_or_default() {
        total = total.saturating_add(super::num_attr(&item, SUBSCRIBERS)?);
    }
    Ok(u64::try_from(total).unwrap_or(0))
}

pub(super) async fn take_token(
    store: &DynamoStore,
    id: &ConnectionId,
    limit: RateLimit,
    now_millis: i64,
) -> Result<bool, StoreError> {
    for _ in 0..TOKEN_ATTEMPTS {
        let out = store
            .client
            .get_item()
            .table_name(&store.table)
            .key(PK, s(connection_pk(id)))
            .key(SK, s(META))
            .projection_expression("#t, #a")
            .expression_attribute_names("#t", RATE_TOKENS)
            .expression_attribute_names("#a", RATE_AT)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::backend("GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(false);
        };
        let (tokens, at) = match (item.get(RATE_TOKENS), item.get(RATE_AT)) {
            (Some(AttributeValue::N(tokens)), Some(AttributeValue::N(at))) => (
                tokens.parse::<f64>().unwrap_or(0.0),
                at.parse::<i64>().unwrap_or(now_millis),
            ),
            _ => (f64::from(limit.burst), now_millis),
        };
        let tokens = refill(tokens, at, now_millis, limit);
        if tokens < 1.0 {
            return Ok(false);
        }
        let mut update = store
            .client
            .update_item()
            .table_name(&store.table)
            .key(PK, s(connection_pk(id)))
            .key(SK, s(META))
            .update_expression("SET #t = :t, #a = :now")
            .expression_attribute_names("#t", RATE_TOKENS)
            .expression_attribute_names("#a", RATE_AT)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":t", AttributeValue::N(format!("{:.3}", tokens - 1.0)))
            .expression_attribute_values(":now", n(now_millis));
        update = match item.get(RATE_AT) {
            Some(old) => update
                .condition_expression("attribute_exists(#pk) AND #a = :old")
                .expression_attribute_values(":old", old.clone()),
            None => {
                update.condition_expression("attribute_exists(#pk) AND attribute_not_exists(#a)")
            }
        };
        match update.send().await {
            Ok(_) => return Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
            Err(err) => return Err(StoreError::backend("UpdateItem", err)),
        }
    }
    // Other messages of this connection kept taking tokens at the same instant: it is
    // publishing as fast as it can, so it is over its rate anyway.
    Ok(false)
}

pub(super) async fn users(
    store: &DynamoStore,
    ids: &[ConnectionId],
    now: EpochSeconds,
) -> Result<Vec<(ConnectionId, UserId)>, StoreError> {
    let mut users = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(BATCH_GET_MAX) {
        let keys: Vec<Item> = chunk
            .iter()
            .map(|id| {
                Item::from([
                    (PK.to_owned(), s(connection_pk(id))),
                    (SK.to_owned(), s(META)),
                ])
            })
            .collect();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .projection_expression("#pk, #u, #e")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#u", "user_id")
                .expression_attribute_names("#e", EXPIRES_AT)
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::backend("BatchGetItem", e))?,
        );
        let mut round = 0;
        while let Some(request) = pending.take() {
            if round > UNPROCESSED_ROUNDS {
                return Err(StoreError::Unprocessed {
                    operation: "BatchGetItem",
                    count: request.keys().len(),
                });
            }
            round += 1;
            let out = store
                .client
                .batch_get_item()
                .request_items(&store.table, request)
                .send()
                .await
                .map_err(|e| StoreError::backend("BatchGetItem", e))?;
            for item in out
                .responses
                .and_then(|mut tables| tables.remove(&store.table))
                .unwrap_or_default()
            {
                if super::num_attr(&item, EXPIRES_AT)? <= now {
                    continue;
                }
                let id = crate::schema::connection_id_from_pk(super::str_attr(&item, PK)?)
                    .ok_or_else(|| super::corrupt(&item, "bad pk"))?;
                let user = UserId::parse(super::str_attr(&item, "user_id")?)
                    .map_err(|e| super::corrupt(&item, &e.to_string()))?;
                users.push((id, user));
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut tables: HashMap<String, KeysAndAttributes>| {
                    tables.remove(&store.table)
                })
                .filter(|left| !left.keys().is_empty());
        }
    }
    Ok(users)
}
