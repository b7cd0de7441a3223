//! Connection tokens: JWTs carried in the `token` query parameter of the WebSocket URL.
//!
//! Two issuers, told apart by the header's `alg` before any key is touched:
//! - HS256, signed with a secret (Secrets Manager in AWS, the dev secret locally);
//! - an OpenID Connect provider's asymmetric algorithms (RS256, ES256, EdDSA), checked against
//!   its JWKS by `kid` ([`crate::oidc`]), when one is configured.
//!
//! An HS256 token is never checked against a provider's public key, nor a provider's token
//! against the secret; `alg: none` and every algorithm not configured are refused. `sub`,
//! `exp` and `aud` are required (a provider's token may name its audience in `client_id`
//! instead, and needs `iss` and `kid`), `nbf` is honoured, and `exp`/`nbf` are checked here
//! against the caller's clock with a small leeway so route logic and tests share one `now`.
//! The grant is built by one function (`grant`) whoever issued the token. Nothing in this
//! module logs a token, a secret or a signature.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

pub use crate::claims::{Grant, MAX_SCOPED_ARTISTS, TOKEN_LEEWAY_SECONDS, TokenError};
use crate::claims::{Mapped, check_times, classify, grant, numeric_date};
use crate::domain::EpochSeconds;
use crate::oidc::ProviderVerifier;

/// Shortest secret accepted: HS256 wants at least 256 bits of key.
pub const MIN_SECRET_BYTES: usize = 32;

/// A signing secret. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes.
    ///
    /// # Errors
    /// [`WeakSecret`] when shorter than [`MIN_SECRET_BYTES`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, WeakSecret> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret(bytes.len()));
        }
        Ok(Self(bytes))
    }

    fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A secret too short for HS256.
#[derive(Debug, thiserror::Error)]
#[error("token secret must be at least {MIN_SECRET_BYTES} bytes, got {0}")]
pub struct WeakSecret(usize);

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    /// Read leniently (RFC 7519 allows a fractional NumericDate): an `iat` that is not a number
    /// counts as none, which a revocation refuses.
    #[serde(default)]
    iat: Option<serde_json::Value>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    artists: Option<Vec<String>>,
    #[serde(default)]
    subscribe: Option<Vec<String>>,
    #[serde(default)]
    publish: Option<Vec<String>>,
}

/// Verifies connection tokens: HS256 against a secret (and, during a rotation, the previous
/// one) and an audience, and, when one is configured, a provider's tokens against its keys
/// ([`ProviderVerifier`]). Build it once per cold start; cheap to clone.
#[derive(Clone)]
pub struct TokenVerifier {
    /// HS256 keys; none when only a provider's tokens are accepted.
    keys: Vec<DecodingKey>,
    validation: Validation,
    provider: Option<ProviderVerifier>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("audience", &self.validation.aud)
            .field("hs256_keys", &self.keys.len())
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for HS256 tokens signed with `secret` and issued for `audience`.
    #[must_use]
    pub fn new(secret: &Secret, audience: &str) -> Self {
        Self {
            keys: vec![DecodingKey::from_secret(secret.expose())],
            ..Self::hs256(audience)
        }
    }

    /// A verifier for a provider's tokens only: every HS256 token is refused.
    #[must_use]
    pub fn provider_only(provider: ProviderVerifier) -> Self {
        Self {
            provider: Some(provider),
            ..Self::hs256("")
        }
    }

    /// Also accepts `provider`'s tokens (replacing any provider this verifier had).
    #[must_use]
    pub fn with_provider(mut self, provider: ProviderVerifier) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The provider whose tokens this verifier accepts, if any.
    #[must_use]
    pub fn provider(&self) -> Option<&ProviderVerifier> {
        self.provider.as_ref()
    }

    /// The same provider (if any) with new HS256 keys: `current` and, during a rotation,
    /// `previous`, for tokens of `audience`.
    #[must_use]
    pub fn with_secrets(
        &self,
        current: &Secret,
        previous: Option<&Secret>,
        audience: &str,
    ) -> Self {
        let verifier = Self {
            provider: self.provider.clone(),
            ..Self::new(current, audience)
        };
        match previous {
            Some(previous) => verifier.with_previous(previous),
            None => verifier,
        }
    }

