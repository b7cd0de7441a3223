//! Identity providers for the token tests: a JWKS server of our own, whose keys can be rotated
//! and which can answer 503, answer slowly or go away; and a user pool in moto's Cognito IdP
//! (the moto server `scripts/test` starts), which issues real-shaped Cognito tokens.

// Indexing a `serde_json::Value` never panics (a missing field is `Null`).
#![allow(clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// How the JWKS server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 with the current set.
    Serving,
    /// 503 (the provider is down).
    Failing,
    /// The set, after this long (a slow provider).
    Slow(Duration),
}

#[derive(Debug)]
struct Served {
    jwks: Value,
    issuer: String,
    jwks_url: String,
    behaviour: Behaviour,
    jwks_requests: u32,
    discovery_requests: u32,
}

/// A provider's endpoints on 127.0.0.1 (a free port): `/.well-known/openid-configuration`
/// (its `issuer` is [`JwksServer::issuer`], its `jwks_uri` [`JwksServer::jwks_url`]) and
/// `/jwks.json`. Stopped when dropped or by [`JwksServer::stop`] (then unreachable).
#[derive(Debug)]
pub struct JwksServer {
    addr: SocketAddr,
    served: Arc<Mutex<Served>>,
    task: JoinHandle<()>,
}

impl JwksServer {
    /// Serves `jwks` (a JWKS document).
    pub async fn start(jwks: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Served {
            jwks,
            issuer: format!("http://{addr}"),
            jwks_url: format!("http://{addr}/jwks.json"),
            behaviour: Behaviour::Serving,
            jwks_requests: 0,
            discovery_requests: 0,
        }));
        let app = Router::new()
            .route("/jwks.json", get(jwks_document))
            .route("/.well-known/openid-configuration", get(discovery_document))
            .with_state(Arc::clone(&served));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, served, task }
    }

    fn served(&self) -> std::sync::MutexGuard<'_, Served> {
        self.served.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The issuer its discovery document names: `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// Serves `jwks` from now on (a rotation).
    pub fn rotate(&self, jwks: Value) {
        self.served().jwks = jwks;
    }

    /// Answers as `behaviour` from now on.
    pub fn behave(&self, behaviour: Behaviour) {
        self.served().behaviour = behaviour;
    }

    /// Makes the discovery document name `issuer` instead of its own.
    pub fn claim_issuer(&self, issuer: &str) {
        issuer.clone_into(&mut self.served().issuer);
    }

    /// How many times the JWKS was asked for.
    pub fn jwks_requests(&self) -> u32 {
        self.served().jwks_requests
    }

    /// How many times the discovery document was asked for.
    pub fn discovery_requests(&self) -> u32 {
        self.served().discovery_requests
    }

    /// Stops listening: connections to it are refused from now on.
    pub async fn stop(&self) {
        self.task.abort();
        // Wait until the port refuses, so the caller's next fetch cannot race the abort.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the JWKS server at {} did not stop", self.addr);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn jwks_document(State(served): State<Arc<Mutex<Served>>>) -> Response {
    let (behaviour, body) = {
        let mut served = served.lock().unwrap_or_else(PoisonError::into_inner);
        served.jwks_requests += 1;
        (served.behaviour, served.jwks.clone())
    };
    match behaviour {
        Behaviour::Serving => axum::Json(body).into_response(),
        Behaviour::Failing => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            axum::Json(body).into_response()
        }
    }
}

async fn discovery_document(State(served): State<Arc<Mutex<Served>>>) -> Response {
    let mut served = served.lock().unwrap_or_else(PoisonError::into_inner);
    served.discovery_requests += 1;
    axum::Json(json!({
        "issuer": served.issuer,
        "jwks_uri": served.jwks_url,
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
    .into_response()
}

/// The Region of the pools made in moto (the tests' `AWS_REGION`).
const COGNITO_REGION: &str = "us-east-1";

/// A user pool with one app client in moto's Cognito IdP (at [`crate::sqs_endpoint`]), whose
/// users have a `custom:artists` attribute. moto signs every pool's tokens with one fixed RSA
/// key (`kid` `dummy`) and serves it at `/<pool id>/.well-known/jwks.json`; the tokens' `iss`
/// is the real Cognito URL, as in AWS.
#[derive(Debug, Clone)]
pub struct CognitoPool {
    /// The pool id (`us-east-1_...`).
    pub pool_id: String,
    /// The app client's id: the id token's `aud`, the access token's `client_id`.
    pub client_id: String,
}

/// A user's tokens from `AdminInitiateAuth`.
#[derive(Debug, Clone)]
pub struct CognitoTokens {
    /// The id token (`token_use` `id`, with `aud` and the user's attributes).
    pub id: String,
    /// The access token (`token_use` `access`, with `client_id` and no `aud`).
    pub access: String,
}

impl CognitoPool {
    /// A fresh pool and app client.
    pub async fn create() -> Self {
        let pool = cognito(
            "CreateUserPool",
            json!({
                "PoolName": crate::unique_name("fans"),
                "Schema": [{"Name": "artists", "AttributeDataType": "String", "Mutable": true}],
            }),
        )
        .await;
        let pool_id = pool["UserPool"]["Id"].as_str().unwrap().to_owned();
        let client = cognito(
            "CreateUserPoolClient",
            json!({
                "UserPoolId": pool_id,
                "ClientName": "marquee",
                "ExplicitAuthFlows": ["ADMIN_USER_PASSWORD_AUTH"],
            }),
        )
        .await;
        let client_id = client["UserPoolClient"]["ClientId"]
            .as_str()
            .unwrap()
            .to_owned();
        Self { pool_id, client_id }
    }

    /// The `iss` of the pool's tokens.
    pub fn issuer(&self) -> String {
        format!(
            "https://cognito-idp.{COGNITO_REGION}.amazonaws.com/{}",
            self.pool_id
        )
    }

    /// Where moto serves the pool's keys.
    pub fn jwks_url(&self) -> String {
        format!(
            "{}/{}/.well-known/jwks.json",
            crate::sqs_endpoint(),
            self.pool_id
        )
    }

    /// Creates `username` (with `custom:artists` set to `artists`, when given) and signs them
    /// in through `client_id`: their tokens.
    pub async fn sign_in(&self, username: &str, artists: Option<&str>) -> CognitoTokens {
        self.sign_in_through(&self.client_id, username, artists)
            .await
    }

    /// As [`CognitoPool::sign_in`], through another app client of the pool.
    pub async fn sign_in_through(
        &self,
        client_id: &str,
        username: &str,
        artists: Option<&str>,
    ) -> CognitoTokens {
        let attributes: Vec<Value> = artists
            .map(|value| json!({"Name": "custom:artists", "Value": value}))
            .into_iter()
            .collect();
        cognito(
            "AdminCreateUser",
            json!({
                "UserPoolId": self.pool_id,
                "Username": username,
                "UserAttributes": attributes,
                "MessageAction": "SUPPRESS",
            }),
        )
        .await;
        let password = "Correct-Horse-Battery-9";
        cognito(
            "AdminSetUserPassword",
            json!({
                "UserPoolId": self.pool_id,
                "Username": username,
                "Password": password,
                "Permanent": true,
            }),
        )
        .await;
        let auth = cognito(
            "AdminInitiateAuth",
            json!({
                "UserPoolId": self.pool_id,
                "ClientId": client_id,
                "AuthFlow": "ADMIN_USER_PASSWORD_AUTH",
                "AuthParameters": {"USERNAME": username, "PASSWORD": password},
            }),
        )
        .await;
        let result = &auth["AuthenticationResult"];
        CognitoTokens {
            id: result["IdToken"].as_str().unwrap().to_owned(),
            access: result["AccessToken"].as_str().unwrap().to_owned(),
        }
    }

    /// Another app client of the pool: its id.
    pub async fn another_client(&self) -> String {
        let client = cognito(
            "CreateUserPoolClient",
            json!({
                "UserPoolId": self.pool_id,
                "ClientName": "someone-else",
                "ExplicitAuthFlows": ["ADMIN_USER_PASSWORD_AUTH"],
            }),
        )
        .await;
        client["UserPoolClient"]["ClientId"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Calls Cognito IdP action `target` on moto (AWS JSON 1.1; moto checks no signature, but
/// routes by the credential scope's service name).
async fn cognito(target: &str, body: Value) -> Value {
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=local/20260101/{COGNITO_REGION}/cognito-idp/aws4_request, SignedHeaders=host, Signature=0"
    );
    let action = format!("AWSCognitoIdentityProviderService.{target}");
    let answer = marquee_local::http::JsonClient::default()
        .post_with(
            &format!("{}/", crate::sqs_endpoint()),
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", &action),
                ("authorization", &authorization),
            ],
            &body,
        )
        .await
        .unwrap();
    assert!(
        answer.status.is_success(),
        "{target}: {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    serde_json::from_slice(&answer.body).unwrap()
}
