//! The token secret from Secrets Manager: what `$connect` reads once per cold start in AWS,
//! and again after a rotation (see [`super::keyring`]). Behind the `secrets` feature, so only
//! the functions that read a secret link the Secrets Manager client.

use aws_config::SdkConfig;
use futures_util::future::BoxFuture;

use super::boot::BootError;
use super::keyring::{KeySource, Keyring};
use crate::auth::{Secret, TokenVerifier};
use crate::config::{Config, SecretSource};
use crate::oidc::{ProviderKeys, ProviderVerifier};
use std::sync::Arc;

/// A Secrets Manager secret as a [`KeySource`]: its `AWSCURRENT` and `AWSPREVIOUS` versions.
#[derive(Debug)]
pub struct SecretsManagerKeys {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerKeys {
    /// The secret `secret_id` (a name or an ARN), read through `client`.
    #[must_use]
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: &str) -> Self {
        Self {
            client,
            secret_id: secret_id.to_owned(),
        }
    }
}

impl KeySource for SecretsManagerKeys {
    fn read(&self, previous: bool) -> BoxFuture<'_, Result<(Secret, Option<Secret>), BootError>> {
        Box::pin(read_secrets(&self.client, &self.secret_id, previous))
    }
}

impl Keyring {
    /// Reads Secrets Manager `secret_id` (its current version; the previous one when a token
    /// needs it, see [`Keyring::renew`]): keys for tokens of `audience`, renewable.
    ///
    /// # Errors
    /// [`BootError`] when the current version cannot be read or is not a usable key.
    pub async fn from_secrets_manager(
        client: aws_sdk_secretsmanager::Client,
        secret_id: &str,
        audience: &str,
    ) -> Result<Self, BootError> {
        Self::from_source(SecretsManagerKeys::new(client, secret_id), audience).await
    }
}

/// Reads a Secrets Manager secret's current version and, when `previous` is asked for and
/// there is one, its previous version (`AWSPREVIOUS`, left by a rotation).
///
/// # Errors
/// [`BootError`] when the current version cannot be read or is not a usable key.
async fn read_secrets(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    previous: bool,
) -> Result<(Secret, Option<Secret>), BootError> {
    let read = |stage: &'static str| {
        client
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(stage)
            .send()
    };
    let bytes =
        |out: &aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput| {
            out.secret_string()
                .map(|s| s.as_bytes().to_vec())
                .or_else(|| out.secret_binary().map(|b| b.as_ref().to_vec()))
        };
    let current = read("AWSCURRENT")
        .await
        .map_err(|e| BootError::SecretsManager(Box::new(e)))?;
    let current = Secret::new(bytes(&current).ok_or(BootError::NoSecret)?)?;
    if !previous {
        return Ok((current, None));
    }
    // No previous version (never rotated) is normal; any other failure only costs the grace.
    let previous = match read("AWSPREVIOUS").await {
        Ok(out) => bytes(&out).and_then(|b| Secret::new(b).ok()),
        Err(err) => {
            if !err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception())
            {
                tracing::warn!(
                    error = &err as &dyn std::error::Error,
                    "could not read the previous token secret"
                );
            }
            None
        }
    };
    Ok((current, previous))
}

/// The verifier `$connect` starts with: the inline secret locally, or the secret's current
/// version from Secrets Manager in AWS (renewable, with the previous version, see [`Keyring`]).
/// Without a secret but with an OpenID Connect provider (`OIDC_ISSUER`), a verifier of that
/// provider's tokens only, with no keys yet ([`Keyring::with_provider`] fetches them).
///
/// # Errors
/// [`BootError`] when there is neither a secret nor a provider, or the secret cannot be read.
pub async fn keyring(sdk: &SdkConfig, config: &Config) -> Result<Keyring, BootError> {
    let audience = &config.token_audience;
    match (&config.token_secret, &config.oidc) {
        (Some(SecretSource::Inline(secret)), _) => {
            Ok(TokenVerifier::new(&Secret::new(secret.as_bytes())?, audience).into())
        }
        (Some(SecretSource::SecretsManager(arn)), _) => {
            let client = aws_sdk_secretsmanager::Client::new(sdk);
            Keyring::from_secrets_manager(client, arn, audience).await
        }
        (None, Some(provider)) => Ok(TokenVerifier::provider_only(ProviderVerifier::new(
            Arc::new(provider.clone()),
            ProviderKeys::default(),
        ))
        .into()),
        (None, None) => Err(BootError::NoSecret),
    }
}
