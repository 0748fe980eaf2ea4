//! Auto-recharge: when a usage charge leaves a balance at or below the account's threshold,
//! its default card is charged (threshold − balance) + recharge amount.
//!
//! Never inside the usage transaction: that transaction only stages a trigger (the outbox,
//! at most one per account, one statement per batch: [`stage_triggers`]), so a crash cannot
//! lose it and usage never waits on a card processor. [`process_once`] turns due triggers
//! into top-ups through the same admission as any top-up (carding rules apply), at most one
//! attempt in flight per account (the trigger holds it). A failure backs off, doubling; after
//! `auto_recharge_failures_max` failures in a row the preference is disabled, audited.

use sqlx::AnyConnection;

use super::attempts::AttemptStatus;
use super::topup::{Admission, Admitted, request_digest};
use super::{PaymentError, Payments, settings};
use crate::accounts::AccountId;
use crate::audit::{self, Actor, Change};
use crate::ledger::{self, Book};
use crate::money::Money;
mod prefs;

use prefs::find_pref;
pub use prefs::{AutoRechargePref, PREFERENCE_CARD, PrefUpdate};

/// Triggers handled in one run: bounds the time one run holds the task.
const PROCESS_BATCH_MAX: u32 = 100;

/// Longest wait between two auto-recharge tries, however many failures came before.
const BACKOFF_MS_MAX: i64 = 24 * 3600 * 1000;

/// Who auto-recharge acts as.
static ACTOR: Actor = Actor::System("auto_recharge");
/// Stages a trigger for every payer in `payers` whose enabled preference's threshold its
/// balance is now at or below — one statement, in the usage transaction that just charged
/// them (with no preference enabled it reads one empty index range and writes nothing). An
/// account with a trigger already pending gets no second one.
pub async fn stage_triggers(
    conn: &mut AnyConnection,
    payers: impl IntoIterator<Item = AccountId>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let payers: std::collections::BTreeSet<AccountId> = payers.into_iter().collect();
    if payers.is_empty() {
        return Ok(());
    }
    let rows: Vec<[String; 1]> = payers.iter().map(|p| [p.to_string()]).collect();
    let ids = serde_json::to_string(&rows)
        .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode payers: {e}")))?;
    let payer_rows = crate::db::json_rows_select(conn, 1, &[crate::db::JsonColumn::Text]);
    let sql = format!(
        "INSERT INTO auto_recharge_triggers (account_id, created_at_ms, next_attempt_at_ms, failures) \
         SELECT p.account_id, $2, $2, 0 FROM auto_recharge_prefs p \
         JOIN book_balances b ON b.book = 'balance:' || p.account_id \
         WHERE p.enabled = 1 AND b.balance_nanos <= p.threshold_nanos \
         AND p.account_id IN ({payer_rows}) \
         ON CONFLICT (account_id) DO NOTHING"
    );
    sqlx::query(&sql)
        .bind(ids)
        .bind(now_ms)
        .execute(conn)
        .await?;
    Ok(())
}

/// What one run of [`process_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AutoRechargeReport {
    /// Recharges that succeeded.
    pub recharged: u64,
    /// Recharges waiting on the gateway's answer.
    pub waiting: u64,
    /// Recharges that failed and will be tried again later.
    pub failed: u64,
    /// Preferences disabled after too many failures.
    pub disabled: u64,
    /// Triggers dropped (preference off, or balance already above the threshold).
    pub dropped: u64,
}

enum Handled {
    Recharged,
    Waiting,
    Failed,
    Disabled,
    Dropped,
    Skipped,
}

/// Handles the due triggers: starts their recharge, or settles the one in flight.
#[tracing::instrument(name = "steward.payments.auto_recharge", skip_all)]
pub async fn process_once(payments: &Payments) -> Result<AutoRechargeReport, PaymentError> {
    let now_ms = payments.now_ms();
    let sql = format!(
        "SELECT account_id FROM auto_recharge_triggers WHERE next_attempt_at_ms <= $1 \
         ORDER BY next_attempt_at_ms, account_id LIMIT {PROCESS_BATCH_MAX}"
    );
    let due: Vec<String> = sqlx::query_scalar(&sql)
        .bind(now_ms)
        .fetch_all(&payments.db.read)
        .await?;
    let mut report = AutoRechargeReport::default();
    for account in due.iter().filter_map(|a| AccountId::parse(a)) {
        match payments.process_trigger(account).await? {
            Handled::Recharged => report.recharged += 1,
            Handled::Waiting => report.waiting += 1,
            Handled::Failed => report.failed += 1,
            Handled::Disabled => report.disabled += 1,
            Handled::Dropped => report.dropped += 1,
            Handled::Skipped => {}
        }
    }
    Ok(report)
}

