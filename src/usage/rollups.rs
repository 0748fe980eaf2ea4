//! Rollups: sums of charged usage per account, product, destination country and number
//! type, by UTC day and calendar month, added in the transaction that charges the usage —
//! so a report is exactly as current as the ledger, never ahead or behind. Reports cover
//! whole UTC days: the hourly grain once kept was nearly as fine as the events themselves
//! (0.85 rows written per event in the report benchmark) and halved ingestion.
//!
//! A batch adds one upsert per table, its rows in key order (so that concurrent batches on
//! PostgreSQL take row locks in one order and never wait crosswise).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::AnyConnection;

use super::RatedRecord;
pub use crate::clock::{DAY_MS, month_start, next_month_start};
use crate::db::JsonColumn::{BigInt, Text};

/// Whether charging maintains the rollups. Always on: reports read the rollups, so with it
/// off they would be wrong. No setting or flag reaches it; only the report benchmark's A/B
/// run (`examples/report_bench.rs`) turns it off, on its own database, to measure what
/// maintaining the rollups costs ingestion.
static MAINTAINED: AtomicBool = AtomicBool::new(true);

/// Turns rollup maintenance off or on for this process (benchmark use only, see above).
#[doc(hidden)]
pub fn maintain_for_benchmark(on: bool) {
    MAINTAINED.store(on, Ordering::Relaxed);
}

/// The rollup tables and their buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// `usage_rollups_daily`.
    Day,
    /// `usage_rollups_monthly` (calendar months).
    Month,
}

impl Granularity {
    /// Every table, finest first.
    pub const ALL: [Granularity; 2] = [Self::Day, Self::Month];

    /// Table name (fixed here, never from input).
    pub fn table(self) -> &'static str {
        match self {
            Self::Day => "usage_rollups_daily",
            Self::Month => "usage_rollups_monthly",
        }
    }

    /// The start of the bucket holding `at_ms`.
    pub fn bucket(self, at_ms: i64) -> i64 {
        match self {
            Self::Day => crate::clock::day_start(at_ms),
            Self::Month => month_start(at_ms),
        }
    }
}

/// (bucket, account, product, country, number type).
type Key<'a> = (i64, String, &'static str, &'a str, &'static str);

/// (events, quantity, billable quantity, cost).
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    events: i64,
    quantity: i64,
    billable_quantity: i64,
    cost_nanos: i64,
}

fn aggregate<'a>(
    records: &[&'a RatedRecord],
    granularity: Granularity,
) -> Result<BTreeMap<Key<'a>, Sums>, sqlx::Error> {
    let overflow = || sqlx::Error::Protocol("usage rollup sum out of range".to_owned());
    let mut sums: BTreeMap<Key<'a>, Sums> = BTreeMap::new();
    for record in records {
        let event = &record.event;
        let key = (
            granularity.bucket(event.occurred_at_ms),
            event.account_id.to_string(),
            event.product.as_str(),
            record.destination.country_code.as_str(),
            record.destination.number_type,
        );
        let slot = sums.entry(key).or_default();
        slot.events = slot.events.checked_add(1).ok_or_else(overflow)?;
        slot.quantity = slot
            .quantity
            .checked_add(event.quantity)
            .ok_or_else(overflow)?;
        slot.billable_quantity = slot
            .billable_quantity
            .checked_add(record.billable_quantity)
            .ok_or_else(overflow)?;
        slot.cost_nanos = slot
            .cost_nanos
            .checked_add(record.cost_nanos)
            .ok_or_else(overflow)?;
    }
    Ok(sums)
}

