//! Delivery reports on DynamoDB: `EVENT#<id>`/`REPORT` holds the counts, one `ITEM#<key>`
//! per work item says whether that item's counts were added (see [`crate::report`]).
//!
//! Each registration and each finish is one `TransactWriteItems` of two items: the item's
//! marker, conditioned on its state, and an `ADD` to the report. The marker makes the `ADD`
//! happen once per item however often SQS redelivers it; a set of finished ids on the report
//! would do the same in one write, but every write of an item is billed by its size, so a set
//! that grows with the audience would make the n-th finish cost n times the first.

use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::{DynamoStore, Item, n, s};
use crate::domain::{EpochSeconds, EventId};
use crate::report::{DeliveryReport, Finished, ItemKey, ItemOutcome, ReportKind, ReportStart};
use crate::schema::{
    EXPIRES_AT, ITEM_DEAD, ITEM_DONE, ITEM_OPEN, ITEM_PREFIX, ITEM_STATE, PK, REPORT_SK, SK,
    event_pk, report_item_sk,
};
use crate::store::StoreError;

/// The revision check-and-set on a connection record that guards every subscription change:
/// a change applies only to the revision it was decided on, and makes a new one.
impl crate::store::Reports for DynamoStore {
    async fn open_report(
        &self,
        id: &EventId,
        start: &crate::report::ReportStart,
        expires_at: EpochSeconds,
    ) -> Result<(), StoreError> {
        open(self, id, start, expires_at).await
    }

    async fn register_items(
        &self,
        id: &EventId,
        keys: &[crate::report::ItemKey],
        expires_at: EpochSeconds,
    ) -> Result<(), StoreError> {
        register(self, id, keys, expires_at).await
    }

    async fn finish_item(
        &self,
        id: &EventId,
        key: &crate::report::ItemKey,
        outcome: &crate::report::ItemOutcome,
        expires_at: EpochSeconds,
    ) -> Result<crate::report::Finished, StoreError> {
        finish(self, id, key, outcome, expires_at).await
    }

    async fn delivery_report(
        &self,
        id: &EventId,
        now: EpochSeconds,
    ) -> Result<Option<crate::report::DeliveryReport>, StoreError> {
        read(self, id, now).await
    }

    async fn claim_publication(
        &self,
        id: &EventId,
        now: EpochSeconds,
    ) -> Result<Option<crate::report::DeliveryReport>, StoreError> {
        claim_publication(self, id, now).await
    }

    async fn release_publication(&self, id: &EventId) -> Result<(), StoreError> {
        release_publication(self, id).await
    }
}

/// Tries of a transaction that lost to a concurrent one (`TransactionConflict`).
const TRIES: u32 = 8;

const COUNTS: [&str; 6] = [
    "delivered",
    "gone",
    "failed",
    "retried",
    "closed",
    "redriven",
];
const FIRST: &str = "first_post_ms";
const LAST: &str = "last_post_ms";
const PUBLISHED_AT: &str = "published_at";

/// How a transaction ended.
enum Outcome {
    Written,
    /// Cancelled: which of its items' conditions failed, with the item as it was.
    Failed(Vec<Option<Option<Item>>>),
}

async fn transact(
    store: &DynamoStore,
    items: Vec<TransactWriteItem>,
) -> Result<Outcome, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store
            .client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .send()
            .await
        {
            Ok(_) => return Ok(Outcome::Written),
            Err(err) => {
                let Some(TransactWriteItemsError::TransactionCanceledException(e)) =
                    err.as_service_error()
                else {
                    return Err(StoreError::backend("TransactWriteItems", err));
                };
                let reasons = e.cancellation_reasons();
                let conflict = reasons
                    .iter()
                    .any(|r| matches!(r.code(), Some("TransactionConflict")));
                let failed = reasons
                    .iter()
                    .map(|r| match r.code() {
                        Some("ConditionalCheckFailed") => Some(r.item().cloned()),
                        _ => None,
                    })
                    .collect::<Vec<_>>();
                if failed.iter().any(Option::is_some) {
                    return Ok(Outcome::Failed(failed));
                }
                if !conflict || attempt >= TRIES {
                    return Err(StoreError::backend("TransactWriteItems", err));
                }
                tokio::time::sleep(Duration::from_millis(fastrand::u64(5..=40))).await;
            }
        }
    }
}

