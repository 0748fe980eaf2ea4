//! One module per page (or group of pages), each as thin as an API handler: parse the
//! form or query into domain types, call the domain, render or redirect.

pub mod acting;
pub mod api_keys;
pub mod audit_log;
pub mod billing;
pub mod dashboard;
pub mod managed_accounts;
pub mod pricing;
pub mod settings;
pub mod sign_in;
pub mod usage;

use super::error::PortalError;
use crate::http::error::{ApiError, ErrorKind, ErrorSource};

/// A refusal shown next to a form field (or above the form when no field is to blame).
#[derive(Debug, Clone, Default)]
pub struct FieldErrors {
    errors: Vec<(String, String)>,
}

impl FieldErrors {
    /// Adds a message for `field` (`""`: the form as a whole).
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push((field.to_owned(), message.into()));
    }

    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The message for `field`, or `""`.
    pub fn of(&self, field: &str) -> &str {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map_or("", |(_, m)| m.as_str())
    }

    /// The messages that belong to no field on the form (`fields`: those it has, separated
    /// by commas).
    pub fn general(&self, fields: &str) -> Vec<&str> {
        self.errors
            .iter()
            .filter(|(f, _)| f.is_empty() || !fields.split(',').any(|name| name == f))
            .map(|(_, m)| m.as_str())
            .collect()
    }

    /// A domain refusal of a form, with the API's message, next to the field it blames;
    /// failures of ours (and a missing page) are not the form's fault and pass through.
    pub fn from_refusal(error: PortalError) -> Result<Self, PortalError> {
        let api: &ApiError = error.api();
        if matches!(
            api.kind(),
            ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::NotFound | ErrorKind::Timeout
        ) {
            return Err(error);
        }
        let field = match api.blamed() {
            Some(ErrorSource::Pointer(pointer)) => pointer.trim_start_matches('/').to_owned(),
            Some(ErrorSource::Parameter(name)) => name.clone(),
            None => String::new(),
        };
        let mut errors = Self::default();
        let detail = crate::sensitive::redact_card_data(api.detail());
        errors.add(&crate::sensitive::redact_card_data(&field), detail);
        Ok(errors)
    }
}

/// Parses an account id from a path; anything else is simply not there.
pub fn account_id(text: &str) -> Result<crate::accounts::AccountId, PortalError> {
    crate::accounts::AccountId::parse(text).ok_or_else(PortalError::not_found)
}

/// An instant as shown on pages: `2026-01-05 14:03 UTC`.
pub fn when(ms: i64) -> String {
    crate::clock::from_epoch_ms(ms)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// The confirmation step of a form that asks for one (disable, revoke): without script the
/// first post lands here and a second post, with `confirmed`, does it; the script asks in a
/// dialog instead and posts `confirmed` at once.
#[derive(askama::Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    chrome: super::page::Chrome,
    question: String,
    action: String,
    button: String,
    cancel_href: String,
}

/// Whether a form was confirmed; when not, the page that asks.
pub fn confirmed(
    viewer: &super::auth::Viewer,
    form: &super::form::Form,
    section: super::page::Section,
    question: String,
    action: &str,
    cancel_href: &str,
) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    if form.checked("confirmed") {
        return None;
    }
    let page = ConfirmPage {
        chrome: super::page::Chrome::new(viewer, section, "Please confirm"),
        question,
        action: action.to_owned(),
        button: "Yes, go ahead".to_owned(),
        cancel_href: cancel_href.to_owned(),
    };
    Some(super::page::Html(page).into_response())
}
