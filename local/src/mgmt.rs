//! A stand-in for the API Gateway Management API (`execute-api` `@connections`), served over
//! real HTTP on `127.0.0.1`, for testing the functions without a gateway.
//!
//! Point the real `aws-sdk-apigatewaymanagement` client at [`ManagementApi::endpoint`] (no stage
//! path needed; `/{stage}/@connections/...` is accepted as well) and it sends:
//!
//! * `POST /@connections/{id}` with the raw message as the body: `200` and the message is
//!   recorded as a [`Delivery`];
//! * `DELETE /@connections/{id}`: `204`, and the connection is gone from then on, as on AWS;
//! * `GET /@connections/{id}`: `200` with `connectedAt`, `lastActiveAt` and `identity`.
//!
//! Every connection id is live until deleted or [`ManagementApi::mark_gone`]. Errors have AWS's
//! restJson1 shape ([`crate::aws`]) so the SDK maps them to its modelled errors: `410` ->
//! `GoneException`, `429` -> `LimitExceededException`, `413` -> `PayloadTooLargeException`,
//! `500` -> an unmodelled `InternalServerError` service error.
//!
//! Scripted trouble: [`ManagementApi::fail_next`] (any status), [`ManagementApi::false_gone_next`]
//! (a 410 for a live connection), [`ManagementApi::throttle_first`] (429s for everyone) and
//! [`ManagementApi::stall_next`] (slow answers). The SDK's default retry policy retries `429`
//! (a throttling error) and `5xx`; [`ManagementApi::attempts`] counts every POST received.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use marquee::wire::MAX_OUTBOUND_BYTES;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::aws;

/// Bodies up to this size are read so that an oversized message still gets AWS's error shape.
const BODY_READ_LIMIT: usize = 8 * 1024 * 1024;

/// How long [`ManagementApi::shutdown`] waits for in-flight requests before aborting the server.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The `identity.userAgent` reported by `GET /@connections/{id}`.
const USER_AGENT: &str = "marquee-local";

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
    #[must_use]
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
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
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(port: u16) -> std::io::Result<ManagementApi> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = router(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                // Either an explicit stop or the sender being dropped ends the server.
                let _stopped = stopped.await;
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
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops serving: in-flight requests may finish (for up to 5 seconds), then the server task
    /// is aborted. Dropping the value also stops the server, without waiting.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _stopping = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Makes POST, GET and DELETE for `id` answer `410 GoneException` from now on, as for a
    /// connection that closed.
    pub fn mark_gone(&self, id: &str) {
        self.shared.lock().gone.insert(id.to_owned());
    }

    /// The next `times` POSTs to `id` answer `status` (410, 429, 500, or any status the caller
    /// picks) with AWS's error shape before normal behaviour resumes. Calls queue up: the
    /// failures of a later call follow those of an earlier one (and of
    /// [`Self::false_gone_next`]). A 2xx `status` is a normal delivery.
    pub fn fail_next(&self, id: &str, status: u16, times: u32) {
        self.script(id, Scripted::Status(status), times);
    }

    /// A *false 410*: the next `times` POSTs to the live connection `id` answer `410
    /// GoneException`, exactly as for a closed connection, although it stays live: `GET
    /// @connections/{id}` still answers `200` with its info, and later POSTs are delivered. API
    /// Gateway is known to do this now and then (aws-sdk-js #3773, aws-sdk-js-v3 #2763), so a
    /// caller should confirm a 410 before deleting anything. Queues up with
    /// [`Self::fail_next`].
    pub fn false_gone_next(&self, id: &str, times: u32) {
        self.shared
            .lock()
            .known
            .entry(id.to_owned())
            .or_insert_with(Connection::now);
        self.script(id, Scripted::FalseGone, times);
    }

    fn script(&self, id: &str, kind: Scripted, times: u32) {
        if times == 0 {
            return;
        }
        self.shared
            .lock()
            .failures
            .entry(id.to_owned())
            .or_default()
            .push_back((kind, times));
    }

    /// The next `times` `GET @connections/{id}` (`GetConnection`) answer `status` (429, 500,
    /// ...) with AWS's error shape, whatever the connection's state: a second opinion on a 410
    /// that cannot be had.
    pub fn fail_get_next(&self, id: &str, status: u16, times: u32) {
        if times > 0 {
            self.shared
                .lock()
                .get_failures
                .insert(id.to_owned(), (status, times));
        }
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
    #[must_use]
    pub fn delivered(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// The messages answered `200` for `id`, in arrival order.
    #[must_use]
    pub fn delivered_to(&self, id: &str) -> Vec<Delivery> {
        self.shared
            .lock()
            .deliveries
            .iter()
            .filter(|delivery| delivery.connection_id == id)
            .cloned()
            .collect()
    }

    /// The connections closed with `DELETE`, in order.
    #[must_use]
    pub fn deleted(&self) -> Vec<String> {
        self.shared.lock().deleted.clone()
    }

    /// How many POSTs arrived for `id`, successful or not (SDK retries count individually).
    #[must_use]
    pub fn attempts(&self, id: &str) -> u32 {
        self.shared.lock().attempts.get(id).copied().unwrap_or(0)
    }
}

impl Drop for ManagementApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _stopping = stop.send(());
        }
    }
}

