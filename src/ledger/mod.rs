//! The double-entry ledger.
//!
//! Invariants:
//! - every movement is one journal entry whose postings sum to zero ([`Entry::new`] refuses
//!   anything else, so an unbalanced entry cannot be built);
//! - a book's balance is the sum of its postings. An account's books (`balance:`,
//!   `credit_line:`) keep a cached `book_balances` row, updated in the same transaction as the
//!   postings (an `i64` of nano-units: per-movement bounds keep it in range), and [`verify`]
//!   re-derives it. The platform's counter-books add up every account for ever, so they keep
//!   no cached row (an `i64` would run out after ~9.2 billion units): their balance is the
//!   sum of their postings, taken exactly (in `i128`) by [`verify`];
//! - posted entries are never changed: corrections are new entries.
//!
//! Books: `balance:<account>` (the account's money: credits raise it, usage lowers it),
//! `credit_line:<account>` (its credit limit), and the platform's counter-books (among them
//! `platform:card_payments`, the other side of every card payment and refund).

pub mod repo;
mod verify;

use std::collections::BTreeMap;

pub use verify::{
    Report, Violation, platform_totals, same_books, verify, verify_in, verify_in_passes,
};

use crate::accounts::AccountId;
use crate::money::{AMOUNT_ABS_MAX_NANOS, Money};

/// A ledger book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Book {
    /// An account's money.
    Balance(AccountId),
    /// An account's credit limit.
    CreditLine(AccountId),
    /// What usage earned the platform.
    PlatformRevenue,
    /// Money that came in from outside (credits, top-ups).
    PlatformFunding,
    /// Counter-book of operator adjustments.
    PlatformAdjustments,
    /// Counter-book of credit limits granted.
    PlatformCreditLines,
    /// Counter-book of money paid in by card (top-ups, less refunds).
    PlatformCardPayments,
}

impl Book {
    /// The stored key.
    pub fn key(&self) -> String {
        match self {
            Self::Balance(id) => format!("balance:{id}"),
            Self::CreditLine(id) => format!("credit_line:{id}"),
            Self::PlatformRevenue => "platform:revenue".to_owned(),
            Self::PlatformFunding => "platform:funding".to_owned(),
            Self::PlatformAdjustments => "platform:adjustments".to_owned(),
            Self::PlatformCreditLines => "platform:credit_lines".to_owned(),
            Self::PlatformCardPayments => "platform:card_payments".to_owned(),
        }
    }

    /// Whether the book keeps a cached balance row: an account's books do, the platform's
    /// counter-books (which accumulate over every account, without bound) do not.
    pub fn is_cached(&self) -> bool {
        matches!(self, Self::Balance(_) | Self::CreditLine(_))
    }

    /// The platform's counter-books.
    pub const PLATFORM: [Book; 5] = [
        Self::PlatformRevenue,
        Self::PlatformFunding,
        Self::PlatformAdjustments,
        Self::PlatformCreditLines,
        Self::PlatformCardPayments,
    ];
}

/// What kind of movement an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Rated usage charged to payers.
    Usage,
    /// Money credited by the operator (or a top-up).
    Credit,
    /// An operator correction, either sign.
    Adjustment,
    /// A credit-limit change.
    CreditLimit,
    /// A card payment (a top-up) credited to an account.
    CardPayment,
    /// A card payment refunded, debited from the account.
    CardRefund,
}

impl EntryKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usage => "usage",
            Self::Credit => "credit",
            Self::Adjustment => "adjustment",
            Self::CreditLimit => "credit_limit",
            Self::CardPayment => "card_payment",
            Self::CardRefund => "card_refund",
        }
    }
}

/// One line of an entry: an amount on a book (credit positive, debit negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// The book.
    pub book: Book,
    /// The signed amount.
    pub amount: Money,
    /// For rollup charges on a manager's balance: the managed account that spent it.
    pub spender: Option<AccountId>,
}

/// Who, what and why of an entry.
#[derive(Debug, Clone)]
pub struct EntryHeader {
    /// Entry id (a UUID).
    pub id: String,
    /// Kind of movement.
    pub kind: EntryKind,
    /// The account whose money moves, when there is one.
    pub account: Option<AccountId>,
    /// Why (operator entries).
    pub reason: Option<String>,
    /// Who asked.
    pub created_by: String,
}

/// A balanced journal entry, ready to post.
#[derive(Debug, Clone)]
pub struct Entry {
    header: EntryHeader,
    postings: Vec<Posting>,
}

/// Why an entry could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The postings do not sum to zero.
    #[error("postings sum to {0} instead of zero")]
    Unbalanced(Money),
    /// The sum does not fit in an `i64`.
    #[error("postings overflow")]
    Overflow,
    /// A posting, or a book's net change, is larger than one movement may carry.
    #[error("an amount of the entry is larger than 100000000 either way")]
    OutOfRange,
}

/// Why a built entry could not be posted.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// A cached balance would leave the range an `i64` of nano-units holds safely; nothing
    /// was posted.
    #[error("a balance would leave the range a balance can hold; nothing was posted")]
    BalanceOutOfRange,
    /// A query failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

impl Entry {
    /// Builds an entry if its postings sum to exactly zero and no book's net change is
    /// larger than [`AMOUNT_ABS_MAX_NANOS`] either way.
    pub fn new(header: EntryHeader, postings: Vec<Posting>) -> Result<Self, EntryError> {
        let sum = postings
            .iter()
            .try_fold(Money::ZERO, |sum, p| sum.checked_add(p.amount))
            .ok_or(EntryError::Overflow)?;
        if sum != Money::ZERO {
            return Err(EntryError::Unbalanced(sum));
        }
        let entry = Self { header, postings };
        entry.net_by_book()?;
        Ok(entry)
    }

