//! SQL for accounts. Functions take an executor or transaction, never a pool they open.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use super::listing::{
    ManagedAccountFilter, PageRequest, Sort, SortKey, StatusFilter, contains_pattern,
};
use super::types::{Account, AccountId, AccountKind, AccountStatus};

/// Columns of an account row, for `SELECT … FROM accounts a`.
pub const ACCOUNT_COLUMNS: &str = "a.id, a.email, a.organization_name, a.kind, a.manager_id, \
    a.status, a.managed_account_allow_custom_pricing, a.rollup_billing, a.max_managed_accounts, \
    a.allocatable_channels, a.channel_limit, CASE WHEN a.password_hash IS NULL THEN 0 ELSE 1 END AS has_password, \
    a.created_at_ms, a.updated_at_ms";

fn corrupt(column: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: format!("unexpected value in accounts.{column}").into(),
    }
}

fn parse_id(text: &str, column: &str) -> Result<AccountId, sqlx::Error> {
    AccountId::parse(text).ok_or_else(|| corrupt(column))
}

/// Decodes an account from a row selected with [`ACCOUNT_COLUMNS`].
pub fn account_from_row(row: &AnyRow) -> Result<Account, sqlx::Error> {
    let manager_id: Option<String> = row.try_get("manager_id")?;
    let has_password: i64 = row.try_get("has_password")?;
    Ok(Account {
        id: parse_id(&row.try_get::<String, _>("id")?, "id")?,
        email: row.try_get("email")?,
        organization_name: row.try_get("organization_name")?,
        kind: AccountKind::from_db(&row.try_get::<String, _>("kind")?)
            .ok_or_else(|| corrupt("kind"))?,
        manager_id: manager_id
            .map(|id| parse_id(&id, "manager_id"))
            .transpose()?,
        status: AccountStatus::from_db(&row.try_get::<String, _>("status")?)
            .ok_or_else(|| corrupt("status"))?,
        managed_account_allow_custom_pricing: row
            .try_get::<i64, _>("managed_account_allow_custom_pricing")?
            != 0,
        rollup_billing: row.try_get::<i64, _>("rollup_billing")? != 0,
        max_managed_accounts: row.try_get("max_managed_accounts")?,
        allocatable_channels: row.try_get("allocatable_channels")?,
        channel_limit: row.try_get("channel_limit")?,
        has_password: has_password != 0,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// A new account row.
pub struct NewAccountRow<'a> {
    pub id: AccountId,
    pub email: &'a str,
    pub email_normalized: &'a str,
    pub organization_name: &'a str,
    pub organization_name_folded: &'a str,
    pub password_hash: Option<&'a str>,
    pub kind: AccountKind,
    pub manager_id: Option<AccountId>,
    pub managed_account_allow_custom_pricing: bool,
    pub rollup_billing: bool,
    pub max_managed_accounts: i64,
    pub allocatable_channels: i64,
    pub now_ms: i64,
}

/// Inserts an account (status `active`).
pub async fn insert(conn: &mut AnyConnection, row: &NewAccountRow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO accounts (id, email, email_normalized, organization_name, \
         organization_name_folded, password_hash, kind, manager_id, status, \
         managed_account_allow_custom_pricing, rollup_billing, max_managed_accounts, \
         allocatable_channels, channel_limit, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $10, $11, $12, 0, $13, $13)",
    )
    .bind(row.id.to_string())
    .bind(row.email)
    .bind(row.email_normalized)
    .bind(row.organization_name)
    .bind(row.organization_name_folded)
    .bind(row.password_hash)
    .bind(row.kind.as_str())
    .bind(row.manager_id.map(|id| id.to_string()))
    .bind(i64::from(row.managed_account_allow_custom_pricing))
    .bind(i64::from(row.rollup_billing))
    .bind(row.max_managed_accounts)
    .bind(row.allocatable_channels)
    .bind(row.now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Fetches one account by id.
pub async fn find(conn: &mut AnyConnection, id: AccountId) -> Result<Option<Account>, sqlx::Error> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(account_from_row).transpose()
}

/// Fetches the account holding an email (by its unique key) and its password hash, for
/// signing in. The hash leaves the repository only here.
pub async fn find_for_sign_in(
    conn: &mut AnyConnection,
    email_normalized: &str,
) -> Result<Option<(Account, Option<String>)>, sqlx::Error> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS}, a.password_hash FROM accounts a WHERE a.email_normalized = $1"
    );
    let row = sqlx::query(&sql)
        .bind(email_normalized)
        .fetch_optional(conn)
        .await?;
    row.map(|row| Ok((account_from_row(&row)?, row.try_get("password_hash")?)))
        .transpose()
}

