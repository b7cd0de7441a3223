//! The `notify` handler: the EventBridge target.

use std::time::Instant;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::SecondsFormat;
use serde_json::Value;

use super::NotifyDeps;
use crate::domain::{Artist, EventId, now_epoch_seconds};
use crate::push::Push;
use crate::routes::notify::{Notification, NotifyError, Summary, notify};
use crate::store::Store;

/// An event that can never succeed: it is not retried by us, and lands in the dead-letter
/// queue once Lambda's own attempts are spent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid_event: {0}")]
pub struct InvalidEvent(pub String);

/// Why a notify invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyFailure {
    /// The event is malformed (non-retryable).
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    /// Our side failed (retryable: the event's claim was released).
    #[error(transparent)]
    Fanout(#[from] NotifyError),
}

impl NotifyFailure {
    /// A stable name for the failure, for Lambda's `errorType` (and so the dead-letter queue's
    /// message attributes and CloudWatch metrics filters).
    #[must_use]
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "InvalidEvent",
            Self::Fanout(_) => "FanoutFailed",
        }
    }
}

/// Validates an EventBridge event: `id` and `detail.artist` are required; `detail` is
/// forwarded whole.
///
/// # Errors
/// [`InvalidEvent`] saying what is wrong.
pub fn parse_event(event: &EventBridgeEvent<Value>) -> Result<Notification, InvalidEvent> {
    let id = event
        .id
        .as_deref()
        .ok_or_else(|| InvalidEvent("the event has no id".into()))
        .and_then(|id| EventId::parse(id).map_err(|e| InvalidEvent(e.to_string())))?;
    let artist = match event.detail.get("artist") {
        Some(Value::String(name)) => {
            Artist::parse(name).map_err(|e| InvalidEvent(format!("detail.artist: {e}")))?
        }
        Some(_) => return Err(InvalidEvent("detail.artist must be a string".into())),
        None => return Err(InvalidEvent("detail.artist is missing".into())),
    };
    let time = event
        .time
        .unwrap_or_else(chrono::Utc::now)
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok(Notification {
        id,
        artist,
        detail: event.detail.clone(),
        time,
    })
}

/// Fans the event out and logs one summary line.
///
/// # Errors
/// [`NotifyFailure`]: invalid events and store failures fail the invocation.
pub async fn handle<S: Store, P: Push>(
    deps: &NotifyDeps<S, P>,
    event: EventBridgeEvent<Value>,
    deadline: Option<Instant>,
) -> Result<Summary, NotifyFailure> {
    let notification = parse_event(&event).inspect_err(|err| {
        tracing::error!(
            event_id = event.id.as_deref().unwrap_or(""),
            error = %err,
            retryable = false,
            "invalid event"
        );
    })?;
    let result = notify(
        &deps.store,
        &deps.push,
        &deps.fanout,
        &notification,
        now_epoch_seconds(),
        deadline,
    )
    .await;
    match &result {
        Ok(summary) => tracing::info!(
            event_id = %notification.id,
            artist = notification.artist.name(),
            duplicate = summary.duplicate,
            delivered = summary.delivered,
            gone = summary.gone,
            failed = summary.failed,
            retried = summary.retried,
            pages = summary.pages,
            duration_ms = u64::try_from(summary.duration.as_millis()).unwrap_or(u64::MAX),
            "notify finished"
        ),
        Err(err) => tracing::error!(
            event_id = %notification.id,
            artist = notification.artist.name(),
            error = err as &dyn std::error::Error,
            retryable = true,
            "notify failed"
        ),
    }
    result.map_err(NotifyFailure::from)
}
