//! Running a usage report over the rollups.
//!
//! A time range is split into whole UTC days (read from the daily rollups) and the hours at
//! either end (read from the hourly rollups), so a report over a month reads one row per
//! account, product, country and number type per day — never the raw records. Ranges are
//! whole hours, since that is the finest bucket kept.

use sqlx::{Any, AnyConnection, Row};

use super::catalog::{Dimension, Metric, ReportProduct, direction, message_type};
use crate::accounts::AccountId;
use crate::accounts::listing::PageRequest;
use crate::pricing::Product;
use crate::usage::rollups::{DAY_MS, Granularity, HOUR_MS, month_start, next_month_start};

/// The longest range a report covers.
pub const RANGE_DAYS_MAX: i64 = 31;

/// Whose usage a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One account's.
    Account(AccountId),
    /// Every managed account of this manager (not the manager's own).
    ManagedAccountsOf(AccountId),
}

/// `[from_ms, until_ms)`, whole hours, at most [`RANGE_DAYS_MAX`] days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    from_ms: i64,
    until_ms: i64,
}

/// Why a range was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The end is not after the start.
    #[error("end_date must be after start_date")]
    EndBeforeStart,
    /// Longer than the limit.
    #[error("the range is longer than 31 days")]
    TooLong,
    /// Not on the hour.
    #[error("reports cover whole hours: give times on the hour (e.g. 2026-01-01T13:00:00Z)")]
    NotOnTheHour,
}

impl TimeRange {
    /// A range, if it is valid.
    pub fn new(from_ms: i64, until_ms: i64) -> Result<Self, RangeError> {
        if from_ms % HOUR_MS != 0 || until_ms % HOUR_MS != 0 {
            return Err(RangeError::NotOnTheHour);
        }
        if until_ms <= from_ms {
            return Err(RangeError::EndBeforeStart);
        }
        if until_ms - from_ms > RANGE_DAYS_MAX * DAY_MS {
            return Err(RangeError::TooLong);
        }
        Ok(Self { from_ms, until_ms })
    }

    /// Start, inclusive.
    pub fn from_ms(self) -> i64 {
        self.from_ms
    }

    /// End, exclusive.
    pub fn until_ms(self) -> i64 {
        self.until_ms
    }

    /// The spans of the range to read from each rollup table: whole calendar months from
    /// the monthly rollups (when `months` is allowed: a report by date cannot use them),
    /// whole days left at either end of those from the daily ones, and the hours left at
    /// either end of the days from the hourly ones. Finest first.
    fn segments(self, months: bool) -> Vec<(Granularity, Vec<Span>)> {
        let ceil_day = |ms: i64| (ms + DAY_MS - 1).div_euclid(DAY_MS) * DAY_MS;
        let floor_day = |ms: i64| ms.div_euclid(DAY_MS) * DAY_MS;
        let (first_day, last_day) = (ceil_day(self.from_ms), floor_day(self.until_ms));
        if first_day >= last_day {
            return vec![(Granularity::Hour, vec![(self.from_ms, self.until_ms)])];
        }
        let edges = |outer: Span, inner: Span| -> Vec<Span> {
            [(outer.0, inner.0), (inner.1, outer.1)]
                .into_iter()
                .filter(|(from, until)| from < until)
                .collect()
        };
        let days = (first_day, last_day);
        let first_month = if month_start(first_day) == first_day {
            first_day
        } else {
            next_month_start(first_day)
        };
        let last_month = month_start(last_day);
        let mut segments = vec![(
            Granularity::Hour,
            edges((self.from_ms, self.until_ms), days),
        )];
        if months && first_month < last_month {
            let whole_months = (first_month, last_month);
            segments.push((Granularity::Day, edges(days, whole_months)));
            segments.push((Granularity::Month, vec![whole_months]));
        } else {
            segments.push((Granularity::Day, vec![days]));
        }
        segments.retain(|(_, spans)| !spans.is_empty());
        segments
    }
}

/// `[from_ms, until_ms)`.
type Span = (i64, i64);

/// A sort key: a dimension or a metric, either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// By a dimension's value.
    Dimension(Dimension),
    /// By a metric's sum.
    Metric(Metric),
}

