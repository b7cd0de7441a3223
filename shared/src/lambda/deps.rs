//! What each function builds once per cold start, and how it is built from the environment.

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, SdkConfig};

use super::keyring::Keyring;
use crate::auth::{Secret, TokenVerifier, WeakSecret};
use crate::config::{Config, ConfigError, FanoutSettings, SecretSource};
use crate::push::management::ManagementPush;
use crate::queue::sqs::SqsQueue;
use crate::routes::messages::MessageSettings;
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

/// What the message routes need: a room message goes out like a notification, so they
/// have the fan-out's ports too.
#[derive(Debug)]
pub struct MessageDeps<S, P, Q> {
    /// Where subscriptions are recorded.
    pub store: S,
    /// Replies (and catch-up, presence and room frames) go out through it.
    pub push: P,
    /// A large room's messages go on it.
    pub queue: Q,
    /// The cap, the connection lifetime, the catch-up limit and the publish rate.
    pub settings: MessageSettings,
    /// Fan-out tunables, for room messages.
    pub fanout: FanoutSettings,
}

impl<S, P, Q> MessageDeps<S, P, Q> {
    /// The ports and limits a room message's fan-out takes.
    #[must_use]
    pub fn ports(&self) -> crate::routes::fanout::Ports<'_, S, P, Q> {
        crate::routes::fanout::Ports {
            store: &self.store,
            push: &self.push,
            queue: &self.queue,
            settings: &self.fanout,
        }
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
}

/// What `notify` needs.
pub type NotifyDeps<S, P, Q> = FanoutDeps<S, P, Q>;
/// What `deliver` needs.
pub type DeliverDeps<S, P, Q> = FanoutDeps<S, P, Q>;

impl<S, P, Q> FanoutDeps<S, P, Q> {
    /// The ports and limits the route logic takes.
    #[must_use]
    pub fn ports(&self) -> crate::routes::fanout::Ports<'_, S, P, Q> {
        crate::routes::fanout::Ports {
            store: &self.store,
            push: &self.push,
            queue: &self.queue,
            settings: &self.fanout,
        }
    }
}

