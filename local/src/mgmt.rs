//! A stand-in for the API Gateway Management API (`execute-api` `@connections`), served over
//! real HTTP on `127.0.0.1`.
//!
//! Point the real `aws-sdk-apigatewaymanagement` client at [`ManagementApi::endpoint`] (no stage
//! path needed; `/{stage}/@connections/...` is accepted as well) and it sends:
//!
//! * `POST /@connections/{id}` with the raw message as the body: `200` and the message is
//!   recorded as a [`Delivery`];
//! * `DELETE /@connections/{id}`: `204`, the id is recorded (see [`ManagementApi::deleted`]) and
//!   the connection is gone from then on, as on AWS;
//! * `GET /@connections/{id}`: `200` with `connectedAt`, `lastActiveAt` and `identity`.
//!
//! Errors are shaped like AWS's restJson1 errors (status code, an `x-amzn-errortype` header and a
//! `{"message": "..."}` body) so the SDK maps them to its modelled errors: `410` ->
//! `GoneException`, `429` -> `LimitExceededException`, `413` -> `PayloadTooLargeException`,
//! `403` -> `ForbiddenException`, `500` -> an unmodelled `InternalServerError` service error.
//!
//! By default the stand-in is lenient: a connection id it has never heard of is treated as a live
//! connection. [`ManagementApi::set_strict`] makes unknown ids answer `410` instead, and
//! [`ManagementApi::mark_gone`] / [`ManagementApi::fail_next`] script failures for single ids.
//!
//! Note that the SDK's default retry policy retries `429` (`LimitExceededException` is a
//! throttling error) and `5xx` answers; [`ManagementApi::attempts`] counts every POST received.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// The largest message `PostToConnection` accepts, in bytes (API Gateway's 128 KiB limit);
/// larger bodies answer `413 PayloadTooLargeException`.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// Bodies up to this size are read so that an oversized message still gets AWS's error shape.
const BODY_READ_LIMIT: usize = 8 * 1024 * 1024;

/// How long [`ManagementApi::shutdown`] waits for in-flight requests before aborting the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The `identity.userAgent` reported by `GET /@connections/{id}`.
const USER_AGENT: &str = "marquee-local";

/// The header the SDK reads the error type from (restJson1).
const ERROR_TYPE_HEADER: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// The header the SDK reads the request id from.
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-amzn-requestid");

/// One message the stand-in accepted (answered `200`) for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The connection id, percent-decoded from the request path.
    pub connection_id: String,
    /// The message, exactly as posted.
    pub body: Vec<u8>,
}

