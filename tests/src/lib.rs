//! Harness for Marquee's integration tests: DynamoDB Local (started by `scripts/test`), a
//! fresh table per test, the Management API stand-in reached through the real SDK client,
//! and the `events/` fixtures.
//!
//! A test that needs DynamoDB Local and cannot reach it fails; it never skips.

// A test harness reports a broken environment by panicking with a clear message.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use marquee::auth::{Secret, TokenVerifier};
use marquee::config::DEV_TOKEN_SECRET;
use marquee::lambda::deps::Target;
use marquee::push::management::ManagementPush;
use marquee::queue::sqs::SqsQueue;
use marquee::store::dynamo::DynamoStore;
use marquee_local::mgmt::ManagementApi;

pub use marquee_local::mgmt;

pub mod iam;
pub mod pipeline;
pub mod provider;

/// DynamoDB Local's URL from `DYNAMODB_ENDPOINT`; panics with the fix when it is unset.
#[must_use]
pub fn dynamodb_endpoint() -> String {
    iam::record();
    match std::env::var("DYNAMODB_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "DYNAMODB_ENDPOINT is not set. These tests need DynamoDB Local: run them with \
             `scripts/test`, which installs and starts it."
        ),
    }
}

/// The SQS-compatible server's URL from `SQS_ENDPOINT`; panics with the fix when it is unset.
#[must_use]
pub fn sqs_endpoint() -> String {
    iam::record();
    match std::env::var("SQS_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "SQS_ENDPOINT is not set. These tests need an SQS-compatible server: run them with \
             `scripts/test`, which installs and starts one (moto)."
        ),
    }
}

/// An SQS client for the SQS-compatible server.
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    let sdk = marquee::lambda::deps::sdk_config(Target::Local).await;
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .endpoint_url(sqs_endpoint())
            .build(),
    )
}

/// Every message visible in the queue at `url`, received (hidden for a minute) until a
/// receive comes back empty, with its `AWSTraceHeader`.
pub async fn receive_all(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::AwsTraceHeader,
            )
            .send()
            .await
            .expect("ReceiveMessage")
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

/// A new rooms queue (and its dead-letter queue), as [`fresh_queue`], named so that the IAM
/// check binds requests to it to the functions' `ROOMS_QUEUE_URL`
/// ([`iam::ROOMS_QUEUE_PREFIX`]).
pub async fn fresh_rooms_queue(
    visibility: std::time::Duration,
    max_receives: u32,
) -> (SqsQueue, SqsQueue) {
    let client = sqs_client().await;
    let name = unique_name(iam::ROOMS_QUEUE_PREFIX.trim_end_matches('-'));
    SqsQueue::create(client, &name, visibility, max_receives)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "could not create a queue on the SQS server at {}: {e:?}",
                sqs_endpoint()
            )
        })
}

/// A new work queue (and its dead-letter queue) on the SQS-compatible server: received
/// messages hide for `visibility` (whole seconds) and are dead-lettered after `max_receives`.
pub async fn fresh_queue(
    visibility: std::time::Duration,
    max_receives: u32,
) -> (SqsQueue, SqsQueue) {
    let client = sqs_client().await;
    SqsQueue::create(client, &unique_name("q"), visibility, max_receives)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "could not create a queue on the SQS server at {}: {e:?}",
                sqs_endpoint()
            )
        })
}

/// A table name no other test (or earlier run against the same DynamoDB Local) uses.
#[must_use]
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store on a new, empty table in DynamoDB Local, created from `marquee::schema`.
pub async fn fresh_table() -> DynamoStore {
    let store = marquee_local::dynamo_store(&dynamodb_endpoint(), &unique_name("t")).await;
    store.create_table().await.unwrap_or_else(|e| {
        panic!(
            "could not create a table in DynamoDB Local at {}: {e:?}",
            dynamodb_endpoint()
        )
    });
    store
}

/// A raw DynamoDB client for DynamoDB Local, to look at items behind the store's back.
pub async fn raw_dynamodb() -> aws_sdk_dynamodb::Client {
    let sdk = marquee::lambda::deps::sdk_config(Target::Local).await;
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(dynamodb_endpoint())
            .build(),
    )
}

/// Every item in a table (a Scan: fine for a test table).
pub async fn all_items(
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let client = raw_dynamodb().await;
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return items,
        }
    }
}

/// Every item in a table but the operator totals (`STATS#<shard>`, counted in and out by
/// every connection and subscription write): the records a test wrote.
pub async fn records_but_totals(
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let mut items = all_items(table).await;
    items.retain(|item| {
        item.get(marquee::schema::PK)
            .and_then(|pk| pk.as_s().ok())
            .is_none_or(|pk| !pk.starts_with(marquee::schema::STATS_PREFIX))
    });
    items
}

/// The Management API stand-in, on a free port.
pub async fn management_api() -> ManagementApi {
    ManagementApi::start(0)
        .await
        .expect("start the Management API stand-in")
}

/// The production [`ManagementPush`] (the real SDK client) pointed at the stand-in.
pub async fn management_push(api: &ManagementApi) -> ManagementPush {
    iam::record();
    let sdk = marquee::lambda::deps::sdk_config(Target::Local).await;
    ManagementPush::new(&sdk, &api.endpoint())
}

/// The documented local-only secret the `events/` tokens are signed with.
#[must_use]
pub fn dev_secret() -> Secret {
    Secret::new(DEV_TOKEN_SECRET).expect("dev secret is long enough")
}

/// A verifier for the dev secret and the default audience.
#[must_use]
pub fn dev_verifier() -> TokenVerifier {
    TokenVerifier::new(&dev_secret(), marquee::config::DEFAULT_AUDIENCE)
}

/// The repository's `events/` folder.
#[must_use]
pub fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// An `events/` file as JSON.
#[must_use]
pub fn event_json(name: &str) -> serde_json::Value {
    let path = events_dir().join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// An `events/` file as an API Gateway WebSocket request.
#[must_use]
pub fn websocket_event(name: &str) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(event_json(name))
        .unwrap_or_else(|e| panic!("{name} is not a WebSocket event: {e}"))
}
