//! Payment methods (Steward extension; Telnyx has no public API for them): the calling
//! account's cards under `/v2/payment_methods`, a managed account's under
//! `/v2/managed_accounts/{id}/payment_methods` (manager). Cards arrive as gateway tokens
//! only; the card number and security code never reach these routes.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::{JsonBody, RequestBody};
use super::error::ApiError;
use super::extract::{Caller, PathParams};
use super::payments::payer;
use super::wire::{Data, List, PaginationMeta, timestamp};
use crate::accounts::listing::{Page, PageRequest};
use crate::payments::methods::{METHODS_PER_ACCOUNT_MAX, PaymentMethod};

/// A saved card.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodBody {
    /// Always `payment_method`.
    pub record_type: &'static str,
    /// Payment method id.
    pub id: String,
    /// Always `card`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `visa`, `mastercard`, `amex`, `discover` or `unknown`.
    pub brand: String,
    /// Last four digits.
    pub last4: String,
    /// Expiry month.
    pub exp_month: i64,
    /// Expiry year.
    pub exp_year: i64,
    /// Charged by top-ups that name no card, and by auto-recharge.
    pub default: bool,
    /// ISO 8601 time it was added.
    pub created_at: String,
    /// ISO 8601 time it was removed (delete responses only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
}

impl From<&PaymentMethod> for PaymentMethodBody {
    fn from(method: &PaymentMethod) -> Self {
        Self {
            record_type: "payment_method",
            id: method.id.clone(),
            kind: "card",
            brand: method.brand.clone(),
            last4: method.last4.clone(),
            exp_month: method.exp_month,
            exp_year: method.exp_year,
            default: method.is_default,
            created_at: timestamp(method.created_at_ms),
            deleted_at: method.deleted_at_ms.map(timestamp),
        }
    }
}

/// Body of `POST …/payment_methods`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentMethodRequest {
    /// A card token from the gateway's card entry (the sandbox: `POST /sandbox/v1/tokens`).
    pub token: String,
    /// Make it the default card (the first card always is).
    pub default: Option<bool>,
}

async fn list_for(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
) -> Result<Json<List<PaymentMethodBody>>, ApiError> {
    let (account, _) = payer(state, caller, managed_id).await?;
    let methods = state.payments.list_methods(&account).await?;
    let size = u32::try_from(METHODS_PER_ACCOUNT_MAX).unwrap_or(u32::MAX);
    let page = Page {
        total_results: u64::try_from(methods.len()).unwrap_or(0),
        items: methods,
        request: PageRequest::new(1, size, size).ok_or_else(|| anyhow::anyhow!("page size"))?,
    };
    Ok(Json(List {
        data: page.items.iter().map(PaymentMethodBody::from).collect(),
        meta: PaginationMeta::of(&page),
    }))
}

async fn create_for(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
    body: CreatePaymentMethodRequest,
) -> Result<Json<Data<PaymentMethodBody>>, ApiError> {
    let (account, actor) = payer(state, caller, managed_id).await?;
    crate::payments::ensure_payable(&account)?;
    let method = state
        .payments
        .add_method(
            account.id,
            body.token.trim(),
            body.default.unwrap_or(false),
            &actor,
        )
        .await?;
    Ok(Json(Data {
        data: PaymentMethodBody::from(&method),
    }))
}

async fn delete_for(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
    method_id: &str,
) -> Result<Json<Data<PaymentMethodBody>>, ApiError> {
    let (account, actor) = payer(state, caller, managed_id).await?;
    let method = state
        .payments
        .delete_method(account.id, method_id, &actor)
        .await?;
    Ok(Json(Data {
        data: PaymentMethodBody::from(&method),
    }))
}

async fn set_default_for(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
    method_id: &str,
) -> Result<Json<Data<PaymentMethodBody>>, ApiError> {
    let (account, actor) = payer(state, caller, managed_id).await?;
    let method = state
        .payments
        .set_default_method(account.id, method_id, &actor)
        .await?;
    Ok(Json(Data {
        data: PaymentMethodBody::from(&method),
    }))
}

