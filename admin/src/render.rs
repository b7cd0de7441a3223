//! Output as the AWS CLI and `kubectl` give it: a table of upper-case headers and columns
//! aligned with two spaces by default, JSON for scripts.

use chrono::{DateTime, SecondsFormat, Utc};
use marquee::domain::EpochSeconds;

/// What every command answers with: a table for people, JSON for scripts.
pub trait Output {
    /// The readable table (ends with a newline).
    fn table(&self) -> String;
    /// The same facts as JSON.
    fn json(&self) -> serde_json::Value;
}

/// Columns aligned with two spaces, `kubectl get` style; no trailing spaces.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers.
    #[must_use]
    pub fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row.
    #[must_use]
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                line.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `kubectl`'s ages: `45s`, `12m`, `3h7m`, `2d4h`.
#[must_use]
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => {
            let minutes = s % 3600 / 60;
            if minutes == 0 {
                format!("{}h", s / 3600)
            } else {
                format!("{}h{minutes}m", s / 3600)
            }
        }
        _ => {
            let hours = s % 86_400 / 3600;
            if hours == 0 {
                format!("{}d", s / 86_400)
            } else {
                format!("{}d{hours}h", s / 86_400)
            }
        }
    }
}

/// Epoch seconds as RFC 3339 (UTC, whole seconds).
#[must_use]
pub fn time(at: EpochSeconds) -> String {
    DateTime::<Utc>::from_timestamp(at, 0).map_or_else(
        || at.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_with_two_spaces_and_no_trailing_blanks() {
        let mut table = Table::new(&["ARTIST", "SUBSCRIBERS"]);
        table.row(vec!["Taylor Swift".into(), "3".into()]);
        table.row(vec!["Muse".into(), "12".into()]);
        assert_eq!(
            table.render(),
            "ARTIST        SUBSCRIBERS\nTaylor Swift  3\nMuse          12\n"
        );
    }

    #[test]
    fn ages_read_as_kubectl_writes_them() {
        let got: Vec<String> = [-5, 0, 59, 60, 3599, 3600, 3660, 7322, 86_400, 90_000]
            .into_iter()
            .map(age)
            .collect();
        assert_eq!(
            got,
            [
                "0s", "0s", "59s", "1m", "59m", "1h", "1h1m", "2h2m", "1d", "1d1h"
            ]
        );
    }

    #[test]
    fn times_are_rfc_3339_in_utc() {
        assert_eq!(time(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
