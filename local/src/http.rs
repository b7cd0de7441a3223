//! One small HTTP client for the JSON POSTs `marquee-local` makes: `publish` to a gateway, and
//! the gateway's invocations of a Lambda Invoke API (`cargo lambda watch`); the tests use it
//! for moto's Cognito IdP too, and `marquee-smoke` to read a gateway's delivery reports.

use axum::http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a POST got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The body could not be serialised.
    #[error("the request body is not JSON")]
    Body(#[from] serde_json::Error),
    /// The URL or a header is not valid.
    #[error("invalid request")]
    Request(#[from] hyper::http::Error),
    /// The server could not be reached, or the exchange broke off.
    #[error("no answer")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An answer, whatever its status.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// A plain-HTTP client with a connection pool; cheap to clone.
#[derive(Debug, Clone)]
pub struct JsonClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for JsonClient {
    fn default() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl JsonClient {
    /// GETs `url` and reads the answer.
    ///
    /// # Errors
    /// [`HttpError`] when the request cannot be built or sent, or the answer not read.
    pub async fn get(&self, url: &str) -> Result<Answer, HttpError> {
        let request = hyper::Request::get(url).body(Full::new(Bytes::new()))?;
        self.send(request).await
    }

    /// POSTs `body` as JSON (`content-type: application/json`) to `url` and reads the answer.
    ///
    /// # Errors
    /// [`HttpError`] when the request cannot be built or sent, or the answer not read.
    pub async fn post(&self, url: &str, body: &serde_json::Value) -> Result<Answer, HttpError> {
        self.post_with(url, &[("content-type", "application/json")], body)
            .await
    }

    /// POSTs `body` as JSON to `url` with `headers` (the content type among them), and reads
    /// the answer.
    ///
    /// # Errors
    /// [`HttpError`] when the request cannot be built or sent, or the answer not read.
    pub async fn post_with(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> Result<Answer, HttpError> {
        let mut request = hyper::Request::post(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
        self.send(request).await
    }

    async fn send(&self, request: hyper::Request<Full<Bytes>>) -> Result<Answer, HttpError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| HttpError::Transport(Box::new(e)))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| HttpError::Transport(Box::new(e)))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
