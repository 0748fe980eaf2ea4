//! The operator API (`/admin/v1`, operator keys): price lists, credit limits, credits and
//! adjustments. Money movements require an `Idempotency-Key` header; a retry with the same
//! key and body replays the first answer (header `Idempotent-Replayed: true`).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::{CsvBody, JsonBody, RequestBody};
use super::error::{ApiError, ErrorKind};
use super::extract::{OperatorCaller, PathParams, QueryParams, account_id};
use super::wire::{Data, WIRE_DECIMALS, timestamp};
use crate::accounts::AccountId;
use crate::accounts::listing::{PAGE_SIZE_MAX, Page};
use crate::billing::{self, IdempotencyKey, MoneyRequest, Movement};
use crate::clock::to_epoch_ms;
use crate::money::Money;
use crate::pricing::{self, AssignTo, NewPriceList, PricingError};
use crate::usage::{SuspendReason, SuspenseFilter};

/// A price list header.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceListBody {
    /// Always `price_list`.
    pub record_type: &'static str,
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Currency.
    pub currency: String,
    /// From when it applies.
    pub effective_from: String,
    /// Rates it holds.
    pub rate_count: i64,
}

fn effective_from(text: Option<&str>, state: &AppState, at: &str) -> Result<i64, ApiError> {
    match text {
        None => Ok(to_epoch_ms(state.clock.now())),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .map_err(|_| {
                ApiError::new(
                    ErrorKind::InvalidValue,
                    "effective_from must be an RFC 3339 instant",
                )
                .parameter(at)
            }),
    }
}

/// Imports a price list from a CSV body (`product,prefix,rate,initial_increment_s,subsequent_increment_s`).
/// A file with any bad line imports nothing; the error lists the bad lines.
#[utoipa::path(post, path = "/admin/v1/price_lists", tag = "Operator",
    params(("name" = String, Query), ("platform_default" = Option<bool>, Query), ("assign_to" = Option<String>, Query),
        ("effective_from" = Option<String>, Query, description = "RFC 3339; default now")),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = Data<PriceListBody>),
        (status = 404, description = "The account named by assign_to does not exist", body = super::error::ErrorEnvelope)),
    security(("operator_key" = [])))]
pub async fn import_price_list(
    State(state): State<AppState>,
    OperatorCaller(actor): OperatorCaller,
    query: QueryParams,
    CsvBody(text): CsvBody,
) -> Result<Json<Data<PriceListBody>>, ApiError> {
    let name = query
        .get("name")
        .ok_or_else(|| ApiError::new(ErrorKind::Missing, "name is required").parameter("name"))?;
    let assign_to = match (
        query.bool("platform_default")?.unwrap_or(false),
        query.get("assign_to"),
    ) {
        (true, Some(_)) => {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                "give platform_default or assign_to, not both",
            )
            .parameter("assign_to"));
        }
        (true, None) => Some(AssignTo::PlatformDefault),
        (false, Some(id)) => Some(AssignTo::Account(account_id(id)?)),
        (false, None) => None,
    };
    let rows = pricing::csv::parse(&text).map_err(PricingError::BadFile)?;
    let new = NewPriceList {
        name: name.to_owned(),
        currency: query
            .get("currency")
            .unwrap_or(billing::CURRENCY)
            .to_owned(),
        effective_from_ms: effective_from(query.get("effective_from"), &state, "effective_from")?,
        assign_to,
    };
    let list = pricing::import(&state.db, &state.clock, new, &rows, &actor).await?;
    Ok(Json(Data {
        data: PriceListBody {
            record_type: "price_list",
            id: list.id,
            name: list.name,
            currency: list.currency,
            effective_from: timestamp(list.effective_from_ms),
            rate_count: list.rate_count,
        },
    }))
}

/// Body of an assignment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRequest {
    /// The account (a managed account's own list applies only with custom pricing allowed).
    pub account_id: Option<String>,
    /// Make it the platform default instead.
    pub platform_default: Option<bool>,
    /// RFC 3339; default now. Usage already charged is never re-rated.
    pub effective_from: Option<String>,
}

impl RequestBody for AssignmentRequest {}

/// An assignment made.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssignmentBody {
    /// Always `price_list_assignment`.
    pub record_type: &'static str,
    /// The list.
    pub price_list_id: String,
    /// The account, or null for the platform default.
    pub account_id: Option<String>,
    /// From when.
    pub effective_from: String,
}

