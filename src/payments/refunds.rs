//! Refunds of card payments (operator only): recorded before the gateway is called, posted
//! exactly once (`card_refund`: `balance:<account>` → `platform:card_payments`), never more
//! than what is left of the payment. A refund whose answer was lost is sent again with the
//! same key by the reconciler (the gateway refunds once per key).

use sqlx::Row;

use super::attempts::{self, AttemptStatus};
use super::gateway::{RefundOutcome, RefundRequest};
use super::{PaymentError, Payments};
use crate::accounts::{AccountId, AccountStatus};
use crate::audit::{self, Actor, Change};
use crate::ledger::{self, Book, Entry, EntryHeader, EntryKind};
use crate::money::Money;

/// Longest refund reason accepted.
pub const REASON_LENGTH_MAX: usize = 1000;

/// A refund as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refund {
    /// Refund id (also the gateway's idempotency key).
    pub id: String,
    /// The payment refunded.
    pub payment_id: String,
    /// The account debited.
    pub account_id: String,
    /// How much, dollars and cents.
    pub amount: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// Why.
    pub reason: String,
}

struct Pending {
    refund_id: String,
    attempt_id: String,
    charge_id: String,
    amount: Money,
}

impl Payments {
    /// Refunds `amount` (all that is left when `None`) of a successful card payment.
    #[tracing::instrument(name = "steward.payments.refund", skip_all, fields(payment.id = %payment_id))]
    pub async fn refund(
        &self,
        payment_id: &str,
        amount: Option<Money>,
        reason: &str,
        actor: &Actor,
    ) -> Result<Refund, PaymentError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > REASON_LENGTH_MAX {
            return Err(PaymentError::Invalid {
                field: "reason",
                message: format!("a reason of 1 to {REASON_LENGTH_MAX} characters is required"),
            });
        }
        let now_ms = self.now_ms();
        let mut tx = self.db.begin_write().await?;
        // Locks the payment: refunds of one payment are decided one at a time.
        sqlx::query("UPDATE payment_attempts SET refunded_nanos = refunded_nanos WHERE id = $1")
            .bind(payment_id)
            .execute(&mut *tx)
            .await?;
        let attempt = attempts::find(&mut tx, payment_id)
            .await?
            .filter(|a| a.status == AttemptStatus::Succeeded)
            .ok_or_else(|| {
                PaymentError::NotAllowed(format!(
                    "no successful card payment has the id '{payment_id}'"
                ))
            })?;
        let account = crate::accounts::repo::find(&mut tx, attempt.account_id)
            .await?
            .ok_or(PaymentError::AccountNotFound)?;
        if account.status == AccountStatus::Cancelled {
            return Err(PaymentError::Cancelled);
        }
        let left = left_to_refund(&mut tx, payment_id, attempt.amount).await?;
        let amount = amount.unwrap_or(left);
        if amount <= Money::ZERO || amount > left {
            return Err(PaymentError::Invalid {
                field: "amount",
                message: format!(
                    "the refund must be above 0.00 and at most what is left of the payment ({})",
                    left.to_decimal_string(2)
                ),
            });
        }
        let refund_id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO payment_refunds (id, attempt_id, amount_nanos, reason, status, created_by, created_at_ms) \
             VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
        )
        .bind(&refund_id)
        .bind(payment_id)
        .bind(amount.nanos())
        .bind(reason)
        .bind(actor.label())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let pending = Pending {
            refund_id: refund_id.clone(),
            attempt_id: payment_id.to_owned(),
            charge_id: attempt.gateway_charge_id.unwrap_or_default(),
            amount,
        };
        self.send_refund(&pending, actor).await?;
        self.find_refund(&refund_id).await
    }

    async fn send_refund(&self, pending: &Pending, actor: &Actor) -> Result<bool, PaymentError> {
        let request = RefundRequest {
            idempotency_key: pending.refund_id.clone(),
            charge_id: pending.charge_id.clone(),
            amount: pending.amount,
        };
        match self.call(self.gateway.refund(request)).await {
            Ok(outcome) => {
                self.settle_refund(pending, &outcome, actor).await?;
                Ok(true)
            }
            Err(error) => {
                tracing::warn!(refund.id = %pending.refund_id, error = %error, "Refund {} has no answer from the gateway; it stays pending: {error}", pending.refund_id);
                Ok(false)
            }
        }
    }

    async fn settle_refund(
        &self,
        pending: &Pending,
        outcome: &RefundOutcome,
        actor: &Actor,
    ) -> Result<(), PaymentError> {
        let now_ms = self.now_ms();
        let mut tx = self.db.begin_write().await?;
        // The payment first, then balances: the order a payment's settlement takes them in.
        sqlx::query("UPDATE payment_attempts SET refunded_nanos = refunded_nanos WHERE id = $1")
            .bind(&pending.attempt_id)
            .execute(&mut *tx)
            .await?;
        let (status, gateway_id) = match outcome {
            RefundOutcome::Succeeded { refund_id } => ("succeeded", Some(refund_id.as_str())),
            RefundOutcome::Refused(_) => ("failed", None),
        };
        let settled = sqlx::query(
            "UPDATE payment_refunds SET status = $1, gateway_refund_id = $2, settled_at_ms = $3 \
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(status)
        .bind(gateway_id)
        .bind(now_ms)
        .bind(&pending.refund_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if settled && gateway_id.is_some() {
            post_refund(&mut tx, pending, actor, now_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn find_refund(&self, id: &str) -> Result<Refund, PaymentError> {
        let row = sqlx::query(
            "SELECT r.id, r.attempt_id, a.account_id, r.amount_nanos, r.status, r.reason \
             FROM payment_refunds r JOIN payment_attempts a ON a.id = r.attempt_id WHERE r.id = $1",
        )
        .bind(id)
        .fetch_one(&self.db.read)
        .await?;
        Ok(Refund {
            id: row.try_get("id")?,
            payment_id: row.try_get("attempt_id")?,
            account_id: row.try_get("account_id")?,
            amount: Money::from_nanos(row.try_get("amount_nanos")?).to_decimal_string(2),
            status: row.try_get("status")?,
            reason: row.try_get("reason")?,
        })
    }

    /// Sends pending refunds again (same key: the gateway refunds once); returns how many
    /// were settled.
    pub(crate) async fn reconcile_refunds(&self, limit: u32) -> Result<u64, PaymentError> {
        let sql = format!(
            "SELECT r.id, r.attempt_id, a.gateway_charge_id, r.amount_nanos, r.created_by \
             FROM payment_refunds r JOIN payment_attempts a ON a.id = r.attempt_id \
             WHERE r.status = 'pending' ORDER BY r.created_at_ms LIMIT {limit}"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.db.read).await?;
        let mut settled = 0;
        for row in rows {
            let pending = Pending {
                refund_id: row.try_get("id")?,
                attempt_id: row.try_get("attempt_id")?,
                charge_id: row
                    .try_get::<Option<String>, _>("gateway_charge_id")?
                    .unwrap_or_default(),
                amount: Money::from_nanos(row.try_get("amount_nanos")?),
            };
            let label: String = row.try_get("created_by")?;
            if self.send_refund(&pending, &Actor::Operator(label)).await? {
                settled += 1;
            }
        }
        Ok(settled)
    }
}

/// What is left of a payment once its pending and successful refunds are taken off.
async fn left_to_refund(
    conn: &mut sqlx::AnyConnection,
    payment_id: &str,
    paid: Money,
) -> Result<Money, sqlx::Error> {
    // SUM over BIGINT is NUMERIC on PostgreSQL: cast back for the Any driver.
    let committed: i64 = sqlx::query_scalar(
        "SELECT COALESCE(CAST(SUM(amount_nanos) AS BIGINT), 0) FROM payment_refunds \
         WHERE attempt_id = $1 AND status IN ('pending', 'succeeded')",
    )
    .bind(payment_id)
    .fetch_one(conn)
    .await?;
    Ok(Money::from_nanos(paid.nanos().saturating_sub(committed)))
}

/// Posts a successful refund's one entry, counts it on its payment and audits it.
async fn post_refund(
    conn: &mut sqlx::AnyConnection,
    pending: &Pending,
    actor: &Actor,
    now_ms: i64,
) -> Result<(), PaymentError> {
    let account_text: String =
        sqlx::query_scalar("SELECT account_id FROM payment_attempts WHERE id = $1")
            .bind(&pending.attempt_id)
            .fetch_one(&mut *conn)
            .await?;
    let account = AccountId::parse(&account_text)
        .ok_or_else(|| anyhow::anyhow!("bad account id {account_text}"))?;
    let entry_id = uuid::Uuid::now_v7().to_string();
    let header = EntryHeader {
        id: entry_id.clone(),
        kind: EntryKind::CardRefund,
        account: Some(account),
        reason: Some(format!(
            "refund {} of card payment {}",
            pending.refund_id, pending.attempt_id
        )),
        created_by: actor.label(),
    };
    let entry = Entry::transfer(
        header,
        Book::Balance(account),
        Book::PlatformCardPayments,
        pending.amount,
    )
    .map_err(|e| anyhow::anyhow!("card refund entry: {e}"))?;
    ledger::repo::post_in_tx(conn, &entry, now_ms).await?;
    sqlx::query("UPDATE payment_refunds SET entry_id = $1 WHERE id = $2")
        .bind(&entry_id)
        .bind(&pending.refund_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE payment_attempts SET refunded_nanos = refunded_nanos + $1 WHERE id = $2")
        .bind(pending.amount.nanos())
        .bind(&pending.attempt_id)
        .execute(&mut *conn)
        .await?;
    let event = audit::Event {
        account: Some(account),
        change_type: "stored_payment_transaction.refund",
        resource_id: pending.attempt_id.clone(),
        changes: vec![Change::new(
            "refunded",
            serde_json::Value::Null,
            pending.amount.to_decimal_string(2),
        )],
    };
    audit::record(conn, actor, &event, now_ms).await?;
    Ok(())
}
