//! The one HTTP error type and its mapping to the Telnyx error envelope.
//!
//! Every failure a client can see goes through [`ApiError`]; its `IntoResponse` is the single
//! place that turns errors into `{"errors": [...]}`. Codes, statuses and titles come from
//! one table, [`ErrorKind::spec`]. Internal failures become an opaque 500, logged once here
//! with their cause chain.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::AccountError;

/// What kind of failure this is; fixes status, code and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No valid credentials.
    Unauthenticated,
    /// Valid credentials, not allowed.
    Forbidden,
    /// Nothing there (or nothing this caller may see).
    NotFound,
    /// The request could not be parsed (JSON syntax, parameter syntax).
    BadRequest,
    /// A required field or parameter is missing.
    Missing,
    /// A value is well-formed but not acceptable.
    InvalidValue,
    /// A unique value is already taken.
    Duplicate,
    /// A limit set by the operator is reached.
    LimitReached,
    /// A field that may not change was asked to change.
    Immutable,
    /// The resource is in a state that does not allow this.
    InvalidState,
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// The body is not of the media type the route reads (JSON, or CSV for price lists).
    UnsupportedMediaType,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The request ran out of time.
    Timeout,
    /// A failure of ours.
    Internal,
    /// The database is unreachable.
    Unavailable,
    /// The request URI is longer than the HTTP layer reads.
    UriTooLong,
    /// The request head (request line and headers) is larger than the HTTP layer reads.
    HeadersTooLarge,
    /// Too many failed attempts from this client; wait for `Retry-After`.
    TooManyRequests,
    /// An amount that is not dollars and cents (Telnyx's own code).
    InvalidAmount,
    /// Payments paused by a carding defence; wait for `Retry-After`.
    PaymentBlocked,
    /// The card issuer declined the payment.
    CardDeclined,
    /// The card processor failed; nothing was charged.
    PaymentProcessorError,
}

impl ErrorKind {
    /// Every kind, for the table test.
    pub const ALL: [ErrorKind; 23] = [
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::BadRequest,
        Self::Missing,
        Self::InvalidValue,
        Self::Duplicate,
        Self::LimitReached,
        Self::Immutable,
        Self::InvalidState,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::MethodNotAllowed,
        Self::Timeout,
        Self::Internal,
        Self::Unavailable,
        Self::UriTooLong,
        Self::HeadersTooLarge,
        Self::TooManyRequests,
        Self::InvalidAmount,
        Self::PaymentBlocked,
        Self::CardDeclined,
        Self::PaymentProcessorError,
    ];

    /// The table: HTTP status, error code and title. Codes below 20000 are Telnyx's own;
    /// 4xxxx codes are Steward's for outcomes Telnyx has no code for.
    pub fn spec(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "10009", "Authentication failed"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "10010", "Authorization failed"),
            Self::NotFound => (StatusCode::NOT_FOUND, "10005", "Resource not found"),
            Self::BadRequest => (StatusCode::BAD_REQUEST, "10015", "Bad Request"),
            Self::Missing => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "10004",
                "Missing required parameter",
            ),
            Self::InvalidValue => (StatusCode::UNPROCESSABLE_ENTITY, "40001", "Invalid value"),
            Self::Duplicate => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "10012",
                "Duplicate resource",
            ),
            Self::LimitReached => (StatusCode::UNPROCESSABLE_ENTITY, "40002", "Limit reached"),
            Self::Immutable => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "40003",
                "Field cannot be changed",
            ),
            Self::InvalidState => (StatusCode::UNPROCESSABLE_ENTITY, "40004", "Invalid state"),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "40005",
                "Request body too large",
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "40008",
                "Unsupported media type",
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "40006",
                "Method not allowed",
            ),
            Self::Timeout => (StatusCode::REQUEST_TIMEOUT, "10008", "Request timeout"),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "10007",
                "Unexpected error",
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "40007",
                "Service unavailable",
            ),
            Self::UriTooLong => (StatusCode::URI_TOO_LONG, "40010", "URI too long"),
            Self::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "40009",
                "Request headers too large",
            ),
            Self::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "10011", "Too many requests"),
            Self::InvalidAmount => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "10027",
                "Invalid amount format",
            ),
            Self::PaymentBlocked => (
                StatusCode::TOO_MANY_REQUESTS,
                "40020",
                "Payments temporarily blocked",
            ),
            Self::CardDeclined => (StatusCode::UNPROCESSABLE_ENTITY, "40021", "Card declined"),
            Self::PaymentProcessorError => {
                (StatusCode::BAD_GATEWAY, "40022", "Payment processor error")
            }
        }
    }
}