/// An account's password hash, if it has one.
pub async fn password_hash(
    conn: &mut AnyConnection,
    id: AccountId,
) -> Result<Option<String>, sqlx::Error> {
    let hash: Option<Option<String>> =
        sqlx::query_scalar("SELECT password_hash FROM accounts WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(conn)
            .await?;
    Ok(hash.flatten())
}

/// Fetches a managed account of `manager_id`, with the public id of its newest live key.
pub async fn find_managed(
    conn: &mut AnyConnection,
    manager_id: AccountId,
    id: AccountId,
) -> Result<Option<(Account, Option<String>)>, sqlx::Error> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS}, (SELECT k.id FROM api_keys k WHERE k.account_id = a.id \
         AND k.revoked_at_ms IS NULL ORDER BY k.created_at_ms DESC, k.id DESC LIMIT 1) AS api_key_id \
         FROM accounts a WHERE a.id = $1 AND a.manager_id = $2"
    );
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(manager_id.to_string())
        .fetch_optional(conn)
        .await?;
    row.map(|row| Ok((account_from_row(&row)?, row.try_get("api_key_id")?)))
        .transpose()
}

/// Takes the manager's row lock for the rest of the transaction, so that checks over all of
/// its managed accounts (limits, channel pool) are serialised across processes. Returns
/// false if the account does not exist.
pub async fn lock(conn: &mut AnyConnection, id: AccountId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE accounts SET updated_at_ms = updated_at_ms WHERE id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// An account read under its row lock, with its manager's channel pool.
#[derive(Debug, Clone)]
pub struct Locked {
    /// The account.
    pub account: Account,
    /// Its manager's allocatable channels (0 without a manager, or without a pool).
    pub manager_pool: i64,
}

/// Takes the row locks of `ids` for the rest of the transaction, in id order (so that two
/// transactions locking overlapping sets never wait on each other in a cycle), and reads
/// each account with its manager's channel pool. Unknown ids are absent.
pub async fn lock_many(
    conn: &mut AnyConnection,
    ids: &[AccountId],
) -> Result<HashMap<AccountId, Locked>, sqlx::Error> {
    let mut found = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(found);
    }
    let mut sorted: Vec<String> = ids.iter().map(ToString::to_string).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let list = crate::db::placeholders(1, sorted.len());
    fn bind<'q>(
        sql: &'q str,
        ids: &'q [String],
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        let mut query = sqlx::query::<Any>(sql).persistent(false);
        for id in ids {
            query = query.bind(id.as_str());
        }
        query
    }
    let sqlite = conn.backend_name() == "SQLite";
    if sqlite {
        // SQLite has no row locks: the first write takes the database's write lock, before
        // anything is read, so the reads below cannot go stale.
        let sql = format!("UPDATE accounts SET updated_at_ms = updated_at_ms WHERE id IN ({list})");
        bind(&sql, &sorted).execute(&mut *conn).await?;
    }
    // PostgreSQL locks the rows as they leave the sort, so in id order.
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS}, COALESCE(m.allocatable_channels, 0) AS manager_pool \
         FROM accounts a LEFT JOIN accounts m ON m.id = a.manager_id WHERE a.id IN ({list}) \
         ORDER BY a.id{}",
        if sqlite { "" } else { " FOR UPDATE OF a" }
    );
    for row in bind(&sql, &sorted).fetch_all(&mut *conn).await? {
        let account = account_from_row(&row)?;
        let manager_pool = row.try_get("manager_pool")?;
        found.insert(
            account.id,
            Locked {
                account,
                manager_pool,
            },
        );
    }
    Ok(found)
}

