//! What each function builds once per cold start, and how it is built from the environment.
//!
//! Each `from_env` exists when the crate features its function selects are on (`management`,
//! `sqs`, `secrets`; DynamoDB is always there). Every SDK client built from one
//! [`sdk_config`] shares its one HTTPS client ([`https_client`]).

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

pub use super::boot::BootError;
use super::keyring::Keyring;
use crate::budget::dynamo::DynamoBudget;
use crate::budget::{Plan, SharedBudget};
use crate::config::{Config, FanoutSettings};
use crate::function::Function;
#[cfg(feature = "management")]
use crate::push::management::ManagementPush;
#[cfg(feature = "sqs")]
use crate::queue::sqs::SqsQueue;
use crate::report::SharedEvents;
use crate::routes::subscribe::SubscribeSettings;
use crate::store::dynamo::DynamoStore;

/// What `$connect` needs.
#[derive(Debug)]
pub struct ConnectDeps<S> {
    /// Where connections are recorded.
    pub store: S,
    /// Token checks, with the keys renewed after a rotation.
    pub verifier: Keyring,
    /// Lifetime of a connection record (shortened to the token's).
    pub ttl_seconds: i64,
    /// Cap on subscriptions per connection, for a token's `subscribe` claim.
    pub max_subscriptions: u32,
    /// Cap on live connections per user.
    pub max_connections_per_user: u32,
}

impl<S> ConnectDeps<S> {
    /// `$connect`'s deps over `store` and `verifier`, with `config`'s limits.
    #[must_use]
    pub fn new(config: &Config, store: S, verifier: Keyring) -> Self {
        Self {
            store,
            verifier,
            ttl_seconds: config.connection_ttl_seconds,
            max_subscriptions: config.max_subscriptions,
            max_connections_per_user: config.max_connections_per_user,
        }
    }
}

/// What `$disconnect` needs.
#[derive(Debug)]
pub struct DisconnectDeps<S, P> {
    /// Where connections are recorded.
    pub store: S,
    /// `left` notices to the rooms the connection was in go out through it.
    pub push: P,
    /// Rooms of at most this many subscribers are told who left.
    pub presence_max: u64,
}

impl<S, P> DisconnectDeps<S, P> {
    /// `$disconnect`'s deps over `store` and `push`, with `config`'s presence limit.
    #[must_use]
    pub fn new(config: &Config, store: S, push: P) -> Self {
        Self {
            store,
            push,
            presence_max: config.fanout.presence_max,
        }
    }
}

/// What the `subscribe` function's routes need: a room message goes out like a notification,
/// so they post with the fan-out's deps, and apply their own limits.
#[derive(Debug)]
pub struct SubscribeDeps<S, P, Q> {
    /// The store, the Management API, the work queue, the budget and the report events, as
    /// `notify` and `deliver` have them: replies, catch-up, presence and room frames go out
    /// through them, and a large room's messages on the queue.
    pub posting: FanoutDeps<S, P, Q>,
    /// The cap, the connection lifetime, the catch-up limit and the publish rate.
    pub settings: SubscribeSettings,
}

impl<S, P, Q> SubscribeDeps<S, P, Q> {
    /// The `subscribe` function's deps over the ports, with `config`'s limits and fan-out
    /// tunables.
    #[must_use]
    pub fn new(
        config: &Config,
        store: S,
        push: P,
        queue: Q,
        budget: SharedBudget,
        events: SharedEvents,
    ) -> Self {
        Self {
            posting: FanoutDeps::new(config, store, push, queue, budget, events),
            settings: SubscribeSettings::from(config),
        }
    }

    /// The ports and limits a room message's fan-out takes.
    #[must_use]
    pub fn ports(&self) -> crate::routes::fanout::Ports<'_, S, P, Q> {
        self.posting.ports()
    }
}

