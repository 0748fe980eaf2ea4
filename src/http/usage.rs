//! Network-element endpoints (ingest key): usage events, call admission, channel leases.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::{EmptyBody, JsonBody, RequestBody, StrictValue};
use super::error::{ApiError, ErrorKind};
use super::extract::{IngestCaller, PathParams};
use super::wire::Data;
use crate::accounts::AccountId;
use crate::admission::{self, Decision, LEASE_TTL_DEFAULT_S, LEASE_TTL_MAX_S};
use crate::clock::{from_epoch_ms, to_wire};
use crate::pricing::Product;
use crate::usage::{self, BATCH_EVENTS_MAX, Outcome, RawEvent};

/// Body of `POST /v2/usage_events`. The batch itself takes only `events`; each event may
/// carry keys beyond its own fields (a network element's metadata, fields of later
/// versions), which are ignored. A key repeated within one event, or a NUL character in
/// any of its strings, refuses the whole batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageBatch {
    /// Up to 10,000 events: `{id, account_id, product, destination, quantity, occurred_at, lease_id?}`,
    /// plus any other keys, which are ignored. Each is checked on its own: a malformed one is
    /// rejected, the rest go on.
    #[schema(value_type = Vec<Object>)]
    pub events: Option<Vec<StrictValue>>,
}

impl RequestBody for UsageBatch {}

/// What happened to one event, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventResult {
    /// The event id as sent (null if it had none).
    pub id: Option<String>,
    /// `accepted` (charged now), `duplicate` (its id was charged before), `suspended`
    /// (well-formed but not chargeable now: kept, to be charged once pricing or the account
    /// exists; do not resend) or `rejected` (malformed, or beyond the batch's bound).
    pub status: &'static str,
    /// Why it was suspended: `no_price_list`, `no_rate` or `unknown_account`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<&'static str>,
    /// Why it was suspended or rejected, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For an event charged now that carried a `lease_id`: `released` (it ended its call's
    /// lease), `already_ended` (released or expired before), `unknown` (no such lease) or
    /// `other_account` (the lease is another account's: left alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<&'static str>,
}

/// Ingests a batch of usage events: each is rated and charged exactly once, ever.
///
/// An event that is well-formed but cannot be charged now (no price list in force for its
/// account at `occurred_at`, no rate for its product and destination, an account id naming
/// no account) is answered `suspended` with a `reason_code`: it is kept, and charged once
/// by the operator's re-rating after pricing (or the account) is fixed.
///
/// Events are read leniently: keys an event does not define are ignored, so network
/// elements may add metadata and newer fields without being refused. The batch object
/// itself takes only `events`. A key repeated in one object, or a NUL character in any
/// string, refuses the whole batch (nothing is charged).
#[utoipa::path(post, path = "/v2/usage_events", tag = "Usage", request_body = UsageBatch,
    responses((status = 200, body = Data<Vec<EventResult>>)),
    security(("ingest_key" = [])))]
pub async fn ingest(
    State(state): State<AppState>,
    IngestCaller(key_id): IngestCaller,
    JsonBody(batch): JsonBody<UsageBatch>,
) -> Result<Json<Data<Vec<EventResult>>>, ApiError> {
    let events = batch.events.ok_or_else(|| {
        ApiError::new(ErrorKind::Missing, "events is required").pointer("/events")
    })?;
    if events.len() > BATCH_EVENTS_MAX {
        return Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!(
                "a batch holds at most {BATCH_EVENTS_MAX} events; this one has {}",
                events.len()
            ),
        )
        .pointer("/events"));
    }
    let parsed: Vec<_> = events.iter().map(|e| RawEvent::from_json(&e.0)).collect();
    let ingested = usage::ingest(
        &state.db,
        &state.pricing,
        &state.clock,
        &parsed,
        &format!("ingest:{key_id}"),
    )
    .await?;
    state.metrics.usage_charged(ingested.charged_nanos);
    let data: Vec<EventResult> = events
        .iter()
        .zip(ingested.outcomes)
        .zip(ingested.leases)
        .map(|((event, outcome), lease)| {
            let (status, reason_code, reason) = match outcome {
                Outcome::Accepted => ("accepted", None, None),
                Outcome::Duplicate => ("duplicate", None, None),
                Outcome::Suspended(code) => (
                    "suspended",
                    Some(code.as_str()),
                    Some(code.description().to_owned()),
                ),
                Outcome::Rejected(reason) => ("rejected", None, Some(reason)),
            };
            EventResult {
                id: event
                    .0
                    .get("id")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
                status,
                reason_code,
                reason,
                lease: lease.map(usage::LeaseEnd::as_str),
            }
        })
        .collect();
    count_outcomes(&state, &data);
    Ok(Json(Data { data }))
}

/// Adds a batch's answers to the metrics, by status.
fn count_outcomes(state: &AppState, results: &[EventResult]) {
    let mut counts: Vec<(&str, u64)> = Vec::new();
    for result in results {
        match counts
            .iter_mut()
            .find(|(status, _)| *status == result.status)
        {
            Some((_, count)) => *count += 1,
            None => counts.push((result.status, 1)),
        }
    }
    for (status, count) in counts {
        state.metrics.usage_events(status, count);
    }
}

/// Body of `POST /v2/admissions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmissionRequest {
    /// The account that wants to start usage.
    pub account_id: Option<String>,
    /// The product.
    pub product: Option<String>,
    /// E.164 destination.
    pub destination: Option<String>,
    /// Lease lifetime for calls, 1 to 14,400 seconds (default 300).
    pub ttl_s: Option<u32>,
}

impl RequestBody for AdmissionRequest {}