/// Like [`lock`], for a managed account of `manager_id` only (another's row is left alone).
pub async fn lock_managed(
    conn: &mut AnyConnection,
    manager_id: AccountId,
    id: AccountId,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE accounts SET updated_at_ms = updated_at_ms WHERE id = $1 AND manager_id = $2",
    )
    .bind(id.to_string())
    .bind(manager_id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Managed accounts of a manager that count against its limit (all but cancelled ones).
pub async fn count_live_managed(
    conn: &mut AnyConnection,
    manager_id: AccountId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM accounts WHERE manager_id = $1 AND status <> 'cancelled'",
    )
    .bind(manager_id.to_string())
    .fetch_one(conn)
    .await
}

/// Ids of a manager's managed accounts that are not cancelled.
pub async fn live_managed_ids(
    conn: &mut AnyConnection,
    manager_id: AccountId,
) -> Result<Vec<AccountId>, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM accounts WHERE manager_id = $1 AND status <> 'cancelled' ORDER BY id",
    )
    .bind(manager_id.to_string())
    .fetch_all(conn)
    .await?;
    ids.iter().map(|id| parse_id(id, "id")).collect()
}

/// Channels allocated across a manager's managed accounts, leaving out `except` if given.
pub async fn channels_allocated(
    conn: &mut AnyConnection,
    manager_id: AccountId,
    except: Option<AccountId>,
) -> Result<i64, sqlx::Error> {
    // SUM over BIGINT is NUMERIC on PostgreSQL, which the Any driver cannot carry: cast back.
    sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(channel_limit), 0) AS BIGINT) FROM accounts \
         WHERE manager_id = $1 AND status <> 'cancelled' AND id <> $2",
    )
    .bind(manager_id.to_string())
    .bind(except.map(|id| id.to_string()).unwrap_or_default())
    .fetch_one(conn)
    .await
}

/// One settable column of an account; the names are fixed here, never taken from input.
#[derive(Debug, Clone, Copy)]
pub enum Column {
    /// `status` (text).
    Status,
    /// `kind` (text).
    Kind,
    /// `managed_account_allow_custom_pricing` (0/1).
    AllowCustomPricing,
    /// `max_managed_accounts`.
    MaxManagedAccounts,
    /// `allocatable_channels`.
    AllocatableChannels,
    /// `channel_limit`.
    ChannelLimit,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Kind => "kind",
            Self::AllowCustomPricing => "managed_account_allow_custom_pricing",
            Self::MaxManagedAccounts => "max_managed_accounts",
            Self::AllocatableChannels => "allocatable_channels",
            Self::ChannelLimit => "channel_limit",
        }
    }
}

