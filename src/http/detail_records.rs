//! `GET /v2/detail_records`: the caller's rated usage in Telnyx's detail-record shape.
//! Cost and rate appear only for callers allowed to see prices (never a managed account).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use super::extract::{Caller, QueryParams};
use super::wire::{List, PaginationMeta, timestamp};
use crate::accounts::listing::Page;
use crate::accounts::{self, AccountKind};
use crate::billing::CURRENCY;
use crate::money::Money;
use crate::usage::repo::{RecordOwner, RecordQuery, StoredRecord};

/// Largest page of detail records (Telnyx: 1..=50).
pub const DETAIL_PAGE_SIZE_MAX: u32 = 50;

/// Decimal places of per-record costs and rates: all nine, so they are exact.
const RECORD_DECIMALS: u32 = 9;

/// One detail record. `cost`, `rate` and `currency` are present only for callers who may
/// see prices.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetailRecord {
    /// `message_detail_record`, `sip_trunking_detail_record` or `number_rental_detail_record`.
    pub record_type: &'static str,
    /// The usage event id.
    pub uuid: String,
    /// The account that used it.
    pub user_id: String,
    /// `inbound` or `outbound`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    /// The product name.
    pub product: &'static str,
    /// The number called, messaged or rented (E.164).
    pub cld: String,
    /// `SMS` or `MMS` for messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_type: Option<&'static str>,
    /// Message parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<i64>,
    /// Call duration in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_sec: Option<i64>,
    /// Seconds billed after increments (only for those who may see prices: the
    /// increments are part of the price list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billed_sec: Option<i64>,
    /// Months of number rental.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub months: Option<i64>,
    /// When the usage happened.
    pub started_at: String,
    /// When it was charged.
    pub created_at: String,
    /// Cost, decimal string (price-visible callers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// Rate, decimal string (price-visible callers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Unit of `rate` (price-visible callers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_measured_in: Option<&'static str>,
    /// Currency (price-visible callers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<&'static str>,
}

/// A stored record as shown to a caller; prices (and billed seconds) only when `show_prices`.
pub fn record(stored: StoredRecord, show_prices: bool) -> DetailRecord {
    let product = stored.product;
    let price = |nanos: i64| {
        show_prices.then(|| Money::from_nanos(nanos).to_decimal_string(RECORD_DECIMALS))
    };
    DetailRecord {
        record_type: if product.is_voice() {
            "sip_trunking_detail_record"
        } else if product.is_messaging() {
            "message_detail_record"
        } else {
            "number_rental_detail_record"
        },
        uuid: stored.event_id,
        user_id: stored.account_id,
        direction: (product != crate::pricing::Product::NumberRental).then_some(
            if product.is_outbound() {
                "outbound"
            } else {
                "inbound"
            },
        ),
        product: product.as_str(),
        cld: format!("+{}", stored.destination),
        message_type: product
            .is_messaging()
            .then_some(if product.as_str().starts_with("sms") {
                "SMS"
            } else {
                "MMS"
            }),
        parts: product.is_messaging().then_some(stored.quantity),
        call_sec: product.is_voice().then_some(stored.quantity),
        // Billed seconds reveal the billing increments, a term of the price list.
        billed_sec: (show_prices && product.is_voice()).then_some(stored.billable_quantity),
        months: (product == crate::pricing::Product::NumberRental).then_some(stored.quantity),
        started_at: timestamp(stored.occurred_at_ms),
        created_at: timestamp(stored.created_at_ms),
        cost: price(stored.cost_nanos),
        rate: price(stored.rate_nanos),
        rate_measured_in: show_prices.then_some(product.rate_unit()),
        currency: show_prices.then_some(CURRENCY),
    }
}

fn instant(name: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_millis());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::BadRequest,
                format!("{name} must be a date (YYYY-MM-DD) or an RFC 3339 instant"),
            )
            .parameter(name)
        })
}

/// `[from, until)` for a Telnyx `filter[date_range]` value.
fn date_range(text: &str, now: DateTime<Utc>) -> Result<(i64, i64), ApiError> {
    let today = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let day = TimeDelta::days(1);
    let (from, until) = match text {
        "today" => (today, today + day),
        "yesterday" => (today - day, today),
        "tomorrow" => (today + day, today + day * 2),
        "this_week" | "last_week" | "next_week" => {
            let weekday = i64::from(chrono::Datelike::weekday(&today).num_days_from_monday());
            let monday = today - TimeDelta::days(weekday);
            let shift = match text {
                "last_week" => -7,
                "next_week" => 7,
                _ => 0,
            };
            let start = monday + TimeDelta::days(shift);
            (start, start + TimeDelta::days(7))
        }
        _ => {
            let days = text
                .strip_prefix("last_")
                .and_then(|t| t.strip_suffix("_days"))
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| (1..=3660).contains(n))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorKind::BadRequest,
                        "filter[date_range] must be today, yesterday, tomorrow, \
                        this_week, last_week, next_week or last_N_days",
                    )
                    .parameter("filter[date_range]")
                })?;
            (today - TimeDelta::days(days), today + day)
        }
    };
    Ok((from.timestamp_millis(), until.timestamp_millis()))
}

