//! Extractors that turn raw requests into typed values or envelope errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use super::AppState;
use super::auth_throttle::{Client, FAILURE_WINDOW_MS, FAILURES_PER_WINDOW_MAX, Verdict};
use super::error::{ApiError, ErrorKind};
use crate::accounts::listing::{PAGE_SIZE_DEFAULT, PageRequest};
use crate::accounts::{Account, AccountId, AccountStatus};
use crate::clock::to_epoch_ms;
use crate::keys;

/// A JSON body. An empty body reads as `{}` (the SDKs send none for body-less actions).
/// Syntax errors are 400; values of the wrong type are 422 with a `source.pointer`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ErrorKind::PayloadTooLarge,
                        "The request body is larger than the server accepts.",
                    )
                } else {
                    ApiError::new(
                        ErrorKind::BadRequest,
                        format!("The request body could not be read: {rejection}"),
                    )
                }
            })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        parse_json(text).map(JsonBody)
    }
}

/// Parses `bytes` as `T`, mapping failures to the envelope.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also build a struct from a JSON array; the API takes objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            "The request body must be a JSON object.",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer);
    let value = value.map_err(|error| {
        let pointer = json_pointer(error.path());
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data if pointer.is_empty() => ApiError::new(
                ErrorKind::BadRequest,
                "The request body must be a JSON object.",
            ),
            serde_json::error::Category::Data => {
                ApiError::new(ErrorKind::InvalidValue, describe(&inner)).pointer(pointer)
            }
            _ => ApiError::new(
                ErrorKind::BadRequest,
                format!("The request body is not valid JSON: {inner}"),
            ),
        }
    })?;
    deserializer.end().map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            format!("The request body is not valid JSON: {}", describe(&e)),
        )
    })?;
    Ok(value)
}

/// serde's message without its position suffix, which means nothing to an API client.
fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(at) => text.get(..at).unwrap_or(&text).to_owned(),
        None => text,
    }
}

fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => pointer.push('?'),
        }
    }
    pointer
}

/// Query parameters, percent-decoded, in order; deepObject keys such as
/// `filter[email][contains]` are kept whole.
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
        let pairs = form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Ok(Self { pairs })
    }
}

impl QueryParams {
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

    /// A non-negative integer parameter.
    pub fn u32(&self, name: &str) -> Result<Option<u32>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    ApiError::new(
                        ErrorKind::BadRequest,
                        format!("{name} must be a positive integer"),
                    )
                    .parameter(name)
                })
            })
            .transpose()
    }
}

impl QueryParams {
    /// `page[number]` (default 1) and `page[size]` (default 20, at most `size_max`).
    pub fn page(&self, size_max: u32) -> Result<PageRequest, ApiError> {
        let number = self.u32("page[number]")?.unwrap_or(1);
        let size = self.u32("page[size]")?.unwrap_or(PAGE_SIZE_DEFAULT);
        PageRequest::new(number, size, size_max).ok_or_else(|| {
            let parameter = if number == 0 {
                "page[number]"
            } else {
                "page[size]"
            };
            ApiError::new(
                ErrorKind::InvalidValue,
                format!("page[number] must be at least 1 and page[size] between 1 and {size_max}"),
            )
            .parameter(parameter)
        })
    }
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
            keys::authenticate(&state.db, presented)
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

/// Path parameters; a segment that cannot be decoded is a 404 in the envelope.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
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
        keys::service::authenticate(&state.db, presented, kind)
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

/// The operator, authenticated with an operator key; holds the key's public id.
#[derive(Debug, Clone)]
pub struct OperatorCaller(pub String);

impl FromRequestParts<AppState> for OperatorCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        service_caller(parts, state, keys::service::ServiceKind::Operator)
            .await
            .map(|id| OperatorCaller(format!("operator:{id}")))
    }
}
