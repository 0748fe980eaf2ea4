//! Balances and the operator's money movements (credits, adjustments, credit limits).
//!
//! Every movement is a ledger entry posted in the same transaction as its idempotency
//! record, so a retried request replays the first answer and never moves money twice.
//! A rollup-billing managed account has no money of its own: its usage is charged to its
//! manager, and it can receive no credit, adjustment or credit limit.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use crate::accounts::{Account, AccountId, AccountKind, AccountStatus};
use crate::audit;
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;
use crate::ledger::{self, Book, Entry, EntryHeader, EntryKind};
use crate::money::Money;

/// The currency every account is billed in.
pub const CURRENCY: &str = "USD";

/// Longest idempotency key accepted.
pub const IDEMPOTENCY_KEY_LENGTH_MAX: usize = 255;

/// Longest reason accepted.
pub const REASON_LENGTH_MAX: usize = 1000;

/// An account's balance figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Money held (negative when spent on credit).
    pub balance: Money,
    /// How far below zero the balance may go.
    pub credit_limit: Money,
    /// Amounts reserved but not yet settled (none yet: usage is charged when rated).
    pub pending: Money,
}

impl Balance {
    /// `balance + credit_limit`, saturating rather than overflowing.
    pub fn available_credit(&self) -> Money {
        self.balance
            .checked_add(self.credit_limit)
            .unwrap_or(Money::from_nanos(i64::MAX))
    }
}

/// Whose balance pays for `account`'s usage: its manager's for rollup billing.
pub fn payer_of(account: &Account) -> AccountId {
    payer(
        account.id,
        account.kind,
        account.manager_id,
        account.rollup_billing,
    )
}

/// [`payer_of`] from the account's facts alone.
pub fn payer(
    id: AccountId,
    kind: AccountKind,
    manager_id: Option<AccountId>,
    rollup_billing: bool,
) -> AccountId {
    match (kind, manager_id) {
        (AccountKind::Managed, Some(manager)) if rollup_billing => manager,
        _ => id,
    }
}

/// The balance `account` sees as its own. A rollup account has none: zero figures.
pub async fn balance_of(db: &Db, account: &Account) -> Result<Balance, sqlx::Error> {
    if account.rollup_billing {
        return Ok(Balance::default());
    }
    let mut conn = db.read.acquire().await?;
    let figures = ledger::repo::account_balance(&mut conn, account.id).await?;
    Ok(Balance {
        balance: figures.balance,
        credit_limit: figures.credit_limit,
        pending: Money::ZERO,
    })
}

/// A client-chosen key that makes a money request safe to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// 1 to 255 visible ASCII characters.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= IDEMPOTENCY_KEY_LENGTH_MAX
            && text.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Self(text.to_owned()))
    }
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a money movement did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// No such account.
    #[error("account not found")]
    NotFound,
    /// A rollup account has no balance of its own.
    #[error(
        "the account uses rollup billing and has no balance of its own; credit its manager instead"
    )]
    NoOwnBalance,
    /// A cancelled account takes no change.
    #[error("the account is cancelled and takes no further changes")]
    Cancelled,
    /// The key was used before for a different request.
    #[error("the idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    /// The request is not acceptable; the text says why.
    #[error("{0}")]
    Invalid(String),
    /// A balance the movement touches is too close to the limit of its integer.
    #[error("{0}")]
    BalanceOutOfRange(ledger::PostError),
    /// A query failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

impl From<ledger::PostError> for BillingError {
    fn from(error: ledger::PostError) -> Self {
        match error {
            e @ ledger::PostError::BalanceOutOfRange => Self::BalanceOutOfRange(e),
            ledger::PostError::Database(e) => Self::Database(e),
        }
    }
}

/// The answer to a credit or adjustment; stored and replayed for retries (and, being the
/// stored answer, it is also the wire shape).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Movement {
    /// The journal entry posted.
    pub entry_id: String,
    /// The account credited or adjusted.
    pub account_id: String,
    /// `credit` or `adjustment`.
    pub kind: String,
    /// The signed amount, decimal string.
    pub amount: String,
    /// The account's balance right after, decimal string.
    pub balance_after: String,
    /// Why.
    pub reason: String,
}

