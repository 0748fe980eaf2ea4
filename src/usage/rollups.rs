//! Rollups: sums of charged usage per account, product, destination country and number
//! type, by UTC day and calendar month, added in the transaction that charges the usage —
//! so a report is exactly as current as the ledger, never ahead or behind. Reports cover
//! whole UTC days: the hourly grain once kept was nearly as fine as the events themselves
//! (0.85 rows written per event in the report benchmark) and halved ingestion.
//!
//! A day is added to its month only once it is *closed*: the monthly rollups hold the days
//! before a mark (`usage_rollups_closed`), which a background task of every server moves
//! past each day once it has ended ([`close_days`]). Today's usage thus costs charging one
//! upsert per key, not two (a batch's events share a day as often as a month); usage that
//! arrives for a closed day goes to both. A report reads a month as its monthly rows plus
//! its days not yet closed, in one statement (see `reports::query`).
//!
//! A batch adds one upsert per table, its rows in key order (so that concurrent batches on
//! PostgreSQL take row locks in one order and never wait crosswise).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::AnyConnection;

use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;

use super::RatedRecord;
pub use crate::clock::{DAY_MS, day_start, month_start, next_month_start};
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

/// Adds newly charged `records` to the daily rollups, and those of closed days to the
/// monthly ones too, in the caller's transaction (which took [`hold_closed_days`] first).
pub async fn add_in_tx(
    conn: &mut AnyConnection,
    records: &[&RatedRecord],
) -> Result<(), sqlx::Error> {
    if records.is_empty() || !MAINTAINED.load(Ordering::Relaxed) {
        return Ok(());
    }
    upsert(conn, Granularity::Day, records).await?;
    let closed_until_ms = closed_until(conn).await?;
    let closed: Vec<&RatedRecord> = records
        .iter()
        .copied()
        .filter(|r| r.event.occurred_at_ms < closed_until_ms)
        .collect();
    if !closed.is_empty() {
        upsert(conn, Granularity::Month, &closed).await?;
    }
    Ok(())
}

/// Adds `records` to one rollup table.
async fn upsert(
    conn: &mut AnyConnection,
    granularity: Granularity,
    records: &[&RatedRecord],
) -> Result<(), sqlx::Error> {
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
         {}",
        add_excluded(table)
    );
    sqlx::query(&sql).bind(json).execute(&mut *conn).await?;
    Ok(())
}

/// An upsert's assignments: the new row's sums added to those of the row in place.
fn add_excluded(table: &str) -> String {
    format!(
        "event_count = {table}.event_count + excluded.event_count, \
         quantity = {table}.quantity + excluded.quantity, \
         billable_quantity = {table}.billable_quantity + excluded.billable_quantity, \
         cost_nanos = {table}.cost_nanos + excluded.cost_nanos"
    )
}

/// PostgreSQL advisory lock class of the closed days' mark (the second key is the schema's
/// hash, so platforms sharing a database in separate schemas do not wait on each other).
const CLOSED_DAYS_LOCK_CLASS: i32 = 0x726f_6c6c;

/// Holds the mark of closed days where it is until the caller's transaction ends. Charging
/// takes this shared, as its first statement (before it holds any row lock a closing could
/// wait for); closing takes it exclusively. Without it a batch could read the mark, leave a
/// day's usage out of its month, and commit after a closing that had moved the mark past
/// that day without seeing it. SQLite writes one transaction at a time: nothing to hold.
pub async fn hold_closed_days(
    conn: &mut AnyConnection,
    exclusive: bool,
) -> Result<(), sqlx::Error> {
    if conn.backend_name() == "SQLite" {
        return Ok(());
    }
    let function = if exclusive {
        "pg_advisory_xact_lock"
    } else {
        "pg_advisory_xact_lock_shared"
    };
    // Counted, so the row holds a type the driver reads (the function returns `void`).
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT {function}({CLOSED_DAYS_LOCK_CLASS}, \
         hashtext(current_schema()))) AS held"
    );
    sqlx::query(&sql).execute(&mut *conn).await?;
    Ok(())
}

/// The mark of closed days: the monthly rollups hold every day before it (a UTC midnight),
/// the daily ones every day.
pub async fn closed_until(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT closed_until_ms FROM usage_rollups_closed")
        .fetch_one(&mut *conn)
        .await
}

/// Closes the UTC days that ended before `now_ms`: adds each one's daily rollups to its
/// month and moves the mark past it, a month (or what is left of one) per transaction.
/// Returns how many days it closed. Any server may run it at any time, beside charging.
pub async fn close_days(db: &Db, now_ms: i64) -> Result<i64, sqlx::Error> {
    let today_ms = day_start(now_ms);
    // Most looks find nothing to close: those write nothing and hold up no charging. (Days
    // without usage may stay open: they cost nothing to read or to charge.)
    {
        let mut conn = db.read.acquire().await?;
        let mark_ms = closed_until(&mut conn).await?;
        if first_day_held(&mut conn, mark_ms, today_ms)
            .await?
            .is_none()
        {
            return Ok(0);
        }
    }
    let mut closed_days = 0;
    loop {
        let days = db
            .write_grouped(move |conn| Box::pin(close_next(conn, today_ms)))
            .await?;
        if days == 0 {
            return Ok(closed_days);
        }
        closed_days += days;
    }
}

