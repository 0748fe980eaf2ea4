//! Security headers on every response.
//!
//! Every response of the API carries keys, balances or account data, or is an error about
//! them, so the defaults are the strictest: no MIME sniffing, no caching anywhere, no
//! framing, no referrer, and a content security policy that allows nothing (JSON needs
//! nothing). Each header is set only when the response does not carry it already: a part
//! of the server that serves HTML (the portal) sets its own `Content-Security-Policy` or
//! `Cache-Control` on its responses, and this layer leaves them alone.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// The defaults, in the order they are written.
pub const DEFAULTS: [(HeaderName, HeaderValue); 4] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
];

/// Adds each default header to responses of `router` that do not set it themselves.
pub fn layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    DEFAULTS.into_iter().fold(router, |router, (name, value)| {
        router.layer(SetResponseHeaderLayer::if_not_present(name, value))
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::response::IntoResponse;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_page_that_sets_its_own_policy_keeps_it() {
        let page = || async {
            (
                [(header::CONTENT_SECURITY_POLICY, "default-src 'self'")],
                "<p>portal</p>",
            )
                .into_response()
        };
        let router = layer(Router::new().route("/", axum::routing::get(page)));

        let response = router
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap_or_else(|never| match never {});

        let headers = response.headers();
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            "default-src 'self'"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    }
}
