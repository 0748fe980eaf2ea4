//! Accounts: managers, their managed accounts, and the rules between them.
//!
//! Invariants kept here, under concurrency and across processes:
//! - emails are unique case-insensitively (a unique key, not a pre-check);
//! - a managed account belongs to one manager for life, and only managers have them;
//! - a manager never holds more live managed accounts than its limit;
//! - channel allocations of a manager's accounts never sum beyond its pool.
//!
//! The last two are checked inside a transaction that first takes the manager's row lock
//! ([`repo::lock`]), so every such check on one manager is serialised by the database.

pub mod access;
pub mod api_keys;
mod error;
pub mod listing;
pub mod repo;
pub mod sign_in;
mod types;

pub use error::AccountError;
pub use types::{
    Account, AccountId, AccountKind, AccountStatus, Email, InvalidValue, OrganizationName, Password,
};

use anyhow::Context;
use sqlx::AnyConnection;

use self::listing::{ManagedAccountFilter, Page, PageRequest, Sort};
use self::repo::{Column, NewAccountRow, Value};
use crate::audit::{self, Actor, Change};
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::{Db, is_unique_violation};
use crate::keys::MintedKey;

/// Managed accounts a manager may hold unless the operator says otherwise.
pub const MAX_MANAGED_ACCOUNTS_DEFAULT: i64 = 1000;

/// Attempts at generating a unique email before giving up (each collision is a 1 in 2^48 event).
const GENERATED_EMAIL_ATTEMPTS_MAX: u32 = 3;

/// What the operator gives to create an account.
#[derive(Debug)]
pub struct NewAccount {
    /// Sign-in email.
    pub email: Email,
    /// Organization name.
    pub organization_name: OrganizationName,
    /// Approve as a manager at once.
    pub manager: bool,
    /// Managed-account limit (default 1000).
    pub max_managed_accounts: Option<i64>,
    /// Channel pool (default 0).
    pub allocatable_channels: Option<i64>,
    /// Portal password; without one the account cannot sign in until one is set.
    pub password: Option<Password>,
}

/// What a manager gives to create a managed account.
#[derive(Debug)]
pub struct NewManagedAccount {
    /// Becomes the organization name.
    pub business_name: OrganizationName,
    /// Sign-in email; generated from the manager's when absent.
    pub email: Option<Email>,
    /// Without one the account cannot sign in until a password is set.
    pub password: Option<Password>,
    /// Whether a price list of its own may replace the manager's.
    pub managed_account_allow_custom_pricing: bool,
    /// Whether spend is charged to the manager (fixed for life).
    pub rollup_billing: bool,
}

/// A manager's channel pool and how much of it is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelAllocation {
    /// The pool the operator granted (0: the feature is off).
    pub pool: i64,
    /// Allocated across live managed accounts.
    pub allocated: i64,
}

/// Refuses callers that may not manage accounts.
pub fn ensure_manager(caller: &Account) -> Result<(), AccountError> {
    match caller.kind {
        AccountKind::Manager => Ok(()),
        AccountKind::Managed => Err(AccountError::ManagedCannotManage),
        AccountKind::Standard => Err(AccountError::NotApprovedManager),
    }
}

/// Records a change of account `id` on its own trail, in the caller's transaction.
async fn audit_change(
    conn: &mut AnyConnection,
    actor: &Actor,
    id: AccountId,
    change_type: &'static str,
    changes: Vec<Change>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let event = audit::Event {
        account: Some(id),
        change_type,
        resource_id: id.to_string(),
        changes,
    };
    audit::record(conn, actor, &event, now_ms).await
}

fn email_conflict(error: sqlx::Error) -> AccountError {
    if is_unique_violation(&error, "email_normalized") {
        AccountError::EmailTaken
    } else {
        AccountError::Database(error)
    }
}

async fn hash_password(password: Option<Password>) -> Result<Option<String>, AccountError> {
    let Some(password) = password else {
        return Ok(None);
    };
    // argon2 is deliberately slow: keep it off the async workers.
    let hash = tokio::task::spawn_blocking(move || password.hash())
        .await
        .context("Failed to run password hashing")??;
    Ok(Some(hash))
}

