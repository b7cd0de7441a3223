//! `marquee-local` as a dev OpenID Connect provider: one documented, local-only ES256 key
//! ([`DEV_KID`]), whose public half the gateway serves at `/.well-known/jwks.json` (and
//! `/.well-known/openid-configuration`, naming the gateway's URL as the issuer), and which
//! `marquee-local token --alg ES256` signs with. The gateway's own `$connect` trusts it, so dev
//! ES256 tokens connect without any setup; the functions under `cargo lambda watch` trust it
//! with `OIDC_ISSUER=http://127.0.0.1:3001`, `OIDC_AUDIENCE=marquee`, `OIDC_ALGORITHMS=ES256`.
//! Never trust it in AWS: its private key is in this repository.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use marquee::oidc::{ClaimNames, ProviderConfig, ProviderKeys, ProviderVerifier, public_jwk};
use serde::Serialize;
use serde_json::{Value, json};

/// The `kid` of the dev key.
pub const DEV_KID: &str = "marquee-local-dev-es256";
/// The issuer of dev ES256 tokens when the gateway runs on its default address.
pub const DEFAULT_DEV_ISSUER: &str = "http://127.0.0.1:3001";

/// The dev key, PKCS#8 DER (P-256). Local only, like the dev secret.
const DEV_ES256_KEY: &[u8] = include_bytes!("dev-es256.pk8.der");

fn dev_key() -> EncodingKey {
    EncodingKey::from_ec_der(DEV_ES256_KEY)
}

/// The dev provider's JWKS: the dev key's public half.
///
/// # Errors
/// Never in practice: the key is fixed and valid.
pub fn dev_jwks() -> Result<Value, jsonwebtoken::errors::Error> {
    Ok(json!({ "keys": [public_jwk(&dev_key(), Algorithm::ES256, DEV_KID)?] }))
}

/// The dev provider's discovery document for `issuer` (the gateway's URL).
#[must_use]
pub fn dev_discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

/// `claims` signed with the dev key (ES256, `kid` [`DEV_KID`]); the caller puts `iss` in them.
///
/// # Errors
/// When the claims cannot be serialised.
pub fn mint_es256(claims: &impl Serialize) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(DEV_KID.to_owned());
    jsonwebtoken::encode(&header, claims, &dev_key())
}

/// A verifier of the dev provider's tokens issued by `issuer` for `audience`: its key is
/// here, so nothing is fetched.
///
/// # Errors
/// Never in practice: the key is fixed and valid.
pub fn dev_provider(
    issuer: &str,
    audience: &str,
) -> Result<ProviderVerifier, Box<dyn std::error::Error + Send + Sync>> {
    let config = ProviderConfig {
        issuer: issuer.to_owned(),
        jwks_url: None,
        audience: audience.to_owned(),
        algorithms: vec![Algorithm::ES256],
        claims: ClaimNames::default(),
    };
    let keys = ProviderKeys::from_jwks(dev_jwks()?.to_string().as_bytes(), &config.algorithms)?;
    Ok(ProviderVerifier::new(Arc::new(config), keys))
}
