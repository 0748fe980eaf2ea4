//! `/v2/invoices`: the caller's monthly invoices (or, for a manager, a managed account's
//! with `filter[account_id]`), in Telnyx's shape with Steward's totals and lines added. The
//! PDF is served by Steward at a link signed to work without a key until it expires.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use super::extract::{Caller, PathParams, QueryParams};
use super::report_jobs::base_url;
use super::wire::{Data, List, PaginationMeta, WIRE_DECIMALS, timestamp};
use crate::accounts::listing::Page;
use crate::accounts::{Account, AccountId, AccountKind};
use crate::billing::CURRENCY;
use crate::invoices::{self, Category, Invoice, InvoiceError, Line, invoice_number_text};
use crate::money::Money;

/// How long a download link works: long enough to click it, short enough that a link that
/// was forwarded or logged soon stops working.
pub const INVOICE_LINK_TTL_S: i64 = 3600;

/// Largest page of invoices (Telnyx: 250).
pub const INVOICE_PAGE_SIZE_MAX: u32 = 250;

/// The balance movements of an invoice's period (credits positive, usage negative).
#[derive(Debug, Serialize, ToSchema)]
pub struct Movements {
    /// Usage charged (negative).
    pub usage: String,
    /// Operator credits.
    pub credits: String,
    /// Operator adjustments, either sign.
    pub adjustments: String,
    /// Card payments less refunds.
    pub payments: String,
    /// Any other movement (none today).
    pub other: String,
}

/// An invoice (Telnyx `Invoice`, with Steward's figures added).
#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceItem {
    /// Always `invoice`.
    pub record_type: &'static str,
    /// Invoice id.
    pub invoice_id: String,
    /// Id of its PDF document.
    pub file_id: String,
    /// True when nothing is due, or the account's balance has since come back to zero or
    /// above.
    pub paid: bool,
    /// First day of the period.
    #[schema(example = "2026-01-01")]
    pub period_start: String,
    /// Last day of the period (inclusive).
    #[schema(example = "2026-01-31")]
    pub period_end: String,
    /// This invoice in the API.
    pub url: String,
    /// The number printed on it, sequential across the platform.
    #[schema(example = "INV-000042")]
    pub invoice_number: String,
    /// The account billed.
    pub account_id: String,
    /// Currency of every amount.
    pub currency: &'static str,
    /// Balance at the period's start.
    pub opening_balance: String,
    /// Movements of the period.
    pub movements: Movements,
    /// Balance at the period's end.
    pub closing_balance: String,
    /// What is owed: the closing balance's shortfall below zero, else `0.00`.
    pub amount_due: String,
    /// When it was closed.
    pub created_at: String,
}

/// One line of an invoice. Rates and billed quantities appear only on invoices of accounts
/// that may see prices (never a managed account's).
#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceLine {
    /// `usage`, `credit`, `adjustment`, `payment` or `other`.
    pub category: &'static str,
    /// Usage of a rollup-billing managed account (on its manager's invoice): that account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Its business name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_name: Option<String>,
    /// Usage: the product.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<&'static str>,
    /// Late usage: the month (`YYYY-MM`) it occurred in, before this period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_month: Option<String>,
    /// Usage: events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Usage: quantity in `quantity_unit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    /// `seconds`, `parts` or `months`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity_unit: Option<&'static str>,
    /// Voice: seconds billed after increments (price-visible invoices only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billed_quantity: Option<i64>,
    /// The rate (price-visible invoices, own usage only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Unit of `rate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_measured_in: Option<&'static str>,
    /// Money lines: the ledger entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    /// Money lines: when it was posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posted_at: Option<String>,
    /// Money lines: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The line's movement of the balance (usage negative).
    pub amount: String,
}

/// A rollup-billing managed account's usage on its manager's invoice.
#[derive(Debug, Serialize, ToSchema)]
pub struct RollupAccount {
    /// The managed account.
    pub account_id: String,
    /// Its business name at closing.
    pub business_name: String,
    /// Its usage charged in the period (negative, a movement of the manager's balance).
    pub usage: String,
}

/// One invoice with its lines (Telnyx `InvoiceRetrieveResponse.data`).
#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceDetail {
    /// The invoice.
    #[serde(flatten)]
    pub invoice: InvoiceItem,
    /// With `action=link`: where the PDF is, working without a key for an hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    /// Its lines.
    pub lines: Vec<InvoiceLine>,
    /// On a manager's invoice: each rollup account with usage in the period.
    pub rollup_accounts: Vec<RollupAccount>,
}

fn money(m: Money) -> String {
    m.to_decimal_string(WIRE_DECIMALS)
}