/// Closes the days from the mark up to `today_ms` or the end of the month of the first
/// day with usage, whichever comes first; returns how many.
async fn close_next(conn: &mut AnyConnection, today_ms: i64) -> Result<i64, sqlx::Error> {
    hold_closed_days(conn, true).await?;
    // A write first: on SQLite the transaction then holds the write lock from the start.
    sqlx::query("UPDATE usage_rollups_closed SET closed_until_ms = closed_until_ms")
        .execute(&mut *conn)
        .await?;
    let from_ms = closed_until(conn).await?;
    if from_ms >= today_ms {
        return Ok(0);
    }
    // Days without usage close without a step each (a new database's mark is at 1970).
    let first_ms = first_day_held(conn, from_ms, today_ms).await?;
    let until_ms = first_ms.map_or(today_ms, |first| next_month_start(first).min(today_ms));
    if let Some(first_ms) = first_ms {
        add_days_to_month(conn, month_start(first_ms), from_ms, until_ms).await?;
    }
    sqlx::query("UPDATE usage_rollups_closed SET closed_until_ms = $1")
        .bind(until_ms)
        .execute(&mut *conn)
        .await?;
    Ok((until_ms - from_ms) / DAY_MS)
}

/// The first day of `[from_ms, until_ms)` with usage, if any.
async fn first_day_held(
    conn: &mut AnyConnection,
    from_ms: i64,
    until_ms: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MIN(bucket_ms) FROM usage_rollups_daily WHERE bucket_ms >= $1 AND bucket_ms < $2",
    )
    .bind(from_ms)
    .bind(until_ms)
    .fetch_one(&mut *conn)
    .await
}

/// Adds the daily rollups of `[from_ms, until_ms)`, days of the month `month_ms`, to it.
async fn add_days_to_month(
    conn: &mut AnyConnection,
    month_ms: i64,
    from_ms: i64,
    until_ms: i64,
) -> Result<(), sqlx::Error> {
    let table = Granularity::Month.table();
    let sql = format!(
        "INSERT INTO {table} (bucket_ms, account_id, product, country_code, number_type, \
         event_count, quantity, billable_quantity, cost_nanos) \
         SELECT $1, account_id, product, country_code, number_type, \
         CAST(SUM(event_count) AS BIGINT), CAST(SUM(quantity) AS BIGINT), \
         CAST(SUM(billable_quantity) AS BIGINT), CAST(SUM(cost_nanos) AS BIGINT) \
         FROM usage_rollups_daily WHERE bucket_ms >= $2 AND bucket_ms < $3 \
         GROUP BY account_id, product, country_code, number_type ORDER BY 2, 3, 4, 5 \
         ON CONFLICT (bucket_ms, account_id, product, country_code, number_type) DO UPDATE SET \
         {}",
        add_excluded(table)
    );
    sqlx::query(&sql)
        .bind(month_ms)
        .bind(from_ms)
        .bind(until_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// How often a server looks for ended days to close: a day is closed within this of its
/// end (until then its month is read with it from the daily rollups: slower, as exact).
const CLOSE_POLL_MS: u64 = 60_000;

/// Closes ended days (see [`close_days`]) until `stop` turns true.
pub async fn run_closer(db: Db, clock: ClockHandle, mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        match close_days(&db, to_epoch_ms(clock.now())).await {
            Ok(0) => {}
            Ok(days) => tracing::info!(days, "Closed {days} days of usage into their months"),
            Err(error) => tracing::warn!(error = %error, "Closing days of usage failed: {error}"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(CLOSE_POLL_MS)) => {}
            _ = stop.changed() => {}
        }
    }
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

/// Fills the monthly rollups from the daily ones of closed days, once per database (the
/// monthly table came after the daily ones; usage charged since is added as it is charged,
/// and days are closed as they end).
pub async fn upgrade_monthly_rollups(
    conn: &mut AnyConnection,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
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
    // Month by month, as a closing adds days to their month.
    let closed_until_ms = closed_until(conn).await?;
    let mut next_day = first_day_held(conn, i64::MIN, closed_until_ms).await?;
    while let Some(day_ms) = next_day {
        let until_ms = next_month_start(day_ms).min(closed_until_ms);
        add_days_to_month(conn, month_start(day_ms), day_ms, until_ms).await?;
        next_day = first_day_held(conn, until_ms, closed_until_ms).await?;
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
