//! The suite's WebSocket client: a handshake with a timeout, JSON frames with a timeout, a
//! clean close. Messages never contain the URL with its token.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::seconds;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A checked `ws://` or `wss://` URL, without a token.
#[derive(Debug, Clone)]
pub(crate) struct WsUrl {
    url: String,
    host: String,
    port: u16,
}

impl WsUrl {
    /// Checks `url`: a WebSocket URL with a host and no token of its own. It is kept in a
    /// normal form: the scheme in lower case, `/` for an empty path (`ws://127.0.0.1:3001`, as
    /// people type it, would otherwise send `GET ?token=...`), and no `?` without a query.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let lower = url.to_ascii_lowercase();
        let secure = lower.starts_with("wss://");
        if !secure && !lower.starts_with("ws://") {
            return Err(format!(
                "{url:?} is not a WebSocket URL: it must start with ws:// or wss:// (the \
                 stack's WebSocketUrl output, or ws://127.0.0.1:3001/ for marquee-local)"
            ));
        }
        if lower.contains("token=") {
            return Err("leave the token out of the URL: the suite mints its own".into());
        }
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{url:?} has no host"))?
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let authority = uri.authority().map_or(host.as_str(), |a| a.as_str());
        let path = match uri.path() {
            "" => "/",
            path => path,
        };
        let query = uri
            .query()
            .filter(|q| !q.is_empty())
            .map_or_else(String::new, |q| format!("?{q}"));
        let scheme = if secure { "wss" } else { "ws" };
        Ok(Self {
            url: format!("{scheme}://{authority}{path}{query}"),
            host,
            port,
        })
    }

    /// The URL, in its normal form.
    pub(crate) fn as_str(&self) -> &str {
        &self.url
    }

    /// Whether the host is this machine (`localhost`, 127.0.0.0/8, `[::1]`).
    pub(crate) fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// `http://host:port`: where the local gateway also takes `PutEvents`.
    pub(crate) fn http_origin(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// The URL with `?token=` (or `&token=`) appended.
    fn with_token(&self, token: Option<&str>) -> String {
        match token {
            None => self.url.clone(),
            Some(token) => {
                let separator = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{separator}token={token}", self.url)
            }
        }
    }
}

/// How a handshake ended.
#[derive(Debug)]
pub(crate) enum Handshake {
    /// 101: the socket is open.
    Open(Box<Fan>),
    /// The server refused with this HTTP status.
    Refused(u16),
}

/// Opens a socket with `token` (none: no `token` parameter). `Err` means the endpoint could
/// not be reached or spoke no WebSocket: a one-line reason.
pub(crate) async fn handshake(
    url: &WsUrl,
    token: Option<&str>,
    label: &'static str,
    wait: Duration,
) -> Result<Handshake, String> {
    let target = url.with_token(token);
    let attempt = Box::pin(connect_async(target.as_str()));
    match tokio::time::timeout(wait, attempt).await {
        Err(_) => Err(format!(
            "no WebSocket handshake with {}:{} within {}",
            url.host,
            url.port,
            seconds(wait)
        )),
        Ok(Ok((socket, _response))) => Ok(Handshake::Open(Box::new(Fan {
            socket,
            label,
            artists: Vec::new(),
        }))),
        Ok(Err(WsError::Http(response))) => Ok(Handshake::Refused(response.status().as_u16())),
        Ok(Err(WsError::Io(e))) => Err(format!(
            "could not connect to {}:{}: {e}",
            url.host, url.port
        )),
        Ok(Err(WsError::Tls(e))) => Err(format!("TLS with {} failed: {e}", url.host)),
        Ok(Err(WsError::Url(e))) => Err(format!("unusable URL: {e}")),
        Ok(Err(e)) => Err(format!("the WebSocket handshake failed: {e}")),
    }
}

/// One open connection of the suite, and the artists it is subscribed to.
#[derive(Debug)]
pub(crate) struct Fan {
    socket: Socket,
    /// Which of the suite's connections this is (for messages).
    pub(crate) label: &'static str,
    /// Artists it subscribed to and has not unsubscribed from.
    pub(crate) artists: Vec<String>,
}

