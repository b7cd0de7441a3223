//! Delivery reports: what one fan-out (a notification, an announcement, a room message above
//! the inline size) did, counted once per work item, and the `FanoutCompleted` event sent to
//! EventBridge when its last work item finishes.
//!
//! - Every fan-out is a tree of work items. Its root is the `notify` (or `publish`) invocation
//!   itself, [`ItemKey::ROOT`]; each item's children (hand-off, re-drive, deferred rest, and
//!   the root's first items) have keys derived from their parent's key and their role
//!   ([`ItemKey::child`]), so a redelivered parent names the same children again.
//! - A child is registered ([`Reports::register_items`](crate::store::Reports::register_items)) *after* it is sent and before its
//!   parent finishes; an item's finish ([`Reports::finish_item`](crate::store::Reports::finish_item)) adds its counts once, keyed
//!   by its key. A registered item counts one outstanding until it finishes; a child that
//!   finishes before its parent registered it counts none, and its late registration adds
//!   none. So the outstanding count cannot reach 0 while any item that will count is unfinished
//!   and reachable from the root, and a crash between a send and its registration leaves no
//!   item behind that would never finish.
//! - When the outstanding count reaches 0, one finisher claims the publication
//!   ([`Reports::claim_publication`](crate::store::Reports::claim_publication)) and sends [`FanoutCompleted`] through the [`Events`] port.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::domain::EpochSeconds;

/// The `detail-type` of the event sent when a fan-out's last work item finished (from the
/// same source as the on-sale events; no rule of Marquee's matches it).
pub const FANOUT_COMPLETED_DETAIL_TYPE: &str = "FanoutCompleted";

/// The EventBridge `source` of the on-sale events (the template's `EventSource` default), and
/// so of `FanoutCompleted`, when `EVENT_SOURCE` is not set.
pub const DEFAULT_EVENT_SOURCE: &str = "marquee.tickets";

/// Counts of one fan-out's outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Frames API Gateway accepted.
    pub delivered: u64,
    /// Connections found gone (410) and cleaned up.
    pub gone: u64,
    /// Connections that could not be reached within the retry limits.
    pub failed: u64,
    /// Retries spent.
    pub retried: u64,
    /// Connections whose token had expired, closed with `DeleteConnection` instead of posted.
    pub closed: u64,
}

/// What kind of broadcast a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// An on-sale notification (`TicketsOnSale`).
    Notification,
    /// An operator's announcement to every live connection.
    Announcement,
    /// A room message above the inline size.
    RoomMessage,
}

impl ReportKind {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "notification",
            Self::Announcement => "announcement",
            Self::RoomMessage => "room_message",
        }
    }

    /// The kind a stored name names.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Notification, Self::Announcement, Self::RoomMessage]
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// The key of one work item of a fan-out: the root, or a hash of its parent's key and its role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ItemKey(String);

impl ItemKey {
    /// The root's key: the `notify` (or `publish`) invocation that opened the report.
    pub const ROOT: &'static str = "root";

    /// The root item.
    #[must_use]
    pub fn root() -> Self {
        Self(Self::ROOT.to_owned())
    }

    /// The child of this item in `role` (`next`, `redrive`, `rest`, `shard-<n>`): the same key
    /// whichever attempt of this item derives it. 64-bit FNV-1a, 16 hex digits.
    #[must_use]
    pub fn child(&self, role: &str) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.0.bytes().chain([b'/']).chain(role.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self(format!("{hash:016x}"))
    }

    /// The key as stored.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a key: [`ItemKey::ROOT`] or 16 lowercase hex digits.
    ///
    /// # Errors
    /// [`InvalidItemKey`] otherwise.
    pub fn parse(key: &str) -> Result<Self, InvalidItemKey> {
        let hex = key.len() == 16
            && key
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if key == Self::ROOT || hex {
            Ok(Self(key.to_owned()))
        } else {
            Err(InvalidItemKey)
        }
    }
}

/// A string that is not an [`ItemKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an item key is \"root\" or 16 lowercase hex digits")]
pub struct InvalidItemKey;

impl TryFrom<String> for ItemKey {
    type Error = InvalidItemKey;
    fn try_from(key: String) -> Result<Self, Self::Error> {
        Self::parse(&key)
    }
}

impl From<ItemKey> for String {
    fn from(key: ItemKey) -> Self {
        key.0
    }
}

impl std::fmt::Display for ItemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a fan-out is, written when its report is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportStart {
    /// What kind of broadcast.
    pub kind: ReportKind,
    /// The artist's key (`None` for an announcement).
    pub artist: Option<String>,
    /// Who the probe found: every member when inline, the artist's subscriber count when
    /// queued (for an announcement, the probe's count: a lower bound).
    pub audience: u64,
    /// The event's time (RFC 3339): the sale's `time`.
    pub time: String,
    /// When the report was opened.
    pub opened_at: EpochSeconds,
}

