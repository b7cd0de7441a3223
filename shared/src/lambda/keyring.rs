//! The token secrets `$connect` verifies with, kept fresh across a rotation.
//!
//! Secrets Manager rotation moves the new key to `AWSCURRENT` and the old one to
//! `AWSPREVIOUS`. A cold start reads only the current version: nearly every token is signed
//! with it, and a second read would be a second round trip before the first request. When a
//! token fails its signature check, both versions are read (at once the first time, so a token
//! signed just before a rotation is accepted by a fresh container; after that at most once a
//! minute, so a stream of bad tokens costs at most one read of the secret a minute) and the
//! token is checked once more. A warm container learns of a rotation the same way.
//!
//! Only a refusal that newer keys could turn into a grant spends that read
//! ([`TokenError::BadSignature`]: HS256, readable claims, not expired); garbage, another
//! algorithm, a missing or an expired token never do, so they cannot use up the minute's read
//! just before a rotation. A token that says it was issued (`iat`, capped at now) after the
//! last read may read again within the minute: it may be signed with a key that did not exist
//! then. That makes at most one read a second, however many tokens claim so.
//!
//! Where the keys come from is a [`KeySource`]: Secrets Manager's is in
//! [`super::secrets`] (the `secrets` feature), so this module needs no AWS client.
//!
//! An OpenID Connect provider's keys ([`Keyring::with_provider`]) are kept the same way: its
//! JWKS is fetched once per cold start (a [`JwksSource`]; over HTTPS in [`super::jwks`]) and
//! cached. A token whose `kid` is not among them ([`TokenError::UnknownKey`]: readable, not
//! expired) fetches it again, at most once per [`REFRESH_AT_MOST_EVERY`] after a good fetch
//! (the provider rotated its keys), or per [`RETRY_FAILED_FETCH_AFTER`] after a failed one. A
//! failed fetch (unreachable, slow, not a JWKS) changes nothing: the last good keys serve.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::boot::BootError;
use crate::auth::{Secret, TokenError, TokenVerifier};
use crate::domain::{EpochSeconds, now_epoch_seconds};
use crate::oidc::{JwksError, ProviderConfig, ProviderKeys, ProviderVerifier};

/// The shortest time between two reads of the secret, or two fetches of a provider's keys
/// after a good one, by one container.
pub const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(60);
/// The shortest time between a failed fetch of a provider's keys and the next one.
pub const RETRY_FAILED_FETCH_AFTER: Duration = Duration::from_secs(5);

/// Where an OpenID Connect provider's keys come from: its JWKS.
pub trait JwksSource: std::fmt::Debug + Send + Sync {
    /// Fetches and parses the provider's JWKS, within a bounded time.
    ///
    /// # Errors
    /// [`JwksError`] when it cannot be fetched in time or holds no usable key.
    fn fetch(&self) -> BoxFuture<'_, Result<ProviderKeys, JwksError>>;
}

/// A provider's key source and when it was last fetched.
#[derive(Debug)]
struct ProviderRenewal {
    source: Box<dyn JwksSource>,
    /// When the last fetch started, and whether it succeeded.
    last_fetch: Mutex<Option<(Instant, bool)>>,
    /// [`REFRESH_AT_MOST_EVERY`] and [`RETRY_FAILED_FETCH_AFTER`], or shorter in tests.
    after_good: Duration,
    after_failed: Duration,
}

/// Where fresh keys come from: a secret's current version and, after a rotation, its previous
/// one.
pub trait KeySource: std::fmt::Debug + Send + Sync {
    /// Reads the current key and, when `previous` is asked for, the previous one if there is
    /// one (`None` when it is not asked for).
    ///
    /// # Errors
    /// [`BootError`] when the current key cannot be read or is not usable.
    fn read(&self, previous: bool) -> BoxFuture<'_, Result<(Secret, Option<Secret>), BootError>>;
}

/// A key source and the audience its keys verify tokens for.
#[derive(Debug)]
struct Renewal {
    keys: Box<dyn KeySource>,
    audience: String,
}

/// The verifier in use, and how to renew it.
#[derive(Debug)]
pub struct Keyring {
    verifier: RwLock<Arc<TokenVerifier>>,
    source: Option<Renewal>,
    /// When both versions were last read (as an instant, and in epoch seconds to compare with
    /// a token's `iat`); `None` until the first renewal (a cold start reads only the current
    /// version), which may therefore happen at once.
    last_read: Mutex<Option<(Instant, EpochSeconds)>>,
    renew_every: Duration,
    /// The OpenID Connect provider whose keys are kept, if any.
    provider: Option<ProviderRenewal>,
}

