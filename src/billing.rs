//! Balances as the API shows them.
//!
//! Every account starts at zero; the ledger that moves these numbers is its own module.
//! Amounts are [`Money`] and become decimal strings only at the wire.

use crate::accounts::Account;
use crate::money::Money;

/// The currency every account is billed in.
pub const CURRENCY: &str = "USD";

/// An account's balance figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    /// Money held (negative when spent on credit).
    pub balance: Money,
    /// How far below zero the balance may go.
    pub credit_limit: Money,
    /// Amounts reserved but not yet settled.
    pub pending: Money,
}

impl Balance {
    /// `balance + credit_limit`, saturating rather than overflowing.
    pub fn available_credit(&self) -> Money {
        self.balance
            .checked_add(self.credit_limit)
            .unwrap_or(Money::from_nanos(i64::MAX))
    }
}

/// The balance of `account`. No money moves yet, so every account holds zero.
pub fn balance_of(_account: &Account) -> Balance {
    Balance {
        balance: Money::ZERO,
        credit_limit: Money::ZERO,
        pending: Money::ZERO,
    }
}
