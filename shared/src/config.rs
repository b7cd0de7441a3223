//! Configuration from the environment, read once per cold start. A bad value fails the cold
//! start with a message naming the variable, not every request.
//!
//! Every variable, with its default, is listed in the README.

use std::collections::HashMap;
use std::time::Duration;

use crate::function::Function;
use crate::oidc::{ClaimNames, DEFAULT_ALGORITHMS, ProviderConfig, parse_algorithm};
use crate::store::{RateLimit, Retention};

/// Default `TOKEN_AUDIENCE`.
pub const DEFAULT_AUDIENCE: &str = "marquee";
/// Default `OIDC_FETCH_TIMEOUT_MILLIS`: the time limit of one fetch of a provider's keys.
pub const DEFAULT_OIDC_FETCH_TIMEOUT_MILLIS: u64 = 2000;
/// Default `CONNECTION_TTL_SECONDS`: API Gateway's 2-hour connection limit plus 5 minutes.
pub const DEFAULT_CONNECTION_TTL_SECONDS: i64 = 2 * 60 * 60 + 5 * 60;
/// Default `MAX_SUBSCRIPTIONS` per connection.
pub const DEFAULT_MAX_SUBSCRIPTIONS: u32 = 50;
/// Default `MAX_CONNECTIONS_PER_USER`: live connections one `sub` may hold.
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: u32 = 5;
/// Default `REVOCATION_TTL_SECONDS`: how long a revocation refuses the user's older tokens. It
/// must cover the longest token lifetime (`exp - iat`) your issuer mints.
pub const DEFAULT_REVOCATION_TTL_SECONDS: i64 = 24 * 60 * 60;
/// Default `FANOUT_CONCURRENCY`: posts in flight at once during a notify.
pub const DEFAULT_FANOUT_CONCURRENCY: usize = 64;
/// Default `FANOUT_PAGE_SIZE`: index records examined per query page.
pub const DEFAULT_FANOUT_PAGE_SIZE: u32 = 1000;
/// Default `EVENT_DEDUP_TTL_SECONDS`: how long a processed event id is remembered (24 h,
/// EventBridge's longest retry window).
pub const DEFAULT_EVENT_DEDUP_TTL_SECONDS: i64 = 24 * 60 * 60;
/// Default `POST_MAX_ATTEMPTS`: tries per connection for a 429 or 5xx.
pub const DEFAULT_POST_MAX_ATTEMPTS: u32 = 4;
/// Default `RETRY_BASE_MILLIS`: first backoff ceiling; it doubles per attempt.
pub const DEFAULT_RETRY_BASE_MILLIS: u64 = 100;
/// Default `RETRY_BUDGET`: retries one invocation may spend across all its connections.
pub const DEFAULT_RETRY_BUDGET: u32 = 2000;
/// Default `INLINE_MAX_SUBSCRIBERS`: the largest audience `notify` posts to itself; larger ones
/// go to the queue, where up to 16 shards are worked side by side. Chosen by measurement
/// (`docs/decisions.md`, "Inline up to 500"): one 512 MB invocation posts about 1,450 fans/s
/// (probe included), the queue reaches the whole budget after its hop, and the two meet near
/// 500 fans.
pub const DEFAULT_INLINE_MAX_SUBSCRIBERS: usize = 500;
/// Default `FANOUT_BUDGET`: the account's posting budget, posts per second summed over every
/// poster of every event at once ([`crate::budget`]). API Gateway allows 10,000 requests/s per
/// account and Region, shared by every API and `@connections` call; this leaves half for
/// connects, messages and other APIs. `0` means no limit.
pub const DEFAULT_FANOUT_BUDGET: u32 = 5000;
/// Default `DELIVER_MAX_CONCURRENCY`: the work queue event source's `MaximumConcurrency`, the
/// most `deliver` invocations posting at once. While the budget cannot be reached, each paces
/// itself at `FANOUT_BUDGET` divided by this.
pub const DEFAULT_DELIVER_MAX_CONCURRENCY: u32 = 10;
/// The rooms queue event source's `MaximumConcurrency` (the template's
/// `RoomsDeliverConcurrency` default, and the local gateway's rooms workers): room messages
/// above the inline size never hold more `deliver` invocations than this, whatever their
/// backlog, so a sale's items always find the work queue's own.
pub const DEFAULT_ROOMS_DELIVER_MAX_CONCURRENCY: u32 = 2;
/// Default `HISTORY_WINDOW_SECONDS`: how long each notification is kept for catch-up (24 h).
pub const DEFAULT_HISTORY_WINDOW_SECONDS: i64 = 24 * 60 * 60;
/// Default `HISTORY_MAX_PER_ARTIST`: how many of an artist's latest notifications are kept.
pub const DEFAULT_HISTORY_MAX_PER_ARTIST: u32 = 100;
/// Default `MAX_CONNECTION_SECONDS`: API Gateway ends every WebSocket connection after 2 hours
/// (a fixed quota). Only the local gateway, with a shorter `--max-duration`, sets it.
pub const DEFAULT_MAX_CONNECTION_SECONDS: i64 = 2 * 60 * 60;
/// Default `PRESENCE_MAX_MEMBERS`: rooms of at most this many subscribers are told who
/// joins and leaves; above it only the count is kept.
pub const DEFAULT_PRESENCE_MAX_MEMBERS: u64 = 100;
/// Default `PUBLISH_RATE_PER_SECOND`: room messages one connection may publish per second.
pub const DEFAULT_PUBLISH_RATE_PER_SECOND: u32 = 10;
/// Default `PUBLISH_BURST`: room messages one connection may publish at once.
pub const DEFAULT_PUBLISH_BURST: u32 = 20;
/// Default `CONNECTION_POSTS_PER_SECOND`: posts one connection's frames may make the server
/// send a second (room messages by their room's size, catch-up replays, presence notices).
pub const DEFAULT_CONNECTION_POSTS_PER_SECOND: u32 = 100;
/// Default `CONNECTION_POSTS_BURST`: what one connection's frames may make the server post at
/// once (a full catch-up of 25 artists of 100 notifications each fits twice).
pub const DEFAULT_CONNECTION_POSTS_BURST: u32 = 5000;
/// Default `ROOM_POSTS_PER_SECOND`: posts the messages to one room may make a second (five
/// messages a second to a room of 100).
pub const DEFAULT_ROOM_POSTS_PER_SECOND: u32 = 500;
/// Default `ROOM_POSTS_BURST`: posts the messages to one room may make at once.
pub const DEFAULT_ROOM_POSTS_BURST: u32 = 2000;
/// How long a pending event claim is held when the invocation's deadline is unknown.
pub const DEFAULT_CLAIM_LEASE_SECONDS: i64 = 60;
/// No post starts when less than this is left before the invocation's deadline.
pub const DEFAULT_DEADLINE_RESERVE: Duration = Duration::from_secs(5);

