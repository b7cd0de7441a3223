//! Each artist's sequence counter and notification history on the table: the DynamoDB side of
//! [`HistoryStore::sequence`](crate::store::HistoryStore::sequence) and
//! [`HistoryStore::history`](crate::store::HistoryStore::history).
//!
//! A sequence number is taken with one transaction: the counter moves from the value read to
//! the next only if it still holds the value read, the history entry and the event's `SEQ`
//! item are written only if absent, and the entry `max_per_artist` places back is deleted. Two
//! events of one artist racing for a number cannot both win, and a crash between steps leaves
//! nothing half-written, so numbers are never skipped or given twice.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use super::{DynamoStore, Item, n, num_attr, s, str_attr};
use crate::domain::{ArtistKey, EpochSeconds, EventId};
use crate::schema::{
    EVENT_SEQ_SK, EXPIRES_AT, LAST_SEQ, META, PK, SEQ, SK, artist_pk, event_pk, history_sk,
};
use crate::store::{
    Applied, History, HistoryEntry, HistoryStore, NewEntry, Retention, SEQUENCE_KEPT_SECONDS,
    StoreError,
};

impl HistoryStore for DynamoStore {
    async fn sequence(
        &self,
        entry: NewEntry<'_>,
        retention: Retention,
        now: EpochSeconds,
        remember_until: EpochSeconds,
    ) -> Result<u64, StoreError> {
        sequence(self, entry, retention, now, remember_until).await
    }

    async fn history(
        &self,
        artist: &ArtistKey,
        after: u64,
        now: EpochSeconds,
        limit: u32,
    ) -> Result<History, StoreError> {
        history(self, artist, after, now, limit).await
    }
}

/// Tries at taking a number before giving up with [`StoreError::Contended`]. Each lost try
/// means another event of the artist took a number, so this many events of one artist may be
/// sequenced at the same instant.
const SEQUENCE_ATTEMPTS: u32 = 40;

const TRANSACT: &str = "TransactWriteItems";

pub(super) async fn sequence(
    store: &DynamoStore,
    entry: NewEntry<'_>,
    retention: Retention,
    now: EpochSeconds,
    remember_until: EpochSeconds,
) -> Result<u64, StoreError> {
    let key = entry.artist.key();
    for attempt in 0..SEQUENCE_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(pause(attempt)).await;
        }
        if let Some(seq) = event_seq(store, entry.event, now).await? {
            return Ok(seq);
        }
        let last = last_seq(store, key, now).await?;
        let seq = last + 1;
        let mut items = vec![
            advance_counter(store, key, last, now)?,
            put_entry(store, entry, seq, now, retention.window_seconds)?,
            put_event_seq(store, entry.event, seq, now, remember_until)?,
        ];
        if let Some(dropped) = seq.checked_sub(u64::from(retention.max_per_artist))
            && dropped > 0
        {
            let delete = Delete::builder()
                .table_name(&store.table)
                .key(PK, s(artist_pk(key)))
                .key(SK, s(history_sk(dropped)))
                .build()
                .map_err(|e| StoreError::backend(TRANSACT, e))?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        if store.transact(items).await? == Applied::Yes {
            return Ok(seq);
        }
    }
    Err(StoreError::Contended {
        operation: TRANSACT,
    })
}

pub(super) async fn history(
    store: &DynamoStore,
    artist: &ArtistKey,
    after: u64,
    now: EpochSeconds,
    limit: u32,
) -> Result<History, StoreError> {
    let last_seq = last_seq(store, artist, now).await?;
    if after >= last_seq {
        return Ok(History {
            last_seq,
            entries: Vec::new(),
        });
    }
    let mut entries = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let out = store
            .client
            .query()
            .table_name(&store.table)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .filter_expression("#e > :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":pk", s(artist_pk(artist)))
            .expression_attribute_values(":from", s(history_sk(after.saturating_add(1))))
            .expression_attribute_values(":to", s(history_sk(last_seq)))
            .expression_attribute_values(":now", n(now))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| StoreError::backend("Query", e))?;
        for item in out.items.unwrap_or_default() {
            entries.push(entry_from_item(&item)?);
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    let keep = usize::try_from(limit).unwrap_or(usize::MAX);
    if entries.len() > keep {
        entries.drain(..entries.len() - keep);
    }
    Ok(History { last_seq, entries })
}

/// The event's number, if it has a live one.
async fn event_seq(
    store: &DynamoStore,
    event: &EventId,
    now: EpochSeconds,
) -> Result<Option<u64>, StoreError> {
    match live_item(store, event_pk(event), EVENT_SEQ_SK, now).await? {
        Some(item) => Ok(Some(seq_attr(&item, SEQ)?)),
        None => Ok(None),
    }
}

/// The artist's latest number; 0 when it has none, or its counter lapsed.
async fn last_seq(
    store: &DynamoStore,
    artist: &ArtistKey,
    now: EpochSeconds,
) -> Result<u64, StoreError> {
    match live_item(store, artist_pk(artist), META, now).await? {
        Some(item) => seq_attr(&item, LAST_SEQ),
        None => Ok(0),
    }
}

/// The item at `pk`/`sk` (a strongly consistent read), if it is there and has not expired.
async fn live_item(
    store: &DynamoStore,
    pk: String,
    sk: &str,
    now: EpochSeconds,
) -> Result<Option<Item>, StoreError> {
    let out = store
        .client
        .get_item()
        .table_name(&store.table)
        .key(PK, s(pk))
        .key(SK, s(sk))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| StoreError::backend("GetItem", e))?;
    match out.item {
        Some(item) if !item.is_empty() && num_attr(&item, EXPIRES_AT)? > now => Ok(Some(item)),
        _ => Ok(None),
    }
}

