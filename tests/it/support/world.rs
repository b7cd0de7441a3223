//! The fan-out world: a fresh table, the Management API stand-in, and a work queue on the SQS
//! server, with `notify` and `deliver` wired to them as in AWS; and the fans and events the
//! fan-out tests record and send (notify, fanout, resume, rooms, report, admin, trace).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use futures_util::StreamExt;
use marquee::config::{Config, FanoutSettings};
use marquee::domain::{ArtistList, Connection, now_epoch_seconds};
use marquee::lambda::deps::table_budget;
use marquee::lambda::notify::NotifyFailure;
use marquee::lambda::{DeliverDeps, NotifyDeps, notify};
use marquee::push::management::ManagementPush;
use marquee::queue::sqs::SqsQueue;
use marquee::routes::notify::Summary;
use marquee::store::Store;
use marquee::store::dynamo::DynamoStore;
use marquee_tests::mgmt::ManagementApi;
use marquee_tests::pipeline::{Drained, Workers, drain};
use marquee_tests::{
    all_items, event_json, fresh_queue, fresh_table, management_api, management_push,
};
use serde_json::{Value, json};

/// The table, the stand-in, and a work queue on the SQS server, with `notify` and `deliver`
/// wired to them as in AWS.
pub(crate) struct World {
    pub(crate) deps: NotifyDeps<DynamoStore, ManagementPush, SqsQueue>,
    pub(crate) deliver: DeliverDeps<DynamoStore, ManagementPush, SqsQueue>,
    pub(crate) dead_letters: SqsQueue,
    pub(crate) api: ManagementApi,
}

pub(crate) fn fast(page_size: u32) -> FanoutSettings {
    FanoutSettings {
        page_size,
        retry_base: Duration::from_millis(5),
        budget: 0,
        rate_per_invocation: None,
        ..FanoutSettings::default()
    }
}

pub(crate) async fn world(page_size: u32) -> World {
    world_with(fast(page_size), Duration::from_secs(10)).await
}

/// A world whose queue hides a received item for `visibility` (longer than an item takes,
/// as the template's six times the function timeout: shorter makes copies), and
/// dead-letters it on its 50th receive.
pub(crate) async fn world_with(fanout: FanoutSettings, visibility: Duration) -> World {
    let api = management_api().await;
    let store = fresh_table().await;
    let push = management_push(&api).await;
    let (queue, dead_letters) = fresh_queue(visibility, 50).await;
    // One account budget in the table, shared by notify and deliver as in AWS.
    let budget = table_budget(&store, fanout.budget);
    let mut config = Config::new(store.table());
    config.fanout = fanout;
    World {
        deps: NotifyDeps::new(
            &config,
            store.clone(),
            push.clone(),
            queue.clone(),
            Arc::clone(&budget),
            Arc::new(marquee::report::NoEvents),
        ),
        deliver: DeliverDeps::new(
            &config,
            store,
            push,
            queue,
            budget,
            Arc::new(marquee::report::NoEvents),
        ),
        dead_letters,
        api,
    }
}

impl World {
    /// Records `count` connections `<prefix>-NNNN` subscribed to `artist`, expiring in `ttl`.
    pub(crate) async fn subscribers(
        &self,
        prefix: &str,
        artist: &str,
        count: usize,
        ttl: i64,
    ) -> Vec<String> {
        let ids: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:05}")).collect();
        subscribe_all(&self.deps.store, &ids, artist, ttl).await;
        ids
    }

    pub(crate) async fn notify(&self, event: Value) -> Result<Summary, NotifyFailure> {
        let event: EventBridgeEvent<Value> = serde_json::from_value(event).unwrap();
        notify::handle(&self.deps, event, None).await
    }

    /// Runs `deliver` workers until the work queue is empty.
    pub(crate) async fn drain(&self, workers: Workers) -> Drained {
        drain(&self.deliver, workers, Duration::from_secs(120)).await
    }

    pub(crate) fn delivery_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for d in self.api.delivered() {
            *counts.entry(d.connection_id).or_default() += 1;
        }
        counts
    }

    pub(crate) async fn pks(&self) -> Vec<String> {
        all_items(self.deps.store.table())
            .await
            .iter()
            .map(|i| i["pk"].as_s().unwrap().clone())
            .collect()
    }

    /// The `notification` frames the Management API stand-in took for `id`.
    pub(crate) fn notifications_to(&self, id: &str) -> usize {
        self.api
            .delivered_to(id)
            .iter()
            .filter(|d| d.json().unwrap()["type"] == "notification")
            .count()
    }

    /// The table's items of connection `id` (its record and its subscriptions).
    pub(crate) async fn records_of(&self, id: &str) -> usize {
        let pk = format!("CONN#{id}");
        self.pks().await.iter().filter(|p| **p == pk).count()
    }
}

/// Records a connection for each of `ids`, subscribed to `artist` when given, expiring in
/// `ttl`.
async fn record_all<S: Store>(store: &S, ids: &[String], artist: Option<&str>, ttl: i64) {
    let now = now_epoch_seconds();
    let artists = artist.map(|a| ArtistList::parse(&[a]).unwrap());
    futures_util::stream::iter(ids)
        .for_each_concurrent(32, |id| {
            let artists = artists.as_ref();
            async move {
                let connection = Connection::builder(id)
                    .user("fan")
                    .connected_at(now)
                    .lifetime(ttl)
                    .build();
                store.put_connection(&connection).await.unwrap();
                if let Some(artists) = artists {
                    store
                        .add_subscriptions(&connection, 0, artists.as_slice())
                        .await
                        .unwrap();
                }
            }
        })
        .await;
}

/// Records a connection for each of `ids`, subscribed to `artist`, expiring in `ttl`.
pub(crate) async fn subscribe_all<S: Store>(store: &S, ids: &[String], artist: &str, ttl: i64) {
    record_all(store, ids, Some(artist), ttl).await;
}

/// Records one connection `id` with no subscription, expiring in 10 minutes; returns its id.
pub(crate) async fn connect_fresh(w: &World, id: &str) -> String {
    connect_all(&w.deps.store, &[id.to_owned()], 600).await;
    id.to_owned()
}

/// Records a connection for each of `ids`, with no subscription, expiring in `ttl`.
pub(crate) async fn connect_all<S: Store>(store: &S, ids: &[String], ttl: i64) {
    record_all(store, ids, None, ttl).await;
}

pub(crate) fn tickets_on_sale(id: &str, artist: &str) -> Value {
    let mut event = event_json("notify.json");
    event["id"] = json!(id);
    event["detail"]["artist"] = json!(artist);
    event
}
