//! Monthly invoices, derived from the ledger.
//!
//! Invariants:
//! - an invoice covers one calendar month (UTC) of one paying account (standard accounts,
//!   managers, managed accounts without rollup billing) and holds the ledger's movements of
//!   that account's balance **by posting time**: entries created in the month. Nothing is
//!   recomputed from prices. Usage whose `occurred_at` falls in an earlier, already closed
//!   month is charged when it arrives, so it lands on the invoice of the month it was
//!   charged in, marked as late usage for its own month;
//! - closing = opening + usage + credits + adjustments + payments + other, each equal to the
//!   ledger's movements of that kind in the month, and the lines add up to each; a statement
//!   that does not tie out is refused rather than issued ([`statement`]), and
//!   `verify-ledger` re-checks every invoice ([`verify`]);
//! - each account-month is closed exactly once, in one transaction with its invoice number
//!   (sequential across the platform, no gaps), whichever server or command gets there
//!   first; a closed invoice, its lines and its PDF never change;
//! - an invoice of a managed account is built without rates: its lines carry quantities and
//!   amounts only.

pub mod charges;
mod close;
pub mod pdf;
pub mod period;
pub mod repo;
pub mod statement;
mod verify;
mod worker;

use crate::accounts::AccountId;
use crate::money::Money;
use crate::pricing::Product;

pub use close::{Closed, RunSummary, SETTLE_MS, closable_from_ms, close_all, close_period};
pub use period::Period;
pub use statement::{Line, LineEntry, Section, Statement, Totals};
pub use verify::{InvoiceViolation, verify};
pub use worker::{POLL_INTERVAL_MS, close_due, run_worker};

/// What a ledger movement is on an invoice, by its entry's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Rated usage.
    Usage,
    /// Money credited by the operator.
    Credit,
    /// Operator corrections, either sign.
    Adjustment,
    /// Card payments (and their refunds, negative).
    Payment,
    /// Any other movement of the balance (none today; kept so that totals always tie).
    Other,
}

impl Category {
    /// Every category, in the order an invoice lists them.
    pub const ALL: [Category; 5] = [
        Self::Usage,
        Self::Credit,
        Self::Adjustment,
        Self::Payment,
        Self::Other,
    ];

    /// The category of a journal entry kind.
    pub fn of_entry_kind(kind: &str) -> Self {
        match kind {
            "usage" => Self::Usage,
            "credit" => Self::Credit,
            "adjustment" => Self::Adjustment,
            "payment" | "card_payment" | "refund" | "card_refund" => Self::Payment,
            _ => Self::Other,
        }
    }

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usage => "usage",
            Self::Credit => "credit",
            Self::Adjustment => "adjustment",
            Self::Payment => "payment",
            Self::Other => "other",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// How a document names the total of the category.
    pub fn title(self) -> &'static str {
        match self {
            Self::Usage => "Usage",
            Self::Credit => "Credits",
            Self::Adjustment => "Adjustments",
            Self::Payment => "Payments",
            Self::Other => "Other movements",
        }
    }
}

/// How an invoice names a product.
pub fn product_name(product: Product) -> &'static str {
    match product {
        Product::VoiceOutbound => "Outbound calls",
        Product::VoiceInbound => "Inbound calls",
        Product::SmsOutbound => "Outbound SMS",
        Product::SmsInbound => "Inbound SMS",
        Product::MmsOutbound => "Outbound MMS",
        Product::MmsInbound => "Inbound MMS",
        Product::NumberRental => "Number rental",
    }
}

/// `INV-000042`: the platform-wide sequence number as printed.
pub fn invoice_number_text(number: i64) -> String {
    format!("INV-{number:06}")
}

/// A closed invoice as stored.
#[derive(Debug, Clone)]
pub struct Invoice {
    /// Invoice id (a UUID).
    pub id: String,
    /// Platform-wide sequence number.
    pub number: i64,
    /// Id of its PDF document.
    pub file_id: String,
    /// The platform's name at closing.
    pub platform_name: String,
    /// Who closed it.
    pub closed_by: String,
    /// When it was closed, ms.
    pub created_at_ms: i64,
    /// What it says.
    pub statement: Statement,
}

impl Invoice {
    /// The account it bills.
    pub fn account_id(&self) -> AccountId {
        self.statement.payer.id
    }

    /// What the account owes: the closing balance's shortfall below zero.
    pub fn amount_due(&self) -> Money {
        self.statement.totals.amount_due()
    }
}

/// Why an invoice could not be closed or read.
#[derive(Debug, thiserror::Error)]
pub enum InvoiceError {
    /// No such account (or invoice).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A rollup-billing managed account has no invoices of its own.
    #[error(
        "this account uses rollup billing: it has no invoices of its own; its spend is \
         billed to its manager and listed on the manager's invoice, in a section for this \
         account"
    )]
    RollupBilled,
    /// The period has not ended (or ended too recently for charges in flight to settle).
    #[error("the period {period} has not ended yet; it can be closed from {closable_from}")]
    NotEnded {
        /// The period asked for.
        period: Period,
        /// When it can be closed (RFC 3339).
        closable_from: String,
    },
    /// The ledger's figures did not tie out; nothing was issued.
    #[error("the invoice of {account} for {period} does not tie out to the ledger: {detail}")]
    DoesNotTieOut {
        /// The account.
        account: AccountId,
        /// The period.
        period: Period,
        /// What differs.
        detail: String,
    },
    /// A stored value could not be read back.
    #[error("stored invoice data is not valid: {0}")]
    Corrupt(String),
    /// The document could not be rendered.
    #[error("the invoice document could not be rendered: {0}")]
    Render(String),
    /// A query failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// SQL for the month (`YYYY-MM`, UTC) of an epoch-ms column: the one expression that
/// differs between the engines.
pub fn month_sql(conn: &sqlx::AnyConnection, column: &str) -> String {
    if conn.backend_name() == "SQLite" {
        format!("strftime('%Y-%m', {column} / 1000, 'unixepoch')")
    } else {
        format!("to_char(to_timestamp({column} / 1000) AT TIME ZONE 'UTC', 'YYYY-MM')")
    }
}
