//! Payment checks of `steward admin verify-ledger`: every successful card payment has
//! exactly one `card_payment` entry moving its amount from `platform:card_payments` to the
//! account, every such entry belongs to one successful payment, and refunds likewise.

use sqlx::{AnyConnection, Row};

/// A broken payment invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentViolation {
    /// A successful payment whose entry is missing or moves another amount.
    #[error(
        "card payment {payment} succeeded but its journal entry is missing or does not credit its amount to the account"
    )]
    PaymentNotPosted {
        /// The attempt.
        payment: String,
    },
    /// A payment that did not succeed, yet has an entry.
    #[error("card payment {payment} did not succeed but has a journal entry")]
    UnsettledPaymentPosted {
        /// The attempt.
        payment: String,
    },
    /// A card payment or refund entry that no settled payment or refund accounts for.
    #[error("journal entry {entry} ({kind}) belongs to no successful card payment or refund")]
    OrphanEntry {
        /// The entry.
        entry: String,
        /// Its kind.
        kind: String,
    },
    /// A successful refund whose entry is missing or moves another amount, or refunds
    /// beyond the payment.
    #[error(
        "refund {refund} is not posted as one entry of its amount, or its payment is over-refunded"
    )]
    RefundMismatch {
        /// The refund.
        refund: String,
    },
}

/// What a clean check covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Card payments checked.
    pub payments: i64,
    /// Refunds checked.
    pub refunds: i64,
}

/// Checks every payment invariant on `conn` (verify-ledger passes the ledger checks'
/// snapshot, so both read one moment); `Ok(Err(violation))` names the first one that fails.
pub async fn verify(
    conn: &mut AnyConnection,
) -> Result<Result<VerifyReport, PaymentViolation>, sqlx::Error> {
    // SUM over BIGINT is NUMERIC on PostgreSQL: cast back for the Any driver.
    let not_posted = sqlx::query(
        "SELECT a.id FROM payment_attempts a WHERE a.status = 'succeeded' AND ( \
           a.entry_id IS NULL \
           OR NOT EXISTS (SELECT 1 FROM journal_entries e WHERE e.id = a.entry_id AND e.kind = 'card_payment') \
           OR (SELECT CAST(COALESCE(SUM(p.amount_nanos), 0) AS BIGINT) FROM postings p \
               WHERE p.entry_id = a.entry_id AND p.book = 'balance:' || a.account_id) <> a.amount_nanos \
           OR (SELECT CAST(COALESCE(SUM(p.amount_nanos), 0) AS BIGINT) FROM postings p \
               WHERE p.entry_id = a.entry_id AND p.book = 'platform:card_payments') <> -a.amount_nanos) \
         ORDER BY a.id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = not_posted {
        return Ok(Err(PaymentViolation::PaymentNotPosted {
            payment: row.try_get("id")?,
        }));
    }
    let unsettled = sqlx::query(
        "SELECT id FROM payment_attempts WHERE status <> 'succeeded' AND entry_id IS NOT NULL ORDER BY id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = unsettled {
        return Ok(Err(PaymentViolation::UnsettledPaymentPosted {
            payment: row.try_get("id")?,
        }));
    }
    let orphan = sqlx::query(
        // Anti-joins rather than `NOT IN`: PostgreSQL plans a `NOT IN` whose list outgrows
        // its work memory as a scan of the list per entry.
        "SELECT e.id, e.kind FROM journal_entries e WHERE \
           (e.kind = 'card_payment' AND NOT EXISTS ( \
             SELECT 1 FROM payment_attempts a WHERE a.status = 'succeeded' AND a.entry_id = e.id)) \
           OR (e.kind = 'card_refund' AND NOT EXISTS ( \
             SELECT 1 FROM payment_refunds r WHERE r.status = 'succeeded' AND r.entry_id = e.id)) \
         ORDER BY e.id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = orphan {
        return Ok(Err(PaymentViolation::OrphanEntry {
            entry: row.try_get("id")?,
            kind: row.try_get("kind")?,
        }));
    }
    let refund = sqlx::query(
        "SELECT r.id FROM payment_refunds r JOIN payment_attempts a ON a.id = r.attempt_id WHERE \
           (r.status = 'succeeded' AND (r.entry_id IS NULL \
             OR (SELECT CAST(COALESCE(SUM(p.amount_nanos), 0) AS BIGINT) FROM postings p \
                 WHERE p.entry_id = r.entry_id AND p.book = 'balance:' || a.account_id) <> -r.amount_nanos)) \
           OR (r.status <> 'succeeded' AND r.entry_id IS NOT NULL) \
           OR a.refunded_nanos > a.amount_nanos \
           OR a.refunded_nanos <> (SELECT CAST(COALESCE(SUM(s.amount_nanos), 0) AS BIGINT) FROM payment_refunds s \
                                   WHERE s.attempt_id = a.id AND s.status = 'succeeded') \
         ORDER BY r.id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = refund {
        return Ok(Err(PaymentViolation::RefundMismatch {
            refund: row.try_get("id")?,
        }));
    }
    let payments: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM payment_attempts WHERE status = 'succeeded'")
            .fetch_one(&mut *conn)
            .await?;
    let refunds: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payment_refunds")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Ok(VerifyReport { payments, refunds }))
}
