//! Who may talk to the gateway: requests addressed to it by a loopback name or address, and no
//! web page from elsewhere.
//!
//! - `Host` must be a loopback name (`localhost`, `*.localhost`) or a loopback address, with the
//!   bound port. A DNS-rebinding page (`evil.example` resolving to 127.0.0.1) sends its own
//!   name, so it cannot read `/dev/token` or the Management API through the victim's browser.
//! - `Origin`, when present (browsers send it on cross-site requests, on POSTs and on every
//!   WebSocket handshake), must be a loopback origin: a page elsewhere can neither `POST
//!   /events` (CSRF) nor open a socket. `Origin: null` (sandboxed frames, `file:` pages) is
//!   refused too.
//!
//! On a non-loopback bind (`--host 0.0.0.0`), other machines must be able to reach it, so any
//! IP address literal is a valid `Host` as well (still no other names, so rebinding stays
//! refused), and a page may also use the origin it was served from (`http://{Host}`).
//! Refusals are `403` with a plain-text body that says which header failed and why.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

/// What the gateway answers, given where it listens.
#[derive(Debug, Clone, Copy)]
pub(super) struct Guard {
    port: u16,
    public: bool,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    NoHost,
    Host(String),
    Origin(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoHost => write!(f, "Forbidden: the request has no Host header."),
            Self::Host(host) => write!(
                f,
                "Forbidden: Host {host:?} is not this gateway's loopback address. marquee-local \
                 answers only requests addressed to localhost or 127.0.0.1 with its own port \
                 (a defence against DNS rebinding)."
            ),
            Self::Origin(origin) => write!(
                f,
                "Forbidden: Origin {origin:?} is not a loopback origin. marquee-local refuses \
                 requests and WebSockets from pages served elsewhere (a defence against \
                 cross-site requests)."
            ),
        }
    }
}

impl Guard {
    /// The rules for a gateway bound to `addr`.
    pub(super) fn for_bind(addr: SocketAddr) -> Self {
        Self {
            port: addr.port(),
            public: !addr.ip().is_loopback(),
        }
    }

    /// Whether the gateway listens beyond loopback.
    pub(super) fn is_public(self) -> bool {
        self.public
    }

    fn check(self, headers: &HeaderMap) -> Result<(), Refusal> {
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let host = text(header::HOST).ok_or(Refusal::NoHost)?;
        if !self.host_allowed(&host) {
            return Err(Refusal::Host(host));
        }
        match text(header::ORIGIN) {
            Some(origin) if !self.origin_allowed(&origin, &host) => Err(Refusal::Origin(origin)),
            _ => Ok(()),
        }
    }

    fn host_allowed(self, host: &str) -> bool {
        let Some((name, port)) = split_authority(host) else {
            return false;
        };
        port.unwrap_or(80) == self.port
            && (is_loopback(name) || (self.public && name.parse::<IpAddr>().is_ok()))
    }

    fn origin_allowed(self, origin: &str, host: &str) -> bool {
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false; // `null`, or not an origin at all
        };
        if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
            return false;
        }
        let loopback = split_authority(authority).is_some_and(|(name, _)| is_loopback(name));
        loopback || (self.public && authority.eq_ignore_ascii_case(host))
    }
}

/// `name[:port]` or `[v6][:port]` into the name (brackets removed) and the port.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        (name, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        }
    };
    if name.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return None;
    }
    match port {
        Some(port) => Some((name, Some(port.parse().ok()?))),
        None => Some((name, None)),
    }
}

/// `localhost`, a `.localhost` name (browsers resolve them to loopback themselves, RFC 6761),
/// or a loopback address.
fn is_loopback(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The middleware: refuses with 403 what [`Guard`] does not admit.
pub(super) async fn admit(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    match shared.guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                refusal = %refusal,
                "refused a request"
            );
            (StatusCode::FORBIDDEN, refusal.to_string()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const LOCAL: Guard = Guard {
        port: 3001,
        public: false,
    };
    const PUBLIC: Guard = Guard {
        port: 3001,
        public: true,
    };

    fn headers(host: Option<&'static str>, origin: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(header::HOST, HeaderValue::from_static(host));
        }
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
        }
        headers
    }

    #[test]
    fn loopback_hosts_with_the_bound_port_are_admitted() {
        for host in [
            "127.0.0.1:3001",
            "localhost:3001",
            "LocalHost:3001",
            "[::1]:3001",
            "app.localhost:3001",
            "127.1.2.3:3001",
        ] {
            assert_eq!(LOCAL.check(&headers(Some(host), None)), Ok(()), "{host}");
        }
    }

    #[test]
    fn other_hosts_and_ports_are_refused() {
        for host in [
            "evil.example:3001",
            "127.0.0.1.nip.io:3001",
            "127.0.0.1:3002",
            "127.0.0.1",
            "192.168.1.5:3001",
            "localhost.evil.example:3001",
            "user@127.0.0.1:3001",
        ] {
            assert_eq!(
                LOCAL.check(&headers(Some(host), None)),
                Err(Refusal::Host(host.into())),
                "{host}"
            );
        }
        assert_eq!(LOCAL.check(&headers(None, None)), Err(Refusal::NoHost));
    }

    #[test]
    fn only_loopback_origins_are_admitted() {
        for origin in [
            "http://127.0.0.1:3001",
            "http://localhost:5173",
            "https://localhost",
        ] {
            assert_eq!(
                LOCAL.check(&headers(Some("127.0.0.1:3001"), Some(origin))),
                Ok(()),
                "{origin}"
            );
        }
        for origin in [
            "https://evil.example",
            "null",
            "http://127.0.0.1.evil.example",
            "chrome-extension://abc",
        ] {
            assert_eq!(
                LOCAL.check(&headers(Some("127.0.0.1:3001"), Some(origin))),
                Err(Refusal::Origin(origin.into())),
                "{origin}"
            );
        }
    }

    #[test]
    fn a_public_bind_admits_ip_hosts_and_its_own_origin_but_no_names() {
        let lan = headers(Some("192.168.1.5:3001"), Some("http://192.168.1.5:3001"));
        assert_eq!(PUBLIC.check(&lan), Ok(()));
        assert!(
            PUBLIC
                .check(&headers(Some("evil.example:3001"), None))
                .is_err()
        );
        let foreign = headers(Some("192.168.1.5:3001"), Some("http://192.168.1.6:3001"));
        assert!(PUBLIC.check(&foreign).is_err());
    }
}
