//! Payment attempts: one row per charge of a card, written (pending) before the gateway is
//! called and settled exactly once (`UPDATE … WHERE status = 'pending'`).

use sqlx::{AnyConnection, Row};

use crate::accounts::AccountId;
use crate::audit::Actor;
use crate::money::Money;

/// Where an attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptStatus {
    /// Recorded; the gateway's outcome is not known yet.
    Pending,
    /// Charged, and the money is on the account (one journal entry).
    Succeeded,
    /// The issuer declined; nothing was charged.
    Declined,
    /// The processor failed, or never received the charge; nothing was charged.
    Failed,
}

impl AttemptStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Declined => "declined",
            Self::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "succeeded" => Self::Succeeded,
            "declined" => Self::Declined,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// An attempt as stored, with what may be shown of its card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Attempt id (also the gateway's idempotency key).
    pub id: String,
    /// The account topped up.
    pub account_id: AccountId,
    /// Its manager tree.
    pub tree_id: AccountId,
    /// The card charged.
    pub payment_method_id: String,
    /// The card's brand.
    pub card_brand: String,
    /// The card's last four digits.
    pub card_last4: String,
    /// The card's fingerprint.
    pub fingerprint: String,
    /// How much.
    pub amount: Money,
    /// Made by auto-recharge.
    pub auto_recharge: bool,
    /// Digest of the request, to tell a retry from a different request with the same key.
    pub request_sha256: String,
    /// Where it stands.
    pub status: AttemptStatus,
    /// Why it was declined.
    pub decline_code: Option<String>,
    /// The journal entry of a success.
    pub entry_id: Option<String>,
    /// The processor's charge id.
    pub gateway_charge_id: Option<String>,
    /// Refunded so far.
    pub refunded: Money,
    /// Who asked.
    pub actor: Actor,
    /// When it was recorded.
    pub created_at_ms: i64,
    /// When it was settled.
    pub settled_at_ms: Option<i64>,
}

/// Columns of [`attempt_from_row`], over `payment_attempts a JOIN payment_methods m`.
pub const COLUMNS: &str = "a.id, a.account_id, a.tree_id, a.payment_method_id, m.brand, m.last4, \
    a.fingerprint, a.amount_nanos, a.auto_recharge, a.request_sha256, a.status, a.decline_code, \
    a.entry_id, a.gateway_charge_id, a.refunded_nanos, a.actor_kind, a.actor_ref, a.created_at_ms, \
    a.settled_at_ms";

/// The joined tables of [`COLUMNS`].
pub const FROM: &str = "payment_attempts a JOIN payment_methods m ON m.id = a.payment_method_id";

fn account_id(text: &str) -> Result<AccountId, sqlx::Error> {
    AccountId::parse(text).ok_or_else(|| sqlx::Error::Protocol(format!("bad account id {text}")))
}

/// The actor stored as (kind, ref).
pub fn actor_columns(actor: &Actor) -> (&'static str, String) {
    match actor {
        Actor::Owner(id) => ("owner", id.to_string()),
        Actor::Manager(id) => ("manager", id.to_string()),
        Actor::Operator(label) => ("operator", label.clone()),
        Actor::System(task) => ("system", (*task).to_owned()),
    }
}

fn actor_from(kind: &str, reference: String) -> Result<Actor, sqlx::Error> {
    Ok(match kind {
        "owner" => Actor::Owner(account_id(&reference)?),
        "manager" => Actor::Manager(account_id(&reference)?),
        "operator" => Actor::Operator(reference),
        // Auto-recharge is the one task that makes attempts.
        _ => Actor::System("auto_recharge"),
    })
}

/// Reads an attempt selected with [`COLUMNS`].
pub fn attempt_from_row(row: &sqlx::any::AnyRow) -> Result<Attempt, sqlx::Error> {
    let account: String = row.try_get("account_id")?;
    let tree: String = row.try_get("tree_id")?;
    let status: String = row.try_get("status")?;
    let actor_kind: String = row.try_get("actor_kind")?;
    Ok(Attempt {
        id: row.try_get("id")?,
        account_id: account_id(&account)?,
        tree_id: account_id(&tree)?,
        payment_method_id: row.try_get("payment_method_id")?,
        card_brand: row.try_get("brand")?,
        card_last4: row.try_get("last4")?,
        fingerprint: row.try_get("fingerprint")?,
        amount: Money::from_nanos(row.try_get("amount_nanos")?),
        auto_recharge: row.try_get::<i64, _>("auto_recharge")? != 0,
        request_sha256: row.try_get("request_sha256")?,
        status: AttemptStatus::parse(&status),
        decline_code: row.try_get("decline_code")?,
        entry_id: row.try_get("entry_id")?,
        gateway_charge_id: row.try_get("gateway_charge_id")?,
        refunded: Money::from_nanos(row.try_get("refunded_nanos")?),
        actor: actor_from(&actor_kind, row.try_get("actor_ref")?)?,
        created_at_ms: row.try_get("created_at_ms")?,
        settled_at_ms: row.try_get("settled_at_ms")?,
    })
}

