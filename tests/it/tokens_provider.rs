//! The token matrix for an OpenID Connect provider's tokens, through the `$connect` handler,
//! against DynamoDB Local: keys fetched over HTTP from a JWKS server of our own (rotated, down,
//! slow) or from moto's Cognito IdP. Every refused token gets its status and writes nothing.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use marquee::auth::{TokenClaims, mint};
use marquee::config::Config;
use marquee::domain::now_epoch_seconds;
use marquee::lambda::jwks::HttpJwks;
use marquee::lambda::keyring::Keyring;
use marquee::lambda::{ConnectDeps, connect};
use marquee::oidc::testing::{RSA_A_PUBLIC_PEM, TestKey, jwks};
use marquee::oidc::{ClaimNames, PROVIDER_ALGORITHMS, ProviderConfig};
use marquee::store::dynamo::DynamoStore;
use marquee_tests::provider::{Behaviour, CognitoPool, JwksServer};
use marquee_tests::{all_items, dev_secret, dev_verifier, fresh_table, records_but_totals};
use serde_json::{Value, json};

use crate::support::connect_request;

const AUDIENCE: &str = "marquee-fans";
const TIMEOUT: Duration = Duration::from_millis(500);

/// The usual provider keys: one of each algorithm.
fn usual_keys() -> Value {
    jwks(&[
        (TestKey::RsaA, "r"),
        (TestKey::EcA, "e"),
        (TestKey::EdA, "d"),
    ])
}

fn config(server: &JwksServer) -> ProviderConfig {
    ProviderConfig {
        issuer: server.issuer(),
        jwks_url: Some(server.jwks_url()),
        audience: AUDIENCE.into(),
        algorithms: PROVIDER_ALGORITHMS.to_vec(),
        claims: ClaimNames::default(),
    }
}

fn claims(server: &JwksServer) -> Value {
    let now = now_epoch_seconds();
    json!({"iss": server.issuer(), "sub": "alice", "aud": AUDIENCE, "iat": now, "exp": now + 600})
}

/// `$connect`'s deps as a cold start builds them: the dev secret, and `config`'s provider,
/// whose keys are fetched now over HTTP.
async fn deps(config: ProviderConfig) -> ConnectDeps<DynamoStore> {
    let keys = HttpJwks::new(&config, TIMEOUT, false).unwrap();
    let verifier = Keyring::from(dev_verifier())
        .with_provider(config, keys)
        .await;
    let store = fresh_table().await;
    ConnectDeps::new(&Config::new(store.table()), store, verifier)
}

/// The same, refetching as often as asked (a rotation's test need not wait a minute).
async fn eager_deps(config: ProviderConfig) -> ConnectDeps<DynamoStore> {
    let mut deps = deps(config).await;
    deps.verifier = deps
        .verifier
        .refetching_at_most_every(Duration::ZERO, Duration::ZERO);
    deps
}

/// The status, and the items written: a connection's record and its user's list
/// (`USER#<sub>`/`CONNS`) when admitted, nothing when refused.
/// The status, and the items a connect wrote (the totals, `STATS#<shard>`, left out).
async fn status_and_items(deps: &ConnectDeps<DynamoStore>, token: &str) -> (i64, usize) {
    let response = connect::handle(deps, connect_request(Some(token))).await;
    let items = records_but_totals(deps.store.table()).await.len();
    (response.status_code, items)
}

/// Every connection record (`CONN#…`) in the table: what a connect recorded.
async fn records(table: &str) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    all_items(table)
        .await
        .into_iter()
        .filter(|item| {
            item.get("pk")
                .and_then(|pk| pk.as_s().ok())
                .is_some_and(|pk| pk.starts_with("CONN#"))
        })
        .collect()
}

/// `token` with its header replaced by `header` (signature kept).
fn relabelled(token: &str, header: &Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    format!("{header}.{rest}")
}

