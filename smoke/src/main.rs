//! `marquee-smoke`: runs the end-to-end smoke suite against a deployed stack or a WebSocket
//! URL, prints one line per step and a summary, and exits non-zero on any failure.
//!
//! ```text
//! marquee-smoke --stack marquee
//! marquee-smoke --url ws://127.0.0.1:3001/
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use marquee::auth::Secret;
use marquee_smoke::{AwsOptions, Endpoint, SecretSource, TableTarget, Target, Timeouts};

/// Verify a Marquee endpoint end to end: handshake refusals, subscribe, an error frame, an
/// EventBridge event delivered exactly once to its artist only, unsubscribe, close and clean
/// up. Tokens are minted for the run (never printed); nothing is left behind.
#[derive(Debug, Parser)]
#[command(name = "marquee-smoke", version)]
#[command(group(ArgGroup::new("where").required(true).args(["stack", "url"])))]
#[command(after_help = "Examples:\n  \
    marquee-smoke --stack marquee                      # a deployed stack (default AWS credentials and Region)\n  \
    marquee-smoke --url ws://127.0.0.1:3001/           # marquee-local, its dev secret, PutEvents to itself\n  \
    marquee-smoke --url wss://abc.execute-api.eu-west-1.amazonaws.com/live --secret-arn <TokenSecretArn>")]
struct Cli {
    /// The CloudFormation stack to verify: its outputs give the URL, the bus, the token secret
    /// (read from Secrets Manager) and the table.
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,

    /// A WebSocket URL to verify instead (ws:// or wss://, without a token).
    #[arg(long, value_name = "WS_URL")]
    url: Option<String>,

