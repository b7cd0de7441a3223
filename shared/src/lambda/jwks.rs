//! An OpenID Connect provider's keys over HTTP(S): the [`JwksSource`] `$connect` uses (the
//! `oidc` feature).
//!
//! The JWKS is at `OIDC_JWKS_URL`, or found through the issuer's discovery document
//! (`<OIDC_ISSUER>/.well-known/openid-configuration`, whose `issuer` must be `OIDC_ISSUER`
//! exactly) the first time a fetch succeeds that far. Each fetch, discovery included, has one
//! time limit ([`DEFAULT_FETCH_TIMEOUT`]), so a slow provider delays a cold start or a refused
//! token by that much at most. Answers larger than [`MAX_DOCUMENT_BYTES`] are refused.
//!
//! It is a plain HTTPS GET from the function, not an AWS call: no IAM permission is involved.
//! It does not go through the SDK's HTTPS client either, whose trust store holds only the
//! Amazon roots: providers' certificates chain to many CAs, so this client trusts the system's
//! roots. In AWS (`https_only`), `http://` URLs are refused.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::keyring::JwksSource;
use crate::oidc::{JwksError, ProviderConfig, ProviderKeys};

/// The default time limit of one fetch (`OIDC_FETCH_TIMEOUT_MILLIS`), discovery included.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_millis(2000);
/// The largest discovery document or JWKS read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// A provider's JWKS over HTTP(S). Cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpJwks {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    config: Arc<ProviderConfig>,
    /// `OIDC_JWKS_URL`, or the discovered `jwks_uri` once known.
    jwks_url: Arc<Mutex<Option<String>>>,
    timeout: Duration,
    https_only: bool,
}

impl HttpJwks {
    /// The keys of the provider `config` describes, each fetch bounded by `timeout`;
    /// `https_only` refuses `http://` URLs (in AWS).
    ///
    /// # Errors
    /// When the system's root certificates cannot be read.
    pub fn new(
        config: &ProviderConfig,
        timeout: Duration,
        https_only: bool,
    ) -> Result<Self, std::io::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            config: Arc::new(config.clone()),
            jwks_url: Arc::new(Mutex::new(config.jwks_url.clone())),
            timeout,
            https_only,
        })
    }

    /// Fetches and parses the JWKS, discovering its URL first if need be.
    async fn fetch_unbounded(&self) -> Result<ProviderKeys, JwksError> {
        let known = self
            .jwks_url
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let url = match known {
            Some(url) => url,
            None => {
                let url = self.discover().await?;
                *self.jwks_url.lock().unwrap_or_else(PoisonError::into_inner) = Some(url.clone());
                url
            }
        };
        let body = self.get(&url).await?;
        ProviderKeys::from_jwks(&body, &self.config.algorithms)
    }

    /// The `jwks_uri` of the issuer's discovery document, whose `issuer` must be ours.
    async fn discover(&self) -> Result<String, JwksError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let body = self.get(&self.config.discovery_url()).await?;
        let document: Discovery =
            serde_json::from_slice(&body).map_err(|_| JwksError::Discovery)?;
        if document.issuer != self.config.issuer {
            return Err(JwksError::IssuerMismatch {
                expected: self.config.issuer.clone(),
                found: document.issuer,
            });
        }
        Ok(document.jwks_uri)
    }

    /// GETs `url`: its body when it answers 200 within [`MAX_DOCUMENT_BYTES`].
    async fn get(&self, url: &str) -> Result<Bytes, JwksError> {
        let fetch = |source: Box<dyn std::error::Error + Send + Sync>| JwksError::Fetch {
            url: url.to_owned(),
            source,
        };
        if self.https_only && !url.starts_with("https://") {
            return Err(fetch("only https:// URLs are fetched in AWS".into()));
        }
        let request = hyper::Request::get(url)
            .header("accept", "application/json")
            .body(Empty::new())
            .map_err(|e| fetch(Box::new(e)))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| fetch(Box::new(e)))?;
        let status = response.status();
        if status != hyper::StatusCode::OK {
            return Err(JwksError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        match Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
        {
            Ok(body) => Ok(body.to_bytes()),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(JwksError::TooLarge {
                url: url.to_owned(),
                limit: MAX_DOCUMENT_BYTES,
            }),
            Err(err) => Err(fetch(err)),
        }
    }
}

impl JwksSource for HttpJwks {
    fn fetch(&self) -> BoxFuture<'_, Result<ProviderKeys, JwksError>> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.fetch_unbounded())
                .await
                .unwrap_or_else(|_| {
                    let url = self
                        .jwks_url
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone()
                        .unwrap_or_else(|| self.config.discovery_url());
                    Err(JwksError::Timeout {
                        url,
                        millis: self.timeout.as_millis(),
                    })
                })
        })
    }
}