impl Delivery {
    /// The body parsed as JSON, or `None` when it is not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as UTF-8 text, or `None` when it is not valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// A running Management API stand-in. Each one has its own port and its own state, so tests may
/// start as many as they like in parallel. The server stops when this value is dropped or
/// [`ManagementApi::shutdown`] is awaited.
#[derive(Debug)]
pub struct ManagementApi {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ManagementApi {
    /// Binds `127.0.0.1:<port>` (`0` picks any free port) and serves in a spawned tokio task until
    /// this value is dropped or [`ManagementApi::shutdown`] is called. Must be called inside a
    /// tokio runtime.
    pub async fn start(port: u16) -> std::io::Result<ManagementApi> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = router(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                // Either an explicit stop or the sender being dropped ends the server.
                let _ = stopped.await;
            });
            if let Err(error) = server.await {
                tracing::warn!(%error, %local_addr, "management api stand-in failed");
            }
            tracing::debug!(%local_addr, "management api stand-in stopped");
        });
        tracing::info!(%local_addr, "management api stand-in listening");
        Ok(ManagementApi {
            shared,
            local_addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The URL to give the SDK client as `endpoint_url`: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The address the stand-in listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving: in-flight requests may finish (for up to 5 seconds), then the server task
    /// is aborted. Dropping the value also stops the server, without waiting.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Makes POST, GET and DELETE for `id` answer `410 GoneException` until [`Self::revive`].
    pub fn mark_gone(&self, id: &str) {
        self.shared.lock().gone.insert(id.to_owned());
    }

    /// Undoes [`Self::mark_gone`] (or a DELETE): `id` is a live connection again.
    pub fn revive(&self, id: &str) {
        let mut state = self.shared.lock();
        state.gone.remove(id);
        state
            .known
            .entry(id.to_owned())
            .or_insert_with(Connection::now);
    }

    /// Registers `id` as a live connection. Only needed in strict mode, where unknown ids are
    /// gone; lenient mode (the default) registers ids on first use.
    pub fn add_connection(&self, id: &str) {
        self.revive(id);
    }

    /// Strict mode: ids never registered with [`Self::add_connection`] (or seen before strict
    /// mode was switched on) answer `410 GoneException`. Lenient (the default): any id is live.
    pub fn set_strict(&self, strict: bool) {
        self.shared.lock().strict = strict;
    }

    /// The next `times` POSTs to `id` answer `status` (410, 429, 500, or any status the caller
    /// picks) with AWS's error shape before normal behaviour resumes. Calls queue up: the
    /// failures of a later call follow those of an earlier one. A 2xx `status` is a normal
    /// delivery.
    pub fn fail_next(&self, id: &str, status: u16, times: u32) {
        if times == 0 {
            return;
        }
        self.shared
            .lock()
            .failures
            .entry(id.to_owned())
            .or_default()
            .push_back(ScriptedFailure { status, times });
    }

    /// From now on, the first `times` POSTs to every connection answer `429` (a throttled
    /// Management API), for checking that callers retry.
    pub fn throttle_first(&self, times: u32) {
        self.shared.lock().throttle_first = times;
    }

    /// The next `times` POSTs to `id` are held for `delay` before being answered as usual,
    /// like a Management API call that outlasts the client's timeout (the client gives up,
    /// though the frame may still be delivered).
    pub fn stall_next(&self, id: &str, delay: Duration, times: u32) {
        if times > 0 {
            self.shared
                .lock()
                .stalls
                .insert(id.to_owned(), (times, delay));
        }
    }

    /// Every message answered `200`, in arrival order. Failed attempts are not here; see
    /// [`Self::attempts`].
    pub fn delivered(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// The messages answered `200` for `id`, in arrival order.
    pub fn delivered_to(&self, id: &str) -> Vec<Delivery> {
        self.shared
            .lock()
            .deliveries
            .iter()
            .filter(|delivery| delivery.connection_id == id)
            .cloned()
            .collect()
    }

    /// How many POSTs arrived for `id`, successful or not (SDK retries count individually).
    pub fn attempts(&self, id: &str) -> u32 {
        self.shared.lock().attempts.get(id).copied().unwrap_or(0)
    }

    /// The ids of every DELETE received, in order (including ones answered `410`).
    pub fn deleted(&self) -> Vec<String> {
        self.shared.lock().deleted.clone()
    }

    /// Forgets what was recorded (deliveries, attempts, deletions). What was configured (gone
    /// ids, pending [`Self::fail_next`] failures, strict mode, known connections) stays.
    pub fn clear(&self) {
        let mut state = self.shared.lock();
        state.deliveries.clear();
        state.attempts.clear();
        state.deleted.clear();
    }

    /// Waits until at least `n` deliveries have been recorded (since start or the last
    /// [`Self::clear`]) or `timeout` passes, and returns all deliveries recorded by then, which
    /// may be fewer than `n` on timeout, or more.
    pub async fn wait_for_deliveries(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.delivered.notified();
            tokio::pin!(notified);
            // Register interest before looking, so a delivery in between is not missed.
            notified.as_mut().enable();
            let deliveries = self.delivered();
            if deliveries.len() >= n {
                return deliveries;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.delivered();
            }
        }
    }
}

impl Drop for ManagementApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// State shared between the handle and the server task.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<StandIn>,
    /// Woken on every delivery.
    delivered: Notify,
}

impl Shared {
    /// Short critical sections only, never held across an await. A panic while holding the lock
    /// cannot leave the plain data inconsistent, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, StandIn> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct StandIn {
    strict: bool,
    known: HashMap<String, Connection>,
    gone: HashSet<String>,
    failures: HashMap<String, VecDeque<ScriptedFailure>>,
    /// Every connection's first this many POSTs answer 429.
    throttle_first: u32,
    /// Per connection: how many more POSTs stall, and for how long each.
    stalls: HashMap<String, (u32, Duration)>,
    deliveries: Vec<Delivery>,
    attempts: HashMap<String, u32>,
    deleted: Vec<String>,
    requests: u64,
}

#[derive(Debug, Clone, Copy)]
struct Connection {
    connected_at: SystemTime,
    last_active_at: SystemTime,
}

