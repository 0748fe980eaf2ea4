//! Payments' background work on a cadence: reconcile pending attempts and refunds, then run
//! due auto-recharges. Each round is [`run_once`], which the operator's CLI runs too; the
//! loop only decides when. Every server runs it: the work is arbitrated by the database.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::auto_recharge::{self, AutoRechargeReport};
use super::{PaymentError, Payments, ReconcileReport};

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoundReport {
    /// Reconciliation.
    pub reconcile: ReconcileReport,
    /// Auto-recharge.
    pub auto_recharge: AutoRechargeReport,
}

/// One round of background work.
pub async fn run_once(payments: &Payments) -> Result<RoundReport, PaymentError> {
    let reconcile = payments.reconcile_once().await?;
    let auto_recharge = auto_recharge::process_once(payments).await?;
    Ok(RoundReport {
        reconcile,
        auto_recharge,
    })
}

/// Starts the loop (unless the configured interval is 0); it stops when `stop` turns true,
/// after finishing the round in progress.
pub fn spawn(payments: Payments, mut stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let interval_ms = payments.config().tasks_interval_ms;
    if interval_ms == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(interval_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if let Err(error) = run_once(&payments).await {
                        let error = anyhow::Error::new(error);
                        tracing::error!(error = %format!("{error:#}"), "Payments background round failed: {error:#}");
                    }
                }
                // A change is the stop signal; so is a dropped sender.
                _ = stop.changed() => break,
            }
        }
    }))
}

/// Waits for the loop started by [`spawn`] to finish its round and stop.
pub async fn join(handle: Option<JoinHandle<()>>) {
    if let Some(handle) = handle {
        // A panic in a round is no reason to skip the rest of the shutdown.
        let _ = handle.await;
    }
}
