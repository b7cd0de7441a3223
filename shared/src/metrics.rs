//! Metrics in CloudWatch's Embedded Metric Format (EMF): one JSON document per invocation on
//! stdout, which Lambda hands to CloudWatch Logs and CloudWatch turns into metrics (namespace
//! [`NAMESPACE`], dimension `Function`). No API call, no extra latency.
//!
//! Locally (`marquee-local`, or `METRICS_FORMAT=text` under `cargo lambda watch`) the same
//! values print as one short readable line instead.
//!
//! Why not the `metrics` facade with `metrics_cloudwatch_embedded`: that crate keeps a global
//! recorder flushed by its own Lambda runtime wrapper. Marquee's handlers live in this crate
//! without `lambda_runtime`, and the local gateway runs every function in one process, where a
//! global recorder would mix them. A per-invocation value, written by the handler that knows
//! the function, fits both.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Marquee";

/// `deliver`'s count of the work items it reported failed (`batchItemFailures`): they are not
/// Lambda errors, so `template.yaml` alarms on this (a test compares the name).
pub const WORK_ITEM_FAILURES: &str = "WorkItemFailures";

/// The count of `FanoutCompleted` events sent with `complete: false` (work items went to the
/// dead-letter queue): `template.yaml` alarms on it (a test compares the name).
pub const INCOMPLETE_REPORTS: &str = "IncompleteReports";

/// The format chosen with [`set_format`]; 0 when none was (the environment decides).
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// How metric lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsFormat {
    /// EMF JSON documents (Lambda).
    Emf,
    /// One readable line per invocation (local tools).
    Text,
    /// Nothing (benchmarks, whose stdout is a table).
    Off,
}

impl MetricsFormat {
    fn code(self) -> u8 {
        match self {
            Self::Emf => 1,
            Self::Text => 2,
            Self::Off => 3,
        }
    }
}

/// Chooses the format for this process, over `METRICS_FORMAT` (`emf`, the default; `text`;
/// `off`).
pub fn set_format(format: MetricsFormat) {
    CHOSEN.store(format.code(), Ordering::Relaxed);
}

fn format() -> MetricsFormat {
    static FROM_ENV: OnceLock<MetricsFormat> = OnceLock::new();
    match CHOSEN.load(Ordering::Relaxed) {
        2 => MetricsFormat::Text,
        3 => MetricsFormat::Off,
        1 => MetricsFormat::Emf,
        _ => *FROM_ENV.get_or_init(|| {
            match std::env::var("METRICS_FORMAT").map(|f| f.to_ascii_lowercase()) {
                Ok(f) if f == "text" => MetricsFormat::Text,
                Ok(f) if f == "off" => MetricsFormat::Off,
                _ => MetricsFormat::Emf,
            }
        }),
    }
}

/// A CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Milliseconds.
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

#[derive(Debug, Clone)]
struct Value1 {
    name: &'static str,
    unit: Unit,
    value: f64,
    /// An extra dimension (name, value) beside `Function`.
    dimension: Option<(&'static str, String)>,
}

/// The metrics of one invocation of one function.
#[derive(Debug, Clone)]
pub struct Metrics {
    function: &'static str,
    values: Vec<Value1>,
}

impl Metrics {
    /// Metrics of `function` (`connect`, `subscribe`, `notify`, `deliver`, ...).
    #[must_use]
    pub fn new(function: &'static str) -> Self {
        Self {
            function,
            values: Vec::new(),
        }
    }

    /// Adds `n` to counter `name`.
    pub fn count(&mut self, name: &'static str, n: u64) -> &mut Self {
        self.push(name, Unit::Count, n as f64, None)
    }

    /// Records a duration in milliseconds.
    pub fn millis(&mut self, name: &'static str, ms: u64) -> &mut Self {
        self.push(name, Unit::Milliseconds, ms as f64, None)
    }

    /// Adds `n` to counter `name` under an extra dimension (`Reason`, `Code`): a small, fixed
    /// set of values, never anything a client chose.
    pub fn count_by(
        &mut self,
        name: &'static str,
        dimension: &'static str,
        value: &str,
        n: u64,
    ) -> &mut Self {
        self.push(
            name,
            Unit::Count,
            n as f64,
            Some((dimension, value.to_owned())),
        )
    }

