//! Global outbound channels: a manager's pool and each managed account's share of it
//! (`/v2/managed_accounts/allocatable_global_outbound_channels`, `…/update_global_channel_limit`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::{JsonBody, RequestBody, StrictValue};
use super::error::{ApiError, ErrorKind};
use super::extract::{Caller, PathParams, account_id};
use super::wire::Data;
use crate::accounts;

/// The manager's channel pool (Telnyx `ManagedAccountsGlobalOutboundChannels`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AllocatableGlobalOutboundChannels {
    /// Always `allocatable_global_outbound_channels`.
    pub record_type: &'static str,
    /// The pool (0 when the feature is off).
    pub allocatable_global_outbound_channels: i64,
    /// Allocated across live managed accounts.
    pub total_global_channels_allocated: i64,
    /// Present in the Telnyx schema; always false.
    pub managed_account_allow_custom_pricing: bool,
}

/// The caller's pool of global outbound channels and how much is allocated.
#[utoipa::path(
    get, path = "/v2/managed_accounts/allocatable_global_outbound_channels", tag = "Managed Accounts",
    operation_id = "ListAllocatableGlobalOutboundChannels",
    responses(
        (status = 200, body = Data<AllocatableGlobalOutboundChannels>),
    ),
    security(("account_key" = []))
)]
pub async fn allocatable_channels(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Data<AllocatableGlobalOutboundChannels>>, ApiError> {
    let allocation = accounts::channel_allocation(&state.db, &caller.account).await?;
    Ok(Json(Data {
        data: AllocatableGlobalOutboundChannels {
            record_type: "allocatable_global_outbound_channels",
            allocatable_global_outbound_channels: allocation.pool,
            total_global_channels_allocated: allocation.allocated,
            managed_account_allow_custom_pricing: false,
        },
    }))
}

/// Body of `PATCH …/update_global_channel_limit`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannelLimitRequest {
    /// Channels for this account, ≥ 0; all allocations together stay within the pool.
    /// Read as any JSON value so that a wrong one gets this field's own message.
    #[schema(value_type = Option<u32>, minimum = 0, example = 30)]
    pub channel_limit: Option<StrictValue>,
}

impl RequestBody for UpdateChannelLimitRequest {}

/// A managed account's channel allocation (Telnyx `SingleManagedAccountGlobalOutboundChannels`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ManagedAccountGlobalOutboundSettings {
    /// Always `managed_account_global_outbound_settings`.
    pub record_type: &'static str,
    /// Managed account id.
    pub id: String,
    /// Its email.
    pub email: String,
    /// The manager's account id.
    pub manager_account_id: String,
    /// The allocation.
    pub channel_limit: i64,
}

/// Sets a managed account's share of the caller's channel pool.
#[utoipa::path(
    patch, path = "/v2/managed_accounts/{id}/update_global_channel_limit", tag = "Managed Accounts",
    operation_id = "UpdateManagedAccountGlobalChannelLimit",
    params(("id" = String, Path, description = "Managed account id")),
    request_body = UpdateChannelLimitRequest,
    responses(
        (status = 200, body = Data<ManagedAccountGlobalOutboundSettings>),
    ),
    security(("account_key" = []))
)]
pub async fn update_channel_limit(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<UpdateChannelLimitRequest>,
) -> Result<Json<Data<ManagedAccountGlobalOutboundSettings>>, ApiError> {
    accounts::ensure_manager(&caller.account)?;
    let id = account_id(&id)?;
    let channel_limit = match body.channel_limit.map(|v| v.0) {
        None | Some(serde_json::Value::Null) => {
            return Err(
                ApiError::new(ErrorKind::Missing, "channel_limit is required")
                    .pointer("/channel_limit"),
            );
        }
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidValue,
                    "channel_limit must be an integer of at least 0",
                )
                .pointer("/channel_limit")
            })?,
    };
    let account =
        accounts::set_channel_limit(&state.db, &state.clock, &caller.account, id, channel_limit)
            .await?;
    Ok(Json(Data {
        data: ManagedAccountGlobalOutboundSettings {
            record_type: "managed_account_global_outbound_settings",
            id: account.id.to_string(),
            email: account.email,
            manager_account_id: caller.account.id.to_string(),
            channel_limit: account.channel_limit,
        },
    }))
}
