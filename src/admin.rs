//! `steward admin …`: operator verbs on the database. Each prints one JSON object.

use anyhow::Context;
use serde_json::{Value, json};

use crate::accounts::{
    self, Account, AccountError, AccountId, Email, NewAccount, OrganizationName, operator,
};
use crate::cli::AdminCommand;
use crate::clock::{ClockHandle, from_epoch_ms, to_wire};
use crate::db::Db;

/// The JSON printed for an account.
pub fn account_json(account: &Account) -> Value {
    json!({
        "id": account.id.to_string(),
        "email": account.email,
        "organization_name": account.organization_name,
        "kind": account.kind.as_str(),
        "status": account.status.as_str(),
        "manager_account_id": account.manager_id.map(|id| id.to_string()),
        "max_managed_accounts": account.max_managed_accounts,
        "allocatable_channels": account.allocatable_channels,
        "created_at": to_wire(from_epoch_ms(account.created_at_ms)),
        "updated_at": to_wire(from_epoch_ms(account.updated_at_ms)),
    })
}

fn account_id(text: &str) -> anyhow::Result<AccountId> {
    AccountId::parse(text).with_context(|| format!("'{text}' is not an account id (a UUID)"))
}

fn explain(error: AccountError) -> anyhow::Error {
    match error {
        AccountError::Database(e) => anyhow::Error::new(e).context("Failed to update the database"),
        AccountError::Internal(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}

/// Runs one verb and returns what to print.
pub async fn run(db: &Db, clock: &ClockHandle, command: AdminCommand) -> anyhow::Result<Value> {
    let account = match command {
        AdminCommand::CreateAccount {
            email,
            business_name,
            manager,
            max_managed_accounts,
            allocatable_channels,
        } => {
            let new = NewAccount {
                email: Email::parse(&email).context("--email")?,
                organization_name: OrganizationName::parse(&business_name)
                    .context("--business-name")?,
                manager,
                max_managed_accounts,
                allocatable_channels,
            };
            let (account, key) = accounts::create_account(db, clock, new)
                .await
                .map_err(explain)?;
            let mut out = account_json(&account);
            if let Some(fields) = out.as_object_mut() {
                fields.insert("api_key".to_owned(), Value::from(key.secret()));
            }
            return Ok(out);
        }
        AdminCommand::ApproveManager { account } => {
            operator::approve_manager(db, clock, account_id(&account)?).await
        }
        AdminCommand::RevokeManager { account } => {
            operator::revoke_manager(db, clock, account_id(&account)?).await
        }
        AdminCommand::SetManagedAccountLimit { account, limit } => {
            operator::set_managed_account_limit(db, clock, account_id(&account)?, limit).await
        }
        AdminCommand::SetChannelPool { account, channels } => {
            operator::set_channel_pool(db, clock, account_id(&account)?, channels).await
        }
        AdminCommand::CancelAccount {
            account,
            include_managed,
        } => operator::cancel_account(db, clock, account_id(&account)?, include_managed).await,
    };
    Ok(account_json(&account.map_err(explain)?))
}
