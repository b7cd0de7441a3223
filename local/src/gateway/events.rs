//! The events API Gateway and EventBridge send to Lambda, built as the JSON AWS sends, so the
//! in-process handlers and the real binaries under `cargo lambda watch` see the same thing.

use std::collections::BTreeMap;
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::aws::request_id;

/// The API id reported in request contexts.
pub const API_ID: &str = "marquee-local";
/// The account reported in events.
const ACCOUNT_ID: &str = "000000000000";
/// The region reported in events.
const REGION: &str = "us-east-1";

/// What API Gateway knows about the WebSocket a request belongs to.
#[derive(Debug, Clone)]
pub struct SocketInfo {
    /// The connection id.
    pub connection_id: String,
    /// When the socket connected.
    pub connected_at: SystemTime,
    /// The client's address.
    pub source_ip: String,
    /// The client's `User-Agent`, if any.
    pub user_agent: Option<String>,
    /// The host the client connected to (`domainName`).
    pub domain_name: String,
    /// The stage name.
    pub stage: String,
}

/// A random connection id of AWS's shape: 16 base64 characters ending in `=`.
#[must_use]
pub fn connection_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 11] = std::array::from_fn(|_| fastrand::u8(..));
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn millis(at: SystemTime) -> i64 {
    DateTime::<Utc>::from(at).timestamp_millis()
}

fn request_context(
    socket: &SocketInfo,
    route_key: &str,
    event_type: &str,
    now: SystemTime,
) -> Map<String, Value> {
    let request_id = request_id();
    let mut identity = Map::new();
    identity.insert("sourceIp".into(), json!(socket.source_ip));
    if let Some(agent) = &socket.user_agent {
        identity.insert("userAgent".into(), json!(agent));
    }
    let context = json!({
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id.replace('-', "").chars().take(16).collect::<String>(),
        "requestTime": DateTime::<Utc>::from(now).format("%d/%b/%Y:%H:%M:%S %z").to_string(),
        "messageDirection": "IN",
        "stage": socket.stage,
        "connectedAt": millis(socket.connected_at),
        "requestTimeEpoch": millis(now),
        "identity": identity,
        "requestId": request_id,
        "domainName": socket.domain_name,
        "connectionId": socket.connection_id,
        "apiId": API_ID,
    });
    match context {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn multi_value(single: &BTreeMap<String, String>) -> Value {
    Value::Object(
        single
            .iter()
            .map(|(k, v)| (k.clone(), json!([v])))
            .collect(),
    )
}

/// The `$connect` event: headers and query string included.
#[must_use]
pub fn connect_event(
    socket: &SocketInfo,
    headers: &BTreeMap<String, String>,
    query: &BTreeMap<String, String>,
) -> Value {
    // API Gateway leaves the query fields out when there is no query string.
    let (single, multi) = if query.is_empty() {
        (Value::Null, Value::Null)
    } else {
        (json!(query), multi_value(query))
    };
    json!({
        "headers": headers,
        "multiValueHeaders": multi_value(headers),
        "queryStringParameters": single,
        "multiValueQueryStringParameters": multi,
        "requestContext": request_context(socket, "$connect", "CONNECT", SystemTime::now()),
        "isBase64Encoded": false,
    })
}

/// A `MESSAGE` event for `route_key`. Binary frames arrive base64-encoded, as on AWS.
#[must_use]
pub fn message_event(socket: &SocketInfo, route_key: &str, body: &str, is_base64: bool) -> Value {
    let now = SystemTime::now();
    let mut context = request_context(socket, route_key, "MESSAGE", now);
    context.insert(
        "messageId".into(),
        json!(
            request_id()
                .replace('-', "")
                .chars()
                .take(16)
                .collect::<String>()
        ),
    );
    json!({
        "requestContext": context,
        "body": body,
        "isBase64Encoded": is_base64,
    })
}

/// The `$disconnect` event, with the close code and reason.
#[must_use]
pub fn disconnect_event(socket: &SocketInfo, status_code: u16, reason: &str) -> Value {
    let mut context = request_context(socket, "$disconnect", "DISCONNECT", SystemTime::now());
    context.insert("disconnectStatusCode".into(), json!(status_code));
    context.insert("disconnectReason".into(), json!(reason));
    json!({
        "headers": { "Host": socket.domain_name },
        "multiValueHeaders": { "Host": [socket.domain_name] },
        "requestContext": context,
        "isBase64Encoded": false,
    })
}

/// An EventBridge event as a rule target receives it.
#[must_use]
pub fn eventbridge_event(id: &str, source: &str, detail_type: &str, detail: &Value) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT_ID,
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        "region": REGION,
        "resources": [],
        "detail": detail,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
    use aws_lambda_events::eventbridge::EventBridgeEvent;

    fn socket() -> SocketInfo {
        SocketInfo {
            connection_id: connection_id(),
            connected_at: SystemTime::now(),
            source_ip: "127.0.0.1".into(),
            user_agent: Some("test".into()),
            domain_name: "localhost".into(),
            stage: "local".into(),
        }
    }

    #[test]
    fn connection_ids_have_the_aws_shape() {
        let id = connection_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
    }

    #[test]
    fn built_events_parse_as_the_lambda_event_types() {
        let query = BTreeMap::from([("token".to_owned(), "abc".to_owned())]);
        let connect: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(connect_event(&socket(), &BTreeMap::new(), &query)).unwrap();
        assert_eq!(connect.query_string_parameters.first("token"), Some("abc"));
        assert_eq!(
            connect.request_context.event_type.as_deref(),
            Some("CONNECT")
        );
        let message: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(message_event(&socket(), "subscribe", "{}", false)).unwrap();
        assert_eq!(
            message.request_context.route_key.as_deref(),
            Some("subscribe")
        );
        assert!(message.request_context.message_id.is_some());
        let gone: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(disconnect_event(&socket(), 1001, "Going away")).unwrap();
        assert_eq!(gone.request_context.disconnect_status_code, Some(1001));
        let event: EventBridgeEvent<Value> = serde_json::from_value(eventbridge_event(
            "e1",
            marquee::report::DEFAULT_EVENT_SOURCE,
            marquee::lambda::notify::DEFAULT_ON_SALE_DETAIL_TYPE,
            &json!({"artist": "Adele"}),
        ))
        .unwrap();
        assert_eq!(event.detail["artist"], "Adele");
    }
}
