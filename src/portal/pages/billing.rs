//! Billing: the account's balance, its cards (payment methods), top-ups, auto-recharge and
//! the top-ups made, over the payments service the API uses. A rollup-billing account has
//! none of these: its manager pays.
//!
//! Card entry goes to the gateway's tokenizer (the sandbox's stand-in for a processor's
//! hosted fields) and only the token is saved; the number and code are never shown back,
//! stored or logged. Each top-up form carries a fresh idempotency key, so a form posted
//! twice (a double click, a reload) charges once. Invoices are listed with their stored PDF
//! (which, for a managed account, carries no rate), each downloadable by its own account
//! only.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::dashboard::dollars;
use super::{FieldErrors, confirmed, when};
use crate::accounts::listing::PageRequest;
use crate::billing::{self, CURRENCY, IdempotencyKey};
use crate::http::AppState;
use crate::invoices;
use crate::money::{Money, MoneyParseError};
use crate::payments::attempts::AttemptStatus;
use crate::payments::auto_recharge::PrefUpdate;
use crate::payments::card::{CardNumber, Cvc, Expiry};
use crate::payments::gateway::{CardEntry, DeclineCode};
use crate::payments::{PaymentError, TopUpRequest};
use crate::portal::auth::Viewer;
use crate::portal::cookies::Flash;
use crate::portal::error::PortalError;
use crate::portal::form::Form;
use crate::portal::page::{Chrome, Html, Section, see_other};
use crate::portal::sessions::SessionToken;

/// Top-ups listed.
const TOP_UPS_LISTED: u32 = 20;

/// Invoices listed (two years of monthly invoices).
const INVOICES_LISTED: u32 = 24;

/// An invoice as listed.
#[derive(Debug)]
pub struct InvoiceRow {
    id: String,
    number: String,
    period: String,
    closing: String,
    due: String,
}

/// A card as listed.
#[derive(Debug)]
pub struct CardRow {
    id: String,
    label: String,
    expiry: String,
    is_default: bool,
}

/// A top-up as listed.
#[derive(Debug)]
pub struct TopUpRow {
    when: String,
    amount: String,
    card: String,
    status: &'static str,
    note: String,
}

/// The payment sections (absent for a rollup-billing account).
#[derive(Debug)]
pub struct PaymentsView {
    cards: Vec<CardRow>,
    top_ups: Vec<TopUpRow>,
    auto_enabled: bool,
    auto_threshold: String,
    auto_recharge: String,
    idempotency_key: String,
    sandbox: bool,
}

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
    payments: Option<PaymentsView>,
    invoices: Vec<InvoiceRow>,
    errors: FieldErrors,
    amount: String,
}

