//! Running a usage report over the rollups.
//!
//! Reports cover whole UTC days. A range is read as whole calendar months (monthly
//! rollups) plus or minus days (daily rollups): each month the range covers only in part
//! is read either as its days inside the range, or as the whole month minus its days
//! outside, whichever reads fewer buckets. Sums subtract exactly, so a 31-day window that is
//! not a calendar month costs about one month and a few days, never 31 days of rows.

use sqlx::{Any, AnyConnection, Row};

use super::catalog::{Dimension, Metric, ReportProduct, direction, message_type};
use crate::accounts::AccountId;
use crate::accounts::listing::PageRequest;
use crate::pricing::Product;
use crate::usage::rollups::{DAY_MS, Granularity, month_start, next_month_start};

/// The longest range a report covers.
pub const RANGE_DAYS_MAX: i64 = 31;

/// What reading a month's rows costs, in days' rows: a month's row per group is one of up to
/// 31 days', and more groups have usage somewhere in a month than on any one day.
const MONTH_READ_IN_DAYS: i64 = 2;

/// Whose usage a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One account's.
    Account(AccountId),
    /// Every managed account of this manager (not the manager's own).
    ManagedAccountsOf(AccountId),
}

/// `[from_ms, until_ms)`, whole UTC days, at most [`RANGE_DAYS_MAX`] days.
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
    /// The start is not at midnight UTC.
    #[error(
        "reports cover whole UTC days: give the start at 00:00:00Z (e.g. 2026-01-01T00:00:00Z)"
    )]
    StartNotAtMidnight,
    /// The end is not at midnight UTC.
    #[error("reports cover whole UTC days: give the end at 00:00:00Z (e.g. 2026-01-02T00:00:00Z)")]
    EndNotAtMidnight,
}

