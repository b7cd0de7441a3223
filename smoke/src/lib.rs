//! `marquee-smoke`: one short end-to-end suite that runs unchanged against the local gateway
//! (`marquee-local`) and against a deployed stack.
//!
//! It opens real WebSocket connections with freshly minted tokens, publishes `TicketsOnSale`
//! events with the EventBridge SDK client (to EventBridge itself, or to the local gateway,
//! which takes `PutEvents` too), and checks what arrives:
//!
//! 1. a missing and a bad token are refused at the handshake (401);
//! 2. a valid token connects, subscribe is acknowledged, an unknown action gets an error frame;
//! 3. an event reaches its artist's subscriber exactly once, and a subscriber of another
//!    artist gets nothing;
//! 4. unsubscribe stops delivery (checked against a control subscriber that does get it);
//! 5. closing completes, `$disconnect` removed the records (when the table can be read), and a
//!    publish after the close still reaches a live subscriber.
//!
//! Tokens are short-lived, with a unique `sub` and artists of the run's own (`Smoke Test
//! <run>`); every socket is unsubscribed and closed at the end, whatever failed. No token or
//! secret is ever printed or put in a [`Report`]. Every network step has a timeout.
//!
//! ```no_run
//! # async fn example() {
//! let secret = marquee::auth::Secret::new(marquee::config::DEV_TOKEN_SECRET).unwrap();
//! let report = marquee_smoke::run(marquee_smoke::Target::url("ws://127.0.0.1:3001/", secret)).await;
//! assert!(report.passed(), "{}", report.summary());
//! # }
//! ```

mod aws;
mod report;
mod suite;
mod ws;

use std::time::Duration;

use marquee::auth::Secret;

pub use report::{Report, Status, Step};

/// The steps' names, in the order they run (the first is [`step::TARGET`] or [`step::STACK`]).
pub mod step {
    /// Check the `--url` and decide where events go.
    pub const TARGET: &str = "resolve the target";
    /// Read the stack's outputs and parameters (CloudFormation).
    pub const STACK: &str = "read the stack outputs";
    /// Read the token secret (Secrets Manager).
    pub const SECRET: &str = "read the token secret";
    /// A handshake without a token gets 401.
    pub const MISSING_TOKEN: &str = "missing token refused (401)";
    /// A handshake with a token signed by another key gets 401.
    pub const BAD_TOKEN: &str = "bad token refused (401)";
    /// A handshake with a valid token gets 101.
    pub const VALID_TOKEN: &str = "valid token connects";
    /// `subscribe` answers `subscribed`.
    pub const SUBSCRIBE: &str = "subscribe acknowledged";
    /// A second connection subscribes to another artist.
    pub const SECOND_FAN: &str = "second fan subscribes to another artist";
    /// An unknown action answers an `unknown_action` error frame.
    pub const UNKNOWN_ACTION: &str = "unknown action gets an error frame";
    /// A published event reaches its artist's subscriber once, and nobody else.
    pub const DELIVERED_ONCE: &str = "event delivered once, to its artist only";
    /// That event's delivery report: complete, one fan reached, none failed (`marquee-admin
    /// event <id>` on a stack's table; the local gateway's `GET /events/<id>`).
    pub const REPORT: &str = "the event's delivery report is complete";
    /// `unsubscribe` answers `unsubscribed`.
    pub const UNSUBSCRIBE: &str = "unsubscribe acknowledged";
    /// After `unsubscribe`, a publish reaches a control subscriber but not the unsubscribed one.
    pub const UNSUBSCRIBE_STOPS: &str = "unsubscribe stops delivery";
    /// Both sockets close with a close handshake.
    pub const CLOSE: &str = "close completes";
    /// The table holds no subscription of the closed connections (needs the table).
    pub const DISCONNECT_RECORDS: &str = "disconnect removed the records";
    /// After the close, a publish is accepted and reaches a new subscriber.
    pub const AFTER_CLOSE: &str = "publish after close still delivers";
    /// Every socket still open is unsubscribed and closed.
    pub const CLEANUP: &str = "clean up";
}

