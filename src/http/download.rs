//! Files served for download (invoice PDFs, report CSVs): opened by the owner's key or by an
//! expiring signed link, and answered as attachments.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorKind};
use super::extract::QueryParams;

/// Whether the request carries a signed link to `path`: `true` for a valid one, `false` for
/// none (the caller's key then decides); a link that is malformed, tampered with or expired
/// is a 403. Checked before anything is read.
pub fn signed_link(state: &AppState, query: &QueryParams, path: &str) -> Result<bool, ApiError> {
    let (Some(signature), Some(expires)) = (query.get("signature"), query.get("expires")) else {
        return Ok(false);
    };
    let expires_s = expires.parse::<i64>().map_err(|_| {
        ApiError::new(
            ErrorKind::Forbidden,
            "the link's expiry is not valid; ask for a new link",
        )
    })?;
    state
        .signer
        .verify(path, expires_s, signature, state.clock.now().timestamp())
        .map_err(|e| ApiError::new(ErrorKind::Forbidden, e.to_string()))?;
    Ok(true)
}

/// `body` as an attachment named `filename`.
pub fn attachment(body: impl IntoResponse, content_type: &'static str, filename: &str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let disposition = format!("attachment; filename=\"{filename}\"");
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}
