//! `event`, `stats`, `user` and `disconnect`: thin commands over the same ports as the functions
//! ([`Store`], [`Inspect`], [`Push`]) and the same route code (a disconnect is
//! `marquee::routes::disconnect`, as a 410 cleanup is).

use marquee::domain::{ArtistKey, ConnectionId, EpochSeconds, EventId, UserId};
use marquee::push::{Posted, Push};
use marquee::report::DeliveryReport;
use marquee::store::inspect::{ArtistCount, Inspect, Totals};
use marquee::store::{Removed, Store};
use serde_json::json;

use crate::AdminError;
use crate::render::{Output, Table, age, time};

/// `stats`: the totals and the top artists, all from counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Connection records and subscriptions.
    pub totals: Totals,
    /// The top artists by subscribers.
    pub top: Vec<ArtistCount>,
}

/// Reads the totals and the `top` artists.
///
/// # Errors
/// [`AdminError::Failed`] when the table cannot be read.
pub async fn stats<S: Inspect>(store: &S, top: usize) -> Result<Stats, AdminError> {
    let totals = store.totals().await.map_err(AdminError::store)?;
    let top = store.top_artists(top).await.map_err(AdminError::store)?;
    Ok(Stats { totals, top })
}

impl Output for Stats {
    fn table(&self) -> String {
        let mut totals = Table::new(&["CONNECTIONS", "SUBSCRIPTIONS"]);
        totals.row(vec![
            self.totals.connections.to_string(),
            self.totals.subscriptions.to_string(),
        ]);
        let mut top = Table::new(&["RANK", "ARTIST", "KEY", "SUBSCRIBERS"]);
        for (rank, artist) in self.top.iter().enumerate() {
            top.row(vec![
                (rank + 1).to_string(),
                artist.name.clone(),
                artist.key.as_str().to_owned(),
                artist.subscribers.to_string(),
            ]);
        }
        format!("{}\n{}", totals.render(), top.render())
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "connections": self.totals.connections,
            "subscriptions": self.totals.subscriptions,
            "top": self.top.iter().map(|a| json!({
                "artist": a.name,
                "key": a.key.as_str(),
                "subscribers": a.subscribers,
            })).collect::<Vec<_>>(),
        })
    }
}

/// What is known of one connection on a user's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// Its record is live.
    Live {
        /// When it connected.
        connected_at: EpochSeconds,
        /// When its record lapses (the token's expiry, or API Gateway's 2 hours).
        expires_at: EpochSeconds,
        /// Its subscriptions, by key.
        subscriptions: Vec<ArtistKey>,
    },
    /// Its record lapsed (listed until the user's next connect prunes it).
    Lapsed {
        /// When it lapsed.
        expires_at: EpochSeconds,
    },
    /// Listed, but its record is gone (a cleanup that has not reached the list).
    Gone {
        /// The list's expiry of it.
        expires_at: EpochSeconds,
    },
}

/// `user <sub>`: the user's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    /// The user.
    pub user: UserId,
    /// When it was read.
    pub now: EpochSeconds,
    /// Their listed connections, by id.
    pub connections: Vec<(ConnectionId, ConnectionStatus)>,
}

/// Reads `user`'s list and each listed connection's record.
///
/// # Errors
/// [`AdminError::Failed`] when the table cannot be read.
pub async fn user<S: Store + Inspect>(
    store: &S,
    user: &UserId,
    now: EpochSeconds,
) -> Result<UserView, AdminError> {
    let listed = store
        .user_connections(user)
        .await
        .map_err(AdminError::store)?;
    let mut connections = Vec::with_capacity(listed.len());
    for entry in listed {
        let status = if entry.expires_at <= now {
            ConnectionStatus::Lapsed {
                expires_at: entry.expires_at,
            }
        } else {
            match store
                .connection_state(&entry.id, now)
                .await
                .map_err(AdminError::store)?
            {
                Some(state) => ConnectionStatus::Live {
                    connected_at: state.connection.connected_at,
                    expires_at: state.connection.expires_at,
                    subscriptions: state.subscriptions,
                },
                None => ConnectionStatus::Gone {
                    expires_at: entry.expires_at,
                },
            }
        };
        connections.push((entry.id, status));
    }
    Ok(UserView {
        user: user.clone(),
        now,
        connections,
    })
}

