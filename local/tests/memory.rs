//! What an idle connection costs the gateway: `marquee-local` runs as a child process (so the
//! clients' memory is not counted), and its resident set is read from `/proc` before and after
//! opening idle sockets. `scripts/bench gateway` measures the same at 10,000 connections in a
//! release build; this guards against a regression, such as tungstenite's default 128 KiB read
//! buffer per socket, in a debug build.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Sockets opened before the first reading, so one-off allocations (runtime, pools) are not
/// counted as per-connection cost.
const WARM_UP: usize = 100;
/// Sockets measured.
const MEASURED: usize = 1000;
/// Most a debug build may spend per idle connection (release: 20 KiB, see the benchmark).
const MAX_KIB_PER_CONNECTION: f64 = 32.0;

/// The gateway's resident set in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// A dev token like the banner's (`dev`), for user `dev-<i>` instead.
fn user_token(i: usize) -> String {
    let secret = marquee::auth::Secret::new(marquee::config::DEV_TOKEN_SECRET).unwrap();
    let now = marquee::domain::now_epoch_seconds();
    marquee::auth::mint(
        &secret,
        &marquee::auth::TokenClaims {
            sub: format!("dev-{i}"),
            aud: marquee::config::DEFAULT_AUDIENCE.into(),
            iat: now,
            exp: now + 3600,
            nbf: None,
            artists: None,
            subscribe: None,
            publish: None,
        },
    )
    .unwrap()
}

/// Starts `marquee-local serve --port 0`; returns the child, its address and a dev token.
async fn start_gateway() -> (Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_marquee-local"))
        .args(["serve", "--port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut token) = (None, None);
    while addr.is_none() || token.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the banner in time")
            .unwrap()
            .expect("the banner");
        if let Some(url) = line.trim().strip_prefix("page:") {
            addr = Some(
                url.trim()
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned(),
            );
        }
        if let Some((_, t)) = line.split_once("dev token (sub=dev, 1 hour): ") {
            token = Some(t.trim().to_owned());
        }
    }
    // Keep reading, so the gateway never writes into a full or closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr.unwrap(), token.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_costs_the_gateway_little_memory() {
    let (child, addr, _banner_token) = start_gateway().await;
    let pid = child.id().unwrap();
    // One user may hold only `MAX_CONNECTIONS_PER_USER`: each socket is a user of its own.
    let url = |i: usize| format!("ws://{addr}/?token={}", user_token(i));
    let mut sockets = Vec::new();
    for i in 0..WARM_UP {
        sockets.push(tokio_tungstenite::connect_async(url(i)).await.unwrap().0);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);

    for i in WARM_UP..WARM_UP + MEASURED {
        sockets.push(tokio_tungstenite::connect_async(url(i)).await.unwrap().0);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(pid);

    #[allow(clippy::cast_precision_loss)]
    let per_connection = after.saturating_sub(before) as f64 / MEASURED as f64;
    eprintln!("{per_connection:.1} KiB per idle connection ({before} -> {after} KiB)");
    assert!(
        per_connection <= MAX_KIB_PER_CONNECTION,
        "{per_connection:.1} KiB per idle connection ({before} -> {after} KiB)"
    );
}
