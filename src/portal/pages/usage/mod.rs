//! Usage: the usage reports of the API (`reports::build`, `reports::query::run`) as a form,
//! a table, a chart and a CSV download, and the latest detail records. On a managed
//! account's pages (its own user or its manager acting) the price-revealing metrics are not
//! offered and asking for them is refused by the same rule as the API; records show no
//! cost, rate or billed seconds.

mod records;
mod series;

pub use series::{days_between, format_metric, value_on};

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Utc};

use super::FieldErrors;
use crate::accounts::listing::PageRequest;
use crate::http::AppState;
use crate::http::usage_reports::CSV_ROWS_MAX;
use crate::portal::auth::Viewer;
use crate::portal::chart::BarChart;
use crate::portal::error::PortalError;
use crate::portal::form::Form;
use crate::portal::page::{Chrome, Html, Section};
use crate::reports::{self, Audience, Cell, Dimension, Metric, ReportParams, ReportProduct, Scope};

/// Rows of a report per page: a screenful that still reads well on a phone.
pub const REPORT_ROWS_PER_PAGE: u32 = 100;

/// The date ranges offered (the API takes these and `last_N_days`).
const RANGES: [(&str, &str); 8] = [
    ("today", "Today"),
    ("yesterday", "Yesterday"),
    ("this_week", "This week"),
    ("last_week", "Last week"),
    ("this_month", "This month"),
    ("last_month", "Last month"),
    ("last_7_days", "Last 7 days and today"),
    ("last_30_days", "Last 30 days and today"),
];

/// One option of a select or checkbox group.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The submitted value.
    pub value: &'static str,
    /// What it says.
    pub label: String,
    /// Whether it is chosen.
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    chrome: Chrome,
    products: Vec<Choice>,
    ranges: Vec<Choice>,
    dimensions: Vec<Choice>,
    metrics: Vec<Choice>,
    may_span_managed: bool,
    managed: bool,
    errors: FieldErrors,
    columns: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    total_rows: u64,
    chart: Option<BarChart>,
    csv_href: String,
    previous_href: String,
    next_href: String,
    records: Vec<records::RecordRow>,
    show_prices: bool,
}

/// A report request from the page's query string.
struct Request {
    product: ReportProduct,
    params: ReportParams,
    managed: bool,
    page: u32,
}

fn parse_request(viewer: &Viewer, raw: Option<&str>) -> Request {
    let query = Form::parse(raw.unwrap_or_default().as_bytes()).unwrap_or_default();
    let product = query
        .get("product")
        .and_then(ReportProduct::parse)
        .unwrap_or(ReportProduct::SipTrunking);
    let managed = viewer.manages() && query.checked("managed_accounts");
    // Boxes ticked for another product (the form keeps them when only the product changes)
    // mean the product changed: its defaults apply. A metric of this product that the
    // viewer may not see is kept, and refused by the report's own rule.
    let own = |names: Vec<&'static str>, chosen: Vec<&str>| -> Vec<String> {
        if chosen.iter().all(|c| names.contains(c)) {
            chosen.into_iter().map(str::to_owned).collect()
        } else {
            Vec::new()
        }
    };
    let dimensions = own(
        product.dimensions().iter().map(|d| d.name()).collect(),
        query.all("dimensions"),
    );
    let metrics = own(
        product.metrics().iter().map(|m| m.name()).collect(),
        query.all("metrics"),
    );
    let default_metrics: Vec<&str> = product
        .metrics_for(viewer.may_see_prices())
        .iter()
        .map(|m| m.name())
        .collect();
    let params = ReportParams {
        product: Some(product.name().to_owned()),
        dimensions: Some(if dimensions.is_empty() {
            "date".to_owned()
        } else {
            dimensions.join(",")
        }),
        metrics: Some(if metrics.is_empty() {
            default_metrics.join(",")
        } else {
            metrics.join(",")
        }),
        date_range: Some(
            query
                .non_blank("date_range")
                .unwrap_or("this_month")
                .to_owned(),
        ),
        ..ReportParams::default()
    };
    let page = query
        .get("page")
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    Request {
        product,
        params,
        managed,
        page,
    }
}

fn audience(viewer: &Viewer, managed: bool) -> Audience {
    Audience {
        scope: if managed {
            Scope::ManagedAccountsOf(viewer.subject.id)
        } else {
            Scope::Account(viewer.subject.id)
        },
        may_see_prices: viewer.may_see_prices(),
    }
}

/// A cell as shown (amounts exact, as in the API's CSV).
fn cell_text(cell: &Cell) -> String {
    match cell {
        Cell::Text(text) => text.clone(),
        Cell::Int(n) => n.to_string(),
        Cell::Nanos(nanos) => crate::reports::jobs::decimal(*nanos),
    }
}

/// The query string of this report with `page` (or without it: `None`).
fn href(base: &str, request: &Request, page: Option<u32>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.append_pair("product", request.product.name());
    if let Some(range) = &request.params.date_range {
        out.append_pair("date_range", range);
    }
    for (name, list) in [
        ("dimensions", &request.params.dimensions),
        ("metrics", &request.params.metrics),
    ] {
        for value in list.as_deref().unwrap_or_default().split(',') {
            out.append_pair(name, value);
        }
    }
    if request.managed {
        out.append_pair("managed_accounts", "on");
    }
    if let Some(page) = page {
        out.append_pair("page", &page.to_string());
    }
    format!("{base}?{}", out.finish())
}