/// State shared between the handle and the server task.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<StandIn>,
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
    known: HashMap<String, Connection>,
    gone: HashSet<String>,
    /// Per connection: what the next POSTs answer, and how many times each.
    failures: HashMap<String, VecDeque<(Scripted, u32)>>,
    /// Every connection's first this many POSTs answer 429.
    throttle_first: u32,
    /// Per connection: how many more POSTs stall, and for how long each.
    stalls: HashMap<String, (u32, Duration)>,
    /// Scripted answers to `GET @connections/{id}`: (status, how many more times).
    get_failures: HashMap<String, (u16, u32)>,
    deliveries: Vec<Delivery>,
    /// Connections closed with DELETE, in order.
    deleted: Vec<String>,
    attempts: HashMap<String, u32>,
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

/// A scripted answer to a POST.
#[derive(Debug, Clone, Copy)]
enum Scripted {
    /// This status, with a message that says it was scripted.
    Status(u16),
    /// A 410 exactly like a real one, for a connection that stays live.
    FalseGone,
}

/// What to answer, decided under the lock and rendered after it is released.
#[derive(Debug)]
enum Reply {
    Ok(StatusCode, Option<serde_json::Value>),
    Error(StatusCode, String),
}

fn gone(id: &str) -> Reply {
    Reply::Error(StatusCode::GONE, format!("Connection {id} is gone"))
}