impl Connection {
    fn now() -> Self {
        let now = SystemTime::now();
        Connection {
            connected_at: now,
            last_active_at: now,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ScriptedFailure {
    status: u16,
    times: u32,
}

/// What to answer, decided under the lock and rendered after it is released.
#[derive(Debug)]
enum Reply {
    Ok(StatusCode, Option<serde_json::Value>),
    Error(StatusCode, String),
}

impl StandIn {
    fn next_request_id(&mut self) -> String {
        self.requests += 1;
        format!("marquee-local-{:08}", self.requests)
    }

    /// `None` when `id` is live (registering it in lenient mode), else the 410 reply.
    fn check_live(&mut self, id: &str) -> Option<Reply> {
        if self.gone.contains(id) || (self.strict && !self.known.contains_key(id)) {
            return Some(Reply::Error(
                StatusCode::GONE,
                format!("Connection {id} is gone"),
            ));
        }
        self.known
            .entry(id.to_owned())
            .or_insert_with(Connection::now);
        None
    }

    fn next_stall(&mut self, id: &str) -> Option<Duration> {
        let (left, delay) = self.stalls.get_mut(id)?;
        let delay = *delay;
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.stalls.remove(id);
        }
        Some(delay)
    }

    fn next_scripted_failure(&mut self, id: &str) -> Option<u16> {
        let queue = self.failures.get_mut(id)?;
        let front = queue.front_mut()?;
        let status = front.status;
        front.times = front.times.saturating_sub(1);
        if front.times == 0 {
            queue.pop_front();
        }
        if queue.is_empty() {
            self.failures.remove(id);
        }
        Some(status)
    }

    fn post(&mut self, id: &str, body: &[u8]) -> Reply {
        let attempts = self.attempts.entry(id.to_owned()).or_insert(0);
        *attempts += 1;
        if *attempts <= self.throttle_first {
            return Reply::Error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Throttled: first {} posts to every connection",
                    self.throttle_first
                ),
            );
        }
        if let Some(status) = self.next_scripted_failure(id) {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if !status.is_success() {
                return Reply::Error(status, format!("Scripted failure for connection {id}"));
            }
        }
        if let Some(gone) = self.check_live(id) {
            return gone;
        }
        if body.len() > MAX_MESSAGE_BYTES {
            return Reply::Error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "Message of {} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit",
                    body.len()
                ),
            );
        }
        if let Some(connection) = self.known.get_mut(id) {
            connection.last_active_at = SystemTime::now();
        }
        self.deliveries.push(Delivery {
            connection_id: id.to_owned(),
            body: body.to_vec(),
        });
        Reply::Ok(StatusCode::OK, None)
    }

    fn delete(&mut self, id: &str) -> Reply {
        self.deleted.push(id.to_owned());
        if let Some(gone) = self.check_live(id) {
            return gone;
        }
        self.known.remove(id);
        self.gone.insert(id.to_owned());
        Reply::Ok(StatusCode::NO_CONTENT, None)
    }

    fn get(&mut self, id: &str) -> Reply {
        if let Some(gone) = self.check_live(id) {
            return gone;
        }
        let connection = self.known.get(id).copied().unwrap_or_else(Connection::now);
        Reply::Ok(
            StatusCode::OK,
            Some(serde_json::json!({
                "connectedAt": format_timestamp(connection.connected_at),
                "lastActiveAt": format_timestamp(connection.last_active_at),
                "identity": { "sourceIp": "127.0.0.1", "userAgent": USER_AGENT },
            })),
        )
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/@connections/{connection_id}",
            post(post_to_connection)
                .get(get_connection)
                .delete(delete_connection),
        )
        .route(
            "/{stage}/@connections/{connection_id}",
            post(post_to_connection)
                .get(get_connection)
                .delete(delete_connection),
        )
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(BODY_READ_LIMIT))
        .with_state(shared)
}

/// Path parameters; `Path` has already percent-decoded them (`%3D` -> `=`).
type Params = Path<HashMap<String, String>>;

fn connection_id(params: &HashMap<String, String>) -> &str {
    params.get("connection_id").map_or("", String::as_str)
}

async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path(params): Params,
    body: Bytes,
) -> Response {
    let id = connection_id(&params);
    let stall = shared.lock().next_stall(id);
    if let Some(delay) = stall {
        tokio::time::sleep(delay).await;
    }
    let (reply, request_id) = {
        let mut state = shared.lock();
        let reply = state.post(id, &body);
        (reply, state.next_request_id())
    };
    if matches!(reply, Reply::Ok(..)) {
        shared.delivered.notify_waiters();
    }
    respond("POST", id, body.len(), reply, &request_id)
}

