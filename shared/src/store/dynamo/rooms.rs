//! Rooms on the table: each artist's subscriber count and each connection's publish bucket.
//!
//! The count is kept in one counter item per index shard (`ARTIST#<key>`/`COUNT#<shard>`),
//! moved by `ADD` inside the transaction that writes or deletes the subscription: exact under
//! concurrency, and a hot artist's subscribes spread over as many counter items as the index
//! has shards, so no single item takes every write of a sale. Reading the count is one query
//! of 16 small items.
//! The buckets ([`Bucket`]) live on the connection record (messages: `rate_tokens`,
//! `rate_at`; posts: `post_tokens`, `post_at`) and on an item per artist
//! (`ARTIST#<key>`/`POSTS`, with a TTL), each moved by a conditional update from the values
//! read.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, TransactWriteItem, Update};

use super::{DynamoStore, Item, corrupt, n, num_attr, s, str_attr};
use crate::domain::{ArtistKey, ConnectionId, EpochSeconds, Shard, UserId};
use crate::schema::{
    self, ARTIST_NAME, BY_ARTIST_INDEX, COUNT_PREFIX, EXPIRES_AT, GSI1PK, GSI2PK, META, PK,
    ROOM_POSTS_SK, SETTLE_MS, SK, SUBSCRIBERS, TOLD, TOLD_MS, artist_pk, connection_pk, count_sk,
    counts_pk, presence_sk, subscription_sk,
};
use crate::store::presence::{self, Notice, Pacing, PresenceRecord, Told};
use crate::store::{
    Audience, Bucket, LAPSED_WINDOW_SECONDS, RateLimit, RoomStore, SEQUENCE_KEPT_SECONDS, Span,
    Spend, StoreError, SubscriberPage, refill,
};

impl RoomStore for DynamoStore {
    async fn presence_told(
        &self,
        artist: &ArtistKey,
        user: &UserId,
        notice: crate::store::Notice,
        pacing: crate::store::Pacing,
        now_ms: i64,
    ) -> Result<crate::store::Told, StoreError> {
        presence_told(self, (artist, user), notice, pacing, now_ms).await
    }

    async fn settle_presence(
        &self,
        artist: &ArtistKey,
        user: &UserId,
        state: crate::store::Notice,
        armed_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        settle_presence(self, (artist, user), (state, armed_ms), now_ms).await
    }

    async fn subscriber_count(&self, artist: &ArtistKey) -> Result<u64, StoreError> {
        subscriber_count(self, artist).await
    }

    async fn spend(
        &self,
        bucket: Bucket<'_>,
        spend: Spend,
        limit: RateLimit,
        now_millis: i64,
    ) -> Result<bool, StoreError> {
        self::spend(self, bucket, spend, limit, now_millis).await
    }

    async fn subscribers(
        &self,
        audience: &Audience,
        span: &Span,
        now: EpochSeconds,
        limit: u32,
    ) -> Result<SubscriberPage, StoreError> {
        let partition = schema::audience_shard_pk(audience, span.shard);
        let start = span.after.as_ref().map(|id| {
            let sk = match audience {
                Audience::Artist(key) => subscription_sk(key),
                Audience::Everyone => META.to_owned(),
            };
            Item::from([
                (GSI1PK.to_owned(), s(&partition)),
                (PK.to_owned(), s(connection_pk(id))),
                (SK.to_owned(), s(sk)),
            ])
        });
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_ARTIST_INDEX)
            .filter_expression("#e > :lapsed")
            .projection_expression("#pk, #e")
            .expression_attribute_names("#g", GSI1PK)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":artist", s(&partition))
            .expression_attribute_values(":lapsed", n(now.saturating_sub(LAPSED_WINDOW_SECONDS)))
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start);
        query = match &span.until {
            None => query.key_condition_expression("#g = :artist"),
            Some(until) => query
                .key_condition_expression("#g = :artist AND #pk <= :until")
                .expression_attribute_values(":until", s(connection_pk(until))),
        };
        let out = query
            .send()
            .await
            .map_err(|e| StoreError::backend("Query", e))?;
        let mut connections = Vec::new();
        let mut lapsed = Vec::new();
        for item in out.items.unwrap_or_default() {
            let pk = str_attr(&item, PK)?;
            let id = schema::connection_id_from_pk(pk).ok_or_else(|| corrupt(&item, "bad pk"))?;
            if num_attr(&item, EXPIRES_AT)? > now {
                connections.push(id);
            } else {
                lapsed.push(id);
            }
        }
        let next = match out.last_evaluated_key {
            Some(key) if !key.is_empty() => {
                let pk = str_attr(&key, PK)?;
                let id = schema::connection_id_from_pk(pk)
                    .ok_or_else(|| corrupt(&key, "bad pk in LastEvaluatedKey"))?;
                Some(id)
            }
            _ => None,
        };
        Ok(SubscriberPage {
            connections,
            lapsed,
            next,
        })
    }
}

