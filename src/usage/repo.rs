//! SQL for rated usage and detail records.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::RatedRecord;
use crate::accounts::{AccountId, AccountKind};
use crate::pricing::PricingSubject;
use crate::pricing::Product;

/// Inserts records whose event id is new, in one statement; returns those ids.
/// `records` hold distinct event ids (the batch was de-duplicated before rating).
pub async fn insert_records(
    conn: &mut AnyConnection,
    records: &[&RatedRecord],
    entry_id: &str,
    now_ms: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    use crate::db::JsonColumn::{BigInt, Text};
    let columns = [
        Text, Text, Text, Text, Text, BigInt, BigInt, Text, Text, BigInt, BigInt, BigInt, Text,
        Text, BigInt, Text, Text,
    ];
    // One JSON array per row (serde writes tuple structs as arrays), in `columns` order.
    // Rows go in ordered by event id, so that on PostgreSQL two batches sharing ids take
    // their index locks in the same order and never deadlock.
    #[derive(serde::Serialize)]
    struct Row<'a>(
        &'a str,
        String,
        String,
        &'a str,
        &'a str,
        i64,
        i64,
        &'a str,
        &'a str,
        i64,
        i64,
        i64,
        Option<&'a str>,
        &'a str,
        i64,
        &'a str,
        &'a str,
    );
    let rows: Vec<Row<'_>> = records
        .iter()
        .map(|r| {
            let e = &r.event;
            Row(
                e.id.as_str(),
                e.account_id.to_string(),
                r.payer.to_string(),
                e.product.as_str(),
                e.destination.as_str(),
                e.quantity,
                r.billable_quantity,
                r.price_list_id.as_str(),
                r.rate_prefix.as_str(),
                r.rate_nanos,
                r.cost_nanos,
                e.occurred_at_ms,
                e.lease_id.as_deref(),
                entry_id,
                now_ms,
                r.destination.country_code.as_str(),
                r.destination.number_type,
            )
        })
        .collect();
    let json = serde_json::to_string(&rows)
        .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode usage rows: {e}")))?;
    let sql = format!(
        "INSERT INTO usage_records (event_id, account_id, payer_account_id, product, destination, \
         quantity, billable_quantity, price_list_id, rate_prefix, rate_nanos, cost_nanos, \
         occurred_at_ms, lease_id, entry_id, created_at_ms, country_code, number_type) {} ORDER BY 1 \
         ON CONFLICT (event_id) DO NOTHING",
        crate::db::json_rows_select(conn, 1, &columns)
    );
    let count = sqlx::query(&sql)
        .bind(json)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    // The usual case: every record was new, and there is nothing to read back.
    if usize::try_from(count).is_ok_and(|n| n == records.len()) {
        return Ok(records.iter().map(|r| r.event.id.clone()).collect());
    }
    // Some ids were charged before: the new rows are the batch's ids carrying this entry.
    let ids: Vec<[&str; 1]> = records.iter().map(|r| [r.event.id.as_str()]).collect();
    let ids = serde_json::to_string(&ids)
        .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode event ids: {e}")))?;
    let sql = format!(
        "SELECT event_id FROM usage_records WHERE entry_id = $2 AND event_id IN ({})",
        crate::db::json_rows_select(conn, 1, &[Text])
    );
    let rows = sqlx::query(&sql)
        .bind(ids)
        .bind(entry_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|row| row.try_get("event_id")).collect()
}

/// What rating needs to know of an account: how it is priced and who pays.
#[derive(Debug, Clone, Copy)]
pub struct Payee {
    /// Whose price list applies.
    pub subject: PricingSubject,
    /// Whose balance is charged (the manager's under rollup billing).
    pub payer: AccountId,
}