impl TimeRange {
    /// A range, if it is valid.
    pub fn new(from_ms: i64, until_ms: i64) -> Result<Self, RangeError> {
        if from_ms.rem_euclid(DAY_MS) != 0 {
            return Err(RangeError::StartNotAtMidnight);
        }
        if until_ms.rem_euclid(DAY_MS) != 0 {
            return Err(RangeError::EndNotAtMidnight);
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

    /// The spans of the range to read from each rollup table, and the sign their sums take:
    /// per calendar month the range touches, the whole month (monthly rollups, +1) when it
    /// covers all of it; otherwise whichever reads fewer buckets of its days inside the range
    /// (daily rollups, +1) or the whole month less its days outside (daily rollups, -1).
    /// Without `months` (a report by date: a month's rows know no day), days only. In the
    /// order: days added, months, days subtracted; adjacent spans merged.
    fn segments(self, months: bool) -> Vec<Segment> {
        let (from, until) = (self.from_ms, self.until_ms);
        if !months {
            return vec![Segment::new(Granularity::Day, 1, vec![(from, until)])];
        }
        let (mut days, mut whole, mut less) = (Vec::new(), Vec::new(), Vec::new());
        let mut month = month_start(from);
        while month < until {
            let next = next_month_start(month);
            let inside = (from.max(month), until.min(next));
            let days_inside = (inside.1 - inside.0) / DAY_MS;
            let days_outside = (next - month) / DAY_MS - days_inside;
            if days_outside == 0 {
                whole.push((month, next));
            } else if MONTH_READ_IN_DAYS + days_outside < days_inside {
                whole.push((month, next));
                less.extend([(month, inside.0), (inside.1, next)]);
            } else {
                days.push(inside);
            }
            month = next;
        }
        [
            Segment::new(Granularity::Day, 1, days),
            Segment::new(Granularity::Month, 1, whole),
            Segment::new(Granularity::Day, -1, less),
        ]
        .into_iter()
        .filter(|segment| !segment.spans.is_empty())
        .collect()
    }
}

/// `[from_ms, until_ms)`.
type Span = (i64, i64);

/// Spans of one rollup table whose sums a report adds (`sign` 1) or subtracts (-1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    granularity: Granularity,
    sign: i64,
    spans: Vec<Span>,
}

impl Segment {
    /// Drops empty spans and merges adjacent ones (fewer bucket ranges to bind and scan).
    fn new(granularity: Granularity, sign: i64, spans: Vec<Span>) -> Self {
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for (from, until) in spans.into_iter().filter(|(from, until)| from < until) {
            match merged.last_mut() {
                Some(last) if last.1 == from => last.1 = until,
                _ => merged.push((from, until)),
            }
        }
        Self {
            granularity,
            sign,
            spans: merged,
        }
    }
}

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
    let segments_read = range.segments(!by_date);
    // Read apart, only to leave out what cannot be there: the mark only moves forward, so a
    // month closed now is closed when the report's statement reads it.
    let closed_until_ms = if segments_read
        .iter()
        .any(|s| s.granularity == Granularity::Month)
    {
        crate::usage::rollups::closed_until(conn).await?
    } else {
        i64::MIN
    };
    let arms: Vec<String> = segments_read
        .iter()
        .flat_map(|s| segment(s, closed_until_ms, &conditions, &mut bind))
        .collect();
    let sqlite = conn.backend_name() == "SQLite";
    // On PostgreSQL the groups are formed from rows sorted by their keys in byte order
    // ("C", as SQLite compares): grouping sorted rows, which the page's default order then
    // follows, took two thirds of hashing them and sorting the page (its planner
    // underestimates the groups of these correlated columns and hashes), and byte order
    // is several times cheaper to sort than the database's default collation.
    let presorted = !sqlite && !report.dimensions.is_empty();
    let dimension_columns: Vec<String> = report
        .dimensions
        .iter()
        .enumerate()
        .map(|(i, d)| match presorted {
            true => format!("k{i} AS d{i}"),
            false => format!("{} AS d{i}", dimension_sql(*d)),
        })
        .collect();
    let metric_columns: Vec<String> = report
        .metrics
        .iter()
        .enumerate()
        .map(|(i, m)| format!("CAST(SUM({}) AS BIGINT) AS m{i}", metric_column(*m)))
        .collect();
    // A month less its days outside the range leaves a group with no usage in the range at
    // zero events: no row, as if it had not been read. (Without subtraction every group
    // has events: no condition, so counting the groups needs only the key columns.)
    let subtracts = segments_read.iter().any(|segment| segment.sign < 0);
    let group_by = match (report.dimensions.is_empty(), subtracts) {
        (true, _) => String::new(),
        (false, subtracts) => {
            let positions: Vec<String> = (1..=report.dimensions.len())
                .map(|n| n.to_string())
                .collect();
            let having = if subtracts {
                " HAVING SUM(event_count) <> 0"
            } else {
                ""
            };
            format!("GROUP BY {}{having}", positions.join(", "))
        }
    };
    let union = arms.join(" UNION ALL ");
    let rows_sql = if presorted {
        let keys: Vec<String> = report
            .dimensions
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Dimension::Date => format!("{} AS k{i}", dimension_sql(*d)),
                _ => format!("({}) COLLATE \"C\" AS k{i}", dimension_sql(*d)),
            })
            .collect();
        let order: Vec<String> = (1..=keys.len()).map(|n| n.to_string()).collect();
        format!(
            "FROM (SELECT {}, event_count, quantity, billable_quantity, cost_nanos \
             FROM ({union}) s ORDER BY {}) r {group_by}",
            keys.join(", "),
            order.join(", ")
        )
    } else {
        format!("FROM ({union}) r {group_by}")
    };
    // On SQLite no window count over every group: with the default order a single segment
    // streams its groups in key order and stops at the page's end, and the total, when the
    // page does not tell it, is counted on its own (rows of several tables, which SQLite
    // groups through a temporary B-tree anyway, are grouped once and counted from those
    // groups: `sqlite_page_of_groups`). PostgreSQL forms every group anyway
    // (from the sorted rows above): it counts them in the page's statement (see
    // `PageValues`).
    let columns = [dimension_columns.clone(), metric_columns]
        .concat()
        .join(", ");
    let order = order_by(report);
    let page = format!(
        "{rows_sql} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
        limit = report.page.size(),
        offset = report.page.offset(),
    );
    let (rows, counted) = if sqlite && arms.len() > 1 {
        let grouped = format!("SELECT {columns} {rows_sql}");
        let (rows, total) = sqlite_page_of_groups(conn, report, &grouped, &order, &binds).await?;
        (rows, Some(total))
    } else if sqlite {
        (
            sqlite_page(conn, report, &columns, &page, &order, &binds).await?,
            None,
        )
    } else {
        postgres_page(conn, report, &columns, &page, &binds).await?
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = row.into_iter();
        let mut cells = Vec::with_capacity(report.dimensions.len() + report.metrics.len());
        for dimension in &report.dimensions {
            cells.push(dimension_cell(*dimension, values.next())?);
        }
        for metric in &report.metrics {
            let value = values.next().and_then(|v| v.as_i64()).unwrap_or(0);
            cells.push(match metric {
                Metric::Cost => Cell::Nanos(value),
                _ => Cell::Int(value),
            });
        }
        out.push(cells);
    }
    if let Some(total) = counted {
        return Ok((out, total));
    }
    let page_size = usize::try_from(report.page.size()).unwrap_or(usize::MAX);
    if report.page.number() == 1 && out.len() < page_size {
        let total = u64::try_from(out.len()).unwrap_or(u64::MAX);
        return Ok((out, total));
    }
    let keys = if dimension_columns.is_empty() {
        "1 AS one".to_owned()
    } else {
        dimension_columns.join(", ")
    };
    let count_sql = format!("SELECT COUNT(*) AS total_rows FROM (SELECT {keys} {rows_sql}) g");
    let total: i64 = bound(&count_sql, &binds)
        .fetch_one(&mut *conn)
        .await?
        .try_get("total_rows")?;
    Ok((out, crate::db::non_negative(total)))
}