/// Assigns a price list to an account or as the platform default.
#[utoipa::path(post, path = "/admin/v1/price_lists/{id}/assignments", tag = "Operator",
    params(("id" = String, Path)), request_body = AssignmentRequest,
    responses((status = 200, body = Data<AssignmentBody>)),
    security(("operator_key" = [])))]
pub async fn assign_price_list(
    State(state): State<AppState>,
    OperatorCaller(actor): OperatorCaller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<AssignmentRequest>,
) -> Result<Json<Data<AssignmentBody>>, ApiError> {
    let target = match (
        body.platform_default.unwrap_or(false),
        body.account_id.as_deref(),
    ) {
        (true, None) => AssignTo::PlatformDefault,
        (false, Some(account)) => AssignTo::Account(account_id(account)?),
        _ => {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                "give exactly one of account_id and platform_default",
            )
            .pointer("/account_id"));
        }
    };
    let from_ms = effective_from(body.effective_from.as_deref(), &state, "effective_from")?;
    pricing::assign(&state.db, &state.clock, &id, target, from_ms, &actor).await?;
    Ok(Json(Data {
        data: AssignmentBody {
            record_type: "price_list_assignment",
            price_list_id: id,
            account_id: match target {
                AssignTo::Account(a) => Some(a.to_string()),
                AssignTo::PlatformDefault => None,
            },
            effective_from: timestamp(from_ms),
        },
    }))
}

/// An account's balance as the operator sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorBalance {
    /// Always `balance`.
    pub record_type: &'static str,
    /// Account.
    pub account_id: String,
    /// Balance.
    pub balance: String,
    /// Credit limit.
    pub credit_limit: String,
    /// Balance + credit limit.
    pub available_credit: String,
    /// Currency.
    pub currency: &'static str,
}

fn operator_balance(account: &str, balance: billing::Balance) -> OperatorBalance {
    OperatorBalance {
        record_type: "balance",
        account_id: account.to_owned(),
        balance: balance.balance.to_decimal_string(WIRE_DECIMALS),
        credit_limit: balance.credit_limit.to_decimal_string(WIRE_DECIMALS),
        available_credit: balance.available_credit().to_decimal_string(WIRE_DECIMALS),
        currency: billing::CURRENCY,
    }
}

/// Any account's balance.
#[utoipa::path(get, path = "/admin/v1/accounts/{id}/balance", tag = "Operator", params(("id" = String, Path)),
    responses((status = 200, body = Data<OperatorBalance>)),
    security(("operator_key" = [])))]
pub async fn balance(
    State(state): State<AppState>,
    _operator: OperatorCaller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Data<OperatorBalance>>, ApiError> {
    let id = account_id(&id)?;
    let mut conn = state.db.read.acquire().await?;
    let account = crate::accounts::repo::find(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    drop(conn);
    let balance = billing::balance_of(&state.db, &account).await?;
    Ok(Json(Data {
        data: operator_balance(&id.to_string(), balance),
    }))
}

/// Body of a credit-limit change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditLimitRequest {
    /// Decimal string ≥ 0, e.g. `"100.00"`.
    pub amount: Option<String>,
}

impl RequestBody for CreditLimitRequest {}

fn amount(text: Option<&str>) -> Result<Money, ApiError> {
    let text = text.ok_or_else(|| {
        ApiError::new(ErrorKind::Missing, "amount is required").pointer("/amount")
    })?;
    Money::parse_decimal(text).map_err(|e| {
        ApiError::new(ErrorKind::InvalidValue, format!("amount: {e}")).pointer("/amount")
    })
}

/// Sets an account's credit limit (a credit-limit ledger entry for the difference).
#[utoipa::path(post, path = "/admin/v1/accounts/{id}/credit_limit", tag = "Operator", params(("id" = String, Path)),
    request_body = CreditLimitRequest,
    responses((status = 200, body = Data<OperatorBalance>)),
    security(("operator_key" = [])))]
pub async fn set_credit_limit(
    State(state): State<AppState>,
    OperatorCaller(actor): OperatorCaller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<CreditLimitRequest>,
) -> Result<Json<Data<OperatorBalance>>, ApiError> {
    let id = account_id(&id)?;
    let balance = billing::set_credit_limit(
        &state.db,
        &state.clock,
        id,
        amount(body.amount.as_deref())?,
        &actor,
    )
    .await?;
    Ok(Json(Data {
        data: operator_balance(&id.to_string(), balance),
    }))
}

