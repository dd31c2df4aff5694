//! The one markdown table `bench/run` prints: metric | goal | measured | met?

use std::fmt::Write;
use std::time::Duration;

/// Whether a measurement meets its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Measured and within the goal.
    Met,
    /// Measured and outside the goal.
    Missed,
    /// Measured; there is no goal (context for another row).
    NoGoal,
    /// Could not be measured in this run.
    NotMeasured,
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    metric: String,
    goal: String,
    measured: String,
    verdict: Verdict,
}

impl Row {
    /// A measurement with a goal.
    pub fn goal(metric: impl Into<String>, goal: &str, measured: String, met: bool) -> Row {
        Row {
            metric: metric.into(),
            goal: goal.to_string(),
            measured,
            verdict: if met { Verdict::Met } else { Verdict::Missed },
        }
    }

    /// A measurement given for context, without a goal.
    pub fn info(metric: impl Into<String>, measured: String) -> Row {
        Row {
            metric: metric.into(),
            goal: "—".to_string(),
            measured,
            verdict: Verdict::NoGoal,
        }
    }

    /// A metric this run could not measure, and why.
    pub fn not_measured(metric: impl Into<String>, goal: &str, why: &str) -> Row {
        Row {
            metric: metric.into(),
            goal: goal.to_string(),
            measured: format!("not measured: {why}"),
            verdict: Verdict::NotMeasured,
        }
    }

    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }
}

/// The rows as a markdown table.
pub fn render(rows: &[Row]) -> String {
    let mut table = String::from("| metric | goal | measured | met? |\n|---|---|---|---|\n");
    for row in rows {
        let met = match row.verdict {
            Verdict::Met => "yes",
            Verdict::Missed => "**no**",
            Verdict::NoGoal => "—",
            Verdict::NotMeasured => "?",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            table,
            "| {} | {} | {} | {met} |",
            cell(&row.metric),
            cell(&row.goal),
            cell(&row.measured)
        );
    }
    table
}

/// A cell's text with the characters that would break a markdown table row escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Milliseconds with two decimals.
pub fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

/// Microseconds with two decimals, from nanoseconds.
pub fn us(nanos: f64) -> String {
    format!("{:.2} µs", nanos / 1e3)
}

/// Decimal megabytes (10⁶ bytes) with two decimals.
pub fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// A count with thousands separators, e.g. `100,000`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_line_per_row_and_escapes_pipes() {
        let rows = [
            Row::goal("p99", "< 5 ms", "1.00 ms".into(), true),
            Row::goal("size", "< 8 MB", "9 MB".into(), false),
            Row::info("a|b", "x".into()),
            Row::not_measured("arm64", "< 8 MB", "no cargo-lambda"),
        ];
        let table = render(&rows);
        assert_eq!(
            table,
            "| metric | goal | measured | met? |\n|---|---|---|---|\n\
             | p99 | < 5 ms | 1.00 ms | yes |\n\
             | size | < 8 MB | 9 MB | **no** |\n\
             | a\\|b | — | x | — |\n\
             | arm64 | < 8 MB | not measured: no cargo-lambda | ? |\n"
        );
    }

    #[test]
    fn units_are_formatted_for_reading() {
        assert_eq!(ms(Duration::from_micros(1234)), "1.23 ms");
        assert_eq!(us(35_210.0), "35.21 µs");
        assert_eq!(mb(12_345_678), "12.35 MB");
        assert_eq!(count(100_000), "100,000");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(0), "0");
    }
}
