//! The fan-out's side of delivery reports ([`crate::report`]): open one at the root,
//! register each item sent, finish each item once, and send `FanoutCompleted` when the last
//! one finishes.

use crate::domain::EpochSeconds;
use crate::report::{DeliveryReport, EventsError, Finished, ItemKey, ItemOutcome, ReportStart};
use crate::routes::fanout::{Ports, Posting};
use crate::store::{Store, StoreError};
use crate::work::Broadcast;

/// Why a report could not be kept or sent.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error("the delivery report could not be written")]
    Store(#[from] StoreError),
    /// EventBridge did not take `FanoutCompleted`.
    #[error(transparent)]
    Events(#[from] EventsError),
}

/// What an item's finish did for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reported {
    /// No report is kept for it (an item sent before reports, or an inline room message).
    #[default]
    None,
    /// Its counts were added.
    Counted,
    /// It had finished before: its deliveries were added as duplicates.
    Again,
    /// It was the last: `FanoutCompleted` was sent, with every item finished and none dead.
    Completed,
    /// It was the last: `FanoutCompleted` was sent with `complete: false` (items failed for
    /// good, to the dead-letter queue).
    Incomplete,
}

fn expires<S, P, Q>(ports: &Ports<'_, S, P, Q>, now: EpochSeconds) -> EpochSeconds {
    now.saturating_add(ports.settings.dedup_ttl_seconds)
}

/// Opens the broadcast's report (the root item outstanding), kept as long as its claim.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn open<S: Store, P, Q>(
    ports: &Ports<'_, S, P, Q>,
    broadcast: &Broadcast,
    audience: u64,
    now: EpochSeconds,
) -> Result<(), StoreError> {
    let start = ReportStart {
        kind: broadcast.kind(),
        artist: match &broadcast.audience {
            crate::store::Audience::Artist(key) => Some(key.as_str().to_owned()),
            crate::store::Audience::Everyone => None,
        },
        audience,
        time: broadcast.time.clone(),
        opened_at: now,
    };
    ports
        .store
        .open_report(&broadcast.id, &start, expires(ports, now))
        .await
}

/// Registers the items of `keys` (sent already): each outstanding until it finishes.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn register<S: Store, P, Q>(
    ports: &Ports<'_, S, P, Q>,
    broadcast: &Broadcast,
    keys: Vec<ItemKey>,
    now: EpochSeconds,
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    ports
        .store
        .register_items(&broadcast.id, &keys, expires(ports, now))
        .await
}

/// What an item's posting adds to its report.
#[must_use]
pub fn outcome(posting: &Posting, redriven: u64, dead: bool) -> ItemOutcome {
    ItemOutcome {
        tally: posting.tally,
        redriven,
        first_post_ms: posting.first_post_ms,
        last_post_ms: posting.last_post_ms,
        dead,
    }
}

/// Finishes item `key` (its counts added once) and, when it was the last, sends
/// `FanoutCompleted` (once: the publication is claimed first, and given back when sending
/// fails, so a retry of this item sends it).
///
/// # Errors
/// [`ReportError`]: the item should be retried.
pub async fn finish<S: Store, P, Q>(
    ports: &Ports<'_, S, P, Q>,
    broadcast: &Broadcast,
    key: &ItemKey,
    outcome: &ItemOutcome,
    now: EpochSeconds,
) -> Result<Reported, ReportError> {
    let id = &broadcast.id;
    let finished = ports
        .store
        .finish_item(id, key, outcome, expires(ports, now))
        .await?;
    let reported = match finished {
        Finished::NoReport => return Ok(Reported::None),
        Finished::Counted => Reported::Counted,
        Finished::Again => Reported::Again,
    };
    let Some(report) = ports.store.claim_publication(id, now).await? else {
        return Ok(reported);
    };
    publish(ports, &report).await
}

async fn publish<S: Store, P, Q>(
    ports: &Ports<'_, S, P, Q>,
    report: &DeliveryReport,
) -> Result<Reported, ReportError> {
    let detail = report.completed();
    if let Err(err) = ports.events.fanout_completed(&detail).await {
        if let Ok(id) = crate::domain::EventId::parse(&report.event_id) {
            ports.store.release_publication(&id).await?;
        }
        return Err(err.into());
    }
    tracing::info!(
        event_id = %report.event_id,
        delivered = report.delivered,
        gone = report.gone,
        failed = report.failed,
        duplicates = report.duplicates,
        dead_lettered = report.dead_lettered,
        complete = report.complete,
        "FanoutCompleted sent"
    );
    Ok(if report.complete {
        Reported::Completed
    } else {
        Reported::Incomplete
    })
}
