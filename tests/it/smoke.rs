//! `marquee-smoke`'s suite, in process, against the local gateway (embedded store and DynamoDB
//! Local), so the path that verifies a deployment can never rot; and its failures: an
//! unreachable or silent endpoint, a wrong URL, a wrong secret, a rule that does not match.

use std::time::{Duration, Instant};

use marquee::auth::Secret;
use marquee::config::DEV_TOKEN_SECRET;
use marquee_local::gateway::{Gateway, GatewayConfig, StoreChoice};
use marquee_smoke::{Endpoint, Report, SecretSource, Status, Target, Timeouts, step};

/// Short waits: the local gateway delivers in milliseconds.
fn quick() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        reply: Duration::from_secs(5),
        delivery: Duration::from_secs(10),
        quiet: Duration::from_millis(500),
        aws: Duration::from_secs(10),
    }
}

/// A gateway on a free port; with DynamoDB Local, also its table's name.
async fn gateway(dynamo: bool) -> (Gateway, Option<String>) {
    let mut config = GatewayConfig::local_defaults();
    config.port = 0;
    let mut table = None;
    if dynamo {
        config.store = StoreChoice::Dynamo {
            endpoint: marquee_tests::dynamodb_endpoint(),
        };
        config.functions.table_name = marquee_tests::unique_name("smoke");
        table = Some(config.functions.table_name.clone());
    }
    (Gateway::start(config).await.expect("gateway starts"), table)
}

fn ws_url(gateway: &Gateway) -> String {
    format!("ws://{}/", gateway.addr())
}

fn dev_target(url: String) -> Target {
    let mut target = Target::url(url, marquee_tests::dev_secret());
    target.timeouts = quick();
    target
}

fn lines(report: &Report) -> String {
    let mut text: Vec<String> = report.steps.iter().map(ToString::to_string).collect();
    text.push(report.summary());
    text.join("\n")
}

/// Every step passed (but the table check, skipped without a table), in the documented order,
/// and nothing in the report carries the secret or a token.
fn assert_all_passed(report: &Report, table: bool) {
    let text = lines(report);
    assert!(report.passed(), "{text}");
    let names: Vec<&str> = report.steps.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            step::TARGET,
            step::MISSING_TOKEN,
            step::BAD_TOKEN,
            step::VALID_TOKEN,
            step::SUBSCRIBE,
            step::SECOND_FAN,
            step::UNKNOWN_ACTION,
            step::DELIVERED_ONCE,
            step::REPORT,
            step::UNSUBSCRIBE,
            step::UNSUBSCRIBE_STOPS,
            step::CLOSE,
            step::DISCONNECT_RECORDS,
            step::AFTER_CLOSE,
            step::CLEANUP,
        ],
        "{text}"
    );
    for s in &report.steps {
        let expected = if s.name == step::DISCONNECT_RECORDS && !table {
            Status::Skip
        } else {
            Status::Pass
        };
        assert_eq!(s.status, expected, "{text}");
    }
    let records = &report.step(step::DISCONNECT_RECORDS).unwrap().detail;
    assert_eq!(records.starts_with("not checked"), !table, "{text}");
    // The report step read the event's report: through `marquee-admin event` on the table, or
    // the gateway's FanoutCompleted without one.
    let delivery = &report.step(step::REPORT).unwrap().detail;
    let how = if table {
        "marquee-admin event: complete, 1 delivered"
    } else {
        "the gateway's FanoutCompleted: complete, 1 delivered"
    };
    assert!(delivery.starts_with(how), "{text}");
    let summary = if table {
        "PASS: 15 passed, 0 failed, 0 skipped"
    } else {
        "PASS: 14 passed, 0 failed, 1 skipped"
    };
    assert!(report.summary().starts_with(summary), "{text}");
    assert!(!text.contains(DEV_TOKEN_SECRET), "{text}");
    assert!(!text.contains("token="), "{text}");
    assert!(!text.contains("eyJ"), "a JWT in the report:\n{text}");
    assert!(
        report
            .step(step::CLEANUP)
            .unwrap()
            .detail
            .contains("1 socket(s) closed"),
        "{text}"
    );
}

