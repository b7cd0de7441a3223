//! The token matrix, through the `$connect` handler, against DynamoDB Local: every refused
//! token gets its status and writes nothing.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use marquee::auth::{TokenClaims, mint};
use marquee::config::Config;
use marquee::domain::now_epoch_seconds;
use marquee::function::Function;
use marquee::lambda::keyring::Keyring;
use marquee::lambda::{ConnectDeps, connect};
use marquee::store::dynamo::DynamoStore;
use marquee_tests::{all_items, dev_secret, dev_verifier, fresh_table, records_but_totals};
use serde_json::json;

use crate::support::connect_request;

/// base64url of `{"alg":"none","typ":"JWT"}`.
const NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
/// base64url of `{"alg":"RS256","typ":"JWT"}`.
const RS256_HEADER: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9";

fn claims() -> TokenClaims {
    let now = now_epoch_seconds();
    TokenClaims {
        sub: "alice".into(),
        aud: "marquee".into(),
        iat: now,
        exp: now + 600,
        nbf: None,
        artists: None,
        subscribe: None,
        publish: None,
    }
}

fn signed(claims: &TokenClaims) -> String {
    mint(&dev_secret(), claims).unwrap()
}

async fn deps() -> ConnectDeps<DynamoStore> {
    let store = fresh_table().await;
    let config = Config::new(store.table());
    ConnectDeps::new(&config, store, dev_verifier().into())
}

async fn status_and_items(token: Option<&str>) -> (i64, usize) {
    let deps = deps().await;
    let response = connect::handle(&deps, connect_request(token)).await;
    let items = all_items(deps.store.table()).await.len();
    (response.status_code, items)
}

fn tampered(token: &str) -> String {
    let (rest, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    format!("{rest}.{flipped}{}", &signature[1..])
}

fn with_header(token: &str, header: &str) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{header}.{rest}")
}

#[tokio::test]
async fn a_valid_token_is_accepted_and_the_connection_recorded() {
    let deps = deps().await;
    let mut claims = claims();
    claims.exp = claims.iat + 86_400;
    let response = connect::handle(&deps, connect_request(Some(&signed(&claims)))).await;
    assert_eq!(response.status_code, 200);
    let items = records_but_totals(deps.store.table()).await;
    // The record and the list.
    let (records, lists): (Vec<_>, Vec<_>) = items
        .iter()
        .partition(|item| item["pk"].as_s().unwrap().starts_with("CONN#"));
    assert_eq!(records.len(), 1);
    let item = records[0];
    assert_eq!(item["sk"].as_s().unwrap(), "META");
    assert_eq!(
        (lists.len(), lists[0]["pk"].as_s().unwrap().as_str()),
        (1, "USER#alice"),
        "the connection is on its user's list"
    );
    assert!(
        lists[0]["conns"]
            .as_m()
            .unwrap()
            .contains_key("Tz1RxcgYvHcCF9A=")
    );
    assert_eq!(item["user_id"].as_s().unwrap(), "alice");
    let expires_at: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    let connected_at: i64 = item["connected_at"].as_n().unwrap().parse().unwrap();
    assert_eq!(
        expires_at - connected_at,
        7500,
        "CONNECTION_TTL_SECONDS, as the token outlives it"
    );
}

#[tokio::test]
async fn a_connection_record_expires_with_a_token_that_ends_sooner() {
    let deps = deps().await;
    let claims = claims();
    let response = connect::handle(&deps, connect_request(Some(&signed(&claims)))).await;
    assert_eq!(response.status_code, 200);
    let items = all_items(deps.store.table()).await;
    let record = items
        .iter()
        .find(|item| item["pk"].as_s().unwrap().starts_with("CONN#"))
        .unwrap();
    let expires_at: i64 = record["expires_at"].as_n().unwrap().parse().unwrap();
    assert_eq!(
        expires_at,
        claims.exp + marquee::auth::TOKEN_LEEWAY_SECONDS,
        "the token's expiry (with the leeway it is accepted within), not 7500 s"
    );
}

#[tokio::test]
async fn a_missing_token_is_unauthorized() {
    assert_eq!(status_and_items(None).await, (401, 0));
    assert_eq!(status_and_items(Some("")).await, (401, 0));
}

#[tokio::test]
async fn a_tampered_signature_is_unauthorized() {
    let token = tampered(&signed(&claims()));
    assert_eq!(status_and_items(Some(&token)).await, (401, 0));
}

#[tokio::test]
async fn a_tampered_payload_is_unauthorized() {
    let token = signed(&claims());
    let mut other = claims();
    other.sub = "mallory".into();
    let forged_payload = signed(&other).split('.').nth(1).unwrap().to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(status_and_items(Some(&forged)).await, (401, 0));
}