/// BatchGetItem takes at most 100 keys.
const BATCH_GET_MAX: usize = 100;
/// Rounds of asking again for the keys a batch left unprocessed.
const UNPROCESSED_ROUNDS: u32 = 5;

const RATE_TOKENS: &str = "rate_tokens";
const RATE_AT: &str = "rate_at";
const POST_TOKENS: &str = "post_tokens";
const POST_AT: &str = "post_at";
/// Tries at spending while other frames of the same connection (API Gateway runs them side
/// by side) move the bucket: each lost race reads it again, after a short random pause, so
/// that a burst of concurrent frames is not refused while the bucket still holds tokens.
const TOKEN_ATTEMPTS: u32 = 10;

/// The transaction item that moves `artist`'s count in `shard` by `delta`, and keeps the
/// counter in the `by-count` index (`gsi2pk`), with the artist's display name when `name` is
/// given (a subscribe; the first name written stays).
pub(super) fn count_update(
    table: &str,
    artist: &ArtistKey,
    name: Option<&str>,
    shard: Shard,
    delta: i64,
    now: i64,
) -> Result<TransactWriteItem, StoreError> {
    let mut update = Update::builder()
        .table_name(table)
        .key(PK, s(artist_pk(artist)))
        .key(SK, s(count_sk(shard)))
        .expression_attribute_names("#n", SUBSCRIBERS)
        .expression_attribute_names("#e", EXPIRES_AT)
        .expression_attribute_names("#g", GSI2PK)
        .expression_attribute_values(":d", n(delta))
        .expression_attribute_values(":kept", n(now.saturating_add(SEQUENCE_KEPT_SECONDS)))
        .expression_attribute_values(":g", s(counts_pk(shard)));
    update = match name {
        Some(name) => update
            .update_expression("ADD #n :d SET #e = :kept, #g = :g, #a = if_not_exists(#a, :a)")
            .expression_attribute_names("#a", ARTIST_NAME)
            .expression_attribute_values(":a", s(name)),
        None => update.update_expression("ADD #n :d SET #e = :kept, #g = :g"),
    };
    let update = update
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

/// Where a bucket lives: its item, its two attributes, and whether the item must already
/// exist (a connection record) or is made by the first spend (a room's).
struct Place {
    pk: String,
    sk: &'static str,
    tokens: &'static str,
    at: &'static str,
    on_record: bool,
}

impl Place {
    fn of(bucket: Bucket<'_>) -> Self {
        match bucket {
            Bucket::Messages(id) => Self {
                pk: connection_pk(id),
                sk: META,
                tokens: RATE_TOKENS,
                at: RATE_AT,
                on_record: true,
            },
            Bucket::Posts(id) => Self {
                pk: connection_pk(id),
                sk: META,
                tokens: POST_TOKENS,
                at: POST_AT,
                on_record: true,
            },
            Bucket::Room(artist) => Self {
                pk: artist_pk(artist),
                sk: ROOM_POSTS_SK,
                tokens: RATE_TOKENS,
                at: RATE_AT,
                on_record: false,
            },
        }
    }
}

pub(super) async fn spend(
    store: &DynamoStore,
    bucket: Bucket<'_>,
    spend: Spend,
    limit: RateLimit,
    now_millis: i64,
) -> Result<bool, StoreError> {
    let place = Place::of(bucket);
    for _ in 0..TOKEN_ATTEMPTS {
        let out = store
            .client
            .get_item()
            .table_name(&store.table)
            .key(PK, s(place.pk.clone()))
            .key(SK, s(place.sk))
            .projection_expression("#pk, #t, #a")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#t", place.tokens)
            .expression_attribute_names("#a", place.at)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::backend("GetItem", e))?;
        let item = match out.item {
            Some(item) => item,
            None if place.on_record => return Ok(false),
            None => Item::new(),
        };
        let (tokens, at) = match (item.get(place.tokens), item.get(place.at)) {
            (Some(AttributeValue::N(tokens)), Some(AttributeValue::N(at))) => (
                tokens.parse::<f64>().unwrap_or(0.0),
                at.parse::<i64>().unwrap_or(now_millis),
            ),
            _ => (f64::from(limit.burst), now_millis),
        };
        // A spend whose clock was read before the last one's (frames run side by side) counts
        // from the last one's: the bucket's time never goes back, so no refill counts twice.
        let now_millis = now_millis.max(at);
        let Some(left) = spend.from(refill(tokens, at, now_millis, limit)) else {
            return Ok(false);
        };
        if spend.cost == 0 {
            return Ok(true);
        }
        let mut set = "SET #t = :t, #a = :now".to_owned();
        let mut update = store
            .client
            .update_item()
            .table_name(&store.table)
            .key(PK, s(place.pk.clone()))
            .key(SK, s(place.sk))
            .expression_attribute_names("#t", place.tokens)
            .expression_attribute_names("#a", place.at)
            .expression_attribute_values(":t", AttributeValue::N(format!("{left:.3}")))
            .expression_attribute_values(":now", n(now_millis));
        if !place.on_record {
            // Kept until the bucket would be full again, and a minute more: gone, it reads as
            // full.
            set.push_str(", #e = :expires");
            update = update
                .expression_attribute_names("#e", EXPIRES_AT)
                .expression_attribute_values(":expires", n(full_again(left, now_millis, limit)));
        }
        update = update.update_expression(set);
        let exists = if place.on_record {
            update = update.expression_attribute_names("#pk", PK);
            "attribute_exists(#pk) AND "
        } else {
            ""
        };
        // Conditioned on both values read: two spends in the same millisecond write the same
        // `at`, but never the same tokens.
        update = match (item.get(place.at), item.get(place.tokens)) {
            (Some(old), Some(old_tokens)) => update
                .condition_expression(format!("{exists}#a = :old AND #t = :old_tokens"))
                .expression_attribute_values(":old", old.clone())
                .expression_attribute_values(":old_tokens", old_tokens.clone()),
            (Some(old), None) => update
                .condition_expression(format!("{exists}#a = :old AND attribute_not_exists(#t)"))
                .expression_attribute_values(":old", old.clone()),
            (None, _) => update.condition_expression(format!("{exists}attribute_not_exists(#a)")),
        };
        match update.send().await {
            Ok(_) => return Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let pause = std::time::Duration::from_millis(fastrand::u64(0..=5));
                tokio::time::sleep(pause).await;
            }
            Err(err) => return Err(StoreError::backend("UpdateItem", err)),
        }
    }
    // Other spends on the same bucket kept moving it at the same instant: it is being spent
    // as fast as it can be, so it is over its rate anyway.
    Ok(false)
}