async fn delete_connection(State(shared): State<Arc<Shared>>, Path(params): Params) -> Response {
    let id = connection_id(&params);
    let (reply, request_id) = {
        let mut state = shared.lock();
        let reply = state.delete(id);
        (reply, state.next_request_id())
    };
    respond("DELETE", id, 0, reply, &request_id)
}

async fn get_connection(State(shared): State<Arc<Shared>>, Path(params): Params) -> Response {
    let id = connection_id(&params);
    let (reply, request_id) = {
        let mut state = shared.lock();
        let reply = state.get(id);
        (reply, state.next_request_id())
    };
    respond("GET", id, 0, reply, &request_id)
}

async fn unknown_route(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    let request_id = shared.lock().next_request_id();
    tracing::info!(%method, path = uri.path(), status = 404, "management api stand-in: no such route");
    render(
        Reply::Error(
            StatusCode::NOT_FOUND,
            format!("No route for {method} {}", uri.path()),
        ),
        &request_id,
    )
}

fn respond(method: &str, id: &str, body_len: usize, reply: Reply, request_id: &str) -> Response {
    let status = match &reply {
        Reply::Ok(status, _) | Reply::Error(status, _) => status.as_u16(),
    };
    tracing::info!(
        method,
        connection_id = id,
        status,
        body_len,
        request_id,
        "management api stand-in"
    );
    render(reply, request_id)
}