/// The decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdmissionDecision {
    /// Always `admission`.
    pub record_type: &'static str,
    /// Whether usage may start.
    pub admitted: bool,
    /// Why not: `account_disabled`, `account_cancelled`, `account_blocked`,
    /// `insufficient_credit`, `channel_limit_reached`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// For calls: the lease to release (or to send with the call's usage event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// When the lease lapses unless renewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

fn field<'a>(value: Option<&'a str>, pointer: &str) -> Result<&'a str, ApiError> {
    value.ok_or_else(|| {
        ApiError::new(ErrorKind::Missing, format!("{} is required", &pointer[1..])).pointer(pointer)
    })
}

/// Asks whether an account may start a call or send a message now.
#[utoipa::path(post, path = "/v2/admissions", tag = "Usage", request_body = AdmissionRequest,
    responses((status = 200, body = Data<AdmissionDecision>),
        (status = 404, description = "The account does not exist", body = super::error::ErrorEnvelope)),
    security(("ingest_key" = [])))]
pub async fn admit(
    State(state): State<AppState>,
    _caller: IngestCaller,
    JsonBody(body): JsonBody<AdmissionRequest>,
) -> Result<Json<Data<AdmissionDecision>>, ApiError> {
    let account_id = field(body.account_id.as_deref(), "/account_id")?;
    let account_id = AccountId::parse(account_id).ok_or_else(|| ApiError::not_found("account"))?;
    let product = field(body.product.as_deref(), "/product")?;
    let product = Product::parse(product).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidValue,
            format!("unknown product '{product}'"),
        )
        .pointer("/product")
    })?;
    let destination = field(body.destination.as_deref(), "/destination")?;
    let destination = usage::e164_digits(destination).ok_or_else(|| {
        ApiError::new(
            ErrorKind::InvalidValue,
            "destination must be an E.164 number",
        )
        .pointer("/destination")
    })?;
    let ttl_s = ttl(body.ttl_s)?;
    let decision = state
        .admissions
        .admit(admission::Request {
            account_id,
            product,
            destination: destination.to_owned(),
            ttl_s,
        })
        .await?;
    state.metrics.admission(match &decision {
        Decision::Admitted(_) => "admitted",
        Decision::Refused(refusal) => refusal.as_str(),
    });
    let data = match decision {
        Decision::Admitted(lease) => AdmissionDecision {
            record_type: "admission",
            admitted: true,
            reason: None,
            expires_at: lease
                .as_ref()
                .map(|l| to_wire(from_epoch_ms(l.expires_at_ms))),
            lease_id: lease.map(|l| l.id),
        },
        Decision::Refused(refusal) => AdmissionDecision {
            record_type: "admission",
            admitted: false,
            reason: Some(refusal.as_str()),
            lease_id: None,
            expires_at: None,
        },
    };
    Ok(Json(Data { data }))
}

fn ttl(ttl_s: Option<u32>) -> Result<u32, ApiError> {
    let ttl_s = ttl_s.unwrap_or(LEASE_TTL_DEFAULT_S);
    if (1..=LEASE_TTL_MAX_S).contains(&ttl_s) {
        Ok(ttl_s)
    } else {
        Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!("ttl_s must be from 1 to {LEASE_TTL_MAX_S}"),
        )
        .pointer("/ttl_s"))
    }
}

/// A channel lease.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelLease {
    /// Always `channel_lease`.
    pub record_type: &'static str,
    /// Lease id.
    pub id: String,
    /// The account holding it.
    pub account_id: String,
    /// Whether it still holds a channel.
    pub live: bool,
    /// Expiry.
    pub expires_at: String,
    /// On a release: whether this request ended the lease (`false`: it had already been
    /// released or had expired; nothing changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_now: Option<bool>,
}

impl From<admission::LeaseState> for ChannelLease {
    fn from(state: admission::LeaseState) -> Self {
        Self {
            record_type: "channel_lease",
            id: state.id,
            account_id: state.account_id,
            live: state.live,
            expires_at: to_wire(state.expires_at),
            released_now: None,
        }
    }
}

/// Ends a call's lease. Releasing twice changes nothing; `released_now` says whether this
/// request ended it.
#[utoipa::path(post, path = "/v2/channel_leases/{id}/actions/release", tag = "Usage",
    params(("id" = String, Path)), request_body(content = Option<EmptyBody>),
    responses((status = 200, body = Data<ChannelLease>)),
    security(("ingest_key" = [])))]
pub async fn release(
    State(state): State<AppState>,
    _caller: IngestCaller,
    PathParams(id): PathParams<String>,
    JsonBody(_body): JsonBody<EmptyBody>,
) -> Result<Json<Data<ChannelLease>>, ApiError> {
    let released = state.admissions.release(&id).await?;
    let mut data = ChannelLease::from(released.lease);
    data.released_now = Some(released.released_now);
    Ok(Json(Data { data }))
}

/// Body of a renewal.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// New lifetime from now, 1 to 14,400 seconds (default 300).
    pub ttl_s: Option<u32>,
}

impl RequestBody for RenewRequest {}

/// Keeps a long call's lease alive.
#[utoipa::path(post, path = "/v2/channel_leases/{id}/actions/renew", tag = "Usage",
    params(("id" = String, Path)), request_body = RenewRequest,
    responses((status = 200, body = Data<ChannelLease>),
        (status = 422, description = "`ttl_s` is out of range, or the lease has already ended (released or expired): admit the call again", body = super::error::ErrorEnvelope)),
    security(("ingest_key" = [])))]
pub async fn renew(
    State(state): State<AppState>,
    _caller: IngestCaller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<RenewRequest>,
) -> Result<Json<Data<ChannelLease>>, ApiError> {
    let lease = admission::renew(&state.db, &state.clock, &id, ttl(body.ttl_s)?).await?;
    Ok(Json(Data { data: lease.into() }))
}
