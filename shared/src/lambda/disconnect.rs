//! The `$disconnect` handler.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::{DisconnectDeps, bad_request, connection_id, response};
use crate::routes::disconnect::disconnect;
use crate::store::Store;

/// Deletes the connection's records. API Gateway ignores the status of `$disconnect`, but a
/// 500 still marks the failure in metrics; TTL removes what is left.
pub async fn handle<S: Store>(
    deps: &DisconnectDeps<S>,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let Some(id) = connection_id(&request) else {
        return bad_request();
    };
    match disconnect(&deps.store, &id).await {
        Ok(deleted) => {
            tracing::info!(
                connection_id = %id,
                deleted,
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