fn render(reply: Reply, request_id: &str) -> Response {
    let mut response = match reply {
        Reply::Ok(status, None) => status.into_response(),
        Reply::Ok(status, Some(json)) => (status, axum::Json(json)).into_response(),
        Reply::Error(status, message) => {
            let mut response = (
                status,
                axum::Json(serde_json::json!({ "message": message })),
            )
                .into_response();
            response.headers_mut().insert(
                ERROR_TYPE_HEADER,
                HeaderValue::from_static(error_type(status)),
            );
            response
        }
    };
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    if !response.headers().contains_key(header::CONTENT_TYPE) {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    response
}

/// The error type AWS names for a status, as the SDK matches it.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        403 => "ForbiddenException",
        404 => "NotFoundException",
        410 => "GoneException",
        413 => "PayloadTooLargeException",
        429 => "LimitExceededException",
        503 => "ServiceUnavailableException",
        500..=599 => "InternalServerError",
        _ => "BadRequestException",
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:00:00.000Z` (what the SDK parses as a
/// `date-time` timestamp).
pub(crate) fn format_timestamp(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An error response in AWS's restJson1 shape (status, `x-amzn-errortype`, `{"message"}`), which
/// the SDK maps to its modelled errors.
pub(crate) fn aws_error(status: StatusCode, message: &str) -> Response {
    render(
        Reply::Error(status, message.to_owned()),
        &crate::gateway::events::request_id(),
    )
}

#[cfg(test)]
#[cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    use aws_sdk_apigatewaymanagement::Client;
    use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
    use aws_sdk_apigatewaymanagement::config::{Credentials, Region};
    use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
    use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
    use aws_sdk_apigatewaymanagement::operation::get_connection::GetConnectionError;
    use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
    use aws_sdk_apigatewaymanagement::primitives::Blob;

    /// API Gateway connection ids end with `=`, which the SDK percent-encodes in the path.
    const ID: &str = "L0SM9cOFvHcCIhw=";

    fn client_with(api: &ManagementApi, retry: RetryConfig) -> Client {
        let config = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "test"))
            .endpoint_url(api.endpoint())
            .retry_config(retry)
            .build();
        Client::from_conf(config)
    }

    /// No retries, so each call is exactly one request and errors surface as they are.
    fn client(api: &ManagementApi) -> Client {
        client_with(api, RetryConfig::disabled())
    }

    async fn post(
        client: &Client,
        id: &str,
        body: &[u8],
    ) -> Result<(), SdkError<PostToConnectionError>> {
        client
            .post_to_connection()
            .connection_id(id)
            .data(Blob::new(body))
            .send()
            .await
            .map(|_| ())
    }

    fn status_of<E>(error: &SdkError<E>) -> u16 {
        error
            .raw_response()
            .map(|raw| raw.status().as_u16())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn post_delivers_the_body_under_the_decoded_connection_id() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client(&api);

        post(&client, ID, br#"{"type":"event","n":1}"#)
            .await
            .unwrap();
        post(&client, "other=", b"not json").await.unwrap();

        let delivered = api.delivered();
        assert_eq!(delivered.len(), 2);
        assert_eq!(delivered[0].connection_id, ID);
        assert_eq!(
            delivered[0].json(),
            Some(serde_json::json!({"type": "event", "n": 1}))
        );
        assert_eq!(delivered[1].text(), Some("not json"));
        assert_eq!(delivered[1].json(), None);
        assert_eq!(api.delivered_to(ID).len(), 1);
        assert_eq!(api.attempts(ID), 1);
        assert_eq!(api.attempts("never-posted="), 0);
    }

    #[tokio::test]
    async fn post_to_gone_connection_maps_to_gone_exception() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client(&api);
        api.mark_gone(ID);

        let error = post(&client, ID, b"hello").await.unwrap_err();
        assert_eq!(status_of(&error), 410);
        let service_error = error.into_service_error();
        assert!(
            matches!(service_error, PostToConnectionError::GoneException(_)),
            "{service_error:?}"
        );
        assert!(api.delivered().is_empty());
        assert_eq!(api.attempts(ID), 1);

        api.revive(ID);
        post(&client, ID, b"hello again").await.unwrap();
        assert_eq!(api.delivered_to(ID).len(), 1);
    }

    #[tokio::test]
    async fn throttled_post_maps_to_limit_exceeded_exception() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client(&api);
        api.fail_next(ID, 429, 1);

        let error = post(&client, ID, b"hello").await.unwrap_err();
        assert_eq!(status_of(&error), 429);
        let service_error = error.into_service_error();
        assert!(
            matches!(
                service_error,
                PostToConnectionError::LimitExceededException(_)
            ),
            "{service_error:?}"
        );

        post(&client, ID, b"hello").await.unwrap();
        assert_eq!(api.attempts(ID), 2);
        assert_eq!(api.delivered().len(), 1);
    }

    #[tokio::test]
    async fn server_error_maps_to_an_unmodelled_5xx_service_error() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client(&api);
        api.fail_next(ID, 500, 1);

        let error = post(&client, ID, b"hello").await.unwrap_err();
        assert!(matches!(error, SdkError::ServiceError(_)), "{error:?}");
        assert_eq!(status_of(&error), 500);
        let service_error = error.into_service_error();
        assert_eq!(service_error.code(), Some("InternalServerError"));
        assert!(service_error.message().is_some());
        assert!(!service_error.is_gone_exception());
        assert!(!service_error.is_limit_exceeded_exception());
    }

    #[tokio::test]
    async fn oversized_post_maps_to_payload_too_large_exception() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client(&api);

        let error = post(&client, ID, &vec![b'x'; MAX_MESSAGE_BYTES + 1])
            .await
            .unwrap_err();
        assert!(error.into_service_error().is_payload_too_large_exception());
        post(&client, ID, &vec![b'x'; MAX_MESSAGE_BYTES])
            .await
            .unwrap();
        assert_eq!(api.delivered().len(), 1);
    }

    #[tokio::test]
    async fn scripted_failures_queue_up_and_the_default_retry_policy_retries_them() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client_with(
            &api,
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1)),
        );
        api.fail_next(ID, 429, 1);
        api.fail_next(ID, 500, 1);

        post(&client, ID, b"eventually").await.unwrap();
        assert_eq!(api.attempts(ID), 3);
        assert_eq!(api.delivered_to(ID).len(), 1);

        api.fail_next(ID, 410, 5);
        let error = post(&client, ID, b"gone").await.unwrap_err();
        assert!(error.into_service_error().is_gone_exception());
        assert_eq!(api.attempts(ID), 4, "GoneException is not retried");
    }

    #[tokio::test]
    async fn delete_is_recorded_and_leaves_the_connection_gone() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client(&api);

        client
            .delete_connection()
            .connection_id(ID)
            .send()
            .await
            .unwrap();
        assert_eq!(api.deleted(), vec![ID.to_owned()]);

        let error = post(&client, ID, b"late").await.unwrap_err();
        assert!(error.into_service_error().is_gone_exception());
        let error = client
            .delete_connection()
            .connection_id(ID)
            .send()
            .await
            .unwrap_err();
        assert!(matches!(
            error.into_service_error(),
            DeleteConnectionError::GoneException(_)
        ));
        assert_eq!(api.deleted().len(), 2);

        api.clear();
        assert!(api.deleted().is_empty());
        assert_eq!(api.attempts(ID), 0);
    }

    #[tokio::test]
    async fn get_connection_describes_a_live_connection() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client(&api);

        let output = client
            .get_connection()
            .connection_id(ID)
            .send()
            .await
            .unwrap();
        assert!(output.connected_at().is_some());
        assert!(output.last_active_at().is_some());
        let identity = output.identity().unwrap();
        assert_eq!(identity.source_ip(), Some("127.0.0.1"));
        assert_eq!(identity.user_agent(), Some(USER_AGENT));

        api.mark_gone(ID);
        let error = client
            .get_connection()
            .connection_id(ID)
            .send()
            .await
            .unwrap_err();
        assert!(matches!(
            error.into_service_error(),
            GetConnectionError::GoneException(_)
        ));
    }

    #[tokio::test]
    async fn strict_mode_treats_unknown_connections_as_gone() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client(&api);
        api.set_strict(true);
        api.add_connection("known=");

        let error = post(&client, ID, b"x").await.unwrap_err();
        assert!(error.into_service_error().is_gone_exception());
        post(&client, "known=", b"x").await.unwrap();
        assert_eq!(api.delivered().len(), 1);
    }

    #[tokio::test]
    async fn stage_prefixed_paths_are_accepted() {
        let api = ManagementApi::start(0).await.unwrap();
        let config = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "test"))
            .endpoint_url(format!("{}/local", api.endpoint()))
            .build();
        post(&Client::from_conf(config), ID, b"staged")
            .await
            .unwrap();
        assert_eq!(api.delivered_to(ID).len(), 1);
    }

    #[tokio::test]
    async fn wait_for_deliveries_returns_once_enough_arrived_or_at_the_timeout() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client(&api);
        let sender = tokio::spawn(async move {
            for n in 0..3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                post(&client, ID, format!("{n}").as_bytes()).await.unwrap();
            }
        });

        let started = std::time::Instant::now();
        let delivered = api.wait_for_deliveries(3, Duration::from_secs(10)).await;
        assert_eq!(delivered.len(), 3);
        assert!(started.elapsed() < Duration::from_secs(5));
        sender.await.unwrap();

        let delivered = api.wait_for_deliveries(4, Duration::from_millis(50)).await;
        assert_eq!(delivered.len(), 3);
    }

    /// One raw HTTP/1.1 exchange, for checking the wire format without the SDK.
    async fn raw_request(api: &ManagementApi, method: &str, path: &str, body: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(api.local_addr())
            .await
            .unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            api.local_addr(),
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response.to_ascii_lowercase()
    }

    #[tokio::test]
    async fn percent_encoded_ids_are_decoded_and_errors_have_the_aws_wire_shape() {
        let api = ManagementApi::start(0).await.unwrap();

        let ok = raw_request(&api, "POST", "/@connections/abc%3D", "hi").await;
        assert!(ok.starts_with("http/1.1 200"), "{ok}");
        assert_eq!(api.delivered_to("abc=").len(), 1);

        api.mark_gone("abc=");
        let gone = raw_request(&api, "POST", "/@connections/abc%3D", "hi").await;
        assert!(gone.starts_with("http/1.1 410"), "{gone}");
        assert!(
            gone.contains("x-amzn-errortype: goneexception\r\n"),
            "{gone}"
        );
        assert!(
            gone.contains("content-type: application/json\r\n"),
            "{gone}"
        );
        assert!(gone.contains("x-amzn-requestid: "), "{gone}");
        assert!(
            gone.ends_with(r#"{"message":"connection abc= is gone"}"#),
            "{gone}"
        );

        let unknown = raw_request(&api, "GET", "/nothing/here", "").await;
        assert!(unknown.starts_with("http/1.1 404"), "{unknown}");
    }

    #[tokio::test]
    async fn independent_instances_do_not_share_state() {
        let first = ManagementApi::start(0).await.unwrap();
        let second = ManagementApi::start(0).await.unwrap();
        assert_ne!(first.local_addr(), second.local_addr());
        assert!(first.endpoint().starts_with("http://127.0.0.1:"));

        post(&client(&first), ID, b"only here").await.unwrap();
        assert_eq!(first.delivered().len(), 1);
        assert!(second.delivered().is_empty());
    }

    #[tokio::test]
    async fn shutdown_and_drop_stop_listening() {
        let api = ManagementApi::start(0).await.unwrap();
        let addr = api.local_addr();
        api.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());

        let api = ManagementApi::start(0).await.unwrap();
        let addr = api.local_addr();
        drop(api);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "still listening after drop"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(format_timestamp(at), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_timestamp(leap_day), "2000-02-29T00:00:00.000Z");
    }
}
