//! API keys (a Steward extension; the Telnyx API has no key endpoints): every account
//! manages its own under `/v2/api_keys`, and a manager those of each managed account under
//! `/v2/managed_accounts/{id}/api_keys`. The secret appears once, in the response that
//! mints it.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::body::{EmptyBody, JsonBody};
use super::error::ApiError;
use super::extract::{Caller, PathParams, QueryParams, account_id};
use super::wire::{Data, List, PaginationMeta, timestamp};
use crate::accounts::api_keys::{self as keys, KeyRecord};
use crate::accounts::listing::PAGE_SIZE_MAX;
use crate::accounts::{self, AccountError, AccountId};
use crate::audit::Actor;
use crate::keys::MintedKey;

/// An API key as shown: the secret only when just minted.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    /// Always `api_key`.
    pub record_type: &'static str,
    /// Public identifier (the part of the key before `_`).
    pub id: String,
    /// The account the key acts as.
    pub account_id: String,
    /// Who minted it (absent: the operator).
    pub created_by_account_id: Option<String>,
    /// ISO 8601 creation time.
    pub created_at: String,
    /// ISO 8601 revocation time, if revoked.
    pub revoked_at: Option<String>,
    /// The whole key: present only in the response that mints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

impl From<&KeyRecord> for ApiKey {
    fn from(key: &KeyRecord) -> Self {
        Self {
            record_type: "api_key",
            id: key.id.clone(),
            account_id: key.account_id.to_string(),
            created_by_account_id: key.created_by_account_id.map(|id| id.to_string()),
            created_at: timestamp(key.created_at_ms),
            revoked_at: key.revoked_at_ms.map(timestamp),
            api_key: None,
        }
    }
}

fn minted(key: &MintedKey, account_id: AccountId, created_by: AccountId, now_ms: i64) -> ApiKey {
    ApiKey {
        record_type: "api_key",
        id: key.id().to_owned(),
        account_id: account_id.to_string(),
        created_by_account_id: Some(created_by.to_string()),
        created_at: timestamp(now_ms),
        revoked_at: None,
        api_key: Some(key.secret().to_owned()),
    }
}

/// Resolves whose keys a request is about: the caller's own, or a managed account's of the
/// calling manager (another manager's account is a 404).
async fn owner(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
) -> Result<(AccountId, Actor), ApiError> {
    match managed_id {
        None => Ok((caller.account.id, Actor::Owner(caller.account.id))),
        Some(id) => {
            accounts::ensure_manager(&caller.account)?;
            let (account, _) =
                accounts::managed_account(&state.db, &caller.account, account_id(id)?).await?;
            Ok((account.id, Actor::Manager(caller.account.id)))
        }
    }
}

async fn list_keys(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
    query: &QueryParams,
) -> Result<Json<List<ApiKey>>, ApiError> {
    let page = query.page(PAGE_SIZE_MAX)?;
    let (owner, _) = owner(state, caller, managed_id).await?;
    let keys = keys::list(&state.db, owner, page).await?;
    Ok(Json(List {
        meta: PaginationMeta::of(&keys),
        data: keys.items.iter().map(ApiKey::from).collect(),
    }))
}

async fn mint_key(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
) -> Result<Json<Data<ApiKey>>, ApiError> {
    let (owner, actor) = owner(state, caller, managed_id).await?;
    let now_ms = crate::clock::to_epoch_ms(state.clock.now());
    let key = keys::mint(&state.db, &state.clock, owner, &actor).await?;
    Ok(Json(Data {
        data: minted(&key, owner, caller.account.id, now_ms),
    }))
}

async fn revoke_key(
    state: &AppState,
    caller: &Caller,
    managed_id: Option<&str>,
    key_id: &str,
) -> Result<Json<Data<ApiKey>>, ApiError> {
    let (owner, actor) = owner(state, caller, managed_id).await?;
    let record = keys::revoke(&state.db, &state.clock, owner, key_id, &actor)
        .await
        .map_err(|e| match e {
            AccountError::NotFound => ApiError::not_found("API key"),
            other => other.into(),
        })?;
    Ok(Json(Data {
        data: ApiKey::from(&record),
    }))
}

/// Lists the caller's API keys (never their secrets).
#[utoipa::path(get, path = "/v2/api_keys", tag = "API Keys",
    params(("page[number]" = Option<u32>, Query, minimum = 1, maximum = 1000000), ("page[size]" = Option<u32>, Query, minimum = 1, maximum = 250)),
    responses((status = 200, body = List<ApiKey>)),
    security(("account_key" = [])))]
pub async fn list_own(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<List<ApiKey>>, ApiError> {
    list_keys(&state, &caller, None, &query).await
}

/// Mints an API key for the caller; the response shows the whole key, once.
#[utoipa::path(post, path = "/v2/api_keys", tag = "API Keys", request_body(content = Option<EmptyBody>),
    responses((status = 200, body = Data<ApiKey>)),
    security(("account_key" = [])))]
pub async fn mint_own(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(_body): JsonBody<EmptyBody>,
) -> Result<Json<Data<ApiKey>>, ApiError> {
    mint_key(&state, &caller, None).await
}

/// Revokes one of the caller's API keys.
#[utoipa::path(delete, path = "/v2/api_keys/{key_id}", tag = "API Keys",
    params(("key_id" = String, Path, description = "Public identifier of the key")),
    responses((status = 200, body = Data<ApiKey>)),
    security(("account_key" = [])))]
pub async fn revoke_own(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(key_id): PathParams<String>,
) -> Result<Json<Data<ApiKey>>, ApiError> {
    revoke_key(&state, &caller, None, &key_id).await
}

/// Lists a managed account's API keys.
#[utoipa::path(get, path = "/v2/managed_accounts/{id}/api_keys", tag = "API Keys",
    params(("id" = String, Path), ("page[number]" = Option<u32>, Query, minimum = 1, maximum = 1000000), ("page[size]" = Option<u32>, Query, minimum = 1, maximum = 250)),
    responses((status = 200, body = List<ApiKey>)),
    security(("account_key" = [])))]
pub async fn list_managed(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    query: QueryParams,
) -> Result<Json<List<ApiKey>>, ApiError> {
    list_keys(&state, &caller, Some(&id), &query).await
}

/// Mints an API key for a managed account; the response shows the whole key, once.
#[utoipa::path(post, path = "/v2/managed_accounts/{id}/api_keys", tag = "API Keys",
    params(("id" = String, Path)), request_body(content = Option<EmptyBody>),
    responses((status = 200, body = Data<ApiKey>)),
    security(("account_key" = [])))]
pub async fn mint_managed(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(_body): JsonBody<EmptyBody>,
) -> Result<Json<Data<ApiKey>>, ApiError> {
    mint_key(&state, &caller, Some(&id)).await
}

/// Revokes a managed account's API key.
#[utoipa::path(delete, path = "/v2/managed_accounts/{id}/api_keys/{key_id}", tag = "API Keys",
    params(("id" = String, Path), ("key_id" = String, Path)),
    responses((status = 200, body = Data<ApiKey>),
        (status = 422, description = "The managed account is cancelled: it takes no change", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn revoke_managed(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, key_id)): PathParams<(String, String)>,
) -> Result<Json<Data<ApiKey>>, ApiError> {
    revoke_key(&state, &caller, Some(&id), &key_id).await
}
