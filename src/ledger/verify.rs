//! `steward admin verify-ledger`: re-derives every balance from postings and checks every
//! invariant, naming the first violation.

use sqlx::Row;

use crate::db::Db;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// An entry whose postings do not sum to zero.
    #[error("journal entry {entry} has postings summing to {sum_nanos} nano-units instead of zero")]
    UnbalancedEntry {
        /// Entry id.
        entry: String,
        /// The sum.
        sum_nanos: i64,
    },
    /// A cached balance that differs from its postings.
    #[error("book {book} caches {cached_nanos} but its postings sum to {derived_nanos}")]
    BalanceMismatch {
        /// Book key.
        book: String,
        /// Cached value.
        cached_nanos: i64,
        /// Sum of postings.
        derived_nanos: i64,
    },
    /// Rated usage whose charge is missing or differs from its entry.
    #[error("usage entry {entry} charges {charged_nanos} but its usage records cost {rated_nanos}")]
    UsageMismatch {
        /// Entry id.
        entry: String,
        /// Sum of its revenue postings.
        charged_nanos: i64,
        /// Sum of its usage records' costs.
        rated_nanos: i64,
    },
    /// A usage entry that charged nothing anyone can trace: it has no usage records.
    #[error("usage entry {entry} has no usage records")]
    UsageEntryWithoutRecords {
        /// Entry id.
        entry: String,
    },
    /// A usage record whose payer is not the one its account's billing names (itself, or
    /// its manager under rollup billing).
    #[error(
        "usage record {event_id} of account {account} is charged to {payer}, not to {expected}"
    )]
    WrongPayer {
        /// The record's event id.
        event_id: String,
        /// The account that used it.
        account: String,
        /// The payer recorded.
        payer: String,
        /// The payer its billing names.
        expected: String,
    },
    /// A usage entry whose debit of a balance, for one spender, differs from the cost of the
    /// records that balance pays for that spender.
    #[error(
        "usage entry {entry} debits {book} (spender {spender}) by a total that differs from its records by {difference_nanos} nano-units"
    )]
    PayerPostingMismatch {
        /// Entry id.
        entry: String,
        /// The balance book.
        book: String,
        /// The spending account (`-` for the payer itself).
        spender: String,
        /// Records' cost plus postings (zero when they agree).
        difference_nanos: i64,
    },
    /// A credit limit below zero.
    #[error("book {book} holds a negative credit limit ({nanos})")]
    NegativeCreditLine {
        /// Book key.
        book: String,
        /// Its balance.
        nanos: i64,
    },
    /// A closed invoice that no longer ties out to the ledger, or a gap in its numbering.
    #[error(transparent)]
    Invoice(#[from] crate::invoices::InvoiceViolation),
}

/// What a clean verification covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Entries checked.
    pub entries: i64,
    /// Books checked.
    pub books: i64,
    /// Usage records checked.
    pub usage_records: i64,
}