impl StandIn {
    /// `None` when `id` is live (registering it on first use), else the 410 reply.
    fn check_live(&mut self, id: &str) -> Option<Reply> {
        if self.gone.contains(id) {
            return Some(gone(id));
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

    fn next_scripted(&mut self, id: &str) -> Option<Scripted> {
        let queue = self.failures.get_mut(id)?;
        let (kind, times) = queue.front_mut()?;
        let kind = *kind;
        *times = times.saturating_sub(1);
        if *times == 0 {
            queue.pop_front();
        }
        if queue.is_empty() {
            self.failures.remove(id);
        }
        Some(kind)
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
        match self.next_scripted(id) {
            Some(Scripted::FalseGone) => return gone(id),
            Some(Scripted::Status(status)) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                if !status.is_success() {
                    return Reply::Error(status, format!("Scripted failure for connection {id}"));
                }
            }
            None => {}
        }
        if let Some(gone) = self.check_live(id) {
            return gone;
        }
        if body.len() > MAX_OUTBOUND_BYTES {
            return Reply::Error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "Message of {} bytes exceeds the {MAX_OUTBOUND_BYTES} byte limit",
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
        if let Some(gone) = self.check_live(id) {
            return gone;
        }
        self.deleted.push(id.to_owned());
        self.known.remove(id);
        self.gone.insert(id.to_owned());
        Reply::Ok(StatusCode::NO_CONTENT, None)
    }

    fn get(&mut self, id: &str) -> Reply {
        if let Some((status, left)) = self.get_failures.get_mut(id) {
            let status = *status;
            *left -= 1;
            if *left == 0 {
                self.get_failures.remove(id);
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Reply::Error(status, format!("Scripted failure for connection {id}"));
        }
        if let Some(gone) = self.check_live(id) {
            return gone;
        }
        let connection = self.known.get(id).copied().unwrap_or_else(Connection::now);
        Reply::Ok(
            StatusCode::OK,
            Some(serde_json::json!({
                "connectedAt": aws::format_timestamp(connection.connected_at),
                "lastActiveAt": aws::format_timestamp(connection.last_active_at),
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
    let reply = shared.lock().post(id, &body);
    respond("POST", id, body.len(), reply)
}

async fn delete_connection(State(shared): State<Arc<Shared>>, Path(params): Params) -> Response {
    let id = connection_id(&params);
    let reply = shared.lock().delete(id);
    respond("DELETE", id, 0, reply)
}

async fn get_connection(State(shared): State<Arc<Shared>>, Path(params): Params) -> Response {
    let id = connection_id(&params);
    let reply = shared.lock().get(id);
    respond("GET", id, 0, reply)
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    tracing::info!(%method, path = uri.path(), status = 404, "management api stand-in: no such route");
    aws::error(
        StatusCode::NOT_FOUND,
        &format!("No route for {method} {}", uri.path()),
        &aws::request_id(),
    )
}

fn respond(method: &str, id: &str, body_len: usize, reply: Reply) -> Response {
    let request_id = aws::request_id();
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
    match reply {
        Reply::Ok(status, body) => aws::ok(status, body, &request_id),
        Reply::Error(status, message) => aws::error(status, &message, &request_id),
    }
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
        assert_eq!(delivered[1].body, b"not json");
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

        let error = post(&client, ID, &vec![b'x'; MAX_OUTBOUND_BYTES + 1])
            .await
            .unwrap_err();
        assert!(error.into_service_error().is_payload_too_large_exception());
        post(&client, ID, &vec![b'x'; MAX_OUTBOUND_BYTES])
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
    async fn delete_leaves_the_connection_gone() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client(&api);

        client
            .delete_connection()
            .connection_id(ID)
            .send()
            .await
            .unwrap();

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
    async fn a_false_gone_answers_410_while_get_connection_still_reports_the_connection() {
        let api = ManagementApi::start(0).await.unwrap();
        let client = client(&api);
        api.false_gone_next(ID, 2);

        for _ in 0..2 {
            let error = post(&client, ID, b"hello").await.unwrap_err();
            assert_eq!(status_of(&error), 410);
            assert!(error.into_service_error().is_gone_exception());
            let output = client
                .get_connection()
                .connection_id(ID)
                .send()
                .await
                .unwrap();
            assert_eq!(
                output.identity().and_then(|i| i.source_ip()),
                Some("127.0.0.1")
            );
        }
        post(&client, ID, b"hello again").await.unwrap();

        assert_eq!(api.attempts(ID), 3);
        assert_eq!(
            api.delivered_to(ID)
                .iter()
                .map(|d| d.body.clone())
                .collect::<Vec<_>>(),
            vec![b"hello again".to_vec()]
        );
    }

    #[tokio::test]
    async fn a_false_gone_is_indistinguishable_from_a_real_one_on_the_wire() {
        let api = ManagementApi::start(0).await.unwrap();
        api.false_gone_next("abc=", 1);
        let false_gone = raw_request(&api, "POST", "/@connections/abc%3D", "hi").await;
        api.mark_gone("abc=");
        let real_gone = raw_request(&api, "POST", "/@connections/abc%3D", "hi").await;

        let without_volatile_headers = |response: &str| {
            response
                .lines()
                .filter(|line| !line.starts_with("x-amzn-requestid") && !line.starts_with("date"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(false_gone.starts_with("http/1.1 410"), "{false_gone}");
        assert_eq!(
            without_volatile_headers(&false_gone),
            without_volatile_headers(&real_gone)
        );
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

    /// One raw HTTP/1.1 exchange, for checking the wire format without the SDK.
    async fn raw_request(api: &ManagementApi, method: &str, path: &str, body: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(api.local_addr)
            .await
            .unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            api.local_addr,
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
        assert_ne!(first.local_addr, second.local_addr);
        assert!(first.endpoint().starts_with("http://127.0.0.1:"));

        post(&client(&first), ID, b"only here").await.unwrap();
        assert_eq!(first.delivered().len(), 1);
        assert!(second.delivered().is_empty());
    }

    #[tokio::test]
    async fn shutdown_and_drop_stop_listening() {
        let api = ManagementApi::start(0).await.unwrap();
        let addr = api.local_addr;
        api.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());

        let api = ManagementApi::start(0).await.unwrap();
        let addr = api.local_addr;
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
}
