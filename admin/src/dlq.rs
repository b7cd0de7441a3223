//! `dlq`: what each dead-letter queue holds, summarised by event, and its re-drive.
//!
//! | queue | holds | re-drive |
//! |---|---|---|
//! | `events` (`EventDeadLetterQueueUrl`) | events EventBridge could not deliver to notify | `PutEvents` of each event (its `source`, `detail-type`, `detail` and `time`), then the message is deleted |
//! | `notify` (`NotifyFailureQueueUrl`) | Lambda's records of events notify failed on | the same, with the record's `requestPayload` |
//! | `work` (`WorkDeadLetterQueueUrl`) | work items that failed 5 receives | SQS's message move task back to the work queue; where the server has none (moto, a local SQS), each item is sent again to the queue that dead-lettered it (its `AWSTraceHeader` kept), then deleted |
//! | `rooms` (`RoomsDeadLetterQueueUrl`) | room messages' work items that failed every receive | the same, back to the rooms queue |
//!
//! Reading a queue receives its messages (hidden for [`HOLD`] while read) and makes them
//! visible again at once after a summary: SQS has no peek. A message that cannot be re-driven
//! is made visible again and counted as failed; nothing is deleted that was not re-sent.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_eventbridge::primitives::{DateTime, DateTimeFormat};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
    QueueAttributeName,
};
use marquee::work::WorkItem;
use serde_json::{Value, json};

use crate::AdminError;
use crate::render::{Output, Table};

/// How long a message stays hidden while it is read or re-driven.
pub const HOLD: Duration = Duration::from_secs(120);
/// Most messages read from one queue in one run.
pub const READ_MAX: usize = 10_000;

/// One of the stack's four dead-letter queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `EventDeadLetterQueueUrl`: events EventBridge could not deliver.
    Events,
    /// `NotifyFailureQueueUrl`: Lambda's records of events notify failed on.
    Notify,
    /// `WorkDeadLetterQueueUrl`: work items that failed every receive.
    Work,
    /// `RoomsDeadLetterQueueUrl`: room messages' work items that failed every receive.
    Rooms,
}

impl Kind {
    /// `events`, `notify`, `work`, `rooms`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Notify => "notify",
            Self::Work => "work",
            Self::Rooms => "rooms",
        }
    }

    /// The stack output holding the queue's URL.
    #[must_use]
    pub fn output(self) -> &'static str {
        match self {
            Self::Events => "EventDeadLetterQueueUrl",
            Self::Notify => "NotifyFailureQueueUrl",
            Self::Work => "WorkDeadLetterQueueUrl",
            Self::Rooms => "RoomsDeadLetterQueueUrl",
        }
    }

    /// Whether it holds work items (re-driven to the queue they came from), not events (put
    /// on a bus again).
    #[must_use]
    pub fn holds_work_items(self) -> bool {
        matches!(self, Self::Work | Self::Rooms)
    }

    /// Every queue, in the order they are listed.
    pub const ALL: [Self; 4] = [Self::Events, Self::Notify, Self::Work, Self::Rooms];
}

/// A queue to read: its kind and URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetters {
    /// Which queue.
    pub kind: Kind,
    /// Its URL.
    pub url: String,
}

/// One dead letter, read and understood.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Letter {
    receipt: String,
    body: String,
    trace_header: Option<String>,
    /// The event id (`-` when the body says none).
    event: String,
    /// What it was about: the artist, or the work item's audience and shard.
    about: String,
    /// Why it failed, as far as the message says.
    error: String,
}

/// One event's letters in one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLetters {
    /// The event id.
    pub event: String,
    /// How many messages.
    pub messages: usize,
    /// What they are about (the first message's).
    pub about: String,
    /// Why they failed (the first message's).
    pub error: String,
}

/// What a queue holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Which queue.
    pub kind: Kind,
    /// Its messages, by event (sorted by event id).
    pub events: Vec<EventLetters>,
}

impl Summary {
    /// Every message read.
    #[must_use]
    pub fn messages(&self) -> usize {
        self.events.iter().map(|e| e.messages).sum()
    }
}

/// `dlq`: the queues' summaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summaries(pub Vec<Summary>);