fn item(headers: &HeaderMap, invoice: &Invoice, balance_now: Money) -> InvoiceItem {
    let statement = &invoice.statement;
    let totals = &statement.totals;
    let due = invoice.amount_due();
    InvoiceItem {
        record_type: "invoice",
        invoice_id: invoice.id.clone(),
        file_id: invoice.file_id.clone(),
        paid: due == Money::ZERO || balance_now >= Money::ZERO,
        period_start: statement.period.first_day().to_string(),
        period_end: statement.period.last_day().to_string(),
        url: format!("{}/v2/invoices/{}", base_url(headers), invoice.id),
        invoice_number: invoice_number_text(invoice.number),
        account_id: statement.payer.id.to_string(),
        currency: CURRENCY,
        opening_balance: money(totals.opening),
        movements: Movements {
            usage: money(totals.of(Category::Usage)),
            credits: money(totals.of(Category::Credit)),
            adjustments: money(totals.of(Category::Adjustment)),
            payments: money(totals.of(Category::Payment)),
            other: money(totals.of(Category::Other)),
        },
        closing_balance: money(totals.closing()),
        amount_due: money(due),
        created_at: timestamp(invoice.created_at_ms),
    }
}

fn line(line: &Line, shows_rates: bool) -> InvoiceLine {
    let product = line.product;
    let rate = line.rate_nanos.filter(|_| shows_rates);
    InvoiceLine {
        category: line.category.as_str(),
        account_id: line.section.as_ref().map(|s| s.account_id.to_string()),
        business_name: line.section.as_ref().map(|s| s.name.clone()),
        product: product.map(|p| p.as_str()),
        usage_month: line.usage_month.map(|m| m.to_string()),
        count: product.map(|_| line.event_count),
        quantity: product.map(|_| line.quantity),
        quantity_unit: product.map(|p| p.quantity_unit()),
        billed_quantity: product
            .filter(|p| shows_rates && p.is_voice())
            .map(|_| line.billable_quantity),
        rate: rate.map(|r| Money::from_nanos(r).to_decimal_string(9)),
        rate_measured_in: rate.and(product).map(|p| p.rate_unit()),
        entry_id: line.entry.as_ref().map(|e| e.id.clone()),
        posted_at: line.entry.as_ref().map(|e| timestamp(e.posted_at_ms)),
        description: line.entry.as_ref().and_then(|e| e.description.clone()),
        amount: money(line.amount),
    }
}

fn pdf_path(id: &str) -> String {
    format!("/v2/invoices/{id}/pdf")
}

/// Refuses a rollup-billing account: it has no invoices (nor charges) of its own.
pub(super) fn refuse_rollup(account: &Account) -> Result<(), ApiError> {
    if account.kind == AccountKind::Managed && account.rollup_billing {
        return Err(InvoiceError::RollupBilled.into());
    }
    Ok(())
}

/// The account whose invoices are listed: the caller's, or a managed account's.
async fn subject(
    state: &AppState,
    caller: &Caller,
    query: &QueryParams,
) -> Result<Account, ApiError> {
    if let Some(unknown) = query
        .names_with_prefix("filter[")
        .find(|name| *name != "filter[account_id]")
    {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            format!("unknown filter {unknown}; invoices take filter[account_id]"),
        )
        .parameter(unknown));
    }
    refuse_rollup(&caller.account)?;
    let account =
        super::scope::own_or_managed(state, caller, query.get("filter[account_id]")).await?;
    if account.rollup_billing {
        return Err(ApiError::new(
            ErrorKind::InvalidState,
            "this managed account uses rollup billing: it has no invoices of its own; its \
             spend is on your invoice, in a section for this account",
        )
        .parameter("filter[account_id]"));
    }
    Ok(account)
}

async fn balance_now(state: &AppState, account: AccountId) -> Result<Money, ApiError> {
    let mut conn = state.db.read.acquire().await?;
    Ok(crate::ledger::repo::account_balance(&mut conn, account)
        .await?
        .balance)
}