/// What to run the suite against.
#[derive(Debug, Clone)]
pub struct Target {
    /// The endpoint and its token secret.
    pub endpoint: Endpoint,
    /// Where `PutEvents` goes: an EventBridge-compatible endpoint such as the local gateway's
    /// `http://127.0.0.1:3001`. `None`: EventBridge itself, except that a loopback `--url`
    /// defaults to its own `http://host:port` (the local gateway).
    pub events_endpoint: Option<String>,
    /// The bus to put events on. `None`: the stack's `EventBusName`, or `default`.
    pub event_bus: Option<String>,
    /// The tokens' `aud`. `None`: the stack's `TokenAudience`, or `marquee`.
    pub audience: Option<String>,
    /// The events' `source`. `None`: the stack's `EventSource`, or `marquee.tickets`.
    pub event_source: Option<String>,
    /// The events' `detail-type`. `None`: the stack's `EventDetailType`, or `TicketsOnSale`.
    pub detail_type: Option<String>,
    /// Region and profile overrides for the AWS SDK (default chains otherwise).
    pub aws: AwsOptions,
    /// For a URL: the table behind it (the local gateway on DynamoDB Local), so that the
    /// table checks run (`$disconnect`'s cleanup, the report through `marquee-admin event`).
    /// A stack's comes from its `TableName` output.
    pub table: Option<TableTarget>,
    /// How long each kind of wait may take.
    pub timeouts: Timeouts,
}

/// Where the WebSocket API is, and the key its tokens are signed with.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A deployed stack, by name: its outputs give the URL, the bus, the secret and the table.
    Stack(String),
    /// A WebSocket URL (`ws://` or `wss://`, no token) and its token secret.
    Url {
        /// e.g. `ws://127.0.0.1:3001/` or `wss://abc.execute-api.eu-west-1.amazonaws.com/live`
        url: String,
        /// The HS256 key, or where to read it.
        secret: SecretSource,
    },
}

/// The HS256 key tokens are signed with.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// The key itself (for the local gateway: `marquee::config::DEV_TOKEN_SECRET`).
    Key(Secret),
    /// A Secrets Manager secret id or ARN (the stack's `TokenSecretArn`).
    SecretsManager(String),
}

/// A table to read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTarget {
    /// Its name.
    pub name: String,
    /// DynamoDB's endpoint, e.g. DynamoDB Local's `http://127.0.0.1:8000` (`None`: DynamoDB).
    pub endpoint: Option<String>,
}

/// Overrides for the AWS SDK's default chains.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// The Region (default: `AWS_REGION`, the profile's, ...).
    pub region: Option<String>,
    /// The named profile (default: `AWS_PROFILE` or `default`).
    pub profile: Option<String>,
    /// One endpoint for every AWS service the suite calls (CloudFormation, Secrets Manager,
    /// EventBridge, DynamoDB): an AWS-compatible server such as LocalStack or moto. `None`:
    /// AWS itself (or `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
}

/// How long the suite waits, for each kind of wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A TCP connect and WebSocket handshake (and the SDK's connect timeout).
    pub connect: Duration,
    /// A reply frame (`subscribed`, an error frame) or a close.
    pub reply: Duration,
    /// From `PutEvents` to the notification on the socket (and for `$disconnect` to clean up).
    pub delivery: Duration,
    /// How long "nothing arrives" is watched for.
    pub quiet: Duration,
    /// One AWS call (CloudFormation, Secrets Manager, EventBridge, DynamoDB), retries included.
    pub aws: Duration,
}

impl Default for Timeouts {
    /// 5 s to connect, 5 s for a reply, 20 s for a delivery, 3 s of quiet, 20 s per AWS call.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            reply: Duration::from_secs(5),
            delivery: Duration::from_secs(20),
            quiet: Duration::from_secs(3),
            aws: Duration::from_secs(20),
        }
    }
}

impl Target {
    /// A WebSocket URL with its token key, everything else by default (a loopback URL sends
    /// its events to itself).
    #[must_use]
    pub fn url(url: impl Into<String>, secret: Secret) -> Self {
        Self::new(Endpoint::Url {
            url: url.into(),
            secret: SecretSource::Key(secret),
        })
    }

    /// A deployed stack, everything else from its outputs and parameters.
    #[must_use]
    pub fn stack(name: impl Into<String>) -> Self {
        Self::new(Endpoint::Stack(name.into()))
    }

    /// `endpoint` with every other setting at its default.
    #[must_use]
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            events_endpoint: None,
            event_bus: None,
            audience: None,
            event_source: None,
            detail_type: None,
            aws: AwsOptions::default(),
            table: None,
            timeouts: Timeouts::default(),
        }
    }
}

/// Runs the suite against `target`. Never panics and never hangs: a failure is a failed
/// [`Step`] in the report, and every wait is bounded by [`Timeouts`].
pub async fn run(target: Target) -> Report {
    run_with(target, &mut |_| {}).await
}

/// [`run`], calling `on_step` with each step as soon as it is decided (to print progress).
pub async fn run_with(target: Target, on_step: &mut (dyn FnMut(&Step) + Send)) -> Report {
    Box::pin(suite::run(target, on_step)).await
}

/// `5 s`, `0.5 s`.
pub(crate) fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}
