//! One-time data upgrades that SQL migrations cannot do (they need Rust: IDNA mapping of
//! email domains, libphonenumber classification of destinations). Each runs once per
//! database, claimed in `maintenance_runs`, before a process serves or runs a verb.

use anyhow::Context;

use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;

/// Runs every upgrade not yet run on this database.
pub async fn run(db: &Db, clock: &ClockHandle) -> anyhow::Result<()> {
    crate::accounts::upgrade_stored_emails(db, clock).await?;
    let mut tx = db.begin_write().await?;
    // The rollups are rebuilt with no day closing beside it.
    crate::usage::rollups::hold_closed_days(&mut tx, true).await?;
    let classified =
        crate::usage::rollups::upgrade_stored_records(&mut tx, to_epoch_ms(clock.now()))
            .await
            .context("Failed to classify stored usage and build its rollups")?;
    crate::usage::rollups::upgrade_monthly_rollups(&mut tx, to_epoch_ms(clock.now()))
        .await
        .context("Failed to build the monthly usage rollups")?;
    tx.commit().await?;
    if classified > 0 {
        tracing::info!(
            records = classified,
            "Classified the destinations of {classified} stored usage records and built their rollups"
        );
    }
    Ok(())
}