/// What the fan-out functions need: `notify` and `deliver` work with the same ports.
#[derive(Debug)]
pub struct FanoutDeps<S, P, Q> {
    /// Where subscriptions are read and events claimed.
    pub store: S,
    /// Frames go out through it.
    pub push: P,
    /// Work items (from notify) and continuations (from deliver) go on it.
    pub queue: Q,
    /// Fan-out tunables.
    pub fanout: FanoutSettings,
    /// The account's posting budget.
    pub budget: SharedBudget,
    /// Where `FanoutCompleted` goes when a fan-out's last work item finishes.
    pub events: SharedEvents,
}

/// What `notify` needs.
pub type NotifyDeps<S, P, Q> = FanoutDeps<S, P, Q>;
/// What `deliver` needs.
pub type DeliverDeps<S, P, Q> = FanoutDeps<S, P, Q>;

impl<S, P, Q> FanoutDeps<S, P, Q> {
    /// `notify`'s or `deliver`'s deps over the ports, with `config`'s fan-out tunables.
    #[must_use]
    pub fn new(
        config: &Config,
        store: S,
        push: P,
        queue: Q,
        budget: SharedBudget,
        events: SharedEvents,
    ) -> Self {
        Self {
            store,
            push,
            queue,
            fanout: config.fanout.clone(),
            budget,
            events,
        }
    }

    /// The ports and limits the route logic takes.
    #[must_use]
    pub fn ports(&self) -> crate::routes::fanout::Ports<'_, S, P, Q> {
        crate::routes::fanout::Ports {
            store: &self.store,
            push: &self.push,
            queue: &self.queue,
            settings: &self.fanout,
            budget: self.budget.as_ref(),
            events: self.events.as_ref(),
        }
    }
}

/// Where the AWS services are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Local stand-ins (DynamoDB Local, an SQS-compatible server, the local gateway): no
    /// instance metadata lookups, and dummy credentials when none are set.
    Local,
    /// AWS itself, with the default credential and Region chains.
    Aws,
}

/// The root certificates of Amazon Trust Services, which every AWS endpoint Marquee calls
/// chains to: Amazon Root CA 1 to 4, and Starfield Services Root G2 (their cross-signer). Public
/// certificates, as Mozilla's root store ships them; see `docs/decisions.md`.
const AMAZON_ROOTS: &[u8] = include_bytes!("amazon-roots.pem");

/// The one HTTPS client that every SDK client built from one [`sdk_config`] shares: one
/// connection pool and one TLS set-up per process, instead of one per SDK client. The SDK's
/// default stack (hyper 1, rustls with aws-lc-rs, the proxy from the environment), except for
/// the roots: for [`Target::Aws`], the Amazon Trust Services roots built in, so a cold start
/// reads no certificate files; for [`Target::Local`], the system's store (a laptop may sit
/// behind a proxy with its own root).
#[must_use]
pub fn https_client(target: Target) -> SharedHttpClient {
    let trust = match target {
        Target::Aws => TrustStore::empty().with_pem_certificate(AMAZON_ROOTS),
        Target::Local => TrustStore::default(),
    };
    // `build` cannot fail today; if it ever does, the SDK's default context is still sound.
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .unwrap_or_default();
    let client = Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    #[cfg(feature = "test-support")]
    let client = super::observe::wrap(client);
    client
}

/// Loads the AWS configuration once, with one [`https_client`] for every SDK client made from
/// it. For [`Target::Local`] without credentials in the environment, dummy credentials are
/// used: the local stand-ins accept any. For [`Target::Aws`], the Region and credentials come
/// straight from the environment when it has them (always, in Lambda), and from the default
/// chains otherwise.
pub async fn sdk_config(target: Target) -> SdkConfig {
    let local = target == Target::Local;
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).http_client(https_client(target));
    loader = if local {
        // Never ask instance metadata for a region on a laptop: it only times out.
        loader.region(
            RegionProviderChain::first_try(
                aws_config::environment::EnvironmentVariableRegionProvider::new(),
            )
            .or_else("us-east-1"),
        )
    } else if let Some(region) = env_value("AWS_REGION") {
        // Lambda always sets the Region and the role's credentials in the environment, where the
        // default chains look first: take them from there without building those chains
        // (profile files, web identity, ECS, instance metadata), a third of a millisecond.
        loader.region(aws_config::Region::new(region))
    } else {
        loader.region(RegionProviderChain::default_provider().or_else("us-east-1"))
    };
    if !local
        && env_value("AWS_ACCESS_KEY_ID").is_some()
        && env_value("AWS_SECRET_ACCESS_KEY").is_some()
    {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    if local && env_value("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            "local",
            "local",
            None,
            None,
            "marquee-local",
        ));
    }
    loader.load().await
}

