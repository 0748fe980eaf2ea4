//! Extractors that turn raw requests into typed values or envelope errors.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use super::AppState;
use super::auth_throttle::{Client, FAILURE_WINDOW_MS, FAILURES_PER_WINDOW_MAX, Verdict};
use super::error::{ApiError, ErrorKind};
use crate::accounts::listing::{PAGE_NUMBER_MAX, PAGE_SIZE_DEFAULT, PageRequest};
use crate::accounts::{Account, AccountId, AccountStatus};
use crate::clock::to_epoch_ms;
use crate::keys;

/// Query parameters, percent-decoded, in order; deepObject keys such as
/// `filter[email][contains]` are kept whole. A NUL character in any name or value is refused
/// (400 naming the parameter): PostgreSQL cannot store one in text and no value needs one.
#[derive(Debug, Default)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

/// Longest query string read; longer ones are refused.
const QUERY_LENGTH_MAX: usize = 8 * 1024;

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        if raw.len() > QUERY_LENGTH_MAX {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                "The query string is too long.",
            ));
        }
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some((name, _)) = pairs
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(holds_nul("query parameter", name));
        }
        Ok(Self { pairs })
    }
}

impl QueryParams {
    /// Parameters already decoded (the portal's forms, read by the same rules).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    /// The value of `name` (the last one if repeated).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Names present that start with `prefix`.
    pub fn names_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(move |k| k.starts_with(prefix))
    }

    /// A boolean parameter (`true`/`false`).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::new(
                    ErrorKind::BadRequest,
                    format!("{name} must be true or false"),
                )
                .parameter(name)),
            })
            .transpose()
    }

    /// `format`: `json` (the default) or `csv`; true for CSV. Anything else is a 400 naming
    /// the parameter.
    pub fn wants_csv(&self) -> Result<bool, ApiError> {
        match self.get("format") {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(
                ApiError::new(ErrorKind::BadRequest, "format must be json or csv")
                    .parameter("format"),
            ),
        }
    }

    /// `page[number]` (default 1, at most [`PAGE_NUMBER_MAX`]) and `page[size]` (default 20,
    /// at most `size_max`). Any other value, whether not a whole number (`-1`, `abc`, `1.5`)
    /// or out of bounds (`0`, `251`), is one kind of mistake: a 422 naming the parameter.
    pub fn page(&self, size_max: u32) -> Result<PageRequest, ApiError> {
        self.page_named("page[number]", "page[size]", size_max)
    }

    /// Like [`QueryParams::page`], for lists that name their page parameters otherwise
    /// (the legacy reports' `page` and `per_page`).
    pub fn page_named(
        &self,
        number_name: &str,
        size_name: &str,
        size_max: u32,
    ) -> Result<PageRequest, ApiError> {
        let number = self.bounded(number_name, 1, PAGE_NUMBER_MAX)?.unwrap_or(1);
        let size = self
            .bounded(size_name, 1, size_max)?
            .unwrap_or(PAGE_SIZE_DEFAULT);
        PageRequest::new(number, size, size_max).ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "page bounds disagree: number {number}, size {size}, size max {size_max}"
            ))
        })
    }

    /// A whole-number parameter within `min..=max`, written in plain digits.
    fn bounded(&self, name: &str, min: u32, max: u32) -> Result<Option<u32>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        text.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| text.parse::<u32>().ok())
            .flatten()
            .filter(|n| (min..=max).contains(n))
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidValue,
                    format!("{name} must be a whole number from {min} to {max}."),
                )
                .parameter(name)
            })
    }
}

/// The refusal of a parameter holding a NUL character.
fn holds_nul(what: &str, name: &str) -> ApiError {
    ApiError::new(
        ErrorKind::BadRequest,
        format!("The {what} '{name}' contains a NUL character (%00), which no value may hold."),
    )
    .parameter(name)
}

