//! A local API Gateway WebSocket API in front of Marquee's routes.
//!
//! One HTTP listener serves:
//! - `GET /` (or `/{stage}`) with `Upgrade: websocket`: the WebSocket endpoint; `$connect`
//!   decides the handshake ([`socket`]). Without the upgrade, `GET /` is the demo page.
//! - `POST|GET|DELETE /@connections/{id}` (also under `/{stage}`): the Management API, on the
//!   live sockets ([`management`]).
//! - `GET /events` and `GET /events/{id}`: the `FanoutCompleted` events sent (the last ones, or
//!   one event's), as a local EventBridge consumer would see them.
//! - `POST /events`: EventBridge `PutEvents` entries; matching ones run `notify`. The same
//!   body with `X-Amz-Target: AWSEvents.PutEvents` on `POST /` works too, so the EventBridge
//!   SDK can be pointed here ([`eventbridge`]).
//! - `GET /dev/token?sub=..&artists=..`: a dev token (loopback binds only); `GET /health`:
//!   readiness.
//!
//! Every request passes the [`guard`] first: a loopback `Host` with the bound port, and no
//! foreign `Origin`.
//!
//! Modules: [`config`] (how to run it), this file (start and stop), [`router`], [`guard`],
//! [`socket`] (one WebSocket's life), [`tcp`] (its connection, reset when it cannot be closed)
//! and [`registry`] (the open sockets and their outboxes),
//! [`management`], [`eventbridge`], [`events`] (the events Lambda receives), [`backend`] (who
//! runs the routes) and [`push`] (how the in-process routes post: through the Management API
//! by default).

pub mod backend;
mod config;
mod eventbridge;
pub mod events;
mod guard;
mod management;
mod push;
pub mod registry;
mod router;
mod socket;
mod tcp;

use marquee::report::RecordingEvents;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use marquee::auth::{Secret, TokenVerifier};
use marquee::lambda::jwks::HttpJwks;
use marquee::lambda::keyring::Keyring;
use marquee::push::management::ManagementPush;
use marquee::store::memory::MemoryStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use self::config::{GatewayConfig, LambdaNames, Limits, StoreChoice};
pub use self::push::PushPath;
pub use self::router::DevToken;

