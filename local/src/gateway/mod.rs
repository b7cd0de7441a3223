//! A local API Gateway WebSocket API in front of Marquee's routes.
//!
//! One HTTP listener serves:
//! - `GET /` (or `/{stage}`) with `Upgrade: websocket`: the WebSocket endpoint; `$connect`
//!   decides the handshake ([`socket`]). Without the upgrade, `GET /` is the demo page.
//! - `POST|GET|DELETE /@connections/{id}` (also under `/{stage}`): the Management API, on the
//!   live sockets.
//! - `POST /events`: EventBridge `PutEvents` entries; matching ones run `notify`. The same
//!   body with `X-Amz-Target: AWSEvents.PutEvents` on `POST /` works too, so the EventBridge
//!   SDK can be pointed here.
//! - `GET /dev/token?sub=..&artists=..`: a dev token; `GET /health`: readiness.

pub mod backend;
pub mod events;
pub mod registry;
mod socket;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use marquee::auth::{Secret, TokenClaims, TokenVerifier, mint};
use marquee::config::Config;
use marquee::domain::now_epoch_seconds;
use marquee::push::management::ManagementPush;
use marquee::store::memory::MemoryStore;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::backend::{Backend, InProcess, LambdaForwarder};
use self::registry::{PostError, Registry};
use crate::mgmt::{aws_error, format_timestamp};

/// The demo page, embedded.
const DEMO_PAGE: &str = include_str!("../../assets/index.html");
/// Lifetime of tokens from `GET /dev/token`.
const DEV_TOKEN_TTL_SECONDS: i64 = 3600;
/// PutEvents takes at most 10 entries per call.
const MAX_PUT_EVENTS_ENTRIES: usize = 10;

/// API Gateway's limits, configurable so tests can shorten the timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Close a socket with no client frames for this long (API Gateway: 10 minutes).
    pub idle_timeout: Duration,
    /// Close every socket after this long (API Gateway: 2 hours).
    pub max_duration: Duration,
    /// Largest frame (API Gateway: 32 KiB); larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Largest message (API Gateway: 128 KiB); larger closes with 1009.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10 * 60),
            max_duration: Duration::from_secs(2 * 60 * 60),
            max_frame_bytes: 32 * 1024,
            max_message_bytes: 128 * 1024,
        }
    }
}

/// Where route state lives.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// Embedded, in memory (the default: no Java, no AWS, no Docker).
    Memory,
    /// DynamoDB (Local) at this endpoint; the table is created when missing.
    Dynamo {
        /// e.g. `http://127.0.0.1:8000`
        endpoint: String,
    },
}

/// How to run the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port (0 = any free port).
    pub port: u16,
    /// Stage name (in request contexts, and the optional path prefix).
    pub stage: String,
    /// API Gateway's limits.
    pub limits: Limits,
    /// Store for the in-process handlers.
    pub store: StoreChoice,
    /// Forward routes to this Lambda Invoke API (`cargo lambda watch`) instead of running them
    /// in process. With `functions.work_queue_url` set, the gateway also polls that queue and
    /// invokes `marquee-deliver` with its work items.
    pub lambda_endpoint: Option<String>,
    /// Token secret (dev tokens are signed with it, `$connect` verifies with it).
    pub token_secret: String,
    /// The functions' settings (table name, audience, caps, fan-out, ...).
    pub functions: Config,
    /// In-process `deliver` invocations at once (the work queue event source's
    /// `MaximumConcurrency` in AWS).
    pub deliver_workers: usize,
    /// The EventBridge rule: `source` to match.
    pub event_source: String,
    /// The EventBridge rule: `detail-type` to match.
    pub detail_type: String,
}