/// `GET /usage`.
pub async fn show_page(
    state: &AppState,
    viewer: &Viewer,
    raw: Option<&str>,
) -> Result<Response, PortalError> {
    let request = parse_request(viewer, raw);
    let may_see_prices = viewer.may_see_prices();
    let page = PageRequest::new(request.page, REPORT_ROWS_PER_PAGE, REPORT_ROWS_PER_PAGE)
        .unwrap_or_default();
    let now = state.clock.now();
    let audience = audience(viewer, request.managed);
    let mut errors = FieldErrors::default();
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    let mut total_rows = 0;
    let mut chart = None;
    match reports::build(&request.params, audience, page, now) {
        Ok(report) => {
            let mut conn = state.db.read.acquire().await?;
            let (found, total) = reports::query::run(&mut conn, &report).await?;
            drop(conn);
            columns = report
                .dimensions
                .iter()
                .map(|d| d.name())
                .chain(report.metrics.iter().map(|m| m.name()))
                .collect();
            rows = found
                .iter()
                .map(|row| row.iter().map(cell_text).collect())
                .collect();
            total_rows = total;
            if let Some(first) = report.metrics.first() {
                chart = Some(daily_chart(state, &report, *first, now).await?);
            }
        }
        Err(error) => errors = FieldErrors::from_refusal(error.into())?,
    }
    let chosen = |list: &Option<String>| -> Vec<String> {
        list.as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect()
    };
    let chosen_dimensions = chosen(&request.params.dimensions);
    let chosen_metrics = chosen(&request.params.metrics);
    let dimensions = request
        .product
        .dimensions()
        .iter()
        .filter(|d| **d != Dimension::UserId)
        .map(|d| Choice {
            value: d.name(),
            label: d.name().replace('_', " "),
            selected: chosen_dimensions.iter().any(|c| c == d.name()),
        })
        .collect();
    let metrics = request
        .product
        .metrics_for(may_see_prices)
        .iter()
        .map(|m| Choice {
            value: m.name(),
            label: m.name().replace('_', " "),
            selected: chosen_metrics.iter().any(|c| c == m.name()),
        })
        .collect();
    let records = records::recent_records(state, viewer, &request).await?;
    let range = request.params.date_range.as_deref().unwrap_or_default();
    let last_page = page.total_pages(total_rows).max(1);
    let page_number = page.number();
    let template = UsagePage {
        chrome: Chrome::new(viewer, Section::Usage, "Usage"),
        products: ReportProduct::ALL
            .iter()
            .map(|p| Choice {
                value: p.name(),
                label: p.name().replace('-', " "),
                selected: *p == request.product,
            })
            .collect(),
        ranges: RANGES
            .iter()
            .map(|(value, label)| Choice {
                value,
                label: (*label).to_owned(),
                selected: *value == range,
            })
            .collect(),
        dimensions,
        metrics,
        may_span_managed: viewer.manages(),
        managed: request.managed,
        errors,
        columns,
        rows,
        total_rows,
        chart,
        csv_href: href("/usage.csv", &request, None),
        previous_href: if page_number > 1 {
            href("/usage", &request, Some(page_number - 1))
        } else {
            String::new()
        },
        next_href: if u64::from(page_number) < last_page {
            href("/usage", &request, Some(page_number + 1))
        } else {
            String::new()
        },
        records,
        show_prices: may_see_prices,
    };
    Ok(Html(template).into_response())
}

/// `GET /usage`.
pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, PortalError> {
    show_page(&state, &viewer, raw.as_deref()).await
}

/// The first metric of `report` per day of its range.
async fn daily_chart(
    state: &AppState,
    report: &reports::UsageReport,
    metric: Metric,
    now: DateTime<Utc>,
) -> Result<BarChart, PortalError> {
    let daily = reports::UsageReport {
        dimensions: vec![Dimension::Date],
        metrics: vec![metric],
        sort: Vec::new(),
        page: PageRequest::new(1, 64, 64).unwrap_or_default(),
        ..report.clone()
    };
    let mut conn = state.db.read.acquire().await?;
    let (rows, _) = reports::query::run(&mut conn, &daily).await?;
    drop(conn);
    let points = days_between(
        report.range.from_ms(),
        report.range.until_ms().min(now.timestamp_millis() + 1),
    )
    .into_iter()
    .map(|day| {
        let value = value_on(&rows, &day);
        (day.get(5..).unwrap_or(&day).to_owned(), value)
    })
    .collect::<Vec<_>>();
    let title = format!("{} per day", metric.name().replace('_', " "));
    Ok(BarChart::new(&title, &points, move |v| {
        format_metric(metric, v)
    }))
}

/// `GET /usage.csv`: the report as CSV, every row (as the API's `format=csv`).
pub async fn csv(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, PortalError> {
    let request = parse_request(&viewer, raw.as_deref());
    let page = PageRequest::new(1, CSV_ROWS_MAX, CSV_ROWS_MAX).unwrap_or_default();
    let audience = audience(&viewer, request.managed);
    let report = reports::build(&request.params, audience, page, state.clock.now())?;
    let mut conn = state.db.read.acquire().await?;
    let (rows, _) = reports::query::run(&mut conn, &report).await?;
    drop(conn);
    let columns: Vec<&'static str> = report
        .dimensions
        .iter()
        .map(|d| d.name())
        .chain(report.metrics.iter().map(|m| m.name()))
        .collect();
    let (_, body) = crate::reports::jobs::render(&columns, &rows);
    let today = state.clock.now().date_naive();
    let filename = format!(
        "usage-{}-{}-{:04}{:02}{:02}.csv",
        request.product.name(),
        request.params.date_range.as_deref().unwrap_or("range"),
        today.year(),
        today.month(),
        today.day()
    );
    Ok(crate::http::download::attachment(
        body,
        "text/csv; charset=utf-8",
        &filename,
    ))
}
