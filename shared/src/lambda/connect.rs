//! The `$connect` handler.

use crate::function::Function;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::{ConnectDeps, connection_id, response};
use std::sync::Arc;

use crate::auth::TokenVerifier;
use crate::domain::{ConnectionId, now_epoch_seconds};
use crate::metrics::Metrics;
use crate::routes::connect::{Answer, ConnectError, ConnectLimits, connect};
use crate::store::Store;

/// Authorises `?token=` and records the connection: 200, or 401/403/429/500 to refuse the
/// handshake (400 for a `?replaces=` that is not a connection id). The token is never logged.
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
    let bad_request = || response(Answer::BadRequest.status(), Answer::BadRequest.body());
    let Some(id) = connection_id(&request) else {
        return bad_request();
    };
    let token = request.query_string_parameters.first("token");
    // The connection a make-before-break replacement replaces (the client library's renewal).
    let replaces = match request.query_string_parameters.first("replaces") {
        None => None,
        Some(raw) => match ConnectionId::parse(raw) {
            Ok(old) => Some(old),
            Err(_) => return bad_request(),
        },
    };
    let now = now_epoch_seconds();
    let mut metrics = Metrics::new("connect");
    let attempt = |verifier: Arc<TokenVerifier>| {
        let id = id.clone();
        let replaces = replaces.as_ref();
        let limits = ConnectLimits {
            ttl_seconds: deps.ttl_seconds,
            max_subscriptions: deps.max_subscriptions,
            max_connections_per_user: deps.max_connections_per_user,
        };
        async move { connect(&deps.store, &verifier, limits, (id, replaces), token, now).await }
    };
    let mut result = attempt(deps.verifier.current()).await;
    if let Err(ConnectError::Token(refused)) = &result
        && deps.verifier.renew_after(refused, now).await
    {
        // The secret, or the provider's keys, may have been rotated since this container
        // read them.
        result = attempt(deps.verifier.current()).await;
    }
    let answer = Answer::of(&result);
    match &result {
        Ok(connection) => {
            tracing::info!(
                connection_id = %id,
                user_id = %connection.user_id,
                expires_at = connection.expires_at,
                "connected"
            );
            metrics.count("Connects", 1);
        }
        Err(refused) if let Some(reason) = refused.reason() => {
            let status = answer.status();
            metrics.count_by("ConnectRefusals", "Reason", reason, 1);
            tracing::info!(connection_id = %id, status, reason = %refused, "connection refused");
        }
        Err(err) => {
            tracing::error!(
                connection_id = %id,
                error = err as &dyn std::error::Error,
                "connect failed"
            );
            metrics.count("ConnectErrors", 1);
        }
    }
    let response = response(answer.status(), answer.body());
    metrics.emit();
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::store::ConnectionStore;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    use super::*;
    use crate::auth::{TokenClaims, mint};
    use crate::lambda::keyring::{Keyring, RotatingKeys, secret};
    use crate::store::memory::MemoryStore;

    const OLD: &str = "the-old-token-secret-long-enough-for-hs256";
    const NEW: &str = "the-new-token-secret-long-enough-for-hs256";

    fn claims(exp: i64) -> TokenClaims {
        TokenClaims {
            sub: "alice".into(),
            aud: "marquee".into(),
            iat: exp - 3600,
            exp,
            nbf: None,
            artists: None,
            subscribe: None,
            publish: None,
        }
    }

    /// `$connect`'s deps over a memory store and `keys`, with the default limits except a cap
    /// of `per_user` connections per user.
    async fn deps(keys: RotatingKeys, per_user: u32) -> ConnectDeps<MemoryStore> {
        let mut config = crate::config::Config::new("marquee");
        config.max_connections_per_user = per_user;
        let verifier = Keyring::from_source(keys, "marquee").await.unwrap();
        ConnectDeps::new(&config, MemoryStore::new(), verifier)
    }

    /// The status `$connect` answers for `token`.
    async fn status(deps: &ConnectDeps<MemoryStore>, token: Option<&str>) -> i64 {
        status_of(deps, "Tz1RxcgYvHcCF9A=", &[("token", token)]).await
    }

    /// The status `$connect` answers connection `id` with query string `query`.
    async fn status_of(
        deps: &ConnectDeps<MemoryStore>,
        id: &str,
        query: &[(&str, Option<&str>)],
    ) -> i64 {
        let mut event: serde_json::Value =
            serde_json::from_str(include_str!("../../../events/connect.json")).unwrap();
        event["requestContext"]["connectionId"] = id.into();
        event["queryStringParameters"] = serde_json::json!({});
        event["multiValueQueryStringParameters"] = serde_json::json!({});
        for (name, value) in query {
            if let Some(value) = value {
                event["queryStringParameters"][name] = (*value).into();
                event["multiValueQueryStringParameters"][name] = serde_json::json!([value]);
            }
        }
        handle(deps, serde_json::from_value(event).unwrap())
            .await
            .status_code
    }

    #[tokio::test]
    async fn a_user_at_the_cap_gets_429_a_revoked_token_401_and_a_bad_replaces_400() {
        let deps = deps(RotatingKeys::holding(OLD), 2).await;
        let now = now_epoch_seconds();
        let token = mint(&secret(OLD), &claims(now + 3600)).unwrap();
        let token = Some(token.as_str());
        let mut statuses = Vec::new();
        for id in ["c-1", "c-2", "c-3"] {
            statuses.push(status_of(&deps, id, &[("token", token)]).await);
        }
        statuses.push(status_of(&deps, "c-4", &[("token", token), ("replaces", Some(" "))]).await);
        deps.store
            .revoke_user(
                &crate::domain::UserId::parse("alice").unwrap(),
                now,
                now + 60,
                now,
            )
            .await
            .unwrap();
        statuses.push(status_of(&deps, "c-5", &[("token", token)]).await);

        assert_eq!(statuses, [200, 200, 429, 400, 401]);
    }

    #[tokio::test]
    async fn junk_tokens_leave_the_renewal_to_a_token_signed_with_a_rotated_key() {
        let keys = RotatingKeys::holding(OLD);
        let deps = deps(keys.clone(), 5).await;
        let live = now_epoch_seconds() + 3600;
        let other_algorithm = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims(live),
            &EncodingKey::from_secret(OLD.as_bytes()),
        )
        .unwrap();
        let expired_with_unknown_key = mint(&secret(NEW), &claims(live - 7200)).unwrap();
        let junk = [
            None,
            Some("not-a-token"),
            Some("a.b.c"),
            Some(other_algorithm.as_str()),
            Some(expired_with_unknown_key.as_str()),
        ];
        for token in junk {
            assert_eq!(status(&deps, token).await, 401, "{token:?}");
        }
        assert_eq!(keys.renewals(), 0, "no junk token read the secret");

        keys.rotate(NEW);
        let fresh = mint(&secret(NEW), &claims(live)).unwrap();

        assert_eq!(status(&deps, Some(&fresh)).await, 200);
    }
}