/// A value for [`set`].
#[derive(Debug, Clone)]
pub enum Value {
    /// Text.
    Text(&'static str),
    /// Integer.
    Int(i64),
}

/// Sets one column and `updated_at_ms`.
pub async fn set(
    conn: &mut AnyConnection,
    id: AccountId,
    column: Column,
    value: Value,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE accounts SET {} = $1, updated_at_ms = $2 WHERE id = $3",
        column.name()
    );
    let query = sqlx::query(&sql);
    let query = match value {
        Value::Text(text) => query.bind(text),
        Value::Int(n) => query.bind(n),
    };
    query
        .bind(now_ms)
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Changes the email (and its unique key).
pub async fn set_email(
    conn: &mut AnyConnection,
    id: AccountId,
    email: &str,
    email_normalized: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts SET email = $1, email_normalized = $2, updated_at_ms = $3 WHERE id = $4",
    )
    .bind(email)
    .bind(email_normalized)
    .bind(now_ms)
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the password hash (an argon2id PHC string).
pub async fn set_password_hash(
    conn: &mut AnyConnection,
    id: AccountId,
    hash: Option<&str>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET password_hash = $1, updated_at_ms = $2 WHERE id = $3")
        .bind(hash)
        .bind(now_ms)
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Changes the organization name (and its folded form).
pub async fn set_organization_name(
    conn: &mut AnyConnection,
    id: AccountId,
    name: &str,
    folded: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts SET organization_name = $1, organization_name_folded = $2, \
         updated_at_ms = $3 WHERE id = $4",
    )
    .bind(name)
    .bind(folded)
    .bind(now_ms)
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Cancels every managed account of a manager.
pub async fn cancel_all_managed(
    conn: &mut AnyConnection,
    manager_id: AccountId,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE accounts SET status = 'cancelled', channel_limit = 0, updated_at_ms = $1 \
         WHERE manager_id = $2 AND status <> 'cancelled'",
    )
    .bind(now_ms)
    .bind(manager_id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Bind values of a dynamically built query.
enum Arg {
    Text(String),
}

/// The `FROM` and `WHERE` clauses and their arguments for a manager's filtered list.
///
/// `contains` filters are `LIKE` on the folded columns on both engines, which defines the
/// results. PostgreSQL serves them from its trigram indexes by itself; on SQLite the FTS5
/// trigram table (migration 0015) narrows the rows first, by the same substrings, and
/// `LIKE` then keeps exactly the matches.
fn list_source(
    conn: &AnyConnection,
    manager_id: AccountId,
    filter: &ManagedAccountFilter,
) -> (String, String, Vec<Arg>) {
    let mut args = vec![Arg::Text(manager_id.to_string())];
    let mut clause = String::from("a.manager_id = $1");
    let mut from = String::from("accounts a");
    let sqlite = conn.backend_name() == "SQLite";
    if let Some(query) = trigram_query(filter).filter(|_| sqlite) {
        args.push(Arg::Text(query));
        // CROSS JOIN fixes the order: from the index's matches to their accounts, rather
        // than through all of the manager's accounts.
        from = String::from("account_search CROSS JOIN account_search_ids i CROSS JOIN accounts a");
        clause = format!(
            "account_search MATCH ${} AND i.search_id = account_search.rowid \
             AND a.id = i.account_id AND {clause}",
            args.len()
        );
    }
    let like = " ESCAPE '\\'";
    let mut push = |condition: &str, arg: String, suffix: &str| {
        args.push(Arg::Text(arg));
        clause.push_str(&format!(" AND {condition}${}{suffix}", args.len()));
    };
    if let Some(text) = &filter.email_contains {
        push("a.email_normalized LIKE ", contains_pattern(text), like);
    }
    if let Some(text) = &filter.email_eq {
        push("a.email_normalized = ", text.clone(), "");
    }
    if let Some(text) = &filter.organization_name_contains {
        push(
            "a.organization_name_folded LIKE ",
            contains_pattern(text),
            like,
        );
    }
    if let Some(text) = &filter.organization_name_eq {
        push("a.organization_name = ", text.clone(), "");
    }
    let fixed = match filter.status {
        StatusFilter::NotCancelled => " AND a.status <> 'cancelled'",
        StatusFilter::All => "",
        StatusFilter::Enabled => " AND a.status = 'active'",
        StatusFilter::Only(status) => {
            push("a.status = ", status.as_str().to_owned(), "");
            ""
        }
    };
    clause.push_str(fixed);
    (from, clause, args)
}

/// Whether the list is planned afresh for each call (an unnamed statement) rather than from
/// a cached prepared statement: on PostgreSQL with a `contains` needle, whose generic plan
/// cannot see the pattern, judges the trigram index not worth it and scans all of the
/// manager's accounts (measured: 62 ms instead of 0.3 ms over 100,000 accounts). SQLite's
/// plan does not depend on the values.
fn planned_per_call(conn: &AnyConnection, filter: &ManagedAccountFilter) -> bool {
    conn.backend_name() != "SQLite"
        && (filter.email_contains.is_some() || filter.organization_name_contains.is_some())
}

/// The FTS5 query for the filter's `contains` needles (each a phrase in its column, which
/// the trigram tokenizer matches as a substring), if it has any the index can serve (a
/// needle of fewer than three characters has no trigram).
pub(crate) fn trigram_query(filter: &ManagedAccountFilter) -> Option<String> {
    let needles = [
        ("email_normalized", &filter.email_contains),
        (
            "organization_name_folded",
            &filter.organization_name_contains,
        ),
    ];
    let mut terms = Vec::new();
    for (column, needle) in needles {
        let Some(needle) = needle else { continue };
        if needle.chars().count() < 3 {
            return None;
        }
        terms.push(format!("{column} : \"{}\"", needle.replace('"', "\"\"")));
    }
    (!terms.is_empty()).then(|| terms.join(" AND "))
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for arg in args {
        query = match arg {
            Arg::Text(text) => query.bind(text),
        };
    }
    query
}

/// Counts a manager's accounts matching `filter`.
pub async fn count_managed(
    conn: &mut AnyConnection,
    manager_id: AccountId,
    filter: &ManagedAccountFilter,
) -> Result<i64, sqlx::Error> {
    let (from, clause, args) = list_source(conn, manager_id, filter);
    let per_call = planned_per_call(conn, filter);
    let sql = format!("SELECT COUNT(*) FROM {from} WHERE {clause}");
    let row = bind_all(sqlx::query(&sql), args)
        .persistent(!per_call)
        .fetch_one(conn)
        .await?;
    row.try_get(0)
}

/// One page of a manager's accounts matching `filter`, in `sort` order (ties by id), with
/// the total count of matches when the page is not empty (one scan instead of two).
pub async fn list_managed(
    conn: &mut AnyConnection,
    manager_id: AccountId,
    filter: &ManagedAccountFilter,
    sort: Sort,
    page: PageRequest,
) -> Result<(Vec<Account>, Option<i64>), sqlx::Error> {
    let (from, clause, args) = list_source(conn, manager_id, filter);
    let per_call = planned_per_call(conn, filter);
    let direction = if sort.descending { "DESC" } else { "ASC" };
    let key = match sort.key {
        SortKey::CreatedAt => "a.created_at_ms",
        SortKey::Email => "a.email_normalized",
    };
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS}, COUNT(*) OVER () AS total_results FROM {from} WHERE {clause} \
         ORDER BY {key} {direction}, a.id {direction} LIMIT {} OFFSET {}",
        page.size(),
        page.offset()
    );
    let rows = bind_all(sqlx::query(&sql), args)
        .persistent(!per_call)
        .fetch_all(conn)
        .await?;
    let total = rows
        .first()
        .map(|row| row.try_get("total_results"))
        .transpose()?;
    let accounts = rows
        .iter()
        .map(account_from_row)
        .collect::<Result<_, _>>()?;
    Ok((accounts, total))
}

/// Re-keys emails stored before keys mapped domains to one ASCII form (UTS-46), once per
/// database: the first process to claim the run does it in the same transaction. An
/// account whose new key is already taken by another keeps its old key (two accounts
/// would otherwise share one mailbox) and is named in the returned list for the operator.
pub async fn rekey_legacy_emails(
    conn: &mut AnyConnection,
    now_ms: i64,
) -> Result<Vec<AccountId>, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO maintenance_runs (name, ran_at_ms) VALUES ('email_keys_uts46', $1) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(now_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        return Ok(Vec::new());
    }
    let rows = sqlx::query("SELECT id, email, email_normalized FROM accounts")
        .fetch_all(&mut *conn)
        .await?;
    let mut conflicts = Vec::new();
    for row in rows {
        let (id, email, key): (String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        // Only addresses that still parse can be re-keyed; others keep what they have.
        let Ok(parsed) = super::Email::parse(&email) else {
            continue;
        };
        if parsed.normalized() == key {
            continue;
        }
        let taken: Option<String> =
            sqlx::query_scalar("SELECT id FROM accounts WHERE email_normalized = $1")
                .bind(parsed.normalized())
                .fetch_optional(&mut *conn)
                .await?;
        if taken.is_some() {
            conflicts.push(parse_id(&id, "id")?);
            continue;
        }
        sqlx::query("UPDATE accounts SET email_normalized = $1 WHERE id = $2")
            .bind(parsed.normalized())
            .bind(&id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(conflicts)
}