/// The attempt `id`.
pub async fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Attempt>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM {FROM} WHERE a.id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(attempt_from_row).transpose()
}

/// The attempt of `account` made with the client's `idempotency_key`.
pub async fn find_by_key(
    conn: &mut AnyConnection,
    account: AccountId,
    idempotency_key: &str,
) -> Result<Option<Attempt>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} JOIN payment_idempotency_keys k ON k.attempt_id = a.id \
         WHERE k.account_id = $1 AND k.idempotency_key = $2"
    );
    let row = sqlx::query(&sql)
        .bind(account.to_string())
        .bind(idempotency_key)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(attempt_from_row).transpose()
}

/// A new attempt to record.
#[derive(Debug)]
pub struct NewAttempt<'a> {
    /// Attempt id.
    pub id: &'a str,
    /// The account topped up.
    pub account: AccountId,
    /// Its tree.
    pub tree: AccountId,
    /// The card.
    pub payment_method_id: &'a str,
    /// Its fingerprint.
    pub fingerprint: &'a str,
    /// How much.
    pub amount: Money,
    /// Made by auto-recharge.
    pub auto_recharge: bool,
    /// The client's key.
    pub idempotency_key: Option<&'a str>,
    /// Digest of the request.
    pub request_sha256: &'a str,
    /// The gateway.
    pub gateway: &'a str,
    /// Who asked.
    pub actor: &'a Actor,
}

/// Records a pending attempt, claiming its idempotency key first; false when the account
/// already has an attempt with this key (a concurrent retry won the race), and then nothing
/// is written. Run under the account's row lock.
pub async fn insert(
    conn: &mut AnyConnection,
    new: &NewAttempt<'_>,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    if let Some(key) = new.idempotency_key {
        let claimed = sqlx::query(
            "INSERT INTO payment_idempotency_keys (account_id, idempotency_key, attempt_id, created_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, idempotency_key) DO NOTHING",
        )
        .bind(new.account.to_string())
        .bind(key)
        .bind(new.id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if claimed != 1 {
            return Ok(false);
        }
    }
    let (actor_kind, actor_ref) = actor_columns(new.actor);
    sqlx::query(
        "INSERT INTO payment_attempts (id, account_id, tree_id, payment_method_id, fingerprint, amount_nanos, \
         auto_recharge, request_sha256, status, gateway, actor_kind, actor_ref, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $12)",
    )
    .bind(new.id)
    .bind(new.account.to_string())
    .bind(new.tree.to_string())
    .bind(new.payment_method_id)
    .bind(new.fingerprint)
    .bind(new.amount.nanos())
    .bind(i64::from(new.auto_recharge))
    .bind(new.request_sha256)
    .bind(new.gateway)
    .bind(actor_kind)
    .bind(actor_ref)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(true)
}

/// Settles a pending attempt; false if it was no longer pending (settled by another
/// server, the reconciler, or a retry).
pub async fn settle(
    conn: &mut AnyConnection,
    id: &str,
    status: AttemptStatus,
    gateway_charge_id: Option<&str>,
    decline_code: Option<&str>,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE payment_attempts SET status = $1, gateway_charge_id = $2, decline_code = $3, settled_at_ms = $4 \
         WHERE id = $5 AND status = 'pending'",
    )
    .bind(status.as_str())
    .bind(gateway_charge_id)
    .bind(decline_code)
    .bind(now_ms)
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// One page of an account's attempts, newest first, and the total count.
pub async fn list(
    conn: &mut AnyConnection,
    account: AccountId,
    limit: u32,
    offset: u64,
) -> Result<(Vec<Attempt>, i64), sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE a.account_id = $1 \
         ORDER BY a.created_at_ms DESC, a.id DESC LIMIT {limit} OFFSET {offset}"
    );
    let rows = sqlx::query(&sql)
        .bind(account.to_string())
        .fetch_all(&mut *conn)
        .await?;
    let total: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM payment_attempts WHERE account_id = $1")
            .bind(account.to_string())
            .fetch_one(&mut *conn)
            .await?;
    let attempts = rows
        .iter()
        .map(attempt_from_row)
        .collect::<Result<_, _>>()?;
    Ok((attempts, total))
}

/// Pending attempts, oldest first, at most `limit`.
pub async fn pending_ids(conn: &mut AnyConnection, limit: u32) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!(
        "SELECT id FROM payment_attempts WHERE status = 'pending' ORDER BY created_at_ms, id LIMIT {limit}"
    );
    sqlx::query_scalar(&sql).fetch_all(conn).await
}
