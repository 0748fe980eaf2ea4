//! The portal's static files, compiled into the binary (no CDN, nothing to deploy beside
//! it). Pages link them with a digest of their content in the query, so a browser may keep
//! a copy for a year and still never runs an old script against new pages.

use std::sync::LazyLock;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::PortalError;

/// The stylesheet.
const CSS: &str = include_str!("assets/portal.css");

/// The script: progressive enhancement only; every form works without it.
const JS: &str = include_str!("assets/portal.js");

/// The icon.
const ICON: &str = include_str!("assets/icon.svg");

/// Hex digits of the content digest in an asset's address.
const VERSION_DIGITS: usize = 12;

fn version(content: &str) -> String {
    let digest = super::sessions::hex(&Sha256::digest(content.as_bytes()));
    digest.chars().take(VERSION_DIGITS).collect()
}

static CSS_HREF: LazyLock<String> =
    LazyLock::new(|| format!("/assets/portal.css?v={}", version(CSS)));
static JS_HREF: LazyLock<String> = LazyLock::new(|| format!("/assets/portal.js?v={}", version(JS)));

/// The stylesheet's address.
pub fn css_href() -> &'static str {
    CSS_HREF.as_str()
}

/// The script's address.
pub fn js_href() -> &'static str {
    JS_HREF.as_str()
}

/// `GET /assets/{name}`.
pub async fn serve(Path(name): Path<String>, RawQuery(query): RawQuery) -> Response {
    let (content, media_type) = match name.as_str() {
        "portal.css" => (CSS, "text/css; charset=utf-8"),
        "portal.js" => (JS, "text/javascript; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => return PortalError::not_found().into_response(),
    };
    // Only the address of this very content may be cached for good.
    let current = query.as_deref() == Some(format!("v={}", version(content)).as_str());
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = content.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
