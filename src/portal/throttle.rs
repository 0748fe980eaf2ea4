//! Backing off failed sign-ins, per email and per client address, in the database.
//!
//! Unlike API keys (256 random bits), passwords can be guessed, so this protects accounts,
//! not just load: the counts live in the database, and every server applies the same
//! backoff. An email that fails [`EMAIL_FAILURES_PER_WINDOW_MAX`] times within
//! [`FAILURE_WINDOW_MS`] is refused for a backoff that starts at [`BACKOFF_INITIAL_MS`] and
//! doubles with each further backoff up to [`BACKOFF_MAX_MS`]; an address likewise after
//! [`ADDRESS_FAILURES_PER_WINDOW_MAX`] failures (one address may serve many people behind a
//! NAT, so it gets more). While a backoff lasts, the password is not even checked. Emails are
//! counted whether or not an account has them, and only by a digest of their unique key, so
//! the backoff says nothing about which emails exist and the table holds no address.

use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::accounts::Email;
use crate::accounts::listing::FILTER_LENGTH_MAX;
use crate::db::Db;

/// Wrong passwords one email may take within a window before it is backed off: enough for
/// a person who mistypes, far too few to guess a password.
pub const EMAIL_FAILURES_PER_WINDOW_MAX: i64 = 5;

/// Failed sign-ins one client address may make within a window (an office behind one NAT
/// has many people), before it is backed off.
pub const ADDRESS_FAILURES_PER_WINDOW_MAX: i64 = 30;

/// The window over which failures are counted.
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;

/// The first backoff.
pub const BACKOFF_INITIAL_MS: i64 = 60 * 1000;

/// The longest backoff: a subject that keeps failing is refused this long at a time.
pub const BACKOFF_MAX_MS: i64 = 30 * 60 * 1000;

/// After this long without a new backoff, a subject starts again from the first backoff;
/// rows idle this long are purged.
pub const BACKOFF_MEMORY_MS: i64 = 24 * 60 * 60 * 1000;

/// What a failure counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    key: String,
    failures_max: i64,
}

impl Subject {
    /// The email typed in (whatever it is), by a digest of its unique key.
    pub fn email(typed: &str) -> Self {
        let typed = typed.trim();
        let key = match Email::parse(typed) {
            Ok(email) => email.normalized(),
            // Not an address: no account has it, but it is counted all the same.
            Err(_) => typed
                .chars()
                .take(FILTER_LENGTH_MAX)
                .collect::<String>()
                .to_lowercase(),
        };
        let digest = super::sessions::hex(&Sha256::digest(key.as_bytes()));
        Self {
            key: format!("email:{digest}"),
            failures_max: EMAIL_FAILURES_PER_WINDOW_MAX,
        }
    }

    /// A client address (an IPv4 address or an IPv6 /64, as the caller groups them).
    pub fn address(client: &str) -> Self {
        Self {
            key: format!("address:{client}"),
            failures_max: ADDRESS_FAILURES_PER_WINDOW_MAX,
        }
    }
}

/// A subject's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Record {
    window_started_ms: i64,
    failures_in_window: i64,
    backoff_until_ms: i64,
    backoff_level: i64,
}

impl Record {
    /// The counters after one more failure at `now_ms`.
    fn after_failure(mut self, failures_max: i64, now_ms: i64) -> Self {
        if now_ms - self.window_started_ms >= FAILURE_WINDOW_MS {
            self.window_started_ms = now_ms;
            self.failures_in_window = 0;
        }
        self.failures_in_window += 1;
        if self.failures_in_window < failures_max {
            return self;
        }
        if now_ms - self.backoff_until_ms >= BACKOFF_MEMORY_MS {
            self.backoff_level = 0;
        }
        let shift = u32::try_from(self.backoff_level).unwrap_or(u32::MAX);
        let backoff_ms = BACKOFF_INITIAL_MS
            .checked_shl(shift)
            .filter(|ms| *ms > 0)
            .map_or(BACKOFF_MAX_MS, |ms| ms.min(BACKOFF_MAX_MS));
        self.backoff_level = (self.backoff_level + 1).min(16);
        self.backoff_until_ms = now_ms + backoff_ms;
        self.window_started_ms = now_ms;
        self.failures_in_window = 0;
        self
    }
}