impl GatewayConfig {
    /// Defaults: 127.0.0.1:3001, stage `local`, embedded store, in-process handlers, the dev
    /// secret, and the functions' defaults.
    #[must_use]
    pub fn local_defaults() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 3001,
            stage: "local".into(),
            limits: Limits::default(),
            store: StoreChoice::Memory,
            lambda_endpoint: None,
            token_secret: crate::DEV_TOKEN_SECRET.into(),
            functions: Config {
                table_name: "marquee".into(),
                dynamodb_endpoint: None,
                websocket_endpoint: None,
                work_queue_url: None,
                sqs_endpoint: None,
                token_secret: None,
                token_audience: marquee::config::DEFAULT_AUDIENCE.into(),
                connection_ttl_seconds: marquee::config::DEFAULT_CONNECTION_TTL_SECONDS,
                max_subscriptions: marquee::config::DEFAULT_MAX_SUBSCRIPTIONS,
                fanout: marquee::config::FanoutSettings::default(),
            },
            deliver_workers: usize::try_from(marquee::config::DEFAULT_DELIVER_MAX_CONCURRENCY)
                .unwrap_or(1),
            event_source: "marquee.tickets".into(),
            detail_type: "TicketsOnSale".into(),
        }
    }
}

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The address could not be bound.
    #[error("could not listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// The secret is too short.
    #[error(transparent)]
    Secret(#[from] marquee::auth::WeakSecret),
    /// DynamoDB could not be prepared.
    #[error("could not prepare the DynamoDB table")]
    Store(#[from] marquee::store::StoreError),
}

/// State shared by every request.
#[derive(Debug)]
struct Shared {
    registry: Registry,
    backend: Backend,
    limits: Limits,
    stage: String,
    secret: Secret,
    audience: String,
    event_source: String,
    detail_type: String,
    /// Route keys the message function serves besides `$default` (as in `template.yaml`).
    message_routes: Vec<String>,
}

/// A running gateway; stops when dropped or [`Gateway::shutdown`].
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Gateway {
    /// Binds and serves in a background task.
    ///
    /// # Errors
    /// [`StartError`] when the address, the secret or the store is not usable.
    pub async fn start(config: GatewayConfig) -> Result<Self, StartError> {
        let wanted = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(wanted)
            .await
            .map_err(|e| StartError::Bind(wanted, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Bind(wanted, e))?;
        let secret = Secret::new(config.token_secret.as_bytes())?;
        let backend = backend_for(&config, addr, &secret).await?;
        let shared = Arc::new(Shared {
            registry: Registry::default(),
            backend,
            limits: config.limits,
            stage: config.stage,
            secret,
            audience: config.functions.token_audience,
            event_source: config.event_source,
            detail_type: config.detail_type,
            message_routes: vec!["subscribe".into(), "unsubscribe".into()],
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(Arc::clone(&shared)).into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _stopped = stopped.await;
                })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "gateway stopped");
            }
        });
        tracing::info!(
            url = %format!("ws://{addr}/"),
            page = %format!("http://{addr}/"),
            management_api = %format!("http://{addr}"),
            routes = shared.backend.describe(),
            "local gateway listening"
        );
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`: the page, `/events`, and the Management API endpoint.
    #[must_use]
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://host:port/?token=...`
    #[must_use]
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/?token={token}", self.addr)
    }

    /// Sockets open now.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.shared.registry.len()
    }

    /// The ids of the open sockets (a local convenience; AWS has no such call).
    #[must_use]
    pub fn connection_ids(&self) -> Vec<String> {
        self.shared.registry.ids()
    }

    /// Whether the routes' store holds a live record of `id` (`None` with a Lambda endpoint).
    ///
    /// # Errors
    /// The store's error.
    pub async fn has_record(&self, id: &str) -> Result<Option<bool>, backend::InvokeError> {
        self.shared.backend.has_record(id).await
    }

    /// A dev token for `sub` (optionally limited to `artists`), valid for an hour.
    #[must_use]
    pub fn token(&self, sub: &str, artists: Option<Vec<String>>) -> String {
        dev_token(&self.shared, sub, artists).unwrap_or_default()
    }

    /// Stops accepting, closes the listener, and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _stopping = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _finished = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn backend_for(
    config: &GatewayConfig,
    addr: SocketAddr,
    secret: &Secret,
) -> Result<Backend, StartError> {
    let sdk = marquee::lambda::deps::sdk_config(marquee::lambda::deps::Target::Local).await;
    if let Some(endpoint) = &config.lambda_endpoint {
        let functions = &config.functions;
        return Ok(Backend::Lambda(match &functions.work_queue_url {
            Some(url) => LambdaForwarder::with_work_queue(
                endpoint,
                &marquee::lambda::deps::sqs_queue(&sdk, url, functions.sqs_endpoint.as_deref()),
                config.deliver_workers,
            ),
            None => LambdaForwarder::new(endpoint),
        }));
    }
    // The handlers reply through this gateway's own Management API, with the real SDK client,
    // exactly as they do through API Gateway's in AWS.
    let push = ManagementPush::new(&sdk, &format!("http://{addr}/{}", config.stage));
    let verifier = TokenVerifier::new(secret, &config.functions.token_audience);
    Ok(match &config.store {
        StoreChoice::Memory => Backend::Memory(InProcess::new(
            &MemoryStore::new(),
            &push,
            verifier,
            &config.functions,
            config.deliver_workers,
        )),
        StoreChoice::Dynamo { endpoint } => {
            let store = marquee::lambda::deps::dynamo_store(
                &sdk,
                &config.functions.table_name,
                Some(endpoint),
            );
            if !store.table_exists().await? {
                store.create_table().await?;
                tracing::info!(table = store.table(), endpoint, "created the table");
            }
            Backend::Dynamo(InProcess::new(
                &store,
                &push,
                verifier,
                &config.functions,
                config.deliver_workers,
            ))
        }
    })
}