    fn push(
        &mut self,
        name: &'static str,
        unit: Unit,
        value: f64,
        dimension: Option<(&'static str, String)>,
    ) -> &mut Self {
        if let Some(same) = self
            .values
            .iter_mut()
            .find(|v| v.name == name && v.dimension == dimension && v.unit == unit)
            .filter(|_| unit == Unit::Count)
        {
            same.value += value;
        } else {
            self.values.push(Value1 {
                name,
                unit,
                value,
                dimension,
            });
        }
        self
    }

    /// The EMF documents (one per dimension set), stamped `timestamp_ms`.
    #[must_use]
    pub fn documents(&self, timestamp_ms: i64) -> Vec<Value> {
        type Group<'a> = (Option<(&'static str, String)>, Vec<&'a Value1>);
        let mut groups: Vec<Group<'_>> = Vec::new();
        for value in &self.values {
            match groups.iter_mut().find(|(d, _)| *d == value.dimension) {
                Some((_, members)) => members.push(value),
                None => groups.push((value.dimension.clone(), vec![value])),
            }
        }
        groups
            .into_iter()
            .map(|(dimension, members)| {
                // A value with an extra dimension is also published under `Function` alone,
                // so alarms and graphs can take the total.
                let mut dimensions = vec![vec!["Function"]];
                let mut document = Map::new();
                document.insert("Function".into(), json!(self.function));
                if let Some((name, value)) = &dimension {
                    dimensions.push(vec!["Function", name]);
                    document.insert((*name).into(), json!(value));
                }
                let definitions: Vec<Value> = members
                    .iter()
                    .map(|m| json!({"Name": m.name, "Unit": m.unit.as_str()}))
                    .collect();
                for member in &members {
                    document.insert(member.name.into(), json!(member.value));
                }
                document.insert(
                    "_aws".into(),
                    json!({
                        "Timestamp": timestamp_ms,
                        "CloudWatchMetrics": [{
                            "Namespace": NAMESPACE,
                            "Dimensions": dimensions,
                            "Metrics": definitions,
                        }],
                    }),
                );
                Value::Object(document)
            })
            .collect()
    }

    /// The readable one-line form.
    #[must_use]
    pub fn text(&self) -> String {
        let values: Vec<String> = self
            .values
            .iter()
            .map(|v| {
                let unit = if v.unit == Unit::Milliseconds {
                    "ms"
                } else {
                    ""
                };
                match &v.dimension {
                    Some((name, value)) => format!("{}[{name}={value}]={}{unit}", v.name, v.value),
                    None => format!("{}={}{unit}", v.name, v.value),
                }
            })
            .collect();
        format!("metrics {}: {}", self.function, values.join(" "))
    }

    /// Writes the metrics to stdout (EMF, or text locally). Nothing when empty.
    pub fn emit(&self) {
        use std::io::Write as _;
        let format = format();
        if self.values.is_empty() || format == MetricsFormat::Off {
            return;
        }
        let mut out = std::io::stdout().lock();
        let written = if format == MetricsFormat::Text {
            writeln!(out, "{}", self.text())
        } else {
            let now = chrono::Utc::now().timestamp_millis();
            self.documents(now)
                .iter()
                .try_for_each(|document| writeln!(out, "{document}"))
        };
        if let Err(err) = written.and_then(|()| out.flush()) {
            tracing::warn!(error = %err, "could not write metrics");
        }
    }
}

/// Emits the `ColdStarts` metric of `function`: call once per process, from `main`.
pub fn cold_start(function: &'static str) {
    Metrics::new(function).count("ColdStarts", 1).emit();
}

/// Milliseconds from an RFC 3339 event time to now (the fan-out lag); `None` when unreadable.
#[must_use]
pub fn lag_since(time: &str) -> Option<u64> {
    let at = chrono::DateTime::parse_from_rfc3339(time).ok()?;
    let lag = chrono::Utc::now()
        .signed_duration_since(at)
        .num_milliseconds();
    u64::try_from(lag).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn one_emf_document_per_dimension_set_with_every_value_declared() {
        let mut metrics = Metrics::new("connect");
        metrics
            .count("Connects", 1)
            .count("Connects", 2)
            .count_by("ConnectRefusals", "Reason", "expired", 1)
            .millis("FanoutLag", 1500);
        let documents = metrics.documents(1_800_000_000_000);
        assert_eq!(documents.len(), 2);
        let plain = &documents[0];
        assert_eq!(plain["Function"], "connect");
        assert_eq!(plain["Connects"], 3.0);
        assert_eq!(plain["FanoutLag"], 1500.0);
        let definition = &plain["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(definition["Namespace"], "Marquee");
        assert_eq!(definition["Dimensions"], json!([["Function"]]));
        assert_eq!(
            definition["Metrics"],
            json!([{"Name":"Connects","Unit":"Count"},{"Name":"FanoutLag","Unit":"Milliseconds"}])
        );
        let by_reason = &documents[1];
        assert_eq!(by_reason["Reason"], "expired");
        assert_eq!(
            by_reason["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"], ["Function", "Reason"]])
        );
        assert_eq!(plain["_aws"]["Timestamp"], 1_800_000_000_000_i64);
    }

    #[test]
    fn the_text_form_reads_as_one_line() {
        let mut metrics = Metrics::new("deliver");
        metrics.count("Delivered", 10).millis("FanoutLag", 42);
        assert_eq!(
            metrics.text(),
            "metrics deliver: Delivered=10 FanoutLag=42ms"
        );
    }

    #[test]
    fn the_lag_of_an_unreadable_time_is_unknown() {
        assert_eq!(lag_since("not a time"), None);
        assert!(lag_since("2026-01-01T00:00:00Z").is_some());
    }
}
