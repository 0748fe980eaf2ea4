//! Card top-ups (Telnyx stored payment transactions) and auto-recharge preferences, for the
//! calling account and, under `/v2/managed_accounts/{id}/…`, for a manager's managed account.
//!
//! A top-up answers 200 when the card was charged and the balance credited, 422 (40021)
//! when the issuer declined, 502 (40022) when the processor failed (nothing charged), and
//! 202 with `status: pending` when the processor's answer is not known yet: a retry with the
//! same `Idempotency-Key` then answers the settled outcome once it is known (never a second
//! charge).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::{JsonBody, RequestBody};
use super::error::{ApiError, ErrorKind};
use super::extract::{Caller, PathParams, QueryParams, account_id};
use super::wire::{Data, List, PaginationMeta, timestamp};
use crate::accounts::listing::PAGE_SIZE_MAX;
use crate::accounts::{self, Account};
use crate::audit::Actor;
use crate::billing::{CURRENCY, IdempotencyKey};
use crate::money::AMOUNT_ABS_MAX_NANOS;
use crate::payments::amount::dollars_and_cents;
use crate::payments::attempts::{Attempt, AttemptStatus};
use crate::payments::auto_recharge::{AutoRechargePref, PrefUpdate};
use crate::payments::gateway::DeclineCode;
use crate::payments::{PaymentError, TopUpRequest};

/// Seconds a client is told to wait before asking again about a pending top-up: about one
/// round of the background reconciler.
const PENDING_RETRY_AFTER_S: u64 = 5;

/// The account a payment request is about, and who acts on it: the caller itself, or a
/// managed account of the calling manager (another manager's account is a 404).
pub(super) async fn payer(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
) -> Result<(Account, Actor), ApiError> {
    match managed_id {
        None => Ok((caller.account.clone(), Actor::Owner(caller.account.id))),
        Some(id) => {
            accounts::ensure_manager(&caller.account)?;
            let (managed, _) =
                accounts::managed_account(&state.db, &caller.account, account_id(id)?).await?;
            Ok((managed, Actor::Manager(caller.account.id)))
        }
    }
}

/// Body of a top-up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpBody {
    /// Dollars and cents with exactly two decimals, as a string: `"120.00"`.
    #[schema(value_type = String, example = "120.00")]
    pub amount: Option<serde_json::Value>,
    /// Steward extension: the card to charge; the account's default card when absent.
    pub payment_method_id: Option<String>,
}

/// A top-up (Telnyx `stored_payment` transaction), with Steward's extensions.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredPaymentTransaction {
    /// Always `transaction`.
    #[schema(example = "transaction")]
    pub record_type: &'static str,
    /// Transaction id.
    pub id: String,
    /// The amount in cents.
    pub amount_cents: i64,
    /// Always `USD`.
    pub amount_currency: &'static str,
    /// Whether auto-recharge made it.
    pub auto_recharge: bool,
    /// ISO 8601 creation time.
    pub created_at: String,
    /// `submitted_for_settlement` (charged), `processor_declined`, `failed` or `pending`.
    pub processor_status: &'static str,
    /// Always `stored_payment`.
    #[schema(example = "stored_payment")]
    pub transaction_processing_type: &'static str,
    /// Steward: `succeeded`, `declined`, `failed` or `pending`.
    pub status: &'static str,
    /// Steward: the amount, dollars and cents.
    pub amount: String,
    /// Steward: the account credited.
    pub account_id: String,
    /// Steward: the card charged.
    pub payment_method_id: String,
    /// Steward: its brand.
    pub card_brand: String,
    /// Steward: its last four digits.
    pub card_last4: String,
    /// Steward: why it was declined (`insufficient_funds`, `expired_card`, `incorrect_cvc`,
    /// `card_declined`).
    pub decline_code: Option<&'static str>,
    /// Steward: refunded so far, dollars and cents.
    pub refunded_amount: String,
    /// Steward: when its outcome was settled.
    pub settled_at: Option<String>,
}