/// A page's rows as values, dimensions then metrics. How a page crosses the driver is the
/// one thing that differs by engine: through SQLite's driver each row is a message from its
/// worker thread (5,000 rows cost several times the query), so SQLite builds the page as
/// one JSON document; PostgreSQL's driver reads rows cheaply, and a window count over the
/// groups gives the total in the same statement instead of grouping twice.
type PageValues = Vec<Vec<serde_json::Value>>;

/// The page from SQLite, as one JSON array of arrays built by the engine (in the page's
/// order, stated again in the aggregate so as not to rest on the subquery's); the total is
/// counted apart when needed.
async fn sqlite_page(
    conn: &mut AnyConnection,
    report: &UsageReport,
    columns: &str,
    page: &str,
    order: &str,
    binds: &[Bind],
) -> Result<PageValues, sqlx::Error> {
    let sql = format!(
        "SELECT {} AS document FROM (SELECT {columns} {page}) page",
        page_document(report, order)
    );
    let document: Option<String> = bound(&sql, binds)
        .fetch_one(&mut *conn)
        .await?
        .try_get("document")?;
    page_values(document)
}

/// The aggregate that builds a page's JSON document from the rows of its subquery (columns
/// `d0…`, `m0…`), in the page's order.
fn page_document(report: &UsageReport, order: &str) -> String {
    let aliases: Vec<String> = (0..report.dimensions.len())
        .map(|i| format!("d{i}"))
        .chain((0..report.metrics.len()).map(|i| format!("m{i}")))
        .collect();
    format!(
        "json_group_array(json_array({}) ORDER BY {order})",
        aliases.join(", ")
    )
}

