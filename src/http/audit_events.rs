//! `GET /v2/audit_events`: an account's audit trail in the Telnyx shape. A manager reads its
//! own trail, or a managed account's with `filter[account_id]`; a managed account reads its
//! own, including what its manager did to it, and never its manager's.

use axum::Json;
use axum::extract::State;
use chrono::DateTime;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use super::extract::{Caller, QueryParams};
use super::wire::{List, PaginationMeta, timestamp};
use crate::accounts::listing::{PAGE_SIZE_MAX, Page};
use crate::audit::{self, StoredEvent};

/// One changed field.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditChange {
    /// Dotted field name.
    pub field: String,
    /// The value before (null when created): a string, number, boolean, object or null.
    pub from: serde_json::Value,
    /// The value after: a string, number, boolean, object or null.
    pub to: serde_json::Value,
}

/// One audit event (Telnyx `AuditLog`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    /// Always `audit_event`.
    pub record_type: &'static str,
    /// Event id.
    pub id: String,
    /// `telnyx` (the platform operator, or Steward itself), `account_owner` (the account's
    /// own user) or `account_manager` (its manager).
    pub change_made_by: String,
    /// Steward extension: the account that made the change, when an account did.
    pub actor_account_id: Option<String>,
    /// What kind of change, e.g. `managed_account.update`, `api_key.create`, `credit`.
    pub change_type: String,
    /// The fields that changed.
    pub changes: Vec<AuditChange>,
    /// The changed resource's id.
    pub resource_id: Option<String>,
    /// Always null.
    pub alternate_resource_id: Option<String>,
    /// The account whose trail this is.
    pub user_id: Option<String>,
    /// Same as `user_id` (Steward has no organizations above accounts).
    pub organization_id: Option<String>,
    /// When.
    pub created_at: String,
}

impl From<StoredEvent> for AuditEvent {
    fn from(event: StoredEvent) -> Self {
        Self {
            record_type: "audit_event",
            id: event.id,
            change_made_by: event.change_made_by,
            actor_account_id: event.actor_account_id,
            change_type: event.change_type,
            changes: event
                .changes
                .into_iter()
                .map(|c| AuditChange {
                    field: c.field,
                    from: c.from,
                    to: c.to,
                })
                .collect(),
            resource_id: event.resource_id,
            alternate_resource_id: None,
            organization_id: event.account_id.clone(),
            user_id: event.account_id,
            created_at: timestamp(event.created_at_ms),
        }
    }
}

fn instant(query: &QueryParams, name: &str) -> Result<Option<i64>, ApiError> {
    query
        .get(name)
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_millis())
                .map_err(|_| {
                    ApiError::new(
                        ErrorKind::BadRequest,
                        format!(
                            "{name} must be an ISO 8601 date-time such as 2026-01-01T00:00:00Z"
                        ),
                    )
                    .parameter(name)
                })
        })
        .transpose()
}

/// An account's audit trail, newest first by default.
#[utoipa::path(get, path = "/v2/audit_events", tag = "Audit",
    params(
        ("filter[created_after]" = Option<String>, Query, description = "Only events after this instant (ISO 8601)"),
        ("filter[created_before]" = Option<String>, Query, description = "Only events before this instant (ISO 8601)"),
        ("filter[account_id]" = Option<String>, Query, description = "A managed account of the calling manager (default: the caller)"),
        ("sort" = Option<String>, Query, description = "asc or desc by creation time (default desc)"),
        ("page[number]" = Option<u32>, Query, minimum = 1, maximum = 1000000),
        ("page[size]" = Option<u32>, Query, description = "1 to 250, default 20", minimum = 1, maximum = 250),
    ),
    responses((status = 200, body = List<AuditEvent>),
        (status = 404, description = "filter[account_id] names no managed account of the caller", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<List<AuditEvent>>, ApiError> {
    let created_after_ms = instant(&query, "filter[created_after]")?;
    let created_before_ms = instant(&query, "filter[created_before]")?;
    let descending = match query.get("sort") {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => {
            return Err(
                ApiError::new(ErrorKind::BadRequest, "sort must be asc or desc").parameter("sort"),
            );
        }
    };
    let page = query.page(PAGE_SIZE_MAX)?;
    let account =
        super::scope::own_or_managed(&state, &caller, query.get("filter[account_id]")).await?;
    let audit_query = audit::Query {
        account: account.id,
        created_after_ms,
        created_before_ms,
        descending,
        limit: page.size(),
        offset: page.offset(),
    };
    let mut conn = state.db.read.acquire().await?;
    let (events, total) = audit::list(&mut conn, &audit_query).await?;
    let page = Page {
        items: events,
        request: page,
        total_results: crate::db::non_negative(total),
    };
    Ok(Json(List {
        meta: PaginationMeta::of(&page),
        data: page.items.into_iter().map(AuditEvent::from).collect(),
    }))
}