impl From<&Attempt> for StoredPaymentTransaction {
    fn from(attempt: &Attempt) -> Self {
        let processor_status = match attempt.status {
            AttemptStatus::Succeeded => "submitted_for_settlement",
            AttemptStatus::Declined => "processor_declined",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Pending => "pending",
        };
        Self {
            record_type: "transaction",
            id: attempt.id.clone(),
            amount_cents: attempt.amount.nanos() / 10_000_000,
            amount_currency: CURRENCY,
            auto_recharge: attempt.auto_recharge,
            created_at: timestamp(attempt.created_at_ms),
            processor_status,
            transaction_processing_type: "stored_payment",
            status: attempt.status.as_str(),
            amount: attempt.amount.to_decimal_string(2),
            account_id: attempt.account_id.to_string(),
            payment_method_id: attempt.payment_method_id.clone(),
            card_brand: attempt.card_brand.clone(),
            card_last4: attempt.card_last4.clone(),
            decline_code: attempt
                .decline_code
                .as_deref()
                .map(|code| DeclineCode::parse(code).public_code()),
            refunded_amount: attempt.refunded.to_decimal_string(2),
            settled_at: attempt.settled_at_ms.map(timestamp),
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(IdempotencyKey::parse)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorKind::InvalidValue,
                        "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    )
                    .parameter("Idempotency-Key")
                })
        })
        .transpose()
}