/// What every function reads: the table, DynamoDB Local's URL, the log filter and the metrics
/// format (the last two outside [`Config`], by `telemetry` and `metrics`).
const COMMON: &[&str] = &[
    "TABLE_NAME",
    "DYNAMODB_ENDPOINT",
    "RUST_LOG",
    "METRICS_FORMAT",
];
/// The variables of [`Function::reads`] that are read outside [`Config`].
pub const OUTSIDE_CONFIG: &[&str] = &["RUST_LOG", "METRICS_FORMAT"];
/// The fan-out tunables ([`FanoutSettings`]): notify and deliver, and subscribe for a room's
/// messages, which go out like a notification.
const FANOUT: &[&str] = &[
    "FANOUT_CONCURRENCY",
    "FANOUT_PAGE_SIZE",
    "FANOUT_BUDGET",
    "DELIVER_MAX_CONCURRENCY",
    "INLINE_MAX_SUBSCRIBERS",
    "POST_MAX_ATTEMPTS",
    "RETRY_BASE_MILLIS",
    "RETRY_BUDGET",
    "EVENT_DEDUP_TTL_SECONDS",
    "HISTORY_WINDOW_SECONDS",
    "HISTORY_MAX_PER_ARTIST",
    "PRESENCE_MAX_MEMBERS",
];
/// An OpenID Connect provider's settings ([`ProviderConfig`]), read by `$connect`.
const OIDC: &[&str] = &[
    "OIDC_ISSUER",
    "OIDC_JWKS_URL",
    "OIDC_AUDIENCE",
    "OIDC_ALGORITHMS",
    "OIDC_CLAIM_ARTISTS",
    "OIDC_CLAIM_SUBSCRIBE",
    "OIDC_CLAIM_PUBLISH",
    "OIDC_FETCH_TIMEOUT_MILLIS",
];
/// What the posting functions read besides: the Management API, the work queue, and a local
/// SQS-compatible server.
const POSTING: &[&str] = &[
    "WEBSOCKET_ENDPOINT",
    "WORK_QUEUE_URL",
    "SQS_ENDPOINT",
    "REPORT_EVENT_BUS",
    "EVENT_SOURCE",
    "EVENTS_ENDPOINT",
];
/// Room messages' own work queue: read by those that send their items (subscribe, for a large
/// room's message; deliver, for an item's continuations and re-drives).
const ROOMS: &[&str] = &["ROOMS_QUEUE_URL"];

/// Variables for local runs only (DynamoDB Local, a local SQS server, the published dev
/// secret, the local gateway's shorter connection limit). The template declares them empty, so
/// that `sam local invoke --env-vars` can set them; a function running in AWS refuses any that
/// is not empty ([`Runtime::Aws`]).
pub const LOCAL_ONLY: &[&str] = &[
    "DYNAMODB_ENDPOINT",
    "SQS_ENDPOINT",
    "EVENTS_ENDPOINT",
    "TOKEN_SECRET",
    "MAX_CONNECTION_SECONDS",
];

/// The documented, local-only token secret (`TOKEN_SECRET` for local runs): `events/` tokens,
/// `marquee-local token`, the local gateway, `local.env` and `sam-local.env.json` use it. Never
/// use it in AWS (there the secret lives in Secrets Manager, and a function in AWS refuses a
/// `TOKEN_SECRET`).
pub const DEV_TOKEN_SECRET: &str = "marquee-local-dev-secret-not-for-aws";

/// What each function reads: the list is here, beside the reading, and nowhere else.
impl Function {
    /// Every variable the function reads, defined here once: the function's
    /// [`Config::for_function`] sees only these, and `template.yaml` declares exactly these
    /// for it.
    #[must_use]
    pub fn reads(self) -> Vec<&'static str> {
        let own: &[&[&str]] = match self {
            Self::Connect => &[
                &[
                    "TOKEN_SECRET",
                    "TOKEN_SECRET_ARN",
                    "TOKEN_AUDIENCE",
                    "CONNECTION_TTL_SECONDS",
                    "MAX_SUBSCRIPTIONS",
                    "MAX_CONNECTIONS_PER_USER",
                ],
                OIDC,
            ],
            Self::Disconnect => &[&["WEBSOCKET_ENDPOINT", "PRESENCE_MAX_MEMBERS"]],
            Self::Subscribe => &[
                POSTING,
                FANOUT,
                &[
                    "MAX_SUBSCRIPTIONS",
                    "MAX_CONNECTION_SECONDS",
                    "PUBLISH_RATE_PER_SECOND",
                    "PUBLISH_BURST",
                    "CONNECTION_POSTS_PER_SECOND",
                    "CONNECTION_POSTS_BURST",
                    "ROOM_POSTS_PER_SECOND",
                    "ROOM_POSTS_BURST",
                ],
                ROOMS,
            ],
            Self::Notify => &[POSTING, FANOUT, &["REVOCATION_TTL_SECONDS"]],
            Self::Deliver => &[POSTING, FANOUT, ROOMS],
        };
        COMMON
            .iter()
            .chain(own.iter().flat_map(|part| part.iter()))
            .copied()
            .collect()
    }
}

