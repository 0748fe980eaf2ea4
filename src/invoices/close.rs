//! Closing a period: one account's invoice in one transaction, or every paying account's.
//!
//! The statement is derived on a read connection (a period that has ended and settled no
//! longer changes), then one short write transaction takes the next number (which locks
//! the counter, so closers queue there), checks again that no other closer got there
//! first, renders the PDF, writes the invoice and records the closing on the account's
//! audit trail. A duplicate that slips past the check still hits the unique key on
//! (account, period) and rolls back, number included: no duplicate, no gap.

use rand::seq::SliceRandom;
use sha2::{Digest, Sha256};

use super::{Invoice, InvoiceError, Period, pdf, repo, statement};
use crate::accounts::{self, AccountId, AccountKind};
use crate::audit::{self, Actor, Change};
use crate::clock::{ClockHandle, to_epoch_ms, to_wire};
use crate::db::{Db, is_unique_violation};

/// How long after a month ends it may be closed. Entries are stamped with the instant
/// their transaction started posting; a request that posts runs at most 30 s (the request
/// time limit) and background postings are shorter, so five minutes after the month ends
/// nothing stamped inside it can still be uncommitted.
pub const SETTLE_MS: i64 = 5 * 60 * 1000;

/// The first instant `period` may be closed at.
pub fn closable_from_ms(period: Period) -> i64 {
    period.end_ms().saturating_add(SETTLE_MS)
}

/// The outcome of closing one account's period.
#[derive(Debug, Clone)]
pub struct Closed {
    /// The invoice (the one that already existed, if it did).
    pub invoice: Invoice,
    /// Whether this call wrote it.
    pub created: bool,
}

/// The outcome of closing a period for every paying account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunSummary {
    /// Invoices written by this run.
    pub closed: u64,
    /// Accounts that already had their invoice (closed by another server meanwhile).
    pub already_closed: u64,
    /// Accounts that could not be closed (logged); the period stays open for them.
    pub failed: u64,
}

fn ensure_ended(clock: &ClockHandle, period: Period) -> Result<(), InvoiceError> {
    if to_epoch_ms(clock.now()) < closable_from_ms(period) {
        return Err(InvoiceError::NotEnded {
            period,
            closable_from: to_wire(crate::clock::from_epoch_ms(closable_from_ms(period))),
        });
    }
    Ok(())
}

/// Closes `period` for `account`: writes its invoice, or answers the one already written.
/// A period not yet ended (and settled) is refused, and so is a rollup-billing account.
#[tracing::instrument(name = "steward.invoices.close_period", skip_all,
    fields(account.id = %account, period = %period))]
pub async fn close_period(
    db: &Db,
    clock: &ClockHandle,
    period: Period,
    account: AccountId,
    actor: &Actor,
) -> Result<Closed, InvoiceError> {
    ensure_ended(clock, period)?;
    let (payer, statement) = {
        let mut conn = db.read.acquire().await?;
        if let Some(invoice) = repo::find_by_period(&mut conn, account, period).await? {
            return Ok(Closed {
                invoice,
                created: false,
            });
        }
        let payer = accounts::repo::find(&mut conn, account)
            .await?
            .ok_or(InvoiceError::NotFound("account"))?;
        if payer.kind == AccountKind::Managed && payer.rollup_billing {
            return Err(InvoiceError::RollupBilled);
        }
        let statement = statement::derive(&mut conn, &payer, period).await?;
        (payer, statement)
    };
    let mut tx = db.begin_write().await?;
    let number = repo::take_number(&mut tx).await?;
    if let Some(invoice) = repo::find_by_period(&mut tx, account, period).await? {
        tx.rollback().await?;
        return Ok(Closed {
            invoice,
            created: false,
        });
    }
    let invoice = Invoice {
        id: uuid::Uuid::now_v7().to_string(),
        number,
        file_id: uuid::Uuid::now_v7().to_string(),
        platform_name: crate::platform::name(&mut tx).await?,
        closed_by: actor.label(),
        created_at_ms: to_epoch_ms(clock.now()),
        statement,
    };
    let document = {
        let invoice = invoice.clone();
        tokio::task::spawn_blocking(move || pdf::render(&invoice))
            .await
            .map_err(|e| InvoiceError::Render(e.to_string()))??
    };
    let digest: String = Sha256::digest(&document)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if let Err(error) = repo::insert(&mut tx, &invoice, &document, &digest).await {
        tx.rollback().await?;
        if is_unique_violation(&error, "account") || is_unique_violation(&error, "period") {
            let mut conn = db.read.acquire().await?;
            if let Some(invoice) = repo::find_by_period(&mut conn, account, period).await? {
                return Ok(Closed {
                    invoice,
                    created: false,
                });
            }
        }
        return Err(error.into());
    }
    record_closing(&mut tx, actor, &invoice).await?;
    tx.commit().await?;
    tracing::info!(account.id = %payer.id, invoice.number = invoice.number,
        "Closed {period} for account {}: invoice {}", payer.id, super::invoice_number_text(invoice.number));
    Ok(Closed {
        invoice,
        created: true,
    })
}

async fn record_closing(
    conn: &mut sqlx::AnyConnection,
    actor: &Actor,
    invoice: &Invoice,
) -> Result<(), sqlx::Error> {
    let statement = &invoice.statement;
    let event = audit::Event {
        account: Some(statement.payer.id),
        change_type: "invoice.close",
        resource_id: invoice.id.clone(),
        changes: vec![
            Change::new(
                "invoice_number",
                serde_json::Value::Null,
                super::invoice_number_text(invoice.number),
            ),
            Change::new(
                "period",
                serde_json::Value::Null,
                statement.period.to_string(),
            ),
            Change::new(
                "amount_due",
                serde_json::Value::Null,
                invoice.amount_due().to_decimal_string(2),
            ),
        ],
    };
    audit::record(conn, actor, &event, invoice.created_at_ms).await
}

/// Closes `period` for every paying account that has no invoice for it yet, one
/// transaction per account; marks the period complete when none is left. Safe to run on
/// several servers at once, and to run again after a run that died.
pub async fn close_all(
    db: &Db,
    clock: &ClockHandle,
    period: Period,
    actor: &Actor,
) -> Result<RunSummary, InvoiceError> {
    ensure_ended(clock, period)?;
    let mut summary = RunSummary::default();
    let mut after = String::new();
    loop {
        let mut batch = {
            let mut conn = db.read.acquire().await?;
            repo::accounts_to_close(&mut conn, period, &after).await?
        };
        let Some(last) = batch.iter().max() else {
            break;
        };
        after = last.to_string();
        // Servers running at once start the batch at different accounts.
        batch.shuffle(&mut rand::thread_rng());
        for account in batch {
            match close_period(db, clock, period, account, actor).await {
                Ok(Closed { created: true, .. }) => summary.closed += 1,
                Ok(Closed { created: false, .. }) => summary.already_closed += 1,
                Err(error) => {
                    summary.failed += 1;
                    tracing::error!(account.id = %account, error = %error,
                        "Could not close {period} for account {account}: {error}");
                }
            }
        }
    }
    if summary.failed == 0 {
        let mut conn = db.write.acquire().await?;
        repo::mark_complete(&mut conn, period, to_epoch_ms(clock.now())).await?;
    }
    Ok(summary)
}
