//! The JSON text frames between clients and Marquee.
//!
//! Inbound: `{"action":"subscribe","artists":[...]}` and `{"action":"unsubscribe","artists":[...]}`.
//! Outbound: `subscribed`, `unsubscribed`, `error` and `notification` frames ([`Frame`]).

use serde::Serialize;
use serde_json::Value;

use crate::domain::{ArtistList, InvalidArtists};

/// Largest inbound message body we parse, in bytes: API Gateway's WebSocket frame size, 32 KiB.
/// The largest legal message fits: 25 artists of 100 characters, each written as a JSON
/// surrogate-pair escape (`\ud83c\udfb5`, 12 bytes a character), is 30,000 bytes of names plus
/// the quotes, commas and the action.
pub const MAX_INBOUND_BYTES: usize = 32 * 1024;
/// The largest frame API Gateway posts to a client (`PostToConnection`): 128 KiB.
pub const MAX_OUTBOUND_BYTES: usize = 128 * 1024;

/// A parsed client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Add these artists to the connection's subscriptions.
    Subscribe(ArtistList),
    /// Remove these artists from the connection's subscriptions.
    Unsubscribe(ArtistList),
}

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
    /// The token's `artists` claim does not cover a requested artist.
    Forbidden,
    /// The subscription would take the connection over its cap.
    TooManySubscriptions,
    /// No live connection record (it expired, or `$connect` never stored it).
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
    },
    /// The artists no longer subscribed.
    Unsubscribed {
        /// Display names.
        artists: Vec<String>,
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
        /// The artist, as the event named it.
        artist: String,
        /// The event's `detail`, forwarded whole.
        detail: Value,
        /// When the event happened (RFC 3339).
        time: String,
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
            Self::Error { code, .. } => code.as_str(),
            Self::Notification { .. } => "notification",
        }
    }

    /// The frame as JSON bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these shapes (strings, vectors, a `Value`) cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Why an inbound message was refused: the error frame to send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// Code for the error frame.
    pub code: ErrorCode,
    /// Message for the error frame.
    pub message: String,
}

impl Rejection {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The error frame for this rejection.
    #[must_use]
    pub fn frame(&self) -> Frame {
        Frame::error(self.code, self.message.clone())
    }
}

