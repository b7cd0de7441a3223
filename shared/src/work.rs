//! What flows through the fan-out pipeline: a validated on-sale [`Notification`], the
//! [`Broadcast`] every fan-out posts (a notification, a room message or an announcement: one
//! frame for one audience), and the [`WorkItem`]s `notify` hands to `deliver` through the
//! work queue.
//!
//! A work item carries everything `deliver` needs to resume without reading the event again:
//! the broadcast itself, the index shard, the stretch of it still to do, and how many
//! continuations led to it. The frame is embedded as JSON, not as a JSON string: escaped
//! again it could grow to twice its size, and an item with a 128 KiB frame would no longer
//! fit SQS's 256 KiB message (the queue's `MESSAGE_MAX_BYTES`, which depends on this module,
//! not the other way).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::budget::Lane;
use crate::domain::{Artist, ConnectionId, EventId, Shard};
use crate::report::{ItemKey, ReportKind};
use crate::store::{Audience, HistoryEntry, Span};
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

    /// The broadcast of this notification to its artist's subscribers.
    ///
    /// # Errors
    /// [`Undeliverable`] only if the frame outgrew what API Gateway posts, which
    /// [`Notification::new`] already ruled out.
    pub fn broadcast(&self) -> Result<Broadcast, Undeliverable> {
        Broadcast::new(
            &self.id,
            Audience::Artist(self.artist.key().clone()),
            &self.frame(),
            None,
            self.time.clone(),
        )
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

/// The longest announcement message, in characters.
pub const MAX_ANNOUNCEMENT_CHARS: usize = 2000;

/// An operator's announcement to every live connection (an EventBridge `Announcement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// EventBridge's event id.
    pub id: EventId,
    /// `detail.message`: 1 to [`MAX_ANNOUNCEMENT_CHARS`] characters.
    pub message: String,
    /// The event's time (RFC 3339).
    pub time: String,
}

impl Announcement {
    /// An announcement, if `message` is 1 to [`MAX_ANNOUNCEMENT_CHARS`] characters after
    /// trimming.
    ///
    /// # Errors
    /// [`Undeliverable`] saying what is wrong.
    pub fn new(id: EventId, message: &str, time: String) -> Result<Self, Undeliverable> {
        let message = message.trim();
        let chars = message.chars().count();
        if !(1..=MAX_ANNOUNCEMENT_CHARS).contains(&chars) {
            return Err(Undeliverable(format!(
                "detail.message must be 1 to {MAX_ANNOUNCEMENT_CHARS} characters; it is {chars}"
            )));
        }
        Ok(Self {
            id,
            message: message.to_owned(),
            time,
        })
    }

    /// The broadcast to every live connection.
    ///
    /// # Errors
    /// Never in practice: the frame of a valid announcement fits in 128 KiB.
    pub fn broadcast(&self) -> Result<Broadcast, Undeliverable> {
        Broadcast::new(
            &self.id,
            Audience::Everyone,
            &Frame::Announcement {
                id: self.id.as_str().to_owned(),
                message: self.message.clone(),
                time: self.time.clone(),
            },
            None,
            self.time.clone(),
        )
    }
}

/// One frame for one audience: what a fan-out posts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BroadcastWire", into = "BroadcastWire")]
pub struct Broadcast {
    /// The event's (or message's) id: hand-off records are kept per id.
    pub id: EventId,
    /// Who gets it: an artist's subscribers, or every live connection.
    pub audience: Audience,
    /// The frame, as JSON text.
    pub frame: String,
    /// A connection left out (the sender of a room message).
    pub exclude: Option<ConnectionId>,
    /// When the event (or message) happened (RFC 3339), for the fan-out lag metric.
    pub time: String,
    /// Its lane in the posting budget: a sale's, or room traffic's ([`Self::in_lane`]).
    pub lane: Lane,
}

