//! The handler of the `subscribe`, `unsubscribe`, `ping`, `publish` and `$default` routes: the
//! `subscribe` function (`Function::Subscribe`, `SubscribeFunction`), whatever the route.

use crate::function::Function;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::{SubscribeDeps, bad_request, connection_id, response};
use crate::domain::now_epoch_seconds;
use crate::metrics::Metrics;
use crate::push::{Posted, Push};
use crate::queue::Queue;
use crate::routes::subscribe::{ClientFrame, handle_frame};
use crate::store::Store;
use crate::wire::Frame;

/// Applies the client's frame and posts the reply frame to the sender. The HTTP status goes to API
/// Gateway, not the client (the client's answer is the frame): 200, or 500 when our side
/// failed. No deadline: see [`handle_until`].
///
/// Runs as [`Function::Subscribe`].
pub async fn handle<S: Store, P: Push, Q: Queue>(
    deps: &SubscribeDeps<S, P, Q>,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    handle_until(deps, request, None).await
}

/// As [`handle`], a catch-up stopping short of the invocation's `deadline`
/// ([`super::deadline`]) with a `gap` the client can retry.
///
/// Runs as [`Function::Subscribe`].
pub async fn handle_until<S: Store, P: Push, Q: Queue>(
    deps: &SubscribeDeps<S, P, Q>,
    request: ApiGatewayWebsocketProxyRequest,
    deadline: Option<tokio::time::Instant>,
) -> ApiGatewayProxyResponse {
    Function::Subscribe
        .run(Box::pin(serve(deps, request, deadline)))
        .await
}

async fn serve<S: Store, P: Push, Q: Queue>(
    deps: &SubscribeDeps<S, P, Q>,
    request: ApiGatewayWebsocketProxyRequest,
    deadline: Option<tokio::time::Instant>,
) -> ApiGatewayProxyResponse {
    let Some(id) = connection_id(&request) else {
        return bad_request();
    };
    let route = request.request_context.route_key.as_deref().unwrap_or("");
    let outcome = handle_frame(
        &deps.ports(),
        &deps.settings,
        ClientFrame {
            connection: &id,
            body: request.body.as_deref(),
            is_base64_encoded: request.is_base64_encoded,
            now: now_epoch_seconds(),
            deadline,
        },
    )
    .await;
    let reply = outcome.reply.label();
    let mut metrics = Metrics::new("subscribe");
    match &outcome.reply {
        Frame::Subscribed { .. } => metrics.count("Subscribes", 1),
        Frame::Unsubscribed { .. } => metrics.count("Unsubscribes", 1),
        Frame::Pong { .. } => metrics.count("Pings", 1),
        Frame::Published { .. } => metrics.count("Published", 1),
        Frame::Error { code, .. } => metrics.count_by("MessageErrors", "Code", code.as_str(), 1),
        Frame::Notification { .. }
        | Frame::Gap { .. }
        | Frame::Announcement { .. }
        | Frame::Message { .. }
        | Frame::Welcome { .. }
        | Frame::Joined { .. }
        | Frame::Left { .. }
        | Frame::Revoked => &mut metrics,
    };
    let replayed = outcome.replayed;
    if replayed.notifications > 0 {
        metrics.count("Replayed", replayed.notifications);
    }
    if replayed.gaps > 0 {
        metrics.count("Gaps", replayed.gaps);
    }
    if outcome.closed {
        metrics.count("ExpiredClosed", 1);
    }
    if outcome.posted.is_err() {
        metrics.count("RepliesLost", 1);
    }
    metrics.emit();
    match &outcome.posted {
        Ok(Posted::Delivered) => {}
        Ok(Posted::Gone) => tracing::info!(connection_id = %id, "sender is gone; records removed"),
        Err(err) => tracing::warn!(
            connection_id = %id,
            error = err as &dyn std::error::Error,
            "could not post the reply"
        ),
    }
    if let Some(err) = &outcome.failure {
        tracing::error!(
            connection_id = %id,
            route,
            error = err as &dyn std::error::Error,
            "message failed"
        );
        return response(500, "Internal Server Error");
    }
    tracing::info!(
        connection_id = %id,
        route,
        reply,
        replayed = replayed.notifications,
        gaps = replayed.gaps,
        closed = outcome.closed,
        "message handled"
    );
    response(200, "OK")
}
