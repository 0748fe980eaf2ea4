//! An account's API keys: minted for the account (by itself, its manager or the operator),
//! listed by public id, revoked. The key format and digest live in [`crate::keys`].
//!
//! A cancelled account takes no change: no key is minted or revoked for it, and cancelling
//! revokes every key it holds (see `operator::cancel_account`).

pub mod repo;

use super::listing::{Page, PageRequest};
use super::{Account, AccountError, AccountId, AccountStatus};
use crate::audit::{self, Actor, Change};
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;
use crate::keys::{self, MintedKey};

/// Live keys one account may hold: a bound on what a leaked manager key could mint.
pub const ACTIVE_KEYS_PER_ACCOUNT_MAX: i64 = 50;

/// A key as listed: never the secret.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// Public identifier.
    pub id: String,
    /// The account the key acts as.
    pub account_id: AccountId,
    /// Who minted it (None: the operator).
    pub created_by_account_id: Option<AccountId>,
    /// When it was minted, ms since the epoch.
    pub created_at_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
}

/// The account a presented key acts as, and the key's id; `None` for an unknown or revoked key.
pub async fn authenticate(
    db: &Db,
    cache: &super::access::KeyCache,
    presented: &str,
) -> Result<Option<(Account, String)>, sqlx::Error> {
    if !keys::plausible(presented) {
        return Ok(None);
    }
    let digest = super::access::key_digest(presented);
    if let Some(found) = cache.get(&digest) {
        return Ok(Some(found));
    }
    // Read before the lookup: a drop while it runs keeps what it found out of the cache.
    let epoch = cache.epoch();
    let mut conn = db.read.acquire().await?;
    let found = repo::find_account_by_digest(&mut conn, &keys::hex_lower(&digest)).await?;
    if let Some(found) = &found {
        cache.insert(epoch, digest, found.clone());
    }
    Ok(found)
}

/// Locks `account_id` for a key change and refuses a cancelled account.
async fn lock_changeable(
    conn: &mut sqlx::AnyConnection,
    account_id: AccountId,
) -> Result<(), AccountError> {
    if !super::repo::lock(conn, account_id).await? {
        return Err(AccountError::NotFound);
    }
    let account = super::repo::find(conn, account_id)
        .await?
        .ok_or(AccountError::NotFound)?;
    if account.status == AccountStatus::Cancelled {
        return Err(AccountError::Cancelled);
    }
    Ok(())
}

/// Mints a key for `account_id` on behalf of `actor` (the account itself, its manager or
/// the operator), audited on the account's trail (its public id, never the secret).
#[tracing::instrument(name = "steward.keys.mint", skip_all, fields(account.id = %account_id))]
pub async fn mint(
    db: &Db,
    clock: &ClockHandle,
    account_id: AccountId,
    actor: &Actor,
) -> Result<MintedKey, AccountError> {
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    lock_changeable(&mut tx, account_id).await?;
    if repo::count_live(&mut tx, account_id).await? >= ACTIVE_KEYS_PER_ACCOUNT_MAX {
        return Err(AccountError::NotAllowed(format!(
            "an account may hold at most {ACTIVE_KEYS_PER_ACCOUNT_MAX} live API keys; revoke one first"
        )));
    }
    let key = MintedKey::generate();
    repo::insert(&mut tx, &key, account_id, actor.account(), now_ms).await?;
    let event = audit::Event {
        account: Some(account_id),
        change_type: "api_key.create",
        resource_id: key.id().to_owned(),
        changes: vec![Change::new("api_key", serde_json::Value::Null, key.id())],
    };
    audit::record(&mut tx, actor, &event, now_ms).await?;
    // Nothing cached can hold a key minted just now; the counter moves all the same, so
    // that every change to keys reads the same.
    super::access::commit(db, tx, true).await?;
    tracing::info!(key.id = key.id(), "Minted API key {}", key.id());
    Ok(key)
}

/// One page of an account's keys, newest first, revoked ones included.
pub async fn list(
    db: &Db,
    account_id: AccountId,
    page: PageRequest,
) -> Result<Page<KeyRecord>, AccountError> {
    let mut conn = db.read.acquire().await?;
    let total = repo::count_all(&mut conn, account_id).await?;
    let items = repo::list(&mut conn, account_id, page).await?;
    Ok(Page {
        items,
        request: page,
        total_results: crate::db::non_negative(total),
    })
}

/// Revokes a key of `account_id`. Revoking a revoked key changes nothing.
#[tracing::instrument(name = "steward.keys.revoke", skip_all, fields(account.id = %account_id, key.id = key_id))]
pub async fn revoke(
    db: &Db,
    clock: &ClockHandle,
    account_id: AccountId,
    key_id: &str,
    actor: &Actor,
) -> Result<KeyRecord, AccountError> {
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    lock_changeable(&mut tx, account_id).await?;
    let revoked = repo::revoke(&mut tx, account_id, key_id, now_ms).await?;
    if revoked {
        let event = audit::Event {
            account: Some(account_id),
            change_type: "api_key.revoke",
            resource_id: key_id.to_owned(),
            changes: vec![Change::new("revoked", false, true)],
        };
        audit::record(&mut tx, actor, &event, now_ms).await?;
    }
    let record = repo::find(&mut tx, account_id, key_id)
        .await?
        .ok_or(AccountError::NotFound)?;
    super::access::commit(db, tx, revoked).await?;
    Ok(record)
}
