//! Lambda handlers: API Gateway and EventBridge events in, route logic called, responses out.
//! They take `aws_lambda_events` types and know nothing of `lambda_runtime`, so tests and the
//! local gateway call them directly with the files in `events/`.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};

use crate::domain::ConnectionId;

pub mod connect;
pub mod deps;
pub mod disconnect;
pub mod message;
pub mod notify;

pub use deps::{BootError, ConnectDeps, DisconnectDeps, MessageDeps, NotifyDeps};

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
