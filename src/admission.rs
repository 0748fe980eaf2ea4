//! Call and message admission: before usage starts, a network element asks whether it may.
//!
//! The answer is no when the account is disabled, cancelled or blocked, when its payer (the
//! account, or its manager under rollup billing) has no available credit left, or, for an
//! outbound call of a managed account whose manager has a channel pool, when the account
//! already holds as many live leases as its `channel_limit`. A call that is admitted gets a
//! lease; leases end when released, when the call's usage is charged, or when they expire
//! (so a crashed switch cannot hold channels forever). The decision is taken under the
//! account's row lock, so concurrent admissions — from any number of server processes on
//! one database — never exceed a channel limit.

use sqlx::Row;

use crate::accounts::{AccountId, AccountKind, AccountStatus};
use crate::billing::payer_of;
use crate::clock::{ClockHandle, from_epoch_ms, to_epoch_ms};
use crate::db::Db;
use crate::ledger;
use crate::pricing::Product;

/// Lease lifetime when the caller does not say.
pub const LEASE_TTL_DEFAULT_S: u32 = 300;

/// Longest lease a caller may ask for; longer calls renew.
pub const LEASE_TTL_MAX_S: u32 = 4 * 3600;

/// Why admission said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The account is disabled.
    AccountDisabled,
    /// The account is cancelled.
    AccountCancelled,
    /// The account is blocked.
    AccountBlocked,
    /// No available credit (balance + credit limit ≤ 0).
    InsufficientCredit,
    /// All of its outbound channels are in use.
    ChannelLimitReached,
}

impl Refusal {
    /// Stable machine-readable reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountDisabled => "account_disabled",
            Self::AccountCancelled => "account_cancelled",
            Self::AccountBlocked => "account_blocked",
            Self::InsufficientCredit => "insufficient_credit",
            Self::ChannelLimitReached => "channel_limit_reached",
        }
    }
}

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Lease id (pass it with the call's usage event, or release it).
    pub id: String,
    /// When it lapses unless renewed.
    pub expires_at_ms: i64,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead; calls get a lease.
    Admitted(Option<Lease>),
    /// Do not start.
    Refused(Refusal),
}

/// Why no decision could be made.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// No such account (or lease).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The lease has ended (released or expired): a call cannot be revived.
    #[error("the lease has already ended ({0}); admit the call again")]
    LeaseEnded(&'static str),
    /// A query failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// Decides whether `account_id` may start `product` usage now.
#[tracing::instrument(name = "steward.admission.admit", skip_all, fields(account.id = %account_id, product = product.as_str()))]
pub async fn admit(
    db: &Db,
    clock: &ClockHandle,
    account_id: AccountId,
    product: Product,
    destination: &str,
    ttl_s: u32,
) -> Result<Decision, AdmissionError> {
    let now_ms = to_epoch_ms(clock.now());
    let destination = destination.to_owned();
    // Admissions arriving together share a commit on SQLite (see `Db::write_grouped`). A
    // database error undoes this admission's writes; a refusal has written nothing but the
    // row lock's no-op.
    db.write_grouped(move |conn| {
        Box::pin(async move {
            match admit_in_tx(conn, account_id, product, &destination, ttl_s, now_ms).await {
                Err(AdmissionError::Database(e)) => Err(e),
                decided => Ok(decided),
            }
        })
    })
    .await?
}

/// [`admit`] in the caller's transaction.
async fn admit_in_tx(
    tx: &mut sqlx::AnyConnection,
    account_id: AccountId,
    product: Product,
    destination: &str,
    ttl_s: u32,
    now_ms: i64,
) -> Result<Decision, AdmissionError> {
    // The row lock serialises every admission of this account across processes.
    if !crate::accounts::repo::lock(&mut *tx, account_id).await? {
        return Err(AdmissionError::NotFound("account"));
    }
    let account = crate::accounts::repo::find(&mut *tx, account_id)
        .await?
        .ok_or(AdmissionError::NotFound("account"))?;
    let refusal = match account.status {
        AccountStatus::Active => None,
        AccountStatus::Disabled => Some(Refusal::AccountDisabled),
        AccountStatus::Cancelled => Some(Refusal::AccountCancelled),
        AccountStatus::Blocked => Some(Refusal::AccountBlocked),
    };
    if let Some(refusal) = refusal {
        return Ok(Decision::Refused(refusal));
    }
    let payer = payer_of(&account);
    let figures = ledger::repo::account_balance(&mut *tx, payer).await?;
    let available = figures
        .balance
        .nanos()
        .saturating_add(figures.credit_limit.nanos());
    if available <= 0 {
        return Ok(Decision::Refused(Refusal::InsufficientCredit));
    }
    if !product.is_voice() {
        return Ok(Decision::Admitted(None));
    }
    if product == Product::VoiceOutbound
        && account.kind == AccountKind::Managed
        && let Some(manager_id) = account.manager_id
    {
        let manager = crate::accounts::repo::find(&mut *tx, manager_id).await?;
        let pool_enabled = manager.is_some_and(|m| m.allocatable_channels > 0);
        if pool_enabled
            && live_outbound_leases(&mut *tx, account_id, now_ms).await? >= account.channel_limit
        {
            return Ok(Decision::Refused(Refusal::ChannelLimitReached));
        }
    }
    let lease = Lease {
        id: uuid::Uuid::now_v7().to_string(),
        expires_at_ms: now_ms.saturating_add(i64::from(ttl_s) * 1000),
    };
    sqlx::query(
        "INSERT INTO channel_leases (id, account_id, product, destination, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&lease.id)
    .bind(account_id.to_string())
    .bind(product.as_str())
    .bind(destination)
    .bind(now_ms)
    .bind(lease.expires_at_ms)
    .execute(&mut *tx)
    .await?;
    Ok(Decision::Admitted(Some(lease)))
}

async fn live_outbound_leases(
    conn: &mut sqlx::AnyConnection,
    account: AccountId,
    now_ms: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM channel_leases WHERE account_id = $1 AND product = 'voice_outbound' \
         AND released_at_ms IS NULL AND expires_at_ms > $2",
    )
    .bind(account.to_string())
    .bind(now_ms)
    .fetch_one(conn)
    .await
}

/// Ends a lease (the call is over). Releasing twice changes nothing: the answer says
/// whether this call ended it (`released_now`) or it had already ended.
pub async fn release(
    db: &Db,
    clock: &ClockHandle,
    lease_id: &str,
) -> Result<Released, AdmissionError> {
    let now_ms = to_epoch_ms(clock.now());
    let id = lease_id.to_owned();
    // Shares a commit with the admissions and releases beside it on SQLite.
    let ended = db
        .write_grouped(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE channel_leases SET released_at_ms = $1 \
                     WHERE id = $2 AND released_at_ms IS NULL AND expires_at_ms > $1",
                )
                .bind(now_ms)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected())
            })
        })
        .await?;
    Ok(Released {
        lease: lease_state(db, lease_id, now_ms).await?,
        released_now: ended == 1,
    })
}

