//! `/v2/legacy/reporting/usage_reports/{voice,messaging}`: report jobs (Telnyx's legacy
//! usage reports) computed in the background over the caller's account or its managed
//! accounts. The finished CSV is served by Steward at the job's `report_url`, a link signed
//! to work without a key until it expires (or with the owner's key).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::{JsonBody, RequestBody};
use super::error::{ApiError, ErrorKind};
use super::extract::{Caller, PathParams, QueryParams};
use super::wire::{Data, List, PaginationMeta, timestamp};
use crate::accounts::AccountKind;
use crate::reports::jobs::{self, Job, JobKind, JobRequest, JobStatus};
use crate::usage::rollups::DAY_MS;

/// How long a report link works.
pub const REPORT_LINK_TTL_S: i64 = 24 * 3600;

/// Largest `per_page` of the legacy lists (Telnyx: 250).
pub const LEGACY_PER_PAGE_MAX: u32 = 250;

/// A report job (Telnyx `CdrUsageReportResponseLegacy` / `MdrUsageReportResponseLegacy`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportJob {
    /// Job id.
    pub id: String,
    /// `cdr_usage_report` (voice) or `mdr_usage_report` (messaging).
    pub record_type: &'static str,
    /// 1 pending, 2 complete, 3 failed.
    pub status: i64,
    /// Why it failed (Steward extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Always 0: aggregated over all usage.
    pub aggregation_type: i64,
    /// Voice: 0 none, 1 number type, 2 country, 3 both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_breakdown: Option<i64>,
    /// Voice: as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<Vec<String>>,
    /// Messaging: as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<String>>,
    /// The managed accounts covered.
    pub managed_accounts: Vec<String>,
    /// Whether every managed account is covered.
    pub select_all_managed_accounts: bool,
    /// Start of the period.
    pub start_time: String,
    /// End of the period (exclusive).
    pub end_time: String,
    /// The rows (`{"rows": [...], "currency": "USD"}`), once complete.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Where the CSV is, once complete: a link signed to work without a key for 24 hours.
    pub report_url: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
}

/// This server's base URL as the client reached it (links are given back to that client).
pub(super) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

fn csv_path(kind: JobKind, id: &str) -> String {
    format!(
        "/v2/legacy/reporting/usage_reports/{}/{id}/csv",
        kind.as_str()
    )
}

fn job_body(state: &AppState, headers: &HeaderMap, job: Job) -> ReportJob {
    let report_url = (job.status == JobStatus::Complete).then(|| {
        let path = csv_path(job.kind, &job.id);
        let expires_s = state.clock.now().timestamp() + REPORT_LINK_TTL_S;
        format!(
            "{}{path}?{}",
            base_url(headers),
            state.signer.query_for(&path, expires_s)
        )
    });
    let voice = job.kind == JobKind::Voice;
    ReportJob {
        record_type: if voice {
            "cdr_usage_report"
        } else {
            "mdr_usage_report"
        },
        status: job.status.code(),
        failure_reason: job.failure_reason,
        aggregation_type: job.request.aggregation_type,
        product_breakdown: voice.then_some(job.request.product_breakdown),
        connections: voice.then(|| job.request.echo.clone()),
        profiles: (!voice).then(|| job.request.echo.clone()),
        managed_accounts: job.request.managed_accounts,
        select_all_managed_accounts: job.request.select_all_managed_accounts,
        start_time: timestamp(job.request.start_ms),
        end_time: timestamp(job.request.end_ms),
        result: job.result,
        report_url,
        created_at: timestamp(job.created_at_ms),
        updated_at: timestamp(job.updated_at_ms),
        id: job.id,
    }
}

