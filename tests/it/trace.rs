//! One trace across the work queue, against moto: what the work queue's adapter puts on the
//! items it sends (`AWSTraceHeader`), how `deliver` reads it, and that what `deliver` hands on
//! carries the producer's header.
//!
//! moto 5.2.5 keeps `MessageSystemAttributes` on `SendMessage` but drops them on
//! `SendMessageBatch` (what the adapter sends, as in AWS, where SQS keeps them). So what is
//! carried is read off the request as it goes to moto (an SDK interceptor), and how it is read
//! is tested with a message moto does keep it on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::types::{MessageSystemAttributeNameForSends, MessageSystemAttributeValue};
use marquee::domain::ConnectionId;
use marquee::lambda::deps::Target;
use marquee::queue::sqs::SqsQueue;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use marquee::domain::{Artist, EventId, Shard};
use marquee::queue::mapping::sqs_event;
use marquee::queue::{Inbox, Queue};
use marquee::trace::{self, AWS_TRACE_HEADER, TraceHeader};
use marquee::work::{Notification, WorkItem};
use serde_json::json;

use crate::support::world::{fast, world_with};

const HEADER: &str = "Root=1-6753c1a2-0e1b2c3d4e5f60718293a4b5;Parent=7a8b9c0d1e2f3a4b;Sampled=1";

fn header() -> TraceHeader {
    TraceHeader::parse(HEADER).unwrap()
}

fn items(count: u16) -> Vec<WorkItem> {
    let notification = Notification::new(
        EventId::parse("evt-trace").unwrap(),
        Artist::parse("Adele").unwrap(),
        json!({"artist": "Adele"}),
        "2026-11-22T10:00:00Z".into(),
    )
    .unwrap();
    (0..count)
        .map(|n| WorkItem::first(notification.broadcast().unwrap(), Shard::new(n).unwrap()))
        .collect()
}

/// Every message of the queue, as SQS gives it with its `AWSTraceHeader` (`None`: absent).
async fn headers_on(url: &str) -> Vec<Option<String>> {
    let sqs = marquee_tests::sqs_client().await;
    marquee_tests::receive_all(&sqs, url)
        .await
        .into_iter()
        .map(|m| {
            m.attributes
                .and_then(|mut a| a.remove(&MessageSystemAttributeName::AwsTraceHeader))
        })
        .collect()
}

/// The bodies of the requests a client sent, as they went out.
#[derive(Debug, Clone, Default)]
struct Sent(Arc<Mutex<Vec<serde_json::Value>>>);

impl Intercept for Sent {
    fn name(&self) -> &'static str {
        "sent"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_sqs::error::BoxError> {
        if let Some(body) = context.request().body().bytes()
            && let Ok(json) = serde_json::from_slice(body)
        {
            self.0.lock().unwrap().push(json);
        }
        Ok(())
    }
}

impl Sent {
    /// The `AWSTraceHeader` of every entry of every `SendMessageBatch` sent (`None`: absent).
    fn batch_headers(&self) -> Vec<Option<String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|body| body["Entries"].as_array())
            .flatten()
            .map(|entry| {
                entry["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }
}

/// The adapter on queue `url`, its requests recorded.
async fn recorded_queue(url: &str) -> (SqsQueue, Sent) {
    let sent = Sent::default();
    let sdk = marquee::lambda::deps::sdk_config(Target::Local).await;
    let client = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .endpoint_url(marquee_tests::sqs_endpoint())
            .interceptor(sent.clone())
            .build(),
    );
    (SqsQueue::new(client, url), sent)
}

/// Sends `body` with `AWSTraceHeader` (one `SendMessage`, which moto keeps it on).
async fn send_traced(url: &str, body: String) {
    marquee_tests::sqs_client()
        .await
        .send_message()
        .queue_url(url)
        .message_body(body)
        .message_system_attributes(
            MessageSystemAttributeNameForSends::AwsTraceHeader,
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(HEADER)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn items_sent_while_carrying_a_header_carry_it_as_aws_trace_header() {
    let (plain, _dead) = marquee_tests::fresh_queue(Duration::from_secs(30), 5).await;
    let (queue, sent) = recorded_queue(plain.url()).await;

    trace::carrying(Some(header()), queue.send(&items(12)))
        .await
        .unwrap();

    assert_eq!(sent.batch_headers(), vec![Some(HEADER.to_owned()); 12]);
    assert_eq!(
        headers_on(queue.url()).await.len(),
        12,
        "moto took them all"
    );
}

#[tokio::test]
async fn items_sent_outside_a_trace_carry_no_header() {
    let (plain, _dead) = marquee_tests::fresh_queue(Duration::from_secs(30), 5).await;
    let (queue, sent) = recorded_queue(plain.url()).await;

    queue.send(&items(2)).await.unwrap();

    assert_eq!(sent.batch_headers(), vec![None, None]);
}

#[tokio::test]
async fn moto_gives_the_header_back_and_deliver_reads_it_from_its_record() {
    let (queue, _dead) = marquee_tests::fresh_queue(Duration::from_secs(30), 5).await;
    send_traced(queue.url(), items(1)[0].to_json()).await;

    let received = queue.receive(10, Duration::from_secs(1)).await.unwrap();
    let event = sqs_event(&received);

    assert_eq!(event.records.len(), 1);
    let attributes = &event.records[0].attributes;
    assert_eq!(
        attributes.get(AWS_TRACE_HEADER).map(String::as_str),
        Some(HEADER)
    );
    let producer = TraceHeader::of_record(attributes).unwrap();
    assert_eq!(
        (producer.trace_id(), producer.parent(), producer.sampled()),
        (
            "1-6753c1a2-0e1b2c3d4e5f60718293a4b5",
            Some("7a8b9c0d1e2f3a4b"),
            Some(true)
        )
    );
}

/// `deliver`, working an item that carries the producer's header, hands the rest of its shard
/// on with that header, not a header of its own.
#[tokio::test]
async fn deliver_hands_the_rest_on_with_the_producer_s_header() {
    let mut w = world_with(fast(1), Duration::from_secs(30)).await;
    let ids = w.subscribers("tr", "Adele", 40, 600).await;
    // A shard holding at least two of them, so a page of one leaves a rest to hand on.
    let shard = Shard::all()
        .find(|s| {
            ids.iter()
                .filter(|id| Shard::of(&ConnectionId::parse(id).unwrap()) == *s)
                .count()
                >= 2
        })
        .unwrap();
    let notification = Notification::new(
        EventId::parse("evt-traced").unwrap(),
        Artist::parse("Adele").unwrap(),
        json!({"artist": "Adele"}),
        "2026-11-22T10:00:00Z".into(),
    )
    .unwrap()
    .with_seq(1);
    let item = WorkItem::first(notification.broadcast().unwrap(), shard);
    let url = w.deliver.queue.url().to_owned();
    send_traced(&url, item.to_json()).await;
    let (queue, sent) = recorded_queue(&url).await;
    w.deliver.queue = queue;
    let received = w
        .deliver
        .queue
        .receive(1, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(received.len(), 1);

    let response = marquee::lambda::deliver::handle(&w.deliver, sqs_event(&received), None).await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(sent.batch_headers(), vec![Some(HEADER.to_owned())]);
}