/// Lambda's initialization type: set by Lambda in every execution environment, reserved (no
/// function configuration can set it), imitated by SAM's emulator.
const INITIALIZATION_TYPE: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";
/// `true` under SAM's emulator, which always sets it.
const SAM_LOCAL: &str = "AWS_SAM_LOCAL";
/// The variables every function reads that the platform sets, never the template ([`Runtime`]):
/// the README lists them beside [`Function::reads`]' (a test compares).
pub const PLATFORM: &[&str] = &[INITIALIZATION_TYPE, SAM_LOCAL];

/// Where a function runs, as its environment tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// AWS Lambda: `AWS_LAMBDA_INITIALIZATION_TYPE` is set (Lambda sets it in every execution
    /// environment, and it is reserved: no function configuration can set it) and
    /// `AWS_SAM_LOCAL` is not `true`. Local-only variables are refused.
    Aws,
    /// SAM's emulator (`sam local invoke`, `sam local start-lambda`): it sets
    /// `AWS_SAM_LOCAL=true`, and imitates `AWS_LAMBDA_INITIALIZATION_TYPE`.
    SamLocal,
    /// Anything else: `cargo lambda watch`, the local gateway, the tests.
    Local,
}

impl Runtime {
    /// Tells the runtime from the variables; see `docs/decisions.md`.
    #[must_use]
    pub fn detect(vars: &HashMap<String, String>) -> Self {
        let set = |name: &str| vars.get(name).is_some_and(|v| !v.trim().is_empty());
        if vars.get(SAM_LOCAL).is_some_and(|v| v.trim() == "true") {
            Self::SamLocal
        } else if set(INITIALIZATION_TYPE) {
            Self::Aws
        } else {
            Self::Local
        }
    }
}

/// A variable was missing or unparsable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// A variable for local runs only is set in AWS Lambda.
    #[error(
        "{0} is for local runs only (DynamoDB Local, a local SQS server, the dev secret, the local gateway) and must be empty in AWS Lambda"
    )]
    LocalOnlyInAws(&'static str),
    /// A variable could not be parsed.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// Where the token secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `TOKEN_SECRET`: the secret itself, for local development only.
    Inline(String),
    /// `TOKEN_SECRET_ARN`: a Secrets Manager secret, read once per cold start.
    SecretsManager(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::SecretsManager(arn) => f.debug_tuple("SecretsManager").field(arn).finish(),
        }
    }
}

/// Fan-out tunables for `notify` and `deliver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutSettings {
    /// The largest audience `notify` posts to inline.
    pub inline_max: usize,
    /// The account's posting budget (`FANOUT_BUDGET`), posts per second over every poster
    /// ([`crate::budget`]); 0 for none.
    pub budget: u32,
    /// The pace one invocation keeps while the budget cannot be reached
    /// (`FANOUT_BUDGET / DELIVER_MAX_CONCURRENCY`); `None` for no limit.
    pub rate_per_invocation: Option<u32>,
    /// No post starts when less than this is left before the deadline.
    pub deadline_reserve: Duration,
    /// How long a pending claim is held when the deadline is unknown.
    pub claim_lease_seconds: i64,
    /// Posts in flight at once.
    pub concurrency: usize,
    /// Index records examined per query page.
    pub page_size: u32,
    /// Tries per connection for retryable failures (1 = no retry).
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per attempt (full jitter below it).
    pub retry_base: Duration,
    /// Longest single backoff.
    pub retry_cap: Duration,
    /// Retries one event may spend in all.
    pub retry_budget: u32,
    /// How long a processed event id (and its sequence number) is remembered.
    pub dedup_ttl_seconds: i64,
    /// How much of each artist's history `notify` keeps and `subscribe` replays.
    pub history: Retention,
    /// Rooms of at most this many subscribers get `joined` and `left`.
    pub presence_max: u64,
    /// How long a revocation refuses the user's older tokens (`REVOCATION_TTL_SECONDS`; read
    /// by `notify`, which records revocations).
    pub revocation_ttl_seconds: i64,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        Self {
            inline_max: DEFAULT_INLINE_MAX_SUBSCRIBERS,
            budget: DEFAULT_FANOUT_BUDGET,
            rate_per_invocation: Some(DEFAULT_FANOUT_BUDGET / DEFAULT_DELIVER_MAX_CONCURRENCY),
            deadline_reserve: DEFAULT_DEADLINE_RESERVE,
            claim_lease_seconds: DEFAULT_CLAIM_LEASE_SECONDS,
            concurrency: DEFAULT_FANOUT_CONCURRENCY,
            page_size: DEFAULT_FANOUT_PAGE_SIZE,
            max_attempts: DEFAULT_POST_MAX_ATTEMPTS,
            retry_base: Duration::from_millis(DEFAULT_RETRY_BASE_MILLIS),
            retry_cap: Duration::from_secs(2),
            retry_budget: DEFAULT_RETRY_BUDGET,
            dedup_ttl_seconds: DEFAULT_EVENT_DEDUP_TTL_SECONDS,
            history: Retention {
                window_seconds: DEFAULT_HISTORY_WINDOW_SECONDS,
                max_per_artist: DEFAULT_HISTORY_MAX_PER_ARTIST,
            },
            presence_max: DEFAULT_PRESENCE_MAX_MEMBERS,
            revocation_ttl_seconds: DEFAULT_REVOCATION_TTL_SECONDS,
        }
    }
}

/// What the server may post on behalf of a connection's frames, and of a room's messages:
/// buckets counted in posts ([`crate::store::Bucket::Posts`], [`crate::store::Bucket::Room`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostLimits {
    /// Per connection (`CONNECTION_POSTS_PER_SECOND`, `CONNECTION_POSTS_BURST`).
    pub connection: RateLimit,
    /// Per room (`ROOM_POSTS_PER_SECOND`, `ROOM_POSTS_BURST`).
    pub room: RateLimit,
}

