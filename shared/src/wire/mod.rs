//! The JSON text frames between clients and Marquee.
//!
//! - Inbound ([`inbound`]): `subscribe` (with an optional `since`), `unsubscribe`, `ping` and
//!   `publish` (a room message), each with an optional `ref` that the reply echoes.
//! - Outbound ([`Frame`]): the replies (`subscribed`, `unsubscribed`, `pong`, `published`,
//!   `error`), the fan-outs (`notification`, a room's `message`, `announcement`), the catch-up's
//!   `gap`, presence (`welcome`, `joined`, `left`) and `revoked`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

pub mod inbound;

pub use inbound::{
    Inbound, MAX_PUBLISH_DATA_BYTES, Reference, Rejection, Request, Since, parse_message,
    parse_request,
};

/// The route keys (values of `action`) that API Gateway routes to the message handler, besides
/// `$default`. The template and the local gateway both follow this list.
pub const MESSAGE_ROUTES: &[&str] = &["subscribe", "unsubscribe", "ping", "publish"];

/// Largest inbound message body we parse, in bytes: API Gateway's WebSocket frame size, 32 KiB.
/// The largest legal message fits: 25 artists of 100 characters, each written as a JSON
/// surrogate-pair escape (`\ud83c\udfb5`, 12 bytes a character), is 30,000 bytes of names plus
/// the quotes, commas and the action.
pub const MAX_INBOUND_BYTES: usize = 32 * 1024;
/// The largest frame API Gateway posts to a client (`PostToConnection`): 128 KiB.
pub const MAX_OUTBOUND_BYTES: usize = 128 * 1024;

/// The machine-readable `code` of an error frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON.
    InvalidJson,
    /// JSON, but not a message of the protocol (not an object, no `action`, wrong types).
    InvalidMessage,
    /// An `action` the server does not know.
    UnknownAction,
    /// Binary frames are not part of the protocol.
    UnsupportedFrame,
    /// The body is larger than [`MAX_INBOUND_BYTES`].
    MessageTooLarge,
    /// The `artists` list is empty, too long, or holds an invalid name.
    InvalidArtists,
    /// `since` is not an object of artists (named in the same message) to sequence numbers.
    InvalidSince,
    /// A publish's `data` is over 8 KiB.
    DataTooLarge,
    /// The connection publishes faster than its rate limit; nothing was sent.
    RateLimited,
    /// The token's `artists` claim does not cover a requested artist.
    Forbidden,
    /// The subscription would take the connection over its cap.
    TooManySubscriptions,
    /// No live connection record: it expired with its token or its records were deleted.
    /// The connection is closed after this reply; reconnect with a fresh token.
    UnknownConnection,
    /// Concurrent changes to the same connection kept colliding; try again.
    Busy,
    /// Something on our side failed; details are in our logs.
    InternalError,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidMessage => "invalid_message",
            Self::UnknownAction => "unknown_action",
            Self::UnsupportedFrame => "unsupported_frame",
            Self::MessageTooLarge => "message_too_large",
            Self::InvalidArtists => "invalid_artists",
            Self::InvalidSince => "invalid_since",
            Self::DataTooLarge => "data_too_large",
            Self::RateLimited => "rate_limited",
            Self::Forbidden => "forbidden",
            Self::TooManySubscriptions => "too_many_subscriptions",
            Self::UnknownConnection => "unknown_connection",
            Self::Busy => "busy",
            Self::InternalError => "internal_error",
        }
    }
}

/// A frame sent to a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    /// The artists now subscribed (display names, as requested).
    Subscribed {
        /// Display names.
        artists: Vec<String>,
        /// Each artist's latest `seq` as the subscription took effect (0: none yet), by display
        /// name: a client's `since` for it after a reconnect, when nothing newer came live.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        seq: BTreeMap<String, u64>,
    },
    /// The artists no longer subscribed.
    Unsubscribed {
        /// Display names.
        artists: Vec<String>,
    },
    /// The answer to a `ping`.
    Pong {
        /// The connection's API Gateway id.
        #[serde(rename = "connectionId")]
        connection_id: String,
        /// When the connection will be ended (RFC 3339): the earlier of its token's expiry
        /// and API Gateway's maximum connection duration.
        #[serde(rename = "expiresAt")]
        expires_at: String,
    },
    /// The request was refused; nothing was written.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// Tickets for an artist went on sale.
    Notification {
        /// The EventBridge event id (clients may de-duplicate on it).
        id: String,
        /// The notification's place in its artist's sequence (1, 2, ...); the same event
        /// always has the same `seq`. Absent only on work queued before sequences existed.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// The artist, as the event named it.
        artist: String,
        /// The event's `detail`, forwarded whole.
        detail: Value,
        /// When the event happened (RFC 3339).
        time: String,
    },
    /// A room message was accepted and is on its way to the room (to the sender).
    Published {
        /// The message's id (the others receive it in `message`).
        id: String,
    },
    /// Someone else's message in a room.
    Message {
        /// The message's id (drop duplicates by it).
        id: String,
        /// The room, as the sender named it.
        artist: String,
        /// The sender (its token's `sub`).
        from: String,
        /// What the sender published.
        data: Value,
        /// When it was published (RFC 3339).
        time: String,
    },
    /// You are in a room now: how many are in it (you included).
    Welcome {
        /// The room, as you named it.
        artist: String,
        /// Subscribers of the artist.
        subscribers: u64,
    },
    /// Someone entered a room you are in (rooms with presence on only).
    Joined {
        /// The room, as they named it.
        artist: String,
        /// Who (their token's `sub`).
        user: String,
        /// Subscribers now.
        subscribers: u64,
    },
    /// Someone left a room you are in (rooms with presence on only).
    Left {
        /// The room.
        artist: String,
        /// Who (their token's `sub`).
        user: String,
        /// Subscribers now.
        subscribers: u64,
    },
    /// An operator's announcement, to every connection.
    Announcement {
        /// The EventBridge event id.
        id: String,
        /// What the operator says.
        message: String,
        /// When it was sent (RFC 3339).
        time: String,
    },
    /// The connection's user was revoked: this is the last frame, and the connection closes
    /// right after it. A token issued before the revocation is refused at `$connect`.
    Revoked,
    /// Notifications of `artist` with sequence numbers `from` to `to` (inclusive) were missed
    /// and are no longer held: they cannot be replayed. With `retry`, they are held but the
    /// catch-up could not replay them (it ran out of time, a frame could not be posted, or the
    /// history could not be read): subscribe again with `since: from - 1`.
    Gap {
        /// The artist, as the client named it in `since`.
        artist: String,
        /// The first missing sequence number.
        from: u64,
        /// The last missing sequence number.
        to: u64,
        /// Whether a new catch-up can still replay them (sent only when true).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retry: bool,
    },
}

