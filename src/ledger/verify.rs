//! `steward admin verify-ledger`: re-derives every balance from postings and checks every
//! invariant, naming the first violation.
//!
//! Linear in the size of the ledger: every check is a set-based query (grouping and
//! anti-joins on keys), and each large table is read in few grouped passes: postings by
//! entry and by book (an index-only scan), usage records once (grouped by entry, account
//! and payer; every usage check reads that grouping), book balances once. No check
//! runs a query per entry or per record. All checks read one snapshot (one transaction).
//!
//! Sums over books are exact whatever their size: each amount is split into whole units and
//! the nano-unit rest, summed separately (neither sum can overflow a 64-bit integer before
//! ~9 × 10^18 units, or a billion billion postings) and recombined in `i128`.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use sqlx::{AnyConnection, Row};

use crate::db::Db;
use crate::money::NANOS_PER_UNIT;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// An entry whose postings do not sum to zero.
    #[error("journal entry {entry} has postings summing to {sum_nanos} nano-units instead of zero")]
    UnbalancedEntry {
        /// Entry id.
        entry: String,
        /// The sum.
        sum_nanos: i128,
    },
    /// A cached balance that differs from its postings.
    #[error("book {book} caches {cached_nanos} but its postings sum to {derived_nanos}")]
    BalanceMismatch {
        /// Book key.
        book: String,
        /// Cached value.
        cached_nanos: i64,
        /// Sum of postings.
        derived_nanos: i128,
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Entries checked.
    pub entries: i64,
    /// Books checked (cached and platform books).
    pub books: i64,
    /// Usage records checked.
    pub usage_records: i64,
    /// Each platform counter-book with postings and its exact balance in nano-units, by key.
    pub platform_nanos: BTreeMap<String, i128>,
}

/// The unit/rest split of `amount_nanos` (see the module documentation), as the select list
/// `units` and `rest` of a grouped query. `SUM` over `BIGINT` is `NUMERIC` on PostgreSQL:
/// cast back for the `Any` driver.
const SPLIT_SUMS: &str = "CAST(SUM(amount_nanos / 1000000000) AS BIGINT) AS units, \
     CAST(SUM(amount_nanos % 1000000000) AS BIGINT) AS rest";

/// Recombines a unit/rest split into nano-units.
fn recombine(units: i64, rest: i64) -> i128 {
    i128::from(units) * i128::from(NANOS_PER_UNIT) + i128::from(rest)
}

/// Whether `book` is one of the platform's counter-books, which keep no cached balance.
fn is_platform_book(book: &str) -> bool {
    book.starts_with("platform:")
}

/// The exact balance of each platform counter-book that has postings, by key.
pub async fn platform_totals(
    conn: &mut AnyConnection,
) -> Result<BTreeMap<String, i128>, sqlx::Error> {
    let keys: Vec<String> = super::Book::PLATFORM.iter().map(|b| b.key()).collect();
    let placeholders: Vec<String> = (1..=keys.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT book, {SPLIT_SUMS} FROM postings WHERE book IN ({}) GROUP BY book",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for key in &keys {
        query = query.bind(key);
    }
    let mut totals = BTreeMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        totals.insert(
            row.try_get("book")?,
            recombine(row.try_get("units")?, row.try_get("rest")?),
        );
    }
    Ok(totals)
}

/// Checks every invariant; `Ok(Err(violation))` names the first one that fails.
pub async fn verify(db: &Db) -> Result<Result<Report, Violation>, sqlx::Error> {
    let mut conn = db.read.begin().await?;
    if let Some(violation) = unbalanced_entry(&mut conn).await? {
        return Ok(Err(violation));
    }
    let books = match books(&mut conn).await? {
        Ok(books) => books,
        Err(violation) => return Ok(Err(violation)),
    };
    let usage_records = match usage(&mut conn).await? {
        Ok(records) => records,
        Err(violation) => return Ok(Err(violation)),
    };
    if let Some(violation) = books.negative_credit_line {
        return Ok(Err(violation));
    }
    if let Some(violation) = crate::invoices::verify(&mut conn).await? {
        return Ok(Err(violation.into()));
    }
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Ok(Report {
        entries,
        books: books.count,
        usage_records,
        platform_nanos: books.platform_nanos,
    }))
}