/// An operator's credit or adjustment request.
#[derive(Debug, Clone)]
pub struct MoneyRequest {
    /// The account.
    pub account: AccountId,
    /// Credits must be positive; adjustments may have either sign but not be zero.
    pub amount: Money,
    /// Why (required, audited).
    pub reason: String,
    /// Retry key.
    pub idempotency_key: IdempotencyKey,
}

/// Credits `amount` (> 0) to an account's balance.
pub async fn credit(
    db: &Db,
    clock: &ClockHandle,
    request: MoneyRequest,
    actor: &audit::Actor,
) -> Result<(Movement, bool), BillingError> {
    if request.amount.nanos() <= 0 {
        return Err(BillingError::Invalid(
            "a credit must be a positive amount".to_owned(),
        ));
    }
    move_money(
        db,
        clock,
        request,
        EntryKind::Credit,
        Book::PlatformFunding,
        actor,
    )
    .await
}

/// Adjusts an account's balance by a signed, non-zero `amount`.
pub async fn adjust(
    db: &Db,
    clock: &ClockHandle,
    request: MoneyRequest,
    actor: &audit::Actor,
) -> Result<(Movement, bool), BillingError> {
    if request.amount.nanos() == 0 {
        return Err(BillingError::Invalid(
            "an adjustment must not be zero".to_owned(),
        ));
    }
    move_money(
        db,
        clock,
        request,
        EntryKind::Adjustment,
        Book::PlatformAdjustments,
        actor,
    )
    .await
}

async fn own_balance_account(
    conn: &mut AnyConnection,
    id: AccountId,
) -> Result<Account, BillingError> {
    let account = crate::accounts::repo::find(conn, id)
        .await?
        .ok_or(BillingError::NotFound)?;
    if account.rollup_billing {
        return Err(BillingError::NoOwnBalance);
    }
    if account.status == AccountStatus::Cancelled {
        return Err(BillingError::Cancelled);
    }
    Ok(account)
}

/// Returns the movement and whether it was a replay of an earlier request.
#[tracing::instrument(name = "steward.billing.move_money", skip_all, fields(account.id = %request.account, kind = kind.as_str()))]
async fn move_money(
    db: &Db,
    clock: &ClockHandle,
    request: MoneyRequest,
    kind: EntryKind,
    counter_book: Book,
    actor: &audit::Actor,
) -> Result<(Movement, bool), BillingError> {
    let reason = request.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > REASON_LENGTH_MAX {
        return Err(BillingError::Invalid(format!(
            "a reason of 1 to {REASON_LENGTH_MAX} characters is required"
        )));
    }
    let fingerprint = hex(&Sha256::digest(
        format!(
            "{}|{}|{}|{}",
            kind.as_str(),
            request.account,
            request.amount.nanos(),
            reason
        )
        .as_bytes(),
    ));
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (scope, idempotency_key, request_sha256, response, created_at_ms) \
         VALUES ('ledger', $1, $2, '', $3) ON CONFLICT (scope, idempotency_key) DO NOTHING",
    )
    .bind(request.idempotency_key.as_ref())
    .bind(&fingerprint)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        let row = sqlx::query("SELECT request_sha256, response FROM idempotency_keys WHERE scope = 'ledger' AND idempotency_key = $1")
            .bind(request.idempotency_key.as_ref())
            .fetch_one(&mut *tx)
            .await?;
        let stored_fingerprint: String = row.try_get("request_sha256")?;
        if stored_fingerprint != fingerprint {
            return Err(BillingError::IdempotencyKeyReused);
        }
        let response: String = row.try_get("response")?;
        let movement = serde_json::from_str(&response)
            .map_err(|e| sqlx::Error::Protocol(format!("stored idempotent response: {e}")))?;
        return Ok((movement, true));
    }
    let account = own_balance_account(&mut tx, request.account).await?;
    let entry_id = uuid::Uuid::now_v7().to_string();
    let header = EntryHeader {
        id: entry_id.clone(),
        kind,
        account: Some(account.id),
        reason: Some(reason.clone()),
        created_by: actor.label(),
    };
    let entry = Entry::transfer(
        header,
        counter_book,
        Book::Balance(account.id),
        request.amount,
    )
    .map_err(|e| BillingError::Invalid(e.to_string()))?;
    ledger::repo::post_in_tx(&mut tx, &entry, now_ms).await?;
    let balance_after = ledger::repo::book_balance(&mut tx, Book::Balance(account.id)).await?;
    let movement = Movement {
        entry_id,
        account_id: account.id.to_string(),
        kind: kind.as_str().to_owned(),
        amount: request.amount.to_decimal_string(2),
        balance_after: balance_after.to_decimal_string(2),
        reason,
    };
    let response =
        serde_json::to_string(&movement).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    sqlx::query(
        "UPDATE idempotency_keys SET response = $1 WHERE scope = 'ledger' AND idempotency_key = $2",
    )
    .bind(&response)
    .bind(request.idempotency_key.as_ref())
    .execute(&mut *tx)
    .await?;
    let balance_before = balance_after
        .checked_sub(request.amount)
        .unwrap_or(balance_after);
    let event = audit::Event {
        account: Some(account.id),
        change_type: match kind {
            EntryKind::Adjustment => "adjustment",
            _ => "credit",
        },
        resource_id: movement.entry_id.clone(),
        changes: vec![
            audit::Change::new(
                "balance",
                balance_before.to_decimal_string(2),
                movement.balance_after.clone(),
            ),
            audit::Change::new("reason", serde_json::Value::Null, movement.reason.clone()),
        ],
    };
    audit::record(&mut tx, actor, &event, now_ms).await?;
    tx.commit().await?;
    Ok((movement, false))
}