/// A page's values from its document (`None`: no rows).
fn page_values(document: Option<String>) -> Result<PageValues, sqlx::Error> {
    match document {
        Some(document) => serde_json::from_str(&document)
            .map_err(|e| sqlx::Error::Decode(format!("report page: {e}").into())),
        None => Ok(Vec::new()),
    }
}

/// The page from SQLite when rows of several sources (a month and its open days, days
/// added or taken away) make each group: SQLite then groups through a temporary B-tree
/// rather than streaming one table in key order, so the groups are formed once, kept for
/// the statement, and both the page and their number are read from them (grouping again
/// to count took as long as the page).
async fn sqlite_page_of_groups(
    conn: &mut AnyConnection,
    report: &UsageReport,
    grouped: &str,
    order: &str,
    binds: &[Bind],
) -> Result<(PageValues, u64), sqlx::Error> {
    let sql = format!(
        "WITH groups AS MATERIALIZED ({grouped}) \
         SELECT (SELECT {document} \
         FROM (SELECT * FROM groups ORDER BY {order} LIMIT {limit} OFFSET {offset})) AS document, \
         (SELECT COUNT(*) FROM groups) AS total_rows",
        document = page_document(report, order),
        limit = report.page.size(),
        offset = report.page.offset(),
    );
    let row = bound(&sql, binds).fetch_one(&mut *conn).await?;
    let total = crate::db::non_negative(row.try_get("total_rows")?);
    Ok((page_values(row.try_get("document")?)?, total))
}

/// The page from PostgreSQL, row by row, with the number of groups in all when the page
/// has a row to carry it.
async fn postgres_page(
    conn: &mut AnyConnection,
    report: &UsageReport,
    columns: &str,
    page: &str,
    binds: &[Bind],
) -> Result<(PageValues, Option<u64>), sqlx::Error> {
    let sql = format!("SELECT {columns}, COUNT(*) OVER () AS total_rows {page}");
    let rows = bound(&sql, binds).fetch_all(&mut *conn).await?;
    let mut total = None;
    let mut values = Vec::with_capacity(rows.len());
    for row in rows {
        total = Some(crate::db::non_negative(row.try_get("total_rows")?));
        let mut cells = Vec::with_capacity(report.dimensions.len() + report.metrics.len());
        for (i, dimension) in report.dimensions.iter().enumerate() {
            let column = format!("d{i}");
            cells.push(match dimension {
                Dimension::Date => row.try_get::<i64, _>(column.as_str())?.into(),
                _ => row.try_get::<String, _>(column.as_str())?.into(),
            });
        }
        for i in 0..report.metrics.len() {
            let value: Option<i64> = row.try_get(format!("m{i}").as_str())?;
            cells.push(value.into());
        }
        values.push(cells);
    }
    Ok((values, total))
}

/// `sql` with `binds` bound in order.
fn bound<'q>(
    sql: &'q str,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    let mut query = sqlx::query::<Any>(sql);
    for value in binds {
        query = match value {
            Bind::Text(text) => query.bind(text.as_str()),
            Bind::Int(n) => query.bind(*n),
        };
    }
    query
}

enum Bind {
    Text(String),
    Int(i64),
}