/// The payees of a batch's accounts, in one query; unknown ids are simply absent.
pub async fn find_payees(
    conn: &mut AnyConnection,
    ids: &[AccountId],
) -> Result<HashMap<AccountId, Payee>, sqlx::Error> {
    let wanted: Vec<[String; 1]> = ids.iter().map(|id| [id.to_string()]).collect();
    let json = serde_json::to_string(&wanted)
        .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode account ids: {e}")))?;
    let sql = format!(
        "SELECT id, kind, manager_id, rollup_billing, managed_account_allow_custom_pricing \
         FROM accounts WHERE id IN ({})",
        crate::db::json_rows_select(conn, 1, &[crate::db::JsonColumn::Text])
    );
    let mut payees = HashMap::with_capacity(ids.len());
    for row in sqlx::query(&sql).bind(json).fetch_all(&mut *conn).await? {
        let decode = |column: &str, text: Option<String>| {
            text.map(|t| {
                AccountId::parse(&t).ok_or_else(|| sqlx::Error::ColumnDecode {
                    index: column.to_owned(),
                    source: "not a UUID".into(),
                })
            })
            .transpose()
        };
        let Some(id) = decode("id", row.try_get("id")?)? else {
            continue;
        };
        let manager_id = decode("manager_id", row.try_get("manager_id")?)?;
        let kind: String = row.try_get("kind")?;
        let kind = AccountKind::from_db(&kind).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "kind".to_owned(),
            source: "unknown kind".into(),
        })?;
        let rollup = row.try_get::<i64, _>("rollup_billing")? != 0;
        let subject = PricingSubject {
            id,
            kind,
            manager_id,
            allow_custom_pricing: row.try_get::<i64, _>("managed_account_allow_custom_pricing")?
                != 0,
        };
        payees.insert(
            id,
            Payee {
                subject,
                payer: crate::billing::payer(id, kind, manager_id, rollup),
            },
        );
    }
    Ok(payees)
}

/// What a charged event's `lease_id` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    /// The event ended its call's lease.
    Released,
    /// The lease had already been released or had expired.
    AlreadyEnded,
    /// No lease has that id.
    Unknown,
    /// The lease belongs to another account: left alone.
    OtherAccount,
}

impl LeaseEnd {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::AlreadyEnded => "already_ended",
            Self::Unknown => "unknown",
            Self::OtherAccount => "other_account",
        }
    }
}

/// Ends the leases of calls now charged, each only for an event of the lease's own account
/// (an event of one account must not free another account's channel). Returns what became
/// of each lease id, keyed by (lease id, account).
pub async fn end_leases(
    conn: &mut AnyConnection,
    leases: &[(&str, AccountId)],
    now_ms: i64,
) -> Result<HashMap<(String, AccountId), LeaseEnd>, sqlx::Error> {
    let mut ends = HashMap::new();
    if leases.is_empty() {
        return Ok(ends);
    }
    let ids: Vec<&str> = leases
        .iter()
        .map(|(id, _)| *id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // id -> (owner, live)
    let mut found: HashMap<String, (String, bool)> = HashMap::new();
    let chunk_rows = crate::db::insert_chunk_rows(conn, 1);
    for chunk in ids.chunks(chunk_rows) {
        let sql = format!(
            "SELECT id, account_id, CASE WHEN released_at_ms IS NULL AND expires_at_ms > $1 \
             THEN 1 ELSE 0 END AS live FROM channel_leases WHERE id IN ({})",
            crate::db::placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(now_ms);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let live: i32 = row.try_get("live")?;
            found.insert(row.try_get("id")?, (row.try_get("account_id")?, live == 1));
        }
    }
    let mut to_release = Vec::new();
    for (lease_id, account) in leases {
        let end = match found.get(*lease_id) {
            None => LeaseEnd::Unknown,
            Some((owner, _)) if *owner != account.to_string() => LeaseEnd::OtherAccount,
            Some((_, false)) => LeaseEnd::AlreadyEnded,
            Some((_, true)) => {
                to_release.push(*lease_id);
                LeaseEnd::Released
            }
        };
        ends.insert(((*lease_id).to_owned(), *account), end);
    }
    to_release.sort_unstable();
    to_release.dedup();
    // RETURNING tells which this transaction ended: a concurrent batch may have ended one
    // between the read above and this update.
    let mut released: HashSet<String> = HashSet::new();
    for chunk in to_release.chunks(chunk_rows) {
        let sql = format!(
            "UPDATE channel_leases SET released_at_ms = $1 WHERE released_at_ms IS NULL AND id IN ({}) RETURNING id",
            crate::db::placeholders(2, chunk.len())
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql).bind(now_ms);
        for id in chunk {
            query = query.bind(*id);
        }
        released.extend(query.fetch_all(&mut *conn).await?);
    }
    for ((lease_id, _), end) in ends.iter_mut() {
        if *end == LeaseEnd::Released && !released.contains(lease_id) {
            *end = LeaseEnd::AlreadyEnded;
        }
    }
    Ok(ends)
}

/// A rated record as read back.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Event id.
    pub event_id: String,
    /// The account that used it.
    pub account_id: String,
    /// Product.
    pub product: Product,
    /// E.164 digits.
    pub destination: String,
    /// Quantity as reported.
    pub quantity: i64,
    /// Quantity billed.
    pub billable_quantity: i64,
    /// Rate applied.
    pub rate_nanos: i64,
    /// Cost charged.
    pub cost_nanos: i64,
    /// When it happened.
    pub occurred_at_ms: i64,
    /// When it was charged.
    pub created_at_ms: i64,
}

