//! One trace across the work queue: the X-Ray trace header of the `notify` invocation that
//! fans an event out travels with every work item of it, as the SQS message system attribute
//! `AWSTraceHeader`, and `deliver` links its work to it.
//!
//! Following OpenTelemetry's messaging conventions, a consumer *links* to the producer's
//! context rather than taking it as its parent: `deliver`'s own trace stays its invocation's,
//! and [`consumer_span`] records the producer's trace id and parent as link fields. What
//! `deliver` sends on (hand-offs, continuations, re-drives) carries the header it received
//! ([`carrying`]), so every item of an event links to the one producer.

use std::collections::HashMap;
use std::future::Future;

/// The SQS message system attribute (and Lambda record attribute) holding the X-Ray header.
pub const AWS_TRACE_HEADER: &str = "AWSTraceHeader";

/// The longest header kept: X-Ray's own is about 100 characters; anything far longer is not
/// one.
const MAX_HEADER_CHARS: usize = 512;

/// An X-Ray trace header, `Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=<0|1>` (other
/// fields, such as `Lineage`, are kept as they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader(String);

/// Why a string is not an X-Ray trace header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an X-Ray trace header: {0}")]
pub struct InvalidTraceHeader(&'static str);

impl TraceHeader {
    /// Parses a header: printable ASCII without spaces, at most 512 characters, with a
    /// well-formed `Root`.
    ///
    /// # Errors
    /// [`InvalidTraceHeader`] saying what is wrong.
    pub fn parse(raw: &str) -> Result<Self, InvalidTraceHeader> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > MAX_HEADER_CHARS {
            return Err(InvalidTraceHeader("empty or too long"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidTraceHeader("not printable ASCII"));
        }
        let header = Self(raw.to_owned());
        let root = header.field("Root").ok_or(InvalidTraceHeader("no Root"))?;
        let parts: Vec<&str> = root.split('-').collect();
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        match parts.as_slice() {
            ["1", time, id] if hex(time, 8) && hex(id, 24) => Ok(header),
            _ => Err(InvalidTraceHeader("Root is not 1-<8 hex>-<24 hex>")),
        }
    }

    /// The header of a Lambda invocation (`Context::xray_trace_id`), when it has a valid one.
    #[must_use]
    pub fn of_invocation(xray_trace_id: Option<&str>) -> Option<Self> {
        xray_trace_id.and_then(|raw| Self::parse(raw).ok())
    }

    /// The producer's header in an SQS record's `attributes`, when it has a valid one.
    #[must_use]
    pub fn of_record(attributes: &HashMap<String, String>) -> Option<Self> {
        attributes
            .get(AWS_TRACE_HEADER)
            .and_then(|raw| Self::parse(raw).ok())
    }

    /// The header as sent.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trace id (`Root`).
    #[must_use]
    pub fn trace_id(&self) -> &str {
        self.field("Root").unwrap_or_default()
    }

    /// The producer's segment (`Parent`), when the header names one.
    #[must_use]
    pub fn parent(&self) -> Option<&str> {
        self.field("Parent")
    }

    /// Whether the producer's trace was sampled (`Sampled`), when the header says.
    #[must_use]
    pub fn sampled(&self) -> Option<bool> {
        match self.field("Sampled") {
            Some("1") => Some(true),
            Some("0") => Some(false),
            _ => None,
        }
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.0.split(';').find_map(|part| {
            let (key, value) = part.split_once('=')?;
            (key == name).then_some(value)
        })
    }
}

tokio::task_local! {
    /// The header the work items sent from this task carry.
    static CARRIED: Option<TraceHeader>;
}

/// Runs `work` with `header` as the trace context its work items carry.
pub async fn carrying<F: Future>(header: Option<TraceHeader>, work: F) -> F::Output {
    CARRIED.scope(header, work).await
}

/// The trace context work items sent now carry (`None` outside [`carrying`]).
#[must_use]
pub fn carried() -> Option<TraceHeader> {
    CARRIED.try_with(Clone::clone).ok().flatten()
}

/// The span of `deliver`'s processing of one message, linked (not parented) to its producer,
/// with OpenTelemetry's messaging fields.
#[must_use]
pub fn consumer_span(message_id: &str, producer: Option<&TraceHeader>) -> tracing::Span {
    tracing::info_span!(
        "process work item",
        messaging.system = "aws_sqs",
        "messaging.operation.type" = "process",
        messaging.message.id = message_id,
        link.trace_id = producer.map(TraceHeader::trace_id),
        link.span_id = producer.and_then(TraceHeader::parent),
        link.sampled = producer.and_then(TraceHeader::sampled),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

    #[test]
    fn a_header_gives_its_trace_id_parent_and_sampling() {
        let header = TraceHeader::parse(HEADER).unwrap();
        assert_eq!(header.trace_id(), "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(header.parent(), Some("53995c3f42cd8ad8"));
        assert_eq!(header.sampled(), Some(true));
        assert_eq!(header.as_str(), HEADER);
    }

    #[test]
    fn anything_else_is_refused() {
        for raw in [
            "",
            "Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd86",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a994272793; Sampled=1",
        ] {
            assert!(TraceHeader::parse(raw).is_err(), "{raw:?}");
        }
        assert_eq!(
            TraceHeader::parse(&format!(
                "Root=1-5759e988-bd862e3fe1be46a994272793;L={}",
                "a".repeat(600)
            )),
            Err(InvalidTraceHeader("empty or too long"))
        );
    }

    #[tokio::test]
    async fn the_carried_header_is_the_scope_s_and_none_outside_it() {
        let header = TraceHeader::parse(HEADER).unwrap();
        assert_eq!(carried(), None);
        let inside = carrying(Some(header.clone()), async { carried() }).await;
        assert_eq!(inside, Some(header));
    }
}
