//! `/v2/managed_accounts…`: the Telnyx Managed Accounts API, plus email change.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::{EmptyBody, JsonBody, RequestBody};
use super::error::{ApiError, ErrorKind};
use super::extract::{Caller, PathParams, QueryParams, account_id};
use super::wire::{Data, List, ManagedAccountBalance, PaginationMeta, timestamp};
use crate::accounts::listing::{
    FilterError, ManagedAccountFilter, PAGE_SIZE_MAX, PageRequest, Sort, StatusFilter,
};
use crate::accounts::{
    self, Account, AccountStatus, Email, ManagedAccountUpdate, NewManagedAccount, OrganizationName,
    Password,
};
use crate::billing::{self, Balance};

/// A managed account (Telnyx `ManagedAccount`). `api_key` holds the full key only in the
/// response that created it; later reads carry the public identifier of the account's
/// newest live key (or `""` if none), never a secret. `api_token` (a V1 token) is not
/// offered and is always `""`. `api_user` is the manager's email. `status` and
/// `channel_limit` are Steward extensions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManagedAccount {
    /// Always `managed_account`.
    #[schema(example = "managed_account")]
    pub record_type: &'static str,
    /// Account id (UUID).
    pub id: String,
    /// Sign-in email.
    pub email: String,
    /// The API key (full only on creation; otherwise its public identifier).
    pub api_key: String,
    /// The manager's email.
    pub api_user: String,
    /// Not offered: always empty.
    pub api_token: String,
    /// The manager's account id.
    pub manager_account_id: String,
    /// ISO 8601 creation time.
    pub created_at: String,
    /// ISO 8601 time of the last change.
    pub updated_at: String,
    /// The business name given at creation.
    pub organization_name: String,
    /// The account's own balance; absent for rollup-billing accounts, which have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<ManagedAccountBalance>,
    /// Whether a price list of its own may replace the manager's.
    pub managed_account_allow_custom_pricing: bool,
    /// Whether spend is charged to the manager's balance (fixed at creation).
    pub rollup_billing: bool,
    /// `active`, `disabled`, `cancelled` or `blocked`.
    pub status: &'static str,
    /// Share of the manager's global outbound channel pool.
    pub channel_limit: i64,
}

/// A managed account in a list (Telnyx `ManagedAccountMultiListing`): no key, no balance.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManagedAccountListing {
    /// Always `managed_account`.
    #[schema(example = "managed_account")]
    pub record_type: &'static str,
    /// Account id.
    pub id: String,
    /// Sign-in email.
    pub email: String,
    /// The manager's email.
    pub api_user: String,
    /// The manager's account id.
    pub manager_account_id: String,
    /// ISO 8601 creation time.
    pub created_at: String,
    /// ISO 8601 time of the last change.
    pub updated_at: String,
    /// The business name.
    pub organization_name: String,
    /// Whether custom pricing is allowed.
    pub managed_account_allow_custom_pricing: bool,
    /// Whether spend rolls up to the manager.
    pub rollup_billing: bool,
    /// `active`, `disabled`, `cancelled` or `blocked`.
    pub status: &'static str,
}

fn managed_account(
    account: &Account,
    manager: &Account,
    api_key: String,
    balance: Option<Balance>,
) -> ManagedAccount {
    ManagedAccount {
        record_type: "managed_account",
        id: account.id.to_string(),
        email: account.email.clone(),
        api_key,
        api_user: manager.email.clone(),
        api_token: String::new(),
        manager_account_id: manager.id.to_string(),
        created_at: timestamp(account.created_at_ms),
        updated_at: timestamp(account.updated_at_ms),
        organization_name: account.organization_name.clone(),
        balance: balance.map(ManagedAccountBalance::from),
        managed_account_allow_custom_pricing: account.managed_account_allow_custom_pricing,
        rollup_billing: account.rollup_billing,
        status: account.status.as_str(),
        channel_limit: account.channel_limit,
    }
}

fn listing(account: &Account, manager: &Account) -> ManagedAccountListing {
    ManagedAccountListing {
        record_type: "managed_account",
        id: account.id.to_string(),
        email: account.email.clone(),
        api_user: manager.email.clone(),
        manager_account_id: manager.id.to_string(),
        created_at: timestamp(account.created_at_ms),
        updated_at: timestamp(account.updated_at_ms),
        organization_name: account.organization_name.clone(),
        managed_account_allow_custom_pricing: account.managed_account_allow_custom_pricing,
        rollup_billing: account.rollup_billing,
        status: account.status.as_str(),
    }
}