/// Body of a voice report request (Telnyx `UsageRequestLegacy`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoiceReportRequest {
    /// Start (date-time at 00:00:00Z: reports cover whole UTC days).
    pub start_time: Option<String>,
    /// End, exclusive (date-time at 00:00:00Z; at most 31 days after the start).
    pub end_time: Option<String>,
    /// Only 0 (all usage): Steward has no connections, tags or billing groups.
    pub aggregation_type: Option<i64>,
    /// 0 none, 1 number type, 2 country, 3 both.
    pub product_breakdown: Option<i64>,
    /// Accepted and echoed (Steward has no connections).
    #[schema(value_type = Option<Vec<Object>>)]
    pub connections: Option<Vec<serde_json::Value>>,
    /// Managed accounts of the caller to cover.
    pub managed_accounts: Option<Vec<String>>,
    /// Cover every managed account of the caller.
    pub select_all_managed_accounts: Option<bool>,
}

/// Body of a messaging report request (Telnyx `MdrUsageRequestLegacy`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagingReportRequest {
    /// Only 0 (all usage): Steward has no messaging profiles or tags.
    pub aggregation_type: Option<i64>,
    /// Start (date-time at 00:00:00Z: reports cover whole UTC days); default 30 days before today.
    pub start_time: Option<String>,
    /// End, exclusive (date-time at 00:00:00Z); default the end of today.
    pub end_time: Option<String>,
    /// Accepted and echoed (Steward has no messaging profiles).
    pub profiles: Option<Vec<String>>,
    /// Managed accounts of the caller to cover.
    pub managed_accounts: Option<Vec<String>>,
    /// Cover every managed account of the caller.
    pub select_all_managed_accounts: Option<bool>,
}

impl RequestBody for VoiceReportRequest {}

impl RequestBody for MessagingReportRequest {}

fn instant(pointer: &'static str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.timestamp_millis())
            .map_err(|_| {
                ApiError::new(
                    ErrorKind::InvalidValue,
                    format!(
                        "{} must be a date-time such as 2026-01-01T00:00:00Z",
                        pointer.trim_start_matches('/')
                    ),
                )
                .pointer(pointer)
            })
    })
    .transpose()
}

/// The default period: the last 30 whole days and today.
fn default_period(state: &AppState) -> (i64, i64) {
    let today_ms = state.clock.now().timestamp_millis().div_euclid(DAY_MS) * DAY_MS;
    (today_ms - 30 * DAY_MS, today_ms + DAY_MS)
}

async fn create(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    kind: JobKind,
    request: JobRequest,
) -> Result<Json<Data<ReportJob>>, ApiError> {
    let may_see_prices = caller.account.kind != AccountKind::Managed;
    let job = jobs::create(
        &state.db,
        &state.clock,
        &caller.account,
        kind,
        request,
        may_see_prices,
    )
    .await?;
    state.reports_wake.notify_one();
    Ok(Json(Data {
        data: job_body(state, headers, job),
    }))
}

async fn list(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    query: &QueryParams,
    kind: JobKind,
) -> Result<Json<List<ReportJob>>, ApiError> {
    let page = query.page_named("page", "per_page", LEGACY_PER_PAGE_MAX)?;
    let page = jobs::list(&state.db, caller.account.id, kind, page).await?;
    Ok(Json(List {
        meta: PaginationMeta::of(&page),
        data: page
            .items
            .into_iter()
            .map(|job| job_body(state, headers, job))
            .collect(),
    }))
}

async fn retrieve(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    kind: JobKind,
    id: &str,
) -> Result<Json<Data<ReportJob>>, ApiError> {
    let mut conn = state.db.read.acquire().await?;
    let job = jobs::find(&mut conn, caller.account.id, kind, id)
        .await?
        .ok_or_else(|| ApiError::not_found("report"))?;
    Ok(Json(Data {
        data: job_body(state, headers, job),
    }))
}

async fn remove(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    kind: JobKind,
    id: &str,
) -> Result<Json<Data<ReportJob>>, ApiError> {
    let job = jobs::delete(&state.db, &state.clock, caller.account.id, kind, id).await?;
    Ok(Json(Data {
        data: job_body(state, headers, job),
    }))
}

