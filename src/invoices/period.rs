//! Invoice periods: calendar months in UTC, written `YYYY-MM`.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// Earliest year a period may name: before any ledger could exist, and keeps every
/// instant well inside what an `i64` of milliseconds holds.
const YEAR_MIN: i32 = 2000;

/// Latest year a period may name.
const YEAR_MAX: i32 = 9999;

/// A calendar month in UTC. Fields are private: every period is a real month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    year: i32,
    month: u32,
}

impl Period {
    /// Parses `YYYY-MM` (a month from 2000 on).
    pub fn parse(text: &str) -> Option<Self> {
        let (year, month) = text.split_once('-')?;
        if year.len() != 4
            || month.len() != 2
            || !(year.bytes().chain(month.bytes())).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let year: i32 = year.parse().ok()?;
        let month: u32 = month.parse().ok()?;
        Self::new(year, month)
    }

    /// The month `year`-`month`, if it is one.
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((YEAR_MIN..=YEAR_MAX).contains(&year) && (1..=12).contains(&month))
            .then_some(Self { year, month })
    }

    /// The month holding `at`.
    pub fn containing(at: DateTime<Utc>) -> Self {
        Self {
            year: at.year().clamp(YEAR_MIN, YEAR_MAX),
            month: at.month(),
        }
    }

    /// The month holding the instant `ms`.
    pub fn containing_ms(ms: i64) -> Self {
        Self::containing(crate::clock::from_epoch_ms(ms))
    }

    /// The month before.
    pub fn previous(self) -> Self {
        match self.month {
            1 => Self {
                year: (self.year - 1).max(YEAR_MIN),
                month: if self.year > YEAR_MIN { 12 } else { 1 },
            },
            m => Self {
                year: self.year,
                month: m - 1,
            },
        }
    }

    /// The month after.
    pub fn next(self) -> Self {
        match self.month {
            12 if self.year < YEAR_MAX => Self {
                year: self.year + 1,
                month: 1,
            },
            12 => self,
            m => Self {
                year: self.year,
                month: m + 1,
            },
        }
    }

    /// Its first day.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default()
    }

    /// Its last day (Telnyx's `period_end` is inclusive).
    pub fn last_day(self) -> NaiveDate {
        self.next().first_day().pred_opt().unwrap_or_default()
    }

    /// Its first instant, ms since the epoch.
    pub fn start_ms(self) -> i64 {
        Utc.from_utc_datetime(&self.first_day().and_hms_opt(0, 0, 0).unwrap_or_default())
            .timestamp_millis()
    }

    /// The first instant after it, ms since the epoch.
    pub fn end_ms(self) -> i64 {
        if self.month == 12 && self.year == YEAR_MAX {
            return i64::MAX;
        }
        self.next().start_ms()
    }

    /// `January 2026`, for documents.
    pub fn long_name(self) -> String {
        self.first_day().format("%B %Y").to_string()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_print_as_months() {
        let p = Period::parse("2026-01").unwrap();
        assert_eq!(p.to_string(), "2026-01");
        assert_eq!(p.previous().to_string(), "2025-12");
        assert_eq!(p.next().to_string(), "2026-02");
        assert_eq!(p.last_day().to_string(), "2026-01-31");
        assert_eq!(
            Period::parse("2024-02").unwrap().last_day().to_string(),
            "2024-02-29"
        );
        assert_eq!(p.end_ms() - p.start_ms(), 31 * 24 * 3600 * 1000);
        assert_eq!(p.long_name(), "January 2026");
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-01",
            "2026/01",
            "1999-12",
            "x",
            "2026-01-01",
        ] {
            assert!(Period::parse(bad).is_none(), "{bad} parsed");
        }
    }

    #[test]
    fn an_instant_belongs_to_its_month() {
        let p = Period::parse("2026-03").unwrap();
        assert_eq!(Period::containing_ms(p.start_ms()), p);
        assert_eq!(Period::containing_ms(p.end_ms() - 1), p);
        assert_eq!(Period::containing_ms(p.end_ms()), p.next());
    }
}