impl Output for UserView {
    fn table(&self) -> String {
        let mut table = Table::new(&["CONNECTION", "STATUS", "AGE", "EXPIRES", "SUBSCRIPTIONS"]);
        for (id, status) in &self.connections {
            let (name, age_text, expires, subscriptions) = match status {
                ConnectionStatus::Live {
                    connected_at,
                    expires_at,
                    subscriptions,
                } => (
                    "live",
                    age(self.now - connected_at),
                    format!("{} (in {})", time(*expires_at), age(expires_at - self.now)),
                    keys(subscriptions),
                ),
                ConnectionStatus::Lapsed { expires_at } => (
                    "lapsed",
                    "-".to_owned(),
                    format!("{} ({} ago)", time(*expires_at), age(self.now - expires_at)),
                    "-".to_owned(),
                ),
                ConnectionStatus::Gone { expires_at } => {
                    ("gone", "-".to_owned(), time(*expires_at), "-".to_owned())
                }
            };
            table.row(vec![
                id.as_str().to_owned(),
                name.to_owned(),
                age_text,
                expires,
                subscriptions,
            ]);
        }
        table.render()
    }

    fn json(&self) -> serde_json::Value {
        let connections: Vec<serde_json::Value> = self
            .connections
            .iter()
            .map(|(id, status)| match status {
                ConnectionStatus::Live {
                    connected_at,
                    expires_at,
                    subscriptions,
                } => json!({
                    "id": id.as_str(),
                    "status": "live",
                    "connected_at": time(*connected_at),
                    "age_seconds": self.now - connected_at,
                    "expires_at": time(*expires_at),
                    "expires_in_seconds": expires_at - self.now,
                    "subscriptions": subscriptions.iter().map(ArtistKey::as_str).collect::<Vec<_>>(),
                }),
                ConnectionStatus::Lapsed { expires_at } => json!({
                    "id": id.as_str(),
                    "status": "lapsed",
                    "expires_at": time(*expires_at),
                }),
                ConnectionStatus::Gone { expires_at } => json!({
                    "id": id.as_str(),
                    "status": "gone",
                    "expires_at": time(*expires_at),
                }),
            })
            .collect();
        json!({ "user": self.user.as_str(), "connections": connections })
    }
}

fn keys(subscriptions: &[ArtistKey]) -> String {
    if subscriptions.is_empty() {
        "-".to_owned()
    } else {
        subscriptions
            .iter()
            .map(ArtistKey::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `disconnect <id>`: what closing a connection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected {
    /// The connection.
    pub id: ConnectionId,
    /// Whether it was open (`DeleteConnection` closed it) or already gone (410).
    pub was_open: bool,
    /// What its records held.
    pub removed: Removed,
}

/// Closes connection `id` (`DeleteConnection`), then removes its records as a 410 cleanup
/// does: [`marquee::routes::disconnect::disconnect`], which deletes them and tells the rooms
/// it was in (`left`, rooms of at most `presence_max`). A connection already gone is cleaned
/// up the same way.
///
/// # Errors
/// [`AdminError::Failed`] when the Management API refuses or fails (nothing is deleted
/// then), or the table cannot be written.
pub async fn disconnect<S: Store, P: Push>(
    store: &S,
    push: &P,
    id: &ConnectionId,
    presence_max: u64,
    now: EpochSeconds,
) -> Result<Disconnected, AdminError> {
    let posted = push
        .disconnect(id)
        .await
        .map_err(|e| AdminError::Failed(format!("DeleteConnection {id}: {}", crate::chain(&e))))?;
    let removed = marquee::routes::disconnect::disconnect(store, push, id, presence_max, now)
        .await
        .map_err(AdminError::store)?;
    Ok(Disconnected {
        id: id.clone(),
        was_open: posted == Posted::Delivered,
        removed,
    })
}

impl Output for Disconnected {
    fn table(&self) -> String {
        let mut table = Table::new(&["CONNECTION", "WAS", "USER", "ITEMS REMOVED", "ROOMS LEFT"]);
        let rooms: Vec<&str> = self.removed.artists.iter().map(|a| a.name()).collect();
        table.row(vec![
            self.id.as_str().to_owned(),
            if self.was_open { "open" } else { "gone" }.to_owned(),
            self.removed
                .user
                .as_ref()
                .map_or_else(|| "-".to_owned(), |u| u.as_str().to_owned()),
            self.removed.items.to_string(),
            if rooms.is_empty() {
                "-".to_owned()
            } else {
                rooms.join(",")
            },
        ]);
        table.render()
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "connection": self.id.as_str(),
            "was": if self.was_open { "open" } else { "gone" },
            "user": self.removed.user.as_ref().map(UserId::as_str),
            "items_removed": self.removed.items,
            "rooms_left": self.removed.artists.iter().map(|a| a.name()).collect::<Vec<_>>(),
        })
    }
}

/// `event <id>`: an event's delivery report, read as it stands (live while its fan-out runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventView {
    /// The report as stored.
    pub report: DeliveryReport,
}

