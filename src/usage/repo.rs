//! SQL for rated usage and detail records.

use std::collections::HashSet;

use sqlx::{AnyConnection, Row};

use super::RatedRecord;
use crate::accounts::AccountId;
use crate::pricing::Product;

const COLUMNS_PER_ROW: usize = 15;

/// Inserts records whose event id is new; returns those ids.
pub async fn insert_records(
    conn: &mut AnyConnection,
    records: &[&RatedRecord],
    entry_id: &str,
    now_ms: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    let mut inserted = HashSet::with_capacity(records.len());
    let chunk_rows = crate::db::insert_chunk_rows(conn, COLUMNS_PER_ROW);
    for chunk in records.chunks(chunk_rows) {
        let mut sql = String::with_capacity(200 + chunk.len() * 90);
        sql.push_str(
            "INSERT INTO usage_records (event_id, account_id, payer_account_id, product, destination, \
             quantity, billable_quantity, price_list_id, rate_prefix, rate_nanos, cost_nanos, \
             occurred_at_ms, lease_id, entry_id, created_at_ms) VALUES ",
        );
        for n in 0..chunk.len() {
            if n > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..COLUMNS_PER_ROW {
                if c > 0 {
                    sql.push(',');
                }
                sql.push('$');
                sql.push_str(&(n * COLUMNS_PER_ROW + c + 1).to_string());
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT (event_id) DO NOTHING RETURNING event_id");
        let mut query = sqlx::query(&sql);
        for record in chunk {
            let event = &record.event;
            query = query
                .bind(event.id.as_str())
                .bind(event.account_id.to_string())
                .bind(record.payer.to_string())
                .bind(event.product.as_str())
                .bind(event.destination.as_str())
                .bind(event.quantity)
                .bind(record.billable_quantity)
                .bind(record.price_list_id.as_str())
                .bind(record.rate_prefix.as_str())
                .bind(record.rate_nanos)
                .bind(record.cost_nanos)
                .bind(event.occurred_at_ms)
                .bind(event.lease_id.as_deref())
                .bind(entry_id)
                .bind(now_ms);
        }
        for row in query.fetch_all(&mut *conn).await? {
            inserted.insert(row.try_get("event_id")?);
        }
    }
    Ok(inserted)
}

/// Releases the leases of calls now charged.
pub async fn release_leases(
    conn: &mut AnyConnection,
    lease_ids: &[&str],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let chunk_rows = crate::db::insert_chunk_rows(conn, 1);
    for chunk in lease_ids.chunks(chunk_rows) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|n| format!("${}", n + 2)).collect();
        let sql = format!(
            "UPDATE channel_leases SET released_at_ms = $1 WHERE released_at_ms IS NULL AND id IN ({})",
            placeholders.join(",")
        );
        let mut query = sqlx::query(&sql).bind(now_ms);
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
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

/// What to read.
#[derive(Debug, Clone)]
pub struct RecordQuery {
    /// Whose records.
    pub account_id: AccountId,
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
    let mut clause = String::from("account_id = $1");
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
        let mut q = sqlx::query(sql).bind(query.account_id.to_string());
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
