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

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::deps::BootError;
use crate::auth::{Secret, TokenError, TokenVerifier};
use crate::domain::{EpochSeconds, now_epoch_seconds};

/// The shortest time between two reads of the secret by one container.
pub const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(60);

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
}

impl From<TokenVerifier> for Keyring {
    /// Fixed keys (a local secret, tests): never renewed.
    fn from(verifier: TokenVerifier) -> Self {
        Self {
            verifier: RwLock::new(Arc::new(verifier)),
            source: None,
            last_read: Mutex::new(None),
            renew_every: REFRESH_AT_MOST_EVERY,
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
    /// it: only for [`TokenError::BadSignature`], at most once per [`REFRESH_AT_MOST_EVERY`],
    /// or sooner when the token says it was issued (`iat`, capped at `now`) after the last
    /// read. Returns whether new keys are in use.
    pub async fn renew_after(&self, refused: &TokenError, now: EpochSeconds) -> bool {
        let TokenError::BadSignature { issued_at } = refused else {
            return false;
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
                let verifier = verifier(&current, previous.as_ref(), &source.audience);
                *self
                    .verifier
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(verifier);
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
    let verifier = TokenVerifier::new(current, audience);
    match previous {
        Some(previous) => verifier.with_previous(previous),
        None => verifier,
    }
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
}
