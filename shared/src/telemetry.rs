//! Logging through `tracing`, filtered by `RUST_LOG` (default `info`): JSON lines for Lambda
//! (CloudWatch parses them), plain text for people at a terminal.
//!
//! Fields carry connection id, user id, artist and event id; never a token or secret. The
//! runtime and HTTP crates underneath log whole events and bodies at `debug` and `trace` (the
//! `$connect` event's query string holds the token, Secrets Manager's answer holds the key), so
//! they are held at `info` whatever `RUST_LOG` asks for: the hold is a second filter that every
//! line must also pass, not a directive added to `RUST_LOG`'s, so no directive of `RUST_LOG`
//! (however specific, such as `lambda_runtime::layers::api_response=trace`) can lift it.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Crates that would log raw events or HTTP bodies below `info`.
const HELD_AT_INFO: &[&str] = &[
    "lambda_runtime",
    "lambda_runtime_api_client",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_sdk_secretsmanager",
    "aws_config",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tungstenite",
    "tokio_tungstenite",
    "axum",
];

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (Lambda).
    Json,
    /// Compact text (local tools).
    Text,
}

/// Installs the JSON subscriber once; later calls do nothing.
pub fn init() {
    init_with(LogFormat::Json);
}

/// The filter for a `RUST_LOG` value (`None`: `info`), with the crates that log secrets held at
/// `info` whatever the value says. A bad value falls back to `info`.
///
/// Two filters, and a line must pass both: `RUST_LOG`'s, and the hold. Adding the hold to
/// `RUST_LOG`'s directives instead would let a more specific directive win over it.
#[must_use]
pub fn filter<S>(spec: Option<&str>) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let requested = spec
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    requested.and_then(hold())
}

/// Everything allowed, except the crates of [`HELD_AT_INFO`] (and every module in them) below
/// `info`. A target matches its crate's entry by prefix, so `lambda_runtime::layers` is held too.
fn hold() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(
            HELD_AT_INFO
                .iter()
                .map(|target| (*target, LevelFilter::INFO)),
        )
}

/// Installs a subscriber of `format` once; later calls do nothing.
pub fn init_with(format: LogFormat) {
    let spec = std::env::var("RUST_LOG").ok();
    let registry = tracing_subscriber::registry().with(filter(spec.as_deref()));
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr);
    let _already_set = match format {
        LogFormat::Json => registry
            .with(layer.json().with_current_span(false).flatten_event(true))
            .try_init(),
        LogFormat::Text => registry
            .with(
                layer
                    .compact()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .try_init(),
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a subscriber filtered by `filter(Some(spec))` writes while `log` runs.
    fn logged(spec: &str, log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry()
            .with(filter(Some(spec)))
            .with(tracing_subscriber::fmt::layer().with_writer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn the_runtime_never_logs_an_event_even_at_trace() {
        let text = logged("trace", || {
            tracing::trace!(target: "lambda_runtime", "event: ?token=eyJ.secret.token");
            tracing::debug!(target: "aws_smithy_runtime", "body: the-secret-key");
            tracing::trace!(target: "marquee::routes", "our own trace line");
        });
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("our own trace line"), "{text}");
    }

    #[test]
    fn no_directive_however_specific_lifts_the_hold() {
        let spec = "info,lambda_runtime::layers::api_response=trace,\
                    aws_smithy_runtime::client=debug,hyper_util[span]=trace,\
                    [{token}]=trace,marquee=trace";
        let text = logged(spec, || {
            tracing::trace!(
                target: "lambda_runtime::layers::api_response",
                "event: ?token=eyJ.secret.token"
            );
            tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "body: secret-key");
            tracing::trace!(target: "hyper_util::client", token = "secret", "connecting");
            tracing::info!(target: "lambda_runtime::layers::api_response", "held crates still log at info");
            tracing::trace!(target: "marquee::routes", "our own trace line");
        });
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("held crates still log at info"), "{text}");
        assert!(text.contains("our own trace line"), "{text}");
    }
}
