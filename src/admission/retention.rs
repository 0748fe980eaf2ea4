//! Ended leases are kept a while, then deleted.
//!
//! Every admitted call leaves a lease row behind; kept for good, they would make the lease
//! table grow with every call ever made (at 10,000 admissions a second, nearly a billion
//! rows a day). An ended lease matters only while the call's usage may still name it (its
//! event then finds it ended rather than unknown; either way the usage is charged), so
//! leases that ended more than [`LEASE_RETENTION_MS`] ago are deleted. Each server sweeps
//! every [`SWEEP_INTERVAL_MS`]; sweeps of several servers on one database only repeat each
//! other's work.

use std::time::Duration;

use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;

/// How long an ended lease (released or expired) is kept: longer than usage arrives late.
pub const LEASE_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// How often a server sweeps.
const SWEEP_INTERVAL_MS: u64 = 10 * 60 * 1000;

/// Leases deleted per statement: a short transaction each, so ingestion is not held up.
const SWEEP_CHUNK_LEASES: i64 = 10_000;

/// Deletes the leases that ended more than [`LEASE_RETENTION_MS`] before now; returns how
/// many. Lease ids sort by the time they were granted (see `lease_id`), so the old ones are
/// a range of the primary key; a lease granted that long ago but still live (a long call
/// renewing it) is left alone.
pub async fn sweep_ended_leases(db: &Db, clock: &ClockHandle) -> Result<u64, sqlx::Error> {
    let cutoff_ms = to_epoch_ms(clock.now()).saturating_sub(LEASE_RETENTION_MS);
    let granted_before = super::lease_id_floor(cutoff_ms);
    let mut deleted = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM channel_leases WHERE id IN (SELECT id FROM channel_leases \
             WHERE id < $1 AND COALESCE(released_at_ms, expires_at_ms) < $2 ORDER BY id LIMIT $3)",
        )
        .bind(&granted_before)
        .bind(cutoff_ms)
        .bind(SWEEP_CHUNK_LEASES)
        .execute(&db.write)
        .await?
        .rows_affected();
        deleted += done;
        if done < SWEEP_CHUNK_LEASES.unsigned_abs() {
            return Ok(deleted);
        }
    }
}

/// Sweeps every [`SWEEP_INTERVAL_MS`] until `stop`.
pub async fn run_sweeper(db: Db, clock: ClockHandle, mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        match sweep_ended_leases(&db, &clock).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(deleted, "Deleted {deleted} leases ended over a week ago")
            }
            Err(error) => tracing::warn!(error = %error, "Sweeping ended leases failed: {error}"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(SWEEP_INTERVAL_MS)) => {}
            _ = stop.changed() => {}
        }
    }
}
