//! `rooms`: what one room message costs at different room sizes, counted, not timed.
//!
//! For each size it seeds a room (an artist with that many subscribers, one of which may
//! publish) in a fresh DynamoDB Local table, publishes one message through the real message
//! route, drains the work queue with the real `deliver`, and counts every DynamoDB request the
//! SDK sends (by operation, from an interceptor), every post the Management API stand-in
//! answers, and every work item. Prints one markdown row per size.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError as SdkBoxError;
use clap::Parser;
use futures_util::StreamExt;
use marquee::config::FanoutSettings;
use marquee::domain::{Artist, Connection, ConnectionId, now_epoch_seconds};
use marquee::lambda::{DeliverDeps, deliver};
use marquee::push::management::ManagementPush;
use marquee::queue::Inbox;
use marquee::queue::mapping::poll_once;
use marquee::queue::memory::MemoryQueue;
use marquee::routes::subscribe::{ClientFrame, SubscribeSettings, handle_frame};
use marquee::store::dynamo::DynamoStore;
use marquee_local::mgmt::ManagementApi;

use crate::BoxError;
use marquee::store::ConnectionStore;

/// Options of the `rooms` mode.
#[derive(Debug, Parser)]
pub(crate) struct Args {
    /// Room sizes (subscribers of the artist, the sender included).
    #[arg(long, value_delimiter = ',', default_value = "10,100,10000")]
    members: Vec<usize>,
    /// DynamoDB Local's URL (`scripts/bench rooms` starts one).
    #[arg(long)]
    dynamodb_endpoint: String,
}

const ROOM: &str = "Bench Room";

/// DynamoDB requests by operation, counted as the SDK sends them (retries included).
#[derive(Debug, Default, Clone)]
struct Requests(Arc<Mutex<BTreeMap<String, u64>>>);

impl Requests {
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "bench-request-counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), SdkBoxError> {
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.rsplit('.').next())
            .unwrap_or("?")
            .to_owned();
        *self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(operation)
            .or_default() += 1;
        Ok(())
    }
}

/// Runs the mode and prints its table.
pub(crate) async fn run(args: &Args) -> Result<(), BoxError> {
    let sdk = marquee::lambda::deps::sdk_config(marquee::lambda::deps::Target::Local).await;
    let requests = Requests::default();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(&args.dynamodb_endpoint)
            .interceptor(requests.clone())
            .build(),
    );
    let api = ManagementApi::start(0).await?;
    let push = ManagementPush::new(&sdk, &api.endpoint());
    let mut rows = Vec::new();
    for &members in &args.members {
        let table = format!("bench-rooms-{members}-{:08x}", fastrand::u32(..));
        let store = DynamoStore::new(client.clone(), table);
        store.create_table().await?;
        let sender = seed(&store, members).await?;
        let fanout = FanoutSettings {
            budget: 0,
            rate_per_invocation: None,
            ..FanoutSettings::default()
        };
        let queue = MemoryQueue::new(Duration::from_secs(60), 5);
        let deps = DeliverDeps::new(
            &crate::config_with(&fanout),
            store,
            push.clone(),
            queue,
            marquee::budget::unlimited(),
            Arc::new(marquee::report::NoEvents),
        );
        let posts_before = api.delivered().len();
        requests.take();
        let body = serde_json::json!({"action": "publish", "artist": ROOM, "data": {"kind": "chat", "text": "hello"}})
            .to_string();
        let outcome = handle_frame(
            &deps.ports(),
            &SubscribeSettings::default(),
            ClientFrame {
                connection: &sender,
                body: Some(&body),
                is_base64_encoded: false,
                now: now_epoch_seconds(),
                deadline: None,
            },
        )
        .await;
        let publish_requests = requests.take();
        let items = drain(&deps).await?;
        let deliver_requests = requests.take();
        rows.push(Row {
            members,
            reply: outcome.reply.label(),
            publish: publish_requests,
            deliver: deliver_requests,
            items,
            posts: api.delivered().len() - posts_before,
        });
    }
    print(&table(&rows));
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print(table: &str) {
    println!(
        "one room message (publish route, then deliver until the queue is empty), DynamoDB Local"
    );
    println!();
    print!("{table}");
}

/// Records `members` connections in the room, the first of which may publish; returns it.
async fn seed(store: &DynamoStore, members: usize) -> Result<ConnectionId, BoxError> {
    let now = now_epoch_seconds();
    let room = Artist::parse(ROOM)?;
    let results: Vec<Result<ConnectionId, BoxError>> = futures_util::stream::iter(0..members)
        .map(|i| {
            let room = room.clone();
            async move {
                let publish: &[&str] = if i == 0 { &[ROOM] } else { &[] };
                let connection = Connection::builder(&format!("room-{i:07}"))
                    .user(&format!("fan-{i}"))
                    .connected_at(now)
                    .lifetime(3600)
                    .publish(publish)
                    .build();
                store.put_connection(&connection).await?;
                store
                    .add_subscriptions(&connection, 0, std::slice::from_ref(&room))
                    .await?;
                Ok(connection.id)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut first = None;
    for result in results {
        let id = result?;
        if id.as_str() == "room-0000000" {
            first = Some(id);
        }
    }
    first.ok_or_else(|| "no room members".into())
}

/// Runs `deliver` on the work queue until it is empty; returns how many items it took.
async fn drain(
    deps: &DeliverDeps<DynamoStore, ManagementPush, MemoryQueue>,
) -> Result<usize, BoxError> {
    let mut items = 0;
    loop {
        let taken = poll_once(&deps.queue, 1, Duration::from_millis(10), |event| async {
            Ok::<_, std::convert::Infallible>(deliver::handle(deps, event, None).await)
        })
        .await?;
        items += taken;
        if taken == 0 && deps.queue.backlog().await? == 0 {
            return Ok(items);
        }
    }
}

struct Row {
    members: usize,
    reply: &'static str,
    publish: BTreeMap<String, u64>,
    deliver: BTreeMap<String, u64>,
    items: usize,
    posts: usize,
}

const READS: [&str; 2] = ["GetItem", "Query"];

fn split(requests: &BTreeMap<String, u64>) -> (u64, u64, String) {
    let reads = requests
        .iter()
        .filter(|(op, _)| READS.contains(&op.as_str()))
        .map(|(_, n)| n)
        .sum();
    let writes = requests
        .iter()
        .filter(|(op, _)| !READS.contains(&op.as_str()))
        .map(|(_, n)| n)
        .sum();
    let detail = requests
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    (reads, writes, detail)
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| room members | reply | reads (publish) | writes (publish) | work items | reads (deliver) | writes (deliver) | posts | DynamoDB requests by operation (publish; deliver) |\n|---:|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let (publish_reads, publish_writes, publish_detail) = split(&row.publish);
        let (deliver_reads, deliver_writes, deliver_detail) = split(&row.deliver);
        out.push_str(&format!(
            "| {} | {} | {publish_reads} | {publish_writes} | {} | {deliver_reads} | {deliver_writes} | {} | {publish_detail}; {} |\n",
            row.members,
            row.reply,
            row.items,
            row.posts,
            if deliver_detail.is_empty() { "none" } else { &deliver_detail },
        ));
    }
    out
}