/// Body of a credit or adjustment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyBody {
    /// Decimal string; credits > 0, adjustments ≠ 0 (negative takes money away).
    pub amount: Option<String>,
    /// Why (required, audited).
    pub reason: Option<String>,
}

impl RequestBody for MoneyBody {}

/// A posted movement.
#[derive(Debug, Serialize, ToSchema)]
pub struct MovementBody {
    /// Always `ledger_movement`.
    pub record_type: &'static str,
    /// The movement.
    #[serde(flatten)]
    pub movement: Movement,
}

fn money_request(id: &str, headers: &HeaderMap, body: MoneyBody) -> Result<MoneyRequest, ApiError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(ErrorKind::Missing, "the Idempotency-Key header is required")
                .parameter("Idempotency-Key")
        })?;
    let idempotency_key = IdempotencyKey::parse(key).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidValue,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )
        .parameter("Idempotency-Key")
    })?;
    Ok(MoneyRequest {
        account: account_id(id)?,
        amount: amount(body.amount.as_deref())?,
        reason: body.reason.ok_or_else(|| {
            ApiError::new(ErrorKind::Missing, "reason is required").pointer("/reason")
        })?,
        idempotency_key,
    })
}

fn movement_response((movement, replayed): (Movement, bool)) -> Response {
    let body = Json(Data {
        data: MovementBody {
            record_type: "ledger_movement",
            movement,
        },
    });
    let mut response = body.into_response();
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// Credits money to an account's balance.
#[utoipa::path(post, path = "/admin/v1/accounts/{id}/credits", tag = "Operator",
    params(("id" = String, Path), ("Idempotency-Key" = String, Header)), request_body = MoneyBody,
    responses((status = 200, body = Data<MovementBody>)),
    security(("operator_key" = [])))]
pub async fn credit(
    State(state): State<AppState>,
    OperatorCaller(actor): OperatorCaller,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MoneyBody>,
) -> Result<Response, ApiError> {
    let request = money_request(&id, &headers, body)?;
    Ok(movement_response(
        billing::credit(&state.db, &state.clock, request, &actor).await?,
    ))
}

/// Adjusts an account's balance (either sign).
#[utoipa::path(post, path = "/admin/v1/accounts/{id}/adjustments", tag = "Operator",
    params(("id" = String, Path), ("Idempotency-Key" = String, Header)), request_body = MoneyBody,
    responses((status = 200, body = Data<MovementBody>)),
    security(("operator_key" = [])))]
pub async fn adjust(
    State(state): State<AppState>,
    OperatorCaller(actor): OperatorCaller,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MoneyBody>,
) -> Result<Response, ApiError> {
    let request = money_request(&id, &headers, body)?;
    Ok(movement_response(
        billing::adjust(&state.db, &state.clock, request, &actor).await?,
    ))
}

/// The rates of any price list.
#[utoipa::path(get, path = "/admin/v1/price_lists/{id}/rates", tag = "Operator",
    params(("id" = String, Path), ("page[number]" = Option<u32>, Query, minimum = 1, maximum = 1000000), ("page[size]" = Option<u32>, Query, minimum = 1, maximum = 250)),
    responses((status = 200, body = super::wire::List<super::pricing::Rate>)),
    security(("operator_key" = [])))]
pub async fn price_list_rates(
    State(state): State<AppState>,
    _operator: OperatorCaller,
    PathParams(id): PathParams<String>,
    query: QueryParams,
) -> Result<Json<super::wire::List<super::pricing::Rate>>, ApiError> {
    super::pricing::rates_page(&state, &id, &query).await
}

/// The rate any account is charged for one product and destination (its effective list).
#[utoipa::path(get, path = "/admin/v1/accounts/{id}/pricing/rate", tag = "Operator",
    params(("id" = String, Path), ("product" = String, Query), ("destination" = String, Query)),
    responses((status = 200, body = Data<super::pricing::Rate>)),
    security(("operator_key" = [])))]
pub async fn account_rate(
    State(state): State<AppState>,
    _operator: OperatorCaller,
    PathParams(id): PathParams<String>,
    query: QueryParams,
) -> Result<Json<Data<super::pricing::Rate>>, ApiError> {
    let id = account_id(&id)?;
    let mut conn = state.db.read.acquire().await?;
    let account = crate::accounts::repo::find(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("account"))?;
    drop(conn);
    super::pricing::one_rate(&state, &account, &query).await
}