/// The first entry (by id) whose postings do not sum to zero. A sum is zero when the rests
/// add up to whole units that cancel the units exactly.
async fn unbalanced_entry(conn: &mut AnyConnection) -> Result<Option<Violation>, sqlx::Error> {
    let sql = format!(
        "SELECT entry_id, {SPLIT_SUMS} FROM postings GROUP BY entry_id \
         HAVING SUM(amount_nanos % 1000000000) % 1000000000 <> 0 \
           OR SUM(amount_nanos / 1000000000) <> -(SUM(amount_nanos % 1000000000) / 1000000000) \
         ORDER BY entry_id LIMIT 1"
    );
    let Some(row) = sqlx::query(&sql).fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    Ok(Some(Violation::UnbalancedEntry {
        entry: row.try_get("entry_id")?,
        sum_nanos: recombine(row.try_get("units")?, row.try_get("rest")?),
    }))
}

/// What the one pass over books found.
struct Books {
    count: i64,
    platform_nanos: BTreeMap<String, i128>,
    negative_credit_line: Option<Violation>,
}

/// One grouped pass over postings per book beside the cached balances, in both directions
/// (a cached balance without postings, postings without a cache). An account book must
/// cache exactly its postings' sum; a platform book is summed exactly and reported.
async fn books(conn: &mut AnyConnection) -> Result<Result<Books, Violation>, sqlx::Error> {
    let sql = format!(
        "SELECT d.book, b.balance_nanos AS cached_nanos, d.units, d.rest FROM ( \
           SELECT book, {SPLIT_SUMS} FROM postings GROUP BY book \
         ) d LEFT JOIN book_balances b ON b.book = d.book \
         UNION ALL \
         SELECT b.book, b.balance_nanos AS cached_nanos, CAST(0 AS BIGINT) AS units, CAST(0 AS BIGINT) AS rest FROM book_balances b \
         WHERE NOT EXISTS (SELECT 1 FROM postings p WHERE p.book = b.book)"
    );
    let mut found = Books {
        count: 0,
        platform_nanos: BTreeMap::new(),
        negative_credit_line: None,
    };
    // The first (by book key) of each kind of violation.
    let mut mismatch: Option<(String, i64, i128)> = None;
    let mut negative: Option<(String, i64)> = None;
    let mut rows = sqlx::query(&sql).fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        found.count += 1;
        let book: String = row.try_get("book")?;
        let cached: Option<i64> = row.try_get("cached_nanos")?;
        let derived = recombine(row.try_get("units")?, row.try_get("rest")?);
        if cached.is_none() && is_platform_book(&book) {
            found.platform_nanos.insert(book, derived);
            continue;
        }
        let cached = cached.unwrap_or(0);
        if i128::from(cached) != derived && mismatch.as_ref().is_none_or(|(b, ..)| book < *b) {
            mismatch = Some((book.clone(), cached, derived));
        }
        if cached < 0
            && book.starts_with("credit_line:")
            && negative.as_ref().is_none_or(|(b, _)| book < *b)
        {
            negative = Some((book, cached));
        }
    }
    if let Some((book, cached_nanos, derived_nanos)) = mismatch {
        return Ok(Err(Violation::BalanceMismatch {
            book,
            cached_nanos,
            derived_nanos,
        }));
    }
    found.negative_credit_line =
        negative.map(|(book, nanos)| Violation::NegativeCreditLine { book, nanos });
    Ok(Ok(found))
}

/// Which usage check a row of [`USAGE_CHECKS`] reports; the order is the order of
/// precedence, and the clean summary row comes last.
const USAGE_MISMATCH: i64 = 1;
const ENTRY_WITHOUT_RECORDS: i64 = 2;
const WRONG_PAYER: i64 = 3;
const PAYER_POSTING_MISMATCH: i64 = 4;
const CLEAN: i64 = 9;

