//! API keys: minted at random, shown once, stored only as a SHA-256 digest.
//!
//! A key reads `KEY<32 hex>_<64 hex>`. The part before `_` is the key's public identifier:
//! safe to list, log and return where the Telnyx schema wants an `api_key` on a later read.
//! The whole key is 256 bits of randomness after the identifier, so a plain SHA-256 digest
//! is enough at rest (a slow password hash would only slow every request).

pub mod repo;
pub mod service;

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::accounts::listing::{Page, PageRequest};
use crate::accounts::{Account, AccountError, AccountId};
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;

/// Live keys one account may hold: a bound on what a leaked manager key could mint.
pub const ACTIVE_KEYS_PER_ACCOUNT_MAX: i64 = 50;

/// A freshly minted key: the only moment the secret exists outside the caller's hands.
pub struct MintedKey {
    id: String,
    secret: String,
}

impl MintedKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let mut public = [0_u8; 16];
        let mut secret = [0_u8; 32];
        rng.fill_bytes(&mut public);
        rng.fill_bytes(&mut secret);
        let id = format!("KEY{}", hex_upper(&public));
        let secret = format!("{id}_{}", hex_lower(&secret));
        Self { id, secret }
    }

    /// The public identifier.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The whole key, to be shown once.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The digest stored at rest.
    pub fn digest(&self) -> String {
        digest(&self.secret)
    }
}

impl fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MintedKey({})", self.id)
    }
}

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

/// The SHA-256 digest of a presented key, hex.
pub fn digest(presented: &str) -> String {
    hex_lower(&Sha256::digest(presented.as_bytes()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Longest bearer token looked up; anything longer cannot be one of ours.
const PRESENTED_KEY_LENGTH_MAX: usize = 256;

/// The account a presented key acts as, and the key's id; `None` for an unknown or revoked key.
pub async fn authenticate(
    db: &Db,
    presented: &str,
) -> Result<Option<(Account, String)>, sqlx::Error> {
    if presented.is_empty() || presented.len() > PRESENTED_KEY_LENGTH_MAX {
        return Ok(None);
    }
    let mut conn = db.read.acquire().await?;
    repo::find_account_by_digest(&mut conn, &digest(presented)).await
}

/// Mints a key for `account_id`, on behalf of `created_by` (None: the operator).
#[tracing::instrument(name = "steward.keys.mint", skip_all, fields(account.id = %account_id))]
pub async fn mint(
    db: &Db,
    clock: &ClockHandle,
    account_id: AccountId,
    created_by: Option<AccountId>,
) -> Result<MintedKey, AccountError> {
    let mut tx = db.write.begin().await?;
    if !crate::accounts::repo::lock(&mut tx, account_id).await? {
        return Err(AccountError::NotFound);
    }
    if repo::count_live(&mut tx, account_id).await? >= ACTIVE_KEYS_PER_ACCOUNT_MAX {
        return Err(AccountError::NotAllowed(format!(
            "an account may hold at most {ACTIVE_KEYS_PER_ACCOUNT_MAX} live API keys; revoke one first"
        )));
    }
    let key = MintedKey::generate();
    repo::insert(
        &mut tx,
        &key,
        account_id,
        created_by,
        to_epoch_ms(clock.now()),
    )
    .await?;
    tx.commit().await?;
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
) -> Result<KeyRecord, AccountError> {
    let mut tx = db.write.begin().await?;
    repo::revoke(&mut tx, account_id, key_id, to_epoch_ms(clock.now())).await?;
    let record = repo::find(&mut tx, account_id, key_id)
        .await?
        .ok_or(AccountError::NotFound)?;
    tx.commit().await?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_carry_their_public_id() {
        let a = MintedKey::generate();
        let b = MintedKey::generate();
        assert_ne!(a.secret(), b.secret());
        assert!(a.secret().starts_with(&format!("{}_", a.id())));
        assert_eq!(a.secret().len(), 3 + 32 + 1 + 64);
        assert_eq!(a.digest(), digest(a.secret()));
        assert!(!format!("{a:?}").contains(a.secret()));
    }
}