/// A lease after a release request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The lease as it stands now.
    pub lease: LeaseState,
    /// Whether this request ended it (false: it had already been released or expired).
    pub released_now: bool,
}

/// Extends a live lease to `ttl_s` from now. An ended lease (released or expired) cannot be
/// renewed: its channel may already have gone to another call.
pub async fn renew(
    db: &Db,
    clock: &ClockHandle,
    lease_id: &str,
    ttl_s: u32,
) -> Result<LeaseState, AdmissionError> {
    let now_ms = to_epoch_ms(clock.now());
    let renewed = sqlx::query(
        "UPDATE channel_leases SET expires_at_ms = $1 WHERE id = $2 AND released_at_ms IS NULL AND expires_at_ms > $3",
    )
    .bind(now_ms.saturating_add(i64::from(ttl_s) * 1000))
    .bind(lease_id)
    .bind(now_ms)
    .execute(&db.write)
    .await?
    .rows_affected();
    let state = lease_state(db, lease_id, now_ms).await?;
    if renewed == 0 {
        return Err(AdmissionError::LeaseEnded(if state.released {
            "released"
        } else {
            "expired"
        }));
    }
    Ok(state)
}

/// A lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// Id.
    pub id: String,
    /// Whose.
    pub account_id: String,
    /// Live now.
    pub live: bool,
    /// Released (rather than expired or live).
    pub released: bool,
    /// Expiry.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

async fn lease_state(db: &Db, lease_id: &str, now_ms: i64) -> Result<LeaseState, AdmissionError> {
    let row = sqlx::query(
        "SELECT id, account_id, expires_at_ms, released_at_ms FROM channel_leases WHERE id = $1",
    )
    .bind(lease_id)
    .fetch_optional(&db.write)
    .await?
    .ok_or(AdmissionError::NotFound("lease"))?;
    let released: Option<i64> = row.try_get("released_at_ms")?;
    let expires_at_ms: i64 = row.try_get("expires_at_ms")?;
    Ok(LeaseState {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        live: released.is_none() && expires_at_ms > now_ms,
        released: released.is_some(),
        expires_at: from_epoch_ms(expires_at_ms),
    })
}

/// Leases holding a channel at `now_ms` (not released, not expired), across all accounts:
/// a figure for the metrics.
pub async fn live_lease_count(db: &Db, now_ms: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM channel_leases WHERE released_at_ms IS NULL AND expires_at_ms > $1",
    )
    .bind(now_ms)
    .fetch_one(&db.read)
    .await
}
