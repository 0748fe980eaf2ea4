//! The dashboard: balance and available credit, this month's usage with daily charts
//! (quantities on a managed account's pages; quantities and cost elsewhere), and for a
//! manager in its own account the size of its book.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Datelike;

use super::usage::{days_between, format_metric, value_on};
use crate::accounts;
use crate::accounts::listing::PageRequest;
use crate::billing;
use crate::http::AppState;
use crate::money::Money;
use crate::portal::auth::Viewer;
use crate::portal::chart::BarChart;
use crate::portal::error::PortalError;
use crate::portal::page::{Chrome, Html, Section, see_other};
use crate::reports::{self, Audience, Cell, Metric, ReportParams, ReportProduct, Scope};

/// Balance figures as shown.
#[derive(Debug)]
pub struct BalanceView {
    balance: String,
    credit_limit: String,
    available_credit: String,
}

/// One product's month so far.
#[derive(Debug)]
pub struct SummaryRow {
    product: &'static str,
    count: String,
    quantity: String,
    cost: String,
}

/// A manager's book.
#[derive(Debug)]
pub struct ManagedSummary {
    live: i64,
    limit: i64,
    pool: i64,
    allocated: i64,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    name: String,
    balance: Option<BalanceView>,
    month: String,
    summary: Vec<SummaryRow>,
    charts: Vec<BarChart>,
    show_cost: bool,
    managed: Option<ManagedSummary>,
}

/// `GET /`.
pub async fn home() -> Response {
    see_other("/dashboard", None)
}

/// Money as shown on pages.
pub fn dollars(money: Money) -> String {
    format!("${}", money.to_decimal_string(2))
}

/// The metric that measures how much of a product was used.
fn quantity_metric(product: ReportProduct) -> Metric {
    match product {
        ReportProduct::SipTrunking => Metric::CallSec,
        ReportProduct::Messaging => Metric::Parts,
        ReportProduct::NumberRental => Metric::Months,
    }
}

/// `GET /dashboard`.
pub async fn show(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PortalError> {
    let subject = &viewer.subject;
    let show_cost = viewer.may_see_prices();
    let balance = if subject.rollup_billing {
        None
    } else {
        let figures = billing::balance_of(&state.db, subject).await?;
        Some(BalanceView {
            balance: dollars(figures.balance),
            credit_limit: dollars(figures.credit_limit),
            available_credit: dollars(figures.available_credit()),
        })
    };
    let now = state.clock.now();
    let audience = Audience {
        scope: Scope::Account(subject.id),
        may_see_prices: show_cost,
    };
    let mut summary = Vec::new();
    let mut daily: Vec<(ReportProduct, Vec<reports::ReportRow>)> = Vec::new();
    let mut range = (0, 0);
    for product in ReportProduct::ALL {
        let quantity = quantity_metric(product);
        let mut metrics = vec!["count", quantity.name()];
        if show_cost {
            metrics.push("cost");
        }
        let params = ReportParams {
            product: Some(product.name().to_owned()),
            dimensions: Some("date".to_owned()),
            metrics: Some(metrics.join(",")),
            date_range: Some("this_month".to_owned()),
            ..ReportParams::default()
        };
        let page = PageRequest::new(1, 64, 64).unwrap_or_default();
        let report = reports::build(&params, audience, page, now)?;
        range = (report.range.from_ms(), report.range.until_ms());
        let mut conn = state.db.read.acquire().await?;
        let (rows, _) = reports::query::run(&mut conn, &report).await?;
        drop(conn);
        let total = |index: usize| -> i64 {
            rows.iter()
                .filter_map(|row| match row.get(index) {
                    Some(Cell::Int(n) | Cell::Nanos(n)) => Some(*n),
                    _ => None,
                })
                .fold(0_i64, i64::saturating_add)
        };
        summary.push(SummaryRow {
            product: match product {
                ReportProduct::SipTrunking => "Calls",
                ReportProduct::Messaging => "Messages",
                ReportProduct::NumberRental => "Numbers",
            },
            count: total(1).to_string(),
            quantity: format_metric(quantity, total(2)),
            cost: if show_cost {
                format_metric(Metric::Cost, total(3))
            } else {
                String::new()
            },
        });
        daily.push((product, rows));
    }
    let days = days_between(range.0, range.1.min(now.timestamp_millis() + 1));
    let series = |product: ReportProduct, column: usize| -> Vec<(String, i64)> {
        let rows: Vec<reports::ReportRow> = daily
            .iter()
            .filter(|(p, _)| *p == product)
            .flat_map(|(_, rows)| rows.iter())
            .map(|row| {
                let date = row.first().cloned().unwrap_or(Cell::Text(String::new()));
                let value = row.get(column).cloned().unwrap_or(Cell::Int(0));
                vec![date, value]
            })
            .collect();
        days.iter()
            .map(|d| (short(d), value_on(&rows, d)))
            .collect()
    };
    let mut charts = vec![
        BarChart::new(
            "Call minutes per day",
            &series(ReportProduct::SipTrunking, 2),
            |v| format_metric(Metric::CallSec, v),
        ),
        BarChart::new(
            "Message parts per day",
            &series(ReportProduct::Messaging, 2),
            |v| format_metric(Metric::Parts, v),
        ),
    ];
    if show_cost {
        let mut cost: Vec<(String, i64)> = series(ReportProduct::SipTrunking, 3);
        for product in [ReportProduct::Messaging, ReportProduct::NumberRental] {
            for ((_, total), (_, more)) in cost.iter_mut().zip(series(product, 3)) {
                *total = total.saturating_add(more);
            }
        }
        charts.push(BarChart::new("Cost per day", &cost, |v| {
            format_metric(Metric::Cost, v)
        }));
    }
    let managed = if viewer.manages() {
        let count = accounts::managed_account_count(&state.db, &viewer.user).await?;
        let channels = accounts::channel_allocation(&state.db, &viewer.user).await?;
        Some(ManagedSummary {
            live: count.live,
            limit: count.limit,
            pool: channels.pool,
            allocated: channels.allocated,
        })
    } else {
        None
    };
    let page = DashboardPage {
        chrome: Chrome::new(&viewer, Section::Dashboard, "Dashboard"),
        name: subject.organization_name.clone(),
        balance,
        month: format!("{} {}", month_name(now.month()), now.year()),
        summary,
        charts,
        show_cost,
        managed,
    };
    Ok(Html(page).into_response())
}

/// `MM-DD` of a `YYYY-MM-DD` day, for chart labels.
fn short(day: &str) -> String {
    day.get(5..).unwrap_or(day).to_owned()
}

fn month_name(month: u32) -> &'static str {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    usize::try_from(month)
        .ok()
        .and_then(|m| m.checked_sub(1))
        .and_then(|m| NAMES.get(m))
        .copied()
        .unwrap_or("")
}
