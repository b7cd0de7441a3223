//! `marquee-local`: Marquee on a laptop.
//!
//! - `marquee-local` (or `marquee-local serve`) runs the local API Gateway WebSocket API with
//!   Marquee's routes in process: open <http://127.0.0.1:3001/> for the demo page. Its
//!   `$connect` trusts the dev provider, or the one the `OIDC_*` variables name.
//! - `marquee-local publish --artist Adele` sends a "tickets on sale" event to it.
//! - `marquee-local announce --message "Delayed 10 minutes"` sends an announcement to every
//!   open socket.
//! - `marquee-local revoke --user mallory [--reason "chargeback"]` revokes a user: their open
//!   sockets get `{"type":"revoked"}` and close, and their older tokens are refused.
//! - `marquee-local token --sub alice [--artists Adele] [--subscribe Adele] [--publish Adele]
//!   [--ttl 3600] [--alg ES256]` prints a dev token: HS256 with the dev secret, or ES256 from
//!   the dev OpenID Connect provider, whose keys the gateway serves at
//!   `/.well-known/jwks.json`.
//! - `marquee-local create-table` creates the table in DynamoDB Local (the schema of
//!   `template.yaml`, from `marquee::schema`).
//! - `marquee-local management-api` serves a stand-in for the API Gateway Management API, so
//!   the functions under `cargo lambda watch` can post replies and notifications locally.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use marquee::auth::{Secret, TokenClaims, mint};
use marquee::config::DEV_TOKEN_SECRET;
use marquee::domain::now_epoch_seconds;
use marquee::telemetry::LogFormat;
use marquee_local::gateway::{Gateway, GatewayConfig, Limits, PushPath, StoreChoice};
use marquee_local::mgmt::ManagementApi;

#[derive(Debug, Parser)]
#[command(
    name = "marquee-local",
    version,
    about = "Marquee on a laptop",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, `marquee-local` serves with these options.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local API Gateway WebSocket API (the default command).
    Serve(ServeArgs),
    /// Send a "tickets on sale" event to a running gateway (like EventBridge PutEvents).
    Publish {
        /// The artist.
        #[arg(long)]
        artist: String,
        /// More detail fields, as a JSON object (merged with `artist`).
        #[arg(long, default_value = "{}")]
        detail: String,
        /// The gateway.
        #[arg(long, default_value = "http://127.0.0.1:3001")]
        gateway: String,
        /// EventBridge `source`.
        #[arg(long, default_value = marquee::report::DEFAULT_EVENT_SOURCE)]
        source: String,
        /// EventBridge `detail-type`.
        #[arg(long, default_value = marquee::lambda::notify::DEFAULT_ON_SALE_DETAIL_TYPE)]
        detail_type: String,
    },
    /// Send an operator's announcement to every open socket (an EventBridge `Announcement`).
    Announce {
        /// What to say.
        #[arg(long)]
        message: String,
        /// The gateway.
        #[arg(long, default_value = "http://127.0.0.1:3001")]
        gateway: String,
        /// EventBridge `source`.
        #[arg(long, default_value = marquee::report::DEFAULT_EVENT_SOURCE)]
        source: String,
    },
    /// Revoke a user (an EventBridge `Revoke`): close their open sockets with a last
    /// `revoked` frame, and refuse their tokens issued until now.
    Revoke {
        /// The user id (a token's `sub`).
        #[arg(long)]
        user: String,
        /// Why (logged, never sent to the client).
        #[arg(long)]
        reason: Option<String>,
        /// The gateway.
        #[arg(long, default_value = "http://127.0.0.1:3001")]
        gateway: String,
        /// EventBridge `source`.
        #[arg(long, default_value = marquee::report::DEFAULT_EVENT_SOURCE)]
        source: String,
    },
    /// Print a signed connection token for local use: HS256 with the dev secret, or ES256
    /// signed by the dev OpenID Connect provider (the gateway serves its JWKS).
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        sub: String,
        /// Limit the token to these artists (repeat the flag, or separate with commas).
        #[arg(long, value_delimiter = ',')]
        artists: Vec<String>,
        /// Subscribe to these artists during `$connect` (the `subscribe` claim; repeat the
        /// flag, or separate with commas).
        #[arg(long, value_delimiter = ',')]
        subscribe: Vec<String>,
        /// Let the token publish to these rooms (the `publish` claim; repeat the flag, or
        /// separate with commas).
        #[arg(long, value_delimiter = ',')]
        publish: Vec<String>,
        /// Audience (`aud`).
        #[arg(long, env = "TOKEN_AUDIENCE", default_value = "marquee")]
        audience: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// Signing secret; defaults to the documented local-only dev secret (HS256 only).
        #[arg(long, env = "TOKEN_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// `HS256` (the dev secret) or `ES256` (the dev provider's key).
        #[arg(long, value_enum, default_value = "HS256")]
        alg: TokenAlg,
        /// The `iss` of an ES256 token: the gateway's URL, which the gateway's `$connect`
        /// trusts as the dev provider.
        #[arg(long, default_value = marquee_local::provider::DEFAULT_DEV_ISSUER)]
        issuer: String,
    },
    /// Create the table in DynamoDB Local (or any endpoint) when it is missing.
    CreateTable {
        /// Table name.
        #[arg(long, env = "TABLE_NAME", default_value = "marquee")]
        table: String,
        /// DynamoDB endpoint.
        #[arg(
            long,
            env = "DYNAMODB_ENDPOINT",
            default_value = "http://127.0.0.1:8000"
        )]
        endpoint: String,
    },
    /// Serve a stand-in for the API Gateway Management API on 127.0.0.1 and print every
    /// frame posted to it.
    ManagementApi {
        /// Port (0 = any free port).
        #[arg(long, default_value_t = 9001)]
        port: u16,
        /// Answer the first N posts to every connection with 429, to watch callers retry.
        #[arg(long, default_value_t = 0)]
        throttle_first: u32,
    },
}

