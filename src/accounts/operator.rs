//! Operator actions on accounts: approval, limits, pools, cancellation.

use super::repo::{self, Column, Value};
use super::{Account, AccountError, AccountId, AccountKind, AccountStatus, commit_returning};
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

fn not_managed(account: &Account) -> Result<(), AccountError> {
    if account.kind == AccountKind::Managed {
        return Err(AccountError::NotAllowed(
            "a managed account cannot be a manager (one level only)".to_owned(),
        ));
    }
    Ok(())
}

/// Approves a standard account as a manager; approving a manager again changes nothing.
#[tracing::instrument(name = "steward.accounts.approve_manager", skip_all, fields(account.id = %id))]
pub async fn approve_manager(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
) -> Result<Account, AccountError> {
    set_kind(db, clock, id, AccountKind::Manager).await
}

/// Withdraws approval: the account becomes standard; its managed accounts stay bound to it
/// (they may not move) and it cannot act on them until approved again.
#[tracing::instrument(name = "steward.accounts.revoke_manager", skip_all, fields(account.id = %id))]
pub async fn revoke_manager(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
) -> Result<Account, AccountError> {
    set_kind(db, clock, id, AccountKind::Standard).await
}

async fn set_kind(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    kind: AccountKind,
) -> Result<Account, AccountError> {
    let mut tx = db.write.begin().await?;
    let account = find_for_update(&mut tx, id).await?;
    not_managed(&account)?;
    if account.status == AccountStatus::Cancelled {
        return Err(AccountError::Cancelled);
    }
    repo::set(
        &mut tx,
        id,
        Column::Kind,
        Value::Text(kind.as_str()),
        to_epoch_ms(clock.now()),
    )
    .await?;
    commit_returning(tx, id).await
}

/// Sets how many live managed accounts a manager may hold. Lowering it below the current
/// count is allowed: existing accounts stay, new ones are refused.
pub async fn set_managed_account_limit(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    limit: i64,
) -> Result<Account, AccountError> {
    set_manager_number(db, clock, id, Column::MaxManagedAccounts, limit).await
}

/// Sets a manager's channel pool. It may not drop below what is already allocated: the
/// allocations must never exceed the pool, so lower the accounts' limits first.
pub async fn set_channel_pool(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    channels: i64,
) -> Result<Account, AccountError> {
    set_manager_number(db, clock, id, Column::AllocatableChannels, channels).await
}

async fn set_manager_number(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    column: Column,
    value: i64,
) -> Result<Account, AccountError> {
    if value < 0 {
        return Err(AccountError::NotAllowed(
            "the value must not be negative".to_owned(),
        ));
    }
    let mut tx = db.write.begin().await?;
    let account = find_for_update(&mut tx, id).await?;
    not_managed(&account)?;
    if matches!(column, Column::AllocatableChannels) {
        // Re-read under the lock: allocations may have changed since the caller looked.
        let allocated = repo::channels_allocated(&mut tx, id, None).await?;
        if value < allocated {
            return Err(AccountError::NotAllowed(format!(
                "{allocated} channels are allocated to managed accounts; lower their channel limits before shrinking the pool below that"
            )));
        }
    }
    repo::set(
        &mut tx,
        id,
        column,
        Value::Int(value),
        to_epoch_ms(clock.now()),
    )
    .await?;
    commit_returning(tx, id).await
}

/// Cancels an account for good. A manager with live managed accounts is refused unless
/// `include_managed`, which cancels them in the same transaction.
#[tracing::instrument(name = "steward.accounts.cancel", skip_all, fields(account.id = %id))]
pub async fn cancel_account(
    db: &Db,
    clock: &ClockHandle,
    id: AccountId,
    include_managed: bool,
) -> Result<Account, AccountError> {
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.write.begin().await?;
    let account = find_for_update(&mut tx, id).await?;
    let live = repo::count_live_managed(&mut tx, id).await?;
    if live > 0 && !include_managed {
        return Err(AccountError::NotAllowed(format!(
            "the account has {live} managed accounts that are not cancelled; cancel them too with --include-managed"
        )));
    }
    if live > 0 {
        repo::cancel_all_managed(&mut tx, id, now_ms).await?;
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
    }
    let updated = commit_returning(tx, id).await?;
    tracing::info!(account.id = %id, "Cancelled account {id}");
    Ok(updated)
}
