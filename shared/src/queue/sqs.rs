//! The Amazon SQS adapter of [`Queue`] and [`Inbox`].

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
    QueueAttributeName, SendMessageBatchRequestEntry,
};

use super::{BATCH_MAX, Inbox, MESSAGE_MAX_BYTES, Queue, QueueError, Received};
use crate::budget::Lane;
use crate::work::WorkItem;

/// Rounds of resending the entries of a batch that SQS reported as failed.
const FAILED_ENTRY_RETRIES: u32 = 4;

/// [`Queue`] on an SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    /// The rooms' queue ([`Inbox::lane`]), when room messages have one.
    rooms: Option<Box<SqsQueue>>,
}

impl SqsQueue {
    /// An adapter for the queue at `url` through `client`.
    #[must_use]
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
            rooms: None,
        }
    }

    /// The same, with room messages' items sent to the queue at `rooms` (`ROOMS_QUEUE_URL`;
    /// `None` or empty: they share this one).
    #[must_use]
    pub fn with_rooms(mut self, rooms: Option<&str>) -> Self {
        self.rooms = rooms
            .filter(|url| !url.is_empty())
            .map(|url| Box::new(Self::new(self.client.clone(), url)));
        self
    }

    /// The queue's URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates a queue named `name` whose messages hide for `visibility` once received and
    /// move to a new dead-letter queue `<name>-dlq` on the receive after `max_receives`, both
    /// taking messages up to [`MESSAGE_MAX_BYTES`], as `template.yaml` sets up the work queue.
    /// For local servers and tests.
    ///
    /// # Errors
    /// The SDK error.
    pub async fn create(
        client: Client,
        name: &str,
        visibility: Duration,
        max_receives: u32,
    ) -> Result<(Self, Self), QueueError> {
        let dlq_url = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(
                QueueAttributeName::MaximumMessageSize,
                MESSAGE_MAX_BYTES.to_string(),
            )
            .send()
            .await
            .map_err(|e| QueueError::backend("CreateQueue", e))?
            .queue_url
            .unwrap_or_default();
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| QueueError::backend("GetQueueAttributes", e))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .unwrap_or_default();
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receives.max(1),
        });
        let url = client
            .create_queue()
            .queue_name(name)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility.as_secs().to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(
                QueueAttributeName::MaximumMessageSize,
                MESSAGE_MAX_BYTES.to_string(),
            )
            .send()
            .await
            .map_err(|e| QueueError::backend("CreateQueue", e))?
            .queue_url
            .unwrap_or_default();
        Ok((Self::new(client.clone(), url), Self::new(client, dlq_url)))
    }
}

impl Queue for SqsQueue {
    async fn send_after(&self, items: &[WorkItem], delay: Duration) -> Result<(), QueueError> {
        let Some(rooms) = &self.rooms else {
            return self.send_here(items, delay).await;
        };
        let (sale, room) = super::by_lane(items);
        if !sale.is_empty() {
            self.send_here(&sale, delay).await?;
        }
        if !room.is_empty() {
            rooms.send_here(&room, delay).await?;
        }
        Ok(())
    }
}

impl SqsQueue {
    /// Sends `items` to this queue, whatever their lane.
    async fn send_here(&self, items: &[WorkItem], delay: Duration) -> Result<(), QueueError> {
        let delay = i32::try_from(delay.min(super::MAX_DELAY).as_secs()).unwrap_or(0);
        let bodies = super::bodies(items)?;
        // The trace context of the work that sends them (`notify`'s invocation, or the item
        // `deliver` is working on), as X-Ray reads it: the `AWSTraceHeader` system attribute.
        let trace = crate::trace::carried()
            .map(|header| {
                MessageSystemAttributeValue::builder()
                    .data_type("String")
                    .string_value(header.as_str())
                    .build()
                    .map_err(|e| QueueError::backend("SendMessageBatch", e))
            })
            .transpose()?;
        for batch in super::batches(&bodies)? {
            let mut entries = batch
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body.clone())
                        .delay_seconds(delay)
                        .set_message_system_attributes(trace.clone().map(|value| {
                            std::collections::HashMap::from([(
                                MessageSystemAttributeNameForSends::AwsTraceHeader,
                                value,
                            )])
                        }))
                        .build()
                        .map_err(|e| QueueError::backend("SendMessageBatch", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut round = 0;
            while !entries.is_empty() {
                if round > FAILED_ENTRY_RETRIES {
                    return Err(QueueError::Unsent {
                        operation: "SendMessageBatch",
                        count: entries.len(),
                    });
                }
                if round > 0 {
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=50 << round))).await;
                }
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries.clone()))
                    .send()
                    .await
                    .map_err(|e| QueueError::backend("SendMessageBatch", e))?;
                let failed: Vec<&str> = out.failed.iter().map(|f| f.id.as_str()).collect();
                if let Some(sender_fault) = out.failed.iter().find(|f| f.sender_fault) {
                    // Our request is wrong (too large, bad characters): resending cannot help.
                    return Err(QueueError::backend(
                        "SendMessageBatch",
                        std::io::Error::other(format!(
                            "{}: {}",
                            sender_fault.code,
                            sender_fault.message.as_deref().unwrap_or("")
                        )),
                    ));
                }
                entries.retain(|e| failed.contains(&e.id.as_str()));
                round += 1;
            }
        }
        Ok(())
    }
}

impl Inbox for SqsQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max.clamp(1, BATCH_MAX)).unwrap_or(1))
            .wait_time_seconds(i32::try_from(wait.as_secs().min(20)).unwrap_or(0))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .send()
            .await
            .map_err(|e| QueueError::backend("ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Received {
                receive_count: m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
                trace_header: m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))
                    .cloned(),
                message_id: m.message_id.unwrap_or_default(),
                receipt: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| QueueError::backend("DeleteMessage", e))?;
        Ok(())
    }

    async fn hide_for(&self, receipt: &str, hidden: Duration) -> Result<(), QueueError> {
        let seconds =
            i32::try_from(super::lease::whole_seconds(hidden).as_secs()).unwrap_or(i32::MAX);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| QueueError::backend("ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn backlog(&self) -> Result<usize, QueueError> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| QueueError::backend("GetQueueAttributes", e))?
            .attributes
            .unwrap_or_default();
        Ok(attributes
            .values()
            .filter_map(|n| n.parse::<usize>().ok())
            .sum())
    }

    fn lane(&self, lane: Lane) -> &Self {
        match (lane, &self.rooms) {
            (Lane::Rooms, Some(rooms)) => rooms,
            _ => self,
        }
    }
}
