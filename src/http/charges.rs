//! `GET /v2/charges_summary` and `GET /v2/charges_breakdown`: the caller's charges over a
//! range of days, from the ledger data invoices are made of (by posting time; `start_date`
//! inclusive, `end_date` exclusive, at most 31 days). Every field the Telnyx SDKs require is
//! present. A managed account's breakdown per number would reveal its unit prices and is
//! refused; its summary carries quantities and amounts only.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use super::extract::{Caller, QueryParams};
use super::wire::{Data, WIRE_DECIMALS};
use crate::accounts::AccountKind;
use crate::billing::CURRENCY;
use crate::invoices::charges::{self, DateRange, Summary};
use crate::invoices::product_name;
use crate::money::Money;

/// A month's quantity and charge (Telnyx `MonthDetail`).
#[derive(Debug, Serialize, ToSchema)]
pub struct MonthDetail {
    /// Numbers.
    pub quantity: i64,
    /// Monthly recurring charge.
    pub mrc: String,
    /// One-time charges (none).
    pub otc: String,
}

/// A summary line: `simple` (usage of a product) or `comparative` (number rental, new and
/// existing numbers).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SummaryLine {
    /// Usage of one product.
    Simple {
        /// Product name.
        name: String,
        /// Product (`voice_outbound` …).
        alias: &'static str,
        /// Quantity in the product's unit (seconds, parts).
        quantity: i64,
        /// Charge.
        amount: String,
    },
    /// Number rental.
    Comparative {
        /// `Number rental`.
        name: String,
        /// `number_rental`.
        alias: &'static str,
        /// Numbers first rented in the range.
        new_this_month: MonthDetail,
        /// Numbers also rented in the two months before it.
        existing_this_month: MonthDetail,
    },
}

/// An adjustment (Telnyx `AdjustmentLine`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AdjustmentLine {
    /// Charge: positive took money from the account.
    pub amount: String,
    /// Its reason.
    pub description: String,
    /// The day it was posted.
    pub event_date: String,
}

/// Lines and adjustments.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryBody {
    /// Per product.
    pub lines: Vec<SummaryLine>,
    /// Operator adjustments.
    pub adjustments: Vec<AdjustmentLine>,
}

/// Totals (Telnyx `TotalSummary`); `grand_total` is the sum of the others.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotalSummary {
    /// Rental of numbers new in the range.
    pub new_mrc: String,
    /// One-time charges (none).
    pub new_otc: String,
    /// Rental of numbers rented before.
    pub existing_mrc: String,
    /// Usage other than rental.
    pub other: String,
    /// Operator credits (negative).
    pub credits: String,
    /// Operator adjustments.
    pub ledger_adjustments: String,
    /// Everything charged in the range.
    pub grand_total: String,
}

/// The charges summary (Telnyx `ChargesSummaryRetrieveResponse.data`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChargesSummary {
    /// The account.
    pub user_id: String,
    /// Its email.
    pub user_email: String,
    /// Currency.
    pub currency: &'static str,
    /// First day.
    pub start_date: String,
    /// Day after the last.
    pub end_date: String,
    /// Lines.
    pub summary: SummaryBody,
    /// Totals.
    pub total: TotalSummary,
}

/// One charge of a number (Telnyx `ServiceDetail`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceDetail {
    /// `Number rental`.
    pub name: String,
    /// `MRC`.
    pub cost_type: &'static str,
    /// Charge.
    pub cost: String,
}

/// One number's charges (Telnyx `NumberBreakdownResult`).
#[derive(Debug, Serialize, ToSchema)]
pub struct NumberBreakdown {
    /// The number, E.164.
    pub tn: String,
    /// Kind of number: `local`, `mobile`, `toll_free` …
    pub charge_type: String,
    /// The account renting it (a rollup account's number appears on its manager's).
    pub service_owner_user_id: String,
    /// Its email.
    pub service_owner_email: String,
    /// Its charges.
    pub services: Vec<ServiceDetail>,
}

/// The charges breakdown (Telnyx `ChargesBreakdownRetrieveResponse.data`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChargesBreakdown {
    /// The account.
    pub user_id: String,
    /// Its email.
    pub user_email: String,
    /// Currency.
    pub currency: &'static str,
    /// First day.
    pub start_date: String,
    /// Day after the last.
    pub end_date: String,
    /// One per rented number.
    pub results: Vec<NumberBreakdown>,
}

fn money(m: Money) -> String {
    m.to_decimal_string(WIRE_DECIMALS)
}

fn total(amounts: impl IntoIterator<Item = Money>) -> Money {
    amounts
        .into_iter()
        .fold(Money::ZERO, |sum, m| sum.checked_add(m).unwrap_or(sum))
}

