//! Settings of the platform as a whole, kept in the database so that every server on it reads
//! the same value (a flag per server could disagree between two servers closing invoices).

use sqlx::AnyConnection;

use crate::accounts::OrganizationName;

/// The platform's name on invoices until the operator sets one.
pub const PLATFORM_NAME_DEFAULT: &str = "Steward";

/// Key of the platform's name in `platform_settings`.
const PLATFORM_NAME_KEY: &str = "platform_name";

/// The platform's name as invoices print it.
pub async fn name(conn: &mut AnyConnection) -> Result<String, sqlx::Error> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT value FROM platform_settings WHERE name = $1")
            .bind(PLATFORM_NAME_KEY)
            .fetch_optional(conn)
            .await?;
    Ok(stored.unwrap_or_else(|| PLATFORM_NAME_DEFAULT.to_owned()))
}

/// Sets the platform's name (same rules as a business name: 1 to 255 characters, no
/// control characters). Invoices already closed keep the name they were closed with.
pub async fn set_name(
    conn: &mut AnyConnection,
    name: &OrganizationName,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO platform_settings (name, value, updated_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(PLATFORM_NAME_KEY)
    .bind(name.as_ref())
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}