impl Frame {
    /// An error frame.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }

    /// A short label for logs: the frame type, or the error code.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Subscribed { .. } => "subscribed",
            Self::Unsubscribed { .. } => "unsubscribed",
            Self::Pong { .. } => "pong",
            Self::Error { code, .. } => code.as_str(),
            Self::Notification { .. } => "notification",
            Self::Gap { .. } => "gap",
            Self::Announcement { .. } => "announcement",
            Self::Published { .. } => "published",
            Self::Message { .. } => "message",
            Self::Welcome { .. } => "welcome",
            Self::Joined { .. } => "joined",
            Self::Left { .. } => "left",
            Self::Revoked => "revoked",
        }
    }

    /// The frame as JSON bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these shapes (strings, vectors, a `Value`) cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The frame as JSON bytes, as the reply to a request that carried `reference`: the
    /// reference is echoed as `ref`, so a client can match replies to its requests.
    #[must_use]
    pub fn reply_bytes(&self, reference: Option<&Reference>) -> Vec<u8> {
        #[derive(Serialize)]
        struct Reply<'a> {
            #[serde(flatten)]
            frame: &'a Frame,
            #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
            reference: Option<&'a str>,
        }
        serde_json::to_vec(&Reply {
            frame: self,
            reference: reference.map(Reference::as_str),
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_code_labels_match_their_wire_spelling() {
        for code in [
            ErrorCode::InvalidJson,
            ErrorCode::InvalidMessage,
            ErrorCode::UnknownAction,
            ErrorCode::UnsupportedFrame,
            ErrorCode::MessageTooLarge,
            ErrorCode::InvalidArtists,
            ErrorCode::InvalidSince,
            ErrorCode::DataTooLarge,
            ErrorCode::RateLimited,
            ErrorCode::Forbidden,
            ErrorCode::TooManySubscriptions,
            ErrorCode::UnknownConnection,
            ErrorCode::Busy,
            ErrorCode::InternalError,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn frames_serialise_to_the_documented_shapes() {
        let frame = Frame::error(ErrorCode::TooManySubscriptions, "cap is 50");
        assert_eq!(
            json(&frame.to_bytes()),
            serde_json::json!({"type":"error","code":"too_many_subscriptions","message":"cap is 50"})
        );
        let frame = Frame::Subscribed {
            artists: vec!["Adele".into()],
            seq: BTreeMap::from([("Adele".to_owned(), 14)]),
        };
        assert_eq!(
            json(&frame.to_bytes()),
            serde_json::json!({"type":"subscribed","artists":["Adele"],"seq":{"Adele":14}})
        );
        let frame = Frame::Pong {
            connection_id: "abc=".into(),
            expires_at: "2026-11-23T09:00:00Z".into(),
        };
        assert_eq!(
            json(&frame.to_bytes()),
            serde_json::json!({"type":"pong","connectionId":"abc=","expiresAt":"2026-11-23T09:00:00Z"})
        );
        let frame = Frame::Gap {
            artist: "Adele".into(),
            from: 3,
            to: 7,
            retry: false,
        };
        assert_eq!(
            json(&frame.to_bytes()),
            serde_json::json!({"type":"gap","artist":"Adele","from":3,"to":7})
        );
        let frame = Frame::Gap {
            artist: "Adele".into(),
            from: 3,
            to: 7,
            retry: true,
        };
        assert_eq!(
            json(&frame.to_bytes()),
            serde_json::json!({"type":"gap","artist":"Adele","from":3,"to":7,"retry":true})
        );
        assert_eq!(
            json(&Frame::Revoked.to_bytes()),
            serde_json::json!({"type":"revoked"})
        );
        let frame = Frame::Notification {
            id: "e1".into(),
            seq: Some(14),
            artist: "Adele".into(),
            detail: serde_json::json!({"venue":"O2"}),
            time: "2026-11-23T09:00:00Z".into(),
        };
        assert_eq!(
            json(&frame.to_bytes()),
            serde_json::json!({"type":"notification","id":"e1","seq":14,"artist":"Adele","detail":{"venue":"O2"},"time":"2026-11-23T09:00:00Z"})
        );
    }

    #[test]
    fn a_reply_echoes_the_requests_reference_and_only_then() {
        let frame = Frame::Subscribed {
            artists: vec!["Adele".into()],
            seq: BTreeMap::new(),
        };
        let reference = Reference::parse("r-1").unwrap();
        assert_eq!(
            json(&frame.reply_bytes(Some(&reference))),
            serde_json::json!({"type":"subscribed","artists":["Adele"],"ref":"r-1"})
        );
        assert_eq!(json(&frame.reply_bytes(None)), json(&frame.to_bytes()));
    }
}