fn marker_put(
    table: &str,
    id: &EventId,
    key: &ItemKey,
    state: &str,
    outcome: Option<&ItemOutcome>,
    expires_at: EpochSeconds,
) -> Result<TransactWriteItem, StoreError> {
    let mut put = Put::builder()
        .table_name(table)
        .item(PK, s(event_pk(id)))
        .item(SK, s(report_item_sk(key)))
        .item(ITEM_STATE, s(state))
        .item(EXPIRES_AT, n(expires_at))
        .condition_expression("attribute_not_exists(#pk)")
        .expression_attribute_names("#pk", PK);
    if let Some(outcome) = outcome {
        if let Some(first) = outcome.first_post_ms {
            put = put.item(FIRST, n(first));
        }
        if let Some(last) = outcome.last_post_ms {
            put = put.item(LAST, n(last));
        }
    }
    let put = put
        .build()
        .map_err(|e| StoreError::backend("TransactWriteItems", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// `ADD` to the report, which must exist.
fn report_add(
    table: &str,
    id: &EventId,
    adds: &[(&str, i64)],
) -> Result<TransactWriteItem, StoreError> {
    let mut update = Update::builder()
        .table_name(table)
        .key(PK, s(event_pk(id)))
        .key(SK, s(REPORT_SK))
        .condition_expression("attribute_exists(#pk)")
        .expression_attribute_names("#pk", PK);
    let mut parts = Vec::new();
    for (i, (name, value)) in adds.iter().enumerate() {
        parts.push(format!("#a{i} :a{i}"));
        update = update
            .expression_attribute_names(format!("#a{i}"), *name)
            .expression_attribute_values(format!(":a{i}"), n(*value));
    }
    let update = update
        .update_expression(format!("ADD {}", parts.join(", ")))
        .build()
        .map_err(|e| StoreError::backend("TransactWriteItems", e))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The counts an item's finish adds, and `extra` besides.
fn outcome_adds<'a>(outcome: &ItemOutcome, extra: &[(&'a str, i64)]) -> Vec<(&'a str, i64)> {
    let t = outcome.tally;
    let mut adds: Vec<(&str, i64)> = COUNTS
        .iter()
        .copied()
        .zip(
            [
                t.delivered,
                t.gone,
                t.failed,
                t.retried,
                t.closed,
                outcome.redriven,
            ]
            .map(count),
        )
        .collect();
    adds.push(("finished", 1));
    adds.push(("dead_lettered", i64::from(outcome.dead)));
    adds.extend_from_slice(extra);
    adds
}

pub(super) async fn open(
    store: &DynamoStore,
    id: &EventId,
    start: &ReportStart,
    expires_at: EpochSeconds,
) -> Result<(), StoreError> {
    let table = store.table.as_str();
    let mut report = Put::builder()
        .table_name(table)
        .item(PK, s(event_pk(id)))
        .item(SK, s(REPORT_SK))
        .item("kind", s(start.kind.as_str()))
        .item("audience", n(count(start.audience)))
        .item("time", s(start.time.clone()))
        .item("opened_at", n(start.opened_at))
        .item("items", n(1))
        .item("outstanding", n(1))
        .item(EXPIRES_AT, n(expires_at))
        .condition_expression("attribute_not_exists(#pk)")
        .expression_attribute_names("#pk", PK);
    for name in COUNTS
        .iter()
        .chain(&["finished", "dead_lettered", "duplicates"])
    {
        report = report.item(*name, n(0));
    }
    if let Some(artist) = &start.artist {
        report = report.item("artist", s(artist.clone()));
    }
    let report = report
        .build()
        .map_err(|e| StoreError::backend("TransactWriteItems", e))?;
    let items = vec![
        marker_put(table, id, &ItemKey::root(), ITEM_OPEN, None, expires_at)?,
        TransactWriteItem::builder().put(report).build(),
    ];
    // Cancelled on a condition: an earlier attempt opened it, and it stands.
    transact(store, items).await.map(|_| ())
}

pub(super) async fn register(
    store: &DynamoStore,
    id: &EventId,
    keys: &[ItemKey],
    expires_at: EpochSeconds,
) -> Result<(), StoreError> {
    let table = store.table.as_str();
    for key in keys {
        let items = vec![
            marker_put(table, id, key, ITEM_OPEN, None, expires_at)?,
            report_add(table, id, &[("items", 1), ("outstanding", 1)])?,
        ];
        // Cancelled on a condition: registered (or finished) already, or no report.
        transact(store, items).await?;
    }
    Ok(())
}

pub(super) async fn finish(
    store: &DynamoStore,
    id: &EventId,
    key: &ItemKey,
    outcome: &ItemOutcome,
    expires_at: EpochSeconds,
) -> Result<Finished, StoreError> {
    let table = store.table.as_str();
    let state = if outcome.dead { ITEM_DEAD } else { ITEM_DONE };
    for _ in 0..TRIES {
        // A registered item: open → finished, one less outstanding.
        let mut sets = vec!["#state = :state".to_owned()];
        let mut marker = Update::builder()
            .table_name(table)
            .key(PK, s(event_pk(id)))
            .key(SK, s(report_item_sk(key)))
            .condition_expression("#state = :open")
            .expression_attribute_names("#state", ITEM_STATE)
            .expression_attribute_values(":state", s(state))
            .expression_attribute_values(":open", s(ITEM_OPEN))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in [(FIRST, outcome.first_post_ms), (LAST, outcome.last_post_ms)] {
            if let Some(value) = value {
                sets.push(format!("{name} = :{name}"));
                marker = marker.expression_attribute_values(format!(":{name}"), n(value));
            }
        }
        let marker = marker
            .update_expression(format!("SET {}", sets.join(", ")))
            .build()
            .map_err(|e| StoreError::backend("TransactWriteItems", e))?;
        let items = vec![
            TransactWriteItem::builder().update(marker).build(),
            report_add(table, id, &outcome_adds(outcome, &[("outstanding", -1)]))?,
        ];
        let reasons = match transact(store, items).await? {
            Outcome::Written => return Ok(Finished::Counted),
            Outcome::Failed(reasons) => reasons,
        };
        if matches!(reasons.get(1), Some(Some(_))) {
            return Ok(Finished::NoReport);
        }
        match reasons.first() {
            Some(Some(Some(old))) if !old.is_empty() => {
                // Finished before: what it posted now are duplicates.
                if outcome.tally.delivered > 0 {
                    add_duplicates(store, id, outcome.tally.delivered).await?;
                }
                return Ok(Finished::Again);
            }
            _ => {}
        }
        // Not registered yet (its parent has not finished): finished first, never outstanding.
        let items = vec![
            marker_put(table, id, key, state, Some(outcome), expires_at)?,
            report_add(table, id, &outcome_adds(outcome, &[("items", 1)]))?,
        ];
        match transact(store, items).await? {
            Outcome::Written => return Ok(Finished::Counted),
            Outcome::Failed(reasons) if matches!(reasons.get(1), Some(Some(_))) => {
                return Ok(Finished::NoReport);
            }
            // Registered meanwhile: finish it as a registered item.
            Outcome::Failed(_) => {}
        }
    }
    Err(StoreError::Contended {
        operation: "TransactWriteItems",
    })
}

async fn add_duplicates(
    store: &DynamoStore,
    id: &EventId,
    duplicates: u64,
) -> Result<(), StoreError> {
    let result = store
        .client
        .update_item()
        .table_name(&store.table)
        .key(PK, s(event_pk(id)))
        .key(SK, s(REPORT_SK))
        .update_expression("ADD duplicates :d")
        .condition_expression("attribute_exists(#pk)")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_values(":d", n(count(duplicates)))
        .send()
        .await;
    super::unless_condition_failed(result, "UpdateItem").map(|_| ())
}

async fn get(store: &DynamoStore, id: &EventId) -> Result<Option<Item>, StoreError> {
    let out = store
        .client
        .get_item()
        .table_name(&store.table)
        .key(PK, s(event_pk(id)))
        .key(SK, s(REPORT_SK))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| StoreError::backend("GetItem", e))?;
    Ok(out.item.filter(|item| !item.is_empty()))
}