/// No socket left open on the gateway (its side of a close may lag the client's a little).
async fn assert_no_socket_left(gateway: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.open_connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} sockets left open",
            gateway.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_passes_against_the_local_gateway_with_the_embedded_store() {
    let (gateway, _) = gateway(false).await;
    // No --events-endpoint: a loopback URL sends PutEvents to its own http://host:port.
    let report = marquee_smoke::run(dev_target(ws_url(&gateway))).await;
    assert_all_passed(&report, false);
    assert!(
        report
            .step(step::TARGET)
            .unwrap()
            .detail
            .contains(&format!("PutEvents to {}", gateway.http_url())),
        "{}",
        lines(&report)
    );
    assert_no_socket_left(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_passes_against_a_url_typed_without_the_trailing_slash() {
    let (gateway, _) = gateway(false).await;
    let report = marquee_smoke::run(dev_target(format!("ws://{}", gateway.addr()))).await;
    assert_all_passed(&report, false);
    assert_no_socket_left(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_passes_against_the_local_gateway_with_dynamodb_local() {
    let (gateway, table) = gateway(true).await;
    let mut target = dev_target(ws_url(&gateway));
    target.events_endpoint = Some(gateway.http_url());
    // The table too: the records check and the report through `marquee-admin event` run.
    target.table = Some(marquee_smoke::TableTarget {
        name: table.clone().unwrap(),
        endpoint: Some(marquee_tests::dynamodb_endpoint()),
    });
    let report = marquee_smoke::run(target).await;
    assert_all_passed(&report, true);
    assert_no_socket_left(&gateway).await;

    // Nothing left behind: no connection or subscription record. What stays is what every
    // notification leaves, and it all expires: the events' claims and sequence numbers
    // (EVENT#), the test artists' counters and history (ARTIST#), the posting budget's
    // windows (BUDGET#), and the users' lists of connections (USER#), empty; and the totals
    // (STATS#), back at zero.
    let table = table.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let items = marquee_tests::all_items(&table).await;
        // A `$disconnect` deletes the record, then takes the connection off its user's list:
        // both must be done (a list still naming a connection is waited for, like a record).
        let left: Vec<String> = items
            .iter()
            .filter(|item| {
                let pk = item.get("pk").and_then(|v| v.as_s().ok());
                let listing = item
                    .get("conns")
                    .and_then(|v| v.as_m().ok())
                    .is_some_and(|conns| !conns.is_empty());
                // The totals (`STATS#<shard>`) count the records in and out: back at zero.
                let counting = ["connections", "subscriptions"].iter().any(|n| {
                    item.get(*n)
                        .is_some_and(|v| v.as_n().is_ok_and(|n| n != "0"))
                });
                pk.is_some_and(|pk| {
                    pk.starts_with("CONN#")
                        || (pk.starts_with("USER#") && listing)
                        || (pk.starts_with("STATS#") && counting)
                })
            })
            .filter_map(|item| item.get("pk").and_then(|v| v.as_s().ok()))
            .cloned()
            .collect();
        if left.is_empty() {
            for item in &items {
                let pk = item.get("pk").and_then(|v| v.as_s().ok()).unwrap();
                if pk.starts_with("STATS#") {
                    // The totals, at zero, are kept: they count the table, not an event.
                    continue;
                }
                assert!(
                    pk.starts_with("EVENT#")
                        || pk.starts_with("ARTIST#")
                        || pk.starts_with("BUDGET#")
                        || pk.starts_with("USER#"),
                    "{pk} left behind"
                );
                if pk.starts_with("USER#") {
                    let listed = item.get("conns").and_then(|v| v.as_m().ok());
                    assert!(
                        listed.is_some_and(std::collections::HashMap::is_empty),
                        "{pk} still lists connections: {listed:?}"
                    );
                }
                assert!(item.contains_key("expires_at"), "{pk} never expires");
            }
            break;
        }
        assert!(Instant::now() < deadline, "records left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_reads_the_token_secret_from_secrets_manager() {
    // moto's server (started by scripts/test for SQS) serves Secrets Manager too.
    let sdk = marquee::lambda::deps::sdk_config(marquee::lambda::deps::Target::Local).await;
    let secrets = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk)
            .endpoint_url(marquee_tests::sqs_endpoint())
            .build(),
    );
    let arn = secrets
        .create_secret()
        .name(marquee_tests::unique_name("smoke-secret"))
        .secret_string(DEV_TOKEN_SECRET)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let (gateway, _) = gateway(false).await;
    let mut target = Target::new(Endpoint::Url {
        url: ws_url(&gateway),
        secret: SecretSource::SecretsManager(arn),
    });
    target.timeouts = quick();
    target.aws.endpoint_url = Some(marquee_tests::sqs_endpoint());
    let report = marquee_smoke::run(target).await;
    let text = lines(&report);
    assert!(report.passed(), "{text}");
    assert_eq!(
        report.step(step::SECRET).map(|s| s.status),
        Some(Status::Pass),
        "{text}"
    );
    assert_eq!(report.count(Status::Fail), 0, "{text}");
    assert!(!text.contains(DEV_TOKEN_SECRET), "{text}");
}

#[tokio::test]
async fn smoke_fails_fast_on_an_unreachable_url() {
    let started = Instant::now();
    let mut target = Target::url("ws://127.0.0.1:1/", marquee_tests::dev_secret());
    target.timeouts = Timeouts::default();
    let report = marquee_smoke::run(target).await;
    let elapsed = started.elapsed();
    let text = lines(&report);
    assert!(
        elapsed < Duration::from_secs(10),
        "took {elapsed:?}:\n{text}"
    );
    assert!(!report.passed(), "{text}");
    let missing = report.step(step::MISSING_TOKEN).unwrap();
    assert_eq!(missing.status, Status::Fail, "{text}");
    assert!(
        missing.detail.contains("could not connect to 127.0.0.1:1"),
        "{text}"
    );
    // It stops there: everything else is reported as not run, nothing was left open.
    assert_eq!(report.count(Status::Fail), 1, "{text}");
    for name in [step::BAD_TOKEN, step::VALID_TOKEN, step::AFTER_CLOSE] {
        let s = report.step(name).unwrap();
        assert_eq!(s.status, Status::Skip, "{text}");
        assert!(s.detail.starts_with("not run"), "{text}");
    }
    assert_eq!(
        report
            .step(step::CLEANUP)
            .map(|s| (s.status, s.detail.as_str())),
        Some((Status::Pass, "nothing left open")),
        "{text}"
    );
    assert!(report.summary().starts_with("FAIL: "), "{text}");
}

#[tokio::test]
async fn smoke_gives_up_on_an_endpoint_that_never_answers_within_the_connect_timeout() {
    // A listener that never accepts: TCP connects (the kernel's backlog), the handshake hangs.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut target = Target::url(
        format!("ws://{}/", silent.local_addr().unwrap()),
        marquee_tests::dev_secret(),
    );
    target.timeouts.connect = Duration::from_millis(700);
    let started = Instant::now();
    let report = marquee_smoke::run(target).await;
    let text = lines(&report);
    assert!(started.elapsed() < Duration::from_secs(5), "{text}");
    let missing = report.step(step::MISSING_TOKEN).unwrap();
    assert_eq!(missing.status, Status::Fail, "{text}");
    assert!(
        missing.detail.contains("no WebSocket handshake") && missing.detail.contains("0.7 s"),
        "{text}"
    );
    assert_eq!(report.count(Status::Fail), 1, "{text}");
}

#[tokio::test]
async fn smoke_refuses_a_url_that_is_not_a_websocket_url() {
    let started = Instant::now();
    let report = marquee_smoke::run(dev_target("http://127.0.0.1:3001/".into())).await;
    let text = lines(&report);
    assert!(started.elapsed() < Duration::from_secs(2), "{text}");
    let target = report.step(step::TARGET).unwrap();
    assert_eq!(target.status, Status::Fail, "{text}");
    assert!(target.detail.contains("not a WebSocket URL"), "{text}");
    assert_eq!(
        report.step(step::MISSING_TOKEN).map(|s| s.status),
        Some(Status::Skip),
        "{text}"
    );
    assert!(!report.passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_with_a_bad_secret_fails_the_valid_token_step() {
    let (gateway, _) = gateway(false).await;
    let wrong = Secret::new("not-the-gateway-secret-but-long-enough").unwrap();
    let mut target = Target::url(ws_url(&gateway), wrong);
    target.timeouts = quick();
    let report = marquee_smoke::run(target).await;
    let text = lines(&report);
    assert!(!report.passed(), "{text}");
    // The refusals still hold: they do not depend on the key.
    for name in [step::TARGET, step::MISSING_TOKEN, step::BAD_TOKEN] {
        assert_eq!(report.step(name).unwrap().status, Status::Pass, "{text}");
    }
    let valid = report.step(step::VALID_TOKEN).unwrap();
    assert_eq!(valid.status, Status::Fail, "{text}");
    assert!(
        valid.detail.contains("refused with 401") && valid.detail.contains("does not match"),
        "{text}"
    );
    assert_eq!(report.count(Status::Fail), 1, "{text}");
    assert_eq!(
        report.step(step::SUBSCRIBE).map(|s| s.status),
        Some(Status::Skip),
        "{text}"
    );
    assert_no_socket_left(&gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_reports_a_rule_that_does_not_match_as_no_delivery() {
    let (gateway, _) = gateway(false).await;
    let mut target = dev_target(ws_url(&gateway));
    target.detail_type = Some("TicketsOnPresale".into());
    target.timeouts.delivery = Duration::from_secs(1);
    let report = marquee_smoke::run(target).await;
    let text = lines(&report);
    assert!(!report.passed(), "{text}");
    let delivered = report.step(step::DELIVERED_ONCE).unwrap();
    assert_eq!(delivered.status, Status::Fail, "{text}");
    assert!(
        delivered.detail.contains("no notification within 1 s")
            && delivered.detail.contains("EventBridge rule"),
        "{text}"
    );
    // Cleanup still unsubscribed and closed both fans.
    let cleanup = report.step(step::CLEANUP).unwrap();
    assert_eq!(cleanup.status, Status::Pass, "{text}");
    assert!(
        cleanup
            .detail
            .contains("2 subscription(s) removed, 2 socket(s) closed"),
        "{text}"
    );
    assert_no_socket_left(&gateway).await;
}
