//! `GET /v2/usage_reports` and `GET /v2/usage_reports/options` (Telnyx v2 usage reports):
//! aggregated usage from the rollups, JSON (metrics as JSON numbers) or CSV.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::ser::SerializeMap;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use super::extract::{Caller, QueryParams};
use super::wire::PaginationMeta;
use crate::accounts::listing::{Page, PageRequest};
use crate::accounts::{self, AccountKind};
use crate::reports::jobs::{csv_field, decimal};
use crate::reports::{self, Audience, Cell, ReportParams, ReportProduct, ReportRow, Scope};

/// Largest page of a usage report (Telnyx: 5000).
pub const REPORT_PAGE_SIZE_MAX: u32 = 5000;

/// Rows one CSV download holds when no page is asked for.
pub const CSV_ROWS_MAX: u32 = 100_000;

/// One report row: the requested dimensions and metrics as keys (amounts as exact JSON
/// numbers).
#[derive(Debug)]
pub struct ReportRowJson {
    columns: std::sync::Arc<Vec<&'static str>>,
    cells: ReportRow,
}

impl Serialize for ReportRowJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.cells.len()))?;
        for (column, cell) in self.columns.iter().zip(&self.cells) {
            match cell {
                Cell::Text(text) => map.serialize_entry(column, text)?,
                Cell::Int(n) => map.serialize_entry(column, n)?,
                Cell::Nanos(nanos) => {
                    let number = serde_json::value::RawValue::from_string(decimal(*nanos))
                        .map_err(serde::ser::Error::custom)?;
                    map.serialize_entry(column, &number)?;
                }
            }
        }
        map.end()
    }
}

/// A page of a usage report.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReportPage {
    /// One object per combination of the requested dimensions, with the requested metrics
    /// (numbers; `cost` an exact decimal).
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<ReportRowJson>,
    /// Paging metadata.
    pub meta: PaginationMeta,
}

fn params(query: &QueryParams) -> Result<ReportParams, ApiError> {
    let mut filters = match query.get("filter") {
        Some(text) => reports::parse_filter_string(text)?,
        None => Vec::new(),
    };
    for name in query.names_with_prefix("filter[") {
        let dimension = name
            .strip_prefix("filter[")
            .and_then(|rest| rest.strip_suffix(']'))
            .filter(|d| !d.contains(['[', ']']))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::BadRequest,
                    format!("'{name}' is not a filter: write filter[dimension]=value"),
                )
                .parameter(name)
            })?;
        if let Some(value) = query.get(name) {
            filters.push((dimension.to_owned(), value.to_owned()));
        }
    }
    let get = |name: &str| query.get(name).map(str::to_owned);
    Ok(ReportParams {
        product: get("product"),
        dimensions: get("dimensions"),
        metrics: get("metrics"),
        start_date: get("start_date"),
        end_date: get("end_date"),
        date_range: get("date_range"),
        filters,
        sort: get("sort"),
    })
}

/// Whose usage and whether prices show: `managed_accounts=true` is for managers only.
fn audience(caller: &Caller, query: &QueryParams) -> Result<Audience, ApiError> {
    let may_see_prices = caller.account.kind != AccountKind::Managed;
    let scope = if query.bool("managed_accounts")?.unwrap_or(false) {
        accounts::ensure_manager(&caller.account).map_err(|_| {
            ApiError::new(
                ErrorKind::Forbidden,
                "managed_accounts=true reports over a manager's managed accounts; this account \
                 is not an approved manager",
            )
        })?;
        Scope::ManagedAccountsOf(caller.account.id)
    } else {
        Scope::Account(caller.account.id)
    };
    Ok(Audience {
        scope,
        may_see_prices,
    })
}

