//! Reading prices: an account's effective price list and single rates. Managers and
//! standard accounts read their own, a manager also each managed account's; a managed
//! account is refused (pricing is its manager's business).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use super::extract::{Caller, PathParams, QueryParams, account_id};
use super::wire::{Data, List, PaginationMeta};
use crate::accounts::listing::{PAGE_SIZE_MAX, Page};
use crate::accounts::{self, Account, AccountKind};
use crate::billing::CURRENCY;
use crate::money::Money;
use crate::pricing::{PricingSubject, Product, RateRow};

/// Rates are shown exactly (nine decimal places).
const RATE_DECIMALS: u32 = 9;

/// One rate.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rate {
    /// Always `rate`.
    pub record_type: &'static str,
    /// The price list it belongs to.
    pub price_list_id: String,
    /// Product.
    pub product: &'static str,
    /// Destination prefix (empty: catch-all).
    pub prefix: String,
    /// Decimal string per `rate_measured_in`.
    pub rate: String,
    /// `minutes`, `parts` or `months`.
    pub rate_measured_in: &'static str,
    /// Currency.
    pub currency: &'static str,
    /// Voice: first billing block in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_increment_s: Option<u32>,
    /// Voice: later billing blocks in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subsequent_increment_s: Option<u32>,
}

fn rate(price_list_id: &str, row: RateRow) -> Rate {
    Rate {
        record_type: "rate",
        price_list_id: price_list_id.to_owned(),
        product: row.product.as_str(),
        rate: Money::from_nanos(row.rate_nanos).to_decimal_string(RATE_DECIMALS),
        rate_measured_in: row.product.rate_unit(),
        currency: CURRENCY,
        initial_increment_s: row.increments.map(|i| i.initial_s()),
        subsequent_increment_s: row.increments.map(|i| i.subsequent_s()),
        prefix: row.prefix,
    }
}

fn refuse_managed(caller: &Caller) -> Result<(), ApiError> {
    if caller.account.kind == AccountKind::Managed {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "Pricing for this account is managed by its manager account.",
        ));
    }
    Ok(())
}

/// The account whose prices are asked for: the caller, or one of its managed accounts.
async fn whose(
    state: &AppState,
    caller: &Caller,
    managed: Option<&str>,
) -> Result<Account, ApiError> {
    refuse_managed(caller)?;
    match managed {
        None => Ok(caller.account.clone()),
        Some(id) => {
            accounts::ensure_manager(&caller.account)?;
            Ok(
                accounts::managed_account(&state.db, &caller.account, account_id(id)?)
                    .await?
                    .0,
            )
        }
    }
}

async fn index(state: &AppState) -> Result<std::sync::Arc<crate::pricing::PricingIndex>, ApiError> {
    let now_ms = crate::clock::to_epoch_ms(state.clock.now());
    Ok(state.pricing.current(&state.db, now_ms).await?)
}

fn no_list() -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "No price list applies to this account yet.",
    )
}

async fn list_rates(
    state: &AppState,
    account: &Account,
    query: &QueryParams,
) -> Result<Json<List<Rate>>, ApiError> {
    let index = index(state).await?;
    let list_id = index
        .list_id_for(
            &PricingSubject::from(account),
            crate::clock::to_epoch_ms(state.clock.now()),
        )
        .map(str::to_owned)
        .ok_or_else(no_list)?;
    rates_page(state, &list_id, query).await
}

/// One page of a price list's rates, by product and prefix.
pub(super) async fn rates_page(
    state: &AppState,
    list_id: &str,
    query: &QueryParams,
) -> Result<Json<List<Rate>>, ApiError> {
    let page = query.page(PAGE_SIZE_MAX)?;
    let mut conn = state.db.read.acquire().await?;
    let header = crate::pricing::repo::find_list(&mut conn, list_id)
        .await?
        .ok_or_else(|| ApiError::not_found("price list"))?;
    let rows =
        crate::pricing::repo::list_rates(&mut conn, list_id, page.size(), page.offset()).await?;
    let page = Page {
        items: rows,
        request: page,
        total_results: crate::db::non_negative(header.rate_count),
    };
    Ok(Json(List {
        meta: PaginationMeta::of(&page),
        data: page.items.into_iter().map(|r| rate(list_id, r)).collect(),
    }))
}

