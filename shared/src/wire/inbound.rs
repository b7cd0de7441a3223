//! Parsing what clients send: `subscribe` (with `since`), `unsubscribe` and `ping`, each with
//! an optional `ref`.

use serde_json::{Map, Value};

use super::{ErrorCode, Frame, MAX_INBOUND_BYTES};
use crate::domain::{Artist, ArtistList, InvalidArtists};

/// The longest `ref` a client may send, in characters.
pub const MAX_REFERENCE_CHARS: usize = 64;
/// The largest `data` a client may publish to a room, serialised: 8 KiB.
pub const MAX_PUBLISH_DATA_BYTES: usize = 8 * 1024;

/// A parsed client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Add these artists to the connection's subscriptions, then replay what the client missed
    /// of the artists in `since`.
    Subscribe {
        /// The artists.
        artists: ArtistList,
        /// The last sequence number seen, per artist of `artists` (at most one each).
        since: Vec<Since>,
    },
    /// Remove these artists from the connection's subscriptions.
    Unsubscribe(ArtistList),
    /// Keep the connection alive and learn when it will be ended.
    Ping,
    /// Send `data` to everyone else in `artist`'s room.
    Publish {
        /// The room.
        artist: Artist,
        /// Any JSON value, at most [`MAX_PUBLISH_DATA_BYTES`] serialised.
        data: Value,
    },
}

/// "I have seen `artist`'s notifications up to `seq`": replay the later ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// The artist, as the client named it in `since`.
    pub artist: Artist,
    /// The last sequence number the client saw (0: none).
    pub seq: u64,
}

/// A client's `ref`: 1 to [`MAX_REFERENCE_CHARS`] characters, no control characters. Echoed in
/// the reply so a client can match replies to requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference(String);

impl Reference {
    /// A reference, if `raw` is one.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        let chars = raw.chars().count();
        let fits = (1..=MAX_REFERENCE_CHARS).contains(&chars);
        (fits && !raw.chars().any(char::is_control)).then(|| Self(raw.to_owned()))
    }

    /// The reference as sent.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A parsed inbound message: its `ref` when it had a usable one, and the request or why it
/// was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The `ref` to echo in the reply.
    pub reference: Option<Reference>,
    /// The request, or the error frame to answer with (nothing may be written for it).
    pub request: Result<Request, Rejection>,
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
    parse_message(body, is_base64_encoded).request
}

/// Parses an inbound message body, keeping its `ref` for the reply even when the request is
/// refused.
#[must_use]
pub fn parse_message(body: Option<&str>, is_base64_encoded: bool) -> Inbound {
    let mut reference = None;
    let request = parse_fields(body, is_base64_encoded).and_then(|mut fields| {
        reference = match fields.remove("ref") {
            None => None,
            Some(Value::String(raw)) => Some(Reference::parse(&raw).ok_or_else(|| {
                Rejection::new(
                    ErrorCode::InvalidMessage,
                    format!(
                        "\"ref\" must be 1 to {MAX_REFERENCE_CHARS} characters without control characters"
                    ),
                )
            })?),
            Some(_) => {
                return Err(Rejection::new(
                    ErrorCode::InvalidMessage,
                    "\"ref\" must be a string",
                ));
            }
        };
        parse_action(fields)
    });
    Inbound { reference, request }
}

fn parse_fields(
    body: Option<&str>,
    is_base64_encoded: bool,
) -> Result<Map<String, Value>, Rejection> {
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
    match value {
        Value::Object(fields) => Ok(fields),
        _ => Err(Rejection::new(
            ErrorCode::InvalidMessage,
            "message must be a JSON object with an \"action\"",
        )),
    }
}