/// Whose records the caller asks for, and whether it may see prices on them (a managed
/// account never does; a manager does on its managed accounts' records).
async fn subject(
    state: &AppState,
    caller: &Caller,
    query: &QueryParams,
) -> Result<(RecordOwner, bool), ApiError> {
    let show_prices = caller.account.kind != AccountKind::Managed;
    if query.bool("managed_accounts")?.unwrap_or(false) {
        if query.get("filter[account_id]").is_some() {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "give managed_accounts=true or filter[account_id], not both",
            )
            .parameter("managed_accounts"));
        }
        accounts::ensure_manager(&caller.account)?;
        return Ok((
            RecordOwner::ManagedAccountsOf(caller.account.id),
            show_prices,
        ));
    }
    let account =
        super::scope::own_or_managed(state, caller, query.get("filter[account_id]")).await?;
    Ok((RecordOwner::Account(account.id), show_prices))
}

/// The caller's detail records (or, for a manager, a managed account's with
/// `filter[account_id]`).
#[utoipa::path(get, path = "/v2/detail_records", tag = "Reporting",
    params(
        ("filter[record_type]" = String, Query, description = "sip-trunking, messaging or number-rental"),
        ("filter[date_range]" = Option<String>, Query, description = "today, yesterday, this_week, last_week, last_N_days, …"),
        ("filter[started_at][gte]" = Option<String>, Query, description = "From this date or instant"),
        ("filter[started_at][lt]" = Option<String>, Query, description = "Before this date or instant"),
        ("filter[account_id]" = Option<String>, Query, description = "A managed account of the calling manager"),
        ("managed_accounts" = Option<bool>, Query, description = "Managers: the records of every managed account at once"),
        ("sort" = Option<String>, Query, description = "started_at or -started_at (default newest first)"),
        ("page[number]" = Option<u32>, Query, minimum = 1, maximum = 1000000), ("page[size]" = Option<u32>, Query, description = "1 to 50, default 20", minimum = 1, maximum = 50),
    ),
    responses((status = 200, body = List<DetailRecord>),
        (status = 404, description = "filter[account_id] names no managed account of the caller", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<List<DetailRecord>>, ApiError> {
    let record_type = query.get("filter[record_type]").ok_or_else(|| {
        ApiError::new(ErrorKind::Missing, "filter[record_type] is required")
            .parameter("filter[record_type]")
    })?;
    let products = crate::usage::products_of(record_type).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidValue,
            "filter[record_type] must be sip-trunking, messaging or number-rental",
        )
        .parameter("filter[record_type]")
    })?;
    let (mut from_ms, mut until_ms) = (None, None);
    if let Some(range) = query.get("filter[date_range]") {
        let (from, until) = date_range(range, state.clock.now())?;
        (from_ms, until_ms) = (Some(from), Some(until));
    }
    for (name, slot) in [
        ("filter[started_at][gte]", &mut from_ms),
        ("filter[started_at][lt]", &mut until_ms),
    ] {
        if let Some(text) = query.get(name) {
            *slot = Some(instant(name, text)?);
        }
    }
    let descending = match query.get("sort") {
        None | Some("-started_at") | Some("-created_at") => true,
        Some("started_at") | Some("created_at") => false,
        Some(_) => {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "sort must be started_at or -started_at",
            )
            .parameter("sort"));
        }
    };
    let page = query.page(DETAIL_PAGE_SIZE_MAX)?;

    let (owner, show_prices) = subject(&state, &caller, &query).await?;
    let record_query = RecordQuery {
        owner,
        products,
        from_ms,
        until_ms,
        descending,
        limit: page.size(),
        offset: page.offset(),
    };
    let mut conn = state.db.read.acquire().await?;
    let (records, total) = crate::usage::repo::list_records(&mut conn, &record_query).await?;
    let page = Page {
        items: records,
        request: page,
        total_results: crate::db::non_negative(total),
    };
    Ok(Json(List {
        meta: PaginationMeta::of(&page),
        data: page
            .items
            .into_iter()
            .map(|r| record(r, show_prices))
            .collect(),
    }))
}