#[tokio::test]
async fn a_provider_token_of_each_algorithm_connects_and_is_recorded() {
    let server = JwksServer::start(usual_keys()).await;
    for (key, kid) in [
        (TestKey::RsaA, "r"),
        (TestKey::EcA, "e"),
        (TestKey::EdA, "d"),
    ] {
        let deps = deps(config(&server)).await;
        let response = connect::handle(
            &deps,
            connect_request(Some(&key.sign(kid, &claims(&server)))),
        )
        .await;
        assert_eq!(response.status_code, 200, "{kid}");
        let items = records(deps.store.table()).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["user_id"].as_s().unwrap(), "alice");
    }
}

#[tokio::test]
async fn the_asymmetric_token_matrix_is_refused_and_writes_nothing() {
    let server = JwksServer::start(usual_keys()).await;
    let deps = deps(config(&server)).await;
    let now = now_epoch_seconds();
    let with = |changes: Value| {
        let mut body = claims(&server);
        for (name, value) in changes.as_object().unwrap() {
            body[name] = value.clone();
        }
        body
    };
    let mut confused_header = Header::new(Algorithm::HS256);
    confused_header.kid = Some("r".into());
    let key_confusion = jsonwebtoken::encode(
        &confused_header,
        &claims(&server),
        &EncodingKey::from_secret(RSA_A_PUBLIC_PEM),
    )
    .unwrap();
    let jwks_confusion = jsonwebtoken::encode(
        &confused_header,
        &claims(&server),
        &EncodingKey::from_secret(usual_keys().to_string().as_bytes()),
    )
    .unwrap();
    let ec_token = TestKey::EcA.sign("e", &claims(&server));
    let rsa_token = TestKey::RsaA.sign("r", &claims(&server));
    let cases: Vec<(&str, String)> = vec![
        ("wrong kid", TestKey::EcB.sign("unknown", &claims(&server))),
        (
            "known kid, another key",
            TestKey::EcB.sign("e", &claims(&server)),
        ),
        (
            "key confusion: HS256 signed with the RSA public key",
            key_confusion,
        ),
        ("key confusion: HS256 signed with the JWKS", jwks_confusion),
        (
            "expired",
            TestKey::EcA.sign("e", &with(json!({"exp": now - 3600}))),
        ),
        (
            "not yet valid",
            TestKey::EdA.sign("d", &with(json!({"nbf": now + 3600}))),
        ),
        (
            "wrong issuer",
            TestKey::RsaA.sign("r", &with(json!({"iss": "https://evil.example"}))),
        ),
        (
            "wrong audience",
            TestKey::RsaA.sign("r", &with(json!({"aud": "another-app"}))),
        ),
        (
            "alg mismatch: an EC key's token labelled RS256",
            relabelled(&ec_token, &json!({"alg": "RS256", "kid": "e"})),
        ),
        (
            "alg mismatch: an RSA key's token labelled PS256",
            relabelled(&rsa_token, &json!({"alg": "PS256", "kid": "r"})),
        ),
        (
            "alg none",
            relabelled(&ec_token, &json!({"alg": "none", "kid": "e"})),
        ),
        ("no kid", relabelled(&ec_token, &json!({"alg": "ES256"}))),
        (
            "no sub",
            TestKey::EcA.sign("e", &with(json!({"sub": null}))),
        ),
    ];
    for (case, token) in cases {
        assert_eq!(status_and_items(&deps, &token).await, (401, 0), "{case}");
    }
}

#[tokio::test]
async fn a_missing_claim_mapping_is_forbidden_and_writes_nothing() {
    let server = JwksServer::start(usual_keys()).await;
    let mut config = config(&server);
    config.claims = ClaimNames {
        artists: "https://marquee.example/artists".into(),
        require_artists: true,
        ..ClaimNames::default()
    };
    let deps = deps(config).await;
    let mut body = claims(&server);
    body["artists"] = json!(["Adele"]);

    let token = TestKey::EcA.sign("e", &body);

    assert_eq!(status_and_items(&deps, &token).await, (403, 0));
}