/// The first and last post times over the report's items.
async fn post_times(
    store: &DynamoStore,
    id: &EventId,
) -> Result<(Option<i64>, Option<i64>), StoreError> {
    let (mut first, mut last): (Option<i64>, Option<i64>) = (None, None);
    let mut start: Option<Item> = None;
    loop {
        let out = store
            .client
            .query()
            .table_name(&store.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :items)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_names("#first", FIRST)
            .expression_attribute_names("#last", LAST)
            .expression_attribute_values(":pk", s(event_pk(id)))
            .expression_attribute_values(":items", s(ITEM_PREFIX))
            .projection_expression("#first, #last")
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| StoreError::backend("Query", e))?;
        for item in out.items() {
            if let Some(at) = opt_num(item, FIRST)? {
                first = Some(first.map_or(at, |f| f.min(at)));
            }
            if let Some(at) = opt_num(item, LAST)? {
                last = Some(last.map_or(at, |l| l.max(at)));
            }
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok((first, last)),
        }
    }
}

fn opt_num(item: &Item, name: &str) -> Result<Option<i64>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(_) => super::num_attr(item, name).map(Some),
    }
}

fn unsigned(item: &Item, name: &str) -> Result<u64, StoreError> {
    let value = super::num_attr(item, name)?;
    u64::try_from(value).map_err(|_| super::corrupt(item, &format!("{name} is negative")))
}

