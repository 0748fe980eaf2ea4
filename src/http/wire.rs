//! Shared wire shapes: envelopes, list metadata, balances, timestamps.

use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::listing::Page;
use crate::billing::{Balance, CURRENCY};
use crate::clock::{from_epoch_ms, to_wire};

/// Decimal places of amounts on the wire (Telnyx writes `"300.00"`).
pub const WIRE_DECIMALS: u32 = 2;

/// Paging metadata of every list (Telnyx `PaginationMeta`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PaginationMeta {
    /// The page returned, 1-based.
    pub page_number: u64,
    /// The page size used.
    pub page_size: u64,
    /// Pages in all.
    pub total_pages: u64,
    /// Results in all.
    pub total_results: u64,
}

impl PaginationMeta {
    /// The metadata of `page`.
    pub fn of<T>(page: &Page<T>) -> Self {
        Self {
            page_number: u64::from(page.request.number()),
            page_size: u64::from(page.request.size()),
            total_pages: page.request.total_pages(page.total_results),
            total_results: page.total_results,
        }
    }
}

/// `{"data": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Data<T: ToSchema> {
    /// The payload.
    pub data: T,
}

/// `{"data": […], "meta": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T: ToSchema> {
    /// The rows of this page.
    pub data: Vec<T>,
    /// Paging metadata.
    pub meta: PaginationMeta,
}

/// An instant as Telnyx writes it: ISO 8601, UTC, milliseconds, `Z`.
pub fn timestamp(ms: i64) -> String {
    to_wire(from_epoch_ms(ms))
}

/// The balance nested in a managed account (Telnyx `ManagedAccountBalance`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ManagedAccountBalance {
    /// Always `balance`.
    #[schema(example = "balance")]
    pub record_type: &'static str,
    /// Current balance, decimal string.
    #[schema(example = "300.00")]
    pub balance: String,
    /// Credit limit, decimal string.
    #[schema(example = "100.00")]
    pub credit_limit: String,
    /// `balance + credit_limit`, decimal string.
    #[schema(example = "400.00")]
    pub available_credit: String,
    /// ISO 4217 currency.
    #[schema(example = "USD")]
    pub currency: &'static str,
}

impl From<Balance> for ManagedAccountBalance {
    fn from(balance: Balance) -> Self {
        Self {
            record_type: "balance",
            balance: balance.balance.to_decimal_string(WIRE_DECIMALS),
            credit_limit: balance.credit_limit.to_decimal_string(WIRE_DECIMALS),
            available_credit: balance.available_credit().to_decimal_string(WIRE_DECIMALS),
            currency: CURRENCY,
        }
    }
}