/// The CSV of a finished job: with a valid signed link, or with the owner's key.
async fn download(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    query: &QueryParams,
    kind: JobKind,
    id: &str,
) -> Result<Response, ApiError> {
    // Without a valid signed link, only the owner's key opens the file.
    let owner = if super::download::signed_link(state, query, &csv_path(kind, id))? {
        None
    } else {
        Some(caller?.account.id)
    };
    let mut conn = state.db.read.acquire().await?;
    let (job_owner, csv) = jobs::csv(&mut conn, kind, id)
        .await?
        .filter(|(job_owner, _)| owner.is_none_or(|o| o == *job_owner))
        .ok_or_else(|| ApiError::not_found("report"))?;
    drop(conn);
    tracing::debug!(account.id = %job_owner, "Serving report {id}");
    Ok(super::download::attachment(
        csv,
        "text/csv; charset=utf-8",
        &format!("{}-usage-{id}.csv", kind.as_str()),
    ))
}

fn ids(list: Option<Vec<String>>) -> Vec<String> {
    list.unwrap_or_default()
}

/// Voice report jobs of the caller (legacy paging: `page`, `per_page`).
#[utoipa::path(get, path = "/v2/legacy/reporting/usage_reports/voice", tag = "Reporting",
    params(("page" = Option<u32>, Query, minimum = 1, maximum = 1000000), ("per_page" = Option<u32>, Query, minimum = 1, maximum = 250)),
    responses((status = 200, body = List<ReportJob>)),
    security(("account_key" = [])))]
pub async fn list_voice(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: QueryParams,
) -> Result<Json<List<ReportJob>>, ApiError> {
    list(&state, &caller, &headers, &query, JobKind::Voice).await
}

/// Asks for a voice usage report over the caller's account, some or all of its managed
/// accounts; it is computed in the background (poll it, then fetch `report_url`).
#[utoipa::path(post, path = "/v2/legacy/reporting/usage_reports/voice", tag = "Reporting",
    request_body = VoiceReportRequest,
    responses((status = 200, body = Data<ReportJob>),
        (status = 404, description = "A managed account named is not the caller's", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn create_voice(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<VoiceReportRequest>,
) -> Result<Json<Data<ReportJob>>, ApiError> {
    let missing = |field: &str| {
        ApiError::new(ErrorKind::Missing, format!("{field} is required"))
            .pointer(format!("/{field}"))
    };
    let start_ms =
        instant("/start_time", body.start_time.as_deref())?.ok_or_else(|| missing("start_time"))?;
    let end_ms =
        instant("/end_time", body.end_time.as_deref())?.ok_or_else(|| missing("end_time"))?;
    let request = JobRequest {
        start_ms,
        end_ms,
        aggregation_type: body.aggregation_type.unwrap_or(0),
        product_breakdown: body.product_breakdown.unwrap_or(0),
        managed_accounts: ids(body.managed_accounts),
        select_all_managed_accounts: body.select_all_managed_accounts.unwrap_or(false),
        echo: body
            .connections
            .unwrap_or_default()
            .iter()
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
            .collect(),
    };
    create(&state, &caller, &headers, JobKind::Voice, request).await
}

/// One voice report job.
#[utoipa::path(get, path = "/v2/legacy/reporting/usage_reports/voice/{id}", tag = "Reporting",
    params(("id" = String, Path)),
    responses((status = 200, body = Data<ReportJob>)),
    security(("account_key" = [])))]
pub async fn retrieve_voice(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
) -> Result<Json<Data<ReportJob>>, ApiError> {
    retrieve(&state, &caller, &headers, JobKind::Voice, &id).await
}

/// Deletes a voice report job (answers it as it was).
#[utoipa::path(delete, path = "/v2/legacy/reporting/usage_reports/voice/{id}", tag = "Reporting",
    params(("id" = String, Path)),
    responses((status = 200, body = Data<ReportJob>)),
    security(("account_key" = [])))]
pub async fn delete_voice(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
) -> Result<Json<Data<ReportJob>>, ApiError> {
    remove(&state, &caller, &headers, JobKind::Voice, &id).await
}

