//! The provider checks, token by token: each algorithm, the claim mapping, the audience and
//! issuer, unknown and mismatched keys, key confusion, and a property test.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use jsonwebtoken::EncodingKey;
use serde_json::json;

use super::testing::{RSA_A_PUBLIC_PEM, TestKey, jwks};
use super::*;
use crate::auth::{Secret, TokenVerifier};
use crate::domain::Scope;
use crate::routes::connect::Answer;

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.example/pool";

fn config(claims: ClaimNames) -> ProviderConfig {
    ProviderConfig {
        issuer: ISSUER.into(),
        jwks_url: None,
        audience: "marquee-client".into(),
        algorithms: PROVIDER_ALGORITHMS.to_vec(),
        claims,
    }
}

fn provider(claims: ClaimNames) -> ProviderVerifier {
    let set = jwks(&[
        (TestKey::RsaA, "rsa"),
        (TestKey::EcA, "ec"),
        (TestKey::EdA, "ed"),
    ]);
    let keys = ProviderKeys::from_jwks(set.to_string().as_bytes(), PROVIDER_ALGORITHMS);
    ProviderVerifier::new(Arc::new(config(claims)), keys.unwrap())
}

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": "marquee-client", "iat": NOW, "exp": NOW + 600})
}

fn verify(token: &str) -> Result<Grant, TokenError> {
    TokenVerifier::provider_only(provider(ClaimNames::default())).verify(Some(token), NOW)
}

#[test]
fn a_token_of_each_algorithm_is_verified_with_the_key_its_kid_names() {
    for (key, kid) in [
        (TestKey::RsaA, "rsa"),
        (TestKey::EcA, "ec"),
        (TestKey::EdA, "ed"),
    ] {
        let grant = verify(&key.sign(kid, &claims())).unwrap();
        assert_eq!(grant.user_id.as_str(), "alice", "{kid}");
        assert_eq!(grant.scope, Scope::Any);
        assert_eq!(grant.expires_at, NOW + 600 + TOKEN_LEEWAY_SECONDS);
    }
}

#[test]
fn a_cognito_string_attribute_and_a_namespaced_claim_are_mapped() {
    let names = ClaimNames {
        artists: "custom:artists".into(),
        subscribe: "https://marquee.example/subscribe".into(),
        publish: "publish".into(),
        require_artists: true,
    };
    let verifier = TokenVerifier::provider_only(provider(names));
    let mut body = claims();
    body["custom:artists"] = json!("Adele, Taylor Swift");
    body["https://marquee.example/subscribe"] = json!(["adele"]);
    let grant = verifier
        .verify(Some(&TestKey::EcA.sign("ec", &body)), NOW)
        .unwrap();
    let Scope::Only(keys) = &grant.scope else {
        unreachable!("{:?}", grant.scope)
    };
    let keys: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["adele", "taylor swift"]);
    assert_eq!(grant.subscribe.unwrap().names(), ["adele"]);

    body["custom:artists"] = json!("[\"Earth, Wind & Fire\"]");
    let grant = verifier
        .verify(Some(&TestKey::EcA.sign("ec", &body)), NOW)
        .unwrap_err();
    assert_eq!(
        grant,
        TokenError::Forbidden("subscribe claim names an artist outside the artists claim"),
        "a JSON array in a string keeps its commas"
    );
}

#[test]
fn a_missing_mapped_artists_claim_is_forbidden_not_a_grant_of_everything() {
    let names = ClaimNames {
        artists: "custom:artists".into(),
        require_artists: true,
        ..ClaimNames::default()
    };
    let mut body = claims();
    body["artists"] = json!(["Adele"]);
    let refused = TokenVerifier::provider_only(provider(names))
        .verify(Some(&TestKey::RsaA.sign("rsa", &body)), NOW)
        .unwrap_err();
    assert_eq!(Answer::from(&refused).status(), 403, "{refused:?}");
}

