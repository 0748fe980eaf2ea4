//! Pricing: the rates the account pays (its effective price list, as rating uses it), and
//! the rate for one destination. Only on pages that may show prices: a managed account's
//! pages (its own user's, or its manager's while acting) have no pricing page at all.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use crate::accounts::listing::PAGE_NUMBER_MAX;
use crate::clock::to_epoch_ms;
use crate::http::AppState;
use crate::money::Money;
use crate::portal::auth::Viewer;
use crate::portal::error::PortalError;
use crate::portal::form::Form;
use crate::portal::page::{Chrome, Html, Section};
use crate::pricing::{Increments, PricingSubject, Product};

/// Rates per page.
const RATES_PER_PAGE: u32 = 100;

/// Rates are shown exactly (nine decimal places), as the API writes them.
const RATE_DECIMALS: u32 = 9;

/// One rate as shown.
#[derive(Debug)]
pub struct RateView {
    product: &'static str,
    prefix: String,
    rate: String,
    unit: &'static str,
    increments: String,
}

#[derive(Template)]
#[template(path = "pricing.html")]
struct PricingPage {
    chrome: Chrome,
    has_list: bool,
    rates: Vec<RateView>,
    destination: String,
    destination_error: String,
    matches: Vec<RateView>,
    searched: bool,
    previous_href: String,
    next_href: String,
}

fn view(
    product: Product,
    prefix: &str,
    rate_nanos: i64,
    increments: Option<Increments>,
) -> RateView {
    RateView {
        product: product.as_str(),
        prefix: if prefix.is_empty() {
            "(any)".to_owned()
        } else {
            format!("+{prefix}")
        },
        rate: Money::from_nanos(rate_nanos).to_decimal_string(RATE_DECIMALS),
        unit: product.rate_unit(),
        increments: increments
            .map(|i| format!("{}/{} s", i.initial_s(), i.subsequent_s()))
            .unwrap_or_default(),
    }
}

/// `GET /pricing`.
pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, PortalError> {
    if !viewer.may_see_prices() {
        return Err(PortalError::not_found());
    }
    let query = Form::parse(raw.unwrap_or_default().as_bytes()).unwrap_or_default();
    let page = query
        .get("page")
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|p| (1..=PAGE_NUMBER_MAX).contains(p))
        .unwrap_or(1);
    let destination = query.text("destination").trim().to_owned();
    let now_ms = to_epoch_ms(state.clock.now());
    let index = state.pricing.current(&state.db, now_ms).await?;
    let subject = PricingSubject::from(&viewer.subject);
    let rates = state
        .pricing
        .rates(&state.db, &index, [(&subject, now_ms)])
        .await?;
    let list = rates.list_for(&subject, now_ms);
    let mut rates = Vec::new();
    let mut matches = Vec::new();
    let mut destination_error = String::new();
    let (mut previous_href, mut next_href) = (String::new(), String::new());
    if let Some(list) = list {
        let offset = u64::from(page - 1) * u64::from(RATES_PER_PAGE);
        let mut conn = state.db.read.acquire().await?;
        let header = crate::pricing::repo::find_list(&mut conn, &list.id).await?;
        let rows =
            crate::pricing::repo::list_rates(&mut conn, &list.id, RATES_PER_PAGE, offset).await?;
        drop(conn);
        rates = rows
            .iter()
            .map(|r| view(r.product, &r.prefix, r.rate_nanos, r.increments))
            .collect();
        let total = header.map_or(0, |h| crate::db::non_negative(h.rate_count));
        if page > 1 {
            previous_href = format!("/pricing?page={}", page - 1);
        }
        if offset + u64::from(RATES_PER_PAGE) < total {
            next_href = format!("/pricing?page={}", page + 1);
        }
        if !destination.is_empty() {
            match crate::usage::e164_digits(&destination) {
                Some(digits) => {
                    matches = Product::ALL
                        .iter()
                        .filter_map(|p| {
                            list.lookup(*p, digits)
                                .map(|e| view(*p, &e.prefix, e.rate_nanos, e.increments))
                        })
                        .collect();
                }
                None => {
                    destination_error =
                        "Write the destination as an E.164 number, such as +442079460000."
                            .to_owned();
                }
            }
        }
    }
    let template = PricingPage {
        chrome: Chrome::new(&viewer, Section::Pricing, "Pricing"),
        has_list: list.is_some(),
        rates,
        searched: !destination.is_empty() && destination_error.is_empty(),
        destination,
        destination_error,
        matches,
        previous_href,
        next_href,
    };
    Ok(Html(template).into_response())
}
