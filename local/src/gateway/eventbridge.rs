//! EventBridge's `PutEvents`, as far as Marquee needs it: entries matching the rule (`source`
//! and `detail-type`) run `notify` in the background, as EventBridge invokes its target.
//! `POST /events` takes the body; so does `POST /` with `X-Amz-Target: AWSEvents.PutEvents`,
//! EventBridge's own endpoint shape, so the EventBridge SDK can be pointed at the gateway.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Shared, events};

/// PutEvents takes at most 10 entries per call.
const MAX_PUT_EVENTS_ENTRIES: usize = 10;

/// `POST /`: PutEvents when `X-Amz-Target` says so.
pub(super) async fn root_post(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if target == "AWSEvents.PutEvents" {
        put_events(State(shared), body).await
    } else {
        validation_error(&format!("unsupported X-Amz-Target {target:?}"))
    }
}

/// `POST /events`: each entry matching the rule runs `notify`.
pub(super) async fn put_events(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return validation_error("the body is not JSON");
    };
    let Some(entries) = request.get("Entries").and_then(Value::as_array) else {
        return validation_error("Entries must be an array");
    };
    if entries.is_empty() || entries.len() > MAX_PUT_EVENTS_ENTRIES {
        return validation_error("Entries must hold 1 to 10 entries");
    }
    let mut results = Vec::with_capacity(entries.len());
    let mut failed = 0;
    for entry in entries {
        match accept_entry(&shared, entry) {
            Ok(id) => results.push(json!({ "EventId": id })),
            Err(message) => {
                failed += 1;
                results.push(json!({ "ErrorCode": "MalformedDetail", "ErrorMessage": message }));
            }
        }
    }
    amz_json(
        StatusCode::OK,
        &json!({ "FailedEntryCount": failed, "Entries": results }),
    )
}

fn accept_entry(shared: &Arc<Shared>, entry: &Value) -> Result<String, String> {
    let text = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or("");
    let (source, detail_type) = (text("Source"), text("DetailType"));
    if source.is_empty() || detail_type.is_empty() {
        return Err("Source and DetailType are required".into());
    }
    let detail: Value = serde_json::from_str(text("Detail"))
        .map_err(|_| "Detail must be a JSON object in a string".to_owned())?;
    if !detail.is_object() {
        return Err("Detail must be a JSON object in a string".into());
    }
    let id = crate::aws::request_id();
    if detail_type == marquee::report::FANOUT_COMPLETED_DETAIL_TYPE {
        // A function run outside (EVENTS_ENDPOINT pointing here) reporting a fan-out.
        let completed: marquee::report::FanoutCompleted = serde_json::from_value(detail)
            .map_err(|e| format!("not a FanoutCompleted detail: {e}"))?;
        tracing::info!(event_id = %completed.event_id, "FanoutCompleted received");
        shared.completed.record(completed);
        return Ok(id);
    }
    let matches_rule = source == shared.event_source
        && (detail_type == shared.detail_type
            || detail_type == marquee::lambda::notify::ANNOUNCEMENT_DETAIL_TYPE
            || detail_type == marquee::lambda::notify::REVOKE_DETAIL_TYPE);
    if !matches_rule {
        tracing::info!(event_id = %id, source, detail_type, "event matched no rule");
        return Ok(id);
    }
    let event = events::eventbridge_event(&id, source, detail_type, &detail);
    let shared = Arc::clone(shared);
    let event_id = id.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match shared.backend.notify(event).await {
            Ok(summary) => tracing::info!(
                event_id,
                summary = %summary,
                ms = marquee::domain::saturating_u64(started.elapsed().as_millis()),
                "notify finished"
            ),
            Err(err) => tracing::error!(
                event_id,
                error = &err as &dyn std::error::Error,
                "notify failed"
            ),
        }
    });
    Ok(id)
}

fn validation_error(message: &str) -> Response {
    amz_json(
        StatusCode::BAD_REQUEST,
        &json!({ "__type": "ValidationException", "message": message }),
    )
}

/// A JSON answer with EventBridge's content type.
fn amz_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

/// Most `FanoutCompleted` events `GET /events` lists (the newest).
const LISTED: usize = 20;

/// `GET /events`: the newest `FanoutCompleted` details, newest first.
pub(super) async fn completed(State(shared): State<Arc<Shared>>) -> Response {
    let mut sent = shared.completed.sent();
    sent.reverse();
    sent.truncate(LISTED);
    (StatusCode::OK, axum::Json(sent)).into_response()
}

/// `GET /events/{id}`: the `FanoutCompleted` detail of event `id` (the last one sent), or 404.
pub(super) async fn completed_one(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match shared
        .completed
        .sent()
        .into_iter()
        .rev()
        .find(|c| c.event_id == id)
    {
        Some(detail) => (StatusCode::OK, axum::Json(detail)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "message": "no FanoutCompleted for this event (yet)" })),
        )
            .into_response(),
    }
}