#[test]
fn a_claim_of_another_shape_is_refused() {
    let mut body = claims();
    body["artists"] = json!([42]);
    assert_eq!(
        verify(&TestKey::EcA.sign("ec", &body)),
        Err(TokenError::Invalid("claims of the wrong shape"))
    );
}

#[test]
fn a_cognito_access_token_is_for_us_by_its_client_id() {
    let mut body = claims();
    body.as_object_mut().unwrap().remove("aud");
    body["client_id"] = json!("marquee-client");
    body["token_use"] = json!("access");
    assert!(verify(&TestKey::RsaA.sign("rsa", &body)).is_ok());
    body["client_id"] = json!("another-client");
    assert_eq!(
        verify(&TestKey::RsaA.sign("rsa", &body)),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn an_audience_list_must_hold_ours() {
    let mut body = claims();
    body["aud"] = json!(["other", "marquee-client"]);
    assert!(verify(&TestKey::EdA.sign("ed", &body)).is_ok());
    body["aud"] = json!(["other"]);
    assert_eq!(
        verify(&TestKey::EdA.sign("ed", &body)),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn another_issuer_is_refused_even_with_a_known_key() {
    let mut body = claims();
    body["iss"] = json!("https://evil.example/pool");
    assert_eq!(
        verify(&TestKey::EcA.sign("ec", &body)),
        Err(TokenError::WrongIssuer)
    );
    body.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        Answer::from(&verify(&TestKey::EcA.sign("ec", &body)).unwrap_err()).status(),
        401
    );
}

#[test]
fn an_unknown_kid_may_be_a_rotation_unless_the_token_has_expired() {
    assert_eq!(
        verify(&TestKey::EcB.sign("new-kid", &claims())),
        Err(TokenError::UnknownKey)
    );
    let mut body = claims();
    body["exp"] = json!(NOW - 3600);
    assert_eq!(
        verify(&TestKey::EcB.sign("new-kid", &body)),
        Err(TokenError::Invalid("unknown key"))
    );
}

#[test]
fn a_known_kid_with_another_key_s_signature_is_a_bad_signature_not_a_rotation() {
    assert_eq!(
        verify(&TestKey::EcB.sign("ec", &claims())),
        Err(TokenError::Invalid("bad signature"))
    );
}

#[test]
fn a_header_naming_another_algorithm_than_its_key_s_is_refused() {
    // The EC key's token, relabelled RS256: the kid's key is EC, so RS256 cannot apply.
    let token = TestKey::EcA.sign("ec", &claims());
    let (_, rest) = token.split_once('.').unwrap();
    let header = base64url(r#"{"alg":"RS256","kid":"ec","typ":"JWT"}"#);
    assert_eq!(
        verify(&format!("{header}.{rest}")),
        Err(TokenError::Invalid("algorithm does not match the key"))
    );
}

#[test]
fn an_hs256_token_signed_with_the_public_key_never_meets_the_public_key() {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(RSA_A_PUBLIC_PEM),
    )
    .unwrap();
    assert_eq!(
        verify(&forged),
        Err(TokenError::Invalid("algorithm not allowed")),
        "provider only: no HS256 at all"
    );
    let secret = Secret::new("a-test-secret-that-is-long-enough-for-hs256").unwrap();
    let both = TokenVerifier::new(&secret, "marquee-client")
        .with_provider(provider(ClaimNames::default()));
    let refused = both.verify(Some(&forged), NOW).unwrap_err();
    assert!(
        matches!(refused, TokenError::BadSignature { .. }),
        "checked against the HS256 secret alone: {refused:?}"
    );
}

#[test]
fn an_algorithm_the_provider_is_not_configured_for_is_refused() {
    let mut config = config(ClaimNames::default());
    config.algorithms = vec![Algorithm::RS256];
    let set = jwks(&[(TestKey::EcA, "ec")]);
    assert!(matches!(
        ProviderKeys::from_jwks(set.to_string().as_bytes(), &config.algorithms),
        Err(JwksError::NoUsableKey(1))
    ));
    let keys = ProviderKeys::from_jwks(set.to_string().as_bytes(), PROVIDER_ALGORITHMS);
    let verifier =
        TokenVerifier::provider_only(ProviderVerifier::new(Arc::new(config), keys.unwrap()));
    assert_eq!(
        verifier.verify(Some(&TestKey::EcA.sign("ec", &claims())), NOW),
        Err(TokenError::Invalid("algorithm not allowed"))
    );
}

#[test]
fn only_signing_keys_with_a_kid_of_a_fitting_type_are_kept() {
    let mut encryption = TestKey::EcA.jwk("enc");
    encryption["use"] = json!("enc");
    let mut mislabelled = TestKey::EcB.jwk("mislabelled");
    mislabelled["alg"] = json!("RS256");
    let mut nameless = TestKey::EdA.jwk("x");
    nameless.as_object_mut().unwrap().remove("kid");
    let set = json!({"keys": [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"},
        encryption,
        mislabelled,
        nameless,
        {"kty": "RSA", "kid": "junk", "n": 42},
        TestKey::RsaA.jwk("rsa"),
    ]});
    let keys = ProviderKeys::from_jwks(set.to_string().as_bytes(), PROVIDER_ALGORITHMS).unwrap();
    assert_eq!(keys.kids(), ["rsa"]);
    assert!(matches!(
        ProviderKeys::from_jwks(b"{\"keys\": 1}", PROVIDER_ALGORITHMS),
        Err(JwksError::Shape)
    ));
}

#[test]
fn expiry_and_not_before_follow_the_leeway() {
    let mut body = claims();
    body["exp"] = json!(NOW - TOKEN_LEEWAY_SECONDS - 1);
    assert_eq!(
        verify(&TestKey::RsaA.sign("rsa", &body)),
        Err(TokenError::Expired)
    );
    body["exp"] = json!(NOW + 600);
    body["nbf"] = json!(NOW + TOKEN_LEEWAY_SECONDS + 1);
    assert_eq!(
        verify(&TestKey::RsaA.sign("rsa", &body)),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn a_token_without_kid_or_as_none_is_refused() {
    let token = TestKey::EcA.sign("ec", &claims());
    let (_, rest) = token.split_once('.').unwrap();
    for header in [
        r#"{"alg":"ES256","typ":"JWT"}"#,
        r#"{"alg":"none","kid":"ec"}"#,
    ] {
        let forged = format!("{}.{rest}", base64url(header));
        assert_eq!(
            Answer::from(&verify(&forged).unwrap_err()).status(),
            401,
            "{header}"
        );
    }
}

proptest::proptest! {
    #[test]
    fn provider_tokens_never_panic_and_only_signed_ones_pass(
        raw in ".{0,300}",
        header in "\\PC{0,80}",
        flip in 0usize..2000,
        which in 0usize..3,
    ) {
        let verifier = TokenVerifier::provider_only(provider(ClaimNames::default()));
        proptest::prop_assert!(verifier.verify(Some(&raw), NOW).is_err());
        let (key, kid) = [(TestKey::RsaA, "rsa"), (TestKey::EcA, "ec"), (TestKey::EdA, "ed")][which];
        let token = key.sign(kid, &claims());
        proptest::prop_assert!(verifier.verify(Some(&token), NOW).is_ok());
        // Any header with this payload and signature but the signed one is refused.
        let (_, rest) = token.split_once('.').unwrap();
        let forged = format!("{}.{rest}", base64url(&header));
        proptest::prop_assert!(verifier.verify(Some(&forged), NOW).is_err());
        // Any one changed character of a signed token is refused.
        let mut bytes = token.into_bytes();
        let at = flip % bytes.len();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        proptest::prop_assert!(verifier.verify(Some(&tampered), NOW).is_err());
    }
}

fn base64url(text: &str) -> String {
    use std::fmt::Write;
    // A tiny base64url encoder, so the tests need no base64 crate.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let index = (n >> (18 - 6 * i)) & 63;
            let _ = write!(out, "{}", char::from(ALPHABET[index as usize]));
        }
    }
    out
}