    /// HS256 settings for `audience`, with no key yet.
    fn hs256(audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["sub", "exp", "aud"]);
        // exp and nbf are checked in `verify` against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self {
            keys: Vec::new(),
            validation,
            provider: None,
        }
    }

    /// Also accepts tokens signed with `previous`: while a rotated secret's previous version is
    /// still live, tokens minted just before the rotation stay valid.
    #[must_use]
    pub fn with_previous(mut self, previous: &Secret) -> Self {
        self.keys.push(DecodingKey::from_secret(previous.expose()));
        self
    }

    /// Verifies `token` at time `now`.
    ///
    /// # Errors
    /// [`TokenError`], which `routes::connect::Answer` turns into the HTTP answer.
    pub fn verify(&self, token: Option<&str>, now: EpochSeconds) -> Result<Grant, TokenError> {
        let token = match token.map(str::trim) {
            None | Some("") => return Err(TokenError::Missing),
            Some(t) => t,
        };
        let header = jsonwebtoken::decode_header(token).map_err(|e| classify(e.kind()))?;
        match (&self.provider, header.alg) {
            (_, Algorithm::HS256) if !self.keys.is_empty() => self.verify_hs256(token, now),
            (Some(provider), alg) if provider.allows(alg) => provider.verify(token, &header, now),
            _ => Err(TokenError::Invalid("algorithm not allowed")),
        }
    }

    /// Verifies a token whose header says HS256 against the secrets.
    fn verify_hs256(&self, token: &str, now: EpochSeconds) -> Result<Grant, TokenError> {
        let mut decoded = None;
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                other => {
                    decoded = Some(other.map_err(|e| classify(e.kind())));
                    break;
                }
            }
        }
        let Some(decoded) = decoded else {
            return Err(signature_failed(token, now));
        };
        let data = decoded?;
        let claims = data.claims;
        check_times(claims.exp, claims.nbf, now)?;
        grant(
            &claims.sub,
            claims.exp,
            Mapped {
                artists: claims.artists,
                subscribe: claims.subscribe,
                publish: claims.publish,
                issued_at: claims.iat.as_ref().and_then(numeric_date),
            },
        )
    }
}

/// Why a token whose header is HS256 but whose signature no key verifies is refused:
/// [`TokenError::BadSignature`] when it is otherwise a usable token (its claims readable, with
/// an `exp` not yet passed), so that newer keys might verify it; otherwise
/// [`TokenError::Invalid`], which no key can help.
fn signature_failed(token: &str, now: EpochSeconds) -> TokenError {
    /// The claims that say whether a renewal of the keys could help, read unverified.
    #[derive(Deserialize)]
    struct Times {
        exp: i64,
        #[serde(default)]
        iat: Option<i64>,
    }
    match jsonwebtoken::dangerous::insecure_decode_claims::<Times>(token) {
        Ok(times) if now <= times.exp.saturating_add(TOKEN_LEEWAY_SECONDS) => {
            TokenError::BadSignature {
                issued_at: times.iat,
            }
        }
        _ => TokenError::Invalid("bad signature"),
    }
}

/// The claims of a token to mint (for local development and tests; production tokens come
/// from your identity service).
#[derive(Debug, Clone, Serialize)]
pub struct TokenClaims {
    /// User id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Issued at.
    pub iat: i64,
    /// Expiry.
    pub exp: i64,
    /// Not before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Optional artist scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artists: Option<Vec<String>>,
    /// Optional artists to subscribe to during `$connect`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
    /// Optional rooms it may publish to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
}