fn summary_body(summary: &Summary) -> (SummaryBody, TotalSummary) {
    let mut lines: Vec<SummaryLine> = summary
        .products
        .iter()
        .map(|p| SummaryLine::Simple {
            name: format!(
                "{} ({})",
                product_name(p.product),
                p.product.quantity_unit()
            ),
            alias: p.product.as_str(),
            quantity: p.quantity,
            amount: money(p.amount),
        })
        .collect();
    let rental = summary.rental.unwrap_or_default();
    if summary.rental.is_some() {
        let detail = |quantity, amount| MonthDetail {
            quantity,
            mrc: money(amount),
            otc: money(Money::ZERO),
        };
        lines.push(SummaryLine::Comparative {
            name: "Number rental".to_owned(),
            alias: "number_rental",
            new_this_month: detail(rental.new_numbers, rental.new_amount),
            existing_this_month: detail(rental.existing_numbers, rental.existing_amount),
        });
    }
    let other = total(summary.products.iter().map(|p| p.amount));
    let adjustments = total(summary.adjustments.iter().map(|a| a.amount));
    let grand_total = total([
        rental.new_amount,
        rental.existing_amount,
        other,
        summary.credits,
        adjustments,
    ]);
    (
        SummaryBody {
            lines,
            adjustments: summary
                .adjustments
                .iter()
                .map(|a| AdjustmentLine {
                    amount: money(a.amount),
                    description: a.description.clone(),
                    event_date: a.date.to_string(),
                })
                .collect(),
        },
        TotalSummary {
            new_mrc: money(rental.new_amount),
            new_otc: money(Money::ZERO),
            existing_mrc: money(rental.existing_amount),
            other: money(other),
            credits: money(summary.credits),
            ledger_adjustments: money(adjustments),
            grand_total: money(grand_total),
        },
    )
}

/// What the caller was charged over `start_date` (inclusive) to `end_date` (exclusive), at
/// most 31 days: usage per product, number rental (new and existing numbers), credits and
/// adjustments. A manager's includes its rollup accounts' usage.
#[utoipa::path(get, path = "/v2/charges_summary", tag = "Billing",
    params(
        ("start_date" = String, Query, description = "First day, YYYY-MM-DD"),
        ("end_date" = String, Query, description = "Day after the last, YYYY-MM-DD; at most 31 days after start_date"),
    ),
    responses((status = 200, body = Data<ChargesSummary>)),
    security(("account_key" = [])))]
pub async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<Data<ChargesSummary>>, ApiError> {
    let range = DateRange::parse(query.get("start_date"), query.get("end_date"), false)?;
    super::invoices::refuse_rollup(&caller.account)?;
    let account = &caller.account;
    let summary = {
        let mut conn = state.db.read.acquire().await?;
        charges::summary(&mut conn, account.id, range).await?
    };
    let (body, total) = summary_body(&summary);
    Ok(Json(Data {
        data: ChargesSummary {
            user_id: account.id.to_string(),
            user_email: account.email.clone(),
            currency: CURRENCY,
            start_date: range.start().to_string(),
            end_date: range.end().to_string(),
            summary: body,
            total,
        },
    }))
}

/// The caller's charges per rented number over `start_date` to `end_date` (exclusive;
/// default one month), as JSON or, with `format=csv`, CSV. Refused to managed accounts:
/// per-number charges would reveal their unit prices.
#[utoipa::path(get, path = "/v2/charges_breakdown", tag = "Billing",
    params(
        ("start_date" = String, Query, description = "First day, YYYY-MM-DD"),
        ("end_date" = Option<String>, Query, description = "Day after the last (default one month after start_date); at most 31 days after it"),
        ("format" = Option<String>, Query, description = "json (default) or csv"),
    ),
    responses((status = 200, description = "The breakdown, as JSON or CSV",
        content((Data<ChargesBreakdown> = "application/json"), (String = "text/csv")))),
    security(("account_key" = [])))]
pub async fn breakdown(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Response, ApiError> {
    let csv = query.wants_csv()?;
    let range = DateRange::parse(query.get("start_date"), query.get("end_date"), true)?;
    super::invoices::refuse_rollup(&caller.account)?;
    if caller.account.kind == AccountKind::Managed {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "Pricing for this account is managed by its manager account: charges per number \
             would reveal unit prices. The charges summary gives this account's totals.",
        ));
    }
    let account = &caller.account;
    let numbers = {
        let mut conn = state.db.read.acquire().await?;
        charges::breakdown(&mut conn, account.id, range).await?
    };
    let results: Vec<NumberBreakdown> = numbers
        .into_iter()
        .map(|n| NumberBreakdown {
            tn: n.number,
            charge_type: n.charge_type,
            service_owner_user_id: n.owner_id,
            service_owner_email: n.owner_email,
            services: vec![ServiceDetail {
                name: "Number rental".to_owned(),
                cost_type: "MRC",
                cost: money(n.amount),
            }],
        })
        .collect();
    if csv {
        return Ok(breakdown_csv(&results));
    }
    Ok(Json(Data {
        data: ChargesBreakdown {
            user_id: account.id.to_string(),
            user_email: account.email.clone(),
            currency: CURRENCY,
            start_date: range.start().to_string(),
            end_date: range.end().to_string(),
            results,
        },
    })
    .into_response())
}

/// A CSV field, quoted when it holds a separator, a quote or a line break; a leading
/// `=`, `-` or `@` is prefixed with `'` so spreadsheets do not run it as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn breakdown_csv(results: &[NumberBreakdown]) -> Response {
    let mut body = String::from(
        "tn,charge_type,service_owner_user_id,service_owner_email,service_name,cost_type,cost\n",
    );
    for result in results {
        for service in &result.services {
            let fields = [
                result.tn.as_str(),
                result.charge_type.as_str(),
                result.service_owner_user_id.as_str(),
                result.service_owner_email.as_str(),
                service.name.as_str(),
                service.cost_type,
                service.cost.as_str(),
            ];
            let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            body.push_str(&row.join(","));
            body.push('\n');
        }
    }
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response
}