impl From<TokenVerifier> for Keyring {
    /// Fixed keys (a local secret, tests): never renewed.
    fn from(verifier: TokenVerifier) -> Self {
        Self {
            verifier: RwLock::new(Arc::new(verifier)),
            source: None,
            last_read: Mutex::new(None),
            renew_every: REFRESH_AT_MOST_EVERY,
            provider: None,
        }
    }
}

impl Keyring {
    /// Reads the current key of `keys` now: keys for tokens of `audience`, renewable (with
    /// the previous key) from the same source.
    ///
    /// # Errors
    /// [`BootError`] when the current key cannot be read or is not usable.
    pub async fn from_source(
        keys: impl KeySource + 'static,
        audience: &str,
    ) -> Result<Self, BootError> {
        let (current, previous) = keys.read(false).await?;
        Ok(Self {
            source: Some(Renewal {
                keys: Box::new(keys),
                audience: audience.to_owned(),
            }),
            ..Self::from(verifier(&current, previous.as_ref(), audience))
        })
    }

    /// Renews at most once per `every` instead of once a minute (tests).
    #[must_use]
    pub fn renewing_at_most_every(mut self, every: Duration) -> Self {
        self.renew_every = every;
        self
    }

    /// Also accepts the tokens of the provider `config` describes, with keys from `source`,
    /// fetched now (the cold start's fetch). When it fails, the failure is logged and the
    /// provider's tokens are refused (401) until a later fetch succeeds; HS256 tokens are not
    /// affected.
    pub async fn with_provider(
        mut self,
        config: ProviderConfig,
        source: impl JwksSource + 'static,
    ) -> Self {
        let started = Instant::now();
        let (keys, good) = match source.fetch().await {
            Ok(keys) => {
                tracing::info!(
                    issuer = %config.issuer,
                    kids = ?keys.kids(),
                    millis = started.elapsed().as_millis(),
                    "provider keys fetched"
                );
                (keys, true)
            }
            Err(err) => {
                tracing::warn!(
                    issuer = %config.issuer,
                    error = &err as &dyn std::error::Error,
                    "could not fetch the provider's keys; its tokens are refused until a fetch succeeds"
                );
                (ProviderKeys::default(), false)
            }
        };
        let provider = ProviderVerifier::new(Arc::new(config), keys);
        self.replace(|verifier| verifier.clone().with_provider(provider));
        self.provider = Some(ProviderRenewal {
            source: Box::new(source),
            last_fetch: Mutex::new(Some((started, good))),
            after_good: REFRESH_AT_MOST_EVERY,
            after_failed: RETRY_FAILED_FETCH_AFTER,
        });
        self
    }

    /// Fetches a provider's keys again at most once per `after_good` after a good fetch and
    /// per `after_failed` after a failed one, instead of [`REFRESH_AT_MOST_EVERY`] and
    /// [`RETRY_FAILED_FETCH_AFTER`] (tests).
    #[must_use]
    pub fn refetching_at_most_every(
        mut self,
        after_good: Duration,
        after_failed: Duration,
    ) -> Self {
        if let Some(provider) = &mut self.provider {
            provider.after_good = after_good;
            provider.after_failed = after_failed;
        }
        self
    }

    /// Fetches the provider's keys again, unless there is no provider or the last fetch was
    /// too recent (see [`Keyring::refetching_at_most_every`]). On success the new keys replace
    /// the old ones; on failure the last good keys stay. Returns whether new keys are in use.
    pub async fn refetch(&self) -> bool {
        let Some(provider) = &self.provider else {
            return false;
        };
        let started = Instant::now();
        {
            let mut last = provider
                .last_fetch
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((at, good)) = *last {
                let wait = if good {
                    provider.after_good
                } else {
                    provider.after_failed
                };
                if at.elapsed() < wait {
                    return false;
                }
            }
            // Counted as failed until it succeeds, so that callers meanwhile do not fetch too.
            *last = Some((started, false));
        }
        match provider.source.fetch().await {
            Ok(keys) => {
                tracing::info!(
                    kids = ?keys.kids(),
                    millis = started.elapsed().as_millis(),
                    "provider keys fetched again"
                );
                self.replace(|verifier| match verifier.provider() {
                    Some(current) => verifier.clone().with_provider(current.with_keys(keys)),
                    None => verifier.clone(),
                });
                *provider
                    .last_fetch
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((started, true));
                true
            }
            Err(err) => {
                tracing::warn!(
                    error = &err as &dyn std::error::Error,
                    "could not fetch the provider's keys again; the last good keys serve"
                );
                false
            }
        }
    }