/// Signs `claims` with HS256.
///
/// # Errors
/// Only if serialising the claims fails, which these claims cannot.
pub fn mint(secret: &Secret, claims: &TokenClaims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose()),
    )
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ArtistKey, Scope};
    use crate::routes::connect::Answer;

    const NOW: i64 = 1_800_000_000;

    fn secret() -> Secret {
        Secret::new("a-test-secret-that-is-long-enough-for-hs256").unwrap()
    }

    fn claims() -> TokenClaims {
        TokenClaims {
            sub: "alice".into(),
            aud: "marquee".into(),
            iat: NOW,
            exp: NOW + 3600,
            nbf: None,
            artists: None,
            subscribe: None,
            publish: None,
        }
    }

    fn verify(token: &str) -> Result<Grant, TokenError> {
        TokenVerifier::new(&secret(), "marquee").verify(Some(token), NOW)
    }

    #[test]
    fn a_valid_token_grants_its_user_and_any_artist() {
        let grant = verify(&mint(&secret(), &claims()).unwrap()).unwrap();
        assert_eq!(grant.user_id.as_str(), "alice");
        assert_eq!(grant.scope, Scope::Any);
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Secret::new("short").is_err());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let shown = format!("{:?}", secret());
        assert!(!shown.contains("test-secret"));
    }

    #[test]
    fn the_leeway_covers_small_clock_skew_only() {
        let mut c = claims();
        c.exp = NOW - TOKEN_LEEWAY_SECONDS + 1;
        assert!(verify(&mint(&secret(), &c).unwrap()).is_ok());
        c.exp = NOW - TOKEN_LEEWAY_SECONDS - 1;
        assert_eq!(
            verify(&mint(&secret(), &c).unwrap()),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn an_artists_claim_becomes_a_scope_of_normalised_keys() {
        let mut c = claims();
        c.artists = Some(vec!["Taylor  SWIFT".into(), "Adele".into()]);
        let grant = verify(&mint(&secret(), &c).unwrap()).unwrap();
        let Scope::Only(keys) = grant.scope else {
            unreachable!("scoped token gave {:?}", grant.scope)
        };
        let keys: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        assert_eq!(keys, vec!["adele", "taylor swift"]);
    }

    #[test]
    fn a_blank_sub_is_forbidden_not_unauthorized() {
        let mut c = claims();
        c.sub = "  ".into();
        let err = verify(&mint(&secret(), &c).unwrap()).unwrap_err();
        assert_eq!(Answer::from(&err).status(), 403);
    }

    #[test]
    fn a_grant_expires_with_its_token_plus_the_leeway() {
        let grant = verify(&mint(&secret(), &claims()).unwrap()).unwrap();
        assert_eq!(grant.expires_at, NOW + 3600 + TOKEN_LEEWAY_SECONDS);
    }

    #[test]
    fn a_grant_carries_the_tokens_iat() {
        let grant = verify(&mint(&secret(), &claims()).unwrap()).unwrap();
        assert_eq!(grant.issued_at, Some(NOW));
    }

    #[test]
    fn a_fractional_iat_is_rounded_down_and_a_junk_one_is_none() {
        assert_eq!(
            numeric_date(&serde_json::json!(1_800_000_000.9)),
            Some(1_800_000_000)
        );
        assert_eq!(numeric_date(&serde_json::json!("yesterday")), None);
        assert_eq!(numeric_date(&serde_json::json!(1e300)), None);
    }

    #[test]
    fn a_subscribe_claim_is_parsed_and_must_stay_within_the_scope() {
        let mut c = claims();
        c.artists = Some(vec!["Adele".into(), "Muse".into()]);
        c.subscribe = Some(vec!["adele".into()]);
        let grant = verify(&mint(&secret(), &c).unwrap()).unwrap();
        assert_eq!(grant.subscribe.unwrap().names(), vec!["adele"]);

        c.subscribe = Some(vec!["Adele".into(), "Queen".into()]);
        let err = verify(&mint(&secret(), &c).unwrap()).unwrap_err();
        assert_eq!(
            err,
            TokenError::Forbidden("subscribe claim names an artist outside the artists claim")
        );
        c.subscribe = Some(vec![]);
        assert_eq!(
            Answer::from(&verify(&mint(&secret(), &c).unwrap()).unwrap_err()).status(),
            403
        );
    }

    #[test]
    fn a_publish_claim_becomes_sorted_room_keys_and_none_means_subscribe_only() {
        let grant = verify(&mint(&secret(), &claims()).unwrap()).unwrap();
        assert!(grant.publish.is_empty());
        let mut c = claims();
        c.publish = Some(vec!["Muse".into(), "ADELE".into(), "adele".into()]);
        let grant = verify(&mint(&secret(), &c).unwrap()).unwrap();
        let keys: Vec<&str> = grant.publish.iter().map(ArtistKey::as_str).collect();
        assert_eq!(keys, vec!["adele", "muse"]);
        c.publish = Some(vec!["\u{202e}evil".into()]);
        assert_eq!(
            Answer::from(&verify(&mint(&secret(), &c).unwrap()).unwrap_err()).status(),
            403
        );
    }
}