/// Adds newly charged `records` to the daily and monthly rollups, in the caller's transaction.
pub async fn add_in_tx(
    conn: &mut AnyConnection,
    records: &[&RatedRecord],
) -> Result<(), sqlx::Error> {
    if records.is_empty() || !MAINTAINED.load(Ordering::Relaxed) {
        return Ok(());
    }
    for granularity in Granularity::ALL {
        let rows: Vec<_> = aggregate(records, granularity)?
            .into_iter()
            .map(|((bucket, account, product, country, kind), sums)| {
                (
                    bucket,
                    account,
                    product,
                    country,
                    kind,
                    sums.events,
                    sums.quantity,
                    sums.billable_quantity,
                    sums.cost_nanos,
                )
            })
            .collect();
        let json = serde_json::to_string(&rows)
            .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode rollups: {e}")))?;
        let table = granularity.table();
        let select = crate::db::json_rows_select(
            conn,
            1,
            &[
                BigInt, Text, Text, Text, Text, BigInt, BigInt, BigInt, BigInt,
            ],
        );
        let sql = format!(
            "INSERT INTO {table} (bucket_ms, account_id, product, country_code, number_type, \
             event_count, quantity, billable_quantity, cost_nanos) {select} ORDER BY 1, 2, 3, 4, 5 \
             ON CONFLICT (bucket_ms, account_id, product, country_code, number_type) DO UPDATE SET \
             event_count = {table}.event_count + excluded.event_count, \
             quantity = {table}.quantity + excluded.quantity, \
             billable_quantity = {table}.billable_quantity + excluded.billable_quantity, \
             cost_nanos = {table}.cost_nanos + excluded.cost_nanos"
        );
        sqlx::query(&sql).bind(json).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Records charged before destinations were classified, per statement of the upgrade.
const UPGRADE_CHUNK_RECORDS: i64 = 5_000;

/// Classifies the destinations of records stored before they were classified and builds the
/// rollups of every record, once per database: the first process to claim the run does it
/// in one transaction, which other processes' claims wait for (so none ingests into rollups
/// that are half built). Returns how many records were classified.
pub async fn upgrade_stored_records(
    conn: &mut AnyConnection,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    use sqlx::Row;
    let claimed = sqlx::query(
        "INSERT INTO maintenance_runs (name, ran_at_ms) VALUES ('usage_rollups_v1', $1) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(now_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        return Ok(0);
    }
    let mut classified = 0_u64;
    loop {
        let rows = sqlx::query(
            "SELECT event_id, destination FROM usage_records WHERE country_code IS NULL \
             ORDER BY event_id LIMIT $1",
        )
        .bind(UPGRADE_CHUNK_RECORDS)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            break;
        }
        let mut classes = Vec::with_capacity(rows.len());
        for row in &rows {
            let event_id: String = row.try_get("event_id")?;
            let destination: String = row.try_get("destination")?;
            let class = super::numbers::classify(&destination);
            classes.push((event_id, class.country_code, class.number_type));
        }
        let json = serde_json::to_string(&classes)
            .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode classes: {e}")))?;
        let select = crate::db::json_rows_select(conn, 1, &[Text, Text, Text]);
        let sql = format!(
            "WITH c (event_id, country_code, number_type) AS ({select}) \
             UPDATE usage_records SET country_code = c.country_code, number_type = c.number_type \
             FROM c WHERE usage_records.event_id = c.event_id"
        );
        sqlx::query(&sql).bind(json).execute(&mut *conn).await?;
        classified += u64::try_from(rows.len()).unwrap_or(0);
    }
    // The table is new with this upgrade: nothing was rolled up before it. Days are
    // floored as `Granularity::Day` floors them, before 1970 too.
    let sql = format!(
        "INSERT INTO usage_rollups_daily (bucket_ms, account_id, product, country_code, \
         number_type, event_count, quantity, billable_quantity, cost_nanos) \
         SELECT occurred_at_ms - ((occurred_at_ms % {DAY_MS}) + {DAY_MS}) % {DAY_MS}, \
         account_id, product, country_code, \
         number_type, COUNT(*), CAST(SUM(quantity) AS BIGINT), \
         CAST(SUM(billable_quantity) AS BIGINT), CAST(SUM(cost_nanos) AS BIGINT) \
         FROM usage_records GROUP BY 1, 2, 3, 4, 5"
    );
    sqlx::query(&sql).execute(&mut *conn).await?;
    Ok(classified)
}

/// Fills the monthly rollups from the daily ones, once per database (the monthly table
/// came after the daily ones; usage charged since is added to both as it is charged).
pub async fn upgrade_monthly_rollups(
    conn: &mut AnyConnection,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    use sqlx::Row;
    let claimed = sqlx::query(
        "INSERT INTO maintenance_runs (name, ran_at_ms) VALUES ('usage_rollups_monthly_v1', $1) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(now_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        return Ok(false);
    }
    let rows = sqlx::query(
        "SELECT bucket_ms, account_id, product, country_code, number_type, event_count, \
         quantity, billable_quantity, cost_nanos FROM usage_rollups_daily",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut months: BTreeMap<(i64, String, String, String, String), Sums> = BTreeMap::new();
    for row in rows {
        let key = (
            month_start(row.try_get("bucket_ms")?),
            row.try_get("account_id")?,
            row.try_get("product")?,
            row.try_get("country_code")?,
            row.try_get("number_type")?,
        );
        let slot = months.entry(key).or_default();
        slot.events = slot.events.saturating_add(row.try_get("event_count")?);
        slot.quantity = slot.quantity.saturating_add(row.try_get("quantity")?);
        slot.billable_quantity = slot
            .billable_quantity
            .saturating_add(row.try_get("billable_quantity")?);
        slot.cost_nanos = slot.cost_nanos.saturating_add(row.try_get("cost_nanos")?);
    }
    let rows: Vec<_> = months
        .into_iter()
        .map(|((bucket, account, product, country, kind), s)| {
            (
                bucket,
                account,
                product,
                country,
                kind,
                s.events,
                s.quantity,
                s.billable_quantity,
                s.cost_nanos,
            )
        })
        .collect();
    for chunk in rows.chunks(
        UPGRADE_CHUNK_RECORDS
            .unsigned_abs()
            .try_into()
            .unwrap_or(5_000),
    ) {
        let json = serde_json::to_string(chunk)
            .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode rollups: {e}")))?;
        let select = crate::db::json_rows_select(
            conn,
            1,
            &[
                BigInt, Text, Text, Text, Text, BigInt, BigInt, BigInt, BigInt,
            ],
        );
        let sql = format!(
            "INSERT INTO usage_rollups_monthly (bucket_ms, account_id, product, country_code, \
             number_type, event_count, quantity, billable_quantity, cost_nanos) {select}"
        );
        sqlx::query(&sql).bind(json).execute(&mut *conn).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_start_on_the_utc_day_and_month() {
        let at = 1_767_269_430_000; // 2026-01-01T12:10:30Z
        assert_eq!(Granularity::Day.bucket(at), 1_767_225_600_000);
        assert_eq!(Granularity::Day.bucket(-1), -DAY_MS);
        assert_eq!(Granularity::Month.bucket(at), 1_767_225_600_000);
        // 2026-02-14 → 2026-02-01, and the month after is 2026-03-01.
        assert_eq!(month_start(1_771_027_200_000), 1_769_904_000_000);
        assert_eq!(next_month_start(1_771_027_200_000), 1_772_323_200_000);
    }
}
