//! Call and message admission: before usage starts, a network element asks whether it may.
//!
//! The answer is no when the account is disabled, cancelled or blocked, when its payer (the
//! account, or its manager under rollup billing) has no available credit left, or, for an
//! outbound call of a managed account whose manager has a channel pool, when the account
//! already holds as many live leases as its `channel_limit`. A call that is admitted gets a
//! lease; leases end when released, when the call's usage is charged, or when they expire
//! (so a crashed switch cannot hold channels forever). The decision is taken under the
//! account's row lock, so concurrent admissions — from any number of server processes on
//! one database — never exceed a channel limit. A server decides its admissions and
//! releases in batches ([`Admissions`]), one transaction each.

use sqlx::Row;

use crate::accounts::{Account, AccountId, AccountKind, AccountStatus};
use crate::clock::{ClockHandle, from_epoch_ms, to_epoch_ms};
use crate::db::Db;
use crate::pricing::Product;

mod batch;
mod retention;

pub use batch::{Admissions, BatchObserver};
pub use retention::{LEASE_RETENTION_MS, run_sweeper, sweep_ended_leases};

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

/// What an admission asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The account that would use it.
    pub account_id: AccountId,
    /// What it would use.
    pub product: Product,
    /// E.164 digits of the destination.
    pub destination: String,
    /// The lease's lifetime, for calls.
    pub ttl_s: u32,
}

/// The rule, given what the database says of the account under its lock: refused, or
/// admitted with a lease (`true`, calls) or without one. `live_outbound` counts the
/// account's live outbound leases, those granted just before in the same batch included;
/// `available_nanos` is its payer's balance plus credit limit.
fn decide(
    account: &Account,
    manager_pool: i64,
    available_nanos: i64,
    live_outbound: i64,
    product: Product,
) -> Result<bool, Refusal> {
    match account.status {
        AccountStatus::Active => {}
        AccountStatus::Disabled => return Err(Refusal::AccountDisabled),
        AccountStatus::Cancelled => return Err(Refusal::AccountCancelled),
        AccountStatus::Blocked => return Err(Refusal::AccountBlocked),
    }
    if available_nanos <= 0 {
        return Err(Refusal::InsufficientCredit);
    }
    if !product.is_voice() {
        return Ok(false);
    }
    if counts_channels(account, manager_pool, product) && live_outbound >= account.channel_limit {
        return Err(Refusal::ChannelLimitReached);
    }
    Ok(true)
}

/// Whether `product` usage of `account` holds one of its channels: outbound calls of a
/// managed account whose manager has a channel pool.
fn counts_channels(account: &Account, manager_pool: i64, product: Product) -> bool {
    product == Product::VoiceOutbound
        && account.kind == AccountKind::Managed
        && account.manager_id.is_some()
        && manager_pool > 0
}

/// A new lease's id: a UUIDv7 of `now_ms` on the server's clock, so that lease ids sort by
/// when they were granted (the retention sweep reads old leases as a range of ids).
fn lease_id(now_ms: i64) -> String {
    let ms = u64::try_from(now_ms).unwrap_or(0);
    let nanos = u32::try_from(ms % 1000).unwrap_or(0) * 1_000_000;
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        nanos,
    ))
    .to_string()
}

/// Every lease id granted at `at_ms` or later sorts at or above this text, every earlier
/// one below it (a UUIDv7's text begins with its 48-bit millisecond time in hex).
fn lease_id_floor(at_ms: i64) -> String {
    let ms = u64::try_from(at_ms).unwrap_or(0) & 0xffff_ffff_ffff;
    format!("{:08x}-{:04x}-", ms >> 16, ms & 0xffff)
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
    let row = sqlx::query(&format!(
        "SELECT {LEASE_COLUMNS} FROM channel_leases WHERE id = $1"
    ))
    .bind(lease_id)
    .fetch_optional(&db.write)
    .await?
    .ok_or(AdmissionError::NotFound("lease"))?;
    Ok(lease_from_row(&row, now_ms)?)
}

/// Columns of a lease read by [`lease_from_row`].
const LEASE_COLUMNS: &str = "id, account_id, expires_at_ms, released_at_ms";

/// A lease as it stands at `now_ms`, from a row of [`LEASE_COLUMNS`].
fn lease_from_row(row: &sqlx::any::AnyRow, now_ms: i64) -> Result<LeaseState, sqlx::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn managed(status: AccountStatus, channel_limit: i64) -> Account {
        Account {
            id: AccountId::generate(),
            email: "caller@example.com".to_owned(),
            organization_name: "Caller".to_owned(),
            kind: AccountKind::Managed,
            manager_id: Some(AccountId::generate()),
            status,
            managed_account_allow_custom_pricing: false,
            rollup_billing: false,
            max_managed_accounts: 0,
            allocatable_channels: 0,
            channel_limit,
            has_password: false,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn lease_ids_sort_by_the_time_they_were_granted() {
        let at_ms = 1_795_833_222_685;
        let floor = lease_id_floor(at_ms);
        assert!(lease_id(at_ms).starts_with(&floor));
        assert!(lease_id(at_ms - 1) < floor);
        assert!(floor <= lease_id(at_ms + 1));
        assert!(lease_id(at_ms - 86_400_000) < lease_id(at_ms));
        assert!(uuid::Uuid::parse_str(&lease_id(at_ms)).is_ok());
    }

    #[test]
    fn the_rule_refuses_in_order_of_status_credit_and_channels() {
        let active = managed(AccountStatus::Active, 2);
        let voice = Product::VoiceOutbound;
        assert_eq!(decide(&active, 10, 1, 0, voice), Ok(true));
        assert_eq!(decide(&active, 10, 1, 1, voice), Ok(true));
        assert_eq!(
            decide(&active, 10, 1, 2, voice),
            Err(Refusal::ChannelLimitReached)
        );
        // Without the manager's pool, channels are not counted.
        assert_eq!(decide(&active, 0, 1, 2, voice), Ok(true));
        // Inbound calls take a lease but no outbound channel; messages take neither.
        assert_eq!(decide(&active, 10, 1, 2, Product::VoiceInbound), Ok(true));
        assert_eq!(decide(&active, 10, 1, 2, Product::SmsOutbound), Ok(false));
        assert_eq!(
            decide(&active, 10, 0, 0, voice),
            Err(Refusal::InsufficientCredit)
        );
        for (status, refusal) in [
            (AccountStatus::Disabled, Refusal::AccountDisabled),
            (AccountStatus::Cancelled, Refusal::AccountCancelled),
            (AccountStatus::Blocked, Refusal::AccountBlocked),
        ] {
            // The status decides before credit and channels.
            assert_eq!(decide(&managed(status, 2), 10, 0, 5, voice), Err(refusal));
        }
    }
}