/// The calling account's cards, newest first.
#[utoipa::path(get, path = "/v2/payment_methods", tag = "Payment methods",
    responses((status = 200, body = List<PaymentMethodBody>),
        (status = 422, description = "A rollup-billing account has no payment methods, top-ups or auto-recharge of its own (its manager pays); or a cancelled account", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn list_own(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<List<PaymentMethodBody>>, ApiError> {
    list_for(&state, &caller, None).await
}

/// Saves a card from its gateway token. Adding many distinct cards is paused (429).
#[utoipa::path(post, path = "/v2/payment_methods", tag = "Payment methods",
    request_body = CreatePaymentMethodRequest,
    responses((status = 200, body = Data<PaymentMethodBody>), (status = 404, description = "no such token", body = super::error::ErrorEnvelope),
        (status = 503, description = "the gateway did not answer; nothing changed", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn create_own(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreatePaymentMethodRequest>,
) -> Result<Json<Data<PaymentMethodBody>>, ApiError> {
    create_for(&state, &caller, None, body).await
}

/// Removes a card: it can no longer be charged.
#[utoipa::path(delete, path = "/v2/payment_methods/{id}", tag = "Payment methods",
    params(("id" = String, Path)),
    responses((status = 200, body = Data<PaymentMethodBody>)),
    security(("account_key" = [])))]
pub async fn delete_own(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Data<PaymentMethodBody>>, ApiError> {
    delete_for(&state, &caller, None, &id).await
}

/// Makes a card the default.
#[utoipa::path(post, path = "/v2/payment_methods/{id}/actions/set_default", tag = "Payment methods",
    params(("id" = String, Path)),
    responses((status = 200, body = Data<PaymentMethodBody>)),
    security(("account_key" = [])))]
pub async fn set_default_own(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Data<PaymentMethodBody>>, ApiError> {
    set_default_for(&state, &caller, None, &id).await
}

/// A managed account's cards (manager).
#[utoipa::path(get, path = "/v2/managed_accounts/{id}/payment_methods", tag = "Payment methods",
    params(("id" = String, Path)),
    responses((status = 200, body = List<PaymentMethodBody>),
        (status = 422, description = "A rollup-billing account has no payment methods, top-ups or auto-recharge of its own (its manager pays); or a cancelled account", body = super::error::ErrorEnvelope),
        (status = 403, description = "not a manager", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn list_managed(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<List<PaymentMethodBody>>, ApiError> {
    list_for(&state, &caller, Some(&id)).await
}

/// Saves a card on a managed account (manager).
#[utoipa::path(post, path = "/v2/managed_accounts/{id}/payment_methods", tag = "Payment methods",
    params(("id" = String, Path)), request_body = CreatePaymentMethodRequest,
    responses((status = 200, body = Data<PaymentMethodBody>),
        (status = 403, description = "not a manager", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn create_managed(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<CreatePaymentMethodRequest>,
) -> Result<Json<Data<PaymentMethodBody>>, ApiError> {
    create_for(&state, &caller, Some(&id), body).await
}

/// Removes a managed account's card (manager).
#[utoipa::path(delete, path = "/v2/managed_accounts/{id}/payment_methods/{payment_method_id}", tag = "Payment methods",
    params(("id" = String, Path), ("payment_method_id" = String, Path)),
    responses((status = 200, body = Data<PaymentMethodBody>),
        (status = 422, description = "The managed account is cancelled: it takes no change", body = super::error::ErrorEnvelope),
        (status = 403, description = "not a manager", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn delete_managed(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, method_id)): PathParams<(String, String)>,
) -> Result<Json<Data<PaymentMethodBody>>, ApiError> {
    delete_for(&state, &caller, Some(&id), &method_id).await
}

/// Makes one of a managed account's cards its default (manager).
#[utoipa::path(post, path = "/v2/managed_accounts/{id}/payment_methods/{payment_method_id}/actions/set_default", tag = "Payment methods",
    params(("id" = String, Path), ("payment_method_id" = String, Path)),
    responses((status = 200, body = Data<PaymentMethodBody>),
        (status = 422, description = "The managed account is cancelled: it takes no change", body = super::error::ErrorEnvelope),
        (status = 403, description = "not a manager", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn set_default_managed(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, method_id)): PathParams<(String, String)>,
) -> Result<Json<Data<PaymentMethodBody>>, ApiError> {
    set_default_for(&state, &caller, Some(&id), &method_id).await
}

impl RequestBody for CreatePaymentMethodRequest {}