    /// Replaces the verifier in use with `next(current)`, under the lock, so that a renewal
    /// of the secret and a refetch of a provider's keys never undo each other.
    fn replace(&self, next: impl FnOnce(&TokenVerifier) -> TokenVerifier) {
        let mut verifier = self
            .verifier
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *verifier = Arc::new(next(&verifier));
    }

    /// The verifier to use now.
    #[must_use]
    pub fn current(&self) -> Arc<TokenVerifier> {
        Arc::clone(&self.verifier.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the secret's current and previous versions, unless that was done less than
    /// [`REFRESH_AT_MOST_EVERY`] ago or the keys are fixed (the first time, it is done at once).
    /// Returns whether new keys are in use.
    pub async fn renew(&self) -> bool {
        self.renew_unless(|_| true, now_epoch_seconds()).await
    }

    /// Renews after a token was refused with `refused` at `now`, when newer keys could accept
    /// it: for [`TokenError::BadSignature`], the secret, at most once per
    /// [`REFRESH_AT_MOST_EVERY`], or sooner when the token says it was issued (`iat`, capped at
    /// `now`) after the last read; for [`TokenError::UnknownKey`], the provider's keys
    /// ([`Keyring::refetch`]). Returns whether new keys are in use.
    pub async fn renew_after(&self, refused: &TokenError, now: EpochSeconds) -> bool {
        let issued_at = match refused {
            TokenError::BadSignature { issued_at } => issued_at,
            TokenError::UnknownKey => return self.refetch().await,
            _ => return false,
        };
        let issued_after =
            |read_at: EpochSeconds| issued_at.is_some_and(|issued_at| issued_at.min(now) > read_at);
        self.renew_unless(|read_at| !issued_after(read_at), now)
            .await
    }

    /// Renews unless the last read was less than `renew_every` ago and `recent(its epoch
    /// seconds)` holds; records `now` as the read's time.
    async fn renew_unless(
        &self,
        recent: impl FnOnce(EpochSeconds) -> bool,
        now: EpochSeconds,
    ) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        {
            let mut last = self
                .last_read
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((at, read_at)) = *last
                && at.elapsed() < self.renew_every
                && recent(read_at)
            {
                return false;
            }
            *last = Some((Instant::now(), now));
        }
        match source.keys.read(true).await {
            Ok((current, previous)) => {
                self.replace(|verifier| {
                    verifier.with_secrets(&current, previous.as_ref(), &source.audience)
                });
                tracing::info!("token secret (both versions) read after a signature mismatch");
                true
            }
            Err(err) => {
                tracing::warn!(
                    error = &err as &dyn std::error::Error,
                    "could not read the token secret again"
                );
                false
            }
        }
    }
}

/// A verifier accepting `current` and, during a rotation, `previous`.
fn verifier(current: &Secret, previous: Option<&Secret>, audience: &str) -> TokenVerifier {
    TokenVerifier::new(current, audience).with_secrets(current, previous, audience)
}

/// A key source whose secret can be rotated, counting the reads that renew (tests).
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct RotatingKeys(Arc<Mutex<RotatingState>>);

#[cfg(test)]
#[derive(Debug)]
pub(crate) struct RotatingState {
    current: Secret,
    previous: Option<Secret>,
    renewals: u32,
}

#[cfg(test)]
impl RotatingKeys {
    /// A secret holding `value` (at least 32 bytes), never rotated yet.
    pub(crate) fn holding(value: &str) -> Self {
        Self(Arc::new(Mutex::new(RotatingState {
            current: secret(value),
            previous: None,
            renewals: 0,
        })))
    }

    /// Rotates: `value` becomes the current version, the current one the previous.
    pub(crate) fn rotate(&self, value: &str) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut state.current, secret(value));
        state.previous = Some(old);
    }

    /// How many reads renewed the keys (those that asked for the previous version too).
    pub(crate) fn renewals(&self) -> u32 {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .renewals
    }
}