#[tokio::test]
async fn a_mapped_claim_becomes_the_connection_s_scope() {
    let server = JwksServer::start(usual_keys()).await;
    let mut config = config(&server);
    config.claims.artists = "https://marquee.example/artists".into();
    let deps = deps(config).await;
    let mut body = claims(&server);
    body["https://marquee.example/artists"] = json!(["Adele", "Muse"]);

    let response =
        connect::handle(&deps, connect_request(Some(&TestKey::EcA.sign("e", &body)))).await;

    assert_eq!(response.status_code, 200);
    let items = records(deps.store.table()).await;
    let scope: Vec<&str> = items[0]["scope"]
        .as_l()
        .unwrap()
        .iter()
        .map(|key| key.as_s().unwrap().as_str())
        .collect();
    assert_eq!(scope, ["adele", "muse"]);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_a_restart_and_the_retired_one_refused() {
    let server = JwksServer::start(jwks(&[(TestKey::EcA, "2026-01")])).await;
    let deps = eager_deps(config(&server)).await;
    let old = TestKey::EcA.sign("2026-01", &claims(&server));
    let new = TestKey::EcB.sign("2026-02", &claims(&server));
    assert_eq!(
        status_and_items(&deps, &new).await,
        (401, 0),
        "not published yet"
    );

    server.rotate(jwks(&[(TestKey::EcB, "2026-02")]));

    assert_eq!(status_and_items(&deps, &new).await.0, 200);
    assert_eq!(
        status_and_items(&deps, &old).await.0,
        401,
        "the retired key is gone from the keys in use"
    );
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_keys_again_at_most_once_a_minute() {
    let server = JwksServer::start(usual_keys()).await;
    let deps = deps(config(&server)).await;
    assert_eq!(server.jwks_requests(), 1, "the cold start's fetch");
    let unknown = TestKey::EcB.sign("unknown", &claims(&server));

    for _ in 0..5 {
        assert_eq!(status_and_items(&deps, &unknown).await, (401, 0));
    }

    assert_eq!(server.jwks_requests(), 1, "within a minute of a good fetch");
}

#[tokio::test]
async fn the_last_good_keys_serve_while_the_provider_fails_or_is_unreachable() {
    let server = JwksServer::start(usual_keys()).await;
    let deps = eager_deps(config(&server)).await;
    let known = TestKey::RsaA.sign("r", &claims(&server));
    let unknown = TestKey::EcB.sign("unknown", &claims(&server));

    server.behave(Behaviour::Failing);
    assert_eq!(status_and_items(&deps, &unknown).await, (401, 0));
    assert_eq!(server.jwks_requests(), 2, "it asked, and got a 503");
    assert_eq!(status_and_items(&deps, &known).await.0, 200);

    server.stop().await;
    assert_eq!(status_and_items(&deps, &unknown).await.0, 401);
    assert_eq!(status_and_items(&deps, &known).await.0, 200);
}

#[tokio::test]
async fn a_slow_provider_delays_a_cold_start_by_the_timeout_at_most() {
    let server = JwksServer::start(usual_keys()).await;
    server.behave(Behaviour::Slow(Duration::from_secs(10)));
    let started = Instant::now();

    let deps = deps(config(&server)).await;

    assert!(
        started.elapsed() < TIMEOUT + Duration::from_secs(1),
        "the cold start took {:?}",
        started.elapsed()
    );
    let provider_token = TestKey::EcA.sign("e", &claims(&server));
    assert_eq!(status_and_items(&deps, &provider_token).await, (401, 0));
    let now = now_epoch_seconds();
    let hs256 = mint(
        &dev_secret(),
        &TokenClaims {
            sub: "bob".into(),
            aud: "marquee".into(),
            iat: now,
            exp: now + 600,
            nbf: None,
            artists: None,
            subscribe: None,
            publish: None,
        },
    )
    .unwrap();
    assert_eq!(
        status_and_items(&deps, &hs256).await,
        (200, 2),
        "HS256 tokens do not wait for the provider"
    );
}

#[tokio::test]
async fn the_keys_are_discovered_from_the_issuer() {
    let server = JwksServer::start(usual_keys()).await;
    let mut config = config(&server);
    config.jwks_url = None;
    let deps = deps(config).await;

    let response = connect::handle(
        &deps,
        connect_request(Some(&TestKey::EdA.sign("d", &claims(&server)))),
    )
    .await;

    assert_eq!(response.status_code, 200);
    assert_eq!(
        (server.discovery_requests(), server.jwks_requests()),
        (1, 1)
    );
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_gives_no_keys() {
    let server = JwksServer::start(usual_keys()).await;
    server.claim_issuer("https://evil.example");
    let mut config = config(&server);
    config.jwks_url = None;
    let deps = deps(config).await;

    let token = TestKey::EdA.sign("d", &claims(&server));

    assert_eq!(status_and_items(&deps, &token).await, (401, 0));
    assert_eq!(
        server.jwks_requests(),
        0,
        "the keys it names are never fetched"
    );
}

/// `$connect` trusting moto's user pool `pool`, its scope mapped from `custom:artists` when
/// `artists_claim`.
async fn cognito_deps(pool: &CognitoPool, artists_claim: bool) -> ConnectDeps<DynamoStore> {
    let mut claims = ClaimNames::default();
    if artists_claim {
        claims.artists = "custom:artists".into();
        claims.require_artists = true;
    }
    deps(ProviderConfig {
        issuer: pool.issuer(),
        jwks_url: Some(pool.jwks_url()),
        audience: pool.client_id.clone(),
        algorithms: vec![Algorithm::RS256],
        claims,
    })
    .await
}

#[tokio::test]
async fn a_cognito_id_token_from_moto_connects_with_its_custom_artists_as_scope() {
    let pool = CognitoPool::create().await;
    let tokens = pool.sign_in("alice", Some("Adele,Taylor Swift")).await;
    let deps = cognito_deps(&pool, true).await;

    let response = connect::handle(&deps, connect_request(Some(&tokens.id))).await;

    assert_eq!(response.status_code, 200);
    let items = records(deps.store.table()).await;
    assert_eq!(items.len(), 1);
    let scope: Vec<&str> = items[0]["scope"]
        .as_l()
        .unwrap()
        .iter()
        .map(|key| key.as_s().unwrap().as_str())
        .collect();
    assert_eq!(scope, ["adele", "taylor swift"]);
    let sub = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(&tokens.id).unwrap()["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(items[0]["user_id"].as_s().unwrap(), &sub);
}

#[tokio::test]
async fn a_cognito_access_token_from_moto_connects_by_its_client_id() {
    let pool = CognitoPool::create().await;
    let tokens = pool.sign_in("alice", None).await;
    let deps = cognito_deps(&pool, false).await;

    assert_eq!(status_and_items(&deps, &tokens.access).await, (200, 2));
}

#[tokio::test]
async fn a_cognito_user_without_the_mapped_attribute_is_forbidden() {
    let pool = CognitoPool::create().await;
    let tokens = pool.sign_in("alice", None).await;
    let deps = cognito_deps(&pool, true).await;

    assert_eq!(status_and_items(&deps, &tokens.id).await, (403, 0));
}

#[tokio::test]
async fn cognito_tokens_for_another_app_client_are_refused() {
    let pool = CognitoPool::create().await;
    let other = pool.another_client().await;
    let tokens = pool.sign_in_through(&other, "mallory", Some("Adele")).await;
    let deps = cognito_deps(&pool, false).await;

    assert_eq!(status_and_items(&deps, &tokens.id).await, (401, 0), "aud");
    assert_eq!(
        status_and_items(&deps, &tokens.access).await,
        (401, 0),
        "client_id"
    );
}