/// How long until `subjects` may try again (the longest backoff among them), if any is
/// backed off at `now_ms`.
pub async fn backoff_remaining_ms(
    db: &Db,
    subjects: &[Subject],
    now_ms: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let mut conn = db.read.acquire().await?;
    let mut longest = None;
    for subject in subjects {
        let until: Option<i64> = sqlx::query_scalar(
            "SELECT backoff_until_ms FROM portal_sign_in_failures WHERE subject = $1",
        )
        .bind(&subject.key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(remaining) = until.map(|u| u - now_ms).filter(|ms| *ms > 0) {
            longest = Some(longest.map_or(remaining, |l: i64| l.max(remaining)));
        }
    }
    Ok(longest)
}

/// Counts a failed sign-in against every subject, each under its row lock (concurrent
/// failures on several servers each count).
pub async fn record_failure(db: &Db, subjects: &[Subject], now_ms: i64) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    for subject in subjects {
        sqlx::query(
            "INSERT INTO portal_sign_in_failures (subject, window_started_ms, failures_in_window, \
             backoff_until_ms, backoff_level, updated_at_ms) VALUES ($1, 0, 0, 0, 0, $2) \
             ON CONFLICT (subject) DO NOTHING",
        )
        .bind(&subject.key)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        // Takes the row lock before reading, so the read-modify-write is not lost.
        sqlx::query("UPDATE portal_sign_in_failures SET updated_at_ms = $1 WHERE subject = $2")
            .bind(now_ms)
            .bind(&subject.key)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "SELECT window_started_ms, failures_in_window, backoff_until_ms, backoff_level \
             FROM portal_sign_in_failures WHERE subject = $1",
        )
        .bind(&subject.key)
        .fetch_one(&mut *tx)
        .await?;
        let record = Record {
            window_started_ms: row.try_get(0)?,
            failures_in_window: row.try_get(1)?,
            backoff_until_ms: row.try_get(2)?,
            backoff_level: row.try_get(3)?,
        }
        .after_failure(subject.failures_max, now_ms);
        sqlx::query(
            "UPDATE portal_sign_in_failures SET window_started_ms = $1, failures_in_window = $2, \
             backoff_until_ms = $3, backoff_level = $4 WHERE subject = $5",
        )
        .bind(record.window_started_ms)
        .bind(record.failures_in_window)
        .bind(record.backoff_until_ms)
        .bind(record.backoff_level)
        .bind(&subject.key)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Forgets an email's failures after it signed in, and purges rows idle for a day.
pub async fn record_success(db: &Db, email: &Subject, now_ms: i64) -> Result<(), sqlx::Error> {
    let mut conn = db.write.acquire().await?;
    sqlx::query("DELETE FROM portal_sign_in_failures WHERE subject = $1 OR updated_at_ms < $2")
        .bind(&email.key)
        .bind(now_ms - BACKOFF_MEMORY_MS)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(mut record: Record, times: i64, now_ms: i64) -> Record {
        for _ in 0..times {
            record = record.after_failure(EMAIL_FAILURES_PER_WINDOW_MAX, now_ms);
        }
        record
    }

    #[test]
    fn backoffs_start_at_the_limit_and_double_up_to_the_maximum() {
        let start = Record {
            window_started_ms: i64::MIN / 2,
            backoff_until_ms: i64::MIN / 2,
            ..Record::default()
        };
        let record = fail(start, EMAIL_FAILURES_PER_WINDOW_MAX - 1, 0);
        assert_eq!(record.backoff_until_ms, i64::MIN / 2);
        let record = fail(record, 1, 0);
        assert_eq!(record.backoff_until_ms, BACKOFF_INITIAL_MS);
        let mut now = record.backoff_until_ms;
        let mut record = record;
        let mut lengths = Vec::new();
        for _ in 0..8 {
            record = fail(record, EMAIL_FAILURES_PER_WINDOW_MAX, now);
            lengths.push(record.backoff_until_ms - now);
            now = record.backoff_until_ms;
        }
        assert_eq!(lengths.first(), Some(&(2 * BACKOFF_INITIAL_MS)));
        assert_eq!(lengths.last(), Some(&BACKOFF_MAX_MS));
    }

    #[test]
    fn an_email_is_one_subject_whatever_its_case() {
        assert_eq!(
            Subject::email("Larry@Example.com "),
            Subject::email("larry@example.com")
        );
        assert_ne!(
            Subject::email("a@example.com"),
            Subject::email("b@example.com")
        );
        assert!(!Subject::email("larry@example.com").key.contains("larry"));
    }
}