fn report_from_item(id: &EventId, item: &Item) -> Result<DeliveryReport, StoreError> {
    let kind = ReportKind::parse(super::str_attr(item, "kind")?)
        .ok_or_else(|| super::corrupt(item, "kind is not a report kind"))?;
    let artist = match item.get("artist") {
        None => None,
        Some(_) => Some(super::str_attr(item, "artist")?.to_owned()),
    };
    let outstanding = unsigned(item, "outstanding")?;
    let dead_lettered = unsigned(item, "dead_lettered")?;
    Ok(DeliveryReport {
        event_id: id.as_str().to_owned(),
        kind,
        artist,
        audience: unsigned(item, "audience")?,
        time: super::str_attr(item, "time")?.to_owned(),
        delivered: unsigned(item, "delivered")?,
        gone: unsigned(item, "gone")?,
        failed: unsigned(item, "failed")?,
        retried: unsigned(item, "retried")?,
        redriven: unsigned(item, "redriven")?,
        closed: unsigned(item, "closed")?,
        duplicates: unsigned(item, "duplicates")?,
        items: unsigned(item, "items")?,
        finished: unsigned(item, "finished")?,
        outstanding,
        dead_lettered,
        first_post_ms: opt_num(item, FIRST)?,
        last_post_ms: opt_num(item, LAST)?,
        opened_at: super::num_attr(item, "opened_at")?,
        finished_all: outstanding == 0,
        complete: outstanding == 0 && dead_lettered == 0,
        published: item.contains_key(PUBLISHED_AT),
    })
}

/// The report as stored (a consistent read), unless there is none or it has expired; the
/// post times are the report's own (set once it was published).
async fn stored(
    store: &DynamoStore,
    id: &EventId,
    now: EpochSeconds,
) -> Result<Option<DeliveryReport>, StoreError> {
    let Some(item) = get(store, id).await? else {
        return Ok(None);
    };
    if super::num_attr(&item, EXPIRES_AT)? <= now {
        return Ok(None);
    }
    report_from_item(id, &item).map(Some)
}

pub(super) async fn read(
    store: &DynamoStore,
    id: &EventId,
    now: EpochSeconds,
) -> Result<Option<DeliveryReport>, StoreError> {
    let Some(mut report) = stored(store, id, now).await? else {
        return Ok(None);
    };
    if !report.published {
        (report.first_post_ms, report.last_post_ms) = post_times(store, id).await?;
    }
    Ok(Some(report))
}

pub(super) async fn claim_publication(
    store: &DynamoStore,
    id: &EventId,
    now: EpochSeconds,
) -> Result<Option<DeliveryReport>, StoreError> {
    // One consistent read per finish; the markers' times only for the last one.
    let Some(mut report) = stored(store, id, now).await? else {
        return Ok(None);
    };
    if report.outstanding > 0 || report.published {
        return Ok(None);
    }
    (report.first_post_ms, report.last_post_ms) = post_times(store, id).await?;
    let mut sets = vec!["#published = :now".to_owned()];
    let mut update = store
        .client
        .update_item()
        .table_name(&store.table)
        .key(PK, s(event_pk(id)))
        .key(SK, s(REPORT_SK))
        .condition_expression("attribute_not_exists(#published) AND #outstanding = :zero")
        .expression_attribute_names("#published", PUBLISHED_AT)
        .expression_attribute_names("#outstanding", "outstanding")
        .expression_attribute_values(":now", n(now))
        .expression_attribute_values(":zero", n(0))
        .return_values(ReturnValue::AllNew);
    for (name, value) in [(FIRST, report.first_post_ms), (LAST, report.last_post_ms)] {
        if let Some(value) = value {
            sets.push(format!("{name} = :{name}"));
            update = update.expression_attribute_values(format!(":{name}"), n(value));
        }
    }
    let sent = update
        .update_expression(format!("SET {}", sets.join(", ")))
        .send()
        .await;
    match super::unless_condition_failed(sent, "UpdateItem")? {
        Some(out) => report_from_item(id, &out.attributes.unwrap_or_default()).map(Some),
        None => Ok(None),
    }
}

pub(super) async fn release_publication(
    store: &DynamoStore,
    id: &EventId,
) -> Result<(), StoreError> {
    let sent = store
        .client
        .update_item()
        .table_name(&store.table)
        .key(PK, s(event_pk(id)))
        .key(SK, s(REPORT_SK))
        .update_expression("REMOVE #published")
        .condition_expression("attribute_exists(#pk)")
        .expression_attribute_names("#published", PUBLISHED_AT)
        .expression_attribute_names("#pk", PK)
        .send()
        .await;
    super::unless_condition_failed(sent, "UpdateItem").map(|_| ())
}