/// Which part of the request is to blame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub enum ErrorSource {
    /// A JSON pointer into the body, e.g. `/channel_limit`.
    #[serde(rename = "pointer")]
    Pointer(String),
    /// A query or path parameter, e.g. `page[size]`.
    #[serde(rename = "parameter")]
    Parameter(String),
}

/// An error as the client sees it, plus (for 500s) the cause we log.
#[derive(Debug)]
pub struct ApiError {
    kind: ErrorKind,
    detail: String,
    source: Option<ErrorSource>,
    cause: Option<anyhow::Error>,
    retry_after_s: Option<u64>,
    /// No pooled connection became free in time (counted by the metrics).
    pool_exhausted: bool,
    /// Tells the Telnyx SDKs whether to retry on their own (`x-should-retry`).
    should_retry: Option<bool>,
}

impl ApiError {
    /// An error of `kind` with a specific `detail`.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            source: None,
            cause: None,
            retry_after_s: None,
            pool_exhausted: false,
            should_retry: None,
        }
    }

    /// Blames a body field (`pointer` is a JSON pointer such as `/email`).
    pub fn pointer(mut self, pointer: impl Into<String>) -> Self {
        self.source = Some(ErrorSource::Pointer(pointer.into()));
        self
    }

    /// Blames a query or path parameter.
    pub fn parameter(mut self, name: impl Into<String>) -> Self {
        self.source = Some(ErrorSource::Parameter(name.into()));
        self
    }

    /// An opaque 500 that logs `cause`.
    pub fn internal(cause: anyhow::Error) -> Self {
        Self {
            kind: ErrorKind::Internal,
            detail: "An unexpected error occurred. It has been logged; please retry later."
                .to_owned(),
            source: None,
            cause: Some(cause),
            retry_after_s: None,
            pool_exhausted: false,
            should_retry: None,
        }
    }

    /// Tells the client when to try again (`Retry-After`, whole seconds rounded up).
    pub fn retry_after_ms(mut self, retry_after_ms: i64) -> Self {
        let seconds = u64::try_from(retry_after_ms.max(1))
            .unwrap_or(1)
            .div_ceil(1000);
        self.retry_after_s = Some(seconds);
        self
    }

    /// Tells the Telnyx SDKs not to retry on their own (they retry 429s and 5xx).
    pub fn no_automatic_retry(mut self) -> Self {
        self.should_retry = Some(false);
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What went wrong, as the client reads it.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The field or parameter blamed, if any.
    pub fn blamed(&self) -> Option<&ErrorSource> {
        self.source.as_ref()
    }

    /// Logs the cause of a failure of ours, as the envelope does when it answers; for
    /// another edge (the portal's HTML pages) that answers the error its own way.
    pub fn log_cause(&self) {
        if let Some(cause) = &self.cause {
            // A cause may quote input: card data is cut out of the log line as well.
            let chain = crate::sensitive::redact_card_data(&cause_chain(cause)).into_owned();
            tracing::error!(error.chain = %chain, "Request failed: {chain}");
        }
    }

    /// 404 for a resource of the given name.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!("The requested {what} does not exist."),
        )
    }
}

/// Wire shape of one error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Stable error code (a string holding an integer).
    pub code: &'static str,
    /// Short, stable title of the code.
    pub title: &'static str,
    /// What went wrong this time.
    pub detail: String,
    /// The field or parameter to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<ErrorSource>,
}

/// Wire shape of an error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// One or more errors.
    pub errors: Vec<ErrorObject>,
}

/// The JSON of a one-error envelope of `kind`, for answers written below the router (the
/// connection layer's own responses), where no `ApiError` can be turned into a response.
pub fn envelope_json(kind: ErrorKind, detail: &str) -> Vec<u8> {
    let (_, code, title) = kind.spec();
    let body = ErrorEnvelope {
        errors: vec![ErrorObject {
            code,
            title,
            detail: detail.to_owned(),
            source: None,
        }],
    };
    // Serialising plain strings cannot fail; an empty body would still carry the status.
    serde_json::to_vec(&body).unwrap_or_default()
}

