//! The `notify` handler: the EventBridge target.

use crate::function::Function;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::SecondsFormat;
use serde_json::Value;
use tokio::time::Instant;

use super::NotifyDeps;
use crate::domain::{Artist, EventId, UserId, now_epoch_seconds};
use crate::metrics::Metrics;
use crate::push::Push;
use crate::queue::Queue;
use crate::routes::fanout::Tally;
use crate::routes::notify::{Mode, NotifyError, Summary, announce, notify};
use crate::routes::revoke::{Revocation, RevokeError, revoke};
use crate::store::Store;
use crate::work::{Announcement, Notification};

/// The `detail-type` of the on-sale events (the template's `EventDetailType` default, which a
/// deployment may change): notify takes any event its rule matches that is neither an
/// announcement nor a revocation as an on-sale notification.
pub const DEFAULT_ON_SALE_DETAIL_TYPE: &str = "TicketsOnSale";

/// The `detail-type` of an operator's announcement to every connection (from the same source
/// as the on-sale events; the template's rule matches both).
pub const ANNOUNCEMENT_DETAIL_TYPE: &str = "Announcement";

/// The `detail-type` of a revocation of a user (`{"user": "<sub>", "reason": "..."}`, from the
/// same source; the template's rule matches it).
pub const REVOKE_DETAIL_TYPE: &str = "Revoke";

/// Longest `reason` a revocation may carry (it is logged, never sent to the client).
pub const MAX_REVOKE_REASON_CHARS: usize = 500;

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
    /// A revocation could not be recorded, or some connections not closed (retryable).
    #[error(transparent)]
    Revoke(#[from] RevokeError),
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
            Self::Revoke(_) => "RevokeFailed",
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
            report_metrics(&mut metrics, summary.report);
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

/// Validates a `Revoke` event: `detail.user` (a user id) is required, `detail.reason` is an
/// optional string of at most [`MAX_REVOKE_REASON_CHARS`]. The revocation takes effect at the
/// event's time (or now, when that is later or missing), so a redelivery records the same
/// time.
///
/// # Errors
/// [`InvalidEvent`] saying what is wrong.
pub fn parse_revocation(
    event: &EventBridgeEvent<Value>,
    now: crate::domain::EpochSeconds,
) -> Result<(Revocation, Option<String>), InvalidEvent> {
    let user = match event.detail.get("user") {
        Some(Value::String(user)) => {
            UserId::parse(user).map_err(|e| InvalidEvent(format!("detail.user: {e}")))?
        }
        Some(_) => return Err(InvalidEvent("detail.user must be a string".into())),
        None => return Err(InvalidEvent("detail.user is missing".into())),
    };
    let reason = match event.detail.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(reason)) if reason.chars().count() <= MAX_REVOKE_REASON_CHARS => {
            Some(reason.clone())
        }
        Some(Value::String(_)) => {
            return Err(InvalidEvent(format!(
                "detail.reason must be at most {MAX_REVOKE_REASON_CHARS} characters"
            )));
        }
        Some(_) => return Err(InvalidEvent("detail.reason must be a string".into())),
    };
    let at = event.time.map_or(now, |time| time.timestamp().min(now));
    Ok((Revocation { user, at }, reason))
}

async fn handle_revocation<S: Store, P: Push, Q: Queue>(
    deps: &NotifyDeps<S, P, Q>,
    event: &EventBridgeEvent<Value>,
) -> Result<Summary, NotifyFailure> {
    let started = Instant::now();
    let now = now_epoch_seconds();
    let (revocation, reason) = parse_revocation(event, now).inspect_err(|err| {
        tracing::error!(
            event_id = event.id.as_deref().unwrap_or(""),
            error = %err,
            retryable = false,
            "invalid revocation"
        );
    })?;
    let result = revoke(
        &deps.store,
        &deps.push,
        &revocation,
        deps.fanout.revocation_ttl_seconds,
        deps.fanout.presence_max,
        now,
    )
    .await;
    let mut metrics = Metrics::new("notify");
    let event_id = event.id.as_deref().unwrap_or("");
    let summary = match result {
        Ok(revoked) => {
            metrics
                .count("Revocations", 1)
                .count("RevokedConnections", revoked.closed);
            tracing::info!(
                event_id,
                user_id = %revocation.user,
                revoked_at = revocation.at,
                reason = reason.as_deref().unwrap_or(""),
                listed = revoked.listed,
                closed = revoked.closed,
                gone = revoked.gone,
                "user revoked"
            );
            Ok(Summary {
                mode: Mode::Inline,
                audience: revoked.listed,
                tally: crate::routes::fanout::Tally {
                    closed: revoked.closed,
                    gone: revoked.gone,
                    ..Default::default()
                },
                duration: started.elapsed(),
                ..Summary::default()
            })
        }
        Err(err) => {
            metrics.count("RevokeErrors", 1);
            tracing::error!(
                event_id,
                user_id = %revocation.user,
                error = &err as &dyn std::error::Error,
                retryable = true,
                "revocation failed"
            );
            Err(NotifyFailure::from(err))
        }
    };
    metrics.emit();
    summary
}

/// Fans the event out (a notification, or an announcement to everyone), or revokes a user, and
/// logs one summary line.
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
    if event.detail_type == REVOKE_DETAIL_TYPE {
        return handle_revocation(deps, &event).await;
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
            report_metrics(&mut metrics, summary.report);
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
            duration_ms = crate::domain::saturating_u64(summary.duration.as_millis()),
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
/// Counts a fan-out that ended with this invocation: `FanoutsCompleted`, and
/// [`INCOMPLETE_REPORTS`](crate::metrics::INCOMPLETE_REPORTS) when items went to the
/// dead-letter queue.
pub(crate) fn report_metrics(metrics: &mut Metrics, reported: crate::routes::report::Reported) {
    use crate::routes::report::Reported;
    match reported {
        Reported::Completed => {
            metrics.count("FanoutsCompleted", 1);
        }
        Reported::Incomplete => {
            metrics
                .count("FanoutsCompleted", 1)
                .count(crate::metrics::INCOMPLETE_REPORTS, 1);
        }
        Reported::None | Reported::Counted | Reported::Again => {}
    }
}

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