/// The answer for an attempt as it stands.
fn answer(attempt: &Attempt, replayed: bool) -> Result<Response, ApiError> {
    let refusal = match attempt.status {
        AttemptStatus::Succeeded | AttemptStatus::Pending => None,
        AttemptStatus::Declined => {
            let code = DeclineCode::parse(attempt.decline_code.as_deref().unwrap_or_default());
            Some(ApiError::new(
                ErrorKind::CardDeclined,
                format!("{} (transaction {})", code.explain(), attempt.id),
            ))
        }
        AttemptStatus::Failed => Some(ApiError::new(
            ErrorKind::PaymentProcessorError,
            format!(
                "The card processor could not process the payment and nothing was charged. Try again \
                 later with a new Idempotency-Key (transaction {}).",
                attempt.id
            ),
        )),
    };
    let mut response = match refusal {
        Some(error) => error.into_response(),
        None => {
            let status = if attempt.status == AttemptStatus::Pending {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            let body = Data {
                data: StoredPaymentTransaction::from(attempt),
            };
            (status, Json(body)).into_response()
        }
    };
    let headers = response.headers_mut();
    if attempt.status == AttemptStatus::Pending {
        headers.insert("retry-after", HeaderValue::from(PENDING_RETRY_AFTER_S));
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A top-up, answered so that the Telnyx SDKs never repeat it on their own: they retry
/// 408, 409, 429 and 5xx, and send no Idempotency-Key unless told to, so a repeat could be
/// a second charge.
async fn top_up(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
    headers: &HeaderMap,
    body: TopUpBody,
) -> Result<Response, ApiError> {
    let mut response = top_up_once(state, caller, managed_id, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    response
        .headers_mut()
        .insert("x-should-retry", HeaderValue::from_static("false"));
    Ok(response)
}

async fn top_up_once(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
    headers: &HeaderMap,
    body: TopUpBody,
) -> Result<Response, ApiError> {
    let amount = parse_amount(body.amount.as_ref(), "amount")?.ok_or_else(|| {
        ApiError::new(ErrorKind::Missing, "amount is required").pointer("/amount")
    })?;
    let idempotency_key = idempotency_key(headers)?;
    let (account, actor) = payer(state, caller, managed_id).await?;
    let request = TopUpRequest {
        account: account.id,
        amount,
        payment_method_id: body.payment_method_id,
        idempotency_key,
        actor,
    };
    let done = state.payments.top_up(request).await?;
    answer(&done.attempt, done.replayed)
}

/// Reads a dollars-and-cents body field (format only; bounds are the operator's, checked
/// where they are known).
fn parse_amount(
    value: Option<&serde_json::Value>,
    field: &'static str,
) -> Result<Option<crate::money::Money>, ApiError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => {
            dollars_and_cents(text)
                .map(Some)
                .map_err(|error| match error {
                    crate::money::MoneyParseError::OutOfRange => PaymentError::Invalid {
                        field,
                        message: format!(
                            "{field} is larger than any amount Steward takes (at most {})",
                            crate::money::Money::from_nanos(AMOUNT_ABS_MAX_NANOS)
                                .to_decimal_string(2)
                        ),
                    }
                    .into(),
                    _ => PaymentError::AmountFormat { field }.into(),
                })
        }
        Some(_) => Err(PaymentError::AmountFormat { field }.into()),
    }
}

/// Tops up the calling account's balance by charging its default card (or the one named).
/// Send an `Idempotency-Key` to make retries safe.
#[utoipa::path(post, path = "/v2/payment/stored_payment_transactions", tag = "Payments",
    request_body = TopUpBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes retries safe: the same key answers the first attempt's outcome")),
    responses((status = 200, description = "charged and credited", body = Data<StoredPaymentTransaction>),
        (status = 202, description = "the processor's answer is not known yet; retry with the same Idempotency-Key", body = Data<StoredPaymentTransaction>),
        (status = 422, description = "declined (40021), amount format (10027) or bounds", body = super::error::ErrorEnvelope),
        (status = 429, description = "paused by a carding defence; see Retry-After", body = super::error::ErrorEnvelope),
        (status = 404, description = "payment_method_id names no card of the account", body = super::error::ErrorEnvelope),
        (status = 502, description = "processor error; nothing charged", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TopUpBody>,
) -> Result<Response, ApiError> {
    top_up(&state, &caller, None, &headers, body).await
}

/// The same top-up at the path the official SDKs send it to (their path already holds
/// `/v2`, appended to a base URL ending in `/v2`).
#[utoipa::path(post, path = "/v2/v2/payment/stored_payment_transactions", tag = "Payments",
    request_body = TopUpBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes retries safe")),
    responses((status = 200, description = "charged and credited", body = Data<StoredPaymentTransaction>),
        (status = 202, description = "the processor's answer is not known yet; retry with the same Idempotency-Key", body = Data<StoredPaymentTransaction>),
        (status = 404, description = "payment_method_id names no card of the account", body = super::error::ErrorEnvelope),
        (status = 422, description = "declined (40021), amount format (10027) or bounds", body = super::error::ErrorEnvelope),
        (status = 429, description = "paused by a carding defence; see Retry-After", body = super::error::ErrorEnvelope),
        (status = 502, description = "processor error; nothing charged", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn create_sdk_path(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TopUpBody>,
) -> Result<Response, ApiError> {
    top_up(&state, &caller, None, &headers, body).await
}

/// Tops up a managed account's balance with one of its cards (manager).
#[utoipa::path(post, path = "/v2/managed_accounts/{id}/payment/stored_payment_transactions", tag = "Payments",
    request_body = TopUpBody,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "makes retries safe")),
    responses((status = 200, body = Data<StoredPaymentTransaction>),
        (status = 202, body = Data<StoredPaymentTransaction>)),
    security(("account_key" = [])))]
pub async fn create_managed(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<TopUpBody>,
) -> Result<Response, ApiError> {
    top_up(&state, &caller, Some(&id), &headers, body).await
}

async fn list_for(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
    query: &QueryParams,
) -> Result<Json<List<StoredPaymentTransaction>>, ApiError> {
    let page = query.page(PAGE_SIZE_MAX)?;
    let (account, _) = payer(state, caller, managed_id).await?;
    let found = state.payments.list_top_ups(&account, page).await?;
    Ok(Json(List {
        data: found
            .items
            .iter()
            .map(StoredPaymentTransaction::from)
            .collect(),
        meta: PaginationMeta::of(&found),
    }))
}

/// Steward extension: the calling account's top-ups with their status, newest first.
#[utoipa::path(get, path = "/v2/payment/stored_payment_transactions", tag = "Payments",
    params(("page[number]" = Option<u32>, Query, minimum = 1), ("page[size]" = Option<u32>, Query, minimum = 1, maximum = 250)),
    responses((status = 200, body = List<StoredPaymentTransaction>)),
    security(("account_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<List<StoredPaymentTransaction>>, ApiError> {
    list_for(&state, &caller, None, &query).await
}

/// Steward extension: a managed account's top-ups (manager).
#[utoipa::path(get, path = "/v2/managed_accounts/{id}/payment/stored_payment_transactions", tag = "Payments",
    params(("id" = String, Path), ("page[number]" = Option<u32>, Query, minimum = 1), ("page[size]" = Option<u32>, Query, minimum = 1, maximum = 250)),
    responses((status = 200, body = List<StoredPaymentTransaction>),
        (status = 403, description = "not a manager", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn list_managed(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    query: QueryParams,
) -> Result<Json<List<StoredPaymentTransaction>>, ApiError> {
    list_for(&state, &caller, Some(&id), &query).await
}

/// An auto-recharge preference (Telnyx `AutoRechargePref`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AutoRechargePrefBody {
    /// Always `auto_recharge_pref`.
    pub record_type: &'static str,
    /// The account's id.
    pub id: String,
    /// Whether it is on.
    pub enabled: bool,
    /// Recharge when a usage charge leaves the balance at or below this (dollars and cents).
    #[schema(example = "10.00")]
    pub threshold_amount: String,
    /// Charged on top of bringing the balance back to the threshold (dollars and cents).
    #[schema(example = "50.00")]
    pub recharge_amount: String,
    /// Always `credit_paypal`: the account's default card.
    pub preference: String,
    /// Stored and shown; no invoice is issued for recharges.
    pub invoice_enabled: bool,
}

impl From<&AutoRechargePref> for AutoRechargePrefBody {
    fn from(pref: &AutoRechargePref) -> Self {
        Self {
            record_type: "auto_recharge_pref",
            id: pref.account_id.to_string(),
            enabled: pref.enabled,
            threshold_amount: pref.threshold.to_decimal_string(2),
            recharge_amount: pref.recharge.to_decimal_string(2),
            preference: pref.preference.clone(),
            invoice_enabled: pref.invoice_enabled,
        }
    }
}

/// Body of `PATCH …/auto_recharge_prefs` (every field optional).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoRechargePrefRequest {
    /// Turn on (needs a default card) or off.
    pub enabled: Option<bool>,
    /// Dollars and cents, e.g. `"10.00"`.
    #[schema(value_type = Option<String>)]
    pub threshold_amount: Option<serde_json::Value>,
    /// Dollars and cents within the top-up bounds, e.g. `"50.00"`.
    #[schema(value_type = Option<String>)]
    pub recharge_amount: Option<serde_json::Value>,
    /// `credit_paypal` (the default card); `ach` is not offered.
    pub preference: Option<String>,
    /// Stored and shown.
    pub invoice_enabled: Option<bool>,
}

async fn prefs_for(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
) -> Result<Json<Data<AutoRechargePrefBody>>, ApiError> {
    let (account, _) = payer(state, caller, managed_id).await?;
    let pref = state.payments.auto_recharge_pref(&account).await?;
    Ok(Json(Data {
        data: AutoRechargePrefBody::from(&pref),
    }))
}

async fn update_prefs_for(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
    body: AutoRechargePrefRequest,
) -> Result<Json<Data<AutoRechargePrefBody>>, ApiError> {
    let update = PrefUpdate {
        enabled: body.enabled,
        threshold: parse_amount(body.threshold_amount.as_ref(), "threshold_amount")?,
        recharge: parse_amount(body.recharge_amount.as_ref(), "recharge_amount")?,
        preference: body.preference,
        invoice_enabled: body.invoice_enabled,
    };
    let (account, actor) = payer(state, caller, managed_id).await?;
    let pref = state
        .payments
        .update_auto_recharge_pref(account.id, update, &actor)
        .await?;
    Ok(Json(Data {
        data: AutoRechargePrefBody::from(&pref),
    }))
}

/// The calling account's auto-recharge preference.
#[utoipa::path(get, path = "/v2/payment/auto_recharge_prefs", tag = "Payments",
    responses((status = 200, body = Data<AutoRechargePrefBody>),
        (status = 422, description = "A rollup-billing account has no payment methods, top-ups or auto-recharge of its own (its manager pays); or a cancelled account", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn get_prefs(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Data<AutoRechargePrefBody>>, ApiError> {
    prefs_for(&state, &caller, None).await
}

/// Changes the calling account's auto-recharge preference.
#[utoipa::path(patch, path = "/v2/payment/auto_recharge_prefs", tag = "Payments",
    request_body = AutoRechargePrefRequest,
    responses((status = 200, body = Data<AutoRechargePrefBody>)),
    security(("account_key" = [])))]
pub async fn update_prefs(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<AutoRechargePrefRequest>,
) -> Result<Json<Data<AutoRechargePrefBody>>, ApiError> {
    update_prefs_for(&state, &caller, None, body).await
}

/// A managed account's auto-recharge preference (manager).
#[utoipa::path(get, path = "/v2/managed_accounts/{id}/payment/auto_recharge_prefs", tag = "Payments",
    params(("id" = String, Path)),
    responses((status = 200, body = Data<AutoRechargePrefBody>),
        (status = 422, description = "A rollup-billing account has no payment methods, top-ups or auto-recharge of its own (its manager pays); or a cancelled account", body = super::error::ErrorEnvelope),
        (status = 403, description = "not a manager", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn get_managed_prefs(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Data<AutoRechargePrefBody>>, ApiError> {
    prefs_for(&state, &caller, Some(&id)).await
}

/// Changes a managed account's auto-recharge preference (manager).
#[utoipa::path(patch, path = "/v2/managed_accounts/{id}/payment/auto_recharge_prefs", tag = "Payments",
    params(("id" = String, Path)), request_body = AutoRechargePrefRequest,
    responses((status = 200, body = Data<AutoRechargePrefBody>),
        (status = 403, description = "not a manager", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn update_managed_prefs(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<AutoRechargePrefRequest>,
) -> Result<Json<Data<AutoRechargePrefBody>>, ApiError> {
    update_prefs_for(&state, &caller, Some(&id), body).await
}

impl RequestBody for TopUpBody {}

impl RequestBody for AutoRechargePrefRequest {}