/// What one attempt of one work item did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemOutcome {
    /// Its posts' outcomes.
    pub tally: Tally,
    /// Connections it sent to a re-drive item.
    pub redriven: u64,
    /// Its first post's time (epoch milliseconds), if it posted.
    pub first_post_ms: Option<i64>,
    /// Its last post's time (epoch milliseconds), if it posted.
    pub last_post_ms: Option<i64>,
    /// It failed for good (its connections still failing after the last re-drive round, or
    /// too many hops): it goes to the dead-letter queue, and the report cannot be complete.
    pub dead: bool,
}

/// What [`Reports::finish_item`](crate::store::Reports::finish_item) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The item's counts were added: the first finish of this item.
    Counted,
    /// The item had finished before (a redelivery, or a duplicate continuation): its
    /// deliveries were added as duplicates.
    Again,
    /// No report is kept for the event (it expired, or was never opened): nothing was added.
    NoReport,
}

/// A fan-out's delivery report, as stored (`EVENT#<id>`/`REPORT`) and as
/// [`Reports::delivery_report`](crate::store::Reports::delivery_report) reads it. Counts are added once per work item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// The event's (or room message's) id.
    pub event_id: String,
    /// What kind of broadcast.
    pub kind: ReportKind,
    /// The artist's key; `None` for an announcement.
    pub artist: Option<String>,
    /// Who the fan-out set out to reach (see [`ReportStart::audience`]).
    pub audience: u64,
    /// The event's time (RFC 3339): the sale's `time`.
    pub time: String,
    /// Frames API Gateway accepted, once per work item (a connection reached by two items is
    /// counted twice only when two distinct items covered it).
    pub delivered: u64,
    /// Connections found gone (410, confirmed) and cleaned up.
    pub gone: u64,
    /// Connections not reached within the attempt limit by an item (re-driven, or dead).
    pub failed: u64,
    /// Retries spent.
    pub retried: u64,
    /// Connections handed to a re-drive item.
    pub redriven: u64,
    /// Connections whose token had expired, closed instead of posted.
    pub closed: u64,
    /// Frames posted again by an item that had already finished (a redelivery, or a
    /// duplicate continuation): the duplicates the report knows of. Posts of an attempt that
    /// crashed before finishing are not known.
    pub duplicates: u64,
    /// Work items registered (the root included).
    pub items: u64,
    /// Work items finished (counted once each).
    pub finished: u64,
    /// Registered items not finished yet.
    pub outstanding: u64,
    /// Items that failed for good (to the dead-letter queue): the report is then incomplete.
    pub dead_lettered: u64,
    /// The first post's time (epoch milliseconds), if any.
    pub first_post_ms: Option<i64>,
    /// The last post's time (epoch milliseconds), if any.
    pub last_post_ms: Option<i64>,
    /// When the report was opened (epoch seconds).
    pub opened_at: EpochSeconds,
    /// Every item finished (`outstanding` is 0).
    pub finished_all: bool,
    /// Every item finished and none failed for good: everyone was reached or told of.
    pub complete: bool,
    /// `FanoutCompleted` was sent (or is being sent) for it.
    pub published: bool,
}

impl DeliveryReport {
    /// Seconds from the sale's `time` to `at_ms`; `None` when either is unknown.
    #[must_use]
    pub fn seconds_from_time(&self, at_ms: Option<i64>) -> Option<f64> {
        let start = chrono::DateTime::parse_from_rfc3339(&self.time).ok()?;
        #[allow(clippy::cast_precision_loss)] // milliseconds since the sale fit f64 exactly
        at_ms.map(|at| (at - start.timestamp_millis()) as f64 / 1000.0)
    }

    /// The detail of its `FanoutCompleted` event.
    #[must_use]
    pub fn completed(&self) -> FanoutCompleted {
        FanoutCompleted {
            event_id: self.event_id.clone(),
            kind: self.kind,
            artist: self.artist.clone(),
            audience: self.audience,
            delivered: self.delivered,
            gone: self.gone,
            failed: self.failed,
            retried: self.retried,
            redriven: self.redriven,
            closed: self.closed,
            duplicates: self.duplicates,
            items: self.items,
            dead_lettered: self.dead_lettered,
            seconds_to_first_post: self.seconds_from_time(self.first_post_ms),
            seconds_to_last_post: self.seconds_from_time(self.last_post_ms),
            complete: self.complete,
        }
    }
}

