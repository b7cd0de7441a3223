//! `marquee-local`: Marquee on a laptop.
//!
//! - `marquee-local token --sub alice [--artists Adele]` prints a dev token.
//! - `marquee-local create-table` creates the table in DynamoDB Local (the schema of
//!   `template.yaml`, from `marquee::schema`).
//! - `marquee-local management-api` serves a stand-in for the API Gateway Management API, so
//!   the functions under `cargo lambda watch` can post replies and notifications locally.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use marquee::auth::{Secret, TokenClaims, mint};
use marquee::domain::now_epoch_seconds;
use marquee_local::{DEV_TOKEN_SECRET, mgmt::ManagementApi};

#[derive(Debug, Parser)]
#[command(name = "marquee-local", version, about = "Marquee on a laptop")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a signed connection token (HS256) for local use.
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        sub: String,
        /// Limit the token to these artists (repeat the flag, or separate with commas).
        #[arg(long, value_delimiter = ',')]
        artists: Vec<String>,
        /// Audience (`aud`).
        #[arg(long, env = "TOKEN_AUDIENCE", default_value = "marquee")]
        audience: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// Signing secret; defaults to the documented local-only dev secret.
        #[arg(long, env = "TOKEN_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// Create the table in DynamoDB Local (or any endpoint) when it is missing.
    CreateTable {
        /// Table name.
        #[arg(long, env = "TABLE_NAME", default_value = "marquee")]
        table: String,
        /// DynamoDB endpoint.
        #[arg(long, env = "DYNAMODB_ENDPOINT", default_value = "http://127.0.0.1:8000")]
        endpoint: String,
    },
    /// Serve a stand-in for the API Gateway Management API on 127.0.0.1 and print every
    /// frame posted to it.
    ManagementApi {
        /// Port (0 = any free port).
        #[arg(long, default_value_t = 9001)]
        port: u16,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    marquee::telemetry::init();
    match run(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut source = err.source();
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

async fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Token {
            sub,
            artists,
            audience,
            ttl,
            secret,
        } => {
            let secret = Secret::new(secret.unwrap_or_else(|| DEV_TOKEN_SECRET.to_owned()))?;
            let now = now_epoch_seconds();
            let token = mint(
                &secret,
                &TokenClaims {
                    sub,
                    aud: audience,
                    iat: now,
                    exp: now.saturating_add(ttl),
                    nbf: None,
                    artists: (!artists.is_empty()).then_some(artists),
                },
            )?;
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
        Command::ManagementApi { port } => {
            let api = ManagementApi::start(port).await?;
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

fn write_stdout(line: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
