//! What a run found: one [`Step`] per check, in order, and the verdict.

use std::fmt;
use std::time::Duration;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The check held.
    Pass,
    /// The check failed: the run fails.
    Fail,
    /// Not checked: not applicable here, or not run after an earlier failure. Does not fail
    /// the run by itself.
    Skip,
}

impl Status {
    /// `PASS`, `FAIL` or `SKIP`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
        }
    }
}

/// One check of the suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What was checked (one of [`crate::step`]'s names).
    pub name: &'static str,
    /// How it ended.
    pub status: Status,
    /// How long it took, or for a delivery the time from `PutEvents` to the frame.
    pub latency: Duration,
    /// What was seen, or why it failed (never a token or a secret).
    pub detail: String,
}

impl fmt::Display for Step {
    /// One line: status, name, latency, detail.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let latency = match self.status {
            Status::Skip => "-".to_owned(),
            Status::Pass | Status::Fail => human(self.latency),
        };
        write!(
            f,
            "{}  {:<42} {:>8}  {}",
            self.status.label(),
            self.name,
            latency,
            self.detail
        )
    }
}

/// Every step of one run, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The steps, in the order they ran.
    pub steps: Vec<Step>,
    /// The whole run, cleanup included.
    pub elapsed: Duration,
}

impl Report {
    /// Whether the run passed: at least one step passed and none failed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.count(Status::Fail) == 0 && self.count(Status::Pass) > 0
    }

    /// The step called `name`, if it was recorded.
    #[must_use]
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// How many steps ended with `status`.
    #[must_use]
    pub fn count(&self, status: Status) -> usize {
        self.steps.iter().filter(|s| s.status == status).count()
    }

    /// The failed steps.
    pub fn failures(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.status == Status::Fail)
    }

    /// The closing line, e.g. `PASS: 14 passed, 0 failed, 1 skipped in 3.2 s`.
    #[must_use]
    pub fn summary(&self) -> String {
        format!(
            "{}: {} passed, {} failed, {} skipped in {:.1} s",
            if self.passed() { "PASS" } else { "FAIL" },
            self.count(Status::Pass),
            self.count(Status::Fail),
            self.count(Status::Skip),
            self.elapsed.as_secs_f64()
        )
    }
}

/// `412 ms` or `12.3 s`.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(status: Status) -> Step {
        Step {
            name: "a step",
            status,
            latency: Duration::from_millis(42),
            detail: "seen".into(),
        }
    }

    #[test]
    fn a_report_passes_only_with_a_pass_and_no_failure() {
        let mut report = Report::default();
        assert!(!report.passed(), "an empty report proves nothing");
        report.steps.push(step(Status::Skip));
        assert!(!report.passed());
        report.steps.push(step(Status::Pass));
        assert!(report.passed());
        report.steps.push(step(Status::Fail));
        assert!(!report.passed());
        assert_eq!(report.failures().count(), 1);
        assert!(
            report
                .summary()
                .starts_with("FAIL: 1 passed, 1 failed, 1 skipped in ")
        );
    }

    #[test]
    fn a_step_prints_on_one_line_with_its_latency() {
        let line = step(Status::Pass).to_string();
        assert!(line.starts_with("PASS  a step "), "{line}");
        assert!(line.contains("42 ms  seen"), "{line}");
        assert!(!line.contains('\n'));
        assert!(step(Status::Skip).to_string().contains(" -  seen"));
        assert_eq!(human(Duration::from_millis(12_345)), "12.3 s");
    }
}