/// One segment's rows (one `SELECT` per table read), as the columns the report reads, its
/// sums signed. A month holds its closed days; those not closed by `closed_until_ms` as the
/// report began are read from the daily rollups beside it, from the mark as the statement
/// reads it (a closing that commits in between moves days from one table to the other,
/// never into both or neither).
fn segment(
    segment: &Segment,
    closed_until_ms: i64,
    conditions: &[String],
    bind: &mut impl FnMut(Bind) -> String,
) -> Vec<String> {
    let buckets: Vec<String> = segment
        .spans
        .iter()
        .map(|&(from, until)| {
            // One bucket by equality: its rows are then read in key order, which the
            // grouping and the default order follow without sorting.
            let bucket_end = match segment.granularity {
                Granularity::Day => from + DAY_MS,
                Granularity::Month => next_month_start(from),
            };
            if segment.granularity.bucket(from) == from && until == bucket_end {
                format!("(bucket_ms = {})", bind(Bind::Int(from)))
            } else {
                format!(
                    "(bucket_ms >= {} AND bucket_ms < {})",
                    bind(Bind::Int(from)),
                    bind(Bind::Int(until))
                )
            }
        })
        .collect();
    let sign = if segment.sign < 0 { "-" } else { "" };
    let rows = |table: &str, buckets: &str| {
        format!(
            "SELECT account_id, product, country_code, number_type, bucket_ms AS day_ms, \
             {sign}event_count AS event_count, {sign}quantity AS quantity, \
             {sign}billable_quantity AS billable_quantity, {sign}cost_nanos AS cost_nanos \
             FROM {table} WHERE ({buckets}) AND {conditions}",
            conditions = conditions.join(" AND "),
        )
    };
    let mut arms = vec![rows(segment.granularity.table(), &buckets.join(" OR "))];
    if segment.granularity == Granularity::Month {
        let open: Vec<String> = segment
            .spans
            .iter()
            .filter(|&&(_, until)| until > closed_until_ms)
            .map(|&(from, until)| {
                // From the mark as read before (it can only have moved on since): the
                // range the index is searched by starts there, not at the month's start.
                format!(
                    "(bucket_ms >= {} AND bucket_ms < {})",
                    bind(Bind::Int(from.max(closed_until_ms))),
                    bind(Bind::Int(until))
                )
            })
            .collect();
        if !open.is_empty() {
            let days = format!(
                "({}) AND bucket_ms >= (SELECT closed_until_ms FROM usage_rollups_closed)",
                open.join(" OR ")
            );
            arms.push(rows(Granularity::Day.table(), &days));
        }
    }
    arms
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

/// A dimension's value as the page document holds it (text, or a day's start in ms).
fn dimension_cell(
    dimension: Dimension,
    value: Option<serde_json::Value>,
) -> Result<Cell, sqlx::Error> {
    let malformed = || sqlx::Error::Decode(format!("report page: bad {dimension:?} value").into());
    Ok(match (dimension, value) {
        (Dimension::Date, Some(serde_json::Value::Number(day_ms))) => Cell::Text(
            crate::clock::from_epoch_ms(day_ms.as_i64().ok_or_else(malformed)?)
                .format("%Y-%m-%d")
                .to_string(),
        ),
        (Dimension::Date, _) => return Err(malformed()),
        (_, Some(serde_json::Value::String(text))) => Cell::Text(text),
        _ => return Err(malformed()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const FEB: i64 = T0 + 31 * DAY_MS; // 2026-02-01
    const MAR: i64 = FEB + 28 * DAY_MS; // 2026-03-01

    fn day(n: i64) -> i64 {
        T0 + n * DAY_MS
    }

    fn segments(from_ms: i64, until_ms: i64, months: bool) -> Vec<(Granularity, i64, Vec<Span>)> {
        TimeRange::new(from_ms, until_ms)
            .unwrap()
            .segments(months)
            .into_iter()
            .map(|s| (s.granularity, s.sign, s.spans))
            .collect()
    }

    #[test]
    fn ranges_are_read_as_whole_months_plus_or_minus_days() {
        use Granularity::{Day, Month};
        // Three days inside January: the days.
        assert_eq!(
            segments(day(1), day(4), true),
            [(Day, 1, vec![(day(1), day(4))])]
        );
        // January 2026 has 31 days: one month's rows; by date, its days.
        assert_eq!(segments(T0, FEB, true), [(Month, 1, vec![(T0, FEB)])]);
        assert_eq!(segments(T0, FEB, false), [(Day, 1, vec![(T0, FEB)])]);
        // 31 days from 2 January: January less its 1st, and 1 February.
        assert_eq!(
            segments(day(1), day(32), true),
            [
                (Day, 1, vec![(FEB, day(32))]),
                (Month, 1, vec![(T0, FEB)]),
                (Day, -1, vec![(T0, day(1))]),
            ]
        );
        // 3 to 30 January (27 days): January less two days at either end.
        assert_eq!(
            segments(day(2), day(29), true),
            [
                (Month, 1, vec![(T0, FEB)]),
                (Day, -1, vec![(T0, day(2)), (day(29), FEB)]),
            ]
        );
        // 20 January to 10 February: 12 days and 9 days, cheaper than either month less
        // the rest; the two spans meet at 1 February and are read as one.
        assert_eq!(
            segments(day(19), day(40), true),
            [(Day, 1, vec![(day(19), day(40))])]
        );
        // 1 to 16 February: 15 days inside against a month (2) and 13 outside, a tie, reads
        // the days; one more day inside tips it to February less the rest.
        assert_eq!(
            segments(FEB, FEB + 15 * DAY_MS, true),
            [(Day, 1, vec![(FEB, FEB + 15 * DAY_MS)])]
        );
        assert_eq!(
            segments(FEB, FEB + 16 * DAY_MS, true),
            [
                (Month, 1, vec![(FEB, MAR)]),
                (Day, -1, vec![(FEB + 16 * DAY_MS, MAR)]),
            ]
        );
        // 29 January to 1 March: three days, then February whole.
        assert_eq!(
            segments(day(28), MAR, true),
            [(Day, 1, vec![(day(28), FEB)]), (Month, 1, vec![(FEB, MAR)])]
        );
        // 1 February to 4 March: February whole and three days of March.
        assert_eq!(
            segments(FEB, MAR + 3 * DAY_MS, true),
            [
                (Day, 1, vec![(MAR, MAR + 3 * DAY_MS)]),
                (Month, 1, vec![(FEB, MAR)]),
            ]
        );
        // 2 February to 5 March (31 days): February less a day, then four days of March.
        assert_eq!(
            segments(FEB + DAY_MS, MAR + 4 * DAY_MS, true),
            [
                (Day, 1, vec![(MAR, MAR + 4 * DAY_MS)]),
                (Month, 1, vec![(FEB, MAR)]),
                (Day, -1, vec![(FEB, FEB + DAY_MS)]),
            ]
        );
    }

    #[test]
    fn the_days_signed_sum_to_the_range_for_every_window() {
        // Per day from 2025-12-01 over 100 days: how often it is counted (+1 per span that
        // holds it, -1 per subtracted one); a month span counts each of its days.
        let base = T0 - 31 * DAY_MS;
        for start in 0..60 {
            for length in 1..=RANGE_DAYS_MAX {
                let (from, until) = (base + start * DAY_MS, base + (start + length) * DAY_MS);
                let mut counted = vec![0_i64; 100];
                for segment in TimeRange::new(from, until).unwrap().segments(true) {
                    for (a, b) in segment.spans {
                        for d in (a - base) / DAY_MS..(b - base) / DAY_MS {
                            counted[usize::try_from(d).unwrap()] += segment.sign;
                        }
                    }
                }
                let expected: Vec<i64> = (0..100)
                    .map(|d| i64::from((start..start + length).contains(&d)))
                    .collect();
                assert_eq!(counted, expected, "from day {start}, {length} days");
            }
        }
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert_eq!(TimeRange::new(T0, T0), Err(RangeError::EndBeforeStart));
        assert_eq!(
            TimeRange::new(T0, T0 + 32 * DAY_MS),
            Err(RangeError::TooLong)
        );
        assert_eq!(
            TimeRange::new(T0 + 3_600_000, T0 + DAY_MS),
            Err(RangeError::StartNotAtMidnight)
        );
        assert_eq!(
            TimeRange::new(T0, T0 + DAY_MS + 1),
            Err(RangeError::EndNotAtMidnight)
        );
        assert_eq!(
            TimeRange::new(T0 + 1, T0 + 1),
            Err(RangeError::StartNotAtMidnight)
        );
    }
}
