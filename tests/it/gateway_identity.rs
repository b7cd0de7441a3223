//! Provider tokens through the local gateway with real WebSocket clients: `marquee-local` as
//! a dev OpenID Connect provider (ES256), and a user pool of moto's Cognito IdP.

use jsonwebtoken::Algorithm;
use marquee::domain::now_epoch_seconds;
use marquee::lambda::jwks::HttpJwks;
use marquee::lambda::keyring::JwksSource;
use marquee::oidc::testing::TestKey;
use marquee::oidc::{ClaimNames, ProviderConfig};
use marquee_local::gateway::{Gateway, Limits};
use marquee_local::provider::{DEV_KID, mint_es256};
use marquee_tests::provider::CognitoPool;
use serde_json::json;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::support::gateway::{Backing, gateway, gateway_with};

/// The handshake's status (101 when the socket opened) and the open socket, to keep.
async fn handshake(
    gateway: &Gateway,
    token: &str,
) -> (u16, Option<crate::support::gateway::Client>) {
    match connect_async(gateway.ws_url(token)).await {
        Ok((client, response)) => (response.status().as_u16(), Some(client)),
        Err(WsError::Http(response)) => (response.status().as_u16(), None),
        Err(other) => panic!("no handshake: {other}"),
    }
}

fn dev_claims(issuer: &str) -> serde_json::Value {
    let now = now_epoch_seconds();
    json!({"iss": issuer, "sub": "alice", "aud": "marquee", "iat": now, "exp": now + 600})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_the_dev_provider_s_key_where_discovery_finds_it() {
    let gateway = gateway(Backing::Memory, Limits::default()).await;
    let config = ProviderConfig {
        issuer: gateway.http_url(),
        jwks_url: None,
        audience: "marquee".into(),
        algorithms: vec![Algorithm::ES256],
        claims: ClaimNames::default(),
    };

    let keys = HttpJwks::new(&config, std::time::Duration::from_secs(2), false)
        .unwrap()
        .fetch()
        .await
        .unwrap();

    assert_eq!(keys.kids(), [DEV_KID]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_es256_token_connects_and_one_signed_with_another_key_does_not() {
    let gateway = gateway(Backing::Memory, Limits::default()).await;
    let claims = dev_claims(&gateway.http_url());

    let (opened, _open) = handshake(&gateway, &mint_es256(&claims).unwrap()).await;
    assert_eq!(opened, 101);
    assert_eq!(
        handshake(&gateway, &TestKey::EcA.sign(DEV_KID, &claims))
            .await
            .0,
        401
    );
    assert_eq!(gateway.open_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cognito_token_from_moto_connects_through_the_local_gateway() {
    let pool = CognitoPool::create().await;
    let tokens = pool.sign_in("alice", Some("Adele")).await;
    let provider = ProviderConfig {
        issuer: pool.issuer(),
        jwks_url: Some(pool.jwks_url()),
        audience: pool.client_id.clone(),
        algorithms: vec![Algorithm::RS256],
        claims: ClaimNames {
            artists: "custom:artists".into(),
            require_artists: true,
            ..ClaimNames::default()
        },
    };
    let gateway = gateway_with(Backing::Dynamo, Limits::default(), |config| {
        config.functions.oidc = Some(provider);
    })
    .await;

    let (opened, _open) = handshake(&gateway, &tokens.id).await;
    assert_eq!(opened, 101);
    assert_eq!(
        handshake(&gateway, &tokens.access).await.0,
        403,
        "an access token carries no custom:artists"
    );
    assert_eq!(gateway.open_connections(), 1);
}
