//! Test support (feature `test-support`): every HTTP request an SDK client built from
//! [`sdk_config`](super::deps::sdk_config) sends can be shown to one observer per process,
//! with the [`Function`] whose work sent it. The IAM check in `marquee-tests` records AWS
//! requests through it; the Lambda binaries are built without the feature.
//!
//! The observer sees the request as signed and about to go out, once per attempt, and cannot
//! change it.

use std::sync::OnceLock;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

use crate::function::Function;

/// What an observer is shown: the request, and the function running when it was sent (`None`
/// for a call made outside any function's work, such as a test creating its table).
pub type Observer = dyn Fn(&HttpRequest, Option<Function>) + Send + Sync;

static OBSERVER: OnceLock<Box<Observer>> = OnceLock::new();

/// Installs this process's observer. Returns `false` (and keeps the first) when one is already
/// installed.
pub fn install(observer: Box<Observer>) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// `client`, with every request it sends shown to the observer (when one is installed by then).
pub(crate) fn wrap(client: SharedHttpClient) -> SharedHttpClient {
    SharedHttpClient::new(Observed { inner: client })
}

#[derive(Debug)]
struct Observed {
    inner: SharedHttpClient,
}

impl HttpClient for Observed {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(ObservedConnector {
            inner: self.inner.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct ObservedConnector {
    inner: SharedHttpConnector,
}

impl HttpConnector for ObservedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        if let Some(observer) = OBSERVER.get() {
            observer(&request, Function::current());
        }
        self.inner.call(request)
    }
}
