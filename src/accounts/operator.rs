//! Operator actions on accounts: approval, limits, pools, cancellation, releasing emails.
//! Each is recorded in the account's audit trail in the same transaction.

use super::repo::{self, Column, Value};
use super::{
    Account, AccountError, AccountId, AccountKind, AccountStatus, Email, audit_change,
    commit_returning,
};
use crate::audit::{Actor, Change};
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;

async fn find_for_update(
    tx: &mut sqlx::AnyConnection,
    id: AccountId,
) -> Result<Account, AccountError> {
    if !repo::lock(tx, id).await? {
        return Err(AccountError::NotFound);
    }
    repo::find(tx, id).await?.ok_or(AccountError::NotFound)
}

/// Locks a standard or manager account that is not cancelled, for an operator change.
async fn find_manageable(
    tx: &mut sqlx::AnyConnection,
    id: AccountId,
) -> Result<Account, AccountError> {
    let account = find_for_update(tx, id).await?;
    if account.kind == AccountKind::Managed {
        return Err(AccountError::NotAllowed(
            "a managed account cannot be a manager (one level only)".to_owned(),
        ));
    }
    if account.status == AccountStatus::Cancelled {
        return Err(AccountError::Cancelled);
    }
    Ok(account)
}

/// Approves a standard account as a manager; approving a manager again changes nothing.
#[tracing::instrument(name = "steward.accounts.approve_manager", skip_all, fields(account.id = %id))]
pub async fn approve_manager(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    actor: &Actor,
) -> Result<Account, AccountError> {
    set_kind(db, clock, id, AccountKind::Manager, actor).await
}

/// Withdraws approval: the account becomes standard; its managed accounts stay bound to it
/// (they may not move) and it cannot act on them until approved again.
#[tracing::instrument(name = "steward.accounts.revoke_manager", skip_all, fields(account.id = %id))]
pub async fn revoke_manager(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    actor: &Actor,
) -> Result<Account, AccountError> {
    set_kind(db, clock, id, AccountKind::Standard, actor).await
}

async fn set_kind(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    kind: AccountKind,
    actor: &Actor,
) -> Result<Account, AccountError> {
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    let account = find_manageable(&mut tx, id).await?;
    let changed = account.kind != kind;
    if changed {
        repo::set(
            &mut tx,
            id,
            Column::Kind,
            Value::Text(kind.as_str()),
            now_ms,
        )
        .await?;
        let change = Change::new("kind", account.kind.as_str(), kind.as_str());
        audit_change(&mut tx, actor, id, "account.kind", vec![change], now_ms).await?;
    }
    commit_returning(db, tx, id, changed).await
}

/// Sets how many live managed accounts a manager may hold. Lowering it below the current
/// count is allowed: existing accounts stay, new ones are refused.
pub async fn set_managed_account_limit(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    limit: i64,
    actor: &Actor,
) -> Result<Account, AccountError> {
    set_manager_number(db, clock, id, Column::MaxManagedAccounts, limit, actor).await
}

/// Sets a manager's channel pool. It may not drop below what is already allocated: the
/// allocations must never exceed the pool, so lower the accounts' limits first.
pub async fn set_channel_pool(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    channels: i64,
    actor: &Actor,
) -> Result<Account, AccountError> {
    set_manager_number(db, clock, id, Column::AllocatableChannels, channels, actor).await
}

async fn set_manager_number(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    column: Column,
    value: i64,
    actor: &Actor,
) -> Result<Account, AccountError> {
    if value < 0 {
        return Err(AccountError::NotAllowed(
            "the value must not be negative".to_owned(),
        ));
    }
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    let account = find_manageable(&mut tx, id).await?;
    let (field, change_type, current) = match column {
        Column::AllocatableChannels => (
            "allocatable_global_outbound_channels",
            "account.channel_pool",
            account.allocatable_channels,
        ),
        _ => (
            "max_managed_accounts",
            "account.managed_account_limit",
            account.max_managed_accounts,
        ),
    };
    if matches!(column, Column::AllocatableChannels) {
        // Re-read under the lock: allocations may have changed since the caller looked.
        let allocated = repo::channels_allocated(&mut tx, id, None).await?;
        if value < allocated {
            return Err(AccountError::NotAllowed(format!(
                "{allocated} channels are allocated to managed accounts; lower their channel limits before shrinking the pool below that"
            )));
        }
    }
    let changed = value != current;
    if changed {
        repo::set(&mut tx, id, column, Value::Int(value), now_ms).await?;
        let change = Change::new(field, current, value);
        audit_change(&mut tx, actor, id, change_type, vec![change], now_ms).await?;
    }
    commit_returning(db, tx, id, changed).await
}

