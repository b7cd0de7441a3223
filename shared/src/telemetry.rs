//! Logging through `tracing`, filtered by `RUST_LOG` (default `info`): JSON lines for Lambda
//! (CloudWatch parses them), plain text for people at a terminal.
//!
//! Fields carry connection id, user id, artist and event id; never a token or secret. The
//! runtime and HTTP crates underneath log whole events and bodies at `debug` and `trace` (the
//! `$connect` event's query string holds the token, Secrets Manager's answer holds the key), so
//! they are held at `info` whatever `RUST_LOG` asks for.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

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
/// `info`. A bad value falls back to `info`.
#[must_use]
pub fn filter(spec: Option<&str>) -> EnvFilter {
    let mut filter = spec
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for target in HELD_AT_INFO {
        if let Ok(directive) = format!("{target}=info").parse::<Directive>() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs a subscriber of `format` once; later calls do nothing.
pub fn init_with(format: LogFormat) {
    let spec = std::env::var("RUST_LOG").ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(spec.as_deref()))
        .with_target(false)
        .with_writer(std::io::stderr);
    let _already_set = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .flatten_event(true)
            .try_init(),
        LogFormat::Text => builder
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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

    #[test]
    fn the_runtime_never_logs_an_event_even_at_trace() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter(Some("trace")))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "lambda_runtime", "event: ?token=eyJ.secret.token");
            tracing::debug!(target: "aws_smithy_runtime", "body: the-secret-key");
            tracing::trace!(target: "marquee::routes", "our own trace line");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("our own trace line"), "{text}");
    }
}