/// The CSV of a finished voice report: with the job's signed `report_url`, or the owner's key.
#[utoipa::path(get, path = "/v2/legacy/reporting/usage_reports/voice/{id}/csv", tag = "Reporting",
    params(("id" = String, Path), ("expires" = Option<i64>, Query), ("signature" = Option<String>, Query)),
    responses((status = 200, body = String, content_type = "text/csv")),
    security((), ("account_key" = [])))]
pub async fn csv_voice(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    query: QueryParams,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    download(&state, caller, &query, JobKind::Voice, &id).await
}

/// Messaging report jobs of the caller (legacy paging: `page`, `per_page`).
#[utoipa::path(get, path = "/v2/legacy/reporting/usage_reports/messaging", tag = "Reporting",
    params(("page" = Option<u32>, Query, minimum = 1, maximum = 1000000), ("per_page" = Option<u32>, Query, minimum = 1, maximum = 250)),
    responses((status = 200, body = List<ReportJob>)),
    security(("account_key" = [])))]
pub async fn list_messaging(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: QueryParams,
) -> Result<Json<List<ReportJob>>, ApiError> {
    list(&state, &caller, &headers, &query, JobKind::Messaging).await
}

/// Asks for a messaging usage report (see the voice report).
#[utoipa::path(post, path = "/v2/legacy/reporting/usage_reports/messaging", tag = "Reporting",
    request_body = MessagingReportRequest,
    responses((status = 200, body = Data<ReportJob>),
        (status = 404, description = "A managed account named is not the caller's", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn create_messaging(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MessagingReportRequest>,
) -> Result<Json<Data<ReportJob>>, ApiError> {
    let aggregation_type = body.aggregation_type.ok_or_else(|| {
        ApiError::new(ErrorKind::Missing, "aggregation_type is required")
            .pointer("/aggregation_type")
    })?;
    let (default_start, default_end) = default_period(&state);
    let request = JobRequest {
        start_ms: instant("/start_time", body.start_time.as_deref())?.unwrap_or(default_start),
        end_ms: instant("/end_time", body.end_time.as_deref())?.unwrap_or(default_end),
        aggregation_type,
        product_breakdown: 0,
        managed_accounts: ids(body.managed_accounts),
        select_all_managed_accounts: body.select_all_managed_accounts.unwrap_or(false),
        echo: body.profiles.unwrap_or_default(),
    };
    create(&state, &caller, &headers, JobKind::Messaging, request).await
}

/// One messaging report job.
#[utoipa::path(get, path = "/v2/legacy/reporting/usage_reports/messaging/{id}", tag = "Reporting",
    params(("id" = String, Path)),
    responses((status = 200, body = Data<ReportJob>)),
    security(("account_key" = [])))]
pub async fn retrieve_messaging(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
) -> Result<Json<Data<ReportJob>>, ApiError> {
    retrieve(&state, &caller, &headers, JobKind::Messaging, &id).await
}

/// Deletes a messaging report job (answers it as it was).
#[utoipa::path(delete, path = "/v2/legacy/reporting/usage_reports/messaging/{id}", tag = "Reporting",
    params(("id" = String, Path)),
    responses((status = 200, body = Data<ReportJob>)),
    security(("account_key" = [])))]
pub async fn delete_messaging(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    PathParams(id): PathParams<String>,
) -> Result<Json<Data<ReportJob>>, ApiError> {
    remove(&state, &caller, &headers, JobKind::Messaging, &id).await
}

/// The CSV of a finished messaging report: with the signed `report_url`, or the owner's key.
#[utoipa::path(get, path = "/v2/legacy/reporting/usage_reports/messaging/{id}/csv", tag = "Reporting",
    params(("id" = String, Path), ("expires" = Option<i64>, Query), ("signature" = Option<String>, Query)),
    responses((status = 200, body = String, content_type = "text/csv")),
    security((), ("account_key" = [])))]
pub async fn csv_messaging(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    query: QueryParams,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    download(&state, caller, &query, JobKind::Messaging, &id).await
}