fn cause_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for (depth, cause) in error.chain().enumerate() {
        let _ = write!(text, "{}{cause}", if depth == 0 { "" } else { ": " });
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.kind.spec();
        self.log_cause();
        // Details and sources may echo what the client sent: never a card number or token.
        let redact = |text: String| match crate::sensitive::redact_card_data(&text) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(redacted) => redacted,
        };
        let source = self.source.map(|source| match source {
            ErrorSource::Pointer(p) => ErrorSource::Pointer(redact(p)),
            ErrorSource::Parameter(p) => ErrorSource::Parameter(redact(p)),
        });
        let body = ErrorEnvelope {
            errors: vec![ErrorObject {
                code,
                title,
                detail: redact(self.detail),
                source,
            }],
        };
        let mut response = (status, axum::Json(body)).into_response();
        if self.kind == ErrorKind::Unauthenticated {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.pool_exhausted {
            response
                .extensions_mut()
                .insert(super::metrics::PoolExhausted);
        }
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(retry) = self.should_retry {
            let value = HeaderValue::from_static(if retry { "true" } else { "false" });
            response.headers_mut().insert("x-should-retry", value);
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => ApiError {
                pool_exhausted: matches!(error, sqlx::Error::PoolTimedOut),
                ..ApiError::new(
                    ErrorKind::Unavailable,
                    "The service is overloaded or shutting down; please retry.",
                )
            },
            other => ApiError::internal(
                anyhow::Error::new(other).context("Failed to query the database"),
            ),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        ApiError::internal(error)
    }
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        use ErrorKind as K;
        match error {
            AccountError::NotFound => ApiError::not_found("account"),
            AccountError::EmailTaken => ApiError::new(
                K::Duplicate,
                "An account with this email already exists. Existing accounts cannot be moved \
                 under a manager: to bring that customer under a manager, ask the platform \
                 operator to cancel the existing account and release its email, then create \
                 the managed account with it. Otherwise choose an email that is not in use.",
            )
            .pointer("/email"),
            AccountError::NotApprovedManager => ApiError::new(
                K::Forbidden,
                "Only approved manager accounts can manage accounts. Ask the platform operator \
                 to approve this account as a manager.",
            ),
            e @ AccountError::EmailRequired => {
                ApiError::new(K::Missing, e.to_string()).pointer("/email")
            }
            AccountError::ManagedCannotManage => {
                ApiError::new(K::Forbidden, "A managed account cannot manage accounts.")
            }
            e @ AccountError::ManagedAccountLimitReached { .. } => ApiError::new(
                K::LimitReached,
                format!("{e}. Ask the platform operator to raise the limit."),
            ),
            e @ AccountError::ChannelPoolExceeded { .. } => {
                ApiError::new(K::InvalidValue, e.to_string()).pointer("/channel_limit")
            }
            e @ AccountError::RollupBillingImmutable => {
                ApiError::new(K::Immutable, e.to_string()).pointer("/rollup_billing")
            }
            e @ AccountError::Cancelled => ApiError::new(K::InvalidState, e.to_string()),
            AccountError::NotAllowed(reason) => ApiError::new(K::InvalidState, reason),
            AccountError::Database(e) => e.into(),
            AccountError::Internal(e) => ApiError::internal(e),
        }
    }
}

impl From<crate::pricing::PricingError> for ApiError {
    fn from(error: crate::pricing::PricingError) -> Self {
        use crate::pricing::PricingError as E;
        match error {
            E::BadFile(lines) => {
                let listed: Vec<String> = lines
                    .iter()
                    .map(|l| format!("line {}: {}", l.line, l.message))
                    .collect();
                ApiError::new(
                    ErrorKind::InvalidValue,
                    format!(
                        "The price list has bad lines; nothing was imported. {}",
                        listed.join("; ")
                    ),
                )
            }
            E::NotFound(what) => ApiError::not_found(what),
            E::Invalid(reason) => ApiError::new(ErrorKind::InvalidValue, reason),
            e @ E::Cancelled => ApiError::new(ErrorKind::InvalidState, e.to_string()),
            E::Database(e) => e.into(),
        }
    }
}

impl From<crate::billing::BillingError> for ApiError {
    fn from(error: crate::billing::BillingError) -> Self {
        use crate::billing::BillingError as E;
        match error {
            E::NotFound => ApiError::not_found("account"),
            e @ (E::NoOwnBalance | E::Cancelled) => {
                ApiError::new(ErrorKind::InvalidState, e.to_string())
            }
            e @ E::BalanceOutOfRange(_) => {
                tracing::error!("A balance reached the limit of its integer: {e}");
                ApiError::new(ErrorKind::InvalidState, e.to_string())
            }
            e @ E::IdempotencyKeyReused => {
                ApiError::new(ErrorKind::InvalidValue, e.to_string()).parameter("Idempotency-Key")
            }
            E::Invalid(reason) => ApiError::new(ErrorKind::InvalidValue, reason).pointer("/amount"),
            E::Database(e) => e.into(),
        }
    }
}

impl From<crate::admission::AdmissionError> for ApiError {
    fn from(error: crate::admission::AdmissionError) -> Self {
        match error {
            crate::admission::AdmissionError::NotFound(what) => ApiError::not_found(what),
            e @ crate::admission::AdmissionError::LeaseEnded(_) => {
                ApiError::new(ErrorKind::InvalidState, e.to_string())
            }
            crate::admission::AdmissionError::Database(e) => e.into(),
        }
    }
}

