//! Outcomes of payment operations that are not success. Declines and processor failures of
//! a top-up are not errors: they are settled attempts, answered from the attempt.

use super::carding::Refusal;

/// Why a payment operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// No such account, or not one the caller may see.
    #[error("account not found")]
    AccountNotFound,
    /// No such payment method on this account (another account's card is not found either).
    #[error("payment method not found")]
    MethodNotFound,
    /// The gateway issued no such token, or it is another account's card.
    #[error("card token not found")]
    TokenNotFound,
    /// A rollup-billing account has no money of its own.
    #[error(
        "this account uses rollup billing: its spend is charged to its manager's balance, so it has no \
         balance, payment methods, top-ups or auto-recharge of its own; its manager pays for it with the \
         manager's own card"
    )]
    RollupBilling,
    /// A cancelled account takes no change.
    #[error("the account is cancelled and takes no further changes")]
    Cancelled,
    /// The account's state does not allow payments; the text says why.
    #[error("{0}")]
    NotAllowed(String),
    /// No card was named and the account has no default card.
    #[error(
        "the account has no default payment method; add a card (POST /v2/payment_methods) or name one with payment_method_id"
    )]
    NoDefaultMethod,
    /// The card is already saved on this account.
    #[error("this card is already saved on the account (see GET /v2/payment_methods)")]
    DuplicateCard,
    /// The account holds as many live cards as allowed.
    #[error("an account may hold at most {max} payment methods; remove one first")]
    TooManyMethods {
        /// The limit.
        max: usize,
    },
    /// An amount outside the operator's bounds (`field` is the body field).
    #[error("{field} must be between {min} and {max}")]
    AmountOutOfRange {
        /// The body field.
        field: &'static str,
        /// Smallest accepted, dollars and cents.
        min: String,
        /// Largest accepted, dollars and cents.
        max: String,
    },
    /// An amount that is not dollars and cents (`field` is the body field).
    #[error(
        "{field} must be a string of dollars and cents with exactly two decimals, such as \"120.00\""
    )]
    AmountFormat {
        /// The body field.
        field: &'static str,
    },
    /// The Idempotency-Key was used before for a different request.
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// A carding rule refuses the attempt (429 with Retry-After).
    #[error("{}", .0.detail)]
    Refused(Refusal),
    /// A value is not acceptable; `field` is the body field to blame.
    #[error("{message}")]
    Invalid {
        /// The body field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The gateway refused card entry; the text is safe to show (it never repeats the card).
    #[error("{0}")]
    InvalidCard(String),
    /// The gateway gave no usable answer to a call that changes nothing (tokenization,
    /// token lookup); nothing happened.
    #[error("the payment gateway did not answer; nothing was changed, please retry")]
    GatewayUnavailable,
    /// A query failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Something else of ours failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::ledger::PostError> for PaymentError {
    fn from(error: crate::ledger::PostError) -> Self {
        match error {
            crate::ledger::PostError::Database(e) => Self::Database(e),
            e @ crate::ledger::PostError::BalanceOutOfRange => Self::NotAllowed(e.to_string()),
        }
    }
}
