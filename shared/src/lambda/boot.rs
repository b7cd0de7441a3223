//! Why a cold start fails: a leaf of `lambda`, so the key sources ([`super::keyring`],
//! [`super::secrets`]) and the wiring ([`super::deps`]) can all name it.

use crate::auth::WeakSecret;
use crate::config::ConfigError;

/// A cold start that cannot succeed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Bad or missing configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Neither `TOKEN_SECRET` nor `TOKEN_SECRET_ARN` is set, nor `OIDC_ISSUER`.
    #[error("TOKEN_SECRET_ARN (or TOKEN_SECRET locally), or OIDC_ISSUER, must be set")]
    NoSecret,
    /// The system's root certificates, which the fetch of a provider's keys trusts, could not
    /// be read.
    #[error("could not read the system's root certificates (for OIDC_ISSUER's keys)")]
    TrustStore(#[source] std::io::Error),
    /// Secrets Manager did not give the secret.
    #[error("could not read the token secret from Secrets Manager")]
    SecretsManager(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The secret is too short.
    #[error(transparent)]
    WeakSecret(#[from] WeakSecret),
}
