//! Time as a dependency: production reads the system clock, tests pin it.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

/// A source of the current time, shared by every service.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// A cheap, cloneable handle to the clock in use.
pub type ClockHandle = Arc<dyn Clock>;

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place that reads the wall clock"
    )]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward by `delta`.
    pub fn advance(&self, delta: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += delta;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Milliseconds since the Unix epoch: how instants are stored in the database.
pub fn to_epoch_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// The inverse of [`to_epoch_ms`]; out-of-range values clamp to the epoch rather than panic.
pub fn from_epoch_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Milliseconds in a UTC day (UTC days have no leap seconds in epoch time).
pub const DAY_MS: i64 = 86_400_000;

/// The first instant of the UTC day holding `at_ms`.
pub fn day_start(at_ms: i64) -> i64 {
    at_ms.div_euclid(DAY_MS) * DAY_MS
}

/// The first instant of the UTC calendar month holding `at_ms`.
pub fn month_start(at_ms: i64) -> i64 {
    use chrono::Datelike;
    let day = from_epoch_ms(at_ms).date_naive();
    day.with_day(1)
        .and_then(|first| first.and_hms_opt(0, 0, 0))
        .map_or(at_ms, |first| first.and_utc().timestamp_millis())
}

/// The first instant of the UTC calendar month after the one holding `at_ms`.
pub fn next_month_start(at_ms: i64) -> i64 {
    let start = from_epoch_ms(month_start(at_ms));
    start
        .checked_add_months(chrono::Months::new(1))
        .map_or(at_ms, |next| next.timestamp_millis())
}

/// ISO 8601 in UTC with milliseconds and a `Z`, as the Telnyx API writes timestamps.
pub fn to_wire(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
