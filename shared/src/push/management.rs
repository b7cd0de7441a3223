//! The API Gateway Management API adapter of [`Push`] (`PostToConnection`, `GetConnection`,
//! `DeleteConnection`).

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;

use super::{Posted, Push, PushError};
use crate::domain::ConnectionId;

/// How long one post may take, connecting included, before it counts as unavailable.
/// Keeps one slow connection from holding a fan-out slot for long.
pub const POST_TIMEOUT: Duration = Duration::from_secs(3);

/// [`Push`] through the Management API of one WebSocket API stage.
#[derive(Debug, Clone)]
pub struct ManagementPush {
    client: Client,
}

impl ManagementPush {
    /// A client for `endpoint` (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`,
    /// or a custom domain's equivalent). The SDK's own retries are off: callers retry with
    /// their own budget, so every attempt is counted once.
    #[must_use]
    pub fn new(sdk_config: &SdkConfig, endpoint: &str) -> Self {
        Self::with_timeout(sdk_config, endpoint, POST_TIMEOUT)
    }

    /// As [`ManagementPush::new`], with another per-post timeout (tests shorten it).
    #[must_use]
    pub fn with_timeout(sdk_config: &SdkConfig, endpoint: &str, timeout: Duration) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk_config)
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(timeout)
                    .connect_timeout(timeout)
                    .build(),
            )
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }
}

impl Push for ManagementPush {
    async fn post(&self, id: &ConnectionId, frame: &[u8]) -> Result<Posted, PushError> {
        match self
            .client
            .post_to_connection()
            .connection_id(id.as_str())
            .data(Blob::new(frame))
            .send()
            .await
        {
            Ok(_) => Ok(Posted::Delivered),
            Err(err) => classify(err),
        }
    }

    async fn is_connected(&self, id: &ConnectionId) -> Result<bool, PushError> {
        match self
            .client
            .get_connection()
            .connection_id(id.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) => match &err {
                SdkError::ServiceError(service)
                    if service.err().is_gone_exception()
                        || service.raw().status().as_u16() == 410 =>
                {
                    Ok(false)
                }
                SdkError::ServiceError(service) if service.raw().status().as_u16() == 429 => {
                    Err(PushError::Throttled(Box::new(err)))
                }
                _ => Err(PushError::Unavailable(Box::new(err))),
            },
        }
    }

    async fn disconnect(&self, id: &ConnectionId) -> Result<Posted, PushError> {
        match self
            .client
            .delete_connection()
            .connection_id(id.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(Posted::Delivered),
            Err(err) => {
                let status = match &err {
                    SdkError::ServiceError(service) => service.raw().status().as_u16(),
                    SdkError::TimeoutError(_)
                    | SdkError::DispatchFailure(_)
                    | SdkError::ResponseError(_) => 503,
                    _ => 400,
                };
                classify_status(status, err)
            }
        }
    }
}

/// The status of a failed Management API call, classified: 410 is an outcome, 429 and 5xx
/// are worth retrying, anything else is refused.
fn classify_status<E>(status: u16, err: SdkError<E>) -> Result<Posted, PushError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match status {
        410 => Ok(Posted::Gone),
        429 => Err(PushError::Throttled(Box::new(err))),
        500.. => Err(PushError::Unavailable(Box::new(err))),
        _ => Err(PushError::Refused(Box::new(err))),
    }
}

fn classify(err: SdkError<PostToConnectionError>) -> Result<Posted, PushError> {
    let status = match &err {
        SdkError::ServiceError(service) => match service.err() {
            PostToConnectionError::GoneException(_) => return Ok(Posted::Gone),
            PostToConnectionError::LimitExceededException(_) => {
                return Err(PushError::Throttled(Box::new(err)));
            }
            _ => service.raw().status().as_u16(),
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return Err(PushError::Unavailable(Box::new(err)));
        }
        _ => return Err(PushError::Refused(Box::new(err))),
    };
    classify_status(status, err)
}