impl From<crate::reports::ReportError> for ApiError {
    fn from(error: crate::reports::ReportError) -> Self {
        use crate::reports::ReportError;
        match &error {
            ReportError::PricesHidden(_) => ApiError::new(ErrorKind::Forbidden, error.to_string()),
            ReportError::Missing(parameter) => {
                ApiError::new(ErrorKind::BadRequest, error.to_string()).parameter(*parameter)
            }
            ReportError::Invalid { parameter, .. } => {
                ApiError::new(ErrorKind::BadRequest, error.to_string()).parameter(*parameter)
            }
        }
    }
}

impl From<crate::reports::jobs::JobError> for ApiError {
    fn from(error: crate::reports::jobs::JobError) -> Self {
        use crate::reports::jobs::JobError;
        match error {
            JobError::Invalid { pointer, detail } => {
                ApiError::new(ErrorKind::InvalidValue, detail).pointer(pointer)
            }
            JobError::NotFound(what) => ApiError::not_found(what),
            e @ JobError::NotManager => ApiError::new(ErrorKind::Forbidden, e.to_string()),
            JobError::Account(e) => e.into(),
            JobError::Database(e) => e.into(),
        }
    }
}

impl From<crate::payments::PaymentError> for ApiError {
    fn from(error: crate::payments::PaymentError) -> Self {
        use crate::payments::PaymentError as E;
        use ErrorKind as K;
        match error {
            E::AccountNotFound => ApiError::not_found("account"),
            E::MethodNotFound => ApiError::not_found("payment method"),
            E::TokenNotFound => ApiError::new(
                K::NotFound,
                "No card with this token exists (it may belong to another account). Enter the card again for a new token.",
            )
            .pointer("/token"),
            e @ (E::RollupBilling | E::Cancelled | E::NotAllowed(_)) => {
                ApiError::new(K::InvalidState, e.to_string())
            }
            e @ E::NoDefaultMethod => {
                ApiError::new(K::InvalidState, e.to_string()).pointer("/payment_method_id")
            }
            e @ E::DuplicateCard => ApiError::new(K::Duplicate, e.to_string()).pointer("/token"),
            e @ E::TooManyMethods { .. } => ApiError::new(K::LimitReached, e.to_string()),
            ref e @ E::AmountOutOfRange { field, .. } => {
                ApiError::new(K::InvalidValue, e.to_string()).pointer(format!("/{field}"))
            }
            ref e @ E::AmountFormat { field } => {
                ApiError::new(K::InvalidAmount, e.to_string()).pointer(format!("/{field}"))
            }
            e @ E::IdempotencyKeyReused => {
                ApiError::new(K::InvalidValue, e.to_string()).parameter("Idempotency-Key")
            }
            E::Refused(refusal) => ApiError::new(K::PaymentBlocked, refusal.detail)
                .retry_after_ms(refusal.retry_after_ms)
                .no_automatic_retry(),
            E::Invalid { field, message } => {
                ApiError::new(K::InvalidValue, message).pointer(format!("/{field}"))
            }
            E::InvalidCard(reason) => ApiError::new(K::InvalidValue, reason).pointer("/number"),
            e @ E::GatewayUnavailable => ApiError::new(K::Unavailable, e.to_string()),
            E::Database(e) => e.into(),
            E::Internal(e) => ApiError::internal(e),
        }
    }
}

impl From<crate::invoices::InvoiceError> for ApiError {
    fn from(error: crate::invoices::InvoiceError) -> Self {
        use crate::invoices::InvoiceError as E;
        match error {
            E::NotFound(what) => ApiError::not_found(what),
            e @ E::RollupBilled => ApiError::new(ErrorKind::Forbidden, e.to_string()),
            e @ E::NotEnded { .. } => ApiError::new(ErrorKind::InvalidState, e.to_string()),
            E::Database(e) => e.into(),
            other => ApiError::internal(anyhow::Error::new(other)),
        }
    }
}

impl From<crate::invoices::charges::RangeError> for ApiError {
    fn from(error: crate::invoices::charges::RangeError) -> Self {
        ApiError::new(ErrorKind::BadRequest, error.to_string()).parameter(error.parameter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_title_and_status() {
        let mut seen = std::collections::HashMap::new();
        for kind in ErrorKind::ALL {
            let (status, code, title) = kind.spec();
            assert!(status.is_client_error() || status.is_server_error());
            assert!(
                code.parse::<u32>().is_ok(),
                "{code} is not an integer string"
            );
            if let Some(previous) = seen.insert(code, title) {
                assert_eq!(previous, title, "code {code} has two titles");
            }
        }
    }
}