/// Checks every invariant; `Ok(Err(violation))` names the first one that fails.
pub async fn verify(db: &Db) -> Result<Result<Report, Violation>, sqlx::Error> {
    let mut conn = db.read.acquire().await?;
    // SUM over BIGINT is NUMERIC on PostgreSQL: cast back for the Any driver.
    let unbalanced = sqlx::query(
        "SELECT entry_id, CAST(SUM(amount_nanos) AS BIGINT) AS sum_nanos FROM postings \
         GROUP BY entry_id HAVING SUM(amount_nanos) <> 0 ORDER BY entry_id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = unbalanced {
        return Ok(Err(Violation::UnbalancedEntry {
            entry: row.try_get("entry_id")?,
            sum_nanos: row.try_get("sum_nanos")?,
        }));
    }
    // Both directions: a cached balance without postings, and postings without a cache.
    let mismatch = sqlx::query(
        "SELECT book, cached_nanos, derived_nanos FROM ( \
           SELECT b.book, b.balance_nanos AS cached_nanos, \
             CAST(COALESCE((SELECT SUM(p.amount_nanos) FROM postings p WHERE p.book = b.book), 0) AS BIGINT) AS derived_nanos \
           FROM book_balances b \
           UNION ALL \
           SELECT p.book, 0 AS cached_nanos, CAST(SUM(p.amount_nanos) AS BIGINT) AS derived_nanos \
           FROM postings p WHERE NOT EXISTS (SELECT 1 FROM book_balances b WHERE b.book = p.book) \
           GROUP BY p.book \
         ) checked WHERE cached_nanos <> derived_nanos ORDER BY book LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = mismatch {
        return Ok(Err(Violation::BalanceMismatch {
            book: row.try_get("book")?,
            cached_nanos: row.try_get("cached_nanos")?,
            derived_nanos: row.try_get("derived_nanos")?,
        }));
    }
    let usage = sqlx::query(
        "SELECT entry_id, charged_nanos, rated_nanos FROM ( \
           SELECT u.entry_id, CAST(SUM(u.cost_nanos) AS BIGINT) AS rated_nanos, \
             CAST(COALESCE((SELECT SUM(p.amount_nanos) FROM postings p \
               WHERE p.entry_id = u.entry_id AND p.book = 'platform:revenue'), 0) AS BIGINT) AS charged_nanos \
           FROM usage_records u GROUP BY u.entry_id \
         ) checked WHERE charged_nanos <> rated_nanos ORDER BY entry_id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = usage {
        return Ok(Err(Violation::UsageMismatch {
            entry: row.try_get("entry_id")?,
            charged_nanos: row.try_get("charged_nanos")?,
            rated_nanos: row.try_get("rated_nanos")?,
        }));
    }
    let orphan = sqlx::query(
        "SELECT e.id FROM journal_entries e WHERE e.kind = 'usage' \
         AND e.id NOT IN (SELECT u.entry_id FROM usage_records u) ORDER BY e.id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = orphan {
        return Ok(Err(Violation::UsageEntryWithoutRecords {
            entry: row.try_get("id")?,
        }));
    }
    // Manager and rollup flag are fixed for life, so the payer can be re-derived.
    let wrong_payer = sqlx::query(
        "SELECT event_id, account_id, payer_account_id, expected FROM ( \
           SELECT u.event_id, u.account_id, u.payer_account_id, \
             CASE WHEN a.kind = 'managed' AND a.rollup_billing <> 0 THEN a.manager_id ELSE a.id END AS expected \
           FROM usage_records u JOIN accounts a ON a.id = u.account_id \
         ) checked WHERE payer_account_id <> expected ORDER BY event_id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = wrong_payer {
        return Ok(Err(Violation::WrongPayer {
            event_id: row.try_get("event_id")?,
            account: row.try_get("account_id")?,
            payer: row.try_get("payer_account_id")?,
            expected: row.try_get("expected")?,
        }));
    }
    // Per usage entry, balance book and spender: records' cost and postings cancel out.
    // This catches a debit of the wrong balance, a lost spender tag, and records or
    // postings missing on either side.
    let payer_postings = sqlx::query(
        "SELECT entry_id, book, spender, CAST(SUM(nanos) AS BIGINT) AS difference_nanos FROM ( \
           SELECT u.entry_id, 'balance:' || u.payer_account_id AS book, \
             CASE WHEN u.account_id = u.payer_account_id THEN '-' ELSE u.account_id END AS spender, \
             u.cost_nanos AS nanos \
           FROM usage_records u \
           UNION ALL \
           SELECT p.entry_id, p.book, COALESCE(p.spender_account_id, '-') AS spender, p.amount_nanos AS nanos \
           FROM postings p JOIN journal_entries e ON e.id = p.entry_id \
           WHERE e.kind = 'usage' AND p.book LIKE 'balance:%' \
         ) sides GROUP BY entry_id, book, spender HAVING SUM(nanos) <> 0 \
         ORDER BY entry_id, book, spender LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = payer_postings {
        return Ok(Err(Violation::PayerPostingMismatch {
            entry: row.try_get("entry_id")?,
            book: row.try_get("book")?,
            spender: row.try_get("spender")?,
            difference_nanos: row.try_get("difference_nanos")?,
        }));
    }
    let negative = sqlx::query(
        "SELECT book, balance_nanos FROM book_balances WHERE book LIKE 'credit\\_line:%' ESCAPE '\\' \
         AND balance_nanos < 0 ORDER BY book LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = negative {
        return Ok(Err(Violation::NegativeCreditLine {
            book: row.try_get("book")?,
            nanos: row.try_get("balance_nanos")?,
        }));
    }
    if let Some(violation) = crate::invoices::verify(&mut conn).await? {
        return Ok(Err(violation.into()));
    }
    let count = |table: &'static str| format!("SELECT COUNT(*) FROM {table}");
    let entries: i64 = sqlx::query_scalar(&count("journal_entries"))
        .fetch_one(&mut *conn)
        .await?;
    let books: i64 = sqlx::query_scalar(&count("book_balances"))
        .fetch_one(&mut *conn)
        .await?;
    let usage_records: i64 = sqlx::query_scalar(&count("usage_records"))
        .fetch_one(&mut *conn)
        .await?;
    Ok(Ok(Report {
        entries,
        books,
        usage_records,
    }))
}
