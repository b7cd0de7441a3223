//! The `notify` handler: the EventBridge target.

use crate::function::Function;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::SecondsFormat;
use serde_json::Value;
use tokio::time::Instant;

use super::NotifyDeps;
use crate::domain::{Artist, EventId, now_epoch_seconds};
use crate::metrics::Metrics;
use crate::push::Push;
use crate::queue::Queue;
use crate::routes::fanout::Tally;
use crate::routes::notify::{NotifyError, Summary, announce, notify};
use crate::store::Store;
use crate::work::{Announcement, Notification};

/// The `detail-type` of an operator's announcement to every connection (from the same source
/// as the on-sale events; the template's rule matches both).
pub const ANNOUNCEMENT_DETAIL_TYPE: &str = "Announcement";

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
            Self::Fanout(NotifyError::InProgress(_)) => "EventInProgress",
            Self::Fanout(_) => "FanoutFailed",
        }
    }
}

/// Validates an EventBridge event: `id` and `detail.artist` are required; `detail` is
/// forwarded whole, and the frame it makes must fit API Gateway's 128 KiB.
///
/// # Errors
/// [`InvalidEvent`] saying what is wrong.
pub fn parse_event(event: &EventBridgeEvent<Value>) -> Result<Notification, InvalidEvent> {
    let id = event_id(event)?;
    let artist = match event.detail.get("artist") {
        Some(Value::String(name)) => {
            Artist::parse(name).map_err(|e| InvalidEvent(format!("detail.artist: {e}")))?
        }
        Some(_) => return Err(InvalidEvent("detail.artist must be a string".into())),
        None => return Err(InvalidEvent("detail.artist is missing".into())),
    };
    Notification::new(id, artist, event.detail.clone(), event_time(event))
        .map_err(|e| InvalidEvent(e.0))
}

fn event_id(event: &EventBridgeEvent<Value>) -> Result<EventId, InvalidEvent> {
    event
        .id
        .as_deref()
        .ok_or_else(|| InvalidEvent("the event has no id".into()))
        .and_then(|id| EventId::parse(id).map_err(|e| InvalidEvent(e.to_string())))
}

fn event_time(event: &EventBridgeEvent<Value>) -> String {
    event
        .time
        .unwrap_or_else(chrono::Utc::now)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn handle_announcement<S: Store, P: Push, Q: Queue>(
    deps: &NotifyDeps<S, P, Q>,
    event: &EventBridgeEvent<Value>,
    deadline: Option<Instant>,
) -> Result<Summary, NotifyFailure> {
    let announcement = parse_announcement(event).inspect_err(|err| {
        tracing::error!(
            event_id = event.id.as_deref().unwrap_or(""),
            error = %err,
            retryable = false,
            "invalid announcement"
        );
    })?;
    let result = announce(&deps.ports(), &announcement, now_epoch_seconds(), deadline).await;
    let mut metrics = Metrics::new("notify");
    match &result {
        Ok(summary) => {
            fanout_metrics(&mut metrics, &summary.tally, &announcement.time);
            metrics.count("Announcements", 1);
            tracing::info!(
                event_id = %announcement.id,
                mode = ?summary.mode,
                audience = summary.audience,
                enqueued = summary.enqueued,
                delivered = summary.tally.delivered,
                "announcement finished"
            );
        }
        Err(err) => {
            metrics.count("FanoutErrors", 1);
            tracing::error!(
                event_id = %announcement.id,
                error = err as &dyn std::error::Error,
                retryable = true,
                "announcement failed"
            );
        }
    }
    metrics.emit();
    result.map_err(NotifyFailure::from)
}

/// Validates an `Announcement` event: `id` and `detail.message` (1 to 2,000 characters) are
/// required.
///
/// # Errors
/// [`InvalidEvent`] saying what is wrong.
pub fn parse_announcement(event: &EventBridgeEvent<Value>) -> Result<Announcement, InvalidEvent> {
    let id = event_id(event)?;
    let Some(Value::String(message)) = event.detail.get("message") else {
        return Err(InvalidEvent("detail.message must be a string".into()));
    };
    Announcement::new(id, message, event_time(event)).map_err(|e| InvalidEvent(e.0))
}

/// Fans the event out (a notification, or an announcement to everyone) and logs one summary
/// line.
///
/// # Errors
/// [`NotifyFailure`]: invalid events and store or queue failures fail the invocation.
///
/// Runs as [`Function::Notify`].
pub async fn handle<S: Store, P: Push, Q: Queue>(
    deps: &NotifyDeps<S, P, Q>,
    event: EventBridgeEvent<Value>,
    deadline: Option<Instant>,
) -> Result<Summary, NotifyFailure> {
    Function::Notify
        .run(Box::pin(serve(deps, event, deadline)))
        .await
}

async fn serve<S: Store, P: Push, Q: Queue>(
    deps: &NotifyDeps<S, P, Q>,
    event: EventBridgeEvent<Value>,
    deadline: Option<Instant>,
) -> Result<Summary, NotifyFailure> {
    if event.detail_type == ANNOUNCEMENT_DETAIL_TYPE {
        return handle_announcement(deps, &event, deadline).await;
    }
    let notification = parse_event(&event).inspect_err(|err| {
        tracing::error!(
            event_id = event.id.as_deref().unwrap_or(""),
            error = %err,
            retryable = false,
            "invalid event"
        );
    })?;
    let ports = deps.ports();
    let result = notify(&ports, &notification, now_epoch_seconds(), deadline).await;
    let mut metrics = Metrics::new("notify");
    match &result {
        Ok(summary) => {
            fanout_metrics(&mut metrics, &summary.tally, &notification.time);
            metrics.count("Enqueued", summary.enqueued);
        }
        Err(_) => {
            metrics.count("FanoutErrors", 1);
        }
    }
    metrics.emit();
    match &result {
        Ok(summary) => tracing::info!(
            event_id = %notification.id,
            artist = notification.artist.name(),
            mode = ?summary.mode,
            audience = summary.audience,
            enqueued = summary.enqueued,
            delivered = summary.tally.delivered,
            gone = summary.tally.gone,
            failed = summary.tally.failed,
            retried = summary.tally.retried,
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

/// The fan-out counts of one invocation, and the lag from the event's time to now when it
/// reached anyone.
pub(crate) fn fanout_metrics(metrics: &mut Metrics, tally: &Tally, time: &str) {
    metrics
        .count("Delivered", tally.delivered)
        .count("Gone", tally.gone)
        .count("Failed", tally.failed)
        .count("Retried", tally.retried);
    if tally.delivered > 0
        && let Some(lag) = crate::metrics::lag_since(time)
    {
        metrics.millis("FanoutLag", lag);
    }
}