/// Aggregated usage of the caller (or, with `managed_accounts=true`, of every managed
/// account of the calling manager, one row group per account).
#[utoipa::path(get, path = "/v2/usage_reports", tag = "Reporting",
    params(
        ("product" = String, Query, description = "sip-trunking, messaging or number-rental (see /v2/usage_reports/options)"),
        ("dimensions" = String, Query, description = "Comma-separated dimensions to group by"),
        ("metrics" = String, Query, description = "Comma-separated metrics to sum"),
        ("start_date" = Option<String>, Query, description = "YYYY-MM-DDT00:00:00Z (reports cover whole UTC days), inclusive"),
        ("end_date" = Option<String>, Query, description = "YYYY-MM-DDT00:00:00Z (reports cover whole UTC days), exclusive; at most 31 days after start_date"),
        ("date_range" = Option<String>, Query, description = "today, yesterday, this_week, last_week, this_month, last_month, last_N_days (default last_30_days)"),
        ("filter" = Option<String>, Query, description = "dimension:value items, comma-separated; or filter[dimension]=value"),
        ("managed_accounts" = Option<bool>, Query, description = "Managers: report over every managed account, per account"),
        ("sort" = Option<String>, Query, description = "Comma-separated dimensions or metrics, '-' for descending"),
        ("format" = Option<String>, Query, description = "json (default) or csv"),
        ("page[number]" = Option<u32>, Query, minimum = 1, maximum = 1000000),
        ("page[size]" = Option<u32>, Query, description = "1 to 5000, default 20 (CSV: every row unless a page is asked for)", minimum = 1, maximum = 5000),
    ),
    responses(
        (status = 200, description = "The report: JSON, or with format=csv a header row then one row per group",
            content((UsageReportPage = "application/json"), (String = "text/csv")))),
    security(("account_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let csv = query.wants_csv()?;
    let paged = query.get("page[number]").is_some() || query.get("page[size]").is_some();
    let page = if csv && !paged {
        PageRequest::new(1, CSV_ROWS_MAX, CSV_ROWS_MAX).unwrap_or_default()
    } else {
        query.page(REPORT_PAGE_SIZE_MAX)?
    };
    let audience = audience(&caller, &query)?;
    let report = reports::build(&params(&query)?, audience, page, state.clock.now())?;
    let mut conn = state.db.read.acquire().await?;
    let (rows, total) = reports::query::run(&mut conn, &report).await?;
    drop(conn);
    let columns: Vec<&'static str> = report
        .dimensions
        .iter()
        .map(|d| d.name())
        .chain(report.metrics.iter().map(|m| m.name()))
        .collect();
    if csv {
        return Ok(csv_response(&columns, &rows));
    }
    let page = Page {
        items: rows,
        request: page,
        total_results: total,
    };
    let columns = std::sync::Arc::new(columns);
    Ok(Json(UsageReportPage {
        meta: PaginationMeta::of(&page),
        data: page
            .items
            .into_iter()
            .map(|cells| ReportRowJson {
                columns: std::sync::Arc::clone(&columns),
                cells,
            })
            .collect(),
    })
    .into_response())
}

fn csv_response(columns: &[&'static str], rows: &[ReportRow]) -> Response {
    let mut body = columns.join(",");
    body.push('\n');
    for row in rows {
        let fields: Vec<String> = row
            .iter()
            .map(|cell| match cell {
                Cell::Text(text) => csv_field(text),
                Cell::Int(n) => n.to_string(),
                Cell::Nanos(nanos) => decimal(*nanos),
            })
            .collect();
        body.push_str(&fields.join(","));
        body.push('\n');
    }
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response
}

/// What one product can report.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReportOptions {
    /// The product.
    pub product: &'static str,
    /// Dimensions it groups by.
    pub product_dimensions: Vec<&'static str>,
    /// Metrics it sums (without those that reveal prices, for a managed account).
    pub product_metrics: Vec<&'static str>,
    /// The rated products it covers, each with the same dimensions and metrics.
    pub record_types: Vec<UsageReportRecordType>,
}

/// One rated product of a report product.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReportRecordType {
    /// The rated product (`voice_outbound` …).
    pub record_type: &'static str,
    /// Dimensions.
    pub product_dimensions: Vec<&'static str>,
    /// Metrics.
    pub product_metrics: Vec<&'static str>,
}

/// `{"data": [options…]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReportOptionsList {
    /// One entry per product.
    pub data: Vec<UsageReportOptions>,
}

/// The products, dimensions and metrics a report can use — exactly what
/// `/v2/usage_reports` accepts from this caller.
#[utoipa::path(get, path = "/v2/usage_reports/options", tag = "Reporting",
    params(("product" = Option<String>, Query, description = "Only this product (default: all)")),
    responses((status = 200, body = UsageReportOptionsList)),
    security(("account_key" = [])))]
pub async fn options(
    caller: Caller,
    query: QueryParams,
) -> Result<Json<UsageReportOptionsList>, ApiError> {
    let may_see_prices = caller.account.kind != AccountKind::Managed;
    let products: Vec<ReportProduct> = match query.get("product") {
        None => ReportProduct::ALL.to_vec(),
        Some(name) => vec![ReportProduct::parse(name).ok_or_else(|| {
            ApiError::new(
                ErrorKind::BadRequest,
                format!(
                    "Unknown product '{name}'. Available products: {}.",
                    ReportProduct::ALL.map(ReportProduct::name).join(", ")
                ),
            )
            .parameter("product")
        })?],
    };
    let data = products
        .into_iter()
        .map(|product| {
            let dimensions: Vec<&'static str> =
                product.dimensions().iter().map(|d| d.name()).collect();
            let metrics: Vec<&'static str> = product
                .metrics_for(may_see_prices)
                .iter()
                .map(|m| m.name())
                .collect();
            UsageReportOptions {
                product: product.name(),
                record_types: product
                    .products()
                    .iter()
                    .map(|p| UsageReportRecordType {
                        record_type: p.as_str(),
                        product_dimensions: dimensions.clone(),
                        product_metrics: metrics.clone(),
                    })
                    .collect(),
                product_dimensions: dimensions,
                product_metrics: metrics,
            }
        })
        .collect();
    Ok(Json(UsageReportOptionsList { data }))
}
