//! Tokens from an OpenID Connect provider (Cognito, Auth0, any OIDC issuer): asymmetric JWTs
//! (RS256, ES256, EdDSA) checked against the provider's published keys (its JWKS), selected by
//! the token's `kid`.
//!
//! - [`ProviderConfig`]: the issuer, where its keys are, the audience, the algorithms allowed
//!   and the names of the claims that carry Marquee's grants ([`ClaimNames`]).
//! - [`ProviderKeys`]: a JWKS, parsed once per fetch. Only signing keys of an allowed algorithm
//!   are kept, each bound to exactly one algorithm; symmetric (`oct`) keys are never taken, so
//!   no key of a JWKS can verify an HS256 token.
//! - [`ProviderVerifier`]: a config and the keys of the last good fetch; what
//!   [`crate::auth::TokenVerifier`] hands a token whose `alg` is the provider's.
//!
//! Fetching and refetching the JWKS is [`crate::lambda::keyring`]'s job (the HTTP fetch is in
//! `crate::lambda::jwks`). Nothing here logs a token or a claim's value.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::claims::{
    Grant, Mapped, TOKEN_LEEWAY_SECONDS, TokenError, check_times, classify, grant,
};
use crate::domain::EpochSeconds;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

/// The algorithms a provider's tokens may use: asymmetric ones only.
pub const PROVIDER_ALGORITHMS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
/// Default `OIDC_ALGORITHMS`: what Cognito, Auth0 and most providers sign with.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256];
/// Keys read from one JWKS at most; the rest are ignored.
pub const MAX_JWKS_KEYS: usize = 64;

/// Parses one name of `OIDC_ALGORITHMS`: `RS256`, `ES256` or `EdDSA`.
///
/// # Errors
/// A message naming the algorithm when it is not one of [`PROVIDER_ALGORITHMS`] (HS256 and
/// `none` included: a provider's tokens are never checked with a shared secret).
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(name.trim())
        .ok()
        .filter(|alg| PROVIDER_ALGORITHMS.contains(alg))
        .ok_or_else(|| format!("{name:?} is not one of RS256, ES256, EdDSA"))
}

/// The names of the claims that carry Marquee's grants in a provider's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// The artist scope (`OIDC_CLAIM_ARTISTS`, default `artists`; `custom:artists` in Cognito).
    pub artists: String,
    /// Artists to subscribe to during `$connect` (`OIDC_CLAIM_SUBSCRIBE`).
    pub subscribe: String,
    /// Rooms it may publish to (`OIDC_CLAIM_PUBLISH`).
    pub publish: String,
    /// Whether a token without the artists claim is refused (403) rather than granted every
    /// artist: set when `OIDC_CLAIM_ARTISTS` is, so that a misnamed mapping refuses instead of
    /// granting everything.
    pub require_artists: bool,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            artists: "artists".into(),
            subscribe: "subscribe".into(),
            publish: "publish".into(),
            require_artists: false,
        }
    }
}

/// An OpenID Connect provider's settings (`OIDC_*`, see the README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// `OIDC_ISSUER`: the exact `iss` of its tokens.
    pub issuer: String,
    /// `OIDC_JWKS_URL`: where its keys are; `None` to discover them from
    /// [`discovery_url`](Self::discovery_url).
    pub jwks_url: Option<String>,
    /// `OIDC_AUDIENCE`: the `aud` its tokens must hold (or, for a token without `aud`, such as
    /// a Cognito access token, its `client_id`).
    pub audience: String,
    /// `OIDC_ALGORITHMS`: the algorithms accepted, a subset of [`PROVIDER_ALGORITHMS`].
    pub algorithms: Vec<Algorithm>,
    /// Where its tokens carry Marquee's claims.
    pub claims: ClaimNames,
}

impl ProviderConfig {
    /// The issuer's discovery document: `<issuer>/.well-known/openid-configuration`.
    #[must_use]
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }
}

