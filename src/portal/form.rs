//! Form bodies (`application/x-www-form-urlencoded`): read once by the session layer, which
//! checks their form token, then handed to the handler.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::PortalError;

/// Largest form body read: the biggest portal form (three passwords of at most 256
/// characters and an email) is far below it.
pub const FORM_BYTES_MAX: usize = 16 * 1024;

/// The fields of a posted form, in order.
#[derive(Debug, Clone, Default)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// Parses a body; a NUL character anywhere (no field needs one, PostgreSQL cannot store
    /// one) or a body that is not UTF-8 is refused.
    pub fn parse(body: &[u8]) -> Option<Self> {
        std::str::from_utf8(body).ok()?;
        let fields: Vec<(String, String)> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let clean = fields
            .iter()
            .all(|(k, v)| !k.contains('\0') && !v.contains('\0'));
        clean.then_some(Self { fields })
    }

    /// The fields that hold something, in order (blank ones are as good as absent).
    pub fn filled(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .cloned()
            .collect()
    }

    /// The value of `name` (the last one if repeated), or `""`.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or_default()
    }

    /// The value of `name`, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (checkboxes of one group), comma-separated values split.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The value of `name` trimmed, or `None` when absent or blank.
    pub fn non_blank(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Whether a checkbox `name` was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v == "on" || v == "true" || v == "1")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Form {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Form>().cloned().ok_or_else(|| {
            PortalError::internal(anyhow::anyhow!("a form was read outside the session layer"))
        })
    }
}