/// Whose records to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOwner {
    /// One account's.
    Account(AccountId),
    /// Every managed account's of this manager.
    ManagedAccountsOf(AccountId),
}

/// What to read.
#[derive(Debug, Clone)]
pub struct RecordQuery {
    /// Whose records.
    pub owner: RecordOwner,
    /// Which products.
    pub products: Vec<Product>,
    /// Occurred at or after.
    pub from_ms: Option<i64>,
    /// Occurred before.
    pub until_ms: Option<i64>,
    /// Newest first when true.
    pub descending: bool,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u64,
}

/// One page of an account's records and the total.
pub async fn list_records(
    conn: &mut AnyConnection,
    query: &RecordQuery,
) -> Result<(Vec<StoredRecord>, i64), sqlx::Error> {
    let mut clause = match query.owner {
        RecordOwner::Account(_) => String::from("account_id = $1"),
        RecordOwner::ManagedAccountsOf(_) => {
            String::from("account_id IN (SELECT id FROM accounts WHERE manager_id = $1)")
        }
    };
    let mut n = 1;
    let products: Vec<String> = query
        .products
        .iter()
        .map(|_| {
            n += 1;
            format!("${n}")
        })
        .collect();
    clause.push_str(&format!(" AND product IN ({})", products.join(",")));
    if query.from_ms.is_some() {
        n += 1;
        clause.push_str(&format!(" AND occurred_at_ms >= ${n}"));
    }
    if query.until_ms.is_some() {
        n += 1;
        clause.push_str(&format!(" AND occurred_at_ms < ${n}"));
    }
    fn bind<'q>(
        sql: &'q str,
        query: &RecordQuery,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let owner = match query.owner {
            RecordOwner::Account(id) | RecordOwner::ManagedAccountsOf(id) => id,
        };
        let mut q = sqlx::query(sql).bind(owner.to_string());
        for product in &query.products {
            q = q.bind(product.as_str().to_owned());
        }
        if let Some(from) = query.from_ms {
            q = q.bind(from);
        }
        if let Some(until) = query.until_ms {
            q = q.bind(until);
        }
        q
    }
    let count_sql = format!("SELECT COUNT(*) AS total FROM usage_records WHERE {clause}");
    let total: i64 = bind(&count_sql, query)
        .fetch_one(&mut *conn)
        .await?
        .try_get("total")?;
    let direction = if query.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT event_id, account_id, product, destination, quantity, billable_quantity, rate_nanos, cost_nanos, \
         occurred_at_ms, created_at_ms FROM usage_records WHERE {clause} \
         ORDER BY occurred_at_ms {direction}, event_id {direction} LIMIT {} OFFSET {}",
        query.limit, query.offset
    );
    let rows = bind(&sql, query).fetch_all(&mut *conn).await?;
    let records = rows
        .iter()
        .map(|row| {
            let product: String = row.try_get("product")?;
            Ok(StoredRecord {
                event_id: row.try_get("event_id")?,
                account_id: row.try_get("account_id")?,
                product: Product::parse(&product).ok_or_else(|| sqlx::Error::ColumnDecode {
                    index: "product".to_owned(),
                    source: "unknown product".into(),
                })?,
                destination: row.try_get("destination")?,
                quantity: row.try_get("quantity")?,
                billable_quantity: row.try_get("billable_quantity")?,
                rate_nanos: row.try_get("rate_nanos")?,
                cost_nanos: row.try_get("cost_nanos")?,
                occurred_at_ms: row.try_get("occurred_at_ms")?,
                created_at_ms: row.try_get("created_at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((records, total))
}