impl EventView {
    /// `running` (items outstanding), `complete` (every item finished, none failed for good)
    /// or `incomplete` (every item finished, some in a dead-letter queue). A running report
    /// with dead letters already is `running` until its last item finishes.
    #[must_use]
    pub fn state(&self) -> &'static str {
        match (self.report.finished_all, self.report.complete) {
            (false, _) => "running",
            (true, true) => "complete",
            (true, false) => "incomplete",
        }
    }
}

/// Reads event `id`'s delivery report.
///
/// # Errors
/// [`AdminError::Failed`] when the table cannot be read, or no report is kept for `id` (never
/// fanned out through a report: an unknown id, a room message small enough to go inline; or
/// expired with the event's claim).
pub async fn event<S: Store>(
    store: &S,
    id: &EventId,
    now: EpochSeconds,
) -> Result<EventView, AdminError> {
    event_if_any(store, id, now).await?.ok_or_else(|| {
        AdminError::Failed(format!(
            "event {id}: no delivery report (an unknown or expired event, or a room message \
             that went inline)"
        ))
    })
}

/// Reads event `id`'s delivery report; `None` when none is kept (yet: `notify` opens it when
/// the event reaches it).
///
/// # Errors
/// [`AdminError::Failed`] when the table cannot be read.
pub async fn event_if_any<S: Store>(
    store: &S,
    id: &EventId,
    now: EpochSeconds,
) -> Result<Option<EventView>, AdminError> {
    let report = store
        .delivery_report(id, now)
        .await
        .map_err(AdminError::store)?;
    Ok(report.map(|report| EventView { report }))
}

/// Seconds as `0.412s`, or `-` when unknown.
fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_owned(), |s| format!("{s:.3}s"))
}

impl Output for EventView {
    fn table(&self) -> String {
        let r = &self.report;
        let mut head = Table::new(&[
            "EVENT",
            "KIND",
            "ARTIST",
            "STATE",
            "AUDIENCE",
            "DELIVERED",
            "GONE",
            "FAILED",
            "FIRST",
            "LAST",
        ]);
        head.row(vec![
            r.event_id.clone(),
            r.kind.as_str().to_owned(),
            r.artist.clone().unwrap_or_else(|| "-".to_owned()),
            self.state().to_owned(),
            r.audience.to_string(),
            r.delivered.to_string(),
            r.gone.to_string(),
            r.failed.to_string(),
            seconds(r.seconds_from_time(r.first_post_ms)),
            seconds(r.seconds_from_time(r.last_post_ms)),
        ]);
        let mut detail = Table::new(&[
            "ITEMS",
            "FINISHED",
            "OUTSTANDING",
            "DEAD-LETTERED",
            "RETRIED",
            "REDRIVEN",
            "CLOSED",
            "DUPLICATES",
            "PUBLISHED",
        ]);
        detail.row(vec![
            r.items.to_string(),
            r.finished.to_string(),
            r.outstanding.to_string(),
            r.dead_lettered.to_string(),
            r.retried.to_string(),
            r.redriven.to_string(),
            r.closed.to_string(),
            r.duplicates.to_string(),
            if r.published { "yes" } else { "no" }.to_owned(),
        ]);
        format!("{}\n{}", head.render(), detail.render())
    }

    fn json(&self) -> serde_json::Value {
        let r = &self.report;
        let mut value = serde_json::to_value(r).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("state".into(), json!(self.state()));
            object.insert(
                "seconds_to_first_post".into(),
                json!(r.seconds_from_time(r.first_post_ms)),
            );
            object.insert(
                "seconds_to_last_post".into(),
                json!(r.seconds_from_time(r.last_post_ms)),
            );
        }
        value
    }
}
