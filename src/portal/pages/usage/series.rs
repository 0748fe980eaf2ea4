//! Daily series for charts, and metrics written for people.

use crate::money::Money;
use crate::reports::{Cell, Metric, ReportRow};

/// Most days in one series: a report covers at most 31 days; two months' worth is a bound
/// that no range reaches.
const SERIES_DAYS_MAX: usize = 62;

/// The value of the row for `day` (`YYYY-MM-DD`) in rows of (date, metric).
pub fn value_on(rows: &[ReportRow], day: &str) -> i64 {
    rows.iter()
        .find(|row| matches!(row.first(), Some(Cell::Text(d)) if d == day))
        .and_then(|row| match row.get(1) {
            Some(Cell::Int(n) | Cell::Nanos(n)) => Some(*n),
            _ => None,
        })
        .unwrap_or(0)
}

/// `YYYY-MM-DD` of every UTC day from `from_ms` to before `until_ms`.
pub fn days_between(from_ms: i64, until_ms: i64) -> Vec<String> {
    let mut days = Vec::new();
    let mut day = crate::clock::from_epoch_ms(from_ms).date_naive();
    let last = crate::clock::from_epoch_ms(until_ms.saturating_sub(1)).date_naive();
    while day <= last && days.len() < SERIES_DAYS_MAX {
        days.push(day.format("%Y-%m-%d").to_string());
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    days
}

/// A metric's value for people: amounts in dollars, call seconds in minutes.
pub fn format_metric(metric: Metric, value: i64) -> String {
    match metric {
        Metric::Cost => format!("${}", Money::from_nanos(value).to_decimal_string(2)),
        Metric::CallSec | Metric::BilledSec => minutes(value),
        _ => value.to_string(),
    }
}

/// Seconds as minutes with one decimal.
pub fn minutes(seconds: i64) -> String {
    let tenths = seconds.saturating_mul(10).div_euclid(60);
    format!("{}.{} min", tenths.div_euclid(10), tenths.rem_euclid(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_cover_the_range_and_minutes_read_as_minutes() {
        let day_ms = 24 * 60 * 60 * 1000;
        let days = days_between(0, 3 * day_ms);
        assert_eq!(days, ["1970-01-01", "1970-01-02", "1970-01-03"]);
        assert_eq!(minutes(90), "1.5 min");
        assert_eq!(minutes(0), "0.0 min");
        assert_eq!(format_metric(Metric::Cost, 1_234_000_000), "$1.23");
    }
}
