//! The `coldstart` mode: how long each function takes from process start to its first request
//! for work, against a hello-world `lambda_runtime` function built the same way.
//!
//! `scripts/bench coldstart` builds the binaries (each function on its own, `cargo build
//! --release -p <package>`, as `cargo lambda build` and `sam build` build them, so each has
//! only the `marquee` features its package selects) and passes their paths here.
//!
//! **The Runtime API stand-in** is an HTTP server in this process on 127.0.0.1 and a free port
//! (`AWS_LAMBDA_RUNTIME_API`). A start's init time runs from just before the child is spawned
//! to the moment the stand-in receives its first `GET /2018-06-01/runtime/invocation/next`:
//! everything a cold start does before Lambda can hand it an event (exec, loading, the
//! configuration checks, SDK clients, reading the secret). The stand-in never answers that
//! request; the child is then killed by its PID and reaped. A `POST …/init/error` (a failed
//! configuration check) fails the benchmark with the child's error.
//!
//! **Secrets Manager.** `$connect` reads its token secret at every cold start in AWS, so it is
//! given `TOKEN_SECRET_ARN` and `AWS_ENDPOINT_URL_SECRETS_MANAGER` pointing at the same stand-in,
//! which answers `GetSecretValue` (`AWSCURRENT`: a 40-byte key; `AWSPREVIOUS`:
//! `ResourceNotFoundException`, a secret never rotated; a cold start asks only for the
//! former). The read is real SDK work over loopback HTTP: signing, the request, parsing the
//! answer; what it cannot include is AWS's TLS handshake and round trip. `GetSecretValue`
//! requests are counted, whatever version they ask for, and reported per start.
//!
//! **The environment** is cleared and set to what Lambda gives a function (`AWS_REGION`,
//! static credentials, `AWS_LAMBDA_*`, `TZ`, `LANG`, no `HOME`), plus the function's own
//! variables with AWS-shaped values, so no start needs the network.
//!
//! Starts are interleaved (one of each binary per round, after one unmeasured warm-up round),
//! so a burst of load on the machine falls on every binary alike.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::BoxError;

/// The longest one start may take before the benchmark gives up on it.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// What the stand-in's `GetSecretValue` returns: 40 bytes, longer than the verifier's minimum.
const BENCH_SECRET: &str = "coldstart-bench-secret-not-a-real-key-01";
/// The secret's ARN as `$connect` is configured with it.
pub(crate) const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:marquee-token-AbCdEf";

/// Options of the `coldstart` mode.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Measured starts per binary.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// The baseline, as NAME=PATH (the hello-world function).
    #[arg(long, value_parser = named_path)]
    baseline: (String, PathBuf),
    /// A function to measure, as NAME=PATH (repeat).
    #[arg(long = "function", value_parser = named_path)]
    functions: Vec<(String, PathBuf)>,
    /// The arm64 artefact of a binary, as NAME=PATH (repeat; only its size is reported).
    #[arg(long = "arm64", value_parser = named_path)]
    arm64: Vec<(String, PathBuf)>,
}

pub(crate) fn named_path(raw: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PATH, got {raw:?}"))?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// What the stand-in hears from a child.
#[derive(Debug)]
enum Heard {
    /// The first request for work: init is over.
    Next(Instant),
    /// The runtime reported a failed init.
    InitError(String),
}

#[derive(Debug, Clone)]
struct Stand {
    heard: mpsc::UnboundedSender<Heard>,
    secret_reads: Arc<AtomicUsize>,
}

/// The Runtime API and Secrets Manager stand-in, on 127.0.0.1 and a free port.
async fn serve(stand: Stand) -> Result<u16, BoxError> {
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .route("/", post(secrets_manager))
        .with_state(stand);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("coldstart: the Runtime API stand-in stopped: {err}");
        }
    });
    Ok(port)
}

/// Records the moment and never answers: the child is killed while it waits.
async fn next(State(stand): State<Stand>) -> Response {
    let _gone = stand.heard.send(Heard::Next(Instant::now()));
    std::future::pending::<()>().await;
    StatusCode::NO_CONTENT.into_response()
}

async fn init_error(State(stand): State<Stand>, body: String) -> StatusCode {
    let _gone = stand.heard.send(Heard::InitError(body));
    StatusCode::ACCEPTED
}