pub(super) async fn one_rate(
    state: &AppState,
    account: &Account,
    query: &QueryParams,
) -> Result<Json<Data<Rate>>, ApiError> {
    let product = query.get("product").ok_or_else(|| {
        ApiError::new(ErrorKind::Missing, "product is required").parameter("product")
    })?;
    let product = Product::parse(product).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidValue,
            format!("unknown product '{product}'"),
        )
        .parameter("product")
    })?;
    let destination = query.get("destination").ok_or_else(|| {
        ApiError::new(ErrorKind::Missing, "destination is required").parameter("destination")
    })?;
    let digits = crate::usage::e164_digits(destination).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidValue,
            "destination must be an E.164 number",
        )
        .parameter("destination")
    })?;
    let index = index(state).await?;
    let subject = PricingSubject::from(account);
    let now_ms = crate::clock::to_epoch_ms(state.clock.now());
    let rates = state
        .pricing
        .rates(&state.db, &index, [(&subject, now_ms)])
        .await?;
    let list = rates.list_for(&subject, now_ms).ok_or_else(no_list)?;
    let entry = list.lookup(product, digits).ok_or_else(|| {
        ApiError::new(ErrorKind::NotFound, "No rate applies to this destination.")
    })?;
    let row = RateRow {
        product,
        prefix: entry.prefix.clone(),
        rate_nanos: entry.rate_nanos,
        increments: entry.increments,
    };
    Ok(Json(Data {
        data: rate(&list.id, row),
    }))
}

/// The rates of the caller's effective price list.
#[utoipa::path(get, path = "/v2/pricing/rates", tag = "Pricing",
    params(("page[number]" = Option<u32>, Query, minimum = 1, maximum = 1000000), ("page[size]" = Option<u32>, Query, minimum = 1, maximum = 250)),
    responses((status = 200, body = List<Rate>),
        (status = 404, description = "No price list applies to the account yet", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn own_rates(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<List<Rate>>, ApiError> {
    let account = whose(&state, &caller, None).await?;
    list_rates(&state, &account, &query).await
}

/// The rate the caller pays for one product and destination (longest prefix wins).
#[utoipa::path(get, path = "/v2/pricing/rate", tag = "Pricing",
    params(("product" = String, Query), ("destination" = String, Query, description = "E.164 number")),
    responses((status = 200, body = Data<Rate>),
        (status = 404, description = "No price list, or no rate for the destination, applies", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn own_rate(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<Data<Rate>>, ApiError> {
    let account = whose(&state, &caller, None).await?;
    one_rate(&state, &account, &query).await
}

/// The rates a managed account is charged (its manager's view).
#[utoipa::path(get, path = "/v2/managed_accounts/{id}/pricing/rates", tag = "Pricing",
    params(("id" = String, Path), ("page[number]" = Option<u32>, Query, minimum = 1, maximum = 1000000), ("page[size]" = Option<u32>, Query, minimum = 1, maximum = 250)),
    responses((status = 200, body = List<Rate>)),
    security(("account_key" = [])))]
pub async fn managed_rates(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    query: QueryParams,
) -> Result<Json<List<Rate>>, ApiError> {
    let account = whose(&state, &caller, Some(&id)).await?;
    list_rates(&state, &account, &query).await
}

/// One rate a managed account is charged (its manager's view).
#[utoipa::path(get, path = "/v2/managed_accounts/{id}/pricing/rate", tag = "Pricing",
    params(("id" = String, Path), ("product" = String, Query), ("destination" = String, Query)),
    responses((status = 200, body = Data<Rate>)),
    security(("account_key" = [])))]
pub async fn managed_rate(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    query: QueryParams,
) -> Result<Json<Data<Rate>>, ApiError> {
    let account = whose(&state, &caller, Some(&id)).await?;
    one_rate(&state, &account, &query).await
}