impl Payments {
    async fn process_trigger(&self, account: AccountId) -> Result<Handled, PaymentError> {
        let linked: Option<Option<String>> = sqlx::query_scalar(
            "SELECT attempt_id FROM auto_recharge_triggers WHERE account_id = $1",
        )
        .bind(account.to_string())
        .fetch_optional(&self.db.read)
        .await?;
        match linked {
            None => Ok(Handled::Skipped),
            Some(Some(attempt_id)) => self.follow_up(account, &attempt_id).await,
            Some(None) => self.start_recharge(account).await,
        }
    }

    /// The trigger's attempt, brought up to date, decides what happens to the trigger.
    async fn follow_up(
        &self,
        account: AccountId,
        attempt_id: &str,
    ) -> Result<Handled, PaymentError> {
        let attempt = self.reconcile_attempt(attempt_id).await?;
        match attempt.status {
            AttemptStatus::Pending => Ok(Handled::Waiting),
            AttemptStatus::Succeeded => {
                // Whoever deletes the trigger reports the recharge (once).
                let finished = sqlx::query(
                    "DELETE FROM auto_recharge_triggers WHERE account_id = $1 AND attempt_id = $2",
                )
                .bind(account.to_string())
                .bind(attempt_id)
                .execute(&self.db.write)
                .await?
                .rows_affected()
                    == 1;
                Ok(if finished {
                    Handled::Recharged
                } else {
                    Handled::Skipped
                })
            }
            AttemptStatus::Declined | AttemptStatus::Failed => {
                let reason = match attempt.decline_code {
                    Some(code) => format!("declined ({code})"),
                    None => "the payment processor failed".to_owned(),
                };
                let mut tx = self.db.begin_write().await?;
                let claimed = sqlx::query(
                    "UPDATE auto_recharge_triggers SET attempt_id = NULL WHERE account_id = $1 AND attempt_id = $2",
                )
                .bind(account.to_string())
                .bind(attempt_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !claimed {
                    return Ok(Handled::Skipped);
                }
                let handled = self.record_failure(&mut tx, account, &reason).await?;
                tx.commit().await?;
                Ok(handled)
            }
        }
    }

    /// Claims a due trigger without an attempt and makes its attempt.
    async fn start_recharge(&self, account: AccountId) -> Result<Handled, PaymentError> {
        let now_ms = self.now_ms();
        let mut tx = self.db.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE auto_recharge_triggers SET next_attempt_at_ms = next_attempt_at_ms \
             WHERE account_id = $1 AND attempt_id IS NULL AND next_attempt_at_ms <= $2",
        )
        .bind(account.to_string())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            return Ok(Handled::Skipped);
        }
        let pref = find_pref(&mut tx, account).await?;
        let balance = ledger::repo::book_balance(&mut tx, Book::Balance(account)).await?;
        if !pref.enabled || balance > pref.threshold {
            drop_trigger(&mut tx, account).await?;
            tx.commit().await?;
            return Ok(Handled::Dropped);
        }
        let settings = settings::load(&mut tx).await?;
        let amount = recharge_amount(
            &pref,
            balance,
            settings.topup_amount_min,
            settings.topup_amount_max,
        );
        let digest = request_digest(amount, None);
        let admission = Admission {
            account,
            amount,
            payment_method_id: None,
            idempotency_key: None,
            request_sha256: &digest,
            auto_recharge: true,
            actor: &ACTOR,
        };
        let admitted = match self.admit_in_tx(&mut tx, &admission).await {
            Ok(admitted) => admitted,
            Err(PaymentError::Database(e)) => return Err(e.into()),
            Err(refused) => {
                let handled = self
                    .record_failure(&mut tx, account, &refused.to_string())
                    .await?;
                tx.commit().await?;
                return Ok(handled);
            }
        };
        let (attempt_id, token, amount) = match admitted {
            Admitted::Charge {
                attempt_id,
                token,
                amount,
            } => (attempt_id, token, amount),
            Admitted::Refused(refusal) => {
                let handled = self
                    .record_failure(&mut tx, account, &refusal.detail)
                    .await?;
                tx.commit().await?;
                return Ok(handled);
            }
            Admitted::KeyTaken => return Ok(Handled::Skipped),
        };
        sqlx::query("UPDATE auto_recharge_triggers SET attempt_id = $1 WHERE account_id = $2")
            .bind(&attempt_id)
            .bind(account.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(account.id = %account, payment.id = %attempt_id, "Auto-recharging account {account} by {}", amount.to_decimal_string(2));
        self.charge(&attempt_id, token, amount).await?;
        self.follow_up(account, &attempt_id).await
    }

