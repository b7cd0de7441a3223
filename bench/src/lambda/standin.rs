//! The AWS end of the `lambda` mode, over TLS: what the functions' SDK clients talk to.
//!
//! - [`serve_aws`]: one HTTPS server standing in for the Management API (`POST
//!   /{stage}/@connections/{id}`: 200 after a simulated round trip, counted), SQS (the JSON
//!   protocol's `SendMessage`, `SendMessageBatch`, `ChangeMessageVisibility`, `DeleteMessage`:
//!   accepted and counted, nothing kept) and Secrets Manager (`GetSecretValue`, as in the
//!   `coldstart` mode).
//! - [`serve_dynamodb`]: an HTTPS front for DynamoDB Local (which speaks plain HTTP). It
//!   forwards every request, counts them by operation, and asks for `ReturnConsumedCapacity`
//!   on each, so that the capacity units a function consumes can be priced.
//!
//! Both present a certificate for `localhost` and 127.0.0.1 signed by a throwaway CA that
//! `scripts/bench lambda` makes with `openssl`; the functions trust it through `SSL_CERT_FILE`.
//! HTTP/1.1 only: the SDK offers `h2` too, and takes HTTP/1.1 when the server does not pick it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::BoxError;
use crate::sim::Delay;

/// The TLS server configuration for `cert` (PEM, leaf first) and `key` (PEM).
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, BoxError> {
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Connections whose TLS handshake is done, for `axum::serve`. Handshakes run in their own
/// tasks, so one slow client holds up no other.
#[derive(Debug)]
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accepting task ended: serve no more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A running server; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Server {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Serves `app` over TLS on 127.0.0.1 and a free port.
async fn serve_tls(config: Arc<rustls::ServerConfig>, app: Router) -> Result<Server, BoxError> {
    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    let local = tcp.local_addr()?;
    let (ready_tx, ready) = mpsc::channel(256);
    let acceptor = TlsAcceptor::from(config);
    let accepting = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = tcp.accept().await else {
                continue;
            };
            let _best_effort = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let ready_tx = ready_tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let _stopped = ready_tx.send((tls, peer)).await;
                    }
                    Err(err) => eprintln!("lambda: a TLS handshake failed: {err}"),
                }
            });
        }
    });
    let serving = tokio::spawn(async move {
        if let Err(err) = axum::serve(TlsListener { ready, local }, app).await {
            eprintln!("lambda: a stand-in stopped: {err}");
        }
    });
    Ok(Server {
        port: local.port(),
        tasks: [accepting, serving],
    })
}

/// Requests by operation (a counter per name).
#[derive(Debug, Default)]
pub(crate) struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, name: &str) {
        *self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_owned())
            .or_default() += 1;
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What the Management API, SQS and Secrets Manager stand-in has answered.
#[derive(Debug, Default)]
pub(crate) struct AwsCounts {
    /// `PostToConnection` requests answered 200.
    pub(crate) posts: AtomicU64,
    /// SQS and Secrets Manager requests by operation.
    pub(crate) operations: Tally,
}

#[derive(Debug, Clone)]
struct Aws {
    counts: Arc<AwsCounts>,
    delay: Arc<Delay>,
}

/// Starts the Management API, SQS and Secrets Manager stand-in; every post waits `delay`.
pub(crate) async fn serve_aws(
    config: Arc<rustls::ServerConfig>,
    counts: Arc<AwsCounts>,
    delay: Arc<Delay>,
) -> Result<Server, BoxError> {
    let app = Router::new()
        .route("/{stage}/@connections/{id}", post(post_to_connection))
        .route("/", post(json_protocol))
        .with_state(Aws { counts, delay });
    serve_tls(config, app).await
}

async fn post_to_connection(State(aws): State<Aws>, body: Bytes) -> StatusCode {
    std::hint::black_box(body.len());
    aws.delay.wait().await;
    aws.counts.posts.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

/// SQS (AWS JSON 1.0) and Secrets Manager (AWS JSON 1.1), told apart by `X-Amz-Target`.
async fn json_protocol(State(aws): State<Aws>, headers: HeaderMap, body: String) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (service, operation) = target.split_once('.').unwrap_or(("", &target));
    aws.counts.operations.add(operation);
    if service == "secretsmanager" {
        return crate::coldstart::get_secret_value(&headers, &body);
    }
    let json_type = [(header::CONTENT_TYPE, "application/x-amz-json-1.0")];
    let request: Value = serde_json::from_str(&body).unwrap_or_default();
    let answer = match operation {
        "SendMessage" => json!({
            "MessageId": format!("{:032x}", fastrand::u128(..)),
            "MD5OfMessageBody": "00000000000000000000000000000000",
        }),
        "SendMessageBatch" => {
            let successful: Vec<Value> = request
                .get("Entries")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|entry| {
                    json!({
                        "Id": entry.get("Id").cloned().unwrap_or_default(),
                        "MessageId": format!("{:032x}", fastrand::u128(..)),
                        "MD5OfMessageBody": "00000000000000000000000000000000",
                    })
                })
                .collect();
            json!({"Successful": successful, "Failed": []})
        }
        "ChangeMessageVisibility" | "DeleteMessage" => json!({}),
        _ => {
            let error =
                json!({"__type": "com.amazonaws.sqs#UnsupportedOperation", "message": target});
            return (StatusCode::BAD_REQUEST, json_type, error.to_string()).into_response();
        }
    };
    (StatusCode::OK, json_type, answer.to_string()).into_response()
}