/// The managed account as a response; `api_key` is the given full key or, when none, the
/// public id of its newest live key. Rollup accounts carry no balance object.
async fn respond(
    state: &AppState,
    manager: &Account,
    account: &Account,
    api_key: String,
) -> Result<Json<Data<ManagedAccount>>, ApiError> {
    let balance = if account.rollup_billing {
        None
    } else {
        Some(billing::balance_of(&state.db, account).await?)
    };
    Ok(Json(Data {
        data: managed_account(account, manager, api_key, balance),
    }))
}

/// Filter keys the list understands; others are refused rather than silently ignored.
const FILTERS: [&str; 5] = [
    "filter[email][contains]",
    "filter[email][eq]",
    "filter[organization_name][contains]",
    "filter[organization_name][eq]",
    "filter[status][eq]",
];

/// The list's filters, order and page from its query parameters (the portal's search form
/// uses the same names, so both read them with the same rules).
pub fn list_query(
    query: &QueryParams,
) -> Result<(ManagedAccountFilter, Sort, PageRequest), ApiError> {
    if let Some(unknown) = query
        .names_with_prefix("filter")
        .find(|name| !FILTERS.contains(name))
    {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            format!(
                "Unknown filter '{unknown}'. Known filters: {}.",
                FILTERS.join(", ")
            ),
        )
        .parameter(unknown));
    }
    let mut filter = ManagedAccountFilter::default();
    type Setter = fn(&mut ManagedAccountFilter, &str) -> Result<(), FilterError>;
    let setters: [(&str, Setter); 4] = [
        (
            "filter[email][contains]",
            ManagedAccountFilter::email_contains,
        ),
        ("filter[email][eq]", ManagedAccountFilter::email_eq),
        (
            "filter[organization_name][contains]",
            ManagedAccountFilter::organization_name_contains,
        ),
        (
            "filter[organization_name][eq]",
            ManagedAccountFilter::organization_name_eq,
        ),
    ];
    for (name, set) in setters {
        if let Some(value) = query.get(name) {
            set(&mut filter, value).map_err(|e| {
                ApiError::new(ErrorKind::InvalidValue, format!("{name} {e}")).parameter(name)
            })?;
        }
    }
    if let Some(status) = query.get("filter[status][eq]") {
        filter.status(parse_status(status)?);
    }
    if query.bool("include_cancelled_accounts")?.unwrap_or(false) {
        filter.include_cancelled();
    }
    let sort = match query.get("sort") {
        None => Sort::default(),
        Some(text) => Sort::parse(text).ok_or_else(|| {
            ApiError::new(
                ErrorKind::BadRequest,
                "sort must be one of created_at, -created_at, email, -email",
            )
            .parameter("sort")
        })?,
    };
    let page = query.page(PAGE_SIZE_MAX)?;

    Ok((filter, sort, page))
}

fn parse_status(text: &str) -> Result<StatusFilter, ApiError> {
    Ok(match text {
        "all" => StatusFilter::All,
        "active" | "enabled" => StatusFilter::Enabled,
        "disabled" => StatusFilter::Only(AccountStatus::Disabled),
        "cancelled" => StatusFilter::Only(AccountStatus::Cancelled),
        "blocked" => StatusFilter::Only(AccountStatus::Blocked),
        _ => {
            return Err(ApiError::new(
                ErrorKind::InvalidValue,
                "filter[status][eq] must be one of all, active, enabled, cancelled, disabled, blocked",
            )
            .parameter("filter[status][eq]"));
        }
    })
}