impl Broadcast {
    /// The broadcast in `lane` (a new one is in [`Lane::Sale`]).
    #[must_use]
    pub fn in_lane(mut self, lane: Lane) -> Self {
        self.lane = lane;
        self
    }

    /// A broadcast of `frame` to `audience`, refused when the frame is over what API Gateway
    /// posts.
    ///
    /// # Errors
    /// [`Undeliverable`] when the frame is over [`MAX_OUTBOUND_BYTES`].
    pub fn new(
        id: &EventId,
        audience: Audience,
        frame: &Frame,
        exclude: Option<ConnectionId>,
        time: String,
    ) -> Result<Self, Undeliverable> {
        Self::checked(BroadcastWire {
            id: id.as_str().to_owned(),
            audience,
            frame: String::from_utf8(frame.to_bytes()).unwrap_or_default(),
            exclude,
            time,
            lane: Lane::Sale,
        })
    }

    fn checked(wire: BroadcastWire) -> Result<Self, Undeliverable> {
        let id = EventId::parse(&wire.id).map_err(|e| Undeliverable(format!("id: {e}")))?;
        let size = wire.frame.len();
        if size > MAX_OUTBOUND_BYTES {
            return Err(Undeliverable(format!(
                "the frame is {size} bytes; API Gateway posts at most {MAX_OUTBOUND_BYTES}"
            )));
        }
        Ok(Self {
            id,
            audience: wire.audience,
            frame: wire.frame,
            exclude: wire.exclude,
            time: wire.time,
            lane: wire.lane,
        })
    }

    /// What kind of broadcast it is, for its delivery report: a room message (room traffic's
    /// lane), an announcement (to everyone) or a notification.
    #[must_use]
    pub fn kind(&self) -> ReportKind {
        match (&self.audience, self.lane) {
            (_, Lane::Rooms) => ReportKind::RoomMessage,
            (Audience::Everyone, _) => ReportKind::Announcement,
            (Audience::Artist(_), _) => ReportKind::Notification,
        }
    }

    /// The frame's bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        self.frame.as_bytes()
    }

    /// `ids` without the excluded connection.
    #[must_use]
    pub fn recipients(&self, ids: Vec<ConnectionId>) -> Vec<ConnectionId> {
        match &self.exclude {
            None => ids,
            Some(excluded) => ids.into_iter().filter(|id| id != excluded).collect(),
        }
    }
}

/// The serialised form of a [`Broadcast`], checked again when read back.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcastWire {
    id: String,
    audience: Audience,
    #[serde(with = "embedded_json")]
    frame: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exclude: Option<ConnectionId>,
    time: String,
    /// Left out for a sale's, so a sale's item reads as it did before lanes.
    #[serde(default, skip_serializing_if = "Lane::is_sale")]
    lane: Lane,
}

impl TryFrom<BroadcastWire> for Broadcast {
    type Error = Undeliverable;

    fn try_from(wire: BroadcastWire) -> Result<Self, Self::Error> {
        Self::checked(wire)
    }
}

impl From<Broadcast> for BroadcastWire {
    fn from(b: Broadcast) -> Self {
        Self {
            id: b.id.as_str().to_owned(),
            audience: b.audience,
            frame: b.frame,
            exclude: b.exclude,
            time: b.time,
            lane: b.lane,
        }
    }
}

/// A frame (JSON text) written into a work item as the JSON it is, so it is not escaped a
/// second time. Read back, a JSON string is also taken, as items sent before this change
/// held the frame (still in the queue during a deploy).
mod embedded_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub(super) fn serialize<S: Serializer>(frame: &str, serializer: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&RawValue>(frame) {
            Ok(raw) => raw.serialize(serializer),
            // Not JSON (never built by `Broadcast::new`): kept as a string, so nothing is lost.
            Err(_) => frame.serialize(serializer),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<String, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        if raw.get().starts_with('"') {
            serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)
        } else {
            Ok(raw.get().to_owned())
        }
    }
}