/// A variable's value, when it is set and not empty.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The DynamoDB store for `table`, at `endpoint` (DynamoDB Local) when given.
#[must_use]
pub fn dynamo_store(sdk: &SdkConfig, table: &str, endpoint: Option<&str>) -> DynamoStore {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(builder.build()), table)
}

/// The account's posting budget of `rate` posts/s, kept in `store`'s table ([`Unlimited`] for
/// 0).
///
/// [`Unlimited`]: crate::budget::Unlimited
#[must_use]
pub fn table_budget(store: &DynamoStore, rate: u32) -> SharedBudget {
    match Plan::new(rate) {
        Some(plan) => std::sync::Arc::new(DynamoBudget::new(
            store.client().clone(),
            store.table(),
            plan,
        )),
        None => crate::budget::unlimited(),
    }
}

/// The SQS queue at `url`, through `endpoint` (a local SQS-compatible server) when given.
#[cfg(feature = "sqs")]
#[must_use]
pub fn sqs_queue(sdk: &SdkConfig, url: &str, endpoint: Option<&str>) -> SqsQueue {
    let mut builder = aws_sdk_sqs::config::Builder::from(sdk);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    SqsQueue::new(aws_sdk_sqs::Client::from_conf(builder.build()), url)
}

/// `FanoutCompleted`'s EventBridge bus, as `REPORT_EVENT_BUS`, `EVENT_SOURCE` and
/// `EVENTS_ENDPOINT` say.
#[cfg(feature = "events")]
#[must_use]
pub fn eventbridge(sdk: &SdkConfig, config: &Config) -> SharedEvents {
    std::sync::Arc::new(crate::report::eventbridge::EventBridgeEvents::new(
        sdk,
        &config.reports.bus,
        &config.reports.source,
        config.events_endpoint.as_deref(),
    ))
}

/// Configuration, AWS configuration and store: what every function starts with.
async fn boot(function: Function) -> Result<(Config, SdkConfig, DynamoStore), BootError> {
    let config = Config::from_env(function)?;
    let target = if config.dynamodb_endpoint.is_some() {
        Target::Local
    } else {
        Target::Aws
    };
    let sdk = sdk_config(target).await;
    let store = dynamo_store(
        &sdk,
        &config.table_name,
        config.dynamodb_endpoint.as_deref(),
    );
    Ok((config, sdk, store))
}

#[cfg(all(feature = "secrets", feature = "oidc"))]
impl ConnectDeps<DynamoStore> {
    /// Builds from the environment (see the README's table); in AWS, reads the token secret;
    /// with `OIDC_ISSUER`, fetches the provider's keys (a failed fetch does not fail the cold
    /// start, see [`Keyring::with_provider`]).
    ///
    /// # Errors
    /// [`BootError`]: the cold start fails.
    pub async fn from_env() -> Result<Self, BootError> {
        let (config, sdk, store) = boot(Function::Connect).await?;
        // The cold start's read, under the function's role like the handler's renewals.
        let verifier = Function::Connect
            .run(super::secrets::keyring(&sdk, &config))
            .await?;
        let verifier = match &config.oidc {
            None => verifier,
            Some(provider) => {
                // Plain http:// only where the rest is local too (DynamoDB Local).
                let https_only = config.dynamodb_endpoint.is_none();
                let keys =
                    super::jwks::HttpJwks::new(provider, config.oidc_fetch_timeout, https_only)
                        .map_err(BootError::TrustStore)?;
                verifier.with_provider(provider.clone(), keys).await
            }
        };
        Ok(Self::new(&config, store, verifier))
    }
}

