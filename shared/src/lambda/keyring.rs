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
//! Where the keys come from is a [`KeySource`]: Secrets Manager's is in
//! [`super::secrets`] (the `secrets` feature), so this module needs no AWS client.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::deps::BootError;
use crate::auth::{Secret, TokenVerifier};

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
    /// When both versions were last read; `None` until the first renewal (a cold start reads
    /// only the current version), which may therefore happen at once.
    last_read: Mutex<Option<Instant>>,
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
        let Some(source) = &self.source else {
            return false;
        };
        {
            let mut last = self
                .last_read
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < self.renew_every) {
                return false;
            }
            *last = Some(Instant::now());
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
