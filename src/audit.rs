//! The audit trail of operator actions on money and pricing.

use sqlx::AnyConnection;

use crate::accounts::AccountId;

/// Appends one audit event in the caller's transaction, so the record exists exactly when
/// the action does.
pub async fn record(
    conn: &mut AnyConnection,
    actor: &str,
    action: &str,
    account: Option<AccountId>,
    details: &serde_json::Value,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_events (id, actor, action, account_id, details, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(actor)
    .bind(action)
    .bind(account.map(|a| a.to_string()))
    .bind(details.to_string())
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}