impl Output for Summaries {
    fn table(&self) -> String {
        let mut table = Table::new(&["QUEUE", "EVENT", "MESSAGES", "ABOUT", "ERROR"]);
        for summary in &self.0 {
            if summary.events.is_empty() {
                table.row(vec![
                    summary.kind.name().to_owned(),
                    "-".into(),
                    "0".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
            for e in &summary.events {
                table.row(vec![
                    summary.kind.name().to_owned(),
                    e.event.clone(),
                    e.messages.to_string(),
                    e.about.clone(),
                    e.error.clone(),
                ]);
            }
        }
        table.render()
    }

    fn json(&self) -> Value {
        json!({
            "queues": self.0.iter().map(|s| json!({
                "queue": s.kind.name(),
                "messages": s.messages(),
                "events": s.events.iter().map(|e| json!({
                    "event": e.event,
                    "messages": e.messages,
                    "about": e.about,
                    "error": e.error,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// How a queue was re-driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// SQS's message move task (`StartMessageMoveTask`).
    MoveTask,
    /// Each message sent again to the queue that dead-lettered it.
    Resent,
    /// Each event put on the bus again (`PutEvents`).
    PutEvents,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Self::MoveTask => "message-move-task",
            Self::Resent => "resent",
            Self::PutEvents => "put-events",
        }
    }
}

/// What one queue's re-drive did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    /// Which queue.
    pub kind: Kind,
    /// How.
    pub method: Method,
    /// Messages moved or re-sent (and deleted from the dead-letter queue).
    pub moved: u64,
    /// Messages that could not be (left in the queue, visible).
    pub failed: u64,
}

/// `dlq --redrive`: every queue's re-drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrives(pub Vec<Redriven>);

impl Redrives {
    /// Whether every message was re-driven.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.0.iter().all(|r| r.failed == 0)
    }
}

impl Output for Redrives {
    fn table(&self) -> String {
        let mut table = Table::new(&["QUEUE", "METHOD", "MOVED", "FAILED"]);
        for r in &self.0 {
            table.row(vec![
                r.kind.name().to_owned(),
                r.method.name().to_owned(),
                r.moved.to_string(),
                r.failed.to_string(),
            ]);
        }
        table.render()
    }

    fn json(&self) -> Value {
        json!({
            "redriven": self.0.iter().map(|r| json!({
                "queue": r.kind.name(),
                "method": r.method.name(),
                "moved": r.moved,
                "failed": r.failed,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Where a re-drive sends things.
#[derive(Debug, Clone)]
pub struct Redrive {
    /// The EventBridge client (or one for an EventBridge-compatible endpoint) and the bus,
    /// for the `events` and `notify` queues.
    pub events: Option<(aws_sdk_eventbridge::Client, Option<String>)>,
    /// Use SQS's message move task for the `work` queue (AWS); otherwise send again.
    pub move_task: bool,
}

/// Reads every queue and summarises it by event; every message is visible again after.
///
/// # Errors
/// [`AdminError::Failed`] when a queue cannot be read.
pub async fn summarise(
    sqs: &aws_sdk_sqs::Client,
    queues: &[DeadLetters],
    progress: &mut dyn FnMut(&str),
) -> Result<Summaries, AdminError> {
    let mut summaries = Vec::with_capacity(queues.len());
    for queue in queues {
        let letters = read(sqs, queue, progress).await?;
        release(sqs, &queue.url, &letters).await?;
        summaries.push(summary(queue.kind, &letters));
    }
    Ok(Summaries(summaries))
}

/// Re-drives every queue (see the module's table).
///
/// # Errors
/// [`AdminError::Usage`] when a queue needs an event bus and none is known;
/// [`AdminError::Failed`] when a queue cannot be read or its move task started.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    queues: &[DeadLetters],
    how: &Redrive,
    progress: &mut dyn FnMut(&str),
) -> Result<Redrives, AdminError> {
    if how.events.is_none() && queues.iter().any(|q| !q.kind.holds_work_items()) {
        return Err(AdminError::Usage(
            "re-driving the events and notify queues puts their events on a bus: give \
             --stack, or --events-endpoint for the local gateway"
                .into(),
        ));
    }
    let mut done = Vec::with_capacity(queues.len());
    for queue in queues {
        let redriven = match (queue.kind, &how.events) {
            (kind, _) if kind.holds_work_items() && how.move_task => {
                move_task(sqs, queue, progress).await?
            }
            (kind, _) if kind.holds_work_items() => resend(sqs, queue, progress).await?,
            (_, Some((client, bus))) => {
                put_events(sqs, queue, client, bus.as_deref(), progress).await?
            }
            (_, None) => continue,
        };
        done.push(redriven);
    }
    Ok(Redrives(done))
}

async fn read(
    sqs: &aws_sdk_sqs::Client,
    queue: &DeadLetters,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Letter>, AdminError> {
    let mut letters: Vec<Letter> = Vec::new();
    while letters.len() < READ_MAX {
        let out = sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .visibility_timeout(i32::try_from(HOLD.as_secs()).unwrap_or(120))
            .wait_time_seconds(if letters.is_empty() { 1 } else { 0 })
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .send()
            .await
            .map_err(|e| {
                AdminError::Failed(format!(
                    "ReceiveMessage {}: {}",
                    queue.url,
                    crate::chain(&e)
                ))
            })?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let error = m
                .message_attributes
                .as_ref()
                .and_then(|a| a.get("ERROR_MESSAGE").or_else(|| a.get("ERROR_CODE")))
                .and_then(|v| v.string_value.clone());
            let trace_header = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))
                .cloned();
            let body = m.body.unwrap_or_default();
            let (event, about, why) = understand(queue.kind, &body);
            letters.push(Letter {
                receipt: m.receipt_handle.unwrap_or_default(),
                body,
                trace_header,
                event,
                about,
                error: error.unwrap_or(why),
            });
        }
        progress(&format!(
            "{}: {} messages read",
            queue.kind.name(),
            letters.len()
        ));
    }
    Ok(letters)
}

/// The event id, what it is about and why it failed, from a body of `kind`.
fn understand(kind: Kind, body: &str) -> (String, String, String) {
    let unknown = || ("-".to_owned(), "not understood".to_owned(), "-".to_owned());
    match kind {
        Kind::Events | Kind::Notify => {
            let Ok(value) = serde_json::from_str::<Value>(body) else {
                return unknown();
            };
            let event = if kind == Kind::Events {
                &value
            } else {
                value.get("requestPayload").unwrap_or(&Value::Null)
            };
            let id = event
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_owned();
            let about = match (
                event.get("detail-type").and_then(Value::as_str),
                event.pointer("/detail/artist").and_then(Value::as_str),
            ) {
                (Some(kind), Some(artist)) => format!("{kind} {artist}"),
                (Some(kind), None) => kind.to_owned(),
                _ => "-".to_owned(),
            };
            let error = match (
                value
                    .pointer("/responsePayload/errorType")
                    .and_then(Value::as_str),
                value
                    .pointer("/responsePayload/errorMessage")
                    .and_then(Value::as_str),
            ) {
                (Some(t), Some(m)) => format!("{t}: {m}"),
                (Some(t), None) => t.to_owned(),
                _ => "-".to_owned(),
            };
            (id, about, error)
        }
        Kind::Work | Kind::Rooms => match WorkItem::from_json(body) {
            Ok(item) => {
                let mut about =
                    format!("{} shard {}", item.broadcast.audience, item.shard.number());
                if !item.only.is_empty() {
                    about.push_str(&format!(" ({} connections)", item.only.len()));
                }
                (
                    item.broadcast.id.as_str().to_owned(),
                    about,
                    "failed every receive".to_owned(),
                )
            }
            Err(err) => (
                "-".to_owned(),
                "not a work item".to_owned(),
                err.to_string(),
            ),
        },
    }
}

fn summary(kind: Kind, letters: &[Letter]) -> Summary {
    let mut by_event: BTreeMap<&str, EventLetters> = BTreeMap::new();
    for letter in letters {
        by_event
            .entry(&letter.event)
            .and_modify(|e| e.messages += 1)
            .or_insert_with(|| EventLetters {
                event: letter.event.clone(),
                messages: 1,
                about: letter.about.clone(),
                error: letter.error.clone(),
            });
    }
    Summary {
        kind,
        events: by_event.into_values().collect(),
    }
}

/// Makes `letters` visible again at once.
async fn release(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    letters: &[Letter],
) -> Result<(), AdminError> {
    for chunk in letters.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, l)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&l.receipt)
                    .visibility_timeout(0)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AdminError::Failed(e.to_string()))?;
        sqs.change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                AdminError::Failed(format!(
                    "ChangeMessageVisibilityBatch {url}: {}",
                    crate::chain(&e)
                ))
            })?;
    }
    Ok(())
}

/// Deletes `letters` (re-driven).
async fn delete(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    letters: &[&Letter],
) -> Result<(), AdminError> {
    for chunk in letters.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, l)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&l.receipt)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AdminError::Failed(e.to_string()))?;
        sqs.delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                AdminError::Failed(format!("DeleteMessageBatch {url}: {}", crate::chain(&e)))
            })?;
    }
    Ok(())
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, AdminError> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| AdminError::Failed(format!("GetQueueAttributes {url}: {}", crate::chain(&e))))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| AdminError::Failed(format!("{url} has no QueueArn")))
}