/// The authenticated account behind the request's Bearer key.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account the key acts as.
    pub account: Account,
    /// The key's public identifier.
    pub key_id: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let unauthenticated = |detail: &str| ApiError::new(ErrorKind::Unauthenticated, detail);
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| unauthenticated("Send an API key as 'Authorization: Bearer <key>'."))?;
        let presented = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| unauthenticated("The Authorization header must be 'Bearer <key>'."))?;
        let (account, key_id) = throttled(parts, state, presented, || {
            crate::accounts::api_keys::authenticate(&state.db, &state.key_cache, presented)
        })
        .await?
        .ok_or_else(|| unauthenticated("The API key is not valid or has been revoked."))?;
        let refusal = match account.status {
            AccountStatus::Active => None,
            AccountStatus::Disabled => {
                Some("This account is disabled. Its manager can enable it again.")
            }
            AccountStatus::Cancelled => Some("This account is cancelled."),
            AccountStatus::Blocked => {
                Some("This account is blocked. Contact the platform operator.")
            }
        };
        if let Some(detail) = refusal {
            return Err(ApiError::new(ErrorKind::Forbidden, detail));
        }
        tracing::Span::current().record("account.id", tracing::field::display(account.id));
        Ok(Caller { account, key_id })
    }
}

/// Parses an account id from the path; anything that is not one is simply not found.
pub fn account_id(text: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(text).ok_or_else(|| ApiError::not_found("account"))
}

/// Path parameters; a segment that cannot be decoded is a 404 in the envelope, and one
/// holding a NUL character (`%00`) a 400 naming the parameter.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("resource"))?;
        if let Some((name, _)) = raw.iter().find(|(_, value)| value.contains('\0')) {
            return Err(holds_nul("path parameter", name));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PathParams(value))
            .map_err(|_| ApiError::not_found("resource"))
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let unauthenticated = |detail: &str| ApiError::new(ErrorKind::Unauthenticated, detail);
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| unauthenticated("Send a key as 'Authorization: Bearer <key>'."))?;
    header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| unauthenticated("The Authorization header must be 'Bearer <key>'."))
}

async fn service_caller(
    parts: &Parts,
    state: &AppState,
    kind: keys::service::ServiceKind,
) -> Result<String, ApiError> {
    let presented = bearer(parts)?;
    throttled(parts, state, presented, || {
        crate::accounts::access::authenticate_service(&state.db, &state.key_cache, presented, kind)
    })
    .await?
    .ok_or_else(|| {
        ApiError::new(
            ErrorKind::Unauthenticated,
            "The key is not valid for this API.",
        )
    })
}

/// Looks a presented key up unless its client is backed off for presenting bad keys
/// (see `auth_throttle`), and counts the outcome against the client.
async fn throttled<T, Lookup>(
    parts: &Parts,
    state: &AppState,
    presented: &str,
    lookup: impl FnOnce() -> Lookup,
) -> Result<Option<T>, ApiError>
where
    Lookup: Future<Output = Result<Option<T>, sqlx::Error>>,
{
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| Client::of(peer.ip()));
    let Some(client) = client else {
        // Served without a connection (an in-process call): nothing to count against.
        return Ok(lookup().await?);
    };
    let throttle = &state.auth_throttle;
    let now_ms = to_epoch_ms(state.clock.now());
    if let Verdict::Refuse { retry_after_ms } = throttle.verdict(client, presented, now_ms) {
        tracing::warn!(client.address = %client, "Refused a key from {client} without looking it up: it presented too many bad keys");
        return Err(ApiError::new(
            ErrorKind::TooManyRequests,
            "Too many invalid keys were presented from this address. Retry after the number of \
             seconds in Retry-After, with a valid key.",
        )
        .retry_after_ms(retry_after_ms));
    }
    let found = lookup().await?;
    if found.is_some() {
        throttle.record_success(client, presented, now_ms);
    } else if let Some(started) = throttle.record_failure(client, now_ms) {
        tracing::warn!(
            client.address = %client,
            backoff_ms = started.duration_ms,
            "Backing off {client} for {} ms: {FAILURES_PER_WINDOW_MAX} bad keys within {} s",
            started.duration_ms,
            FAILURE_WINDOW_MS / 1000
        );
    }
    Ok(found)
}

/// A network element authenticated with an ingest key; holds the key's public id.
#[derive(Debug, Clone)]
pub struct IngestCaller(pub String);

impl FromRequestParts<AppState> for IngestCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        service_caller(parts, state, keys::service::ServiceKind::Ingest)
            .await
            .map(IngestCaller)
    }
}

/// The operator, authenticated with an operator key; holds the actor recorded for what it
/// does (`operator:<key id>`).
#[derive(Debug, Clone)]
pub struct OperatorCaller(pub crate::audit::Actor);

impl FromRequestParts<AppState> for OperatorCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        service_caller(parts, state, keys::service::ServiceKind::Operator)
            .await
            .map(|id| OperatorCaller(crate::audit::Actor::Operator(format!("operator:{id}"))))
    }
}
