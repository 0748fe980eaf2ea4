//! SQL for account API keys.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::KeyRecord;
use crate::accounts::listing::PageRequest;
use crate::accounts::repo::{ACCOUNT_COLUMNS, account_from_row};
use crate::accounts::{Account, AccountId};
use crate::keys::MintedKey;

/// Inserts a freshly minted key.
pub async fn insert(
    conn: &mut AnyConnection,
    key: &MintedKey,
    account_id: AccountId,
    created_by: Option<AccountId>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, secret_sha256, created_by_account_id, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(key.id())
    .bind(account_id.to_string())
    .bind(key.digest())
    .bind(created_by.map(|id| id.to_string()))
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// The account behind a live key with this digest, and the key's id.
pub async fn find_account_by_digest(
    conn: &mut AnyConnection,
    digest: &str,
) -> Result<Option<(Account, String)>, sqlx::Error> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS}, k.id AS key_id FROM api_keys k \
         JOIN accounts a ON a.id = k.account_id \
         WHERE k.secret_sha256 = $1 AND k.revoked_at_ms IS NULL"
    );
    let row = sqlx::query(&sql).bind(digest).fetch_optional(conn).await?;
    row.map(|row| Ok((account_from_row(&row)?, row.try_get("key_id")?)))
        .transpose()
}

/// Live keys of an account.
pub async fn count_live(
    conn: &mut AnyConnection,
    account_id: AccountId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE account_id = $1 AND revoked_at_ms IS NULL",
    )
    .bind(account_id.to_string())
    .fetch_one(conn)
    .await
}

const KEY_COLUMNS: &str = "id, account_id, created_by_account_id, created_at_ms, revoked_at_ms";

fn record_from_row(row: &AnyRow) -> Result<KeyRecord, sqlx::Error> {
    let parse = |column: &str, text: String| {
        AccountId::parse(&text).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: "not a UUID".into(),
        })
    };
    let created_by: Option<String> = row.try_get("created_by_account_id")?;
    Ok(KeyRecord {
        id: row.try_get("id")?,
        account_id: parse("account_id", row.try_get("account_id")?)?,
        created_by_account_id: created_by
            .map(|id| parse("created_by_account_id", id))
            .transpose()?,
        created_at_ms: row.try_get("created_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

/// All keys of an account, revoked ones included.
pub async fn count_all(
    conn: &mut AnyConnection,
    account_id: AccountId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE account_id = $1")
        .bind(account_id.to_string())
        .fetch_one(conn)
        .await
}

/// One page of an account's keys, newest first.
pub async fn list(
    conn: &mut AnyConnection,
    account_id: AccountId,
    page: PageRequest,
) -> Result<Vec<KeyRecord>, sqlx::Error> {
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 \
         ORDER BY created_at_ms DESC, id DESC LIMIT {} OFFSET {}",
        page.size(),
        page.offset()
    );
    let rows = sqlx::query(&sql)
        .bind(account_id.to_string())
        .fetch_all(conn)
        .await?;
    rows.iter().map(record_from_row).collect()
}

/// One key of an account.
pub async fn find(
    conn: &mut AnyConnection,
    account_id: AccountId,
    key_id: &str,
) -> Result<Option<KeyRecord>, sqlx::Error> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 AND id = $2");
    let row = sqlx::query(&sql)
        .bind(account_id.to_string())
        .bind(key_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(record_from_row).transpose()
}

/// Marks a live key revoked; false if there was no such live key.
pub async fn revoke(
    conn: &mut AnyConnection,
    account_id: AccountId,
    key_id: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at_ms = $1 WHERE account_id = $2 AND id = $3 AND revoked_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(account_id.to_string())
    .bind(key_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every live key of `account_ids` (cancellation).
pub async fn revoke_all(
    conn: &mut AnyConnection,
    account_id: AccountId,
    include_managed: bool,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let sql = if include_managed {
        "UPDATE api_keys SET revoked_at_ms = $1 WHERE revoked_at_ms IS NULL AND (account_id = $2 \
         OR account_id IN (SELECT id FROM accounts WHERE manager_id = $2))"
    } else {
        "UPDATE api_keys SET revoked_at_ms = $1 WHERE revoked_at_ms IS NULL AND account_id = $2"
    };
    let done = sqlx::query(sql)
        .bind(now_ms)
        .bind(account_id.to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
