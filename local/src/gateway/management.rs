//! The Management API (`@connections/{id}`) on the live sockets: `POST` queues a frame, `GET`
//! reports, `DELETE` closes. Errors have AWS's shape, so the SDK maps them to its modelled
//! errors: 410 `GoneException` for an unknown or closing id, 429 `LimitExceededException` when
//! the socket's outbox is full, 413 `PayloadTooLargeException` above 128 KiB.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::Shared;
use super::registry::PostError;
use crate::aws;

type Params = Path<BTreeMap<String, String>>;

fn connection_id(params: &BTreeMap<String, String>) -> &str {
    params.get("id").map_or("", String::as_str)
}

fn error(status: StatusCode, message: &str) -> Response {
    aws::error(status, message, &aws::request_id())
}

pub(super) async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path(params): Params,
    body: Bytes,
) -> Response {
    let id = connection_id(&params);
    if body.len() > shared.limits.max_message_bytes {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "Message too long");
    }
    let bytes = body.len();
    match shared.registry.post(id, body) {
        Ok(()) => {
            tracing::info!(connection_id = id, bytes, "posted to connection");
            aws::ok(StatusCode::OK, None, &aws::request_id())
        }
        Err(PostError::Gone) => {
            tracing::info!(connection_id = id, "post to a gone connection: 410");
            error(StatusCode::GONE, "")
        }
        Err(PostError::Throttled) => {
            tracing::info!(connection_id = id, bytes, "outbox full: 429");
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "The WebSocket client side buffer is full",
            )
        }
    }
}

pub(super) async fn get_connection(
    State(shared): State<Arc<Shared>>,
    Path(params): Params,
) -> Response {
    let id = connection_id(&params);
    match shared.registry.report(id) {
        Some(report) => aws::ok(
            StatusCode::OK,
            Some(json!({
                "connectedAt": aws::format_timestamp(report.info.connected_at),
                "lastActiveAt": aws::format_timestamp(report.last_active),
                "identity": {
                    "sourceIp": report.info.source_ip,
                    "userAgent": report.info.user_agent,
                },
            })),
            &aws::request_id(),
        ),
        None => error(StatusCode::GONE, ""),
    }
}

pub(super) async fn delete_connection(
    State(shared): State<Arc<Shared>>,
    Path(params): Params,
) -> Response {
    let id = connection_id(&params);
    match shared.registry.disconnect(id) {
        Ok(()) => {
            tracing::info!(
                connection_id = id,
                "connection deleted through the Management API"
            );
            aws::ok(StatusCode::NO_CONTENT, None, &aws::request_id())
        }
        Err(_) => error(StatusCode::GONE, ""),
    }
}