/// SQS's move task, back to the queue each message came from; waits for it to finish.
async fn move_task(
    sqs: &aws_sdk_sqs::Client,
    queue: &DeadLetters,
    progress: &mut dyn FnMut(&str),
) -> Result<Redriven, AdminError> {
    let arn = queue_arn(sqs, &queue.url).await?;
    let started = sqs
        .start_message_move_task()
        .source_arn(&arn)
        .send()
        .await
        .map_err(|e| {
            AdminError::Failed(format!("StartMessageMoveTask {arn}: {}", crate::chain(&e)))
        })?;
    let handle = started.task_handle.unwrap_or_default();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tasks = sqs
            .list_message_move_tasks()
            .source_arn(&arn)
            .send()
            .await
            .map_err(|e| {
                AdminError::Failed(format!("ListMessageMoveTasks {arn}: {}", crate::chain(&e)))
            })?;
        let Some(task) =
            tasks.results.unwrap_or_default().into_iter().find(|t| {
                t.task_handle.as_deref() == Some(handle.as_str()) || t.task_handle.is_none()
            })
        else {
            continue;
        };
        let moved = u64::try_from(task.approximate_number_of_messages_moved).unwrap_or(0);
        let status = task.status.unwrap_or_default();
        progress(&format!("work: move task {status}, {moved} messages moved"));
        match status.as_str() {
            "RUNNING" | "CANCELLING" => {}
            "COMPLETED" => {
                return Ok(Redriven {
                    kind: queue.kind,
                    method: Method::MoveTask,
                    moved,
                    failed: 0,
                });
            }
            _ => {
                let left = u64::try_from(task.approximate_number_of_messages_to_move.unwrap_or(0))
                    .unwrap_or(0)
                    .saturating_sub(moved);
                return Err(AdminError::Failed(format!(
                    "the move task ended {status} after {moved} messages ({left} left): {}",
                    task.failure_reason.unwrap_or_default()
                )));
            }
        }
    }
}

