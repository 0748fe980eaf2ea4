//! The payment gateway boundary: what Steward needs from a card processor.
//!
//! A production adapter implements [`PaymentGateway`] against its processor's API and must
//! keep these promises, on which exactly-once posting rests:
//! - `charge` is idempotent by `idempotency_key`: a repeated call with the same key never
//!   charges twice and answers the first outcome;
//! - `lookup` answers the outcome of the charge made with a key, or `None` if the processor
//!   never received it;
//! - a charge the processor has not received within the adapter's timeout is never executed
//!   later (the adapter sends the key with a processor-side expiry, or cancels it), so that a
//!   `None` from `lookup` after [`super::PaymentsConfig::pending_grace_ms`] means "not charged";
//! - `Declined` and `Failed` are definitive: nothing was charged; every answer that is not
//!   definitive (a timeout, a dropped connection, a 5xx) is an `Err`, and the attempt stays
//!   pending until `lookup` settles it.
//!
//! Card entry never passes through Steward in production: the processor's hosted fields
//! tokenize in the customer's browser. [`PaymentGateway::tokenize`] exists for the sandbox's
//! stand-in of hosted fields; an adapter for a processor with hosted fields refuses it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::money::Money;

/// A boxed future of a gateway answer (the trait is used as `dyn`).
pub type GatewayFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, GatewayError>> + Send + 'a>>;

/// What a card processor does.
pub trait PaymentGateway: Send + Sync + fmt::Debug {
    /// The gateway's stored name (`sandbox`), recorded with every token and attempt.
    fn name(&self) -> &'static str;

    /// Turns card entry into a reusable token (hosted fields). Steward never stores `card`.
    fn tokenize(&self, card: CardEntry) -> GatewayFuture<'_, TokenizedCard>;

    /// What the processor knows of a token: `None` if it issued no such token.
    fn card(&self, token: &str) -> GatewayFuture<'_, Option<CardDetails>>;

    /// Charges a token, idempotently by `request.idempotency_key`.
    fn charge(&self, request: ChargeRequest) -> GatewayFuture<'_, ChargeOutcome>;

    /// The outcome of the charge made with `idempotency_key`, or `None` if there was none.
    fn lookup(&self, idempotency_key: &str) -> GatewayFuture<'_, Option<ChargeOutcome>>;

    /// Refunds (part of) a successful charge, idempotently by `request.idempotency_key`.
    fn refund(&self, request: RefundRequest) -> GatewayFuture<'_, RefundOutcome>;
}

/// Card entry as typed by the customer. Its `Debug` shows nothing of the number or CVC.
pub struct CardEntry {
    /// The card number, digits only, Luhn-checked.
    pub number: super::card::CardNumber,
    /// Expiry month and year.
    pub expiry: super::card::Expiry,
    /// The security code.
    pub cvc: super::card::Cvc,
}

impl fmt::Debug for CardEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardEntry")
            .field("number", &self.number)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// What may be shown and stored about a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardDetails {
    /// `visa`, `mastercard`, `amex`, `discover` or `unknown`.
    pub brand: String,
    /// The last four digits.
    pub last4: String,
    /// Expiry month (1–12).
    pub exp_month: u32,
    /// Expiry year (four digits).
    pub exp_year: i32,
    /// A keyed digest of the number: the same card has the same fingerprint on every account.
    pub fingerprint: String,
}

/// A token and what it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedCard {
    /// The reusable token.
    pub token: String,
    /// What may be shown about the card.
    pub card: CardDetails,
}

/// A charge to make.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// The processor-side idempotency key (Steward's attempt id).
    pub idempotency_key: String,
    /// The card token.
    pub token: String,
    /// How much, positive.
    pub amount: Money,
}

/// A definitive answer to a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The card was charged.
    Succeeded {
        /// The processor's id of the charge.
        charge_id: String,
    },
    /// The issuer declined; nothing was charged.
    Declined {
        /// Why.
        code: DeclineCode,
    },
    /// The processor could not process it and guarantees nothing was charged.
    Failed,
}

/// Why a card was declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineCode {
    /// Not enough money or credit on the card.
    InsufficientFunds,
    /// Reported lost or stolen (never said so to the customer).
    StolenCard,
    /// The card has expired.
    ExpiredCard,
    /// The security code did not match.
    IncorrectCvc,
    /// Any other refusal by the issuer.
    Generic,
}

impl DeclineCode {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientFunds => "insufficient_funds",
            Self::StolenCard => "stolen_card",
            Self::ExpiredCard => "expired_card",
            Self::IncorrectCvc => "incorrect_cvc",
            Self::Generic => "card_declined",
        }
    }

    /// The inverse of [`DeclineCode::as_str`]; unknown spellings are generic declines.
    pub fn parse(text: &str) -> Self {
        match text {
            "insufficient_funds" => Self::InsufficientFunds,
            "stolen_card" => Self::StolenCard,
            "expired_card" => Self::ExpiredCard,
            "incorrect_cvc" => Self::IncorrectCvc,
            _ => Self::Generic,
        }
    }

    /// The code shown to the customer: a lost or stolen card is a generic decline, so that
    /// whoever holds it learns nothing from the answer.
    pub fn public_code(self) -> &'static str {
        match self {
            Self::StolenCard => Self::Generic.as_str(),
            other => other.as_str(),
        }
    }

    /// The reason in words a customer understands.
    pub fn explain(self) -> &'static str {
        match self {
            Self::InsufficientFunds => {
                "The card was declined: it has insufficient funds. Use another card or a smaller amount."
            }
            Self::ExpiredCard => {
                "The card was declined: it has expired. Add the new card and remove this one."
            }
            Self::IncorrectCvc => {
                "The card was declined: its security code (CVC) is incorrect. Add the card again with the right code."
            }
            Self::StolenCard | Self::Generic => {
                "The card was declined by its issuer. Contact your bank or use another card."
            }
        }
    }
}

/// A refund to make.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// The processor-side idempotency key (Steward's refund id).
    pub idempotency_key: String,
    /// The charge refunded.
    pub charge_id: String,
    /// How much, positive.
    pub amount: Money,
}

/// A definitive answer to a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// Refunded.
    Succeeded {
        /// The processor's id of the refund.
        refund_id: String,
    },
    /// Refused (nothing refunded); the text says why.
    Refused(String),
}

/// A gateway call without a definitive answer.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No answer in time, or the answer was lost: the outcome is unknown.
    #[error("the payment gateway did not answer in time; the outcome is unknown")]
    Timeout,
    /// The card data was refused before any charge (tokenization only); safe to show.
    #[error("{0}")]
    InvalidCard(String),
    /// The gateway does not offer this call (e.g. tokenization behind hosted fields).
    #[error("the payment gateway does not offer this")]
    Unsupported,
    /// Anything else; the outcome of a charge is unknown.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}