/// A report as asked for, already checked against the catalog and the caller's rights.
#[derive(Debug, Clone)]
pub struct UsageReport {
    /// The product.
    pub product: ReportProduct,
    /// Dimensions, in output order.
    pub dimensions: Vec<Dimension>,
    /// Metrics, in output order.
    pub metrics: Vec<Metric>,
    /// When.
    pub range: TimeRange,
    /// Equality filters on dimensions.
    pub filters: Vec<(Dimension, String)>,
    /// Order (then by the dimensions, for a stable paging).
    pub sort: Vec<(SortKey, bool)>,
    /// Whose usage.
    pub scope: Scope,
    /// Which page.
    pub page: PageRequest,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// Text (dimensions).
    Text(String),
    /// A whole number (counts, seconds, parts, months).
    Int(i64),
    /// An amount in nano-units.
    Nanos(i64),
}

/// One row: the dimensions' values then the metrics', in the report's order.
pub type ReportRow = Vec<Cell>;

/// Runs `report`; returns one page of rows and the number of rows in all.
pub async fn run(
    conn: &mut AnyConnection,
    report: &UsageReport,
) -> Result<(Vec<ReportRow>, u64), sqlx::Error> {
    let products = products_after_filters(report);
    if products.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let mut binds: Vec<Bind> = Vec::new();
    let mut bind = |value: Bind| {
        binds.push(value);
        format!("${}", binds.len())
    };
    let scope = match report.scope {
        Scope::Account(id) => format!("account_id = {}", bind(Bind::Text(id.to_string()))),
        Scope::ManagedAccountsOf(id) => format!(
            "account_id IN (SELECT id FROM accounts WHERE manager_id = {})",
            bind(Bind::Text(id.to_string()))
        ),
    };
    let product_list: Vec<String> = products
        .iter()
        .map(|p| bind(Bind::Text(p.as_str().to_owned())))
        .collect();
    let mut conditions = vec![scope, format!("product IN ({})", product_list.join(", "))];
    for (dimension, value) in &report.filters {
        let column = match dimension {
            Dimension::CountryCode => "country_code",
            Dimension::NumberType => "number_type",
            Dimension::UserId => "account_id",
            // Product, direction and message type narrowed the product list above; a date
            // narrows the buckets below.
            _ => continue,
        };
        conditions.push(format!("{column} = {}", bind(Bind::Text(value.clone()))));
    }
    let (from_ms, until_ms) = narrowed_range(report);
    if from_ms >= until_ms {
        return Ok((Vec::new(), 0));
    }
    let range = TimeRange { from_ms, until_ms };
    // A month's rows know no day: a report by date reads days at most.
    let by_date = report.dimensions.contains(&Dimension::Date);
    let segments: Vec<String> = range
        .segments(!by_date)
        .into_iter()
        .map(|(granularity, spans)| segment(granularity, &spans, &conditions, &mut bind))
        .collect();
    let dimension_columns: Vec<String> = report
        .dimensions
        .iter()
        .enumerate()
        .map(|(i, d)| format!("{} AS d{i}", dimension_sql(*d)))
        .collect();
    let metric_columns: Vec<String> = report
        .metrics
        .iter()
        .enumerate()
        .map(|(i, m)| format!("CAST(SUM({}) AS BIGINT) AS m{i}", metric_column(*m)))
        .collect();
    let group_by = if report.dimensions.is_empty() {
        String::new()
    } else {
        let positions: Vec<String> = (1..=report.dimensions.len())
            .map(|n| n.to_string())
            .collect();
        format!("GROUP BY {}", positions.join(", "))
    };
    let sql = format!(
        "SELECT {columns}, COUNT(*) OVER () AS total_rows FROM ({segments}) r {group_by} \
         ORDER BY {order} LIMIT {limit} OFFSET {offset}",
        columns = [dimension_columns, metric_columns].concat().join(", "),
        segments = segments.join(" UNION ALL "),
        order = order_by(report),
        limit = report.page.size(),
        offset = report.page.offset(),
    );
    let mut query = sqlx::query::<Any>(&sql);
    for value in binds {
        query = match value {
            Bind::Text(text) => query.bind(text),
            Bind::Int(n) => query.bind(n),
        };
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut total = 0_u64;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        total = crate::db::non_negative(row.try_get("total_rows")?);
        let mut cells = Vec::with_capacity(report.dimensions.len() + report.metrics.len());
        for (i, dimension) in report.dimensions.iter().enumerate() {
            cells.push(dimension_cell(*dimension, &row, &format!("d{i}"))?);
        }
        for (i, metric) in report.metrics.iter().enumerate() {
            let value: Option<i64> = row.try_get(format!("m{i}").as_str())?;
            let value = value.unwrap_or(0);
            cells.push(match metric {
                Metric::Cost => Cell::Nanos(value),
                _ => Cell::Int(value),
            });
        }
        out.push(cells);
    }
    if out.is_empty() && report.page.number() > 1 {
        // A page past the end carries no count: count the groups on their own.
        return count_only(conn, report).await.map(|total| (out, total));
    }
    Ok((out, total))
}

