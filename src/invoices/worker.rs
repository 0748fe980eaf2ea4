//! The background task that closes each month for every paying account once it has ended.
//!
//! Every server runs it; the database decides who writes each invoice ([`super::close`]),
//! so nothing here depends on which server runs or how many do. A period every account has
//! its invoice for is marked complete, so the task's usual work is one lookup per poll.

use std::time::Duration;

use super::{InvoiceError, Period, close, repo};
use crate::audit::Actor;
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;

/// How often the task looks for a period to close: one indexed lookup while there is
/// nothing to do, and invoices appear within a second of a month becoming closable.
pub const POLL_INTERVAL_MS: u64 = 1_000;

/// How long the task waits after a run that left accounts unclosed (each failure is
/// logged): retrying every poll would repeat the same errors every second.
const FAILED_RUN_RETRY_MS: u64 = 60_000;

/// The actor recorded for invoices the task closes.
const ACTOR: Actor = Actor::System("invoices");

/// Runs until `stop` turns true.
pub async fn run_worker(db: Db, clock: ClockHandle, mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        let wait_ms = match close_due(&db, &clock).await {
            Ok(true) => POLL_INTERVAL_MS,
            Ok(false) => FAILED_RUN_RETRY_MS,
            Err(error) => {
                tracing::warn!(error = %error, "Closing invoices failed: {error}");
                FAILED_RUN_RETRY_MS
            }
        };
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Closes every period that is due: those after the latest complete one, up to the last
/// month that has ended and settled (on a database without any, only that month: older
/// months are closed on request, with `steward admin close-invoices`). Stops at the first
/// period that could not be completed, so none is skipped. Returns whether all were.
pub async fn close_due(db: &Db, clock: &ClockHandle) -> Result<bool, InvoiceError> {
    let now_ms = to_epoch_ms(clock.now());
    let mut last = Period::containing_ms(now_ms).previous();
    if now_ms < close::closable_from_ms(last) {
        last = last.previous();
    }
    let latest = {
        let mut conn = db.read.acquire().await?;
        repo::latest_complete(&mut conn).await?
    };
    let mut period = latest.map_or(last, Period::next);
    while period <= last {
        let summary = close::close_all(db, clock, period, &ACTOR).await?;
        if summary.closed > 0 {
            tracing::info!(
                period = %period,
                closed = summary.closed,
                "Closed {period}: {} invoices",
                summary.closed
            );
        }
        if summary.failed > 0 {
            return Ok(false);
        }
        if period.next() == period {
            break;
        }
        period = period.next();
    }
    Ok(true)
}