/// One stretch of one shard of an audience's index to deliver a broadcast to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkItem {
    /// What to deliver, and to whom.
    pub broadcast: Broadcast,
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
    /// The item's key in its event's delivery report ([`crate::report`]); `None` for an item
    /// sent before reports (not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ItemKey>,
}

/// The pause before re-drive round `round` of a work item's failed connections.
#[must_use]
pub fn redrive_delay(round: u32) -> std::time::Duration {
    std::time::Duration::from_secs(1 << round.clamp(1, 6)).min(std::time::Duration::from_secs(60))
}

/// The role of a hand-off continuation (the rest of the stretch) in its report.
pub const ROLE_NEXT: &str = "next";
/// The role of a deferred continuation (the unstarted rest of a page, near the deadline).
pub const ROLE_REST: &str = "rest";
/// The role of a re-drive item.
pub const ROLE_REDRIVE: &str = "redrive";

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WorkItem {
    /// The first item of a shard.
    #[must_use]
    pub fn first(broadcast: Broadcast, shard: Shard) -> Self {
        Self {
            broadcast,
            shard,
            after: None,
            until: None,
            hop: 0,
            only: Vec::new(),
            round: 0,
            key: None,
        }
    }

    /// The item with its key in the delivery report.
    #[must_use]
    pub fn keyed(mut self, key: ItemKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The key of this item's child in `role` ([`ItemKey::child`]), if this item has a key.
    #[must_use]
    pub fn child_key(&self, role: &str) -> Option<ItemKey> {
        self.key.as_ref().map(|key| key.child(role))
    }

    /// An item that re-drives `failed` connections of this item's notification.
    #[must_use]
    pub fn redrive(&self, failed: Vec<ConnectionId>) -> Self {
        Self {
            broadcast: self.broadcast.clone(),
            shard: self.shard,
            after: None,
            until: None,
            hop: self.hop.saturating_add(1),
            only: failed,
            round: self.round.saturating_add(1),
            key: self.child_key(ROLE_REDRIVE),
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

    /// The item that carries on with `span` after this one, in `role` ([`ROLE_NEXT`]: the
    /// hand-off of the rest of the stretch; [`ROLE_REST`]: the unstarted rest of the page).
    #[must_use]
    pub fn continuation(&self, span: Span, role: &str) -> Self {
        Self {
            broadcast: self.broadcast.clone(),
            shard: span.shard,
            after: span.after,
            until: span.until,
            hop: self.hop.saturating_add(1),
            only: Vec::new(),
            round: 0,
            key: self.child_key(role),
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
    use crate::domain::MAX_ARTIST_CHARS;

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
                notification(serde_json::json!({"artist": "Adele", "venue": "O2"}))
                    .unwrap()
                    .with_seq(7)
                    .broadcast()
                    .unwrap(),
                Shard::new(5).unwrap(),
            )
        };
        assert_eq!(WorkItem::from_json(&item.to_json()).unwrap(), item);
    }

    #[test]
    fn an_item_carrying_the_largest_frame_fits_one_queue_message_however_it_escapes() {
        // Quotes are the worst case: each is two bytes in the frame, and was four once the
        // frame was escaped again as a string inside the item.
        let mut quotes = "\"".repeat(MAX_OUTBOUND_BYTES / 2);
        while notification(serde_json::json!({"artist": "Adele", "seats": quotes})).is_err() {
            quotes.pop();
        }
        let broadcast = notification(serde_json::json!({"artist": "Adele", "seats": quotes}))
            .unwrap()
            .with_seq(u64::MAX)
            .broadcast()
            .unwrap();
        assert!(broadcast.frame.len() > MAX_OUTBOUND_BYTES - 100);
        let item = WorkItem::first(broadcast, Shard::new(15).unwrap());

        let body = item.to_json();

        // At most 128 KiB and 300 bytes: well within SQS's 256 KiB message.
        assert!(
            body.len() < item.broadcast.frame.len() + 300,
            "{} bytes",
            body.len()
        );
        assert_eq!(WorkItem::from_json(&body).unwrap(), item);
    }

    #[test]
    fn an_item_written_with_its_frame_as_a_string_still_reads_back() {
        let item = WorkItem::first(
            notification(serde_json::json!({"artist": "Adele", "venue": "O2"}))
                .unwrap()
                .broadcast()
                .unwrap(),
            Shard::new(2).unwrap(),
        );
        let mut old: Value = serde_json::from_str(&item.to_json()).unwrap();
        *old.pointer_mut("/broadcast/frame").unwrap() = Value::String(item.broadcast.frame.clone());

        assert_eq!(WorkItem::from_json(&old.to_string()).unwrap(), item);
    }

    #[test]
    fn a_work_item_for_an_artist_whose_key_is_longer_than_a_name_survives_the_queue() {
        let artist = Artist::parse(crate::domain::tests::LONG_KEY_NAME).unwrap();
        let item = WorkItem::first(
            Notification::new(
                EventId::parse("e1").unwrap(),
                artist,
                serde_json::json!({}),
                "2026-11-22T10:00:00Z".into(),
            )
            .unwrap()
            .broadcast()
            .unwrap(),
            Shard::new(0).unwrap(),
        );
        assert_eq!(WorkItem::from_json(&item.to_json()), Ok(item));
    }

    /// Names that parse, most of them with characters NFKC and case folding lengthen.
    fn names() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let lengthening = prop::sample::select(vec![
            '\u{FB03}', '\u{2116}', '\u{2168}', '\u{2026}', '\u{FDFA}', '\u{338F}', '\u{BD}',
            '\u{DF}', '\u{130}', '\u{1F71}', '\u{3000}', '\u{FF21}', '\u{301}',
        ]);
        let plain = prop::sample::select(vec!['a', 'Z', ' ', '&', '#', '.', '9', '\u{E9}']);
        let chars = prop_oneof![4 => lengthening, 4 => plain, 1 => any::<char>()];
        prop::collection::vec(chars, 1..=MAX_ARTIST_CHARS)
            .prop_map(|chars| chars.into_iter().collect::<String>())
            .prop_filter("a name that parses", |name| Artist::parse(name).is_ok())
    }

    proptest::proptest! {
        #[test]
        fn every_artist_that_parses_survives_the_queue(name in names()) {
            let artist = Artist::parse(&name).unwrap();
            let broadcast = Notification::new(
                EventId::parse("e1").unwrap(),
                artist.clone(),
                serde_json::json!({"artist": name}),
                "2026-11-22T10:00:00Z".into(),
            )
            .unwrap()
            .broadcast()
            .unwrap();
            proptest::prop_assert_eq!(&broadcast.audience, &Audience::Artist(artist.key().clone()));
            let json = serde_json::to_string(&broadcast).unwrap();
            let read_back: Broadcast = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(&read_back, &broadcast);
            let item = WorkItem::first(broadcast, Shard::new(3).unwrap());
            proptest::prop_assert_eq!(WorkItem::from_json(&item.to_json()), Ok(item));
        }
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
            r#"{"broadcast":{"id":"x"},"shard":99}"#,
            r#"{"broadcast":{"id":"e","audience":"everyone","frame":"{}","time":"t"},"shard":16,"after":null,"until":null,"hop":0}"#,
            r#"{"broadcast":{"id":"e","audience":{"artist":""},"frame":"{}","time":"t"},"shard":1,"after":null,"until":null,"hop":0}"#,
            r#"{"broadcast":{"id":"e","audience":"everyone","frame":"{}","time":"t"},"shard":1,"after":"","until":null,"hop":0}"#,
            r#"{"broadcast":{"id":"","audience":"everyone","frame":"{}","time":"t"},"shard":1,"after":null,"until":null,"hop":0}"#,
        ] {
            assert!(WorkItem::from_json(body).is_err(), "{body}");
        }
    }
}
