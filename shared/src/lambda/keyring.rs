//! The token secrets `$connect` verifies with, kept fresh across a rotation.
//!
//! Secrets Manager rotation moves the new key to `AWSCURRENT` and the old one to
//! `AWSPREVIOUS`. A cold start reads both, so tokens signed just before a rotation stay valid.
//! A warm container still holds what it read at its cold start: when a token fails its
//! signature check there, the secret is read again (at most once a minute, so a stream of bad
//! tokens costs at most one Secrets Manager call a minute) and the token checked once more.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::deps::{BootError, read_secrets};
use crate::auth::TokenVerifier;

/// The shortest time between two reads of the secret by one container.
pub const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(60);

/// Where fresh keys come from.
#[derive(Debug)]
struct KeySource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    audience: String,
}

/// The verifier in use, and how to renew it.
#[derive(Debug)]
pub struct Keyring {
    verifier: RwLock<Arc<TokenVerifier>>,
    source: Option<KeySource>,
    last_read: Mutex<Instant>,
    renew_every: Duration,
}

impl From<TokenVerifier> for Keyring {
    /// Fixed keys (a local secret, tests): never renewed.
    fn from(verifier: TokenVerifier) -> Self {
        Self {
            verifier: RwLock::new(Arc::new(verifier)),
            source: None,
            last_read: Mutex::new(Instant::now()),
            renew_every: REFRESH_AT_MOST_EVERY,
        }
    }
}

impl Keyring {
    /// Reads Secrets Manager `secret_id` (its current and previous versions): keys for tokens
    /// of `audience`, renewable.
    ///
    /// # Errors
    /// [`BootError`] when the current version cannot be read or is not a usable key.
    pub async fn from_secrets_manager(
        client: aws_sdk_secretsmanager::Client,
        secret_id: &str,
        audience: &str,
    ) -> Result<Self, BootError> {
        let (current, previous) = read_secrets(&client, secret_id).await?;
        let mut verifier = TokenVerifier::new(&current, audience);
        if let Some(previous) = &previous {
            verifier = verifier.with_previous(previous);
        }
        Ok(Self {
            source: Some(KeySource {
                client,
                secret_id: secret_id.to_owned(),
                audience: audience.to_owned(),
            }),
            ..Self::from(verifier)
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

    /// Reads the secret again, unless that was done less than
    /// [`REFRESH_AT_MOST_EVERY`] ago or the keys are fixed. Returns whether new keys are in use.
    pub async fn renew(&self) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        {
            let mut last = self
                .last_read
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.elapsed() < self.renew_every {
                return false;
            }
            *last = Instant::now();
        }
        match read_secrets(&source.client, &source.secret_id).await {
            Ok((current, previous)) => {
                let mut verifier = TokenVerifier::new(&current, &source.audience);
                if let Some(previous) = &previous {
                    verifier = verifier.with_previous(previous);
                }
                *self
                    .verifier
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(verifier);
                tracing::info!("token secret read again after a signature mismatch");
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
