//! Suspense: usage events that were well-formed but could not be charged when they arrived.
//!
//! Such an event (no price list in force for its account at `occurred_at`, no rate for its
//! product and destination, an account id naming no account) is kept here once per event
//! id, in the batch's transaction, and answered `suspended`: the sender must not resend it,
//! and nothing it reported is lost. A resend refreshes the row (its fields as last sent, its
//! reason, `last_seen_at_ms`, `seen_count`). Re-rating ([`super::rerate_suspended`]) charges
//! what can now be charged through the ingestion path, and the row leaves suspense in the
//! charging transaction.
//!
//! Exactly-once rests on `usage_records`' key, not on this table: an event id is charged at
//! most once whatever is here. On PostgreSQL a batch charging an id and another suspending
//! the same id can commit side by side (neither sees the other's uncommitted row); the row
//! left in suspense then names an event already charged. Every read here skips such rows
//! and a re-rating removes them, so they are never shown, counted or charged again.

use std::collections::{BTreeMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::UsageEvent;
use crate::accounts::AccountId;
use crate::accounts::listing::PageRequest;
use crate::db::JsonColumn::{BigInt, Text};
use crate::db::{Db, json_rows_select};
use crate::pricing::Product;

/// Why an event is in suspense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SuspendReason {
    /// No price list in force for the account at `occurred_at`.
    NoPriceList,
    /// The account's list has no rate for the product and destination.
    NoRate,
    /// The account id is a UUID naming no account.
    UnknownAccount,
}

impl SuspendReason {
    /// Every reason, in the order they are listed.
    pub const ALL: [SuspendReason; 3] = [
        SuspendReason::NoPriceList,
        SuspendReason::NoRate,
        SuspendReason::UnknownAccount,
    ];

    /// The `reason_code` on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SuspendReason::NoPriceList => "no_price_list",
            SuspendReason::NoRate => "no_rate",
            SuspendReason::UnknownAccount => "unknown_account",
        }
    }

    /// A reason from its code.
    pub fn parse(text: &str) -> Option<SuspendReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The codes, for messages that list them.
    pub fn codes() -> String {
        Self::ALL
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A sentence for the sender.
    pub fn description(self) -> &'static str {
        match self {
            SuspendReason::NoPriceList => {
                "no price list applies to this account at occurred_at; kept in suspense until \
                 pricing is fixed"
            }
            SuspendReason::NoRate => {
                "the account's price list has no rate for this product and destination; kept \
                 in suspense until pricing is fixed"
            }
            SuspendReason::UnknownAccount => {
                "account_id names no account; kept in suspense until the account exists"
            }
        }
    }
}

/// An event in suspense, as stored.
#[derive(Debug, Clone)]
pub struct SuspendedEvent {
    /// Event id.
    pub event_id: String,
    /// Why it could not be charged (when last rated).
    pub reason: SuspendReason,
    /// The account id as sent (a UUID).
    pub account_id: String,
    /// Product.
    pub product: Product,
    /// E.164 digits.
    pub destination: String,
    /// Quantity as sent.
    pub quantity: i64,
    /// When it happened.
    pub occurred_at_ms: i64,
    /// Its admission lease, if any.
    pub lease_id: Option<String>,
    /// First arrival.
    pub first_seen_at_ms: i64,
    /// Latest arrival.
    pub last_seen_at_ms: i64,
    /// Arrivals in all.
    pub seen_count: i64,
}

impl SuspendedEvent {
    /// The event to rate again; `None` if the stored row is not one (never written so).
    pub fn to_event(&self) -> Option<UsageEvent> {
        Some(UsageEvent {
            id: self.event_id.clone(),
            account_id: AccountId::parse(&self.account_id)?,
            product: self.product,
            destination: self.destination.clone(),
            quantity: self.quantity,
            occurred_at_ms: self.occurred_at_ms,
            lease_id: self.lease_id.clone(),
        })
    }
}

/// What to read from suspense.
#[derive(Debug, Clone, Copy, Default)]
pub struct SuspenseFilter {
    /// Only this reason.
    pub reason: Option<SuspendReason>,
    /// Only this account id.
    pub account: Option<AccountId>,
}

/// Rows of suspense that still wait: those whose id was charged meanwhile are not.
const WAITING: &str =
    "NOT EXISTS (SELECT 1 FROM usage_records u WHERE u.event_id = suspended_usage.event_id)";

fn encode<T: serde::Serialize>(rows: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows)
        .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode suspense rows: {e}")))
}

