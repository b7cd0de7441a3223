//! What flows through the fan-out pipeline: a validated on-sale [`Notification`], and the
//! [`WorkItem`]s `notify` hands to `deliver` through the work queue.
//!
//! A work item carries everything `deliver` needs to resume without reading the event again:
//! the notification itself (its frame is at most 128 KiB, so an item stays under SQS's
//! 256 KiB message limit), the index shard, the stretch of it still to do, and how many
//! continuations led to it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Artist, ConnectionId, EventId, Shard};
use crate::store::{HistoryEntry, Span};
use crate::wire::{Frame, MAX_OUTBOUND_BYTES};

/// A validated "tickets on sale" event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NotificationWire", into = "NotificationWire")]
pub struct Notification {
    /// EventBridge's event id.
    pub id: EventId,
    /// `detail.artist`.
    pub artist: Artist,
    /// The whole `detail`, forwarded to clients.
    pub detail: Value,
    /// The event's time (RFC 3339).
    pub time: String,
    /// Its place in the artist's sequence, once `notify` has given it one.
    pub seq: Option<u64>,
}

/// Why an event or a work item can never be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Undeliverable(pub String);

impl Notification {
    /// A notification, refused when its frame would exceed what API Gateway posts.
    ///
    /// # Errors
    /// [`Undeliverable`] when the frame is over [`MAX_OUTBOUND_BYTES`].
    pub fn new(
        id: EventId,
        artist: Artist,
        detail: Value,
        time: String,
    ) -> Result<Self, Undeliverable> {
        let notification = Self {
            id,
            artist,
            detail,
            time,
            seq: None,
        };
        // Measured with the longest sequence number it could be given.
        let size = notification
            .clone()
            .with_seq(u64::MAX)
            .frame()
            .to_bytes()
            .len();
        if size > MAX_OUTBOUND_BYTES {
            return Err(Undeliverable(format!(
                "the notification frame would be {size} bytes; API Gateway posts at most {MAX_OUTBOUND_BYTES}"
            )));
        }
        Ok(notification)
    }

    /// The notification with its place in the artist's sequence.
    #[must_use]
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }

    /// A notification read back from its artist's history.
    ///
    /// # Errors
    /// [`Undeliverable`] when the entry does not hold a valid notification.
    pub fn from_history(entry: &HistoryEntry) -> Result<Self, Undeliverable> {
        let artist =
            Artist::parse(&entry.artist).map_err(|e| Undeliverable(format!("artist: {e}")))?;
        let detail = serde_json::from_str(&entry.detail)
            .map_err(|e| Undeliverable(format!("detail: {e}")))?;
        Ok(Self::new(entry.event.clone(), artist, detail, entry.time.clone())?.with_seq(entry.seq))
    }

    /// The frame clients receive.
    #[must_use]
    pub fn frame(&self) -> Frame {
        Frame::Notification {
            id: self.id.as_str().to_owned(),
            seq: self.seq,
            artist: self.artist.name().to_owned(),
            detail: self.detail.clone(),
            time: self.time.clone(),
        }
    }
}

/// The serialised form of a [`Notification`], checked again when read back.
#[derive(Debug, Serialize, Deserialize)]
struct NotificationWire {
    id: String,
    artist: String,
    detail: Value,
    time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

impl TryFrom<NotificationWire> for Notification {
    type Error = Undeliverable;