#[tokio::test]
async fn another_algorithm_is_unauthorized_even_with_the_right_secret() {
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &claims(),
        &EncodingKey::from_secret(marquee::config::DEV_TOKEN_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(status_and_items(Some(&hs384)).await, (401, 0));
    let rs256_header = with_header(&signed(&claims()), RS256_HEADER);
    assert_eq!(status_and_items(Some(&rs256_header)).await, (401, 0));
}

#[tokio::test]
async fn the_none_algorithm_is_unauthorized() {
    let token = signed(&claims());
    let unsigned = with_header(&token, NONE_HEADER);
    let (head_and_payload, _) = unsigned.rsplit_once('.').unwrap();
    assert_eq!(
        status_and_items(Some(&format!("{head_and_payload}."))).await,
        (401, 0)
    );
}

#[tokio::test]
async fn an_expired_token_is_unauthorized() {
    let mut c = claims();
    c.exp = now_epoch_seconds() - 3600;
    assert_eq!(status_and_items(Some(&signed(&c))).await, (401, 0));
}

#[tokio::test]
async fn a_token_not_yet_valid_is_unauthorized() {
    let mut c = claims();
    c.nbf = Some(now_epoch_seconds() + 3600);
    assert_eq!(status_and_items(Some(&signed(&c))).await, (401, 0));
}

#[tokio::test]
async fn a_token_for_another_audience_is_unauthorized() {
    let mut c = claims();
    c.aud = "someone-else".into();
    assert_eq!(status_and_items(Some(&signed(&c))).await, (401, 0));
}

#[tokio::test]
async fn garbage_is_unauthorized() {
    for garbage in [
        "abc",
        "a.b.c",
        "....",
        "eyJ9.eyJ9.eyJ9",
        &"x".repeat(10_000),
    ] {
        assert_eq!(
            status_and_items(Some(garbage)).await,
            (401, 0),
            "{garbage:.20}"
        );
    }
}

#[tokio::test]
async fn a_token_without_sub_or_exp_is_unauthorized() {
    let key = EncodingKey::from_secret(marquee::config::DEV_TOKEN_SECRET.as_bytes());
    let exp = now_epoch_seconds() + 600;
    for body in [
        json!({"aud": "marquee", "exp": exp}),
        json!({"aud": "marquee", "sub": "alice"}),
        json!({"sub": "alice", "exp": exp}),
        json!({"aud": "marquee", "sub": 42, "exp": exp}),
    ] {
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &body, &key).unwrap();
        assert_eq!(status_and_items(Some(&token)).await, (401, 0), "{body}");
    }
}

#[tokio::test]
async fn a_token_granting_no_artists_is_forbidden() {
    let mut c = claims();
    c.artists = Some(vec![]);
    assert_eq!(status_and_items(Some(&signed(&c))).await, (403, 0));
    c.artists = Some(vec!["Bad\nName".into()]);
    assert_eq!(status_and_items(Some(&signed(&c))).await, (403, 0));
}

/// A Secrets Manager client for moto's server (started by scripts/test for SQS; it serves
/// Secrets Manager too), a new secret holding `value`, and its name.
async fn secret_holding(value: &str) -> (aws_sdk_secretsmanager::Client, String) {
    let sdk = marquee::lambda::deps::sdk_config(marquee::lambda::deps::Target::Local).await;
    let client = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk)
            .endpoint_url(marquee_tests::sqs_endpoint())
            .build(),
    );
    let name = marquee_tests::unique_name("token-secret");
    client
        .create_secret()
        .name(&name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    (client, name)
}

/// Rotates secret `name`: `value` becomes `AWSCURRENT`, the old value `AWSPREVIOUS`.
async fn rotate(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) {
    client
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

/// Whether `keyring` accepts the usual test token (`claims()`) signed with `secret`.
fn accepts(keyring: &Keyring, secret: &str) -> bool {
    let token = mint(&marquee::auth::Secret::new(secret).unwrap(), &claims()).unwrap();
    keyring
        .current()
        .verify(Some(&token), now_epoch_seconds())
        .is_ok()
}

#[tokio::test]
async fn a_rotated_secret_is_picked_up_and_the_previous_one_still_accepted() {
    let (old, new) = ("o".repeat(40), "n".repeat(40));
    let (client, name) = secret_holding(&old).await;
    // As `$connect` reads it (the IAM check holds the reads to ConnectFunction's policy).
    let keyring = Function::Connect
        .run(Keyring::from_secrets_manager(
            client.clone(),
            &name,
            "marquee",
        ))
        .await
        .unwrap()
        .renewing_at_most_every(std::time::Duration::ZERO);
    assert!(accepts(&keyring, &old));

    rotate(&client, &name, &new).await;
    assert!(
        !accepts(&keyring, &new),
        "a warm container does not know the new key yet"
    );
    assert!(
        Function::Connect.run(keyring.renew()).await,
        "it reads the secret again"
    );

    assert!(accepts(&keyring, &new));
    assert!(
        accepts(&keyring, &old),
        "tokens minted before the rotation stay valid"
    );
}

#[tokio::test]
async fn a_cold_start_reads_the_previous_version_only_when_a_token_needs_it() {
    let (old, new) = ("o".repeat(40), "n".repeat(40));
    let (client, name) = secret_holding(&old).await;
    rotate(&client, &name, &new).await;
    // A cold start after the rotation, with the usual once-a-minute limit.
    let keyring = Keyring::from_secrets_manager(client.clone(), &name, "marquee")
        .await
        .unwrap();
    assert!(accepts(&keyring, &new));
    assert!(
        !accepts(&keyring, &old),
        "only the current version was read at the cold start"
    );

    assert!(
        keyring.renew().await,
        "the first token that needs the previous version reads it at once"
    );
    assert!(
        accepts(&keyring, &old),
        "a token minted just before the rotation is accepted"
    );
    assert!(accepts(&keyring, &new));
    assert!(
        !keyring.renew().await,
        "after that, at most one read a minute"
    );
}
