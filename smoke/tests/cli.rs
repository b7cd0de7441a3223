//! The `marquee-smoke` binary as a user runs it: one line per step, the summary line, the exit
//! code; against the local gateway, and failing fast where it cannot work. No test here sends
//! anything beyond this machine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Output;
use std::time::{Duration, Instant};

use marquee_local::gateway::{Gateway, GatewayConfig};

/// Runs the binary with a clean environment: no AWS credentials, profiles or instance
/// metadata, so nothing can reach AWS.
async fn smoke(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let home = std::env::temp_dir().join("marquee-smoke-cli-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_marquee-smoke"));
    command
        .args(args)
        .env_clear()
        .env("HOME", &home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("marquee-smoke finishes")
        .expect("marquee-smoke runs");
    (output, started.elapsed())
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_cli_passes_against_the_local_gateway_and_prints_one_line_per_step() {
    let mut config = GatewayConfig::local_defaults();
    config.port = 0;
    let gateway = Gateway::start(config).await.unwrap();
    let url = format!("ws://{}/", gateway.addr());
    let events = gateway.http_url();
    let (output, _) = smoke(
        &[
            "--url",
            &url,
            "--events-endpoint",
            &events,
            "--quiet",
            "0.3",
        ],
        &[],
    )
    .await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 16, "15 steps and the summary:\n{text}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("PASS  ")).count(),
        14,
        "{text}"
    );
    assert!(
        lines[8].starts_with("PASS  the event's delivery report is complete"),
        "{text}"
    );
    assert!(
        lines[12].starts_with("SKIP  disconnect removed the records"),
        "{text}"
    );
    assert!(
        lines[15].starts_with("PASS: 14 passed, 0 failed, 1 skipped in "),
        "{text}"
    );
    assert!(
        lines[0].contains(&url) && lines[0].contains(&events),
        "{text}"
    );
    assert!(!text.contains(marquee::config::DEV_TOKEN_SECRET), "{text}");
    assert!(!text.contains("token="), "{text}");
}

#[tokio::test]
async fn smoke_cli_without_aws_credentials_fails_fast_with_the_reason_on_one_line() {
    let (output, took) = smoke(&["--stack", "marquee"], &[("AWS_REGION", "eu-west-1")]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(took < Duration::from_secs(10), "{took:?}\n{text}");
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("FAIL  read the stack outputs"), "{text}");
    assert!(
        first.contains("DescribeStacks marquee in eu-west-1: no usable AWS credentials"),
        "{text}"
    );
    assert!(text.lines().last().unwrap().starts_with("FAIL: "), "{text}");
}

#[tokio::test]
async fn smoke_cli_without_a_region_says_how_to_give_one() {
    let (output, _) = smoke(&["--stack", "marquee"], &[]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("no AWS Region: pass --region"), "{text}");
}

#[tokio::test]
async fn smoke_cli_refuses_a_url_that_is_not_a_websocket_url() {
    let (output, _) = smoke(&["--url", "http://127.0.0.1:9/live"], &[]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.starts_with("FAIL  resolve the target"), "{text}");
    assert!(text.contains("is not a WebSocket URL"), "{text}");
}

#[tokio::test]
async fn smoke_cli_needs_a_key_for_a_url_that_is_not_local() {
    let (output, _) = smoke(
        &[
            "--url",
            "wss://abc.execute-api.eu-west-1.amazonaws.com/live",
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("needs the token key"),
        "{output:?}"
    );
    let (output, _) = smoke(&[], &[]).await;
    assert_eq!(
        output.status.code(),
        Some(2),
        "--stack or --url is required"
    );
}