#[cfg(test)]
pub(crate) fn secret(value: &str) -> Secret {
    Secret::new(value).unwrap_or_else(|_| unreachable!("test secrets are long enough"))
}

#[cfg(test)]
impl KeySource for RotatingKeys {
    fn read(&self, previous: bool) -> BoxFuture<'_, Result<(Secret, Option<Secret>), BootError>> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if previous {
            state.renewals += 1;
        }
        let keys = (
            state.current.clone(),
            state.previous.clone().filter(|_| previous),
        );
        Box::pin(async move { Ok(keys) })
    }
}

/// A provider's JWKS that can be rotated or taken down, counting fetches (tests).
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct FakeJwks(Arc<Mutex<FakeJwksState>>);

#[cfg(test)]
#[derive(Debug)]
pub(crate) struct FakeJwksState {
    set: serde_json::Value,
    down: bool,
    fetches: u32,
}

#[cfg(test)]
impl FakeJwks {
    /// Serving `set`.
    pub(crate) fn serving(set: serde_json::Value) -> Self {
        Self(Arc::new(Mutex::new(FakeJwksState {
            set,
            down: false,
            fetches: 0,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeJwksState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves `set` from now on.
    pub(crate) fn rotate(&self, set: serde_json::Value) {
        self.state().set = set;
    }

    /// Fails every fetch from now on (or serves again).
    pub(crate) fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// How many fetches were made.
    pub(crate) fn fetches(&self) -> u32 {
        self.state().fetches
    }
}

#[cfg(test)]
impl JwksSource for FakeJwks {
    fn fetch(&self) -> BoxFuture<'_, Result<ProviderKeys, JwksError>> {
        let mut state = self.state();
        state.fetches += 1;
        let result = if state.down {
            Err(JwksError::Status {
                url: "https://issuer.example/jwks".into(),
                status: 503,
            })
        } else {
            ProviderKeys::from_jwks(
                state.set.to_string().as_bytes(),
                crate::oidc::PROVIDER_ALGORITHMS,
            )
        };
        Box::pin(async move { result })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::auth::{TokenClaims, mint};

    const OLD: &str = "the-old-token-secret-long-enough-for-hs256";
    const NEW: &str = "the-new-token-secret-long-enough-for-hs256";
    const NOW: EpochSeconds = 1_800_000_000;

    fn token(value: &str, iat: EpochSeconds) -> String {
        let claims = TokenClaims {
            sub: "alice".into(),
            aud: "marquee".into(),
            iat,
            exp: iat + 3600,
            nbf: None,
            artists: None,
            subscribe: None,
            publish: None,
        };
        mint(&secret(value), &claims).unwrap()
    }

    /// Verifies `token` at `now`, renewing once as `$connect` does when refused.
    async fn connect(keyring: &Keyring, token: &str, now: EpochSeconds) -> Result<(), TokenError> {
        let refused = match keyring.current().verify(Some(token), now) {
            Ok(_) => return Ok(()),
            Err(refused) => refused,
        };
        if keyring.renew_after(&refused, now).await {
            return keyring.current().verify(Some(token), now).map(|_| ());
        }
        Err(refused)
    }

    #[tokio::test]
    async fn a_token_issued_after_the_last_read_may_renew_within_the_minute() {
        let keys = RotatingKeys::holding(OLD);
        let keyring = Keyring::from_source(keys.clone(), "marquee").await.unwrap();
        let forged = token("a-forger-s-secret-that-is-long-enough-too", NOW - 10);
        assert!(connect(&keyring, &forged, NOW).await.is_err());
        assert_eq!(
            keys.renewals(),
            1,
            "a well-formed bad signature spends the read"
        );

        keys.rotate(NEW);
        assert!(
            connect(&keyring, &token(NEW, NOW), NOW).await.is_err(),
            "issued in the second of the last read: waits for the minute"
        );
        assert_eq!(keys.renewals(), 1);
        assert_eq!(
            connect(&keyring, &token(NEW, NOW + 1), NOW + 1).await,
            Ok(())
        );
        assert_eq!(keys.renewals(), 2, "issued after the last read: read again");
    }

    #[tokio::test]
    async fn a_token_claiming_a_future_iat_renews_at_most_once_a_second() {
        let keys = RotatingKeys::holding(OLD);
        let keyring = Keyring::from_source(keys.clone(), "marquee").await.unwrap();
        let forged = token("a-forger-s-secret-that-is-long-enough-too", NOW + 3000);
        for _ in 0..5 {
            assert!(connect(&keyring, &forged, NOW).await.is_err());
        }
        assert_eq!(keys.renewals(), 1, "its iat counts as now");
    }

    mod provider {
        use serde_json::json;

        use super::*;
        use crate::oidc::testing::{TestKey, jwks};
        use crate::oidc::{ClaimNames, PROVIDER_ALGORITHMS, ProviderConfig};

        const ISSUER: &str = "https://issuer.example";

        fn config() -> ProviderConfig {
            ProviderConfig {
                issuer: ISSUER.into(),
                jwks_url: None,
                audience: "marquee".into(),
                algorithms: PROVIDER_ALGORITHMS.to_vec(),
                claims: ClaimNames::default(),
            }
        }

        fn token(key: TestKey, kid: &str) -> String {
            key.sign(
                kid,
                &json!({"iss": ISSUER, "sub": "alice", "aud": "marquee", "exp": NOW + 600}),
            )
        }

        async fn keyring(source: &FakeJwks) -> Keyring {
            Keyring::from(TokenVerifier::new(&secret(OLD), "marquee"))
                .with_provider(config(), source.clone())
                .await
        }

        #[tokio::test]
        async fn an_unknown_kid_refetches_once_a_minute_and_a_rotated_key_is_then_accepted() {
            let source = FakeJwks::serving(jwks(&[(TestKey::EcA, "a")]));
            let keyring = keyring(&source).await;
            assert_eq!(source.fetches(), 1, "the cold start's fetch");
            let forged = token(TestKey::EcB, "forged");
            for _ in 0..5 {
                assert!(connect(&keyring, &forged, NOW).await.is_err());
            }
            assert_eq!(
                source.fetches(),
                1,
                "within the minute of the last good fetch: none"
            );

            let keyring = keyring.refetching_at_most_every(Duration::ZERO, Duration::ZERO);
            source.rotate(jwks(&[(TestKey::EcA, "a"), (TestKey::EcB, "b")]));
            assert_eq!(
                connect(&keyring, &token(TestKey::EcB, "b"), NOW).await,
                Ok(())
            );
            assert_eq!(source.fetches(), 2);
            assert_eq!(
                connect(&keyring, &token(TestKey::EcA, "a"), NOW).await,
                Ok(()),
                "the old key still in the set still verifies"
            );
            assert_eq!(source.fetches(), 2, "a known kid fetches nothing");
            assert_eq!(
                connect(&keyring, &mint(&secret(OLD), &hs256_claims()).unwrap(), NOW).await,
                Ok(()),
                "HS256 tokens are untouched by a refetch"
            );
        }

        #[tokio::test]
        async fn the_last_good_keys_serve_while_the_provider_is_down() {
            let source = FakeJwks::serving(jwks(&[(TestKey::RsaA, "a")]));
            let keyring = keyring(&source)
                .await
                .refetching_at_most_every(Duration::ZERO, Duration::ZERO);
            source.set_down(true);
            assert!(!keyring.refetch().await, "the fetch failed");
            assert_eq!(
                connect(&keyring, &token(TestKey::RsaA, "a"), NOW).await,
                Ok(())
            );
            assert_eq!(source.fetches(), 2);
        }

        #[tokio::test]
        async fn a_failed_cold_start_fetch_refuses_provider_tokens_until_a_retry_succeeds() {
            let source = FakeJwks::serving(jwks(&[(TestKey::EdA, "a")]));
            source.set_down(true);
            let keyring = keyring(&source).await;
            let token = token(TestKey::EdA, "a");
            assert_eq!(
                connect(&keyring, &token, NOW).await,
                Err(TokenError::UnknownKey),
                "no keys; the retry waits for RETRY_FAILED_FETCH_AFTER"
            );
            assert_eq!(source.fetches(), 1);

            let keyring = keyring.refetching_at_most_every(REFRESH_AT_MOST_EVERY, Duration::ZERO);
            source.set_down(false);
            assert_eq!(connect(&keyring, &token, NOW).await, Ok(()));
            assert_eq!(source.fetches(), 2);
        }

        fn hs256_claims() -> TokenClaims {
            TokenClaims {
                sub: "alice".into(),
                aud: "marquee".into(),
                iat: NOW,
                exp: NOW + 600,
                nbf: None,
                artists: None,
                subscribe: None,
                publish: None,
            }
        }
    }
}