/// `GetSecretValue`, counted.
async fn secrets_manager(State(stand): State<Stand>, headers: HeaderMap, body: String) -> Response {
    stand.secret_reads.fetch_add(1, Ordering::Relaxed);
    get_secret_value(&headers, &body)
}

/// Secrets Manager's `GetSecretValue` (AWS JSON 1.1): the current version, and no previous
/// one (a secret never rotated). Any other operation is refused.
pub(crate) fn get_secret_value(headers: &HeaderMap, body: &str) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let json_type = [(header::CONTENT_TYPE, "application/x-amz-json-1.1")];
    if target != "secretsmanager.GetSecretValue" {
        let error = json!({"__type": "UnknownOperationException", "message": target});
        return (StatusCode::BAD_REQUEST, json_type, error.to_string()).into_response();
    }
    let request: Value = serde_json::from_str(body).unwrap_or_default();
    let stage = request
        .get("VersionStage")
        .and_then(Value::as_str)
        .unwrap_or("AWSCURRENT");
    if stage != "AWSCURRENT" {
        let error = json!({
            "__type": "ResourceNotFoundException",
            "message": "Secrets Manager can't find the specified secret value for staging label: AWSPREVIOUS",
        });
        return (StatusCode::BAD_REQUEST, json_type, error.to_string()).into_response();
    }
    let answer = json!({
        "ARN": SECRET_ARN,
        "Name": "marquee-token",
        "VersionId": "00000000-0000-4000-8000-000000000001",
        "SecretString": BENCH_SECRET,
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": 1_763_800_000.0,
    });
    (StatusCode::OK, json_type, answer.to_string()).into_response()
}

/// What Lambda sets in every execution environment of function `name` at `memory_mb`
/// (`provided.al2023`, with the role's credentials), but the Runtime API and
/// `AWS_LAMBDA_INITIALIZATION_TYPE`: with that one set, a function refuses the local-only
/// endpoints (`DYNAMODB_ENDPOINT`, ...) that `scripts/bench lambda` points at its stand-ins.
pub(crate) fn lambda_platform(name: &str, memory_mb: u64) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/23/[$LATEST]bench".to_owned(),
        ),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "ASIABENCHBENCHBENCH0".to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "bench-secret-access-key".to_owned(),
        ),
        ("AWS_SESSION_TOKEN", "bench-session-token".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
    ]
}

/// The environment of every start: Lambda's own variables and the functions' configuration.
fn environment(port: u16, name: &str) -> Vec<(&'static str, String)> {
    let mut env = lambda_platform(name, 256);
    env.push(("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}")));
    env.push(("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()));
    let fixed = [
        ("TABLE_NAME", "marquee-bench".to_owned()),
        (
            "WEBSOCKET_ENDPOINT",
            "https://abcdef1234.execute-api.us-east-1.amazonaws.com/live".to_owned(),
        ),
        (
            "WORK_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/marquee-work".to_owned(),
        ),
        ("TOKEN_SECRET_ARN", SECRET_ARN.to_owned()),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            format!("http://127.0.0.1:{port}"),
        ),
    ];
    env.extend(fixed);
    env
}

/// One cold start of `path`: milliseconds to its first request for work.
async fn start_once(
    name: &str,
    path: &PathBuf,
    port: u16,
    heard: &mut mpsc::UnboundedReceiver<Heard>,
) -> Result<f64, BoxError> {
    while heard.try_recv().is_ok() {}
    let mut command = Command::new(path);
    command
        .env_clear()
        .envs(environment(port, name))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn()?;
    let outcome = tokio::select! {
        heard = tokio::time::timeout(START_TIMEOUT, heard.recv()) => heard,
        status = child.wait() => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _partial = pipe.read_to_string(&mut stderr).await;
            }
            return Err(format!("{name} exited before asking for work ({}): {stderr}", status?).into());
        }
    };
    // Killed by its PID (tokio's handle), then reaped.
    child.kill().await?;
    match outcome {
        Ok(Some(Heard::Next(at))) => Ok((at - started).as_secs_f64() * 1000.0),
        Ok(Some(Heard::InitError(body))) => Err(format!("{name} failed its init: {body}").into()),
        Ok(None) => Err("the stand-in stopped".into()),
        Err(_) => Err(format!("{name} did not ask for work within {START_TIMEOUT:?}").into()),
    }
}