use self::backend::{Backend, InProcess, LambdaForwarder};
use self::guard::Guard;
use self::push::{DirectPush, GatewayPush};
use self::registry::Registry;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The address could not be bound.
    #[error("could not listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// The secret is too short.
    #[error(transparent)]
    Secret(#[from] marquee::auth::WeakSecret),
    /// The system's root certificates (for the provider's keys) could not be read.
    #[error("could not read the system's root certificates")]
    TrustStore(#[source] std::io::Error),
    /// The dev provider's key could not be read.
    #[error("the dev provider's key is unusable")]
    DevProvider(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// DynamoDB could not be prepared.
    #[error("could not prepare the DynamoDB table")]
    Store(#[from] marquee::store::StoreError),
}

/// State shared by every request.
#[derive(Debug)]
struct Shared {
    registry: Arc<Registry>,
    backend: Backend,
    guard: Guard,
    limits: Limits,
    stage: String,
    secret: Secret,
    audience: String,
    event_source: String,
    detail_type: String,
    /// Route keys the `subscribe` function serves besides `$default` (as in `template.yaml`).
    message_routes: Vec<String>,
    /// Every `FanoutCompleted` sent: by the in-process functions, or `PutEvents` to this
    /// gateway (the binaries with `EVENTS_ENDPOINT` pointing here). The local EventBridge
    /// consumer: `GET /events`, `GET /events/{id}`.
    completed: RecordingEvents,
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
    /// Binds and serves in a background task. A non-loopback `host` logs a loud warning (see
    /// [`Gateway::is_exposed`]).
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
        let guard = Guard::for_bind(addr);
        if guard.is_public() {
            tracing::warn!(
                %addr,
                "EXPOSED: the local gateway listens beyond loopback. Anyone who can reach \
                 {addr} can open sockets with tokens signed by the dev secret, post to and \
                 delete every connection through the Management API, and publish events. \
                 /dev/token is not served. Bind 127.0.0.1 unless you mean it."
            );
        }
        let secret = Secret::new(config.token_secret.as_bytes())?;
        let registry = Arc::new(Registry::default());
        let completed = RecordingEvents::new();
        let backend =
            backend_for(&config, internal_addr(addr), &registry, &secret, &completed).await?;
        let shared = Arc::new(Shared {
            registry,
            backend,
            guard,
            limits: config.limits,
            stage: config.stage,
            secret,
            audience: config.functions.token_audience,
            event_source: config.event_source,
            detail_type: config.detail_type,
            message_routes: marquee::wire::MESSAGE_ROUTES
                .iter()
                .map(|route| (*route).to_owned())
                .collect(),
            completed,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app =
            router::router(Arc::clone(&shared)).into_make_service_with_connect_info::<tcp::Peer>();
        let listener = tcp::Listener(listener);
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

    /// Whether it listens beyond loopback (`--host 0.0.0.0` or a LAN address): reachable from
    /// other machines, with no `/dev/token`.
    #[must_use]
    pub fn is_exposed(&self) -> bool {
        self.shared.guard.is_public()
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

    /// The open sockets and their outboxes, which the Management API endpoint posts to and
    /// closes (for an embedding program, or a test that must post and close with no step in
    /// between).
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
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
        self.token_with(
            sub,
            &DevToken {
                artists,
                ..DevToken::default()
            },
        )
    }

    /// A dev token for `sub` with the given claims, signed with this gateway's secret.
    #[must_use]
    pub fn token_with(&self, sub: &str, claims: &DevToken) -> String {
        router::dev_token(&self.shared, sub, claims).unwrap_or_default()
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

/// Where the in-process handlers reach this gateway's Management API: the bound address, or
/// loopback when bound to every interface.
fn internal_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// The in-process `$connect`'s keys: the secret, and `OIDC_ISSUER`'s provider (its keys
/// fetched as the function does) or else the dev provider, whose issuer is this gateway.
async fn verifier_for(
    config: &GatewayConfig,
    addr: SocketAddr,
    secret: &Secret,
) -> Result<Keyring, StartError> {
    let audience = &config.functions.token_audience;
    let hs256 = TokenVerifier::new(secret, audience);
    Ok(match &config.functions.oidc {
        Some(provider) => {
            let keys = HttpJwks::new(provider, config.functions.oidc_fetch_timeout, false)
                .map_err(StartError::TrustStore)?;
            Keyring::from(hs256)
                .with_provider(provider.clone(), keys)
                .await
        }
        None => {
            let dev = crate::provider::dev_provider(&format!("http://{addr}"), audience)
                .map_err(StartError::DevProvider)?;
            Keyring::from(hs256.with_provider(dev))
        }
    })
}

async fn backend_for(
    config: &GatewayConfig,
    addr: SocketAddr,
    registry: &Arc<Registry>,
    secret: &Secret,
    completed: &RecordingEvents,
) -> Result<Backend, StartError> {
    let sdk = marquee::lambda::deps::sdk_config(marquee::lambda::deps::Target::Local).await;
    if let Some(endpoint) = &config.lambda_endpoint {
        let functions = &config.functions;
        return Ok(Backend::Lambda(match &functions.work_queue_url {
            Some(url) => LambdaForwarder::with_work_queue(
                endpoint,
                config.lambda_names,
                &marquee::lambda::deps::sqs_queue(&sdk, url, functions.sqs_endpoint.as_deref()),
                config.deliver_workers,
            ),
            None => LambdaForwarder::new(endpoint, config.lambda_names),
        }));
    }
    // By default the handlers post through this gateway's own Management API, with the real
    // SDK client, exactly as they do through API Gateway's in AWS.
    let push = match config.push {
        PushPath::ManagementApi => GatewayPush::ManagementApi(ManagementPush::new(
            &sdk,
            &format!("http://{addr}/{}", config.stage),
        )),
        PushPath::Direct => GatewayPush::Direct(DirectPush::new(
            Arc::clone(registry),
            config.limits.max_message_bytes,
        )),
    };
    let verifier = verifier_for(config, addr, secret).await?;
    // The handlers tell clients (`pong`) when this gateway's maximum duration ends them.
    let mut functions = config.functions.clone();
    functions.max_connection_seconds = functions.max_connection_seconds.min(
        i64::try_from(config.limits.max_duration.as_secs())
            .unwrap_or(i64::MAX)
            .max(1),
    );
    Ok(match &config.store {
        StoreChoice::Memory => Backend::Memory(InProcess::new(
            &MemoryStore::new(),
            marquee::budget::in_memory(functions.fanout.budget),
            &push,
            verifier,
            &functions,
            config.deliver_workers,
            completed,
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
                marquee::lambda::deps::table_budget(&store, functions.fanout.budget),
                &push,
                verifier,
                &functions,
                config.deliver_workers,
                completed,
            ))
        }
    })
}
