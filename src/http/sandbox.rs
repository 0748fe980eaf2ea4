//! The sandbox gateway's card entry, standing in for a processor's hosted fields: it takes
//! the card number, expiry and security code and answers a token, which is all the Steward
//! API ever takes. Nothing of the card is stored or logged, and no refusal repeats a value.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::body::{JsonBody, RequestBody, StrictValue};
use super::error::{ApiError, ErrorKind};
use super::extract::Caller;
use super::wire::Data;
use crate::payments::card::{CardNumber, Cvc, Expiry};
use crate::payments::gateway::CardEntry;

/// Card entry (sandbox test cards only; see the README for their behaviours).
#[derive(Debug, ToSchema)]
#[expect(dead_code, reason = "documents the body, which is read field by field")]
pub struct CardEntryRequest {
    /// The card number (digits; spaces and dashes between groups are fine).
    #[schema(example = "4242 4242 4242 4242")]
    number: String,
    /// Expiry month, 1–12.
    exp_month: u32,
    /// Expiry year, four digits.
    exp_year: u32,
    /// Security code, as a string (3 digits, 4 for American Express).
    #[schema(example = "123")]
    cvc: String,
}

/// A card token and what may be shown about its card.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardToken {
    /// Always `card_token`.
    pub record_type: &'static str,
    /// The token: give it to `POST /v2/payment_methods`.
    pub token: String,
    /// Card brand.
    pub brand: String,
    /// Last four digits.
    pub last4: String,
    /// Expiry month.
    pub exp_month: u32,
    /// Expiry year.
    pub exp_year: i32,
}

/// The card entry as sent: read field by field, so that no parse error can echo a card
/// number or security code; fields it does not take are refused by name.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct CardEntryBody(StrictValue);

impl RequestBody for CardEntryBody {}

/// The fields card entry takes.
const CARD_ENTRY_FIELDS: [&str; 4] = ["number", "exp_month", "exp_year", "cvc"];

fn refuse(pointer: &str, message: &str) -> ApiError {
    ApiError::new(ErrorKind::InvalidValue, message).pointer(pointer)
}

fn whole_number(body: &Value, field: &str) -> Result<i64, ApiError> {
    let pointer = format!("/{field}");
    match body.get(field) {
        None | Some(Value::Null) => {
            Err(ApiError::new(ErrorKind::Missing, format!("{field} is required")).pointer(pointer))
        }
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| refuse(&pointer, &format!("{field} must be a whole number"))),
        Some(Value::String(text)) => text
            .parse()
            .map_err(|_| refuse(&pointer, &format!("{field} must be a whole number"))),
        Some(_) => Err(refuse(&pointer, &format!("{field} must be a whole number"))),
    }
}

fn text<'a>(body: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    let pointer = format!("/{field}");
    match body.get(field) {
        None | Some(Value::Null) => {
            Err(ApiError::new(ErrorKind::Missing, format!("{field} is required")).pointer(pointer))
        }
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(refuse(&pointer, &format!("{field} must be a string"))),
    }
}

/// Turns sandbox card entry into a token.
#[utoipa::path(post, path = "/sandbox/v1/tokens", tag = "Sandbox gateway",
    request_body = CardEntryRequest,
    responses((status = 200, body = Data<CardToken>),
        (status = 503, description = "the gateway did not answer; nothing changed", body = super::error::ErrorEnvelope)),
    security(("account_key" = [])))]
pub async fn tokenize(
    State(state): State<AppState>,
    _caller: Caller,
    JsonBody(CardEntryBody(StrictValue(body))): JsonBody<CardEntryBody>,
) -> Result<Json<Data<CardToken>>, ApiError> {
    if let Some(unknown) = body.as_object().and_then(|fields| {
        fields
            .keys()
            .find(|k| !CARD_ENTRY_FIELDS.contains(&k.as_str()))
    }) {
        return Err(refuse(
            &format!("/{unknown}"),
            &format!(
                "The field '{unknown}' is not taken here; card entry takes {}.",
                CARD_ENTRY_FIELDS.join(", ")
            ),
        ));
    }
    let number = CardNumber::parse(text(&body, "number")?).map_err(|why| refuse("/number", why))?;
    let today = state.clock.now().date_naive();
    let expiry = Expiry::parse(
        whole_number(&body, "exp_month")?,
        whole_number(&body, "exp_year")?,
        today,
    )
    .map_err(|why| {
        let field = if why.starts_with("exp_month") {
            "/exp_month"
        } else {
            "/exp_year"
        };
        refuse(field, why)
    })?;
    let cvc = Cvc::parse(text(&body, "cvc")?, number.brand()).map_err(|why| refuse("/cvc", why))?;
    let tokenized = state
        .payments
        .tokenize(CardEntry {
            number,
            expiry,
            cvc,
        })
        .await?;
    Ok(Json(Data {
        data: CardToken {
            record_type: "card_token",
            token: tokenized.token,
            brand: tokenized.card.brand,
            last4: tokenized.card.last4,
            exp_month: tokenized.card.exp_month,
            exp_year: tokenized.card.exp_year,
        },
    }))
}