/// Every usage check in one statement over one grouped pass of `usage_records` (`r`: per
/// entry, account and payer) and of its per-entry totals (`t`). Each branch yields the
/// violations of one check; ordered by check, then key, the first row is the first
/// violation, or the clean summary (the number of records) when there is none.
///
/// 1. Per entry with records: the revenue it credited equals its records' cost.
/// 2. Every usage entry has records.
/// 3. Every record's payer is the one its account's billing names: the account itself, or
///    its manager under rollup billing (manager and rollup flag are fixed for life).
/// 4. Per usage entry, balance book and spender: records' cost and postings cancel out
///    (a debit of the wrong balance, a lost spender tag, records or postings missing on
///    either side).
const USAGE_CHECKS: &str = "\
WITH r AS MATERIALIZED ( \
  SELECT entry_id, account_id, payer_account_id, COUNT(*) AS records, \
    CAST(SUM(cost_nanos) AS BIGINT) AS cost_nanos \
  FROM usage_records GROUP BY entry_id, account_id, payer_account_id \
), t AS MATERIALIZED ( \
  SELECT entry_id, CAST(SUM(cost_nanos) AS BIGINT) AS rated_nanos FROM r GROUP BY entry_id \
), revenue AS MATERIALIZED ( \
  SELECT entry_id, CAST(SUM(amount_nanos) AS BIGINT) AS charged_nanos FROM postings \
  WHERE book = 'platform:revenue' GROUP BY entry_id \
) \
SELECT check_kind, entry_id, a, b, x, y FROM ( \
  SELECT CAST(1 AS BIGINT) AS check_kind, t.entry_id, '' AS a, '' AS b, \
    COALESCE(v.charged_nanos, 0) AS x, t.rated_nanos AS y \
  FROM t LEFT JOIN revenue v ON v.entry_id = t.entry_id \
  WHERE COALESCE(v.charged_nanos, 0) <> t.rated_nanos \
  UNION ALL \
  SELECT 2, e.id, '', '', 0, 0 FROM journal_entries e \
  LEFT JOIN t ON t.entry_id = e.id WHERE e.kind = 'usage' AND t.entry_id IS NULL \
  UNION ALL \
  SELECT 3, r.entry_id, r.account_id, r.payer_account_id, 0, 0 \
  FROM r JOIN accounts a ON a.id = r.account_id \
  WHERE r.payer_account_id <> \
    CASE WHEN a.kind = 'managed' AND a.rollup_billing <> 0 THEN a.manager_id ELSE a.id END \
  UNION ALL \
  SELECT 4, entry_id, book, spender, CAST(SUM(nanos) AS BIGINT), 0 FROM ( \
    SELECT r.entry_id, 'balance:' || r.payer_account_id AS book, \
      CASE WHEN r.account_id = r.payer_account_id THEN '-' ELSE r.account_id END AS spender, \
      r.cost_nanos AS nanos \
    FROM r \
    UNION ALL \
    SELECT p.entry_id, p.book, COALESCE(p.spender_account_id, '-'), p.amount_nanos \
    FROM postings p JOIN journal_entries e ON e.id = p.entry_id \
    WHERE e.kind = 'usage' AND p.book LIKE 'balance:%' \
  ) sides GROUP BY entry_id, book, spender HAVING SUM(nanos) <> 0 \
  UNION ALL \
  SELECT 9, '', '', '', CAST(COALESCE(SUM(records), 0) AS BIGINT), 0 FROM r \
) checks ORDER BY check_kind, entry_id, a, b LIMIT 1";

/// Runs [`USAGE_CHECKS`]: the number of usage records, or the first violation.
async fn usage(conn: &mut AnyConnection) -> Result<Result<i64, Violation>, sqlx::Error> {
    let row = sqlx::query(USAGE_CHECKS).fetch_one(&mut *conn).await?;
    let kind: i64 = row.try_get("check_kind")?;
    let entry: String = row.try_get("entry_id")?;
    let violation = match kind {
        CLEAN => return Ok(Ok(row.try_get("x")?)),
        USAGE_MISMATCH => Violation::UsageMismatch {
            entry,
            charged_nanos: row.try_get("x")?,
            rated_nanos: row.try_get("y")?,
        },
        ENTRY_WITHOUT_RECORDS => Violation::UsageEntryWithoutRecords { entry },
        WRONG_PAYER => wrong_payer(conn).await?,
        PAYER_POSTING_MISMATCH => Violation::PayerPostingMismatch {
            entry,
            book: row.try_get("a")?,
            spender: row.try_get("b")?,
            difference_nanos: row.try_get("x")?,
        },
        other => {
            return Err(sqlx::Error::Protocol(format!(
                "unknown usage check {other}"
            )));
        }
    };
    Ok(Err(violation))
}

/// Names the first record (by event id) charged to the wrong payer. Run only once the
/// grouped check found one: it reads every record.
async fn wrong_payer(conn: &mut AnyConnection) -> Result<Violation, sqlx::Error> {
    let row = sqlx::query(
        "SELECT event_id, account_id, payer_account_id, expected FROM ( \
           SELECT u.event_id, u.account_id, u.payer_account_id, \
             CASE WHEN a.kind = 'managed' AND a.rollup_billing <> 0 THEN a.manager_id ELSE a.id END AS expected \
           FROM usage_records u JOIN accounts a ON a.id = u.account_id \
         ) checked WHERE payer_account_id <> expected ORDER BY event_id LIMIT 1",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Violation::WrongPayer {
        event_id: row.try_get("event_id")?,
        account: row.try_get("account_id")?,
        payer: row.try_get("payer_account_id")?,
        expected: row.try_get("expected")?,
    })
}
