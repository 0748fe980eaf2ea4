//! Service keys: the operator API's keys and the network elements' ingest keys.
//! Same format and storage rule as account keys (shown once, SHA-256 at rest).

use sqlx::Row;

use super::{MintedKey, digest};
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;

/// What a service key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// The operator API (`/admin/v1`).
    Operator,
    /// Usage ingestion and call admission.
    Ingest,
}

impl ServiceKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Ingest => "ingest",
        }
    }
}

/// Mints a service key of `kind`.
pub async fn mint(
    db: &Db,
    clock: &ClockHandle,
    kind: ServiceKind,
) -> Result<MintedKey, sqlx::Error> {
    let key = MintedKey::generate();
    sqlx::query(
        "INSERT INTO service_keys (id, kind, secret_sha256, created_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(key.id())
    .bind(kind.as_str())
    .bind(key.digest())
    .bind(to_epoch_ms(clock.now()))
    .execute(&db.write)
    .await?;
    Ok(key)
}

/// The id of the live service key of `kind` matching `presented`, if any.
pub async fn authenticate(
    db: &Db,
    presented: &str,
    kind: ServiceKind,
) -> Result<Option<String>, sqlx::Error> {
    if !super::plausible(presented) {
        return Ok(None);
    }
    let row = sqlx::query("SELECT id FROM service_keys WHERE secret_sha256 = $1 AND kind = $2 AND revoked_at_ms IS NULL")
        .bind(digest(presented))
        .bind(kind.as_str())
        .fetch_optional(&db.read)
        .await?;
    row.map(|r| r.try_get("id")).transpose()
}

/// Revokes the live service key `key_id` in the caller's transaction; false if there is no
/// such live key. (Servers cache service keys: the caller moves the access counter.)
pub async fn revoke(
    conn: &mut sqlx::AnyConnection,
    key_id: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE service_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(key_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