impl Default for PostLimits {
    fn default() -> Self {
        Self {
            connection: RateLimit {
                per_second: DEFAULT_CONNECTION_POSTS_PER_SECOND,
                burst: DEFAULT_CONNECTION_POSTS_BURST,
            },
            room: RateLimit {
                per_second: DEFAULT_ROOM_POSTS_PER_SECOND,
                burst: DEFAULT_ROOM_POSTS_BURST,
            },
        }
    }
}

/// Everything the functions read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `TABLE_NAME` (required).
    pub table_name: String,
    /// `DYNAMODB_ENDPOINT`: DynamoDB Local's URL; unset in AWS.
    pub dynamodb_endpoint: Option<String>,
    /// `WORK_QUEUE_URL`: the fan-out work queue (required by `notify` and `deliver`).
    pub work_queue_url: Option<String>,
    /// `ROOMS_QUEUE_URL`: room messages' own work queue (subscribe and deliver); unset or
    /// empty, their items share the work queue.
    pub rooms_queue_url: Option<String>,
    /// `SQS_ENDPOINT`: a local SQS-compatible server's URL; unset in AWS.
    pub sqs_endpoint: Option<String>,
    /// `WEBSOCKET_ENDPOINT`: the Management API endpoint (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`).
    pub websocket_endpoint: Option<String>,
    /// `TOKEN_SECRET` or `TOKEN_SECRET_ARN`; only `$connect` needs one.
    pub token_secret: Option<SecretSource>,
    /// `TOKEN_AUDIENCE`.
    pub token_audience: String,
    /// `OIDC_*`: the OpenID Connect provider whose tokens `$connect` accepts too, if any.
    pub oidc: Option<ProviderConfig>,
    /// `OIDC_FETCH_TIMEOUT_MILLIS`: the time limit of one fetch of the provider's keys.
    pub oidc_fetch_timeout: Duration,
    /// `CONNECTION_TTL_SECONDS`.
    pub connection_ttl_seconds: i64,
    /// `MAX_SUBSCRIPTIONS`.
    pub max_subscriptions: u32,
    /// `MAX_CONNECTIONS_PER_USER`.
    pub max_connections_per_user: u32,
    /// `MAX_CONNECTION_SECONDS`: how long the gateway keeps a connection open at most.
    pub max_connection_seconds: i64,
    /// `PUBLISH_RATE_PER_SECOND` and `PUBLISH_BURST`: each connection's room message limit.
    pub publish_rate: RateLimit,
    /// `CONNECTION_POSTS_*` and `ROOM_POSTS_*`: what a connection's frames, and the messages
    /// to a room, may make the server post.
    pub post_limits: PostLimits,
    /// Fan-out tunables.
    pub fanout: FanoutSettings,
    /// `REPORT_EVENT_BUS` and `EVENT_SOURCE`: where `FanoutCompleted` goes, and as what.
    pub reports: ReportTarget,
    /// `EVENTS_ENDPOINT`: a local EventBridge stand-in's URL; unset in AWS.
    pub events_endpoint: Option<String>,
}

/// Where `FanoutCompleted` is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTarget {
    /// `REPORT_EVENT_BUS`: a bus name or ARN (`default`, the account's default bus, unless set).
    pub bus: String,
    /// `EVENT_SOURCE`: the on-sale events' `source`, which `FanoutCompleted` carries too.
    pub source: String,
}

impl Default for ReportTarget {
    fn default() -> Self {
        Self {
            bus: "default".into(),
            source: crate::report::DEFAULT_EVENT_SOURCE.into(),
        }
    }
}

/// A bus name (`[/.\-_A-Za-z0-9]`, 1 to 256 characters) or an event bus ARN, as PutEvents
/// takes `EventBusName`.
fn bus_name(value: String) -> Result<String, ConfigError> {
    let name_ok = |name: &str| {
        (1..=256).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/.-_".contains(&b))
    };
    let arn_ok = value.starts_with("arn:")
        && value.contains(":events:")
        && value
            .split_once(":event-bus/")
            .is_some_and(|(_, name)| name_ok(name));
    if name_ok(&value) || arn_ok {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name: "REPORT_EVENT_BUS",
            reason: "an event bus name ([/.-_A-Za-z0-9], at most 256 characters) or ARN".into(),
        })
    }
}

/// An event `source`: 1 to 256 printable ASCII characters, not `aws.` (reserved by AWS).
fn event_source(value: String) -> Result<String, ConfigError> {
    let printable = value.bytes().all(|b| b.is_ascii_graphic());
    if (1..=256).contains(&value.len()) && printable && !value.starts_with("aws.") {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name: "EVENT_SOURCE",
            reason: "1 to 256 printable characters, not starting with aws.".into(),
        })
    }
}