/// Stores (or refreshes) events that arrived and could not be rated: a new id is inserted,
/// a known one takes the fields and reason of this arrival, its `last_seen_at_ms` and one
/// more `seen_count`. `events` hold distinct ids.
pub async fn record_arrivals(
    conn: &mut AnyConnection,
    events: &[(&UsageEvent, SuspendReason)],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let columns = [
        Text, Text, Text, Text, Text, BigInt, BigInt, Text, BigInt, BigInt, BigInt,
    ];
    #[derive(serde::Serialize)]
    struct Row<'a>(
        &'a str,
        &'a str,
        String,
        &'a str,
        &'a str,
        i64,
        i64,
        Option<&'a str>,
        i64,
        i64,
        i64,
    );
    let rows: Vec<Row<'_>> = events
        .iter()
        .map(|(e, reason)| {
            Row(
                e.id.as_str(),
                reason.as_str(),
                e.account_id.to_string(),
                e.product.as_str(),
                e.destination.as_str(),
                e.quantity,
                e.occurred_at_ms,
                e.lease_id.as_deref(),
                now_ms,
                now_ms,
                1,
            )
        })
        .collect();
    // Ordered by event id, like the usage records, so that two batches take row locks in
    // the same order on PostgreSQL.
    let sql = format!(
        "INSERT INTO suspended_usage (event_id, reason, account_id, product, destination, \
         quantity, occurred_at_ms, lease_id, first_seen_at_ms, last_seen_at_ms, seen_count) \
         {} ORDER BY 1 \
         ON CONFLICT (event_id) DO UPDATE SET reason = excluded.reason, \
         account_id = excluded.account_id, product = excluded.product, \
         destination = excluded.destination, quantity = excluded.quantity, \
         occurred_at_ms = excluded.occurred_at_ms, lease_id = excluded.lease_id, \
         last_seen_at_ms = excluded.last_seen_at_ms, \
         seen_count = suspended_usage.seen_count + 1",
        json_rows_select(conn, 1, &columns)
    );
    sqlx::query(&sql)
        .bind(encode(&rows)?)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Sets the reason found by a re-rating (not an arrival: the seen figures stay). A row