/// Parses an inbound message body.
///
/// # Errors
/// A [`Rejection`] carrying the error frame to send; nothing must be written for it.
pub fn parse_request(body: Option<&str>, is_base64_encoded: bool) -> Result<Request, Rejection> {
    if is_base64_encoded {
        return Err(Rejection::new(
            ErrorCode::UnsupportedFrame,
            "binary frames are not supported; send JSON text frames",
        ));
    }
    let body = body.unwrap_or_default();
    if body.len() > MAX_INBOUND_BYTES {
        return Err(Rejection::new(
            ErrorCode::MessageTooLarge,
            format!(
                "message is {} bytes; the limit is {MAX_INBOUND_BYTES}",
                body.len()
            ),
        ));
    }
    let value: Value = serde_json::from_str(body).map_err(|e| {
        Rejection::new(
            ErrorCode::InvalidJson,
            format!("message is not valid JSON ({e})"),
        )
    })?;
    let Value::Object(mut fields) = value else {
        return Err(Rejection::new(
            ErrorCode::InvalidMessage,
            "message must be a JSON object with an \"action\"",
        ));
    };
    let action = match fields.get("action") {
        Some(Value::String(action)) => action.clone(),
        Some(_) => {
            return Err(Rejection::new(
                ErrorCode::InvalidMessage,
                "\"action\" must be a string",
            ));
        }
        None => {
            return Err(Rejection::new(
                ErrorCode::InvalidMessage,
                "message has no \"action\"",
            ));
        }
    };
    let wrap: fn(ArtistList) -> Request = match action.as_str() {
        "subscribe" => Request::Subscribe,
        "unsubscribe" => Request::Unsubscribe,
        _ => {
            return Err(Rejection::new(
                ErrorCode::UnknownAction,
                format!(
                    "unknown action {}; expected \"subscribe\" or \"unsubscribe\"",
                    quoted_prefix(&action)
                ),
            ));
        }
    };
    let names = match fields.remove("artists") {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(name) => Ok(name),
                _ => Err(Rejection::new(
                    ErrorCode::InvalidMessage,
                    "\"artists\" must be an array of strings",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(Rejection::new(
                ErrorCode::InvalidMessage,
                "\"artists\" must be an array of strings",
            ));
        }
        None => {
            return Err(Rejection::new(
                ErrorCode::InvalidMessage,
                format!("{action} needs \"artists\": an array of artist names"),
            ));
        }
    };
    let artists = ArtistList::parse(&names)
        .map_err(|e: InvalidArtists| Rejection::new(ErrorCode::InvalidArtists, e.to_string()))?;
    Ok(wrap(artists))
}

/// At most 40 characters of client text, JSON-quoted, for echoing in a message.
fn quoted_prefix(text: &str) -> String {
    let prefix: String = text.chars().take(40).collect();
    serde_json::to_string(&prefix).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn code_of(body: &str) -> ErrorCode {
        parse_request(Some(body), false).unwrap_err().code
    }

    #[test]
    fn subscribe_and_unsubscribe_parse_into_artist_lists() {
        let req = parse_request(
            Some(r#"{"action":"subscribe","artists":["Adele","Taylor Swift"]}"#),
            false,
        )
        .unwrap();
        let Request::Subscribe(list) = req else {
            unreachable!("parsed {req:?}")
        };
        assert_eq!(list.names(), vec!["Adele", "Taylor Swift"]);
        assert!(matches!(
            parse_request(
                Some(r#"{"action":"unsubscribe","artists":["Adele"]}"#),
                false
            ),
            Ok(Request::Unsubscribe(_))
        ));
    }

    #[test]
    fn malformed_messages_get_precise_error_codes() {
        assert_eq!(code_of("not json"), ErrorCode::InvalidJson);
        assert_eq!(code_of(""), ErrorCode::InvalidJson);
        assert_eq!(code_of("[1,2]"), ErrorCode::InvalidMessage);
        assert_eq!(
            code_of(r#"{"artists":["Adele"]}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(code_of(r#"{"action":7}"#), ErrorCode::InvalidMessage);
        assert_eq!(
            code_of(r#"{"action":"subscribe","artists":"Adele"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code_of(r#"{"action":"subscribe","artists":[1]}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code_of(r#"{"action":"subscribe"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(code_of(r#"{"action":"dance"}"#), ErrorCode::UnknownAction);
        assert_eq!(
            code_of(r#"{"action":"subscribe","artists":[]}"#),
            ErrorCode::InvalidArtists
        );
        assert_eq!(
            code_of(r#"{"action":"subscribe","artists":["  "]}"#),
            ErrorCode::InvalidArtists
        );
    }

    #[test]
    fn the_largest_legal_subscribe_fits_the_inbound_limit() {
        // 25 names of 100 astral characters, each escaped as a surrogate pair.
        let name = "\\ud83c\\udfb5".repeat(crate::domain::MAX_ARTIST_CHARS);
        let names: Vec<String> = (0..crate::domain::MAX_ARTISTS_PER_MESSAGE)
            .map(|i| format!("\"{i:02}{}\"", &name[..name.len() - 24]))
            .collect();
        let body = format!(
            r#"{{"action":"subscribe","artists":[{}]}}"#,
            names.join(",")
        );
        assert!(body.len() > 8 * 1024, "{} bytes", body.len());
        assert!(matches!(
            parse_request(Some(&body), false),
            Ok(Request::Subscribe(_))
        ));
    }

    #[test]
    fn oversize_and_binary_messages_are_refused_before_parsing() {
        let big = format!(
            r#"{{"action":"subscribe","artists":["{}"]}}"#,
            "a".repeat(MAX_INBOUND_BYTES)
        );
        assert_eq!(code_of(&big), ErrorCode::MessageTooLarge);
        assert_eq!(
            parse_request(Some("eyJ9"), true).unwrap_err().code,
            ErrorCode::UnsupportedFrame
        );
    }

    #[test]
    fn unknown_actions_are_echoed_truncated() {
        let long = "x".repeat(500);
        let rejection =
            parse_request(Some(&format!(r#"{{"action":"{long}"}}"#)), false).unwrap_err();
        assert!(rejection.message.len() < 120, "{}", rejection.message);
    }

    #[test]
    fn error_code_labels_match_their_wire_spelling() {
        for code in [
            ErrorCode::InvalidJson,
            ErrorCode::InvalidMessage,
            ErrorCode::UnknownAction,
            ErrorCode::UnsupportedFrame,
            ErrorCode::MessageTooLarge,
            ErrorCode::InvalidArtists,
            ErrorCode::Forbidden,
            ErrorCode::TooManySubscriptions,
            ErrorCode::UnknownConnection,
            ErrorCode::Busy,
            ErrorCode::InternalError,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn frames_serialise_to_the_documented_shapes() {
        let frame = Frame::error(ErrorCode::TooManySubscriptions, "cap is 50");
        assert_eq!(
            serde_json::from_slice::<Value>(&frame.to_bytes()).unwrap(),
            serde_json::json!({"type":"error","code":"too_many_subscriptions","message":"cap is 50"})
        );
        let frame = Frame::Subscribed {
            artists: vec!["Adele".into()],
        };
        assert_eq!(
            serde_json::from_slice::<Value>(&frame.to_bytes()).unwrap(),
            serde_json::json!({"type":"subscribed","artists":["Adele"]})
        );
    }
}