/// Sends each message again to the one queue that dead-letters into this one, then deletes it.
async fn resend(
    sqs: &aws_sdk_sqs::Client,
    queue: &DeadLetters,
    progress: &mut dyn FnMut(&str),
) -> Result<Redriven, AdminError> {
    let sources = sqs
        .list_dead_letter_source_queues()
        .queue_url(&queue.url)
        .send()
        .await
        .map_err(|e| {
            AdminError::Failed(format!(
                "ListDeadLetterSourceQueues {}: {}",
                queue.url,
                crate::chain(&e)
            ))
        })?
        .queue_urls;
    let [source] = sources.as_slice() else {
        return Err(AdminError::Failed(format!(
            "{} is the dead-letter queue of {} queues; re-sending needs exactly one",
            queue.url,
            sources.len()
        )));
    };
    let letters = read(sqs, queue, progress).await?;
    let mut redriven = Redriven {
        kind: queue.kind,
        method: Method::Resent,
        moved: 0,
        failed: 0,
    };
    // One SendMessage each (an operator's re-drive, not a hot path): the `AWSTraceHeader`
    // system attribute goes with it everywhere (moto keeps it on SendMessage only).
    for letter in &letters {
        let mut send = sqs
            .send_message()
            .queue_url(source)
            .message_body(&letter.body);
        if let Some(header) = &letter.trace_header {
            let value = MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(header)
                .build()
                .map_err(|e| AdminError::Failed(e.to_string()))?;
            send = send.message_system_attributes(
                MessageSystemAttributeNameForSends::AwsTraceHeader,
                value,
            );
        }
        match send.send().await {
            Ok(_) => {
                delete(sqs, &queue.url, &[letter]).await?;
                redriven.moved += 1;
            }
            Err(_) => {
                release(sqs, &queue.url, std::slice::from_ref(letter)).await?;
                redriven.failed += 1;
            }
        }
        progress(&format!("work: {} re-sent", redriven.moved));
    }
    Ok(redriven)
}

