//! Billing: the account's balance, credit limit and available credit.
//!
//! Payment methods, top-ups, auto-recharge and invoices join this page as their APIs land:
//! each becomes a section of [`BillingPage`] filled from its own domain function, shown
//! only for accounts with a balance of their own (never a rollup-billing account, whose
//! spend its manager pays).

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::dashboard::dollars;
use crate::billing::{self, CURRENCY};
use crate::http::AppState;
use crate::portal::auth::Viewer;
use crate::portal::error::PortalError;
use crate::portal::page::{Chrome, Html, Section};

#[derive(Template)]
#[template(path = "billing.html")]
struct BillingPage {
    chrome: Chrome,
    rollup: bool,
    balance: String,
    credit_limit: String,
    available_credit: String,
    pending: String,
    currency: &'static str,
}

/// `GET /billing`.
pub async fn show(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PortalError> {
    let figures = billing::balance_of(&state.db, &viewer.subject).await?;
    let page = BillingPage {
        chrome: Chrome::new(&viewer, Section::Billing, "Billing"),
        rollup: viewer.subject.rollup_billing,
        balance: dollars(figures.balance),
        credit_limit: dollars(figures.credit_limit),
        available_credit: dollars(figures.available_credit()),
        pending: dollars(figures.pending),
        currency: CURRENCY,
    };
    Ok(Html(page).into_response())
}