/// The number of rows a report has in all (for a page past the end).
async fn count_only(conn: &mut AnyConnection, report: &UsageReport) -> Result<u64, sqlx::Error> {
    let first = UsageReport {
        page: PageRequest::new(1, 1, 1).unwrap_or_default(),
        ..report.clone()
    };
    Box::pin(run(conn, &first)).await.map(|(_, total)| total)
}

enum Bind {
    Text(String),
    Int(i64),
}

/// One rollup table's rows in `ranges`, as the columns the report reads.
fn segment(
    granularity: Granularity,
    ranges: &[(i64, i64)],
    conditions: &[String],
    bind: &mut impl FnMut(Bind) -> String,
) -> String {
    let buckets: Vec<String> = ranges
        .iter()
        .map(|(from, until)| {
            format!(
                "(bucket_ms >= {} AND bucket_ms < {})",
                bind(Bind::Int(*from)),
                bind(Bind::Int(*until))
            )
        })
        .collect();
    let day = match granularity {
        Granularity::Day | Granularity::Month => "bucket_ms".to_owned(),
        Granularity::Hour => format!("(bucket_ms / {DAY_MS}) * {DAY_MS}"),
    };
    format!(
        "SELECT account_id, product, country_code, number_type, {day} AS day_ms, event_count, \
         quantity, billable_quantity, cost_nanos FROM {table} WHERE ({buckets}) AND {conditions}",
        table = granularity.table(),
        buckets = buckets.join(" OR "),
        conditions = conditions.join(" AND "),
    )
}

/// The rated products left after product, direction and message-type filters.
fn products_after_filters(report: &UsageReport) -> Vec<Product> {
    report
        .product
        .products()
        .iter()
        .copied()
        .filter(|p| {
            report
                .filters
                .iter()
                .all(|(dimension, value)| match dimension {
                    Dimension::Product => p.as_str() == value,
                    Dimension::Direction => direction(*p) == Some(value.as_str()),
                    Dimension::MessageType => message_type(*p) == Some(value.as_str()),
                    _ => true,
                })
        })
        .collect()
}

/// The report's range, narrowed to a filtered date.
fn narrowed_range(report: &UsageReport) -> (i64, i64) {
    let mut from_ms = report.range.from_ms;
    let mut until_ms = report.range.until_ms;
    for (dimension, value) in &report.filters {
        if *dimension == Dimension::Date {
            match chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
            {
                Some(day) => {
                    let day_ms = day.and_utc().timestamp_millis();
                    from_ms = from_ms.max(day_ms);
                    until_ms = until_ms.min(day_ms + DAY_MS);
                }
                None => until_ms = from_ms,
            }
        }
    }
    (from_ms, until_ms)
}

fn case_of(products: &[Product], value: fn(Product) -> Option<&'static str>) -> String {
    let arms: String = products
        .iter()
        .filter_map(|p| value(*p).map(|v| format!(" WHEN '{}' THEN '{v}'", p.as_str())))
        .collect();
    format!("CASE product{arms} ELSE '' END")
}

fn dimension_sql(dimension: Dimension) -> String {
    match dimension {
        Dimension::Product => "product".to_owned(),
        Dimension::Direction => case_of(&Product::ALL, direction),
        Dimension::MessageType => case_of(&Product::ALL, message_type),
        Dimension::CountryCode => "country_code".to_owned(),
        Dimension::NumberType => "number_type".to_owned(),
        Dimension::Date => "day_ms".to_owned(),
        Dimension::UserId => "account_id".to_owned(),
    }
}