/// The `detail` of a `FanoutCompleted` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutCompleted {
    /// The event's (or room message's) id.
    pub event_id: String,
    /// What kind of broadcast.
    pub kind: ReportKind,
    /// The artist's key; `null` for an announcement.
    pub artist: Option<String>,
    /// Who the fan-out set out to reach.
    pub audience: u64,
    /// See [`DeliveryReport::delivered`].
    pub delivered: u64,
    /// See [`DeliveryReport::gone`].
    pub gone: u64,
    /// See [`DeliveryReport::failed`].
    pub failed: u64,
    /// See [`DeliveryReport::retried`].
    pub retried: u64,
    /// See [`DeliveryReport::redriven`].
    pub redriven: u64,
    /// See [`DeliveryReport::closed`].
    pub closed: u64,
    /// See [`DeliveryReport::duplicates`].
    pub duplicates: u64,
    /// Work items, the root included.
    pub items: u64,
    /// Items that failed for good.
    pub dead_lettered: u64,
    /// Seconds from the sale's `time` to the first post (`null`: nothing was posted).
    pub seconds_to_first_post: Option<f64>,
    /// Seconds from the sale's `time` to the last post (`null`: nothing was posted).
    pub seconds_to_last_post: Option<f64>,
    /// No item failed for good.
    pub complete: bool,
}

/// Why `FanoutCompleted` could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("could not send FanoutCompleted")]
pub struct EventsError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// A boxed future, for the [`Events`] port (object safe, like the budget).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where `FanoutCompleted` goes: EventBridge, or a recorder (tests, the local gateway).
pub trait Events: Send + Sync + std::fmt::Debug {
    /// Sends one `FanoutCompleted` with `detail`.
    ///
    /// # Errors
    /// [`EventsError`] when it was not accepted.
    fn fanout_completed<'a>(
        &'a self,
        detail: &'a FanoutCompleted,
    ) -> BoxFuture<'a, Result<(), EventsError>>;
}

/// An [`Events`] shared by the handlers of one process.
pub type SharedEvents = std::sync::Arc<dyn Events>;

/// Keeps every `FanoutCompleted` in memory (tests, the benchmark, the local gateway).
#[derive(Debug, Clone, Default)]
pub struct RecordingEvents {
    sent: std::sync::Arc<std::sync::Mutex<Vec<FanoutCompleted>>>,
}

impl RecordingEvents {
    /// An empty recorder.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `detail` as sent (a detail received from elsewhere, such as the local gateway's
    /// `PutEvents`).
    pub fn record(&self, detail: FanoutCompleted) {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(detail);
    }

    /// Every detail sent, in order.
    #[must_use]
    pub fn sent(&self) -> Vec<FanoutCompleted> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Events for RecordingEvents {
    fn fanout_completed<'a>(
        &'a self,
        detail: &'a FanoutCompleted,
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async move {
            self.sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(detail.clone());
            Ok(())
        })
    }
}

/// Sends nothing (tests and tools that do not look at `FanoutCompleted`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl Events for NoEvents {
    fn fanout_completed<'a>(
        &'a self,
        _detail: &'a FanoutCompleted,
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(feature = "events")]
pub mod eventbridge;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn child_keys_depend_on_parent_and_role_only_and_parse_back() {
        let root = ItemKey::root();
        let a = root.child("shard-3");
        assert_eq!(a, ItemKey::root().child("shard-3"));
        assert_ne!(a, root.child("shard-4"));
        assert_ne!(a.child("next"), a.child("redrive"));
        assert_eq!(ItemKey::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(ItemKey::parse("root"), Ok(root));
        for bad in [
            "",
            "ROOT",
            "0123456789abcdeF",
            "0123456789abcde",
            "x".repeat(16).as_str(),
        ] {
            assert_eq!(ItemKey::parse(bad), Err(InvalidItemKey), "{bad}");
        }
    }

    #[test]
    fn the_completed_detail_measures_seconds_from_the_sale() {
        let report = DeliveryReport {
            event_id: "e1".into(),
            kind: ReportKind::Notification,
            artist: Some("adele".into()),
            audience: 3,
            time: "2026-11-22T10:00:00Z".into(),
            delivered: 2,
            gone: 1,
            failed: 0,
            retried: 4,
            redriven: 0,
            closed: 0,
            duplicates: 1,
            items: 2,
            finished: 2,
            outstanding: 0,
            dead_lettered: 0,
            first_post_ms: Some(1_795_341_600_250),
            last_post_ms: Some(1_795_341_601_500),
            opened_at: 1_795_341_600,
            finished_all: true,
            complete: true,
            published: true,
        };
        let detail = serde_json::to_value(report.completed()).unwrap();
        assert_eq!(
            detail,
            serde_json::json!({
                "event_id": "e1", "kind": "notification", "artist": "adele", "audience": 3,
                "delivered": 2, "gone": 1, "failed": 0, "retried": 4, "redriven": 0,
                "closed": 0, "duplicates": 1, "items": 2, "dead_lettered": 0,
                "seconds_to_first_post": 0.25, "seconds_to_last_post": 1.5, "complete": true
            })
        );
    }
}