impl Config {
    /// Every setting at its default, for `table_name`: what [`Config::from_vars`] reads from
    /// `TABLE_NAME` alone. The local gateway starts from it, and tests and the benchmark set
    /// the few fields they change on it.
    #[must_use]
    pub fn new(table_name: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            dynamodb_endpoint: None,
            work_queue_url: None,
            rooms_queue_url: None,
            sqs_endpoint: None,
            websocket_endpoint: None,
            token_secret: None,
            token_audience: DEFAULT_AUDIENCE.into(),
            oidc: None,
            oidc_fetch_timeout: Duration::from_millis(DEFAULT_OIDC_FETCH_TIMEOUT_MILLIS),
            connection_ttl_seconds: DEFAULT_CONNECTION_TTL_SECONDS,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
            max_connection_seconds: DEFAULT_MAX_CONNECTION_SECONDS,
            publish_rate: RateLimit {
                per_second: DEFAULT_PUBLISH_RATE_PER_SECOND,
                burst: DEFAULT_PUBLISH_BURST,
            },
            post_limits: PostLimits::default(),
            fanout: FanoutSettings::default(),
            reports: ReportTarget::default(),
            events_endpoint: None,
        }
    }

    /// Reads what `function` reads ([`Function::reads`]) from the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first bad variable, or a local-only one set in AWS.
    pub fn from_env(function: Function) -> Result<Self, ConfigError> {
        Self::for_function(function, &std::env::vars().collect())
    }

    /// Reads `function`'s configuration from `vars`: only the variables it reads
    /// ([`Function::reads`]), an empty value as unset, and, in AWS ([`Runtime::detect`]), none of
    /// the [`LOCAL_ONLY`] ones set.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first bad variable, or a local-only one set in AWS.
    pub fn for_function(
        function: Function,
        vars: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let reads = function.reads();
        if Runtime::detect(vars) == Runtime::Aws
            && let Some(name) = LOCAL_ONLY
                .iter()
                .find(|name| vars.get(**name).is_some_and(|v| !v.trim().is_empty()))
        {
            return Err(ConfigError::LocalOnlyInAws(name));
        }
        let visible = vars
            .iter()
            .filter(|(name, _)| reads.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Self::from_vars(&visible)
    }

    /// Reads configuration from a map of variables (the environment, or a test's map).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first bad variable.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let token_secret = match (get("TOKEN_SECRET"), get("TOKEN_SECRET_ARN")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "TOKEN_SECRET",
                    reason: "set TOKEN_SECRET or TOKEN_SECRET_ARN, not both".into(),
                });
            }
            (Some(secret), None) => Some(SecretSource::Inline(secret)),
            (None, Some(arn)) => Some(SecretSource::SecretsManager(arn)),
            (None, None) => None,
        };
        let defaults = FanoutSettings::default();
        let budget: u32 = number(&get, "FANOUT_BUDGET", DEFAULT_FANOUT_BUDGET, 0..=1_000_000)?;
        let invocations: u32 = number(
            &get,
            "DELIVER_MAX_CONCURRENCY",
            DEFAULT_DELIVER_MAX_CONCURRENCY,
            1..=1000,
        )?;
        let fanout = FanoutSettings {
            inline_max: number(
                &get,
                "INLINE_MAX_SUBSCRIBERS",
                defaults.inline_max,
                0..=100_000,
            )?,
            budget,
            // At least one post a second per invocation, however the two are combined.
            rate_per_invocation: (budget > 0).then(|| (budget / invocations).max(1)),
            concurrency: number(&get, "FANOUT_CONCURRENCY", defaults.concurrency, 1..=1024)?,
            page_size: number(&get, "FANOUT_PAGE_SIZE", defaults.page_size, 1..=10_000)?,
            max_attempts: number(&get, "POST_MAX_ATTEMPTS", defaults.max_attempts, 1..=10)?,
            retry_base: Duration::from_millis(number(
                &get,
                "RETRY_BASE_MILLIS",
                DEFAULT_RETRY_BASE_MILLIS,
                1..=10_000,
            )?),
            retry_budget: number(&get, "RETRY_BUDGET", defaults.retry_budget, 0..=1_000_000)?,
            dedup_ttl_seconds: number(
                &get,
                "EVENT_DEDUP_TTL_SECONDS",
                defaults.dedup_ttl_seconds,
                60..=30 * 24 * 60 * 60,
            )?,
            history: Retention {
                window_seconds: number(
                    &get,
                    "HISTORY_WINDOW_SECONDS",
                    DEFAULT_HISTORY_WINDOW_SECONDS,
                    60..=30 * 24 * 60 * 60,
                )?,
                max_per_artist: number(
                    &get,
                    "HISTORY_MAX_PER_ARTIST",
                    DEFAULT_HISTORY_MAX_PER_ARTIST,
                    1..=10_000,
                )?,
            },
            presence_max: number(
                &get,
                "PRESENCE_MAX_MEMBERS",
                DEFAULT_PRESENCE_MAX_MEMBERS,
                0..=1000,
            )?,
            revocation_ttl_seconds: number(
                &get,
                "REVOCATION_TTL_SECONDS",
                DEFAULT_REVOCATION_TTL_SECONDS,
                60..=30 * 24 * 60 * 60,
            )?,
            ..defaults
        };
        Ok(Self {
            table_name: get("TABLE_NAME").ok_or(ConfigError::Missing("TABLE_NAME"))?,
            dynamodb_endpoint: get("DYNAMODB_ENDPOINT"),
            websocket_endpoint: get("WEBSOCKET_ENDPOINT"),
            work_queue_url: get("WORK_QUEUE_URL"),
            rooms_queue_url: get("ROOMS_QUEUE_URL"),
            sqs_endpoint: get("SQS_ENDPOINT"),
            reports: ReportTarget {
                bus: get("REPORT_EVENT_BUS").map_or_else(|| Ok("default".into()), bus_name)?,
                source: get("EVENT_SOURCE").map_or_else(
                    || Ok(crate::report::DEFAULT_EVENT_SOURCE.into()),
                    event_source,
                )?,
            },
            events_endpoint: get("EVENTS_ENDPOINT"),
            token_secret,
            token_audience: get("TOKEN_AUDIENCE").unwrap_or_else(|| DEFAULT_AUDIENCE.into()),
            oidc: provider(&get)?,
            oidc_fetch_timeout: Duration::from_millis(number(
                &get,
                "OIDC_FETCH_TIMEOUT_MILLIS",
                DEFAULT_OIDC_FETCH_TIMEOUT_MILLIS,
                100..=10_000,
            )?),
            connection_ttl_seconds: number(
                &get,
                "CONNECTION_TTL_SECONDS",
                DEFAULT_CONNECTION_TTL_SECONDS,
                60..=7 * 24 * 60 * 60,
            )?,
            max_subscriptions: number(
                &get,
                "MAX_SUBSCRIPTIONS",
                DEFAULT_MAX_SUBSCRIPTIONS,
                1..=10_000,
            )?,
            max_connections_per_user: number(
                &get,
                "MAX_CONNECTIONS_PER_USER",
                DEFAULT_MAX_CONNECTIONS_PER_USER,
                1..=1000,
            )?,
            max_connection_seconds: number(
                &get,
                "MAX_CONNECTION_SECONDS",
                DEFAULT_MAX_CONNECTION_SECONDS,
                1..=DEFAULT_MAX_CONNECTION_SECONDS,
            )?,
            publish_rate: RateLimit {
                per_second: number(
                    &get,
                    "PUBLISH_RATE_PER_SECOND",
                    DEFAULT_PUBLISH_RATE_PER_SECOND,
                    1..=1000,
                )?,
                burst: number(&get, "PUBLISH_BURST", DEFAULT_PUBLISH_BURST, 1..=1000)?,
            },
            post_limits: PostLimits {
                connection: RateLimit {
                    per_second: number(
                        &get,
                        "CONNECTION_POSTS_PER_SECOND",
                        DEFAULT_CONNECTION_POSTS_PER_SECOND,
                        1..=100_000,
                    )?,
                    burst: number(
                        &get,
                        "CONNECTION_POSTS_BURST",
                        DEFAULT_CONNECTION_POSTS_BURST,
                        1..=1_000_000,
                    )?,
                },
                room: RateLimit {
                    per_second: number(
                        &get,
                        "ROOM_POSTS_PER_SECOND",
                        DEFAULT_ROOM_POSTS_PER_SECOND,
                        1..=100_000,
                    )?,
                    burst: number(
                        &get,
                        "ROOM_POSTS_BURST",
                        DEFAULT_ROOM_POSTS_BURST,
                        1..=1_000_000,
                    )?,
                },
            },
            fanout,
        })
    }

    /// `WORK_QUEUE_URL`, required by the functions that send work items.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when unset.
    pub fn require_work_queue_url(&self) -> Result<&str, ConfigError> {
        self.work_queue_url
            .as_deref()
            .ok_or(ConfigError::Missing("WORK_QUEUE_URL"))
    }

    /// `WEBSOCKET_ENDPOINT`, required by the functions that post.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when unset.
    pub fn require_websocket_endpoint(&self) -> Result<&str, ConfigError> {
        self.websocket_endpoint
            .as_deref()
            .ok_or(ConfigError::Missing("WEBSOCKET_ENDPOINT"))
    }
}