/// A usage event kept in suspense.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuspendedUsageItem {
    /// Always `suspended_usage`.
    pub record_type: &'static str,
    /// The event id.
    pub event_id: String,
    /// Why it is not charged yet: `no_price_list`, `no_rate` or `unknown_account` (as found
    /// when it last arrived or was last re-rated).
    pub reason: &'static str,
    /// The account id as sent (with `unknown_account`, one naming no account).
    pub account_id: String,
    /// Product.
    pub product: &'static str,
    /// E.164 destination.
    pub destination: String,
    /// Quantity as sent (seconds, message parts or months).
    pub quantity: i64,
    /// When it happened.
    pub occurred_at: String,
    /// Its admission lease, if it named one.
    pub lease_id: Option<String>,
    /// Its first arrival.
    pub first_seen_at: String,
    /// Its latest arrival.
    pub last_seen_at: String,
    /// How many times it arrived.
    pub seen_count: i64,
}

impl From<crate::usage::suspense::SuspendedEvent> for SuspendedUsageItem {
    fn from(event: crate::usage::suspense::SuspendedEvent) -> Self {
        Self {
            record_type: "suspended_usage",
            event_id: event.event_id,
            reason: event.reason.as_str(),
            account_id: event.account_id,
            product: event.product.as_str(),
            destination: format!("+{}", event.destination),
            quantity: event.quantity,
            occurred_at: timestamp(event.occurred_at_ms),
            lease_id: event.lease_id,
            first_seen_at: timestamp(event.first_seen_at_ms),
            last_seen_at: timestamp(event.last_seen_at_ms),
            seen_count: event.seen_count,
        }
    }
}

/// The filters of the suspense list.
fn suspense_filter(query: &QueryParams) -> Result<SuspenseFilter, ApiError> {
    const FILTERS: [&str; 2] = ["filter[reason]", "filter[account_id]"];
    if let Some(unknown) = query
        .names_with_prefix("filter")
        .find(|name| !FILTERS.contains(name))
    {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            format!(
                "unknown filter {unknown}; suspended usage takes filter[reason] and filter[account_id]"
            ),
        )
        .parameter(unknown));
    }
    let reason = query
        .get("filter[reason]")
        .map(|text| {
            SuspendReason::parse(text).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidValue,
                    format!("filter[reason] must be one of {}", SuspendReason::codes()),
                )
                .parameter("filter[reason]")
            })
        })
        .transpose()?;
    let account = query
        .get("filter[account_id]")
        .map(|text| {
            AccountId::parse(text).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidValue,
                    "filter[account_id] must be an account id (a UUID)",
                )
                .parameter("filter[account_id]")
            })
        })
        .transpose()?;
    Ok(SuspenseFilter { reason, account })
}

/// Usage kept in suspense: events that were well-formed but could not be charged when they
/// arrived, oldest first. `steward admin rerate-suspended` charges them once pricing (or
/// the account) is fixed.
#[utoipa::path(get, path = "/admin/v1/suspended_usage", tag = "Operator",
    params(
        ("filter[reason]" = Option<String>, Query, description = "no_price_list, no_rate or unknown_account"),
        ("filter[account_id]" = Option<String>, Query, description = "The account id the events name"),
        ("page[number]" = Option<u32>, Query, minimum = 1, maximum = 1000000),
        ("page[size]" = Option<u32>, Query, minimum = 1, maximum = 250),
    ),
    responses((status = 200, body = super::wire::List<SuspendedUsageItem>)),
    security(("operator_key" = [])))]
pub async fn suspended_usage(
    State(state): State<AppState>,
    _operator: OperatorCaller,
    query: QueryParams,
) -> Result<Json<super::wire::List<SuspendedUsageItem>>, ApiError> {
    let filter = suspense_filter(&query)?;
    let page = query.page(PAGE_SIZE_MAX)?;
    let (events, total) = {
        let mut conn = state.db.read.acquire().await?;
        crate::usage::suspense::list(&mut conn, &filter, page).await?
    };
    let page = Page {
        items: events,
        request: page,
        total_results: crate::db::non_negative(total),
    };
    Ok(Json(super::wire::List {
        meta: super::wire::PaginationMeta::of(&page),
        data: page.items.into_iter().map(Into::into).collect(),
    }))
}