/// Lists the caller's managed accounts.
#[utoipa::path(
    get, path = "/v2/managed_accounts", tag = "Managed Accounts", operation_id = "ListManagedAccounts",
    params(
        ("filter[email][contains]" = Option<String>, Query, description = "Case-insensitive substring, at least 3 characters"),
        ("filter[email][eq]" = Option<String>, Query, description = "Exact email (case-insensitive)"),
        ("filter[organization_name][contains]" = Option<String>, Query, description = "Case-insensitive substring, at least 3 characters"),
        ("filter[organization_name][eq]" = Option<String>, Query, description = "Exact organization name"),
        ("filter[status][eq]" = Option<String>, Query, description = "all, active, enabled, cancelled, disabled, blocked"),
        ("include_cancelled_accounts" = Option<bool>, Query, description = "Include cancelled accounts (default false)"),
        ("page[number]" = Option<u32>, Query, description = "Page number, from 1", minimum = 1, maximum = 1000000),
        ("page[size]" = Option<u32>, Query, description = "Page size, 1 to 250 (default 20)", minimum = 1, maximum = 250),
        ("sort" = Option<String>, Query, description = "created_at, -created_at, email, -email; default newest first"),
    ),
    responses(
        (status = 200, body = List<ManagedAccountListing>),
    ),
    security(("account_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<List<ManagedAccountListing>>, ApiError> {
    accounts::ensure_manager(&caller.account)?;
    let (filter, sort, page) = list_query(&query)?;
    let page =
        accounts::list_managed_accounts(&state.db, &caller.account, &filter, sort, page).await?;
    Ok(Json(List {
        meta: PaginationMeta::of(&page),
        data: page
            .items
            .iter()
            .map(|a| listing(a, &caller.account))
            .collect(),
    }))
}

/// Body of `POST /v2/managed_accounts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateManagedAccountRequest {
    /// Required: becomes the organization name.
    #[schema(example = "Larry's Cat Food Inc")]
    pub business_name: Option<String>,
    /// Sign-in email; generated from the manager's when absent.
    pub email: Option<String>,
    /// Password (8 to 256 characters); without one the account cannot sign in.
    pub password: Option<String>,
    /// Default false; can change later.
    pub managed_account_allow_custom_pricing: Option<bool>,
    /// Default false; fixed for life.
    pub rollup_billing: Option<bool>,
}

impl RequestBody for CreateManagedAccountRequest {}

fn invalid(pointer: &str, error: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidValue,
        format!("{}: {error}", pointer.trim_start_matches('/')),
    )
    .pointer(pointer)
}

impl TryFrom<CreateManagedAccountRequest> for NewManagedAccount {
    type Error = ApiError;

    fn try_from(body: CreateManagedAccountRequest) -> Result<Self, ApiError> {
        let business_name = body.business_name.ok_or_else(|| {
            ApiError::new(ErrorKind::Missing, "business_name is required").pointer("/business_name")
        })?;
        Ok(Self {
            business_name: OrganizationName::parse(&business_name)
                .map_err(|e| invalid("/business_name", e))?,
            email: body
                .email
                .map(|e| Email::parse(&e))
                .transpose()
                .map_err(|e| invalid("/email", e))?,
            password: body
                .password
                .map(|p| Password::parse(&p))
                .transpose()
                .map_err(|e| invalid("/password", e))?,
            managed_account_allow_custom_pricing: body
                .managed_account_allow_custom_pricing
                .unwrap_or(false),
            rollup_billing: body.rollup_billing.unwrap_or(false),
        })
    }
}

/// Creates a managed account under the caller. The response carries its first API key in
/// full, once.
#[utoipa::path(
    post, path = "/v2/managed_accounts", tag = "Managed Accounts", operation_id = "CreateManagedAccount",
    request_body = CreateManagedAccountRequest,
    responses(
        (status = 200, body = Data<ManagedAccount>),
    ),
    security(("account_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateManagedAccountRequest>,
) -> Result<Json<Data<ManagedAccount>>, ApiError> {
    accounts::ensure_manager(&caller.account)?;
    let new = NewManagedAccount::try_from(body)?;
    let (account, key) =
        accounts::create_managed_account(&state.db, &state.clock, &caller.account, new).await?;
    respond(&state, &caller.account, &account, key.secret().to_owned()).await
}

/// Retrieves one of the caller's managed accounts.
#[utoipa::path(
    get, path = "/v2/managed_accounts/{id}", tag = "Managed Accounts", operation_id = "RetrieveManagedAccount",
    params(("id" = String, Path, description = "Managed account id")),
    responses(
        (status = 200, body = Data<ManagedAccount>),
    ),
    security(("account_key" = []))
)]
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<Json<Data<ManagedAccount>>, ApiError> {
    accounts::ensure_manager(&caller.account)?;
    let (account, key_id) =
        accounts::managed_account(&state.db, &caller.account, account_id(&id)?).await?;
    respond(
        &state,
        &caller.account,
        &account,
        key_id.unwrap_or_default(),
    )
    .await
}

