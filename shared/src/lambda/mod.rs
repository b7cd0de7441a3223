//! Lambda handlers: API Gateway and EventBridge events in, route logic called, responses out.
//! They take `aws_lambda_events` types and know nothing of `lambda_runtime`, so tests and the
//! local gateway call them directly with the files in `events/`.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};

use crate::domain::ConnectionId;

pub mod boot;
pub mod connect;
pub mod deliver;
pub mod deps;
pub mod disconnect;
#[cfg(feature = "oidc")]
pub mod jwks;
pub mod keyring;
pub mod notify;
#[cfg(feature = "test-support")]
pub mod observe;
#[cfg(feature = "secrets")]
pub mod secrets;
pub mod subscribe;

pub use deps::{
    BootError, ConnectDeps, DeliverDeps, DisconnectDeps, FanoutDeps, NotifyDeps, SubscribeDeps,
};

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lambda's deadline for an invocation (epoch milliseconds, from the runtime's
/// `Lambda-Runtime-Deadline-Ms`) as an [`Instant`](tokio::time::Instant).
///
/// A deadline that has already passed when the invocation starts is not credible: `cargo
/// lambda watch` 1.9.2 hands every invocation `600000`, an instant in 1970. It is treated as
/// unknown (`None`), and logged once per process; the work is then bounded by the attempt
/// limit and the retry budget alone.
#[must_use]
pub fn deadline(deadline_ms: u64) -> Option<tokio::time::Instant> {
    deadline_from(deadline_ms, SystemTime::now(), tokio::time::Instant::now())
}

fn deadline_from(
    deadline_ms: u64,
    now: SystemTime,
    now_instant: tokio::time::Instant,
) -> Option<tokio::time::Instant> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let at = UNIX_EPOCH.checked_add(Duration::from_millis(deadline_ms));
    let left = at
        .and_then(|at| at.duration_since(now).ok())
        .filter(|left| !left.is_zero());
    match left {
        Some(left) => now_instant.checked_add(left),
        None => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    deadline_ms,
                    "the invocation's deadline has already passed as it starts; treating it as unknown"
                );
            }
            None
        }
    }
}

/// A response with a plain-text body. For `$connect`, a non-2xx status refuses the handshake.
#[must_use]
pub fn response(status: u16, body: &str) -> ApiGatewayProxyResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response.headers = headers;
    response.body = Some(Body::Text(body.to_owned()));
    response
}

/// The connection id of a WebSocket event; `None` (answer [`bad_request`]) when it has none.
fn connection_id(request: &ApiGatewayWebsocketProxyRequest) -> Option<ConnectionId> {
    let id = request
        .request_context
        .connection_id
        .as_deref()
        .and_then(|raw| ConnectionId::parse(raw).ok());
    if id.is_none() {
        tracing::warn!("event without a usable requestContext.connectionId");
    }
    id
}

/// The answer to an event that is not a WebSocket event of ours.
fn bad_request() -> ApiGatewayProxyResponse {
    response(400, "Bad Request")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_in_the_future_is_kept() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let start = tokio::time::Instant::now();
        let deadline = deadline_from(1_800_000_030_000, now, start).unwrap();
        assert_eq!(deadline - start, Duration::from_secs(30));
    }

    #[test]
    fn cargo_lambda_watchs_1970_deadline_is_unknown_not_past() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            deadline_from(600_000, now, tokio::time::Instant::now()),
            None
        );
    }
}