/// Median, p90 (nearest rank) and min of a non-empty sample, in its unit.
fn summary(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let len = samples.len();
    let median = match (samples.get(len / 2), len % 2) {
        (Some(&upper), 0) => (samples.get(len / 2 - 1).copied().unwrap_or(upper) + upper) / 2.0,
        (Some(&middle), _) => middle,
        (None, _) => f64::NAN,
    };
    (
        median,
        crate::stats::percentile(samples, 0.9),
        samples.first().copied().unwrap_or(f64::NAN),
    )
}

/// One binary's line of the table.
#[derive(Debug)]
struct Row<'a> {
    name: &'a str,
    median: f64,
    p90: f64,
    min: f64,
    x86_64_mib: f64,
    arm64_mib: Option<f64>,
}

/// The Markdown table; the first row is the baseline the ratios are to.
#[allow(clippy::print_stdout)]
fn print_table(rows: &[Row<'_>]) {
    let baseline = rows.first().map_or(f64::NAN, |row| row.median);
    println!(
        "| binary | init median (ms) | p90 (ms) | min (ms) | × hello | x86_64 size (MiB) | arm64 size (MiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let arm64 = row
            .arm64_mib
            .map_or_else(|| "n/a".to_owned(), |mib| format!("{mib:.1}"));
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {arm64} |",
            row.name,
            row.median,
            row.p90,
            row.min,
            row.median / baseline,
            row.x86_64_mib,
        );
    }
}

#[allow(clippy::cast_precision_loss)]
fn mib(path: &PathBuf) -> Result<f64, BoxError> {
    Ok(std::fs::metadata(path)?.len() as f64 / (1024.0 * 1024.0))
}

/// Runs the benchmark and prints its table.
pub(crate) async fn run(args: &Args) -> Result<(), BoxError> {
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let (sender, mut heard) = mpsc::unbounded_channel();
    let secret_reads = Arc::new(AtomicUsize::new(0));
    let port = serve(Stand {
        heard: sender,
        secret_reads: Arc::clone(&secret_reads),
    })
    .await?;

    let binaries: Vec<&(String, PathBuf)> = std::iter::once(&args.baseline)
        .chain(&args.functions)
        .collect();
    let mut samples: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut reads: HashMap<&str, usize> = HashMap::new();
    for round in 0..=args.runs {
        for (name, path) in &binaries {
            let before = secret_reads.load(Ordering::Relaxed);
            let ms = start_once(name, path, port, &mut heard).await?;
            if round > 0 {
                samples.entry(name.as_str()).or_default().push(ms);
                *reads.entry(name.as_str()).or_default() +=
                    secret_reads.load(Ordering::Relaxed) - before;
            }
        }
    }

    let arm64: HashMap<&str, &PathBuf> = args
        .arm64
        .iter()
        .map(|(name, path)| (name.as_str(), path))
        .collect();
    let mut rows = Vec::new();
    for (name, path) in &binaries {
        let Some(sample) = samples.get_mut(name.as_str()) else {
            continue;
        };
        let (median, p90, min) = summary(sample);
        rows.push(Row {
            name,
            median,
            p90,
            min,
            x86_64_mib: mib(path)?,
            arm64_mib: arm64.get(name.as_str()).map(|path| mib(path)).transpose()?,
        });
    }
    print_table(&rows);
    for (name, _) in &binaries {
        let count = reads.get(name.as_str()).copied().unwrap_or(0);
        if count > 0 {
            eprintln!(
                "coldstart: {name} sent {count} GetSecretValue requests in {} starts",
                args.runs
            );
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn summary_gives_median_nearest_rank_p90_and_min() {
        let mut samples: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(summary(&mut samples), (5.5, 9.0, 1.0));
    }

    #[test]
    fn a_named_path_splits_at_the_first_equals_sign() {
        assert_eq!(
            named_path("connect=target/a=b").unwrap(),
            ("connect".to_owned(), PathBuf::from("target/a=b"))
        );
    }
}