/// that left suspense meanwhile stays gone.
pub async fn update_reasons(
    conn: &mut AnyConnection,
    events: &[(&UsageEvent, SuspendReason)],
) -> Result<(), sqlx::Error> {
    for reason in SuspendReason::ALL {
        let ids: Vec<[&str; 1]> = events
            .iter()
            .filter(|(_, r)| *r == reason)
            .map(|(e, _)| [e.id.as_str()])
            .collect();
        if ids.is_empty() {
            continue;
        }
        let sql = format!(
            "UPDATE suspended_usage SET reason = $2 WHERE reason <> $2 AND event_id IN ({})",
            json_rows_select(conn, 1, &[Text])
        );
        sqlx::query(&sql)
            .bind(encode(&ids)?)
            .bind(reason.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Removes charged events from suspense, probing first whether it holds anything: it is
/// empty almost always, and the probe spares every batch a statement over all its ids.
/// For use after the transaction has written (on SQLite a read first could not be
/// upgraded to a write after another process wrote).
pub async fn remove_charged(
    conn: &mut AnyConnection,
    event_ids: &[&str],
) -> Result<(), sqlx::Error> {
    if event_ids.is_empty() {
        return Ok(());
    }
    let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM suspended_usage LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    if any.is_none() {
        return Ok(());
    }
    remove(conn, event_ids).await
}

/// Removes events from suspense (ids not there are no matter).
pub async fn remove(conn: &mut AnyConnection, event_ids: &[&str]) -> Result<(), sqlx::Error> {
    if event_ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<[&str; 1]> = event_ids.iter().map(|id| [*id]).collect();
    let sql = format!(
        "DELETE FROM suspended_usage WHERE event_id IN ({})",
        json_rows_select(conn, 1, &[Text])
    );
    sqlx::query(&sql)
        .bind(encode(&ids)?)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The ids among `event_ids` that were charged (now or ever).
pub async fn charged_among(
    conn: &mut AnyConnection,
    event_ids: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    if event_ids.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<[&str; 1]> = event_ids.iter().map(|id| [*id]).collect();
    let sql = format!(
        "SELECT event_id FROM usage_records WHERE event_id IN ({})",
        json_rows_select(conn, 1, &[Text])
    );
    let rows = sqlx::query(&sql)
        .bind(encode(&ids)?)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|row| row.try_get("event_id")).collect()
}

fn where_clause(filter: &SuspenseFilter) -> (String, Vec<String>) {
    let mut clause = String::from(WAITING);
    let mut binds = Vec::new();
    if let Some(reason) = filter.reason {
        binds.push(reason.as_str().to_owned());
        clause.push_str(&format!(" AND reason = ${}", binds.len()));
    }
    if let Some(account) = filter.account {
        binds.push(account.to_string());
        clause.push_str(&format!(" AND account_id = ${}", binds.len()));
    }
    (clause, binds)
}

const COLUMNS: &str = "event_id, reason, account_id, product, destination, quantity, \
    occurred_at_ms, lease_id, first_seen_at_ms, last_seen_at_ms, seen_count";

fn decode(row: &sqlx::any::AnyRow) -> Result<SuspendedEvent, sqlx::Error> {
    let bad = |column: &str, what: &str| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: what.to_owned().into(),
    };
    let reason: String = row.try_get("reason")?;
    let product: String = row.try_get("product")?;
    Ok(SuspendedEvent {
        event_id: row.try_get("event_id")?,
        reason: SuspendReason::parse(&reason).ok_or_else(|| bad("reason", "unknown reason"))?,
        account_id: row.try_get("account_id")?,
        product: Product::parse(&product).ok_or_else(|| bad("product", "unknown product"))?,
        destination: row.try_get("destination")?,
        quantity: row.try_get("quantity")?,
        occurred_at_ms: row.try_get("occurred_at_ms")?,
        lease_id: row.try_get("lease_id")?,
        first_seen_at_ms: row.try_get("first_seen_at_ms")?,
        last_seen_at_ms: row.try_get("last_seen_at_ms")?,
        seen_count: row.try_get("seen_count")?,
    })
}

/// One page of what waits in suspense, oldest first, and the total.
pub async fn list(
    conn: &mut AnyConnection,
    filter: &SuspenseFilter,
    page: PageRequest,
) -> Result<(Vec<SuspendedEvent>, i64), sqlx::Error> {
    let (clause, binds) = where_clause(filter);
    let count_sql = format!("SELECT COUNT(*) AS total FROM suspended_usage WHERE {clause}");
    let mut count = sqlx::query(&count_sql);
    for value in &binds {
        count = count.bind(value.as_str());
    }
    let total: i64 = count.fetch_one(&mut *conn).await?.try_get("total")?;
    let sql = format!(
        "SELECT {COLUMNS} FROM suspended_usage WHERE {clause} \
         ORDER BY first_seen_at_ms, event_id LIMIT {} OFFSET {}",
        page.size(),
        page.offset()
    );
    let mut query = sqlx::query(&sql);
    for value in &binds {
        query = query.bind(value.as_str());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let events = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok((events, total))
}

/// Up to `limit` waiting events with ids after `after`, in id order (a re-rating's walk:
/// rows that stay behind do not come back, rows charged meanwhile are skipped).
pub async fn next_chunk(
    conn: &mut AnyConnection,
    filter: &SuspenseFilter,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<SuspendedEvent>, sqlx::Error> {
    let (mut clause, mut binds) = where_clause(filter);
    if let Some(after) = after {
        binds.push(after.to_owned());
        clause.push_str(&format!(" AND event_id > ${}", binds.len()));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM suspended_usage WHERE {clause} ORDER BY event_id LIMIT {limit}"
    );
    let mut query = sqlx::query(&sql);
    for value in &binds {
        query = query.bind(value.as_str());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(decode).collect()
}

/// Ids in suspense whose event was charged meanwhile (see the module's note); a
/// re-rating removes them.
pub async fn charged_leftovers(
    conn: &mut AnyConnection,
    filter: &SuspenseFilter,
) -> Result<Vec<String>, sqlx::Error> {
    let (clause, binds) = where_clause(filter);
    let clause = clause.replacen("NOT EXISTS", "EXISTS", 1);
    let sql = format!("SELECT event_id FROM suspended_usage WHERE {clause}");
    let mut query = sqlx::query(&sql);
    for value in &binds {
        query = query.bind(value.as_str());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(|row| row.try_get("event_id")).collect()
}

/// Events waiting in suspense, by reason (every reason present, zero or not).
pub async fn counts_by_reason(db: &Db) -> Result<BTreeMap<SuspendReason, i64>, sqlx::Error> {
    let mut conn = db.read.acquire().await?;
    let sql = format!(
        "SELECT reason, COUNT(*) AS events FROM suspended_usage WHERE {WAITING} GROUP BY reason"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    let mut counts: BTreeMap<SuspendReason, i64> =
        SuspendReason::ALL.into_iter().map(|r| (r, 0)).collect();
    for row in rows {
        let reason: String = row.try_get("reason")?;
        if let Some(reason) = SuspendReason::parse(&reason) {
            counts.insert(reason, row.try_get("events")?);
        }
    }
    Ok(counts)
}