/// Cancels an account for good: its keys are revoked and it takes no further change. A
/// manager with live managed accounts is refused unless `include_managed`, which cancels
/// them in the same transaction. With `release_email` its email is freed as well (see
/// [`release_email`]).
#[tracing::instrument(name = "steward.accounts.cancel", skip_all, fields(account.id = %id))]
pub async fn cancel_account(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    include_managed: bool,
    release_email: bool,
    actor: &Actor,
) -> Result<Account, AccountError> {
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    let account = find_for_update(&mut tx, id).await?;
    let live = repo::live_managed_ids(&mut tx, id).await?;
    if !live.is_empty() && !include_managed {
        return Err(AccountError::NotAllowed(format!(
            "the account has {} managed accounts that are not cancelled; cancel them too with --include-managed",
            live.len()
        )));
    }
    if !live.is_empty() {
        repo::cancel_all_managed(&mut tx, id, now_ms).await?;
        for managed in &live {
            let change = Change::new("status", "active", AccountStatus::Cancelled.as_str());
            audit_change(
                &mut tx,
                actor,
                *managed,
                "account.cancel",
                vec![change],
                now_ms,
            )
            .await?;
        }
    }
    if account.status != AccountStatus::Cancelled {
        repo::set(
            &mut tx,
            id,
            Column::Status,
            Value::Text(AccountStatus::Cancelled.as_str()),
            now_ms,
        )
        .await?;
        // A cancelled account holds no channels: its share returns to the manager's pool.
        repo::set(&mut tx, id, Column::ChannelLimit, Value::Int(0), now_ms).await?;
        let change = Change::new(
            "status",
            account.status.as_str(),
            AccountStatus::Cancelled.as_str(),
        );
        audit_change(&mut tx, actor, id, "account.cancel", vec![change], now_ms).await?;
    }
    // Its keys are refused from now on anyway; revoking them says so in every key list.
    super::api_keys::repo::revoke_all(&mut tx, id, include_managed, now_ms).await?;
    if release_email {
        release_email_in_tx(&mut tx, &account, actor, now_ms).await?;
    }
    let updated = commit_returning(db, tx, id, true).await?;
    tracing::info!(account.id = %id, "Cancelled account {id}");
    Ok(updated)
}

/// Frees a cancelled account's email for a new account (the platform's one way to bring an
/// existing customer under a manager: cancel the account, release its email, let the
/// manager create a managed account with it). The old account keeps its history and ledger
/// under a tombstone address that can never collide; a live account's email is never
/// released.
#[tracing::instrument(name = "steward.accounts.release_email", skip_all, fields(account.id = %id))]
pub async fn release_email(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    actor: &Actor,
) -> Result<Account, AccountError> {
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    let account = find_for_update(&mut tx, id).await?;
    if account.status != AccountStatus::Cancelled {
        return Err(AccountError::NotAllowed(
            "only a cancelled account's email can be released; cancel the account first \
             (cancel-account --release-email does both)"
                .to_owned(),
        ));
    }
    release_email_in_tx(&mut tx, &account, actor, now_ms).await?;
    commit_returning(db, tx, id, true).await
}

async fn release_email_in_tx(
    tx: &mut sqlx::AnyConnection,
    account: &Account,
    actor: &Actor,
    now_ms: i64,
) -> Result<(), AccountError> {
    let tombstone = Email::tombstone(account.id);
    if account.email == tombstone.as_ref() {
        return Ok(());
    }
    repo::set_email(
        tx,
        account.id,
        tombstone.as_ref(),
        &tombstone.normalized(),
        now_ms,
    )
    .await?;
    let change = Change::new("email", account.email.as_str(), tombstone.as_ref());
    audit_change(
        tx,
        actor,
        account.id,
        "account.release_email",
        vec![change],
        now_ms,
    )
    .await?;
    tracing::info!(account.id = %account.id, "Released the email of cancelled account {}", account.id);
    Ok(())
}