/// Moves the counter from `last` to `last + 1`, if it still holds `last` (a lapsed counter
/// holds 0).
fn advance_counter(
    store: &DynamoStore,
    artist: &ArtistKey,
    last: u64,
    now: EpochSeconds,
) -> Result<TransactWriteItem, StoreError> {
    let condition = if last == 0 {
        "attribute_not_exists(#last) OR #e <= :now"
    } else {
        "#last = :last AND #e > :now"
    };
    let mut update = Update::builder()
        .table_name(&store.table)
        .key(PK, s(artist_pk(artist)))
        .key(SK, s(META))
        .update_expression("SET #last = :next, #e = :kept")
        .condition_expression(condition)
        .expression_attribute_names("#last", LAST_SEQ)
        .expression_attribute_names("#e", EXPIRES_AT)
        .expression_attribute_values(":next", seq_value(last + 1))
        .expression_attribute_values(":kept", n(now.saturating_add(SEQUENCE_KEPT_SECONDS)))
        .expression_attribute_values(":now", n(now));
    if last > 0 {
        update = update.expression_attribute_values(":last", seq_value(last));
    }
    let update = update
        .build()
        .map_err(|e| StoreError::backend(TRANSACT, e))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

fn put_entry(
    store: &DynamoStore,
    entry: NewEntry<'_>,
    seq: u64,
    now: EpochSeconds,
    window_seconds: i64,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(&store.table)
        .item(PK, s(artist_pk(entry.artist.key())))
        .item(SK, s(history_sk(seq)))
        .item("event_id", s(entry.event.as_str()))
        .item("artist", s(entry.artist.name()))
        .item("detail", s(entry.detail))
        .item("time", s(entry.time))
        .item(EXPIRES_AT, n(now.saturating_add(window_seconds)))
        // A lapsed counter starts again at 1, over entries that may not be deleted yet.
        .condition_expression("attribute_not_exists(#pk) OR #e <= :now")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_names("#e", EXPIRES_AT)
        .expression_attribute_values(":now", n(now))
        .build()
        .map_err(|e| StoreError::backend(TRANSACT, e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn put_event_seq(
    store: &DynamoStore,
    event: &EventId,
    seq: u64,
    now: EpochSeconds,
    remember_until: EpochSeconds,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(&store.table)
        .item(PK, s(event_pk(event)))
        .item(SK, s(EVENT_SEQ_SK))
        .item(SEQ, seq_value(seq))
        .item(EXPIRES_AT, n(remember_until))
        .condition_expression("attribute_not_exists(#pk) OR #e <= :now")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_names("#e", EXPIRES_AT)
        .expression_attribute_values(":now", n(now))
        .build()
        .map_err(|e| StoreError::backend(TRANSACT, e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn entry_from_item(item: &Item) -> Result<HistoryEntry, StoreError> {
    let seq = str_attr(item, SK)?
        .strip_prefix("SEQ#")
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| super::corrupt(item, "history sort key"))?;
    Ok(HistoryEntry {
        seq,
        event: EventId::parse(str_attr(item, "event_id")?)
            .map_err(|_| super::corrupt(item, "event_id"))?,
        artist: str_attr(item, "artist")?.to_owned(),
        detail: str_attr(item, "detail")?.to_owned(),
        time: str_attr(item, "time")?.to_owned(),
    })
}

fn seq_value(seq: u64) -> AttributeValue {
    AttributeValue::N(seq.to_string())
}

fn seq_attr(item: &Item, name: &str) -> Result<u64, StoreError> {
    u64::try_from(num_attr(item, name)?).map_err(|_| super::corrupt(item, "negative seq"))
}

/// Full jitter up to 5 ms * 2^attempt, at most 200 ms: the race is lost to a transaction that
/// just committed, so the next try soon wins.
fn pause(attempt: u32) -> Duration {
    let ceiling = 5u64.saturating_mul(1 << attempt.min(6)).min(200);
    Duration::from_millis(fastrand::u64(1..=ceiling))
}