/// What signs a dev token.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TokenAlg {
    /// The dev secret.
    #[value(name = "HS256")]
    Hs256,
    /// The dev provider's ES256 key.
    #[value(name = "ES256")]
    Es256,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on. Anything but loopback exposes the gateway to the network (a loud
    /// warning, and no /dev/token).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port for the WebSocket endpoint, the Management API, the page and `/events`.
    #[arg(long, default_value_t = 3001)]
    port: u16,
    /// Stage name.
    #[arg(long, default_value = "local")]
    stage: String,
    /// Use DynamoDB (Local) at this URL instead of the embedded in-memory store; the table is
    /// created when missing.
    #[arg(long, env = "DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
    /// Table name (with --dynamodb-endpoint).
    #[arg(long, env = "TABLE_NAME", default_value = "marquee")]
    table: String,
    /// Forward every route to the real function binaries behind this Lambda Invoke API
    /// (`cargo lambda watch`, e.g. http://127.0.0.1:9000) instead of running them in process.
    #[arg(long)]
    lambda_endpoint: Option<String>,
    /// What the functions are called behind --lambda-endpoint: `binary` (marquee-connect, as
    /// `cargo lambda watch` serves them) or `resource` (ConnectFunction, as `sam local
    /// start-lambda` does).
    #[arg(
        long,
        value_enum,
        default_value = "binary",
        requires = "lambda_endpoint"
    )]
    lambda_names: marquee_local::gateway::LambdaNames,
    /// With --lambda-endpoint: poll this SQS work queue (the one `marquee-notify` sends to, e.g.
    /// from `scripts/sqs-local`) and invoke `marquee-deliver` with its items.
    #[arg(long, env = "WORK_QUEUE_URL", requires = "lambda_endpoint")]
    work_queue_url: Option<String>,
    /// The SQS-compatible server of --work-queue-url.
    #[arg(long, env = "SQS_ENDPOINT")]
    sqs_endpoint: Option<String>,
    /// `deliver` invocations at once (the work queue event source's MaximumConcurrency).
    #[arg(long, env = "DELIVER_MAX_CONCURRENCY", default_value_t = 10)]
    deliver_workers: usize,
    /// Largest audience `notify` posts to inline; larger ones go through the work queue.
    #[arg(long, env = "INLINE_MAX_SUBSCRIBERS", default_value_t = marquee::config::DEFAULT_INLINE_MAX_SUBSCRIBERS)]
    inline_max: usize,
    /// The account's posting budget: posts per second over every poster at once (`notify`, the
    /// `deliver` workers, room messages), leased in blocks; 0 = no limit.
    #[arg(long, env = "FANOUT_BUDGET", default_value_t = marquee::config::DEFAULT_FANOUT_BUDGET)]
    fanout_budget: u32,
    /// The in-process routes post straight into the sockets instead of through the Management
    /// API with the SDK client (about ten times less CPU per post; `ManagementPush` is then not
    /// exercised). Not with --lambda-endpoint, where the functions post over HTTP.
    #[arg(long, conflicts_with = "lambda_endpoint")]
    direct_push: bool,
    /// Close sockets idle this many seconds (API Gateway: 600).
    #[arg(long, default_value_t = 600)]
    idle_timeout: u64,
    /// Close every socket after this many seconds (API Gateway: 7200).
    #[arg(long, default_value_t = 7200)]
    max_duration: u64,
    /// Close a socket (1008 "Slow consumer") when one frame takes longer than this many
    /// seconds to be written to it.
    #[arg(long, default_value_t = 30)]
    send_timeout: u64,
    /// Bytes posted to one socket and not yet written before posts to it answer 429.
    #[arg(long, default_value_t = 1024 * 1024)]
    outbox_bytes: usize,
    /// Token secret; defaults to the documented local-only dev secret.
    #[arg(long, env = "TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// Token audience.
    #[arg(long, env = "TOKEN_AUDIENCE", default_value = "marquee")]
    audience: String,
    /// Subscriptions per connection.
    #[arg(long, env = "MAX_SUBSCRIPTIONS", default_value_t = 50)]
    max_subscriptions: u32,
    /// Live connections one user (`sub`) may hold (1 to 1000, as for the functions).
    #[arg(
        long,
        env = "MAX_CONNECTIONS_PER_USER",
        default_value_t = marquee::config::DEFAULT_MAX_CONNECTIONS_PER_USER,
        value_parser = clap::value_parser!(u32).range(1..=1000),
    )]
    max_connections_per_user: u32,
    /// How long a revocation refuses the user's older tokens, in seconds (60 to 30 days).
    #[arg(
        long,
        env = "REVOCATION_TTL_SECONDS",
        default_value_t = marquee::config::DEFAULT_REVOCATION_TTL_SECONDS,
        value_parser = clap::value_parser!(i64).range(60..=30 * 24 * 60 * 60),
    )]
    revocation_ttl: i64,
    /// Room messages one connection may publish per second (1 to 1000, as for the functions).
    #[arg(
        long,
        env = "PUBLISH_RATE_PER_SECOND",
        default_value_t = marquee::config::DEFAULT_PUBLISH_RATE_PER_SECOND,
        value_parser = clap::value_parser!(u32).range(1..=1000),
    )]
    publish_rate: u32,
    /// Room messages one connection may publish at once (1 to 1000).
    #[arg(
        long,
        env = "PUBLISH_BURST",
        default_value_t = marquee::config::DEFAULT_PUBLISH_BURST,
        value_parser = clap::value_parser!(u32).range(1..=1000),
    )]
    publish_burst: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    let format = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    marquee::telemetry::init_with(format);
    if format == LogFormat::Text {
        marquee::metrics::set_format(marquee::metrics::MetricsFormat::Text);
    }
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(cli.serve));
    match Box::pin(run(command)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&*err);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!(error = %message, "marquee-local failed");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn run(command: Command) -> Result<(), BoxError> {
    match command {
        Command::Serve(args) => Box::pin(serve(args)).await,
        Command::Publish {
            artist,
            detail,
            gateway,
            source,
            detail_type,
        } => {
            let mut detail: serde_json::Value =
                serde_json::from_str(&detail).map_err(|e| format!("--detail is not JSON: {e}"))?;
            let fields = detail
                .as_object_mut()
                .ok_or("--detail must be a JSON object")?;
            fields.insert("artist".into(), serde_json::Value::String(artist));
            let body = serde_json::json!({
                "Entries": [{
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": detail.to_string(),
                }]
            });
            let answer = marquee_local::post_json(&format!("{gateway}/events"), &body).await?;
            write_stdout(&answer.to_string())
        }
        Command::Announce {
            message,
            gateway,
            source,
        } => {
            let body = serde_json::json!({
                "Entries": [{
                    "Source": source,
                    "DetailType": marquee::lambda::notify::ANNOUNCEMENT_DETAIL_TYPE,
                    "Detail": serde_json::json!({ "message": message }).to_string(),
                }]
            });
            let answer = marquee_local::post_json(&format!("{gateway}/events"), &body).await?;
            write_stdout(&answer.to_string())
        }
        Command::Revoke {
            user,
            reason,
            gateway,
            source,
        } => {
            let body = serde_json::json!({
                "Entries": [{
                    "Source": source,
                    "DetailType": marquee::lambda::notify::REVOKE_DETAIL_TYPE,
                    "Detail": serde_json::json!({ "user": user, "reason": reason }).to_string(),
                }]
            });
            let answer = marquee_local::post_json(&format!("{gateway}/events"), &body).await?;
            write_stdout(&answer.to_string())
        }
        Command::Token {
            sub,
            artists,
            subscribe,
            publish,
            audience,
            ttl,
            secret,
            alg,
            issuer,
        } => {
            let now = now_epoch_seconds();
            let claims = TokenClaims {
                sub,
                aud: audience,
                iat: now,
                exp: now.saturating_add(ttl),
                nbf: None,
                artists: (!artists.is_empty()).then_some(artists),
                subscribe: (!subscribe.is_empty()).then_some(subscribe),
                publish: (!publish.is_empty()).then_some(publish),
            };
            let token = match alg {
                TokenAlg::Hs256 => mint(
                    &Secret::new(secret.unwrap_or_else(|| DEV_TOKEN_SECRET.to_owned()))?,
                    &claims,
                )?,
                TokenAlg::Es256 => {
                    let mut claims = serde_json::to_value(&claims)?;
                    if let Some(fields) = claims.as_object_mut() {
                        fields.insert("iss".into(), serde_json::Value::String(issuer));
                    }
                    marquee_local::provider::mint_es256(&claims)?
                }
            };
            write_stdout(&token)
        }
        Command::CreateTable { table, endpoint } => {
            let store = marquee_local::dynamo_store(&endpoint, &table).await;
            if store.table_exists().await? {
                tracing::info!(table, endpoint, "table already exists");
            } else {
                store.create_table().await?;
                tracing::info!(table, endpoint, "table created");
            }
            Ok(())
        }
        Command::ManagementApi {
            port,
            throttle_first,
        } => {
            let api = ManagementApi::start(port).await?;
            api.throttle_first(throttle_first);
            tracing::info!(endpoint = %api.endpoint(), "Management API stand-in listening; set WEBSOCKET_ENDPOINT to it");
            let mut seen = 0;
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                let delivered = api.delivered();
                for delivery in delivered.iter().skip(seen) {
                    write_stdout(&format!(
                        "{} <- {}",
                        delivery.connection_id,
                        String::from_utf8_lossy(&delivery.body)
                    ))?;
                }
                seen = delivered.len();
            }
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), BoxError> {
    let mut config = GatewayConfig::local_defaults();
    config.host = args.host;
    config.port = args.port;
    config.stage = args.stage;
    config.store = args
        .dynamodb_endpoint
        .map_or(StoreChoice::Memory, |endpoint| StoreChoice::Dynamo {
            endpoint,
        });
    config.functions.table_name = args.table;
    config.functions.token_audience = args.audience;
    // A real provider instead of the dev one: the connect function's OIDC_* variables, read
    // and checked as it reads them.
    let provider = provider_from_env()?;
    config.functions.oidc = provider.oidc;
    config.functions.oidc_fetch_timeout = provider.oidc_fetch_timeout;
    config.functions.max_subscriptions = args.max_subscriptions;
    config.functions.max_connections_per_user = args.max_connections_per_user;
    config.functions.fanout.revocation_ttl_seconds = args.revocation_ttl;
    config.functions.publish_rate = marquee::store::RateLimit {
        per_second: args.publish_rate,
        burst: args.publish_burst,
    };
    config.lambda_endpoint = args.lambda_endpoint;
    config.lambda_names = args.lambda_names;
    config.functions.work_queue_url = args.work_queue_url;
    config.functions.sqs_endpoint = args.sqs_endpoint;
    config.functions.fanout.inline_max = args.inline_max;
    config.deliver_workers = args.deliver_workers;
    if args.direct_push {
        config.push = PushPath::Direct;
    }
    let invocations = u32::try_from(args.deliver_workers.max(1)).unwrap_or(u32::MAX);
    config.functions.fanout.budget = args.fanout_budget;
    config.functions.fanout.rate_per_invocation =
        (args.fanout_budget > 0).then(|| (args.fanout_budget / invocations).max(1));
    config.limits = Limits {
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_duration: Duration::from_secs(args.max_duration),
        send_timeout: Duration::from_secs(args.send_timeout),
        outbox_bytes: args.outbox_bytes,
        ..Limits::default()
    };
    if let Some(secret) = args.token_secret {
        config.token_secret = secret;
    }
    let gateway = Gateway::start(config).await?;
    if gateway.is_exposed() {
        write_stdout(&format!(
            "\n!!! WARNING: listening on {addr}, beyond loopback. Anyone who can reach it can \
             connect with dev-secret tokens, post to or delete any connection, and publish \
             events. /dev/token is off. Use --host 127.0.0.1 unless you mean it. !!!\n",
            addr = gateway.addr()
        ))?;
    }
    let token = gateway.token("dev", None);
    write_stdout(&format!(
        "Marquee local gateway\n  page:      {page}/\n  websocket: ws://{addr}/?token=<token>\n  publish:   marquee-local publish --artist Adele (or POST {page}/events)\n  dev token (sub=dev, 1 hour): {token}\n  try:       websocat \"ws://{addr}/?token={token}\"",
        page = gateway.http_url(),
        addr = gateway.addr(),
    ))?;
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    gateway.shutdown().await;
    Ok(())
}

/// The `OIDC_*` variables of the environment, read as `$connect` reads them (the rest of the
/// configuration comes from the flags).
fn provider_from_env() -> Result<marquee::config::Config, BoxError> {
    let mut vars: std::collections::HashMap<String, String> = std::env::vars()
        .filter(|(name, _)| name.starts_with("OIDC_"))
        .collect();
    vars.insert("TABLE_NAME".into(), "unused".into());
    Ok(marquee::config::Config::from_vars(&vars)?)
}

fn write_stdout(line: &str) -> Result<(), BoxError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
