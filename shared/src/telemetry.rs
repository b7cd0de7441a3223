//! Logging through `tracing`, filtered by `RUST_LOG` (default `info`): JSON lines for Lambda
//! (CloudWatch parses them), plain text for people at a terminal.
//!
//! Fields carry connection id, user id, artist and event id; never a token or secret.

use tracing_subscriber::EnvFilter;

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

/// Installs a subscriber of `format` once; later calls do nothing.
pub fn init_with(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