/// The provider of `OIDC_ISSUER`, if set: its audience is required, its algorithms are
/// provider algorithms, and no other `OIDC_*` variable is set without it.
fn provider(get: &impl Fn(&str) -> Option<String>) -> Result<Option<ProviderConfig>, ConfigError> {
    let Some(issuer) = get("OIDC_ISSUER") else {
        // The fetch timeout has a default of its own; every other setting needs the issuer.
        return match OIDC
            .iter()
            .filter(|name| **name != "OIDC_FETCH_TIMEOUT_MILLIS")
            .find(|name| get(name).is_some())
        {
            Some(name) => Err(ConfigError::Invalid {
                name: "OIDC_ISSUER",
                reason: format!("must be set when {name} is"),
            }),
            None => Ok(None),
        };
    };
    let url = |name: &'static str, value: String| {
        if value.starts_with("https://") || value.starts_with("http://") {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                name,
                reason: format!("{value:?} is not an http(s) URL"),
            })
        }
    };
    let algorithms = match get("OIDC_ALGORITHMS") {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(list) => {
            let mut algorithms = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let alg = parse_algorithm(name).map_err(|reason| ConfigError::Invalid {
                    name: "OIDC_ALGORITHMS",
                    reason,
                })?;
                if !algorithms.contains(&alg) {
                    algorithms.push(alg);
                }
            }
            if algorithms.is_empty() {
                return Err(ConfigError::Missing("OIDC_ALGORITHMS"));
            }
            algorithms
        }
    };
    let defaults = ClaimNames::default();
    let artists = get("OIDC_CLAIM_ARTISTS");
    Ok(Some(ProviderConfig {
        issuer: url("OIDC_ISSUER", issuer)?,
        jwks_url: get("OIDC_JWKS_URL")
            .map(|value| url("OIDC_JWKS_URL", value))
            .transpose()?,
        audience: get("OIDC_AUDIENCE").ok_or(ConfigError::Missing("OIDC_AUDIENCE"))?,
        algorithms,
        claims: ClaimNames {
            require_artists: artists.is_some(),
            artists: artists.unwrap_or(defaults.artists),
            subscribe: get("OIDC_CLAIM_SUBSCRIBE").unwrap_or(defaults.subscribe),
            publish: get("OIDC_CLAIM_PUBLISH").unwrap_or(defaults.publish),
        },
    }))
}

fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let Some(raw) = get(name) else {
        return Ok(default);
    };
    let value: T = raw.parse().map_err(|_| ConfigError::Invalid {
        name,
        reason: format!("{raw:?} is not a whole number"),
    })?;
    if !range.contains(&value) {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("{value} is outside {} to {}", range.start(), range.end()),
        });
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn fanout_completed_goes_to_the_default_bus_as_the_on_sale_source_unless_told_otherwise() {
        let table = ("TABLE_NAME", "marquee");
        let config = Config::from_vars(&vars(&[table])).unwrap();
        assert_eq!(
            (config.reports.bus.as_str(), config.reports.source.as_str()),
            ("default", crate::report::DEFAULT_EVENT_SOURCE)
        );
        let arn = "arn:aws:events:eu-west-1:123456789012:event-bus/reports";
        let config = Config::from_vars(&vars(&[
            table,
            ("REPORT_EVENT_BUS", arn),
            ("EVENT_SOURCE", "tickets.example"),
        ]))
        .unwrap();
        assert_eq!(
            (config.reports.bus.as_str(), config.reports.source.as_str()),
            (arn, "tickets.example")
        );
        for (name, bad) in [
            ("REPORT_EVENT_BUS", "has space"),
            ("REPORT_EVENT_BUS", "arn:aws:sqs:eu-west-1:1:queue"),
            ("EVENT_SOURCE", "aws.events"),
            ("EVENT_SOURCE", "two words"),
        ] {
            let err = Config::from_vars(&vars(&[table, (name, bad)])).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { name: n, .. } if n == name),
                "{name}={bad}: {err}"
            );
        }
    }

    #[test]
    fn defaults_apply_when_only_the_table_is_set() {
        let config = Config::from_vars(&vars(&[("TABLE_NAME", "marquee")])).unwrap();
        assert_eq!(config.token_audience, "marquee");
        assert_eq!(config.max_subscriptions, 50);
        assert_eq!(config.fanout.concurrency, 64);
        assert_eq!(config.fanout.rate_per_invocation, Some(500));
        assert_eq!(config.fanout.inline_max, 500);
        assert_eq!(config.connection_ttl_seconds, 7500);
        assert_eq!(config.token_secret, None);
        assert_eq!(config.max_connection_seconds, 7200);
        assert_eq!(
            config.fanout.history,
            Retention {
                window_seconds: 86_400,
                max_per_artist: 100
            }
        );
    }

    #[test]
    fn the_defaults_are_what_the_table_alone_reads() {
        let read = Config::from_vars(&vars(&[("TABLE_NAME", "marquee")])).unwrap();
        assert_eq!(Config::new("marquee"), read);
    }

    #[test]
    fn history_and_connection_limits_are_read_and_bounded() {
        let config = Config::from_vars(&vars(&[
            ("TABLE_NAME", "marquee"),
            ("HISTORY_WINDOW_SECONDS", "3600"),
            ("HISTORY_MAX_PER_ARTIST", "10"),
            ("MAX_CONNECTION_SECONDS", "30"),
        ]))
        .unwrap();
        assert_eq!(config.fanout.history.window_seconds, 3600);
        assert_eq!(config.fanout.history.max_per_artist, 10);
        assert_eq!(config.max_connection_seconds, 30);
        for (name, value) in [
            ("HISTORY_MAX_PER_ARTIST", "0"),
            ("HISTORY_WINDOW_SECONDS", "5"),
            ("MAX_CONNECTION_SECONDS", "7201"),
        ] {
            let err =
                Config::from_vars(&vars(&[("TABLE_NAME", "marquee"), (name, value)])).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn a_provider_is_read_with_its_defaults_and_mapped_claims() {
        let config = Config::for_function(
            Function::Connect,
            &vars(&[
                ("TABLE_NAME", "t"),
                (
                    "OIDC_ISSUER",
                    "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
                ),
                ("OIDC_AUDIENCE", "client-id"),
                ("OIDC_ALGORITHMS", "RS256, ES256,EdDSA"),
                ("OIDC_CLAIM_ARTISTS", "custom:artists"),
            ]),
        )
        .unwrap();
        let provider = config.oidc.unwrap();
        assert_eq!(provider.jwks_url, None, "discovered from the issuer");
        assert_eq!(
            provider.discovery_url(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc/.well-known/openid-configuration"
        );
        assert_eq!(
            provider.algorithms,
            [
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::Algorithm::EdDSA
            ]
        );
        assert_eq!(provider.claims.artists, "custom:artists");
        assert!(
            provider.claims.require_artists,
            "a mapped scope is required"
        );
        assert_eq!(provider.claims.publish, "publish");
        assert_eq!(config.oidc_fetch_timeout, Duration::from_secs(2));
    }

    #[test]
    fn a_provider_config_that_could_accept_the_wrong_tokens_is_refused_by_name() {
        let issuer = ("OIDC_ISSUER", "https://issuer.example");
        for (pairs, named) in [
            (
                vec![("OIDC_JWKS_URL", "https://issuer.example/jwks")],
                "OIDC_ISSUER",
            ),
            (vec![issuer], "OIDC_AUDIENCE"),
            (
                vec![issuer, ("OIDC_AUDIENCE", "a"), ("OIDC_ALGORITHMS", "HS256")],
                "OIDC_ALGORITHMS",
            ),
            (
                vec![issuer, ("OIDC_AUDIENCE", "a"), ("OIDC_ALGORITHMS", "none")],
                "OIDC_ALGORITHMS",
            ),
            (
                vec![issuer, ("OIDC_AUDIENCE", "a"), ("OIDC_ALGORITHMS", " , ")],
                "OIDC_ALGORITHMS",
            ),
            (
                vec![("OIDC_ISSUER", "issuer.example"), ("OIDC_AUDIENCE", "a")],
                "OIDC_ISSUER",
            ),
            (
                vec![
                    issuer,
                    ("OIDC_AUDIENCE", "a"),
                    ("OIDC_JWKS_URL", "file:///etc/passwd"),
                ],
                "OIDC_JWKS_URL",
            ),
        ] {
            let mut all = vec![("TABLE_NAME", "t")];
            all.extend(pairs);
            let err = Config::from_vars(&vars(&all)).unwrap_err();
            assert!(err.to_string().starts_with(named), "{err}");
        }
    }

    #[test]
    fn a_missing_table_name_is_named_in_the_error() {
        assert_eq!(
            Config::from_vars(&vars(&[])),
            Err(ConfigError::Missing("TABLE_NAME"))
        );
    }

    #[test]
    fn out_of_range_and_garbage_numbers_are_refused() {
        let err = Config::from_vars(&vars(&[("TABLE_NAME", "t"), ("FANOUT_CONCURRENCY", "0")]))
            .unwrap_err();
        assert!(err.to_string().contains("FANOUT_CONCURRENCY"), "{err}");
        let err = Config::from_vars(&vars(&[("TABLE_NAME", "t"), ("MAX_SUBSCRIPTIONS", "lots")]))
            .unwrap_err();
        assert!(err.to_string().contains("MAX_SUBSCRIPTIONS"), "{err}");
    }

    #[test]
    fn the_budget_is_shared_by_the_invocations_and_zero_means_no_limit() {
        let rate = |budget: &str, invocations: &str| {
            Config::from_vars(&vars(&[
                ("TABLE_NAME", "t"),
                ("FANOUT_BUDGET", budget),
                ("DELIVER_MAX_CONCURRENCY", invocations),
            ]))
            .unwrap()
            .fanout
            .rate_per_invocation
        };
        assert_eq!(rate("9000", "30"), Some(300));
        assert_eq!(rate("5", "10"), Some(1));
        assert_eq!(rate("0", "10"), None);
    }

    #[test]
    fn inline_secrets_never_show_in_debug_output() {
        let config = Config::from_vars(&vars(&[
            ("TABLE_NAME", "t"),
            ("TOKEN_SECRET", "super-secret-value-for-the-test"),
        ]))
        .unwrap();
        assert!(!format!("{config:?}").contains("super-secret"));
    }

    #[test]
    fn a_secret_from_both_sources_is_ambiguous() {
        let result = Config::from_vars(&vars(&[
            ("TABLE_NAME", "t"),
            ("TOKEN_SECRET", "x"),
            (
                "TOKEN_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:x",
            ),
        ]));
        assert!(result.is_err());
    }

    #[test]
    fn every_variable_a_function_lists_is_one_its_config_reads() {
        let base = vars(&[("TABLE_NAME", "t")]);
        let baseline = Config::from_vars(&base).unwrap();
        for function in Function::ALL {
            for name in function.reads() {
                if OUTSIDE_CONFIG.contains(&name) {
                    continue;
                }
                let mut changed = base.clone();
                changed.insert(name.to_owned(), "not-a-default!".to_owned());
                let read = Config::from_vars(&changed);
                assert!(
                    read.as_ref() != Ok(&baseline),
                    "{}: {name} changes nothing Config reads",
                    function.name()
                );
            }
        }
    }

    #[test]
    fn a_function_sees_only_the_variables_it_reads() {
        let config = Config::for_function(
            Function::Connect,
            &vars(&[("TABLE_NAME", "t"), ("FANOUT_CONCURRENCY", "7")]),
        )
        .unwrap();
        assert_eq!(config.fanout.concurrency, DEFAULT_FANOUT_CONCURRENCY);
        let config = Config::for_function(
            Function::Notify,
            &vars(&[("TABLE_NAME", "t"), ("FANOUT_CONCURRENCY", "7")]),
        )
        .unwrap();
        assert_eq!(config.fanout.concurrency, 7);
    }

    #[test]
    fn empty_values_are_unset() {
        let config = Config::for_function(
            Function::Subscribe,
            &vars(&[
                ("TABLE_NAME", "t"),
                ("DYNAMODB_ENDPOINT", ""),
                ("SQS_ENDPOINT", " "),
                ("MAX_CONNECTION_SECONDS", ""),
                ("FANOUT_PAGE_SIZE", ""),
            ]),
        )
        .unwrap();
        assert_eq!(config.dynamodb_endpoint, None);
        assert_eq!(config.sqs_endpoint, None);
        assert_eq!(
            config.max_connection_seconds,
            DEFAULT_MAX_CONNECTION_SECONDS
        );
        assert_eq!(config.fanout.page_size, DEFAULT_FANOUT_PAGE_SIZE);
    }

    const IN_AWS: (&str, &str) = ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand");

    #[test]
    fn lambda_is_told_from_sam_local_and_from_local_runs() {
        assert_eq!(Runtime::detect(&vars(&[IN_AWS])), Runtime::Aws);
        assert_eq!(
            Runtime::detect(&vars(&[IN_AWS, ("AWS_SAM_LOCAL", "true")])),
            Runtime::SamLocal
        );
        assert_eq!(
            Runtime::detect(&vars(&[("AWS_LAMBDA_FUNCTION_NAME", "marquee-connect")])),
            Runtime::Local,
            "cargo lambda watch names the function but sets no initialization type"
        );
        assert_eq!(Runtime::detect(&vars(&[])), Runtime::Local);
    }

    #[test]
    fn local_only_variables_are_refused_in_aws_by_name() {
        for name in LOCAL_ONLY {
            let err = Config::for_function(
                Function::Subscribe,
                &vars(&[("TABLE_NAME", "t"), IN_AWS, (name, "http://127.0.0.1:8000")]),
            )
            .unwrap_err();
            assert_eq!(err, ConfigError::LocalOnlyInAws(name));
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn local_only_variables_are_taken_under_sam_local_and_empty_ones_in_aws() {
        let local = Config::for_function(
            Function::Connect,
            &vars(&[
                ("TABLE_NAME", "t"),
                IN_AWS,
                ("AWS_SAM_LOCAL", "true"),
                ("DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"),
                ("TOKEN_SECRET", DEV_TOKEN_SECRET),
                ("TOKEN_SECRET_ARN", ""),
            ]),
        )
        .unwrap();
        assert_eq!(
            local.dynamodb_endpoint.as_deref(),
            Some("http://127.0.0.1:8000")
        );
        let aws = Config::for_function(
            Function::Connect,
            &vars(&[
                ("TABLE_NAME", "t"),
                IN_AWS,
                ("DYNAMODB_ENDPOINT", ""),
                ("TOKEN_SECRET", ""),
                (
                    "TOKEN_SECRET_ARN",
                    "arn:aws:secretsmanager:eu-west-1:1:secret:x",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(
            aws.token_secret,
            Some(SecretSource::SecretsManager(
                "arn:aws:secretsmanager:eu-west-1:1:secret:x".into()
            ))
        );
    }
}
