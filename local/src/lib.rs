//! Marquee on a laptop: the pieces behind the `marquee-local` command, shared with the tests.
//!
//! - [`gateway`]: a local API Gateway WebSocket API running Marquee's routes.
//! - [`mgmt`]: a stand-in for the API Gateway Management API over real HTTP, with scripted
//!   failures, for testing the functions alone.
//! - [`aws`]: AWS's wire shapes (request ids, errors, timestamps) both of them answer with.
//! - [`http`]: the one JSON-over-HTTP client (`publish`, Lambda invocations).
//! - [`provider`]: the dev OpenID Connect provider (an ES256 key, its JWKS).
//! - [`dynamo_store`]: a local default (the dev secret is `marquee::config::DEV_TOKEN_SECRET`).

pub mod aws;
pub mod gateway;
pub mod http;
pub mod mgmt;
pub mod provider;

use marquee::store::dynamo::DynamoStore;

/// A [`DynamoStore`] for `table` at a local `endpoint`, with dummy credentials (DynamoDB Local
/// accepts any) unless real ones are in the environment.
pub async fn dynamo_store(endpoint: &str, table: &str) -> DynamoStore {
    let sdk = marquee::lambda::deps::sdk_config(marquee::lambda::deps::Target::Local).await;
    marquee::lambda::deps::dynamo_store(&sdk, table, Some(endpoint))
}

/// POSTs `body` as JSON to `url` and returns the JSON answer (for `marquee-local publish`).
///
/// # Errors
/// When the request fails, the answer is not 2xx, or not JSON.
pub async fn post_json(
    url: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
    let answer = http::JsonClient::default().post(url, body).await?;
    if !answer.status.is_success() {
        return Err(format!(
            "{url} answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )
        .into());
    }
    Ok(serde_json::from_slice(&answer.body)?)
}