    fn try_from(wire: NotificationWire) -> Result<Self, Self::Error> {
        let id = EventId::parse(&wire.id).map_err(|e| Undeliverable(format!("id: {e}")))?;
        let artist =
            Artist::parse(&wire.artist).map_err(|e| Undeliverable(format!("artist: {e}")))?;
        let notification = Self::new(id, artist, wire.detail, wire.time)?;
        Ok(match wire.seq {
            Some(seq) => notification.with_seq(seq),
            None => notification,
        })
    }
}

impl From<Notification> for NotificationWire {
    fn from(n: Notification) -> Self {
        Self {
            id: n.id.as_str().to_owned(),
            artist: n.artist.name().to_owned(),
            detail: n.detail,
            time: n.time,
            seq: n.seq,
        }
    }
}

/// One stretch of one shard of an artist's index to deliver a notification to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkItem {
    /// What to deliver.
    pub notification: Notification,
    /// The index shard.
    pub shard: Shard,
    /// Start after this connection (`null`: from the shard's start).
    pub after: Option<ConnectionId>,
    /// Stop after this connection (`null`: to the shard's end).
    pub until: Option<ConnectionId>,
    /// How many continuations led here (0 for an item `notify` enqueued).
    pub hop: u32,
    /// When not empty: post to exactly these connections (fans that failed every attempt
    /// earlier), not to the index stretch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<ConnectionId>,
    /// How many times the connections of `only` have been re-driven.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub round: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WorkItem {
    /// The first item of a shard.
    #[must_use]
    pub fn first(notification: Notification, shard: Shard) -> Self {
        Self {
            notification,
            shard,
            after: None,
            until: None,
            hop: 0,
            only: Vec::new(),
            round: 0,
        }
    }

    /// An item that re-drives `failed` connections of this item's notification.
    #[must_use]
    pub fn redrive(&self, failed: Vec<ConnectionId>) -> Self {
        Self {
            notification: self.notification.clone(),
            shard: self.shard,
            after: None,
            until: None,
            hop: self.hop.saturating_add(1),
            only: failed,
            round: self.round.saturating_add(1),
        }
    }

    /// The stretch of the index this item covers.
    #[must_use]
    pub fn span(&self) -> Span {
        Span {
            shard: self.shard,
            after: self.after.clone(),
            until: self.until.clone(),
        }
    }

    /// The item that carries on with `span` after this one.
    #[must_use]
    pub fn continuation(&self, span: Span) -> Self {
        Self {
            notification: self.notification.clone(),
            shard: span.shard,
            after: span.after,
            until: span.until,
            hop: self.hop.saturating_add(1),
            only: Vec::new(),
            round: 0,
        }
    }

    /// Parses a queue message body.
    ///
    /// # Errors
    /// [`Undeliverable`] saying what is wrong: such a message can never succeed.
    pub fn from_json(body: &str) -> Result<Self, Undeliverable> {
        serde_json::from_str(body).map_err(|e| Undeliverable(format!("not a work item: {e}")))
    }

    /// The queue message body.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Strings, numbers and a `Value`: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn notification(detail: Value) -> Result<Notification, Undeliverable> {
        Notification::new(
            EventId::parse("e1").unwrap(),
            Artist::parse("Adele").unwrap(),
            detail,
            "2026-11-22T10:00:00Z".into(),
        )
    }

    #[test]
    fn a_work_item_survives_the_queue_unchanged() {
        let item = WorkItem {
            after: Some(ConnectionId::parse("abc=").unwrap()),
            hop: 3,
            ..WorkItem::first(
                notification(serde_json::json!({"artist": "Adele", "venue": "O2"})).unwrap(),
                Shard::new(5).unwrap(),
            )
        };
        assert_eq!(WorkItem::from_json(&item.to_json()).unwrap(), item);
    }

    #[test]
    fn a_frame_over_128_kib_is_undeliverable() {
        let big = "x".repeat(MAX_OUTBOUND_BYTES);
        assert!(notification(serde_json::json!({"artist": "Adele", "text": big})).is_err());
    }

    #[test]
    fn malformed_items_are_refused_with_a_reason() {
        for body in [
            "",
            "[]",
            r#"{"notification":{"id":"x"},"shard":99}"#,
            r#"{"notification":{"id":"e","artist":"Adele","detail":{},"time":"t"},"shard":16,"after":null,"until":null,"hop":0}"#,
            r#"{"notification":{"id":"e","artist":"","detail":{},"time":"t"},"shard":1,"after":null,"until":null,"hop":0}"#,
            r#"{"notification":{"id":"e","artist":"A","detail":{},"time":"t"},"shard":1,"after":"","until":null,"hop":0}"#,
        ] {
            assert!(WorkItem::from_json(body).is_err(), "{body}");
        }
    }
}
