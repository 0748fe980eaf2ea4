//! Whose data a request is about: the caller's own account, or — for a manager naming one
//! with `filter[account_id]` — one of its managed accounts. Another manager's account is a
//! 404, like one that does not exist; a non-manager naming another account is a 403.

use super::AppState;
use super::error::ApiError;
use super::extract::{Caller, account_id};
use crate::accounts::{self, Account};

/// The account named by `filter[account_id]` (the caller's own when absent or its own id).
pub async fn own_or_managed(
    state: &AppState,
    caller: &Caller,
    filter_account_id: Option<&str>,
) -> Result<Account, ApiError> {
    match filter_account_id {
        None => Ok(caller.account.clone()),
        Some(id) if id == caller.account.id.to_string() => Ok(caller.account.clone()),
        Some(id) => {
            accounts::ensure_manager(&caller.account)?;
            let (managed, _) =
                accounts::managed_account(&state.db, &caller.account, account_id(id)?).await?;
            Ok(managed)
        }
    }
}