    /// One more failure of the trigger: back off, or after too many disable the preference.
    async fn record_failure(
        &self,
        conn: &mut AnyConnection,
        account: AccountId,
        reason: &str,
    ) -> Result<Handled, PaymentError> {
        let now_ms = self.now_ms();
        let settings = settings::load(conn).await?;
        let failures: i64 =
            sqlx::query_scalar("SELECT failures FROM auto_recharge_triggers WHERE account_id = $1")
                .bind(account.to_string())
                .fetch_one(&mut *conn)
                .await?;
        let failures = failures.saturating_add(1);
        tracing::warn!(account.id = %account, failures, "Auto-recharge of account {account} failed ({failures} in a row): {reason}");
        if failures < settings.auto_recharge_failures_max {
            let exponent = u32::try_from(failures - 1).unwrap_or(u32::MAX).min(30);
            let wait_ms = settings
                .auto_recharge_backoff_ms
                .saturating_mul(1_i64 << exponent)
                .min(BACKOFF_MS_MAX);
            sqlx::query(
                "UPDATE auto_recharge_triggers SET failures = $1, attempt_id = NULL, next_attempt_at_ms = $2 \
                 WHERE account_id = $3",
            )
            .bind(failures)
            .bind(now_ms.saturating_add(wait_ms))
            .bind(account.to_string())
            .execute(&mut *conn)
            .await?;
            return Ok(Handled::Failed);
        }
        drop_trigger(conn, account).await?;
        sqlx::query(
            "UPDATE auto_recharge_prefs SET enabled = 0, updated_at_ms = $1 WHERE account_id = $2",
        )
        .bind(now_ms)
        .bind(account.to_string())
        .execute(&mut *conn)
        .await?;
        let event = audit::Event {
            account: Some(account),
            change_type: "auto_recharge_pref.disable",
            resource_id: account.to_string(),
            changes: vec![
                Change::new("enabled", true, false),
                Change::new(
                    "reason",
                    serde_json::Value::Null,
                    format!("{failures} failed recharges in a row; the last: {reason}"),
                ),
            ],
        };
        audit::record(conn, &ACTOR, &event, now_ms).await?;
        tracing::warn!(account.id = %account, "Auto-recharge of account {account} disabled after {failures} failures");
        Ok(Handled::Disabled)
    }
}

async fn drop_trigger(conn: &mut AnyConnection, account: AccountId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM auto_recharge_triggers WHERE account_id = $1")
        .bind(account.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// (threshold − balance) + recharge amount, within the top-up bounds.
fn recharge_amount(pref: &AutoRechargePref, balance: Money, min: Money, max: Money) -> Money {
    let gap = i128::from(pref.threshold.nanos()) - i128::from(balance.nanos());
    let wanted = gap.max(0) + i128::from(pref.recharge.nanos());
    let capped = wanted.clamp(i128::from(min.nanos()), i128::from(max.nanos()));
    Money::from_nanos(i64::try_from(capped).unwrap_or(max.nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recharge_restores_the_threshold_and_adds_the_amount_within_bounds() {
        let units = |n: i64| Money::from_nanos(n * 1_000_000_000);
        let pref = AutoRechargePref {
            account_id: AccountId::generate(),
            enabled: true,
            threshold: units(10),
            recharge: units(50),
            preference: PREFERENCE_CARD.to_owned(),
            invoice_enabled: false,
        };
        let (min, max) = (units(10), units(100));
        assert_eq!(recharge_amount(&pref, units(4), min, max), units(56));
        assert_eq!(recharge_amount(&pref, units(-500), min, max), units(100));
        assert_eq!(recharge_amount(&pref, units(10), min, max), units(50));
    }
}
