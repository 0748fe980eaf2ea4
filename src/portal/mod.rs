//! The portal: managers and their customers in a browser, served by `steward serve` under
//! `/` beside the API.
//!
//! Server-rendered HTML over the same domain functions as the API (no rule is written
//! twice): pages call `accounts`, `billing`, `reports`, `audit` and `pricing` exactly as the
//! API handlers do, and show the API's own messages when those refuse. Templates escape by
//! default; every form posts and redirects (Post/Redirect/Get) and works without
//! JavaScript; authentication and form tokens are layers ([`auth`]), so a handler runs only
//! for a live session and a genuine form. Sessions and the sign-in backoff live in the
//! database ([`sessions`], [`throttle`]), so they hold across restarts and servers.
//!
//! While a manager acts as a managed account ("log in as"), every page is that account's
//! page, seen as the account itself would see it — prices included, which is to say none —
//! and every change is recorded as made by the manager.

mod assets;
pub mod auth;
mod chart;
mod cookies;
pub mod error;
mod form;
pub mod page;
mod pages;
pub mod sessions;
pub mod throttle;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::http::AppState;

/// The portal's routes, layered: the sign-in page and assets are public; every other page
/// needs a session.
pub fn router(state: AppState) -> Router<AppState> {
    let public = Router::new()
        .route(
            "/sign-in",
            get(pages::sign_in::show).post(pages::sign_in::submit),
        )
        .route("/assets/{name}", get(assets::serve))
        .layer(middleware::from_fn(auth::sign_in_forms));
    let signed_in = Router::new()
        .route("/", get(pages::dashboard::home))
        .route("/sign-out", post(pages::sign_in::sign_out))
        .route("/dashboard", get(pages::dashboard::show))
        .route(
            "/managed-accounts",
            get(pages::managed_accounts::list).post(pages::managed_accounts::create),
        )
        .route("/managed-accounts/new", get(pages::managed_accounts::new))
        .route("/managed-accounts/{id}", get(pages::managed_accounts::show))
        .route(
            "/managed-accounts/{id}/disable",
            post(pages::managed_accounts::disable),
        )
        .route(
            "/managed-accounts/{id}/enable",
            post(pages::managed_accounts::enable),
        )
        .route(
            "/managed-accounts/{id}/channel-limit",
            post(pages::managed_accounts::channel_limit),
        )
        .route(
            "/managed-accounts/{id}/custom-pricing",
            post(pages::managed_accounts::custom_pricing),
        )
        .route("/managed-accounts/{id}/act", post(pages::acting::start))
        .route("/acting/stop", post(pages::acting::stop))
        .route("/usage", get(pages::usage::show))
        .route("/usage.csv", get(pages::usage::csv))
        .route("/billing", get(pages::billing::show))
        .route("/billing/cards", post(pages::billing::add_card))
        .route(
            "/billing/cards/{id}/default",
            post(pages::billing::default_card),
        )
        .route(
            "/billing/cards/{id}/remove",
            post(pages::billing::remove_card),
        )
        .route("/billing/top-up", post(pages::billing::top_up))
        .route(
            "/billing/invoices/{id}/pdf",
            get(pages::billing::invoice_pdf),
        )
        .route(
            "/billing/auto-recharge",
            post(pages::billing::auto_recharge),
        )
        .route(
            "/api-keys",
            get(pages::api_keys::list).post(pages::api_keys::mint),
        )
        .route("/api-keys/{id}/revoke", post(pages::api_keys::revoke))
        .route("/settings", get(pages::settings::show))
        .route("/settings/profile", post(pages::settings::profile))
        .route("/settings/password", post(pages::settings::password))
        .route(
            "/settings/channel-limit",
            post(pages::settings::channel_limit),
        )
        .route("/audit-log", get(pages::audit_log::show))
        .route("/pricing", get(pages::pricing::show))
        .layer(middleware::from_fn_with_state(state, auth::require_session));
    public
        .merge(signed_in)
        .layer(middleware::from_fn(page::security_headers))
}

/// The answer to a browser asking for a page that does not exist (the API's unknown routes
/// answer in JSON).
pub fn not_found_page() -> axum::response::Response {
    use axum::response::IntoResponse;
    error::PortalError::not_found().into_response()
}
