//! The `$disconnect` handler.

use crate::function::Function;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::{DisconnectDeps, bad_request, connection_id, response};
use crate::domain::now_epoch_seconds;
use crate::push::Push;
use crate::routes::disconnect::disconnect;
use crate::store::Store;

/// Deletes the connection's records and tells its rooms it left. API Gateway ignores the
/// status of `$disconnect`, but a 500 still marks the failure in metrics; TTL removes what is
/// left.
///
/// Runs as [`Function::Disconnect`].
pub async fn handle<S: Store, P: Push>(
    deps: &DisconnectDeps<S, P>,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    Function::Disconnect
        .run(Box::pin(serve(deps, request)))
        .await
}

async fn serve<S: Store, P: Push>(
    deps: &DisconnectDeps<S, P>,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Some(id) = connection_id(&request) else {
        return bad_request();
    };
    let now = now_epoch_seconds();
    match disconnect(&deps.store, &deps.push, &id, deps.presence_max, now).await {
        Ok(removed) => {
            tracing::info!(
                connection_id = %id,
                deleted = removed.items,
                rooms = removed.artists.len(),
                status_code = request.request_context.disconnect_status_code,
                "disconnected"
            );
            response(200, "Disconnected")
        }
        Err(err) => {
            tracing::error!(
                connection_id = %id,
                error = &err as &dyn std::error::Error,
                "disconnect cleanup failed; TTL will remove the records"
            );
            response(500, "Internal Server Error")
        }
    }
}
