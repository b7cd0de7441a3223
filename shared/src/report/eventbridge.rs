//! The EventBridge adapter of [`Events`]: one `PutEvents` entry per `FanoutCompleted`.
//!
//! `PutEvents` answers 200 even when an entry failed (`FailedEntryCount`, an `ErrorCode` on
//! the entry), so the entry is checked, not only the call. An entry is at most 256 KB; this
//! detail is a few hundred bytes.

use aws_config::SdkConfig;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::{BoxFuture, Events, EventsError, FANOUT_COMPLETED_DETAIL_TYPE, FanoutCompleted};

/// [`Events`] on an EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgeEvents {
    client: Client,
    bus: String,
    source: String,
}

impl EventBridgeEvents {
    /// Sends to `bus` (a name or ARN; `default` for the account's default bus) as `source`,
    /// through `endpoint` when given (a local stand-in).
    #[must_use]
    pub fn new(sdk: &SdkConfig, bus: &str, source: &str, endpoint: Option<&str>) -> Self {
        let mut builder = aws_sdk_eventbridge::config::Builder::from(sdk);
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bus: bus.to_owned(),
            source: source.to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("PutEvents refused the entry: {code}: {message}")]
struct EntryFailed {
    code: String,
    message: String,
}

impl Events for EventBridgeEvents {
    fn fanout_completed<'a>(
        &'a self,
        detail: &'a FanoutCompleted,
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async move {
            let json = serde_json::to_string(detail).map_err(|e| EventsError(Box::new(e)))?;
            let entry = PutEventsRequestEntry::builder()
                .event_bus_name(&self.bus)
                .source(&self.source)
                .detail_type(FANOUT_COMPLETED_DETAIL_TYPE)
                .detail(json)
                .build();
            let out = self
                .client
                .put_events()
                .entries(entry)
                .send()
                .await
                .map_err(|e| EventsError(Box::new(e)))?;
            match out.entries().first() {
                Some(entry) if entry.error_code().is_some() => {
                    Err(EventsError(Box::new(EntryFailed {
                        code: entry.error_code().unwrap_or_default().to_owned(),
                        message: entry.error_message().unwrap_or_default().to_owned(),
                    })))
                }
                _ if out.failed_entry_count() > 0 => Err(EventsError(Box::new(EntryFailed {
                    code: "FailedEntryCount".into(),
                    message: out.failed_entry_count().to_string(),
                }))),
                _ => Ok(()),
            }
        })
    }
}
