//! What answers where: the WebSocket endpoint, the demo page and its client library, the
//! Management API, `PutEvents`, dev tokens and readiness, all behind the
//! [`guard`](super::guard).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use marquee::auth::{TokenClaims, mint};
use marquee::domain::now_epoch_seconds;
use serde::Deserialize;
use serde_json::json;

use super::tcp::Peer;
use super::{Shared, eventbridge, guard, management, socket};

/// The demo page, embedded.
const DEMO_PAGE: &str = include_str!("../../assets/index.html");
/// The client library the demo page imports, embedded (`clients/js`).
const CLIENT_LIBRARY: &str = include_str!("../../../clients/js/marquee.js");
/// Lifetime of tokens from `GET /dev/token`.
pub(super) const DEV_TOKEN_TTL_SECONDS: i64 = 3600;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let management = get(management::get_connection)
        .post(management::post_to_connection)
        .delete(management::delete_connection);
    let mut router = Router::new()
        .route("/", get(root).post(eventbridge::root_post))
        .route("/health", get(|| async { "ok" }))
        .route("/marquee.js", get(client_library))
        .route(
            "/events",
            get(eventbridge::completed).post(eventbridge::put_events),
        )
        .route("/events/{id}", get(eventbridge::completed_one))
        // The dev provider: its public key, and where to find it from its issuer (this URL).
        .route("/.well-known/jwks.json", get(dev_jwks))
        .route("/.well-known/openid-configuration", get(dev_discovery))
        .route("/{stage}", get(stage_root))
        .route("/@connections/{id}", management.clone())
        .route("/{stage}/@connections/{id}", management);
    // Tokens signed with the dev secret are for this machine only.
    if !shared.guard.is_public() {
        router = router.route("/dev/token", get(get_dev_token));
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            guard::admit,
        ))
        .with_state(shared)
}

/// `GET /`: the WebSocket endpoint when upgrading, the demo page otherwise.
async fn root(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Query(query): Query<BTreeMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &shared).await {
        Ok(upgrade) => socket::accept(shared, upgrade, peer, &parts.headers, query).await,
        Err(_) => Html(DEMO_PAGE).into_response(),
    }
}

/// `GET /marquee.js`: the client library, for the demo page (and any page on this machine).
async fn client_library() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        CLIENT_LIBRARY,
    )
        .into_response()
}

/// `GET /{stage}`: the WebSocket endpoint under the stage path, as in AWS URLs.
async fn stage_root(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(stage): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    request: axum::extract::Request,
) -> Response {
    if stage != shared.stage {
        return (StatusCode::NOT_FOUND, "no such stage").into_response();
    }
    let (mut parts, _body) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &shared).await {
        Ok(upgrade) => socket::accept(shared, upgrade, peer, &parts.headers, query).await,
        Err(rejection) => rejection.into_response(),
    }
}

/// The longest life a dev token may be asked for (`ttl`), in seconds: a day.
const DEV_TOKEN_MAX_TTL_SECONDS: i64 = 24 * 60 * 60;

#[derive(Debug, Deserialize)]
struct TokenQuery {
    sub: String,
    #[serde(default)]
    artists: Option<String>,
    /// Artists subscribed during `$connect` (the token's `subscribe` claim).
    #[serde(default)]
    subscribe: Option<String>,
    /// Rooms it may publish to (the token's `publish` claim).
    #[serde(default)]
    publish: Option<String>,
    /// Seconds until the token expires (default an hour).
    #[serde(default)]
    ttl: Option<i64>,
}

/// What a dev token says.
#[derive(Debug, Clone, Default)]
pub struct DevToken {
    /// Artists it may subscribe to (`None`: any).
    pub artists: Option<Vec<String>>,
    /// Artists subscribed during `$connect`.
    pub subscribe: Option<Vec<String>>,
    /// Rooms it may publish to.
    pub publish: Option<Vec<String>>,
    /// Seconds until it expires (`None`: an hour).
    pub ttl_seconds: Option<i64>,
}

fn comma_list(list: Option<String>) -> Option<Vec<String>> {
    list.map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// `GET /.well-known/jwks.json`: the dev provider's keys.
async fn dev_jwks() -> Response {
    match crate::provider::dev_jwks() {
        Ok(jwks) => axum::Json(jwks).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "no dev key").into_response(),
    }
}

/// `GET /.well-known/openid-configuration`: the dev provider's discovery document, its issuer
/// the URL this request came to.
async fn dev_discovery(headers: axum::http::HeaderMap) -> Response {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("127.0.0.1:3001");
    axum::Json(crate::provider::dev_discovery(&format!("http://{host}"))).into_response()
}

/// `GET /dev/token?sub=..&artists=..&subscribe=..&publish=..&ttl=..` (loopback binds only).
async fn get_dev_token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<TokenQuery>,
) -> Response {
    if query
        .ttl
        .is_some_and(|ttl| !(1..=DEV_TOKEN_MAX_TTL_SECONDS).contains(&ttl))
    {
        return (
            StatusCode::BAD_REQUEST,
            format!("ttl must be 1 to {DEV_TOKEN_MAX_TTL_SECONDS} seconds"),
        )
            .into_response();
    }
    let ttl = query.ttl.unwrap_or(DEV_TOKEN_TTL_SECONDS);
    let claims = DevToken {
        artists: comma_list(query.artists),
        subscribe: comma_list(query.subscribe),
        publish: comma_list(query.publish),
        ttl_seconds: Some(ttl),
    };
    match dev_token(&shared, &query.sub, &claims) {
        Some(token) => axum::Json(json!({
            "token": token,
            "sub": query.sub,
            "expiresAt": now_epoch_seconds() + ttl,
        }))
        .into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "could not sign a token").into_response(),
    }
}

/// A token for `sub` signed with the gateway's secret (valid for an hour unless `claims`
/// says otherwise).
pub(super) fn dev_token(shared: &Shared, sub: &str, claims: &DevToken) -> Option<String> {
    let now = now_epoch_seconds();
    mint(
        &shared.secret,
        &TokenClaims {
            sub: sub.to_owned(),
            aud: shared.audience.clone(),
            iat: now,
            exp: now + claims.ttl_seconds.unwrap_or(DEV_TOKEN_TTL_SECONDS),
            nbf: None,
            artists: claims.artists.clone(),
            subscribe: claims.subscribe.clone(),
            publish: claims.publish.clone(),
        },
    )
    .ok()
}