impl Fan {
    /// Sends `body` as a text frame.
    pub(crate) async fn send(&mut self, body: &Value, wait: Duration) -> Result<(), String> {
        match tokio::time::timeout(wait, self.socket.send(Message::text(body.to_string()))).await {
            Err(_) => Err(format!("could not send within {}", seconds(wait))),
            Ok(Err(e)) => Err(format!("could not send: {e}")),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The next text frame as JSON, or `None` when none arrives within `wait` (pings, pongs and
    /// presence frames skipped). `Err` when the socket closes, fails, or sends something that is not JSON.
    pub(crate) async fn next(&mut self, wait: Duration) -> Result<Option<Value>, String> {
        let deadline = Instant::now() + wait;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err("the server ended the connection".into()),
                Ok(Some(Err(e))) => return Err(format!("the connection failed: {e}")),
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(text.as_str()).map_err(|_| {
                        format!("a frame that is not JSON: {}", clip(text.as_str()))
                    })?;
                    // Room presence (a welcome after each subscribe, others coming and going)
                    // is not what the suite checks.
                    if matches!(
                        frame.get("type").and_then(Value::as_str),
                        Some("welcome" | "joined" | "left")
                    ) {
                        continue;
                    }
                    return Ok(Some(frame));
                }
                Message::Close(frame) => {
                    return Err(match frame {
                        Some(f) => format!(
                            "the server closed the connection ({} {})",
                            u16::from(f.code),
                            f.reason
                        ),
                        None => "the server closed the connection".into(),
                    });
                }
                Message::Binary(_) => return Err("an unexpected binary frame".into()),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Sends `body` and returns the next frame; `Err` when none arrives within `wait`.
    pub(crate) async fn request(&mut self, body: &Value, wait: Duration) -> Result<Value, String> {
        self.send(body, wait).await?;
        self.next(wait)
            .await?
            .ok_or_else(|| format!("no reply within {}", seconds(wait)))
    }

    /// `Ok` when no frame arrives for `wait`; otherwise what arrived.
    pub(crate) async fn silence(&mut self, wait: Duration) -> Result<(), String> {
        match self.next(wait).await? {
            None => Ok(()),
            Some(frame) => Err(clip(&frame.to_string())),
        }
    }

    /// Closes with 1000 and waits (at most `wait`) for the server to answer: `Some(code)` when
    /// it echoed a close frame, `None` when it ended the connection without one.
    pub(crate) async fn close(mut self, wait: Duration) -> Result<Option<u16>, String> {
        let deadline = Instant::now() + wait;
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "marquee-smoke done".into(),
        };
        match tokio::time::timeout_at(deadline, self.socket.close(Some(frame))).await {
            Err(_) => return Err(format!("could not send a close within {}", seconds(wait))),
            Ok(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                return Err("the connection was already closed".into());
            }
            Ok(Err(e)) => return Err(format!("could not send a close: {e}")),
            Ok(Ok(())) => {}
        }
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => {
                    return Err(format!(
                        "the server did not answer the close within {}",
                        seconds(wait)
                    ));
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Ok(Some(frame.map_or(1005, |f| u16::from(f.code))));
                }
                // Frames sent before the server saw our close.
                Ok(Some(Ok(_))) => {}
                Ok(
                    None
                    | Some(Err(
                        WsError::ConnectionClosed
                        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                    )),
                ) => return Ok(None),
                Ok(Some(Err(e))) => return Err(format!("the close failed: {e}")),
            }
        }
    }
}

/// At most 200 characters of `text`, on one line.
pub(crate) fn clip(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", one_line.get(..at).unwrap_or_default()),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_websocket_urls_without_a_token_are_taken() {
        assert!(
            WsUrl::parse("https://example.com/")
                .unwrap_err()
                .contains("not a WebSocket URL")
        );
        assert!(
            WsUrl::parse("ws://127.0.0.1:3001/?token=abc")
                .unwrap_err()
                .contains("leave the token out")
        );
        assert!(WsUrl::parse("ws://").is_err());
        let aws = WsUrl::parse("wss://abc.execute-api.eu-west-1.amazonaws.com/live").unwrap();
        assert!(!aws.is_loopback());
        assert_eq!(
            aws.with_token(Some("t")),
            "wss://abc.execute-api.eu-west-1.amazonaws.com/live?token=t"
        );
        let local = WsUrl::parse("ws://127.0.0.1:3001/").unwrap();
        assert!(local.is_loopback());
        assert_eq!(local.http_origin(), "http://127.0.0.1:3001");
        assert_eq!(local.with_token(None), "ws://127.0.0.1:3001/");
        assert!(WsUrl::parse("ws://[::1]:9/").unwrap().is_loopback());
        assert!(WsUrl::parse("WS://localhost/x?a=1").unwrap().is_loopback());
        assert_eq!(
            WsUrl::parse("ws://localhost/x?a=1")
                .unwrap()
                .with_token(Some("t")),
            "ws://localhost/x?a=1&token=t"
        );
    }

    #[test]
    fn a_url_without_a_path_gets_the_root_path_before_its_query() {
        let bare = WsUrl::parse("ws://127.0.0.1:3001").unwrap();
        assert_eq!(bare.as_str(), "ws://127.0.0.1:3001/");
        assert_eq!(bare.with_token(Some("t")), "ws://127.0.0.1:3001/?token=t");
        assert_eq!(
            WsUrl::parse("ws://127.0.0.1:3001?a=1")
                .unwrap()
                .with_token(Some("t")),
            "ws://127.0.0.1:3001/?a=1&token=t"
        );
        assert_eq!(
            WsUrl::parse("WSS://abc.execute-api.eu-west-1.amazonaws.com/live?")
                .unwrap()
                .with_token(Some("t")),
            "wss://abc.execute-api.eu-west-1.amazonaws.com/live?token=t"
        );
        assert_eq!(
            WsUrl::parse(" ws://localhost:3001/local/?a=1&b=2 ")
                .unwrap()
                .as_str(),
            "ws://localhost:3001/local/?a=1&b=2"
        );
    }

    #[test]
    fn clip_keeps_one_short_line() {
        assert_eq!(clip("a\nb"), "a b");
        let long = "é".repeat(300);
        assert_eq!(clip(&long).chars().count(), 201);
    }
}