    /// The HS256 token key for --url. Default for a loopback URL: marquee-local's documented
    /// dev secret. Prefer the environment variable to the flag: flags show in `ps`.
    #[arg(
        long,
        env = "MARQUEE_TOKEN_SECRET",
        hide_env_values = true,
        conflicts_with_all = ["stack", "secret_arn"],
        value_name = "KEY"
    )]
    secret: Option<String>,

    /// For --url: read the token key from this Secrets Manager secret (the stack's
    /// TokenSecretArn).
    #[arg(long, value_name = "ARN", conflicts_with = "stack")]
    secret_arn: Option<String>,

    /// Send PutEvents to this EventBridge-compatible endpoint (e.g. marquee-local's
    /// http://127.0.0.1:3001). Default: EventBridge, except that a loopback --url sends to
    /// its own http://host:port.
    #[arg(long, value_name = "HTTP_URL")]
    events_endpoint: Option<String>,

    /// The event bus. Default: the stack's EventBusName, or `default`.
    #[arg(long, value_name = "NAME")]
    event_bus: Option<String>,

    /// The tokens' `aud`. Default: the stack's TokenAudience, or `marquee`.
    #[arg(long)]
    audience: Option<String>,

    /// The events' `source`. Default: the stack's EventSource, or `marquee.tickets`.
    #[arg(long)]
    event_source: Option<String>,

    /// The events' `detail-type`. Default: the stack's EventDetailType, or `TicketsOnSale`.
    #[arg(long)]
    detail_type: Option<String>,

    /// AWS Region (default: the SDK's chain: AWS_REGION, the profile, ...).
    #[arg(long)]
    region: Option<String>,

    /// AWS named profile (default: AWS_PROFILE or `default`).
    #[arg(long)]
    profile: Option<String>,

    /// For --url: the table behind it, so the table checks run (the records a close leaves,
    /// the event's delivery report through `marquee-admin event`).
    #[arg(long, value_name = "NAME", conflicts_with = "stack")]
    table: Option<String>,
    /// DynamoDB's endpoint for --table: DynamoDB Local, e.g. http://127.0.0.1:8000.
    #[arg(long, value_name = "HTTP_URL", requires = "table")]
    dynamodb_endpoint: Option<String>,
    /// One endpoint for every AWS service called (an AWS-compatible server such as LocalStack).
    #[arg(long, value_name = "HTTP_URL")]
    aws_endpoint_url: Option<String>,

    /// Seconds to connect and finish a handshake (also the AWS SDK's connect timeout).
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    connect_timeout: Duration,

    /// Seconds to wait for a reply frame or a close.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    reply_timeout: Duration,

    /// Seconds from PutEvents to the notification on the socket.
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = parse_seconds)]
    delivery_timeout: Duration,

    /// Seconds to watch for frames that must not arrive.
    #[arg(long, value_name = "SECONDS", default_value = "3", value_parser = parse_seconds)]
    quiet: Duration,

    /// Seconds for one AWS call, retries included.
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = parse_seconds)]
    aws_timeout: Duration,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=3600.0).contains(&seconds) {
        return Err("must be between 0 and 3600 seconds".into());
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

/// Whether `url`'s host is this machine, judged loosely (the suite checks the URL properly).
fn loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn target(cli: Cli) -> Result<Target, String> {
    let endpoint = match (cli.stack, cli.url) {
        (Some(stack), _) => Endpoint::Stack(stack),
        (None, Some(url)) => {
            let secret = match (cli.secret, cli.secret_arn) {
                (Some(key), _) => {
                    SecretSource::Key(Secret::new(key).map_err(|e| format!("--secret: {e}"))?)
                }
                (None, Some(arn)) => SecretSource::SecretsManager(arn),
                (None, None) if loopback_url(&url) => SecretSource::Key(
                    Secret::new(marquee::config::DEV_TOKEN_SECRET)
                        .map_err(|e| format!("the dev secret: {e}"))?,
                ),
                (None, None) => {
                    return Err(
                        "a non-local --url needs the token key: --secret-arn <ARN>, \
                         MARQUEE_TOKEN_SECRET, or --stack <NAME> instead"
                            .into(),
                    );
                }
            };
            Endpoint::Url { url, secret }
        }
        (None, None) => return Err("give --stack <NAME> or --url <WS_URL>".into()),
    };
    Ok(Target {
        endpoint,
        events_endpoint: cli.events_endpoint,
        event_bus: cli.event_bus,
        audience: cli.audience,
        event_source: cli.event_source,
        detail_type: cli.detail_type,
        aws: AwsOptions {
            region: cli.region,
            profile: cli.profile,
            endpoint_url: cli.aws_endpoint_url,
        },
        table: cli.table.map(|name| TableTarget {
            name,
            endpoint: cli.dynamodb_endpoint,
        }),
        timeouts: Timeouts {
            connect: cli.connect_timeout,
            reply: cli.reply_timeout,
            delivery: cli.delivery_timeout,
            quiet: cli.quiet,
            aws: cli.aws_timeout,
        },
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let target = match target(cli) {
        Ok(target) => target,
        Err(message) => {
            let _written = writeln!(std::io::stderr(), "marquee-smoke: {message}");
            return ExitCode::from(2);
        }
    };
    let report = marquee_smoke::run_with(target, &mut |step| {
        let _written = writeln!(std::io::stdout().lock(), "{step}");
    })
    .await;
    let _written = writeln!(std::io::stdout().lock(), "{}", report.summary());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_parse() {
        Cli::command_for_tests().debug_assert();
        assert!(loopback_url("ws://127.0.0.1:3001/"));
        assert!(loopback_url("ws://localhost"));
        assert!(loopback_url("ws://[::1]:80/x"));
        assert!(!loopback_url(
            "wss://abc.execute-api.eu-west-1.amazonaws.com/live"
        ));
        assert_eq!(parse_seconds("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn a_non_local_url_needs_a_key_and_a_loopback_one_defaults_to_the_dev_secret() {
        let parse = |args: &[&str]| {
            target(
                Cli::try_parse_from(std::iter::once("marquee-smoke").chain(args.iter().copied()))
                    .unwrap(),
            )
        };
        assert!(
            parse(&[
                "--url",
                "wss://abc.execute-api.eu-west-1.amazonaws.com/live"
            ])
            .unwrap_err()
            .contains("needs the token key")
        );
        let local = parse(&["--url", "ws://127.0.0.1:3001/"]).unwrap();
        assert!(matches!(
            local.endpoint,
            Endpoint::Url {
                secret: SecretSource::Key(_),
                ..
            }
        ));
        assert!(parse(&["--url", "ws://127.0.0.1:3001/", "--secret", "short"]).is_err());
        assert!(Cli::try_parse_from(["marquee-smoke"]).is_err());
        assert!(
            Cli::try_parse_from(["marquee-smoke", "--stack", "s", "--url", "ws://x/"]).is_err()
        );
    }

    impl Cli {
        fn command_for_tests() -> clap::Command {
            <Self as clap::CommandFactory>::command()
        }
    }
}