    /// A transfer of `amount` from `from` to `to` (a two-posting entry).
    pub fn transfer(
        header: EntryHeader,
        from: Book,
        to: Book,
        amount: Money,
    ) -> Result<Self, EntryError> {
        let debit = Money::ZERO
            .checked_sub(amount)
            .ok_or(EntryError::Overflow)?;
        let postings = vec![
            Posting {
                book: from,
                amount: debit,
                spender: None,
            },
            Posting {
                book: to,
                amount,
                spender: None,
            },
        ];
        Self::new(header, postings)
    }

    /// The entry id.
    pub fn id(&self) -> &str {
        &self.header.id
    }

    /// Who, what and why.
    pub fn header(&self) -> &EntryHeader {
        &self.header
    }

    /// The postings.
    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }

    /// Net change per book, in a fixed (sorted) order: the order balances are locked in,
    /// so two transactions never wait on each other crosswise.
    pub fn net_by_book(&self) -> Result<BTreeMap<String, i64>, EntryError> {
        let mut net: BTreeMap<String, i64> = BTreeMap::new();
        for posting in &self.postings {
            let slot = net.entry(posting.book.key()).or_insert(0);
            *slot = slot
                .checked_add(posting.amount.nanos())
                .ok_or(EntryError::Overflow)?;
        }
        // Bounded net changes keep a cached balance update from overflowing (see
        // `repo::post_in_tx`).
        if net
            .values()
            .any(|n| n.unsigned_abs() > AMOUNT_ABS_MAX_NANOS.unsigned_abs())
        {
            return Err(EntryError::OutOfRange);
        }
        Ok(net)
    }
}

/// An account's balance figures in money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountBalance {
    /// Money held.
    pub balance: Money,
    /// Credit limit.
    pub credit_limit: Money,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn account() -> AccountId {
        AccountId::generate()
    }

    fn header(kind: EntryKind) -> EntryHeader {
        EntryHeader {
            id: "e".into(),
            kind,
            account: None,
            reason: None,
            created_by: "t".into(),
        }
    }

    #[test]
    fn unbalanced_entries_cannot_be_built() {
        let postings = vec![
            Posting {
                book: Book::Balance(account()),
                amount: Money::from_nanos(-5),
                spender: None,
            },
            Posting {
                book: Book::PlatformRevenue,
                amount: Money::from_nanos(4),
                spender: None,
            },
        ];
        let built = Entry::new(header(EntryKind::Usage), postings);
        assert_eq!(
            built.unwrap_err(),
            EntryError::Unbalanced(Money::from_nanos(-1))
        );
    }

    #[test]
    fn amounts_beyond_one_movement_cannot_be_posted() {
        let too_much = Money::from_nanos(AMOUNT_ABS_MAX_NANOS + 1);
        let built = Entry::transfer(
            header(EntryKind::Credit),
            Book::PlatformFunding,
            Book::Balance(account()),
            too_much,
        );
        assert_eq!(built.unwrap_err(), EntryError::OutOfRange);
        // Two postings each within range may still add up beyond it on one book.
        let payer = account();
        let half = Money::from_nanos(AMOUNT_ABS_MAX_NANOS / 2 + 1);
        let postings = vec![
            Posting {
                book: Book::Balance(payer),
                amount: half,
                spender: None,
            },
            Posting {
                book: Book::Balance(payer),
                amount: half,
                spender: None,
            },
            Posting {
                book: Book::PlatformFunding,
                amount: Money::from_nanos(-half.nanos()),
                spender: None,
            },
            Posting {
                book: Book::PlatformFunding,
                amount: Money::from_nanos(-half.nanos()),
                spender: None,
            },
        ];
        let built = Entry::new(header(EntryKind::Credit), postings);
        assert_eq!(built.unwrap_err(), EntryError::OutOfRange);
    }

    proptest! {
        #[test]
        fn transfers_always_balance(amount in -AMOUNT_ABS_MAX_NANOS..=AMOUNT_ABS_MAX_NANOS) {
            let entry = Entry::transfer(header(EntryKind::Credit), Book::PlatformFunding, Book::Balance(account()), Money::from_nanos(amount)).unwrap();
            let sum: i64 = entry.postings().iter().map(|p| p.amount.nanos()).sum();
            prop_assert_eq!(sum, 0);
            let net: i64 = entry.net_by_book().unwrap().values().sum();
            prop_assert_eq!(net, 0);
        }

        #[test]
        fn any_entry_that_builds_sums_to_zero(amounts in proptest::collection::vec(-1_000_000_i64..1_000_000, 1..20)) {
            let payer = account();
            let mut postings: Vec<Posting> = amounts.iter().map(|a| Posting {
                book: Book::Balance(payer), amount: Money::from_nanos(*a), spender: None }).collect();
            let total: i64 = amounts.iter().sum();
            // Without the balancing line it builds only if it already sums to zero.
            let unbalanced = Entry::new(header(EntryKind::Usage), postings.clone());
            prop_assert_eq!(unbalanced.is_ok(), total == 0);
            postings.push(Posting { book: Book::PlatformRevenue, amount: Money::from_nanos(-total), spender: None });
            prop_assert!(Entry::new(header(EntryKind::Usage), postings).is_ok());
        }
    }
}