fn router(shared: Arc<Shared>) -> Router {
    let management = get(get_connection)
        .post(post_to_connection)
        .delete(delete_connection);
    Router::new()
        .route("/", get(root).post(root_post))
        .route("/health", get(|| async { "ok" }))
        .route("/dev/token", get(get_dev_token))
        .route("/events", post(put_events))
        .route("/{stage}", get(stage_root))
        .route("/@connections/{id}", management.clone())
        .route("/{stage}/@connections/{id}", management)
        .with_state(shared)
}

/// `GET /`: the WebSocket endpoint when upgrading, the demo page otherwise.
async fn root(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<BTreeMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &shared).await {
        Ok(upgrade) => socket::accept(shared, upgrade, peer, &parts.headers, query).await,
        Err(_) => Html(DEMO_PAGE).into_response(),
    }
}

/// `GET /{stage}`: the WebSocket endpoint under the stage path, as in AWS URLs.
async fn stage_root(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(stage): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    if stage != shared.stage {
        return (StatusCode::NOT_FOUND, "no such stage").into_response();
    }
    let (mut parts, _body) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &shared).await {
        Ok(upgrade) => socket::accept(shared, upgrade, peer, &parts.headers, query).await,
        Err(rejection) => rejection.into_response(),
    }
}

async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path(params): Path<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let id = params.get("id").map_or("", String::as_str);
    if body.len() > shared.limits.max_message_bytes {
        return aws_error(StatusCode::PAYLOAD_TOO_LARGE, "Message too long");
    }
    match shared.registry.post(id, body.to_vec()) {
        Ok(()) => {
            tracing::info!(
                connection_id = id,
                bytes = body.len(),
                "posted to connection"
            );
            StatusCode::OK.into_response()
        }
        Err(PostError::Gone) => {
            tracing::info!(connection_id = id, "post to a gone connection: 410");
            aws_error(StatusCode::GONE, "")
        }
        Err(PostError::Throttled) => aws_error(StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
    }
}

async fn get_connection(
    State(shared): State<Arc<Shared>>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Response {
    let id = params.get("id").map_or("", String::as_str);
    match shared.registry.report(id) {
        Some(report) => axum::Json(json!({
            "connectedAt": format_timestamp(report.info.connected_at),
            "lastActiveAt": format_timestamp(report.last_active),
            "identity": {
                "sourceIp": report.info.source_ip,
                "userAgent": report.info.user_agent,
            },
        }))
        .into_response(),
        None => aws_error(StatusCode::GONE, ""),
    }
}

async fn delete_connection(
    State(shared): State<Arc<Shared>>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Response {
    let id = params.get("id").map_or("", String::as_str);
    match shared.registry.disconnect(id) {
        Ok(()) => {
            tracing::info!(
                connection_id = id,
                "connection deleted through the Management API"
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => aws_error(StatusCode::GONE, ""),
    }
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    sub: String,
    #[serde(default)]
    artists: Option<String>,
}

async fn get_dev_token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<TokenQuery>,
) -> Response {
    let artists = query.artists.map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    });
    match dev_token(&shared, &query.sub, artists) {
        Some(token) => axum::Json(json!({
            "token": token,
            "sub": query.sub,
            "expiresAt": now_epoch_seconds() + DEV_TOKEN_TTL_SECONDS,
        }))
        .into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "could not sign a token").into_response(),
    }
}

fn dev_token(shared: &Shared, sub: &str, artists: Option<Vec<String>>) -> Option<String> {
    let now = now_epoch_seconds();
    mint(
        &shared.secret,
        &TokenClaims {
            sub: sub.to_owned(),
            aud: shared.audience.clone(),
            iat: now,
            exp: now + DEV_TOKEN_TTL_SECONDS,
            nbf: None,
            artists,
        },
    )
    .ok()
}

/// `POST /` is EventBridge's endpoint shape (`X-Amz-Target: AWSEvents.PutEvents`).
async fn root_post(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
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

/// PutEvents: each entry matching the rule (source and detail-type) runs `notify`, in the
/// background as EventBridge does.
async fn put_events(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
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
    let mut response =
        axum::Json(json!({ "FailedEntryCount": failed, "Entries": results })).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
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
    let id = events::request_id();
    if source != shared.event_source || detail_type != shared.detail_type {
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
                ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
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
    let mut response = (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "__type": "ValidationException", "message": message })),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}