/// What the DynamoDB front has forwarded.
#[derive(Debug, Default)]
pub(crate) struct DynamoCounts {
    /// Requests by operation.
    pub(crate) operations: Tally,
    /// Read capacity units consumed, in thousandths.
    read_milli: AtomicU64,
    /// Write capacity units consumed, in thousandths.
    write_milli: AtomicU64,
}

impl DynamoCounts {
    /// Read and write capacity units consumed so far.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn units(&self) -> (f64, f64) {
        (
            self.read_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            self.write_milli.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }
}

#[derive(Debug, Clone)]
struct Front {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    counts: Arc<DynamoCounts>,
}

/// The operations that read, whose plain `CapacityUnits` are read units.
const READS: [&str; 6] = [
    "GetItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "TransactGetItems",
    "DescribeTable",
];

/// Starts the TLS front for DynamoDB Local at `upstream` (`http://127.0.0.1:<port>`).
pub(crate) async fn serve_dynamodb(
    config: Arc<rustls::ServerConfig>,
    upstream: &str,
    counts: Arc<DynamoCounts>,
) -> Result<Server, BoxError> {
    let front = Front {
        upstream: upstream.trim_end_matches('/').to_owned(),
        client: Client::builder(TokioExecutor::new()).build_http(),
        counts,
    };
    serve_tls(config, Router::new().fallback(forward).with_state(front)).await
}

async fn forward(State(front): State<Front>, request: Request) -> Response {
    match forward_once(&front, request).await {
        Ok(response) => response,
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    }
}

async fn forward_once(front: &Front, request: Request) -> Result<Response, BoxError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20).await?;
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|target| target.rsplit('.').next())
        .unwrap_or("?")
        .to_owned();
    front.counts.operations.add(&operation);
    let body = with_consumed_capacity(&body);

    let mut upstream = hyper::Request::builder().method(parts.method).uri(format!(
        "{}{}",
        front.upstream,
        parts.uri.path()
    ));
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let answer = front
        .client
        .request(upstream.body(Full::new(body))?)
        .await?;
    let (answer_parts, answer_body) = answer.into_parts();
    let bytes = answer_body.collect().await?.to_bytes();
    let (read, write) = consumed(&operation, &bytes);
    front
        .counts
        .read_milli
        .fetch_add(milli(read), Ordering::Relaxed);
    front
        .counts
        .write_milli
        .fetch_add(milli(write), Ordering::Relaxed);

    let mut response = Response::builder().status(answer_parts.status);
    for (name, value) in &answer_parts.headers {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    Ok(response.body(Body::from(bytes))?)
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn milli(units: f64) -> u64 {
    (units * 1000.0).round().max(0.0) as u64
}

/// The request with `"ReturnConsumedCapacity": "TOTAL"` added when it is a JSON object that
/// does not ask already (DynamoDB Local does not check signatures).
pub(crate) fn with_consumed_capacity(body: &[u8]) -> Bytes {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut request)) if !request.contains_key("ReturnConsumedCapacity") => {
            request.insert("ReturnConsumedCapacity".into(), json!("TOTAL"));
            Bytes::from(Value::Object(request).to_string())
        }
        _ => Bytes::copy_from_slice(body),
    }
}

/// Read and write capacity units in a response's `ConsumedCapacity` (an object, or a list of
/// them for batches and transactions). Plain `CapacityUnits` count as reads for a reading
/// operation and as writes otherwise.
pub(crate) fn consumed(operation: &str, body: &[u8]) -> (f64, f64) {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return (0.0, 0.0);
    };
    let entries: Vec<&Value> = match answer.get("ConsumedCapacity") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    };
    let reads = READS.contains(&operation);
    let mut totals = (0.0, 0.0);
    for entry in entries {
        let number = |name: &str| entry.get(name).and_then(Value::as_f64);
        match (
            number("ReadCapacityUnits"),
            number("WriteCapacityUnits"),
            number("CapacityUnits"),
        ) {
            (None, None, Some(units)) if reads => totals.0 += units,
            (None, None, Some(units)) => totals.1 += units,
            (read, write, _) => {
                totals.0 += read.unwrap_or(0.0);
                totals.1 += write.unwrap_or(0.0);
            }
        }
    }
    totals
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_asked_for_its_consumed_capacity() {
        let body = with_consumed_capacity(br#"{"TableName":"t"}"#);
        let request: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            request,
            json!({"TableName": "t", "ReturnConsumedCapacity": "TOTAL"})
        );
    }

    #[test]
    fn a_request_that_asks_already_is_left_alone() {
        let body = br#"{"TableName":"t","ReturnConsumedCapacity":"INDEXES"}"#;
        assert_eq!(with_consumed_capacity(body).as_ref(), body);
    }

    #[test]
    fn plain_capacity_units_of_a_query_are_reads() {
        let body = br#"{"Items":[],"ConsumedCapacity":{"TableName":"t","CapacityUnits":12.5}}"#;
        assert_eq!(consumed("Query", body), (12.5, 0.0));
    }

    #[test]
    fn a_transactions_capacity_is_summed_with_its_split() {
        let body = br#"{"ConsumedCapacity":[{"CapacityUnits":4.0,"ReadCapacityUnits":2.0,"WriteCapacityUnits":2.0},{"CapacityUnits":1.0}]}"#;
        assert_eq!(consumed("TransactWriteItems", body), (2.0, 3.0));
    }
}