/// Sets an account's credit limit (≥ 0), posting the difference as a credit-limit entry.
/// Setting the limit it already has changes nothing, so retries are harmless.
#[tracing::instrument(name = "steward.billing.set_credit_limit", skip_all, fields(account.id = %account_id))]
pub async fn set_credit_limit(
    db: &Db,
    clock: &ClockHandle,
    account_id: AccountId,
    limit: Money,
    actor: &audit::Actor,
) -> Result<Balance, BillingError> {
    if limit.nanos() < 0 {
        return Err(BillingError::Invalid(
            "a credit limit must not be negative".to_owned(),
        ));
    }
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    let account = own_balance_account(&mut tx, account_id).await?;
    ledger::repo::lock_book(&mut tx, Book::CreditLine(account.id), now_ms).await?;
    let current = ledger::repo::book_balance(&mut tx, Book::CreditLine(account.id)).await?;
    let delta = limit
        .checked_sub(current)
        .ok_or_else(|| BillingError::Invalid("amount out of range".to_owned()))?;
    if delta != Money::ZERO {
        let header = EntryHeader {
            id: uuid::Uuid::now_v7().to_string(),
            kind: EntryKind::CreditLimit,
            account: Some(account.id),
            reason: Some(format!(
                "credit limit set to {}",
                limit.to_decimal_string(2)
            )),
            created_by: actor.label(),
        };
        let entry = Entry::transfer(
            header,
            Book::PlatformCreditLines,
            Book::CreditLine(account.id),
            delta,
        )
        .map_err(|e| BillingError::Invalid(e.to_string()))?;
        ledger::repo::post_in_tx(&mut tx, &entry, now_ms).await?;
        let event = audit::Event {
            account: Some(account.id),
            change_type: "credit_limit.update",
            resource_id: account.id.to_string(),
            changes: vec![audit::Change::new(
                "credit_limit",
                current.to_decimal_string(2),
                limit.to_decimal_string(2),
            )],
        };
        audit::record(&mut tx, actor, &event, now_ms).await?;
    }
    let figures = ledger::repo::account_balance(&mut tx, account.id).await?;
    tx.commit().await?;
    Ok(Balance {
        balance: figures.balance,
        credit_limit: figures.credit_limit,
        pending: Money::ZERO,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