/// Why a JWKS (or the discovery document leading to it) gave no keys.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Not a JSON object with a `keys` array.
    #[error("the JWKS is not a JSON object with a `keys` array")]
    Shape,
    /// No key of the set is a signing key of an allowed algorithm with a `kid`.
    #[error("the JWKS holds no usable signing key (of {0}) for the allowed algorithms")]
    NoUsableKey(usize),
    /// The discovery document is not JSON with `issuer` and `jwks_uri`.
    #[error("the discovery document has no `issuer` and `jwks_uri`")]
    Discovery,
    /// The discovery document names another issuer.
    #[error("the discovery document's issuer {found:?} is not OIDC_ISSUER {expected:?}")]
    IssuerMismatch {
        /// `OIDC_ISSUER`.
        expected: String,
        /// What the document says.
        found: String,
    },
    /// The URL could not be fetched (unreachable, refused, broken off, bad URL).
    #[error("could not fetch {url}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The provider answered, but not 200.
    #[error("{url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The answer is larger than a JWKS or discovery document can reasonably be.
    #[error("{url} answered more than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// No answer within the timeout.
    #[error("{url} did not answer within {millis} ms")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        millis: u128,
    },
}

/// One key of a provider's JWKS and the one algorithm it verifies.
#[derive(Clone)]
struct ProviderKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

/// A provider's signing keys by `kid`: the usable keys of one JWKS.
#[derive(Clone, Default)]
pub struct ProviderKeys {
    by_kid: HashMap<String, ProviderKey>,
}

impl fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderKeys")
            .field("kids", &self.kids())
            .finish()
    }
}

impl ProviderKeys {
    /// The signing keys of JWKS `json` whose algorithm is one of `allowed`: each needs a `kid`,
    /// a `use` of `sig` (or none) and a key type that fits its `alg` (RSA for RS256, EC P-256
    /// for ES256, OKP Ed25519 for EdDSA; without `alg`, the algorithm its type implies).
    /// Other keys (encryption keys, symmetric keys, other curves) are skipped.
    ///
    /// # Errors
    /// [`JwksError`] when `json` is not a JWKS or holds no usable key.
    pub fn from_jwks(json: &[u8], allowed: &[Algorithm]) -> Result<Self, JwksError> {
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<Value>,
        }
        let raw: RawSet = serde_json::from_slice(json).map_err(|_| JwksError::Shape)?;
        let total = raw.keys.len();
        let mut by_kid = HashMap::new();
        for value in raw.keys.into_iter().take(MAX_JWKS_KEYS) {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if !matches!(
                jwk.common.public_key_use,
                None | Some(PublicKeyUse::Signature)
            ) {
                continue;
            }
            let Some(algorithm) = algorithm_of(&jwk).filter(|alg| allowed.contains(alg)) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            by_kid.insert(kid, ProviderKey { key, algorithm });
        }
        if by_kid.is_empty() {
            return Err(JwksError::NoUsableKey(total));
        }
        Ok(Self { by_kid })
    }

    /// The `kid`s held, sorted.
    #[must_use]
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// How many keys are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// Whether no key is held (before the first good fetch).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }
}

/// The one algorithm a JWK verifies: the one its key type implies among the provider
/// algorithms, which its `alg`, when given, must name. `None` for symmetric keys and every
/// other type or curve.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(named) => Algorithm::from_str(&named.to_string())
            .ok()
            .filter(|named| *named == implied),
    }
}

/// The public half of private key `key` as a JWK for `alg`, named `kid`, for signing (`use`
/// `sig`): what a JWKS serves (the dev provider of `marquee-local`, the tests).
///
/// # Errors
/// When `key` is not a key of `alg`'s family.
pub fn public_jwk(
    key: &EncodingKey,
    alg: Algorithm,
    kid: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let mut jwk = Jwk::from_encoding_key(key, alg)?;
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(serde_json::to_value(jwk)?)
}

/// Verifies a provider's tokens: its settings and the keys of the last good fetch. Cheap to
/// clone.
#[derive(Clone)]
pub struct ProviderVerifier {
    config: Arc<ProviderConfig>,
    keys: Arc<ProviderKeys>,
}

impl fmt::Debug for ProviderVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderVerifier")
            .field("issuer", &self.config.issuer)
            .field("audience", &self.config.audience)
            .field("kids", &self.keys.kids())
            .finish()
    }
}

/// `aud`: one audience or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// What a provider's token must hold; the mapped claims are looked up in `rest`.
#[derive(Deserialize)]
struct ProviderClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    iat: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl ProviderVerifier {
    /// Tokens of the provider `config` describes, checked with `keys`.
    #[must_use]
    pub fn new(config: Arc<ProviderConfig>, keys: ProviderKeys) -> Self {
        Self {
            config,
            keys: Arc::new(keys),
        }
    }