fn parse_action(mut fields: Map<String, Value>) -> Result<Request, Rejection> {
    let action = match fields.remove("action") {
        Some(Value::String(action)) => action,
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
    match action.as_str() {
        "subscribe" => {
            let artists = artists(&mut fields, &action)?;
            let since = since(fields.remove("since"), &artists)?;
            Ok(Request::Subscribe { artists, since })
        }
        "unsubscribe" => Ok(Request::Unsubscribe(artists(&mut fields, &action)?)),
        "ping" => Ok(Request::Ping),
        "publish" => publish(fields),
        _ => Err(Rejection::new(
            ErrorCode::UnknownAction,
            format!(
                "unknown action {}; expected \"subscribe\", \"unsubscribe\", \"ping\" or \"publish\"",
                quoted_prefix(&action)
            ),
        )),
    }
}

fn artists(fields: &mut Map<String, Value>, action: &str) -> Result<ArtistList, Rejection> {
    let not_strings = || {
        Rejection::new(
            ErrorCode::InvalidMessage,
            "\"artists\" must be an array of strings",
        )
    };
    let names = match fields.remove("artists") {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(name) => Ok(name),
                _ => Err(not_strings()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(not_strings()),
        None => {
            return Err(Rejection::new(
                ErrorCode::InvalidMessage,
                format!("{action} needs \"artists\": an array of artist names"),
            ));
        }
    };
    ArtistList::parse(&names)
        .map_err(|e: InvalidArtists| Rejection::new(ErrorCode::InvalidArtists, e.to_string()))
}

/// `publish`: a room (`artist`) and `data` of at most [`MAX_PUBLISH_DATA_BYTES`].
fn publish(mut fields: Map<String, Value>) -> Result<Request, Rejection> {
    let artist = match fields.remove("artist") {
        Some(Value::String(name)) => Artist::parse(&name)
            .map_err(|e| Rejection::new(ErrorCode::InvalidArtists, e.to_string()))?,
        Some(_) => {
            return Err(Rejection::new(
                ErrorCode::InvalidMessage,
                "\"artist\" must be a string",
            ));
        }
        None => {
            return Err(Rejection::new(
                ErrorCode::InvalidMessage,
                "publish needs \"artist\": the room's artist",
            ));
        }
    };
    let Some(data) = fields.remove("data") else {
        return Err(Rejection::new(
            ErrorCode::InvalidMessage,
            "publish needs \"data\": any JSON value",
        ));
    };
    let size = serde_json::to_vec(&data).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_PUBLISH_DATA_BYTES {
        return Err(Rejection::new(
            ErrorCode::DataTooLarge,
            format!("data is {size} bytes; the limit is {MAX_PUBLISH_DATA_BYTES}"),
        ));
    }
    Ok(Request::Publish { artist, data })
}

/// `since`: an object from artist names (each one of `artists`, once) to the last sequence
/// number seen.
fn since(value: Option<Value>, artists: &ArtistList) -> Result<Vec<Since>, Rejection> {
    let invalid = |message: String| Rejection::new(ErrorCode::InvalidSince, message);
    let entries = match value {
        None => return Ok(Vec::new()),
        Some(Value::Object(entries)) => entries,
        Some(_) => {
            return Err(invalid(
                "\"since\" must be an object from artist names to sequence numbers".to_owned(),
            ));
        }
    };
    let mut since: Vec<Since> = Vec::with_capacity(entries.len());
    for (name, seq) in entries {
        let artist = Artist::parse(&name)
            .map_err(|e| invalid(format!("since {}: {e}", quoted_prefix(&name))))?;
        if !artists.as_slice().iter().any(|a| a.key() == artist.key()) {
            return Err(invalid(format!(
                "since names {}, which is not in \"artists\"",
                quoted_prefix(&name)
            )));
        }
        if since.iter().any(|s| s.artist.key() == artist.key()) {
            return Err(invalid(format!(
                "since names {} twice",
                quoted_prefix(&name)
            )));
        }
        let Some(seq) = seq.as_u64() else {
            return Err(invalid(format!(
                "since {} must be a whole number, 0 or more",
                quoted_prefix(&name)
            )));
        };
        since.push(Since { artist, seq });
    }
    Ok(since)
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
        let Request::Subscribe {
            artists: list,
            since,
        } = req
        else {
            unreachable!("parsed {req:?}")
        };
        assert!(since.is_empty());
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
            Ok(Request::Subscribe { .. })
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
    fn since_names_artists_of_the_message_in_any_spelling() {
        let req = parse_request(
            Some(
                r#"{"action":"subscribe","artists":["Adele","Bob"],"since":{"adele":12,"Bob":0}}"#,
            ),
            false,
        )
        .unwrap();
        let Request::Subscribe { since, .. } = req else {
            unreachable!("parsed {req:?}")
        };
        let mut got: Vec<(&str, u64)> = since.iter().map(|s| (s.artist.name(), s.seq)).collect();
        got.sort_unstable();
        assert_eq!(got, vec![("Bob", 0), ("adele", 12)]);
    }

    #[test]
    fn a_bad_since_is_refused_with_its_own_code() {
        for since in [
            r#""Adele""#,
            r#"{"Taylor Swift":1}"#,
            r#"{"Adele":-1}"#,
            r#"{"Adele":1.5}"#,
            r#"{"Adele":"3"}"#,
            r#"{"Adele":1,"ADELE":2}"#,
            r#"{"":1}"#,
        ] {
            let body = format!(r#"{{"action":"subscribe","artists":["Adele"],"since":{since}}}"#);
            assert_eq!(code_of(&body), ErrorCode::InvalidSince, "{since}");
        }
    }

    #[test]
    fn publish_takes_a_room_and_any_json_data_up_to_8_kib() {
        let req = parse_request(
            Some(r#"{"action":"publish","artist":"Adele","data":{"kind":"chat","text":"hi"}}"#),
            false,
        )
        .unwrap();
        let Request::Publish { artist, data } = req else {
            unreachable!("parsed {req:?}")
        };
        assert_eq!(artist.name(), "Adele");
        assert_eq!(data, serde_json::json!({"kind":"chat","text":"hi"}));
        assert!(matches!(
            parse_request(
                Some(r#"{"action":"publish","artist":"Adele","data":null}"#),
                false
            ),
            Ok(Request::Publish { .. })
        ));
    }

    #[test]
    fn a_bad_publish_is_refused_with_a_precise_code() {
        let big = "x".repeat(MAX_PUBLISH_DATA_BYTES);
        for (body, code) in [
            (
                r#"{"action":"publish","artist":"Adele"}"#.to_owned(),
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"action":"publish","data":1}"#.to_owned(),
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"action":"publish","artist":7,"data":1}"#.to_owned(),
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"action":"publish","artist":" ","data":1}"#.to_owned(),
                ErrorCode::InvalidArtists,
            ),
            (
                format!(r#"{{"action":"publish","artist":"Adele","data":"{big}"}}"#),
                ErrorCode::DataTooLarge,
            ),
        ] {
            assert_eq!(code_of(&body), code, "{body}");
        }
    }

    #[test]
    fn ping_parses_and_its_ref_is_kept() {
        let inbound = parse_message(Some(r#"{"action":"ping","ref":"p1"}"#), false);
        assert_eq!(inbound.request, Ok(Request::Ping));
        assert_eq!(inbound.reference.unwrap().as_str(), "p1");
    }

    #[test]
    fn a_refused_request_still_echoes_a_good_ref_and_a_bad_ref_is_refused() {
        let inbound = parse_message(Some(r#"{"action":"dance","ref":"r9"}"#), false);
        assert_eq!(inbound.request.unwrap_err().code, ErrorCode::UnknownAction);
        assert_eq!(inbound.reference.unwrap().as_str(), "r9");
        let long = "r".repeat(MAX_REFERENCE_CHARS + 1);
        for reference in [
            format!("{long:?}"),
            "7".to_owned(),
            r#""""#.to_owned(),
            r#""a\nb""#.to_owned(),
        ] {
            let inbound = parse_message(
                Some(&format!(r#"{{"action":"ping","ref":{reference}}}"#)),
                false,
            );
            assert_eq!(inbound.reference, None, "{reference}");
            assert_eq!(
                inbound.request.unwrap_err().code,
                ErrorCode::InvalidMessage,
                "{reference}"
            );
        }
    }
}
