//! SQL for price lists.

use sqlx::{AnyConnection, Row};

use super::{PriceList, RateRow};
use crate::accounts::AccountId;

/// The current pricing generation.
pub async fn generation(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT generation FROM pricing_generation WHERE id = 1")
        .fetch_one(conn)
        .await
}

/// Moves the generation on (in the transaction that changed pricing).
pub async fn bump_generation(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE pricing_generation SET generation = generation + 1 WHERE id = 1")
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts a list header.
pub async fn insert_list(
    conn: &mut AnyConnection,
    id: &str,
    name: &str,
    currency: &str,
    effective_from_ms: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO price_lists (id, name, currency, effective_from_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(name)
    .bind(currency)
    .bind(effective_from_ms)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts rates in multi-row statements.
pub async fn insert_rates(
    conn: &mut AnyConnection,
    list_id: &str,
    rows: &[RateRow],
) -> Result<(), sqlx::Error> {
    let chunk_rows = crate::db::insert_chunk_rows(conn, 6);
    for chunk in rows.chunks(chunk_rows) {
        let mut sql = String::from(
            "INSERT INTO price_list_rates (price_list_id, product, prefix, rate_nanos, \
             initial_increment_s, subsequent_increment_s) VALUES ",
        );
        for n in 0..chunk.len() {
            let b = n * 6;
            if n > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            ));
        }
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query
                .bind(list_id)
                .bind(row.product.as_str())
                .bind(row.prefix.as_str())
                .bind(row.rate_nanos)
                .bind(row.increments.map(|i| i64::from(i.initial_s())))
                .bind(row.increments.map(|i| i64::from(i.subsequent_s())));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Appends an assignment.
pub async fn insert_assignment(
    conn: &mut AnyConnection,
    account: Option<AccountId>,
    price_list_id: &str,
    effective_from_ms: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO price_list_assignments (id, account_id, price_list_id, effective_from_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(account.map(|a| a.to_string()))
    .bind(price_list_id)
    .bind(effective_from_ms)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// A list's header and rate count.
pub async fn find_list(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<PriceList>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT p.id, p.name, p.currency, p.effective_from_ms, \
         (SELECT COUNT(*) FROM price_list_rates r WHERE r.price_list_id = p.id) AS rate_count \
         FROM price_lists p WHERE p.id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(PriceList {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            currency: row.try_get("currency")?,
            effective_from_ms: row.try_get("effective_from_ms")?,
            rate_count: row.try_get("rate_count")?,
        })
    })
    .transpose()
}

/// One page of a list's rates, ordered by product and prefix, with the total count.
pub async fn list_rates(
    conn: &mut AnyConnection,
    list_id: &str,
    limit: u32,
    offset: u64,
) -> Result<Vec<RateRow>, sqlx::Error> {
    let sql = format!(
        "SELECT product, prefix, rate_nanos, initial_increment_s, subsequent_increment_s FROM price_list_rates \
         WHERE price_list_id = $1 ORDER BY product, prefix LIMIT {limit} OFFSET {offset}"
    );
    let rows = sqlx::query(&sql).bind(list_id).fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            let product: String = row.try_get("product")?;
            let initial: Option<i64> = row.try_get("initial_increment_s")?;
            let subsequent: Option<i64> = row.try_get("subsequent_increment_s")?;
            Ok(RateRow {
                product: super::Product::parse(&product).ok_or_else(|| {
                    sqlx::Error::ColumnDecode {
                        index: "product".to_owned(),
                        source: "unknown product".into(),
                    }
                })?,
                prefix: row.try_get("prefix")?,
                rate_nanos: row.try_get("rate_nanos")?,
                increments: initial.zip(subsequent).and_then(|(i, s)| {
                    super::Increments::new(u32::try_from(i).ok()?, u32::try_from(s).ok()?)
                }),
            })
        })
        .collect()
}
