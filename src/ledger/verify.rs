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
    /// A credit limit below zero.
    #[error("book {book} holds a negative credit limit ({nanos})")]
    NegativeCreditLine {
        /// Book key.
        book: String,
        /// Its balance.
        nanos: i64,
    },
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