/// What the forms held when the page is shown again.
#[derive(Default)]
struct Typed {
    amount: String,
    threshold: Option<String>,
    recharge: Option<String>,
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    typed: Typed,
    errors: FieldErrors,
) -> Result<Response, PortalError> {
    let subject = &viewer.subject;
    let figures = billing::balance_of(&state.db, subject).await?;
    let payments = if subject.rollup_billing {
        None
    } else {
        let service = &state.payments;
        let methods = service.list_methods(subject).await.map_err(api)?;
        let page = PageRequest::new(1, TOP_UPS_LISTED, TOP_UPS_LISTED).unwrap_or_default();
        let attempts = service.list_top_ups(subject, page).await.map_err(api)?;
        let pref = service.auto_recharge_pref(subject).await.map_err(api)?;
        Some(PaymentsView {
            cards: methods
                .iter()
                .map(|m| CardRow {
                    id: m.id.clone(),
                    label: format!("{} ending {}", m.brand, m.last4),
                    expiry: format!("{:02}/{}", m.exp_month, m.exp_year),
                    is_default: m.is_default,
                })
                .collect(),
            top_ups: attempts
                .items
                .iter()
                .map(|a| TopUpRow {
                    when: when(a.created_at_ms),
                    amount: dollars(a.amount),
                    card: format!("{} ending {}", a.card_brand, a.card_last4),
                    status: a.status.as_str(),
                    note: if a.auto_recharge {
                        "auto-recharge".to_owned()
                    } else {
                        String::new()
                    },
                })
                .collect(),
            auto_enabled: pref.enabled,
            auto_threshold: typed
                .threshold
                .unwrap_or_else(|| pref.threshold.to_decimal_string(2)),
            auto_recharge: typed
                .recharge
                .unwrap_or_else(|| pref.recharge.to_decimal_string(2)),
            // A key per form shown: posting this form twice charges once.
            idempotency_key: format!("portal-{}", SessionToken::generate().expose()),
            sandbox: service.gateway().name() == "sandbox",
        })
    };
    let invoices = if subject.rollup_billing {
        Vec::new()
    } else {
        let page = PageRequest::new(1, INVOICES_LISTED, INVOICES_LISTED).unwrap_or_default();
        let mut conn = state.db.read.acquire().await?;
        let (found, _) = invoices::repo::list(&mut conn, subject.id, true, page)
            .await
            .map_err(anyhow::Error::new)?;
        found
            .iter()
            .map(|invoice| {
                let statement = &invoice.statement;
                InvoiceRow {
                    id: invoice.id.clone(),
                    number: invoices::invoice_number_text(invoice.number),
                    period: format!(
                        "{} to {}",
                        statement.period.first_day(),
                        statement.period.last_day()
                    ),
                    closing: dollars(statement.totals.closing()),
                    due: dollars(invoice.amount_due()),
                }
            })
            .collect()
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = BillingPage {
        chrome: Chrome::new(viewer, Section::Billing, "Billing"),
        rollup: subject.rollup_billing,
        balance: dollars(figures.balance),
        credit_limit: dollars(figures.credit_limit),
        available_credit: dollars(figures.available_credit()),
        pending: dollars(figures.pending),
        currency: CURRENCY,
        payments,
        invoices,
        errors,
        amount: typed.amount,
    };
    Ok(Html(page).with_status(status))
}

fn api(error: PaymentError) -> PortalError {
    crate::http::error::ApiError::from(error).into()
}

/// `GET /billing`.
pub async fn show(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PortalError> {
    render(&state, &viewer, Typed::default(), FieldErrors::default()).await
}

/// A refusal shown on the page (with the API's message), or a failure of ours.
async fn refused(
    state: &AppState,
    viewer: &Viewer,
    typed: Typed,
    error: PaymentError,
) -> Result<Response, PortalError> {
    let errors = FieldErrors::from_refusal(api(error))?;
    render(state, viewer, typed, errors).await
}

/// `POST /billing/cards`: card entry, tokenized by the gateway, saved as a payment method.
pub async fn add_card(
    State(state): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> Result<Response, PortalError> {
    let mut errors = FieldErrors::default();
    let number = CardNumber::parse(form.text("number"))
        .map_err(|why| errors.add("number", why))
        .ok();
    let whole = |name: &str| form.text(name).trim().parse::<i64>().unwrap_or(0);
    let today = state.clock.now().date_naive();
    let expiry = Expiry::parse(whole("exp_month"), whole("exp_year"), today)
        .map_err(|why| {
            let field = if why.starts_with("exp_month") {
                "exp_month"
            } else {
                "exp_year"
            };
            errors.add(field, why);
        })
        .ok();
    let cvc = number.as_ref().and_then(|n| {
        Cvc::parse(form.text("cvc"), n.brand())
            .map_err(|why| errors.add("cvc", why))
            .ok()
    });
    let (Some(number), Some(expiry), Some(cvc)) = (number, expiry, cvc) else {
        return render(&state, &viewer, Typed::default(), errors).await;
    };
    let entry = CardEntry {
        number,
        expiry,
        cvc,
    };
    let actor = viewer.actor();
    let saved = match state.payments.tokenize(entry).await {
        Ok(tokenized) => {
            state
                .payments
                .add_method(
                    viewer.subject.id,
                    &tokenized.token,
                    form.checked("make_default"),
                    &actor,
                )
                .await
        }
        Err(error) => Err(error),
    };
    match saved {
        Ok(method) => Ok(see_other(
            "/billing",
            Some(Flash::success(format!(
                "The {} card ending {} is saved.",
                method.brand, method.last4
            ))),
        )),
        Err(error) => refused(&state, &viewer, Typed::default(), error).await,
    }
}

/// `POST /billing/cards/{id}/default`.
pub async fn default_card(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PortalError> {
    let actor = viewer.actor();
    let method = state
        .payments
        .set_default_method(viewer.subject.id, &id, &actor)
        .await
        .map_err(api)?;
    Ok(see_other(
        "/billing",
        Some(Flash::success(format!(
            "The card ending {} is the default now.",
            method.last4
        ))),
    ))
}

/// `POST /billing/cards/{id}/remove`.
pub async fn remove_card(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Form,
) -> Result<Response, PortalError> {
    let action = format!("/billing/cards/{id}/remove");
    let question = "Remove this card? It can no longer be charged, by top-ups or auto-recharge.";
    if let Some(ask) = confirmed(
        &viewer,
        &form,
        Section::Billing,
        question.to_owned(),
        &action,
        "/billing",
    ) {
        return Ok(ask);
    }
    let actor = viewer.actor();
    let method = state
        .payments
        .delete_method(viewer.subject.id, &id, &actor)
        .await
        .map_err(api)?;
    Ok(see_other(
        "/billing",
        Some(Flash::success(format!(
            "The card ending {} is removed.",
            method.last4
        ))),
    ))
}

/// Dollars and cents as the API takes them (`120.00`); a whole number of dollars is read as
/// such.
fn amount(text: &str, field: &'static str) -> Result<Money, PaymentError> {
    let text = text.trim();
    let text = if text.contains('.') {
        text.to_owned()
    } else {
        format!("{text}.00")
    };
    crate::payments::amount::dollars_and_cents(&text).map_err(|error| match error {
        MoneyParseError::OutOfRange => PaymentError::Invalid {
            field,
            message: format!("{field} is larger than any amount Steward takes"),
        },
        _ => PaymentError::AmountFormat { field },
    })
}

/// `POST /billing/top-up`.
pub async fn top_up(
    State(state): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> Result<Response, PortalError> {
    let typed = Typed {
        amount: form.text("amount").to_owned(),
        ..Typed::default()
    };
    let money = match amount(form.text("amount"), "amount") {
        Ok(money) => money,
        Err(error) => return refused(&state, &viewer, typed, error).await,
    };
    let request = TopUpRequest {
        account: viewer.subject.id,
        amount: money,
        payment_method_id: form.non_blank("payment_method_id").map(str::to_owned),
        idempotency_key: IdempotencyKey::parse(form.text("idempotency_key")),
        actor: viewer.actor(),
    };
    let done = match state.payments.top_up(request).await {
        Ok(done) => done,
        Err(error) => return refused(&state, &viewer, typed, error).await,
    };
    let attempt = &done.attempt;
    let flash = match attempt.status {
        AttemptStatus::Succeeded => Flash::success(format!(
            "{} was charged to the card ending {} and added to the balance.",
            dollars(attempt.amount),
            attempt.card_last4
        )),
        AttemptStatus::Pending => Flash::success(
            "The card processor has not answered yet. The top-up shows below once it has; \
             nothing is charged twice.",
        ),
        AttemptStatus::Declined => Flash::error(
            DeclineCode::parse(attempt.decline_code.as_deref().unwrap_or_default()).explain(),
        ),
        AttemptStatus::Failed => Flash::error(
            "The card processor could not process the payment and nothing was charged. Try again later.",
        ),
    };
    Ok(see_other("/billing", Some(flash)))
}

/// `POST /billing/auto-recharge`.
pub async fn auto_recharge(
    State(state): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> Result<Response, PortalError> {
    let typed = Typed {
        threshold: Some(form.text("threshold_amount").to_owned()),
        recharge: Some(form.text("recharge_amount").to_owned()),
        ..Typed::default()
    };
    let parsed = amount(form.text("threshold_amount"), "threshold_amount")
        .and_then(|t| amount(form.text("recharge_amount"), "recharge_amount").map(|r| (t, r)));
    let (threshold, recharge) = match parsed {
        Ok(both) => both,
        Err(error) => return refused(&state, &viewer, typed, error).await,
    };
    let update = PrefUpdate {
        enabled: Some(form.checked("enabled")),
        threshold: Some(threshold),
        recharge: Some(recharge),
        ..PrefUpdate::default()
    };
    let actor = viewer.actor();
    match state
        .payments
        .update_auto_recharge_pref(viewer.subject.id, update, &actor)
        .await
    {
        Ok(pref) => Ok(see_other(
            "/billing",
            Some(Flash::success(if pref.enabled {
                format!(
                    "Auto-recharge is on: at or below {}, the default card is charged back up to it plus {}.",
                    dollars(pref.threshold),
                    dollars(pref.recharge)
                )
            } else {
                "Auto-recharge is off.".to_owned()
            })),
        )),
        Err(error) => refused(&state, &viewer, typed, error).await,
    }
}

/// `GET /billing/invoices/{id}/pdf`: the stored document, for its own account only (any
/// other invoice, or none, is a missing page).
pub async fn invoice_pdf(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PortalError> {
    let found = {
        let mut conn = state.db.read.acquire().await?;
        invoices::repo::pdf(&mut conn, &id)
            .await
            .map_err(anyhow::Error::new)?
    };
    let Some((_, number, bytes)) = found.filter(|(account, _, _)| *account == viewer.subject.id)
    else {
        return Err(PortalError::not_found());
    };
    let filename = format!("{}.pdf", invoices::invoice_number_text(number));
    Ok(crate::http::download::attachment(
        bytes,
        "application/pdf",
        &filename,
    ))
}
