//! `marquee-admin`: operator commands for a Marquee stack, or for the local gateway on
//! DynamoDB Local and an SQS-compatible server. A thin layer over the functions' own ports and
//! adapters (`DynamoStore`, `ManagementPush`, the SQS client): it has no data model of its own.
//!
//! | module | job |
//! |---|---|
//! | [`target`] | where things are: a stack's outputs (`--stack`) or local endpoints |
//! | [`commands`] | `stats`, `user`, `disconnect` over the ports |
//! | [`dlq`] | the dead-letter queues: summary by event, re-drive |
//! | [`render`] | tables and JSON |
//!
//! Exit codes (`marquee-admin --help`): 0 done; 1 a call failed or a re-drive left messages
//! behind; 2 bad usage or bad input (nothing was written).

pub mod commands;
pub mod dlq;
pub mod render;
pub mod target;

/// Why a command did not finish.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad usage or input: nothing was read or written. Exit code 2.
    #[error("{0}")]
    Usage(String),
    /// A call failed (AWS, the table, the Management API). Exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl AdminError {
    /// A store failure, with its source chain on one line.
    #[must_use]
    #[allow(clippy::needless_pass_by_value)] // for `map_err(AdminError::store)`
    pub fn store(err: marquee::store::StoreError) -> Self {
        Self::Failed(chain(&err))
    }

    /// The process exit code for this error.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Failed(_) => 1,
        }
    }
}

/// An error and its sources on one line, repeated messages dropped.
#[must_use]
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}