    /// The same provider with the keys of a newer fetch.
    #[must_use]
    pub fn with_keys(&self, keys: ProviderKeys) -> Self {
        Self::new(Arc::clone(&self.config), keys)
    }

    /// The provider's settings.
    #[must_use]
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The keys in use.
    #[must_use]
    pub fn keys(&self) -> &ProviderKeys {
        &self.keys
    }

    /// Whether a token whose header names `alg` is this provider's to check.
    pub(crate) fn allows(&self, alg: Algorithm) -> bool {
        self.config.algorithms.contains(&alg)
    }

    /// Verifies `token` (whose parsed `header` names one of the provider's algorithms) at
    /// `now`: the key its `kid` names, that key's one algorithm, `iss`, the audience (`aud`,
    /// or `client_id` without one), `exp` and `nbf`, then the mapped claims.
    pub(crate) fn verify(
        &self,
        token: &str,
        header: &Header,
        now: EpochSeconds,
    ) -> Result<Grant, TokenError> {
        let Some(kid) = header.kid.as_deref() else {
            return Err(TokenError::Invalid("no kid"));
        };
        let Some(key) = self.keys.by_kid.get(kid) else {
            return Err(unknown_key(token, now));
        };
        if key.algorithm != header.alg {
            return Err(TokenError::Invalid("algorithm does not match the key"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.algorithms = vec![key.algorithm];
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_required_spec_claims(&["sub", "exp", "iss"]);
        // The audience may be in `client_id`, and exp and nbf are checked against the
        // caller's clock: both below.
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<ProviderClaims>(token, &key.key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::Invalid("bad signature"),
                kind => classify(kind),
            })?
            .claims;
        let audience = &self.config.audience;
        let for_us = match &claims.aud {
            Some(Audience::One(aud)) => aud == audience,
            Some(Audience::Many(auds)) => auds.iter().any(|aud| aud == audience),
            None => claims.client_id.as_deref() == Some(audience.as_str()),
        };
        if !for_us {
            return Err(TokenError::WrongAudience);
        }
        check_times(claims.exp, claims.nbf, now)?;
        let names = &self.config.claims;
        let list = |name: &str| match claims.rest.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => claim_list(value)
                .map(Some)
                .ok_or(TokenError::Invalid("claims of the wrong shape")),
        };
        let artists = list(&names.artists)?;
        if names.require_artists && artists.is_none() {
            return Err(TokenError::Forbidden(
                "the mapped artists claim (OIDC_CLAIM_ARTISTS) is missing",
            ));
        }
        grant(
            &claims.sub,
            claims.exp,
            Mapped {
                artists,
                subscribe: list(&names.subscribe)?,
                publish: list(&names.publish)?,
                issued_at: claims.iat.as_ref().and_then(crate::claims::numeric_date),
            },
        )
    }
}

/// Why a token whose `kid` is unknown is refused: [`TokenError::UnknownKey`] when it is
/// otherwise current (its unverified `exp` not passed), so that a refetch of the keys might
/// verify it; otherwise [`TokenError::Invalid`], which no key can help.
fn unknown_key(token: &str, now: EpochSeconds) -> TokenError {
    #[derive(Deserialize)]
    struct Times {
        exp: i64,
    }
    match jsonwebtoken::dangerous::insecure_decode_claims::<Times>(token) {
        Ok(times) if now <= times.exp.saturating_add(TOKEN_LEEWAY_SECONDS) => {
            TokenError::UnknownKey
        }
        _ => TokenError::Invalid("unknown key"),
    }
}

/// A list claim as a provider can emit it: a JSON array of strings, or a string (Cognito's
/// custom attributes are strings) holding a JSON array (`["Earth, Wind & Fire"]`) or names
/// separated by commas (`Adele,Muse`). `None` for any other shape.
fn claim_list(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Value::String(text) => {
            let text = text.trim();
            if text.starts_with('[') {
                serde_json::from_str(text).ok()
            } else {
                Some(
                    text.split(',')
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .map(str::to_owned)
                        .collect(),
                )
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