/// The caller's invoices, newest first (or a managed account's, for its manager).
#[utoipa::path(get, path = "/v2/invoices", tag = "Billing",
    params(
        ("sort" = Option<String>, Query, description = "period_start or -period_start (default newest first)"),
        ("filter[account_id]" = Option<String>, Query, description = "Managers: a managed account without rollup billing"),
        ("page[number]" = Option<u32>, Query, minimum = 1, maximum = 1000000),
        ("page[size]" = Option<u32>, Query, minimum = 1, maximum = 250),
    ),
    responses((status = 200, body = List<InvoiceItem>),
        (status = 404, description = "filter[account_id] names no managed account of the caller", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: QueryParams,
) -> Result<Json<List<InvoiceItem>>, ApiError> {
    let newest_first = match query.get("sort") {
        None | Some("-period_start") => true,
        Some("period_start") => false,
        Some(_) => {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "sort must be period_start or -period_start",
            )
            .parameter("sort"));
        }
    };
    let page = query.page(INVOICE_PAGE_SIZE_MAX)?;
    let account = subject(&state, &caller, &query).await?;
    let (invoices, total) = {
        let mut conn = state.db.read.acquire().await?;
        invoices::repo::list(&mut conn, account.id, newest_first, page).await?
    };
    let balance = balance_now(&state, account.id).await?;
    let page = Page {
        items: invoices,
        request: page,
        total_results: crate::db::non_negative(total),
    };
    Ok(Json(List {
        meta: PaginationMeta::of(&page),
        data: page
            .items
            .iter()
            .map(|invoice| item(&headers, invoice, balance))
            .collect(),
    }))
}

/// An invoice the caller may read (its own, or a managed account's for its manager).
async fn readable(state: &AppState, caller: &Caller, id: &str) -> Result<Invoice, ApiError> {
    refuse_rollup(&caller.account)?;
    let mut conn = state.db.read.acquire().await?;
    let invoice = invoices::repo::find(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("invoice"))?;
    let owner = invoice.account_id();
    let allowed = owner == caller.account.id
        || (caller.account.kind == AccountKind::Manager
            && crate::accounts::repo::find_managed(&mut conn, caller.account.id, owner)
                .await?
                .is_some());
    if !allowed {
        return Err(ApiError::not_found("invoice"));
    }
    Ok(invoice)
}

/// One invoice with its lines; `action=link` adds `download_url`, a link to its PDF that
/// works without a key for an hour.
#[utoipa::path(get, path = "/v2/invoices/{id}", tag = "Billing",
    params(("id" = String, Path), ("action" = Option<String>, Query, description = "json (default) or link")),
    responses((status = 200, body = Data<InvoiceDetail>)),
    security(("account_key" = [])))]
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: QueryParams,
    PathParams(id): PathParams<String>,
) -> Result<Json<Data<InvoiceDetail>>, ApiError> {
    let link = match query.get("action") {
        None | Some("json") => false,
        Some("link") => true,
        Some(_) => {
            return Err(
                ApiError::new(ErrorKind::BadRequest, "action must be json or link")
                    .parameter("action"),
            );
        }
    };
    let invoice = readable(&state, &caller, &id).await?;
    let balance = balance_now(&state, invoice.account_id()).await?;
    let statement = &invoice.statement;
    let download_url = link.then(|| {
        let path = pdf_path(&invoice.id);
        let expires_s = state.clock.now().timestamp() + INVOICE_LINK_TTL_S;
        format!(
            "{}{path}?{}",
            base_url(&headers),
            state.signer.query_for(&path, expires_s)
        )
    });
    let rollup_accounts = statement
        .sections()
        .into_iter()
        .map(|s| RollupAccount {
            account_id: s.account_id.to_string(),
            usage: money(statement.usage_of(Some(s.account_id))),
            business_name: s.name,
        })
        .collect();
    Ok(Json(Data {
        data: InvoiceDetail {
            invoice: item(&headers, &invoice, balance),
            download_url,
            lines: statement
                .lines
                .iter()
                .map(|l| line(l, statement.shows_rates))
                .collect(),
            rollup_accounts,
        },
    }))
}

/// The invoice's PDF: with the signed `download_url`, or with the key of its account (or of
/// that account's manager).
#[utoipa::path(get, path = "/v2/invoices/{id}/pdf", tag = "Billing",
    params(("id" = String, Path), ("expires" = Option<i64>, Query), ("signature" = Option<String>, Query)),
    responses((status = 200, body = String, content_type = "application/pdf")),
    security((), ("account_key" = [])))]
pub async fn pdf(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    query: QueryParams,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let signed = super::download::signed_link(&state, &query, &pdf_path(&id))?;
    if !signed {
        readable(&state, &caller?, &id).await?;
    }
    let (account, number, bytes) = {
        let mut conn = state.db.read.acquire().await?;
        invoices::repo::pdf(&mut conn, &id)
            .await?
            .ok_or_else(|| ApiError::not_found("invoice"))?
    };
    tracing::debug!(account.id = %account, "Serving invoice {}", invoice_number_text(number));
    Ok(super::download::attachment(
        bytes,
        "application/pdf",
        &format!("{}.pdf", invoice_number_text(number)),
    ))
}