/// What `artist`'s room was last told of `user`, read consistently; `None` when nothing is
/// kept (or it expired, which TTL may not have removed yet).
async fn read_presence(
    store: &DynamoStore,
    artist: &ArtistKey,
    user: &UserId,
    now_ms: i64,
) -> Result<Option<PresenceRecord>, StoreError> {
    let out = store
        .client
        .get_item()
        .table_name(&store.table)
        .key(PK, s(artist_pk(artist)))
        .key(SK, s(presence_sk(user)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| StoreError::backend("GetItem", e))?;
    let Some(item) = out.item else {
        return Ok(None);
    };
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
        _ => None,
    };
    if number(EXPIRES_AT).is_none_or(|at| at <= now_ms.div_euclid(1000)) {
        return Ok(None);
    }
    let told = match item.get(TOLD) {
        Some(AttributeValue::S(v)) => Notice::parse(v),
        _ => None,
    };
    Ok(told
        .zip(number(TOLD_MS))
        .map(|(told, told_ms)| PresenceRecord {
            told,
            told_ms,
            settle_ms: number(SETTLE_MS),
        }))
}

/// Writes `record` if the item still holds what was `read` (`None`: nothing, or an expired
/// record); `false` when another writer came first.
async fn write_presence(
    store: &DynamoStore,
    (artist, user): (&ArtistKey, &UserId),
    read: Option<&PresenceRecord>,
    record: &PresenceRecord,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let now = now_ms.div_euclid(1000);
    let mut update = store
        .client
        .update_item()
        .table_name(&store.table)
        .key(PK, s(artist_pk(artist)))
        .key(SK, s(presence_sk(user)))
        .expression_attribute_names("#t", TOLD)
        .expression_attribute_names("#tm", TOLD_MS)
        .expression_attribute_names("#s", SETTLE_MS)
        .expression_attribute_names("#e", EXPIRES_AT)
        .expression_attribute_values(":t", s(record.told.as_str()))
        .expression_attribute_values(":tm", n(record.told_ms))
        .expression_attribute_values(":e", n(now.saturating_add(presence::KEPT_SECONDS)));
    let set = "SET #t = :t, #tm = :tm, #e = :e";
    update = match record.settle_ms {
        Some(at) => update
            .update_expression(format!("{set}, #s = :s"))
            .expression_attribute_values(":s", n(at)),
        None => update.update_expression(format!("{set} REMOVE #s")),
    };
    update = match read {
        None => update
            .condition_expression("attribute_not_exists(#pk) OR #e <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":now", n(now)),
        Some(old) => {
            let settle = match old.settle_ms {
                Some(at) => {
                    update = update.expression_attribute_values(":old_s", n(at));
                    "#s = :old_s"
                }
                None => "attribute_not_exists(#s)",
            };
            update
                .condition_expression(format!("#t = :old_t AND #tm = :old_tm AND {settle}"))
                .expression_attribute_values(":old_t", s(old.told.as_str()))
                .expression_attribute_values(":old_tm", n(old.told_ms))
        }
    };
    super::unless_condition_failed(update.send().await, "UpdateItem").map(|done| done.is_some())
}

/// [`presence::decide`] on the record read, written only if no one moved it meanwhile (a
/// lost race reads again).
pub(super) async fn presence_told(
    store: &DynamoStore,
    (artist, user): (&ArtistKey, &UserId),
    notice: Notice,
    pacing: Pacing,
    now_ms: i64,
) -> Result<Told, StoreError> {
    for _ in 0..TOKEN_ATTEMPTS {
        let read = read_presence(store, artist, user, now_ms).await?;
        let (told, write) = presence::decide(read.as_ref(), notice, pacing, now_ms);
        let Some(write) = write else {
            return Ok(told);
        };
        if write_presence(store, (artist, user), read.as_ref(), &write, now_ms).await? {
            return Ok(told);
        }
    }
    // Others kept telling this room of this user at the same instant: they tell it.
    Ok(Told::Skip)
}

/// [`presence::settle`] on the record read, written only if no one moved it meanwhile.
pub(super) async fn settle_presence(
    store: &DynamoStore,
    (artist, user): (&ArtistKey, &UserId),
    (state, armed_ms): (Notice, i64),
    now_ms: i64,
) -> Result<bool, StoreError> {
    for _ in 0..TOKEN_ATTEMPTS {
        let read = read_presence(store, artist, user, now_ms).await?;
        let (tell, write) = presence::settle(read.as_ref(), state, armed_ms, now_ms);
        let Some(write) = write else {
            return Ok(false);
        };
        if write_presence(store, (artist, user), read.as_ref(), &write, now_ms).await? {
            return Ok(tell);
        }
    }
    // Moved on by others each time: they tell the room.
    Ok(false)
}

/// Epoch seconds a minute after a bucket holding `left` at `now_millis` is full again.
fn full_again(left: f64, now_millis: i64, limit: RateLimit) -> i64 {
    let missing = (f64::from(limit.burst) - left).max(0.0);
    let seconds = (missing / f64::from(limit.per_second.max(1))).ceil();
    #[allow(clippy::cast_possible_truncation)] // capped far below i64::MAX
    let seconds = seconds.min(1e12) as i64;
    (now_millis / 1000)
        .saturating_add(seconds)
        .saturating_add(60)
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
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .projection_expression("#pk, #u, #e")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#u", "user_id")
            .expression_attribute_names("#e", EXPIRES_AT)
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::backend("BatchGetItem", e))?;
        for item in batch_get(store, request).await? {
            if super::num_attr(&item, EXPIRES_AT)? <= now {
                continue;
            }
            let id = crate::schema::connection_id_from_pk(super::str_attr(&item, PK)?)
                .ok_or_else(|| super::corrupt(&item, "bad pk"))?;
            let user = UserId::parse(super::str_attr(&item, "user_id")?)
                .map_err(|e| super::corrupt(&item, &e.to_string()))?;
            users.push((id, user));
        }
    }
    Ok(users)
}

/// Every item of one `BatchGetItem` `request` (at most [`BATCH_GET_MAX`] keys), asking again
/// for the keys DynamoDB left unprocessed, up to [`UNPROCESSED_ROUNDS`] more times.
pub(super) async fn batch_get(
    store: &DynamoStore,
    request: KeysAndAttributes,
) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    let mut pending = Some(request);
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
        items.extend(
            out.responses
                .and_then(|mut tables| tables.remove(&store.table))
                .unwrap_or_default(),
        );
        pending = out
            .unprocessed_keys
            .and_then(|mut tables: HashMap<String, KeysAndAttributes>| tables.remove(&store.table))
            .filter(|left| !left.keys().is_empty());
    }
    Ok(items)
}
