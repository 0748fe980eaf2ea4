//! Blocks as the operator sees them: listing and lifting.

use sqlx::Row;

use crate::accounts::AccountId;
use crate::audit;
use crate::clock::{ClockHandle, from_epoch_ms, to_epoch_ms, to_wire};
use crate::db::Db;
use crate::payments::PaymentError;

/// A block as the operator sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Block {
    /// Block id.
    pub id: String,
    /// `card`, `account` or `tree`.
    pub scope: String,
    /// The fingerprint, account id or manager id blocked.
    pub subject: String,
    /// The rule that set it.
    pub rule: String,
    /// The account whose attempt set it (or the tree's manager).
    pub account_id: String,
    /// The card involved, if any.
    pub payment_method_id: Option<String>,
    /// Its brand and last four digits, if known.
    pub card: Option<String>,
    /// When it was set.
    pub created_at: String,
    /// When it ends by itself.
    pub expires_at: String,
    /// When the operator lifted it.
    pub lifted_at: Option<String>,
    /// Who lifted it.
    pub lifted_by: Option<String>,
    /// Whether it is in force now.
    pub active: bool,
}

const BLOCK_COLUMNS: &str = "b.id, b.subject, b.rule, b.account_id, b.payment_method_id, \
    b.created_at_ms, b.expires_at_ms, b.lifted_at_ms, b.lifted_by, m.brand, m.last4";

fn block_from_row(row: &sqlx::any::AnyRow, now_ms: i64) -> Result<Block, sqlx::Error> {
    let subject: String = row.try_get("subject")?;
    let (scope, value) = subject.split_once(':').unwrap_or(("", &subject));
    let expires_at_ms: i64 = row.try_get("expires_at_ms")?;
    let lifted_at_ms: Option<i64> = row.try_get("lifted_at_ms")?;
    let brand: Option<String> = row.try_get("brand")?;
    let last4: Option<String> = row.try_get("last4")?;
    Ok(Block {
        id: row.try_get("id")?,
        scope: scope.to_owned(),
        subject: value.to_owned(),
        rule: row.try_get("rule")?,
        account_id: row.try_get("account_id")?,
        payment_method_id: row.try_get("payment_method_id")?,
        card: brand.zip(last4).map(|(b, l)| format!("{b} •••• {l}")),
        created_at: to_wire(from_epoch_ms(row.try_get("created_at_ms")?)),
        expires_at: to_wire(from_epoch_ms(expires_at_ms)),
        lifted_at: lifted_at_ms.map(|ms| to_wire(from_epoch_ms(ms))),
        lifted_by: row.try_get("lifted_by")?,
        active: lifted_at_ms.is_none() && expires_at_ms > now_ms,
    })
}

/// Blocks in force now, or every block ever set with `all`; newest first.
pub async fn list_blocks(
    db: &Db,
    clock: &ClockHandle,
    all: bool,
) -> Result<Vec<Block>, sqlx::Error> {
    let now_ms = to_epoch_ms(clock.now());
    let filter = if all {
        ""
    } else {
        "WHERE b.lifted_at_ms IS NULL AND b.expires_at_ms > $1"
    };
    let sql = format!(
        "SELECT {BLOCK_COLUMNS} FROM payment_blocks b LEFT JOIN payment_methods m ON m.id = b.payment_method_id \
         {filter} ORDER BY b.created_at_ms DESC, b.id DESC"
    );
    let mut query = sqlx::query(&sql);
    if !all {
        query = query.bind(now_ms);
    }
    let rows = query.fetch_all(&db.read).await?;
    rows.iter().map(|row| block_from_row(row, now_ms)).collect()
}

/// Lifts a block now: its subject's counts start afresh, so the next attempt is not
/// refused again for what was already counted. Lifting a block no longer in force changes
/// nothing. Audited on the trail of the account that set it.
pub async fn lift_block(
    db: &Db,
    clock: &ClockHandle,
    block_id: &str,
    actor: &audit::Actor,
) -> Result<Block, PaymentError> {
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    let found = sqlx::query(
        "UPDATE payment_blocks SET lifted_at_ms = $1, lifted_by = $2 \
         WHERE id = $3 AND lifted_at_ms IS NULL AND expires_at_ms > $1 RETURNING subject, account_id",
    )
    .bind(now_ms)
    .bind(actor.label())
    .bind(block_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = found {
        let subject: String = row.try_get("subject")?;
        let account: String = row.try_get("account_id")?;
        sqlx::query(
            "INSERT INTO payment_guards (subject, counted_from_ms, updated_at_ms) VALUES ($1, $2, $2) \
             ON CONFLICT (subject) DO UPDATE SET counted_from_ms = excluded.counted_from_ms, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&subject)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let event = audit::Event {
            account: AccountId::parse(&account),
            change_type: "payment_block.lift",
            resource_id: block_id.to_owned(),
            changes: vec![audit::Change::new("active", true, false)],
        };
        audit::record(&mut tx, actor, &event, now_ms).await?;
    }
    let sql = format!(
        "SELECT {BLOCK_COLUMNS} FROM payment_blocks b LEFT JOIN payment_methods m ON m.id = b.payment_method_id WHERE b.id = $1"
    );
    let row = sqlx::query(&sql)
        .bind(block_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| PaymentError::NotAllowed(format!("no block has the id '{block_id}'")))?;
    let block = block_from_row(&row, now_ms)?;
    tx.commit().await?;
    Ok(block)
}
