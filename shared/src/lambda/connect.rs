//! The `$connect` handler.

use crate::function::Function;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::{ConnectDeps, bad_request, connection_id, response};
use std::sync::Arc;

use crate::auth::{TokenError, TokenVerifier};
use crate::domain::now_epoch_seconds;
use crate::metrics::Metrics;
use crate::routes::connect::{ConnectError, ConnectLimits, connect};
use crate::store::Store;

/// Authorises `?token=` and records the connection: 200, or 401/403/500 to refuse the
/// handshake. The token is never logged.
///
/// Runs as [`Function::Connect`].
pub async fn handle<S: Store>(
    deps: &ConnectDeps<S>,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    Function::Connect.run(Box::pin(serve(deps, request))).await
}

async fn serve<S: Store>(
    deps: &ConnectDeps<S>,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Some(id) = connection_id(&request) else {
        return bad_request();
    };
    let token = request.query_string_parameters.first("token");
    let now = now_epoch_seconds();
    let mut metrics = Metrics::new("connect");
    let attempt = |verifier: Arc<TokenVerifier>| {
        let id = id.clone();
        let limits = ConnectLimits {
            ttl_seconds: deps.ttl_seconds,
            max_subscriptions: deps.max_subscriptions,
        };
        async move { connect(&deps.store, &verifier, limits, id, token, now).await }
    };
    let mut result = attempt(deps.verifier.current()).await;
    if matches!(result, Err(ConnectError::Token(TokenError::Invalid(_))))
        && deps.verifier.renew().await
    {
        // The secret may have been rotated since this container read it.
        result = attempt(deps.verifier.current()).await;
    }
    let response = match result {
        Ok(connection) => {
            tracing::info!(
                connection_id = %id,
                user_id = %connection.user_id,
                expires_at = connection.expires_at,
                "connected"
            );
            metrics.count("Connects", 1);
            response(200, "Connected")
        }
        Err(ConnectError::Token(reason)) => {
            let status = reason.status();
            metrics.count_by("ConnectRefusals", "Reason", reason.reason(), 1);
            tracing::info!(connection_id = %id, status, reason = %reason, "connection refused");
            response(
                status,
                if status == 403 {
                    "Forbidden"
                } else {
                    "Unauthorized"
                },
            )
        }
        Err(err @ ConnectError::Store(_)) => {
            tracing::error!(
                connection_id = %id,
                error = &err as &dyn std::error::Error,
                "connect failed"
            );
            metrics.count("ConnectErrors", 1);
            response(500, "Internal Server Error")
        }
    };
    metrics.emit();
    response
}