fn metric_column(metric: Metric) -> &'static str {
    match metric {
        Metric::Count => "event_count",
        Metric::CallSec | Metric::Parts | Metric::Months => "quantity",
        Metric::BilledSec => "billable_quantity",
        Metric::Cost => "cost_nanos",
    }
}

fn order_by(report: &UsageReport) -> String {
    let alias = |key: SortKey| match key {
        SortKey::Dimension(d) => report
            .dimensions
            .iter()
            .position(|x| *x == d)
            .map(|i| format!("d{i}")),
        SortKey::Metric(m) => report
            .metrics
            .iter()
            .position(|x| *x == m)
            .map(|i| format!("m{i}")),
    };
    let mut terms: Vec<String> = report
        .sort
        .iter()
        .filter_map(|(key, descending)| {
            alias(*key).map(|a| format!("{a} {}", if *descending { "DESC" } else { "ASC" }))
        })
        .collect();
    terms.extend((0..report.dimensions.len()).map(|i| format!("d{i} ASC")));
    if terms.is_empty() {
        // A single total row: any order.
        terms.push("1".to_owned());
    }
    terms.join(", ")
}

fn dimension_cell(
    dimension: Dimension,
    row: &sqlx::any::AnyRow,
    column: &str,
) -> Result<Cell, sqlx::Error> {
    Ok(match dimension {
        Dimension::Date => {
            let day_ms: i64 = row.try_get(column)?;
            Cell::Text(
                crate::clock::from_epoch_ms(day_ms)
                    .format("%Y-%m-%d")
                    .to_string(),
            )
        }
        _ => Cell::Text(row.try_get(column)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn ranges_split_into_whole_months_days_and_edge_hours() {
        use Granularity::{Day, Hour, Month};
        let range = TimeRange::new(T0 + 22 * HOUR_MS, T0 + 3 * DAY_MS + 5 * HOUR_MS).unwrap();
        assert_eq!(
            range.segments(true),
            [
                (
                    Hour,
                    vec![
                        (T0 + 22 * HOUR_MS, T0 + DAY_MS),
                        (T0 + 3 * DAY_MS, T0 + 3 * DAY_MS + 5 * HOUR_MS)
                    ]
                ),
                (Day, vec![(T0 + DAY_MS, T0 + 3 * DAY_MS)]),
            ]
        );
        let within_a_day = TimeRange::new(T0 + HOUR_MS, T0 + 5 * HOUR_MS).unwrap();
        assert_eq!(
            within_a_day.segments(true),
            [(Hour, vec![(T0 + HOUR_MS, T0 + 5 * HOUR_MS)])]
        );
        // January 2026 has 31 days: one month's rows.
        let january = TimeRange::new(T0, T0 + 31 * DAY_MS).unwrap();
        assert_eq!(
            january.segments(true),
            [(Month, vec![(T0, T0 + 31 * DAY_MS)])]
        );
        assert_eq!(
            january.segments(false),
            [(Day, vec![(T0, T0 + 31 * DAY_MS)])]
        );
        // 20 January to 10 February, from 06:00: hours, days either side, no whole month.
        let across = TimeRange::new(T0 + 19 * DAY_MS + 6 * HOUR_MS, T0 + 40 * DAY_MS).unwrap();
        assert_eq!(
            across.segments(true),
            [
                (
                    Hour,
                    vec![(T0 + 19 * DAY_MS + 6 * HOUR_MS, T0 + 20 * DAY_MS)]
                ),
                (Day, vec![(T0 + 20 * DAY_MS, T0 + 40 * DAY_MS)]),
            ]
        );
        // 29 January to 1 March: three days, then February whole.
        let february = TimeRange::new(T0 + 28 * DAY_MS, T0 + 59 * DAY_MS).unwrap();
        assert_eq!(
            february.segments(true),
            [
                (Day, vec![(T0 + 28 * DAY_MS, T0 + 31 * DAY_MS)]),
                (Month, vec![(T0 + 31 * DAY_MS, T0 + 59 * DAY_MS)]),
            ]
        );
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert_eq!(TimeRange::new(T0, T0), Err(RangeError::EndBeforeStart));
        assert_eq!(
            TimeRange::new(T0, T0 + 31 * DAY_MS + HOUR_MS),
            Err(RangeError::TooLong)
        );
        assert_eq!(
            TimeRange::new(T0 + 1, T0 + HOUR_MS),
            Err(RangeError::NotOnTheHour)
        );
    }
}
