//! The portal's one error type: an HTML page with the API's own message (never a code),
//! and the status the API would give. Failures of ours are logged once and say nothing more.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::page::{Bare, Html};
use crate::accounts::AccountError;
use crate::http::error::{ApiError, ErrorKind};

/// Why a portal request did not succeed.
#[derive(Debug)]
pub struct PortalError(ApiError);

impl PortalError {
    /// A page that does not exist, or one the viewer may not see (the same answer).
    pub fn not_found() -> Self {
        Self(ApiError::new(
            ErrorKind::NotFound,
            "There is no such page, or it is not one this account can see.",
        ))
    }

    /// Refused, with the reason.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self(ApiError::new(ErrorKind::Forbidden, detail))
    }

    /// A request that cannot be read, with the reason.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self(ApiError::new(ErrorKind::BadRequest, detail))
    }

    /// A failure of ours (logged when answered).
    pub fn internal(cause: anyhow::Error) -> Self {
        Self(ApiError::internal(cause))
    }

    /// The underlying error, for handlers that show it next to a form field.
    pub fn api(&self) -> &ApiError {
        &self.0
    }
}

impl From<ApiError> for PortalError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<AccountError> for PortalError {
    fn from(error: AccountError) -> Self {
        Self(error.into())
    }
}

impl From<sqlx::Error> for PortalError {
    fn from(error: sqlx::Error) -> Self {
        Self(error.into())
    }
}

impl From<anyhow::Error> for PortalError {
    fn from(error: anyhow::Error) -> Self {
        Self(ApiError::internal(error))
    }
}

impl From<crate::reports::ReportError> for PortalError {
    fn from(error: crate::reports::ReportError) -> Self {
        Self(error.into())
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    bare: Bare,
    status: u16,
    detail: String,
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        self.0.log_cause();
        let (status, _, title) = self.0.kind().spec();
        let heading = match status {
            StatusCode::NOT_FOUND => "Page not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::INTERNAL_SERVER_ERROR => "Something went wrong",
            StatusCode::SERVICE_UNAVAILABLE => "Please try again",
            _ => title,
        };
        let page = ErrorPage {
            bare: Bare::new(heading),
            status: status.as_u16(),
            // As in the envelope: never a card number or token a client sent.
            detail: crate::sensitive::redact_card_data(self.0.detail()).into_owned(),
        };
        Html(page).with_status(status)
    }
}
