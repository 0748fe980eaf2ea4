//! Pages: rendering templates into responses, the frame every signed-in page shares (its
//! navigation, the "acting as" banner, the one-time message), redirects after a post, and
//! the security headers of HTML.

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::assets;
use super::auth::Viewer;
use super::cookies::{self, Flash};
use crate::accounts::AccountKind;

/// The portal's content security policy: scripts, styles and images only from the portal
/// itself (no inline script or style at all), forms only to itself, no framing, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// How long browsers keep to HTTPS once the portal was reached over it (a year).
pub const HSTS: &str = "max-age=31536000";

/// A rendered template as an HTML response.
#[derive(Debug)]
pub struct Html<T>(pub T);

impl<T: Template> Html<T> {
    /// The page with another status than 200 (a form shown again with its errors is 422).
    pub fn with_status(self, status: StatusCode) -> Response {
        match self.0.render() {
            Ok(body) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                body,
            )
                .into_response(),
            Err(error) => {
                tracing::error!(%error, "Failed to render a page: {error}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The page could not be shown.",
                )
                    .into_response()
            }
        }
    }
}

impl<T: Template> IntoResponse for Html<T> {
    fn into_response(self) -> Response {
        self.with_status(StatusCode::OK)
    }
}

/// 303 to `location` (Post/Redirect/Get), with a message for the next page.
pub fn see_other(location: &str, flash: Option<Flash>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Some(flash) = flash {
        cookies::add(
            response.headers_mut(),
            cookies::FLASH,
            &flash.encode(),
            None,
        );
    }
    response
}

/// Longest `next` location kept.
const NEXT_LENGTH_MAX: usize = 2048;

/// `next` if it is a path of this site: it must start with one `/` and hold no backslash,
/// control or space character, so that no browser can read it as another host
/// (`//evil.example`, `/\evil.example`, `https://…`). Anything else is dropped.
pub fn safe_next(next: &str) -> Option<&str> {
    let mut bytes = next.bytes();
    let local = bytes.next() == Some(b'/')
        && !matches!(bytes.next(), Some(b'/' | b'\\'))
        && next.len() <= NEXT_LENGTH_MAX
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    local.then_some(next)
}

/// The frame of pages shown before signing in (sign-in, errors).
#[derive(Debug, Clone)]
pub struct Bare {
    /// The page title.
    pub title: String,
    /// The stylesheet's address.
    pub css: &'static str,
    /// The script's address.
    pub js: &'static str,
}

impl Bare {
    /// A frame titled `title`.
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_owned(),
            css: assets::css_href(),
            js: assets::js_href(),
        }
    }
}

/// The sections of the portal, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `/dashboard`.
    Dashboard,
    /// `/managed-accounts` (managers in their own account).
    ManagedAccounts,
    /// `/usage`.
    Usage,
    /// `/billing`.
    Billing,
    /// `/api-keys`.
    ApiKeys,
    /// `/settings`.
    Settings,
    /// `/audit-log`.
    AuditLog,
    /// `/pricing` (accounts that may see prices).
    Pricing,
}

/// One navigation link.
#[derive(Debug, Clone)]
pub struct NavItem {
    /// Where it goes.
    pub href: &'static str,
    /// What it says.
    pub label: &'static str,
    /// Whether it is the page shown.
    pub current: bool,
}

/// The banner shown on every page while a manager acts as a managed account.
#[derive(Debug, Clone)]
pub struct ActingBanner {
    /// The managed account's organization name.
    pub name: String,
    /// Its email.
    pub email: String,
}

/// The frame of every signed-in page.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The page title.
    pub title: String,
    /// Navigation links.
    pub nav: Vec<NavItem>,
    /// Present while acting as a managed account.
    pub acting: Option<ActingBanner>,
    /// The form token of this session (a hidden field of every form).
    pub csrf: String,
    /// The account whose pages these are (a hidden field of every form, so that a form
    /// from a page of one account is never applied to another).
    pub subject_id: String,
    /// Who is signed in, for the header.
    pub user_label: String,
    /// A one-time message.
    pub flash: Option<Flash>,
    /// The stylesheet's address.
    pub css: &'static str,
    /// The script's address.
    pub js: &'static str,
}

impl Chrome {
    /// The frame of a page of `section` for `viewer`.
    pub fn new(viewer: &Viewer, section: Section, title: &str) -> Self {
        let sections = [
            (Section::Dashboard, "/dashboard", "Dashboard"),
            (
                Section::ManagedAccounts,
                "/managed-accounts",
                "Managed accounts",
            ),
            (Section::Usage, "/usage", "Usage"),
            (Section::Billing, "/billing", "Billing"),
            (Section::ApiKeys, "/api-keys", "API keys"),
            (Section::Settings, "/settings", "Settings"),
            (Section::AuditLog, "/audit-log", "Audit log"),
            (Section::Pricing, "/pricing", "Pricing"),
        ];
        let nav = sections
            .into_iter()
            .filter(|(s, _, _)| match s {
                Section::ManagedAccounts => viewer.manages(),
                Section::Pricing => viewer.may_see_prices(),
                _ => true,
            })
            .map(|(s, href, label)| NavItem {
                href,
                label,
                current: s == section,
            })
            .collect();
        let acting = viewer.is_acting().then(|| ActingBanner {
            name: viewer.subject.organization_name.clone(),
            email: viewer.subject.email.clone(),
        });
        let kind = match viewer.user.kind {
            AccountKind::Manager => "manager",
            AccountKind::Managed => "managed account",
            AccountKind::Standard => "account",
        };
        Self {
            title: title.to_owned(),
            nav,
            acting,
            csrf: viewer.csrf.clone(),
            subject_id: viewer.subject.id.to_string(),
            user_label: format!("{} ({kind})", viewer.user.email),
            flash: viewer.flash.clone(),
            css: assets::css_href(),
            js: assets::js_href(),
        }
    }
}

/// Sets the security headers of the portal's responses: its own content security policy,
/// no framing, a same-origin referrer, and HSTS when the request came over TLS (as the
/// TLS-terminating proxy in front says with `X-Forwarded-Proto: https`). The outer layer
/// adds the rest of the defaults (`nosniff`, `no-store`) where a response set none.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let over_tls = request
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if over_tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    const CROSS_ORIGIN_OPENER: HeaderName = HeaderName::from_static("cross-origin-opener-policy");
    headers.insert(CROSS_ORIGIN_OPENER, HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        for good in [
            "/dashboard",
            "/usage?product=messaging&date_range=today",
            "/",
        ] {
            assert_eq!(safe_next(good), Some(good));
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil.example",
            "/ok\\..",
            "/a b",
            "/\u{7f}x",
            "",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }
}