/// A cold start that cannot succeed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Bad or missing configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Neither `TOKEN_SECRET` nor `TOKEN_SECRET_ARN` is set.
    #[error("TOKEN_SECRET_ARN (or TOKEN_SECRET locally) must be set")]
    NoSecret,
    /// Secrets Manager did not give the secret.
    #[error("could not read the token secret from Secrets Manager")]
    SecretsManager(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The secret is too short.
    #[error(transparent)]
    WeakSecret(#[from] WeakSecret),
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

/// Loads the AWS configuration once. For [`Target::Local`] without credentials in the
/// environment, dummy credentials are used: the local stand-ins accept any.
pub async fn sdk_config(target: Target) -> SdkConfig {
    let local = target == Target::Local;
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    loader = if local {
        // Never ask instance metadata for a region on a laptop: it only times out.
        loader.region(
            RegionProviderChain::first_try(
                aws_config::environment::EnvironmentVariableRegionProvider::new(),
            )
            .or_else("us-east-1"),
        )
    } else {
        loader.region(RegionProviderChain::default_provider().or_else("us-east-1"))
    };
    if local && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
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

/// The DynamoDB store for `table`, at `endpoint` (DynamoDB Local) when given.
#[must_use]
pub fn dynamo_store(sdk: &SdkConfig, table: &str, endpoint: Option<&str>) -> DynamoStore {
    let mut builder = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(builder.build()), table)
}

/// The SQS queue at `url`, through `endpoint` (a local SQS-compatible server) when given.
#[must_use]
pub fn sqs_queue(sdk: &SdkConfig, url: &str, endpoint: Option<&str>) -> SqsQueue {
    let mut builder = aws_sdk_sqs::config::Builder::from(sdk);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    SqsQueue::new(aws_sdk_sqs::Client::from_conf(builder.build()), url)
}

/// Configuration, AWS configuration and store: what every function starts with.
async fn boot() -> Result<(Config, SdkConfig, DynamoStore), BootError> {
    let config = Config::from_env()?;
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

/// Reads a Secrets Manager secret's current version and, when there is one, its previous
/// version (`AWSPREVIOUS`, left by a rotation).
///
/// # Errors
/// [`BootError`] when the current version cannot be read or is not a usable key.
pub(crate) async fn read_secrets(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<(Secret, Option<Secret>), BootError> {
    let read = |stage: &'static str| {
        client
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(stage)
            .send()
    };
    let bytes =
        |out: &aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput| {
            out.secret_string()
                .map(|s| s.as_bytes().to_vec())
                .or_else(|| out.secret_binary().map(|b| b.as_ref().to_vec()))
        };
    let current = read("AWSCURRENT")
        .await
        .map_err(|e| BootError::SecretsManager(Box::new(e)))?;
    let current = Secret::new(bytes(&current).ok_or(BootError::NoSecret)?)?;
    // No previous version (never rotated) is normal; any other failure only costs the grace.
    let previous = match read("AWSPREVIOUS").await {
        Ok(out) => bytes(&out).and_then(|b| Secret::new(b).ok()),
        Err(err) => {
            if !err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception())
            {
                tracing::warn!(
                    error = &err as &dyn std::error::Error,
                    "could not read the previous token secret"
                );
            }
            None
        }
    };
    Ok((current, previous))
}

/// The verifier `$connect` starts with: the inline secret locally, or the secret's current and
/// previous versions from Secrets Manager in AWS (renewable, see [`Keyring`]).
///
/// # Errors
/// [`BootError`] when there is no secret or it cannot be read.
pub async fn keyring(sdk: &SdkConfig, config: &Config) -> Result<Keyring, BootError> {
    let audience = &config.token_audience;
    match config.token_secret.as_ref().ok_or(BootError::NoSecret)? {
        SecretSource::Inline(secret) => {
            Ok(TokenVerifier::new(&Secret::new(secret.as_bytes())?, audience).into())
        }
        SecretSource::SecretsManager(arn) => {
            let client = aws_sdk_secretsmanager::Client::new(sdk);
            Keyring::from_secrets_manager(client, arn, audience).await
        }
    }
}

impl ConnectDeps<DynamoStore> {
    /// Builds from the environment (see the README's table).
    ///
    /// # Errors
    /// [`BootError`]: the cold start fails.
    pub async fn from_env() -> Result<Self, BootError> {
        let (config, sdk, store) = boot().await?;
        Ok(Self {
            verifier: keyring(&sdk, &config).await?,
            store,
            ttl_seconds: config.connection_ttl_seconds,
            max_subscriptions: config.max_subscriptions,
        })
    }
}

impl DisconnectDeps<DynamoStore, ManagementPush> {
    /// Builds from the environment; `WEBSOCKET_ENDPOINT` is required.
    ///
    /// # Errors
    /// [`BootError`]: the cold start fails.
    pub async fn from_env() -> Result<Self, BootError> {
        let (config, sdk, store) = boot().await?;
        Ok(Self {
            push: ManagementPush::new(&sdk, config.require_websocket_endpoint()?),
            store,
            presence_max: config.fanout.presence_max,
        })
    }
}

impl MessageDeps<DynamoStore, ManagementPush, SqsQueue> {
    /// Builds from the environment; `WEBSOCKET_ENDPOINT` and `WORK_QUEUE_URL` are required.
    ///
    /// # Errors
    /// [`BootError`]: the cold start fails.
    pub async fn from_env() -> Result<Self, BootError> {
        let (config, sdk, store) = boot().await?;
        Ok(Self {
            push: ManagementPush::new(&sdk, config.require_websocket_endpoint()?),
            queue: sqs_queue(
                &sdk,
                config.require_work_queue_url()?,
                config.sqs_endpoint.as_deref(),
            ),
            store,
            settings: MessageSettings::from(&config),
            fanout: config.fanout,
        })
    }
}

impl FanoutDeps<DynamoStore, ManagementPush, SqsQueue> {
    /// Builds from the environment (for `notify` and `deliver`); `WEBSOCKET_ENDPOINT` and
    /// `WORK_QUEUE_URL` are required.
    ///
    /// # Errors
    /// [`BootError`]: the cold start fails.
    pub async fn from_env() -> Result<Self, BootError> {
        let (config, sdk, store) = boot().await?;
        Ok(Self {
            push: ManagementPush::new(&sdk, config.require_websocket_endpoint()?),
            queue: sqs_queue(
                &sdk,
                config.require_work_queue_url()?,
                config.sqs_endpoint.as_deref(),
            ),
            store,
            fanout: config.fanout,
        })
    }
}
