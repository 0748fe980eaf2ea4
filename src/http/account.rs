//! The calling account itself: `/v2/account` (a Steward extension) and `/v2/balance`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::{JsonBody, RequestBody};
use super::error::{ApiError, ErrorKind};
use super::extract::Caller;
use super::wire::{Data, WIRE_DECIMALS, timestamp};
use crate::accounts::{self, Account, Email, OrganizationName};
use crate::audit::Actor;
use crate::billing::{self, CURRENCY};

/// The calling account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountBody {
    /// Always `account`.
    pub record_type: &'static str,
    /// Account id.
    pub id: String,
    /// Sign-in email.
    pub email: String,
    /// Organization name.
    pub organization_name: String,
    /// `standard`, `manager` or `managed`.
    pub kind: &'static str,
    /// `active`, `disabled`, `cancelled` or `blocked`.
    pub status: &'static str,
    /// The manager, for a managed account.
    pub manager_account_id: Option<String>,
    /// Whether spend rolls up to the manager (managed accounts only).
    pub rollup_billing: bool,
    /// ISO 8601 creation time.
    pub created_at: String,
    /// ISO 8601 time of the last change.
    pub updated_at: String,
}

impl From<&Account> for AccountBody {
    fn from(account: &Account) -> Self {
        Self {
            record_type: "account",
            id: account.id.to_string(),
            email: account.email.clone(),
            organization_name: account.organization_name.clone(),
            kind: account.kind.as_str(),
            status: account.status.as_str(),
            manager_account_id: account.manager_id.map(|id| id.to_string()),
            rollup_billing: account.rollup_billing,
            created_at: timestamp(account.created_at_ms),
            updated_at: timestamp(account.updated_at_ms),
        }
    }
}

/// The calling account.
#[utoipa::path(get, path = "/v2/account", tag = "Account",
    responses((status = 200, body = Data<AccountBody>)),
    security(("account_key" = [])))]
pub async fn retrieve(caller: Caller) -> Json<Data<AccountBody>> {
    Json(Data {
        data: AccountBody::from(&caller.account),
    })
}

/// Body of `PATCH /v2/account`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountRequest {
    /// New sign-in email; unique across the platform, case-insensitively.
    pub email: Option<String>,
    /// New business (organization) name.
    pub business_name: Option<String>,
}

impl RequestBody for UpdateAccountRequest {
    fn refuse_field(pointer: &str) -> Option<ApiError> {
        super::managed_accounts::password_elsewhere(pointer)
    }
}

/// Changes the calling account's email and/or business name.
#[utoipa::path(patch, path = "/v2/account", tag = "Account", request_body = UpdateAccountRequest,
    responses((status = 200, body = Data<AccountBody>)),
    security(("account_key" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<UpdateAccountRequest>,
) -> Result<Json<Data<AccountBody>>, ApiError> {
    let email = body
        .email
        .map(|e| Email::parse(&e))
        .transpose()
        .map_err(|e| {
            ApiError::new(ErrorKind::InvalidValue, format!("email: {e}")).pointer("/email")
        })?;
    let business_name = body
        .business_name
        .map(|n| OrganizationName::parse(&n))
        .transpose()
        .map_err(|e| {
            ApiError::new(ErrorKind::InvalidValue, format!("business_name: {e}"))
                .pointer("/business_name")
        })?;
    let actor = Actor::Owner(caller.account.id);
    let updated = accounts::update_profile(
        &state.db,
        &state.clock,
        caller.account.id,
        email,
        business_name,
        &actor,
    )
    .await?;
    Ok(Json(Data {
        data: AccountBody::from(&updated),
    }))
}

/// The caller's balance (Telnyx `UserBalance`).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserBalance {
    /// Always `balance`.
    pub record_type: &'static str,
    /// Current balance, decimal string.
    #[schema(example = "300.00")]
    pub balance: String,
    /// Credit limit, decimal string.
    #[schema(example = "100.00")]
    pub credit_limit: String,
    /// `balance + credit_limit`, decimal string.
    #[schema(example = "400.00")]
    pub available_credit: String,
    /// Reserved, not yet settled, decimal string.
    #[schema(example = "0.00")]
    pub pending: String,
    /// ISO 4217 currency.
    pub currency: &'static str,
    /// Steward extension: true for a rollup-billing managed account, which has no balance
    /// of its own (its spend is charged to its manager), so every figure is zero.
    pub rollup_billing: bool,
}

/// The calling account's balance.
#[utoipa::path(get, path = "/v2/balance", tag = "Billing",
    responses((status = 200, body = Data<UserBalance>)),
    security(("account_key" = [])))]
pub async fn balance(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Data<UserBalance>>, ApiError> {
    let balance = billing::balance_of(&state.db, &caller.account).await?;
    Ok(Json(Data {
        data: UserBalance {
            record_type: "balance",
            balance: balance.balance.to_decimal_string(WIRE_DECIMALS),
            credit_limit: balance.credit_limit.to_decimal_string(WIRE_DECIMALS),
            available_credit: balance.available_credit().to_decimal_string(WIRE_DECIMALS),
            pending: balance.pending.to_decimal_string(WIRE_DECIMALS),
            currency: CURRENCY,
            rollup_billing: caller.account.rollup_billing,
        },
    }))
}
