//! How to run the gateway: address, stage, API Gateway's limits, the store, the backend.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use marquee::config::Config;

use super::PushPath;

/// API Gateway's limits, configurable so tests can shorten the timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Close a socket with no client frames for this long (API Gateway: 10 minutes).
    pub idle_timeout: Duration,
    /// Close every socket after this long (API Gateway: 2 hours).
    pub max_duration: Duration,
    /// Largest frame (API Gateway: 32 KiB); larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Largest message (API Gateway: 128 KiB); larger closes with 1009, and a larger
    /// `PostToConnection` answers 413.
    pub max_message_bytes: usize,
    /// Bytes posted to one socket and not yet written to it (the frame being written
    /// included). A post that would pass it answers 429 `LimitExceededException`, as API
    /// Gateway does when "the WebSocket client side buffer is full"; the socket stays open.
    pub outbox_bytes: usize,
    /// Longest a frame may take to be written to the client. A client that reads too slowly
    /// (or never) is closed with 1008 "Slow consumer" once it is exceeded.
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10 * 60),
            max_duration: Duration::from_secs(2 * 60 * 60),
            max_frame_bytes: 32 * 1024,
            max_message_bytes: marquee::wire::MAX_OUTBOUND_BYTES,
            outbox_bytes: 1024 * 1024,
            send_timeout: Duration::from_secs(30),
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
    /// Address to listen on. Anything but a loopback address exposes the gateway (and its
    /// Management API) to the network: it warns loudly and serves no `/dev/token`.
    pub host: IpAddr,
    /// Port (0 = any free port).
    pub port: u16,
    /// Stage name (in request contexts, and the optional path prefix).
    pub stage: String,
    /// API Gateway's limits.
    pub limits: Limits,
    /// Store for the in-process handlers.
    pub store: StoreChoice,
    /// How the in-process handlers post to sockets: through the Management API with the SDK
    /// client (the default, as in AWS) or directly.
    pub push: PushPath,
    /// Forward routes to this Lambda Invoke API (`cargo lambda watch`) instead of running them
    /// in process. With `functions.work_queue_url` set, the gateway also polls that queue and
    /// invokes `marquee-deliver` with its work items.
    pub lambda_endpoint: Option<String>,
    /// What the functions are called behind `lambda_endpoint`.
    pub lambda_names: LambdaNames,
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

/// What the functions are called behind a Lambda Invoke API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LambdaNames {
    /// By binary, `marquee-connect`: `cargo lambda watch`.
    Binary,
    /// By template resource, `ConnectFunction`: `sam local start-lambda`.
    Resource,
}

impl LambdaNames {
    /// The name of the function whose binary is `binary`.
    #[must_use]
    pub fn of(self, binary: &'static str) -> &'static str {
        match self {
            Self::Binary => binary,
            Self::Resource => marquee::function::Function::ALL
                .into_iter()
                .find(|function| function.binary() == binary)
                .map_or(binary, marquee::function::Function::resource),
        }
    }
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
            push: PushPath::ManagementApi,
            lambda_endpoint: None,
            lambda_names: LambdaNames::Binary,
            token_secret: marquee::config::DEV_TOKEN_SECRET.into(),
            functions: Config::new("marquee"),
            deliver_workers: usize::try_from(marquee::config::DEFAULT_DELIVER_MAX_CONCURRENCY)
                .unwrap_or(1),
            event_source: marquee::report::DEFAULT_EVENT_SOURCE.into(),
            detail_type: marquee::lambda::notify::DEFAULT_ON_SALE_DETAIL_TYPE.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sam_local_serves_each_function_by_its_template_name() {
        let names: Vec<(&str, &str)> = marquee::function::Function::ALL
            .into_iter()
            .map(|f| {
                (
                    LambdaNames::Binary.of(f.binary()),
                    LambdaNames::Resource.of(f.binary()),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("marquee-connect", "ConnectFunction"),
                ("marquee-disconnect", "DisconnectFunction"),
                ("marquee-subscribe", "SubscribeFunction"),
                ("marquee-notify", "NotifyFunction"),
                ("marquee-deliver", "DeliverFunction"),
            ]
        );
    }
}