/// Brings emails stored by earlier versions to today's unique key (once per database; see
/// [`repo::rekey_legacy_emails`]). Accounts that could not be re-keyed are logged for the
/// operator: two accounts then hold two spellings of one mailbox.
pub async fn upgrade_stored_emails(db: &Db, clock: &ClockHandle) -> anyhow::Result<()> {
    let mut tx = db.begin_write().await?;
    let conflicts = repo::rekey_legacy_emails(&mut tx, to_epoch_ms(clock.now()))
        .await
        .context("Failed to re-key stored emails")?;
    tx.commit().await?;
    for id in conflicts {
        tracing::warn!(account.id = %id, "Account {id} shares its mailbox with another account under a different spelling of the domain; its email keeps its old key");
    }
    Ok(())
}

/// Creates a standard or manager account with a first API key (operator).
#[tracing::instrument(name = "steward.accounts.create_account", skip_all)]
pub async fn create_account(
    db: &Db,
    clock: &ClockHandle,
    new: NewAccount,
    actor: &Actor,
) -> Result<(Account, MintedKey), AccountError> {
    let limits = [new.max_managed_accounts, new.allocatable_channels];
    if limits.iter().flatten().any(|n| *n < 0) {
        return Err(AccountError::NotAllowed(
            "limits must not be negative".to_owned(),
        ));
    }
    let password_hash = hash_password(new.password).await?;
    let id = AccountId::generate();
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    let row = NewAccountRow {
        id,
        email: new.email.as_ref(),
        email_normalized: &new.email.normalized(),
        organization_name: new.organization_name.as_ref(),
        organization_name_folded: &new.organization_name.folded(),
        password_hash: password_hash.as_deref(),
        kind: if new.manager {
            AccountKind::Manager
        } else {
            AccountKind::Standard
        },
        manager_id: None,
        managed_account_allow_custom_pricing: false,
        rollup_billing: false,
        max_managed_accounts: new
            .max_managed_accounts
            .unwrap_or(MAX_MANAGED_ACCOUNTS_DEFAULT),
        allocatable_channels: new.allocatable_channels.unwrap_or(0),
        now_ms,
    };
    repo::insert(&mut tx, &row).await.map_err(email_conflict)?;
    let key = MintedKey::generate();
    api_keys::repo::insert(&mut tx, &key, id, None, now_ms).await?;
    let account = repo::find(&mut tx, id)
        .await?
        .ok_or(AccountError::NotFound)?;
    audit_change(
        &mut tx,
        actor,
        id,
        "account.create",
        created(&account),
        now_ms,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(account.id = %id, "Created account {id}");
    Ok((account, key))
}

/// Creates a managed account of `manager`, with a first API key for it.
#[tracing::instrument(name = "steward.accounts.create_managed", skip_all, fields(manager.id = %manager.id))]
pub async fn create_managed_account(
    db: &Db,
    clock: &ClockHandle,
    manager: &Account,
    new: NewManagedAccount,
) -> Result<(Account, MintedKey), AccountError> {
    ensure_manager(manager)?;
    let password_hash = hash_password(new.password).await?;
    for _ in 0..GENERATED_EMAIL_ATTEMPTS_MAX {
        let id = AccountId::generate();
        let email = match &new.email {
            Some(email) => email.clone(),
            None => generated_email(manager, id)?,
        };
        let mut tx = db.begin_write().await?;
        let current = lock_manager(&mut tx, manager.id).await?;
        let live = repo::count_live_managed(&mut tx, manager.id).await?;
        if live >= current.max_managed_accounts {
            return Err(AccountError::ManagedAccountLimitReached {
                limit: current.max_managed_accounts,
            });
        }
        let now_ms = to_epoch_ms(clock.now());
        let row = NewAccountRow {
            id,
            email: email.as_ref(),
            email_normalized: &email.normalized(),
            organization_name: new.business_name.as_ref(),
            organization_name_folded: &new.business_name.folded(),
            password_hash: password_hash.as_deref(),
            kind: AccountKind::Managed,
            manager_id: Some(manager.id),
            managed_account_allow_custom_pricing: new.managed_account_allow_custom_pricing,
            rollup_billing: new.rollup_billing,
            max_managed_accounts: 0,
            allocatable_channels: 0,
            now_ms,
        };
        match repo::insert(&mut tx, &row).await.map_err(email_conflict) {
            Err(AccountError::EmailTaken) if new.email.is_none() => continue,
            other => other?,
        }
        let key = MintedKey::generate();
        api_keys::repo::insert(&mut tx, &key, id, Some(manager.id), now_ms).await?;
        let account = repo::find(&mut tx, id)
            .await?
            .ok_or(AccountError::NotFound)?;
        let actor = Actor::Manager(manager.id);
        let changes = created(&account);
        audit_change(
            &mut tx,
            &actor,
            id,
            "managed_account.create",
            changes,
            now_ms,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(account.id = %id, "Created managed account {id}");
        return Ok((account, key));
    }
    Err(anyhow::anyhow!("Failed to generate a unique email address").into())
}

/// The audited fields of a new account (nothing secret: whether a password is set, not it).
fn created(account: &Account) -> Vec<Change> {
    use serde_json::Value::Null;
    let mut changes = vec![
        Change::new("email", Null, account.email.as_str()),
        Change::new(
            "organization_name",
            Null,
            account.organization_name.as_str(),
        ),
        Change::new("status", Null, account.status.as_str()),
        Change::new("password_set", Null, account.has_password),
    ];
    if account.kind == AccountKind::Managed {
        changes.push(Change::new("rollup_billing", Null, account.rollup_billing));
        changes.push(Change::new(
            "managed_account_allow_custom_pricing",
            Null,
            account.managed_account_allow_custom_pricing,
        ));
    } else {
        changes.push(Change::new("kind", Null, account.kind.as_str()));
    }
    changes
}

/// The longest local part an address may have (RFC 5321).
const EMAIL_LOCAL_LENGTH_MAX: usize = 64;

/// `local+<12 hex>@domain` from the manager's email; the hex is the random tail of the id.
/// A long local part is shortened so the result stays a valid address; when even that
/// cannot fit (a domain near the length limit), the caller must give an email.
fn generated_email(manager: &Account, id: AccountId) -> Result<Email, AccountError> {
    let manager_email =
        Email::parse(&manager.email).map_err(|e| anyhow::anyhow!("manager email: {e}"))?;
    let (local, domain) = manager_email.split();
    let local = local.split('+').next().unwrap_or(local);
    let id_text = id.to_string();
    let suffix = id_text
        .get(id_text.len().saturating_sub(12)..)
        .unwrap_or(&id_text);
    let room = EMAIL_LOCAL_LENGTH_MAX - 1 - suffix.len();
    let mut cut = local.len().min(room);
    while !local.is_char_boundary(cut) {
        cut -= 1;
    }
    let local = local.get(..cut).unwrap_or_default().trim_end_matches('.');
    Email::parse(&format!("{local}+{suffix}@{domain}")).map_err(|_| AccountError::EmailRequired)
}

/// Locks the manager's row and re-reads it: approval may have been withdrawn, or the
/// manager disabled or cancelled, since its key was checked.
async fn lock_manager(
    conn: &mut AnyConnection,
    manager_id: AccountId,
) -> Result<Account, AccountError> {
    if !repo::lock(conn, manager_id).await? {
        return Err(AccountError::NotApprovedManager);
    }
    let current = repo::find(conn, manager_id)
        .await?
        .ok_or(AccountError::NotApprovedManager)?;
    ensure_manager(&current)?;
    match current.status {
        AccountStatus::Active => Ok(current),
        AccountStatus::Cancelled => Err(AccountError::Cancelled),
        AccountStatus::Disabled | AccountStatus::Blocked => Err(AccountError::NotAllowed(format!(
            "the manager account is {}",
            current.status.as_str()
        ))),
    }
}

/// A managed account of `manager`, with the public id of its newest live key.
pub async fn managed_account(
    db: &Db,
    manager: &Account,
    id: AccountId,
) -> Result<(Account, Option<String>), AccountError> {
    ensure_manager(manager)?;
    let mut conn = db.read.acquire().await?;
    repo::find_managed(&mut conn, manager.id, id)
        .await?
        .ok_or(AccountError::NotFound)
}

/// One page of `manager`'s accounts.
pub async fn list_managed_accounts(
    db: &Db,
    manager: &Account,
    filter: &ManagedAccountFilter,
    sort: Sort,
    page: PageRequest,
) -> Result<Page<Account>, AccountError> {
    ensure_manager(manager)?;
    let mut conn = db.read.acquire().await?;
    let (items, total) = repo::list_managed(&mut conn, manager.id, filter, sort, page).await?;
    // A page past the end has no row to carry the count: ask for it separately.
    let total = match total {
        Some(total) => total,
        None => repo::count_managed(&mut conn, manager.id, filter).await?,
    };
    Ok(Page {
        items,
        request: page,
        total_results: crate::db::non_negative(total),
    })
}

/// Re-reads the account as the transaction left it, then commits; `changed` says whether
/// the transaction changed the account (see [`access::commit`]).
pub(crate) async fn commit_returning(
    db: &Db,
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    id: AccountId,
    changed: bool,
) -> Result<Account, AccountError> {
    let updated = repo::find(&mut tx, id)
        .await?
        .ok_or(AccountError::NotFound)?;
    access::commit(db, tx, changed).await?;
    Ok(updated)
}

/// Opens a transaction and reads a managed account of `manager` in it; another manager's
/// account is `NotFound`. Pair with [`finish_managed`].
async fn begin_managed(
    db: &Db,
    manager: &Account,
    id: AccountId,
) -> Result<(sqlx::Transaction<'static, sqlx::Any>, Account), AccountError> {
    ensure_manager(manager)?;
    let mut tx = db.begin_write().await?;
    // Lock the row before reading its status, so that a cancellation committed meanwhile
    // is seen (and cannot be overwritten by an enable that read the old status).
    repo::lock_managed(&mut tx, manager.id, id).await?;
    let (account, _) = repo::find_managed(&mut tx, manager.id, id)
        .await?
        .ok_or(AccountError::NotFound)?;
    Ok((tx, account))
}

/// Re-reads the account as changed and commits; `changed` as for [`commit_returning`].
async fn finish_managed(
    db: &Db,
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    manager: &Account,
    id: AccountId,
    changed: bool,
) -> Result<(Account, Option<String>), AccountError> {
    let updated = repo::find_managed(&mut tx, manager.id, id)
        .await?
        .ok_or(AccountError::NotFound)?;
    access::commit(db, tx, changed).await?;
    Ok(updated)
}

/// Changes a manager may make to a managed account, all applied in one transaction.
#[derive(Debug, Default)]
pub struct ManagedAccountUpdate {
    /// New custom-pricing flag.
    pub managed_account_allow_custom_pricing: Option<bool>,
    /// New email.
    pub email: Option<Email>,
    /// New business (organization) name.
    pub business_name: Option<OrganizationName>,
    /// Rollup billing as the caller believes it to be: any other value than the stored one
    /// is refused, since it is fixed at creation.
    pub rollup_billing: Option<bool>,
}

/// Applies `update` to a managed account of `manager`.
#[tracing::instrument(name = "steward.accounts.update_managed", skip_all, fields(account.id = %id))]
pub async fn update_managed_account(
    db: &Db,
    clock: &ClockHandle,
    manager: &Account,
    id: AccountId,
    update: ManagedAccountUpdate,
) -> Result<(Account, Option<String>), AccountError> {
    let now_ms = to_epoch_ms(clock.now());
    let (mut tx, account) = begin_managed(db, manager, id).await?;
    if account.status == AccountStatus::Cancelled {
        return Err(AccountError::Cancelled);
    }
    if update
        .rollup_billing
        .is_some_and(|wanted| wanted != account.rollup_billing)
    {
        return Err(AccountError::RollupBillingImmutable);
    }
    let mut changes = Vec::new();
    if let Some(allow) = update
        .managed_account_allow_custom_pricing
        .filter(|allow| *allow != account.managed_account_allow_custom_pricing)
    {
        let value = Value::Int(i64::from(allow));
        repo::set(&mut tx, id, Column::AllowCustomPricing, value, now_ms).await?;
        changes.push(Change::new(
            "managed_account_allow_custom_pricing",
            account.managed_account_allow_custom_pricing,
            allow,
        ));
    }
    changes.extend(
        set_profile(
            &mut tx,
            &account,
            update.email,
            update.business_name,
            now_ms,
        )
        .await?,
    );
    let changed = !changes.is_empty();
    if changed {
        let actor = Actor::Manager(manager.id);
        audit_change(
            &mut tx,
            &actor,
            id,
            "managed_account.update",
            changes,
            now_ms,
        )
        .await?;
    }
    finish_managed(db, tx, manager, id, changed).await
}

/// Writes a new email and/or business name of `account` (as read under its lock) and
/// returns what changed.
async fn set_profile(
    conn: &mut AnyConnection,
    account: &Account,
    email: Option<Email>,
    business_name: Option<OrganizationName>,
    now_ms: i64,
) -> Result<Vec<Change>, AccountError> {
    let mut changes = Vec::new();
    if let Some(email) = email.filter(|e| e.as_ref() != account.email) {
        repo::set_email(
            conn,
            account.id,
            email.as_ref(),
            &email.normalized(),
            now_ms,
        )
        .await
        .map_err(email_conflict)?;
        changes.push(Change::new("email", account.email.as_str(), email.as_ref()));
    }
    if let Some(name) = business_name.filter(|n| n.as_ref() != account.organization_name) {
        repo::set_organization_name(conn, account.id, name.as_ref(), &name.folded(), now_ms)
            .await?;
        changes.push(Change::new(
            "organization_name",
            account.organization_name.as_str(),
            name.as_ref(),
        ));
    }
    Ok(changes)
}

/// Changes an account's own email and/or business name: by its user (`Actor::Owner`) or
/// by its manager signed in as it (`Actor::Manager`). A cancelled account takes no change.
#[tracing::instrument(name = "steward.accounts.update_profile", skip_all, fields(account.id = %id))]
pub async fn update_profile(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    email: Option<Email>,
    business_name: Option<OrganizationName>,
    actor: &Actor,
) -> Result<Account, AccountError> {
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    let account = lock_changeable(&mut tx, id).await?;
    let changes = set_profile(&mut tx, &account, email, business_name, now_ms).await?;
    let changed = !changes.is_empty();
    if changed {
        audit_change(&mut tx, actor, id, "account.update", changes, now_ms).await?;
    }
    commit_returning(db, tx, id, changed).await
}

/// Locks an account's row and reads it; a cancelled account is refused (it takes no change).
async fn lock_changeable(conn: &mut AnyConnection, id: AccountId) -> Result<Account, AccountError> {
    if !repo::lock(conn, id).await? {
        return Err(AccountError::NotFound);
    }
    let account = repo::find(conn, id).await?.ok_or(AccountError::NotFound)?;
    if account.status == AccountStatus::Cancelled {
        return Err(AccountError::Cancelled);
    }
    Ok(account)
}

/// Sets (or replaces) an account's portal password. A cancelled account takes no change.
/// `actor` is recorded in the audit trail (the password itself never is).
#[tracing::instrument(name = "steward.accounts.set_password", skip_all, fields(account.id = %id))]
pub async fn set_password(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    password: Password,
    actor: &Actor,
) -> Result<Account, AccountError> {
    let hash = hash_password(Some(password)).await?;
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    let account = lock_changeable(&mut tx, id).await?;
    repo::set_password_hash(&mut tx, id, hash.as_deref(), now_ms).await?;
    let change = Change::new("password_set", account.has_password, true);
    audit_change(&mut tx, actor, id, "password.set", vec![change], now_ms).await?;
    commit_returning(db, tx, id, true).await
}

/// Enables or disables a managed account. Asking for the state it is already in changes
/// nothing and succeeds (a retried request must not fail); a cancelled account is refused.
#[tracing::instrument(name = "steward.accounts.set_enabled", skip_all, fields(account.id = %id, enabled))]
pub async fn set_enabled(
    db: &Db,
    clock: &ClockHandle,
    manager: &Account,
    id: AccountId,
    enabled: bool,
) -> Result<(Account, Option<String>), AccountError> {
    let now_ms = to_epoch_ms(clock.now());
    let target = if enabled {
        AccountStatus::Active
    } else {
        AccountStatus::Disabled
    };
    let (mut tx, account) = begin_managed(db, manager, id).await?;
    let changed = account.status != target;
    match account.status {
        AccountStatus::Cancelled => return Err(AccountError::Cancelled),
        AccountStatus::Blocked => {
            return Err(AccountError::NotAllowed(
                "the account is blocked by the operator".to_owned(),
            ));
        }
        current if current == target => {}
        current => {
            repo::set(
                &mut tx,
                id,
                Column::Status,
                Value::Text(target.as_str()),
                now_ms,
            )
            .await?;
            let change = Change::new("status", current.as_str(), target.as_str());
            let change_type = if enabled {
                "managed_account.enable"
            } else {
                "managed_account.disable"
            };
            let actor = Actor::Manager(manager.id);
            audit_change(&mut tx, &actor, id, change_type, vec![change], now_ms).await?;
        }
    }
    finish_managed(db, tx, manager, id, changed).await
}

/// How many live managed accounts a manager holds, and how many it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManagedAccountCount {
    /// Managed accounts that are not cancelled.
    pub live: i64,
    /// The manager's limit.
    pub limit: i64,
}

/// The manager's count of live managed accounts against its limit ("312 of 1000").
pub async fn managed_account_count(
    db: &Db,
    manager: &Account,
) -> Result<ManagedAccountCount, AccountError> {
    ensure_manager(manager)?;
    let mut conn = db.read.acquire().await?;
    let current = repo::find(&mut conn, manager.id)
        .await?
        .ok_or(AccountError::NotFound)?;
    let live = repo::count_live_managed(&mut conn, manager.id).await?;
    Ok(ManagedAccountCount {
        live,
        limit: current.max_managed_accounts,
    })
}

/// The manager's channel pool and how much of it is allocated.
pub async fn channel_allocation(
    db: &Db,
    manager: &Account,
) -> Result<ChannelAllocation, AccountError> {
    ensure_manager(manager)?;
    let mut conn = db.read.acquire().await?;
    let current = repo::find(&mut conn, manager.id)
        .await?
        .ok_or(AccountError::NotFound)?;
    let allocated = repo::channels_allocated(&mut conn, manager.id, None).await?;
    Ok(ChannelAllocation {
        pool: current.allocatable_channels,
        allocated,
    })
}

/// Sets a managed account's share of the manager's channel pool.
#[tracing::instrument(name = "steward.accounts.set_channel_limit", skip_all, fields(account.id = %id, channel_limit))]
pub async fn set_channel_limit(
    db: &Db,
    clock: &ClockHandle,
    manager: &Account,
    id: AccountId,
    channel_limit: u32,
) -> Result<Account, AccountError> {
    ensure_manager(manager)?;
    let requested = i64::from(channel_limit);
    let mut tx = db.begin_write().await?;
    let current = lock_manager(&mut tx, manager.id).await?;
    // Manager first, then the managed row (the order cancellation takes them in).
    repo::lock_managed(&mut tx, manager.id, id).await?;
    let (account, _) = repo::find_managed(&mut tx, manager.id, id)
        .await?
        .ok_or(AccountError::NotFound)?;
    if account.status == AccountStatus::Cancelled {
        return Err(AccountError::Cancelled);
    }
    let others = repo::channels_allocated(&mut tx, manager.id, Some(id)).await?;
    let available = current.allocatable_channels.saturating_sub(others).max(0);
    if requested > available {
        return Err(AccountError::ChannelPoolExceeded {
            requested,
            available,
            pool: current.allocatable_channels,
        });
    }
    let changed = requested != account.channel_limit;
    if changed {
        let now_ms = to_epoch_ms(clock.now());
        repo::set(
            &mut tx,
            id,
            Column::ChannelLimit,
            Value::Int(requested),
            now_ms,
        )
        .await?;
        let change = Change::new("channel_limit", account.channel_limit, requested);
        let actor = Actor::Manager(manager.id);
        let change_type = "managed_account.channel_limit";
        audit_change(&mut tx, &actor, id, change_type, vec![change], now_ms).await?;
    }
    commit_returning(db, tx, id, changed).await
}

pub mod operator;