/// Puts each letter's event on the bus again (`source`, `detail-type`, `detail`, `time`),
/// deleting the letters whose entries were accepted.
async fn put_events(
    sqs: &aws_sdk_sqs::Client,
    queue: &DeadLetters,
    events: &aws_sdk_eventbridge::Client,
    bus: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<Redriven, AdminError> {
    let letters = read(sqs, queue, progress).await?;
    let mut redriven = Redriven {
        kind: queue.kind,
        method: Method::PutEvents,
        moved: 0,
        failed: 0,
    };
    let mut unusable = Vec::new();
    let mut usable = Vec::new();
    for letter in &letters {
        match entry(queue.kind, &letter.body, bus) {
            Some(entry) => usable.push((letter, entry)),
            None => unusable.push(letter.clone()),
        }
    }
    release(sqs, &queue.url, &unusable).await?;
    redriven.failed += u64::try_from(unusable.len()).unwrap_or(0);
    for chunk in usable.chunks(10) {
        let out = events
            .put_events()
            .set_entries(Some(chunk.iter().map(|(_, e)| e.clone()).collect()))
            .send()
            .await
            .map_err(|e| AdminError::Failed(format!("PutEvents: {}", crate::chain(&e))))?;
        let results = out.entries.unwrap_or_default();
        let mut sent = Vec::new();
        let mut kept = Vec::new();
        for (i, (letter, _)) in chunk.iter().enumerate() {
            let accepted = results
                .get(i)
                .is_some_and(|r| r.error_code.is_none() && r.event_id.is_some());
            if accepted {
                sent.push(*letter);
            } else {
                kept.push((*letter).clone());
            }
        }
        delete(sqs, &queue.url, &sent).await?;
        release(sqs, &queue.url, &kept).await?;
        redriven.moved += u64::try_from(sent.len()).unwrap_or(0);
        redriven.failed += u64::try_from(kept.len()).unwrap_or(0);
        progress(&format!(
            "{}: {} put again",
            queue.kind.name(),
            redriven.moved
        ));
    }
    Ok(redriven)
}

/// The `PutEvents` entry that publishes a dead letter's event again; `None` when the body
/// holds no event.
fn entry(kind: Kind, body: &str, bus: Option<&str>) -> Option<PutEventsRequestEntry> {
    let value: Value = serde_json::from_str(body).ok()?;
    let event = if kind == Kind::Notify {
        value.get("requestPayload")?
    } else {
        &value
    };
    let source = event.get("source")?.as_str()?;
    let detail_type = event.get("detail-type")?.as_str()?;
    let detail = event.get("detail")?;
    let time = event
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::from_str(t, DateTimeFormat::DateTime).ok());
    Some(
        PutEventsRequestEntry::builder()
            .source(source)
            .detail_type(detail_type)
            .detail(detail.to_string())
            .set_time(time)
            .set_event_bus_name(bus.map(str::to_owned))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use marquee::lambda::notify::DEFAULT_ON_SALE_DETAIL_TYPE as ON_SALE;
    use marquee::report::DEFAULT_EVENT_SOURCE as SOURCE;

    #[test]
    fn an_eventbridge_dead_letter_is_understood_and_put_again_with_its_time() {
        let body = json!({
            "id": "e-1", "source": SOURCE, "detail-type": ON_SALE, "time": "2026-11-22T10:00:00Z",
            "detail": {"artist": "Adele", "venue": "O2"}
        })
        .to_string();
        assert_eq!(
            understand(Kind::Events, &body),
            ("e-1".into(), format!("{ON_SALE} Adele"), "-".into())
        );
        let entry = entry(Kind::Events, &body, Some("bus")).unwrap();
        assert_eq!(entry.source(), Some(SOURCE));
        assert_eq!(entry.detail_type(), Some(ON_SALE));
        assert_eq!(entry.detail(), Some(r#"{"artist":"Adele","venue":"O2"}"#));
        assert_eq!(entry.time().map(|t| t.secs()), Some(1_795_341_600));
        assert_eq!(entry.event_bus_name(), Some("bus"));
    }

    #[test]
    fn a_lambda_failure_record_gives_its_payload_and_its_error() {
        let body = json!({
            "requestPayload": {
                "id": "e-2", "source": SOURCE, "detail-type": ON_SALE, "detail": {"artist": "Muse"}
            },
            "responsePayload": {"errorType": "FanoutFailed", "errorMessage": "store"}
        })
        .to_string();
        assert_eq!(
            understand(Kind::Notify, &body),
            (
                "e-2".into(),
                format!("{ON_SALE} Muse"),
                "FanoutFailed: store".into()
            )
        );
        assert_eq!(
            entry(Kind::Notify, &body, None).unwrap().source(),
            Some(SOURCE)
        );
    }

    #[test]
    fn a_body_that_holds_no_event_is_not_put_again() {
        assert_eq!(entry(Kind::Events, "not json", None), None);
        assert_eq!(entry(Kind::Notify, r#"{"requestPayload":{}}"#, None), None);
        assert_eq!(understand(Kind::Work, "{}").1, "not a work item".to_owned());
    }
}