/// Body of `PATCH /v2/managed_accounts/{id}`. A password is not set here (see
/// [`password_elsewhere`]).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateManagedAccountRequest {
    /// Allow a price list of the account's own.
    pub managed_account_allow_custom_pricing: Option<bool>,
    /// Steward extension: a new sign-in email.
    pub email: Option<String>,
    /// Steward extension: a new business (organization) name.
    pub business_name: Option<String>,
    /// Fixed at creation: any value other than the current one is refused.
    pub rollup_billing: Option<bool>,
}

impl RequestBody for UpdateManagedAccountRequest {
    fn refuse_field(pointer: &str) -> Option<ApiError> {
        password_elsewhere(pointer)
    }
}

/// The answer to a `password` sent to an update that does not set one: where it is set.
pub(super) fn password_elsewhere(pointer: &str) -> Option<ApiError> {
    (pointer == "/password").then(|| {
        ApiError::new(
            ErrorKind::Immutable,
            "A password cannot be set through the API. The account's user sets it in the \
             portal's General settings; the platform operator can set it with \
             `steward admin set-password`.",
        )
    })
}

/// Updates one of the caller's managed accounts.
#[utoipa::path(
    patch, path = "/v2/managed_accounts/{id}", tag = "Managed Accounts", operation_id = "UpdateManagedAccount",
    params(("id" = String, Path, description = "Managed account id")),
    request_body = UpdateManagedAccountRequest,
    responses(
        (status = 200, body = Data<ManagedAccount>),
    ),
    security(("account_key" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<UpdateManagedAccountRequest>,
) -> Result<Json<Data<ManagedAccount>>, ApiError> {
    accounts::ensure_manager(&caller.account)?;
    let id = account_id(&id)?;
    let update = ManagedAccountUpdate {
        managed_account_allow_custom_pricing: body.managed_account_allow_custom_pricing,
        email: body
            .email
            .map(|e| Email::parse(&e))
            .transpose()
            .map_err(|e| invalid("/email", e))?,
        business_name: body
            .business_name
            .map(|n| OrganizationName::parse(&n))
            .transpose()
            .map_err(|e| invalid("/business_name", e))?,
        rollup_billing: body.rollup_billing,
    };
    let (account, key_id) =
        accounts::update_managed_account(&state.db, &state.clock, &caller.account, id, update)
            .await?;
    respond(
        &state,
        &caller.account,
        &account,
        key_id.unwrap_or_default(),
    )
    .await
}

/// Body of `POST …/actions/enable`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableRequest {
    /// Accepted for compatibility; Steward has no connections to re-enable.
    pub reenable_all_connections: Option<bool>,
}

impl RequestBody for EnableRequest {}

/// Disables a managed account: its keys are refused and it may start no new usage.
#[utoipa::path(
    post, path = "/v2/managed_accounts/{id}/actions/disable", tag = "Managed Accounts", operation_id = "DisableManagedAccount",
    params(("id" = String, Path, description = "Managed account id")),
    request_body(content = Option<EmptyBody>),
    responses(
        (status = 200, body = Data<ManagedAccount>),
    ),
    security(("account_key" = []))
)]
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(_body): JsonBody<EmptyBody>,
) -> Result<Json<Data<ManagedAccount>>, ApiError> {
    set_enabled(&state, &caller, &id, false).await
}

/// Enables a managed account again.
#[utoipa::path(
    post, path = "/v2/managed_accounts/{id}/actions/enable", tag = "Managed Accounts", operation_id = "EnableManagedAccount",
    params(("id" = String, Path, description = "Managed account id")),
    request_body(content = Option<EnableRequest>),
    responses(
        (status = 200, body = Data<ManagedAccount>),
    ),
    security(("account_key" = []))
)]
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(_body): JsonBody<EnableRequest>,
) -> Result<Json<Data<ManagedAccount>>, ApiError> {
    set_enabled(&state, &caller, &id, true).await
}

async fn set_enabled(
    state: &AppState,
    caller: &Caller,
    id: &str,
    enabled: bool,
) -> Result<Json<Data<ManagedAccount>>, ApiError> {
    accounts::ensure_manager(&caller.account)?;
    let (account, key_id) = accounts::set_enabled(
        &state.db,
        &state.clock,
        &caller.account,
        account_id(id)?,
        enabled,
    )
    .await?;
    respond(state, &caller.account, &account, key_id.unwrap_or_default()).await
}