#[cfg(feature = "management")]
impl DisconnectDeps<DynamoStore, ManagementPush> {
    /// Builds from the environment; `WEBSOCKET_ENDPOINT` is required.
    ///
    /// # Errors
    /// [`BootError`]: the cold start fails.
    pub async fn from_env() -> Result<Self, BootError> {
        let (config, sdk, store) = boot(Function::Disconnect).await?;
        let push = ManagementPush::new(&sdk, config.require_websocket_endpoint()?);
        Ok(Self::new(&config, store, push))
    }
}

/// What every poster of fan-out frames (the `subscribe` function's routes, `notify`,
/// `deliver`) starts with: its configuration, and the fan-out's deps built from the
/// environment for `function`. `WEBSOCKET_ENDPOINT` and `WORK_QUEUE_URL` are required.
#[cfg(all(feature = "management", feature = "sqs", feature = "events"))]
async fn posting(
    function: Function,
) -> Result<(Config, FanoutDeps<DynamoStore, ManagementPush, SqsQueue>), BootError> {
    let (config, sdk, store) = boot(function).await?;
    let push = ManagementPush::new(&sdk, config.require_websocket_endpoint()?);
    let queue = sqs_queue(
        &sdk,
        config.require_work_queue_url()?,
        config.sqs_endpoint.as_deref(),
    )
    .with_rooms(config.rooms_queue_url.as_deref());
    let budget = table_budget(&store, config.fanout.budget);
    let events = eventbridge(&sdk, &config);
    let deps = FanoutDeps::new(&config, store, push, queue, budget, events);
    Ok((config, deps))
}

#[cfg(all(feature = "management", feature = "sqs", feature = "events"))]
impl SubscribeDeps<DynamoStore, ManagementPush, SqsQueue> {
    /// Builds from the environment; `WEBSOCKET_ENDPOINT` and `WORK_QUEUE_URL` are required.
    ///
    /// # Errors
    /// [`BootError`]: the cold start fails.
    pub async fn from_env() -> Result<Self, BootError> {
        let (config, posting) = posting(Function::Subscribe).await?;
        Ok(Self {
            posting,
            settings: SubscribeSettings::from(&config),
        })
    }
}

#[cfg(all(feature = "management", feature = "sqs", feature = "events"))]
impl FanoutDeps<DynamoStore, ManagementPush, SqsQueue> {
    /// Builds from the environment for `function` ([`Function::Notify`] or
    /// [`Function::Deliver`]); `WEBSOCKET_ENDPOINT` and `WORK_QUEUE_URL` are required.
    ///
    /// # Errors
    /// [`BootError`]: the cold start fails.
    pub async fn from_env(function: Function) -> Result<Self, BootError> {
        Ok(posting(function).await?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_roots_are_the_five_amazon_trust_services_roots() {
        let pem = String::from_utf8_lossy(AMAZON_ROOTS);
        let names: Vec<&str> = pem.lines().filter_map(|l| l.strip_prefix("# ")).collect();
        assert_eq!(
            names,
            [
                "Amazon Root CA 1",
                "Amazon Root CA 2",
                "Amazon Root CA 3",
                "Amazon Root CA 4",
                "Starfield Services Root Certificate Authority - G2",
            ]
        );
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
    }

    #[tokio::test]
    async fn an_sdk_client_builds_on_the_shared_client_with_the_built_in_roots() {
        // Building an SDK client builds a connector, which parses every root and panics on a
        // certificate it cannot read.
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .http_client(https_client(Target::Aws))
            .build();
        let store = dynamo_store(&sdk, "marquee", None);
        assert_eq!(store.table(), "marquee");
    }
}
