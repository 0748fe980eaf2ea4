//! `steward admin verify-ledger`: re-derives every balance from postings and checks every
//! invariant, naming the first violation.
//!
//! Linear in the size of the ledger: the postings and the usage records are each read once,
//! unsorted, in bulk (see [`crate::db::bulk`]), and summed in this process: each entry's
//! balance, each book's sum (compared with the cached balances), the usage checks (see
//! [`read_ledger`]) and the records' sums per rollup key, which the daily and monthly usage
//! rollups must hold exactly (see [`rollups`]). No check runs a query per entry or per
//! record. All checks read one snapshot (one transaction, repeatable read on PostgreSQL).
//!
//! Sums are exact whatever their size (but the rollups', compared as the 64-bit sums the
//! rollups hold): in this process they are 128-bit; in SQL
//! ([`platform_totals`]) each amount is split into whole units and the nano-unit rest,
//! summed separately (neither sum can overflow a 64-bit integer before ~9 × 10^18 units, or
//! a billion billion postings) and recombined in `i128`.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Connection, Row};

use crate::db::Db;
use crate::db::bulk::{BulkQuery, BulkReader, TextRange};
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
    /// A rollup row that differs from the sums of the charged usage records it stands for
    /// (usage reports read the rollups), or a group of records missing from the rollups.
    #[error("{table} holds {rolled_up} for {key} but the usage records sum to {recorded}")]
    RollupMismatch {
        /// `usage_rollups_daily` or `usage_rollups_monthly`.
        table: String,
        /// The bucket (UTC day or month, epoch milliseconds), account, product, country
        /// and number type.
        key: String,
        /// What the rollup row holds (`nothing` when there is no row).
        rolled_up: String,
        /// What the records sum to (`nothing` when there are none).
        recorded: String,
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

/// Whether two databases hold the same books, each read in its own snapshot or transaction
/// (a copy and its source): every cached balance, and the exact sum of every platform
/// counter-book (those keep no cached balance). `Ok(Err(_))` says which differ; `Ok(Ok(n))`
/// how many books were compared.
pub async fn same_books(
    source: &mut AnyConnection,
    target: &mut AnyConnection,
) -> Result<Result<u64, &'static str>, sqlx::Error> {
    let balances = "SELECT book, balance_nanos FROM book_balances ORDER BY book";
    let source_balances: Vec<(String, i64)> =
        sqlx::query_as(balances).fetch_all(&mut *source).await?;
    let target_balances: Vec<(String, i64)> =
        sqlx::query_as(balances).fetch_all(&mut *target).await?;
    if source_balances != target_balances {
        return Ok(Err("the copied balances differ from the source's"));
    }
    let source_platform = platform_totals(source).await?;
    let target_platform = platform_totals(target).await?;
    if source_platform != target_platform {
        return Ok(Err("the copied platform books differ from the source's"));
    }
    Ok(Ok(u64::try_from(
        target_balances.len() + target_platform.len(),
    )
    .unwrap_or(0)))
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
    verify_in_passes(db, USAGE_POSTINGS_PER_PASS).await
}

/// [`verify`], splitting the postings into passes of about `usage_postings_per_pass`
/// balance postings (tests use tiny passes to check that splitting changes no verdict).
#[doc(hidden)]
pub async fn verify_in_passes(
    db: &Db,
    usage_postings_per_pass: i64,
) -> Result<Result<Report, Violation>, sqlx::Error> {
    let mut conn = db.read.acquire().await?;
    let begin = crate::db::snapshot_begin(&conn);
    let mut snapshot = conn.begin_with(begin).await?;
    let outcome = verify_in_snapshot(db, &mut snapshot, usage_postings_per_pass).await?;
    snapshot.commit().await?;
    Ok(outcome)
}

/// [`verify`] within `snapshot`, a transaction begun with [`crate::db::snapshot_begin`], so
/// that the caller's own checks (card payments) read the same moment of the database.
pub async fn verify_in(
    db: &Db,
    snapshot: &mut AnyConnection,
) -> Result<Result<Report, Violation>, sqlx::Error> {
    verify_in_snapshot(db, snapshot, USAGE_POSTINGS_PER_PASS).await
}

async fn verify_in_snapshot(
    db: &Db,
    snapshot: &mut AnyConnection,
    usage_postings_per_pass: i64,
) -> Result<Result<Report, Violation>, sqlx::Error> {
    let mut reader = BulkReader::open(db, snapshot).await?;
    let outcome = check(snapshot, &mut reader, usage_postings_per_pass.max(1)).await;
    reader.close().await?;
    outcome
}

/// Every check, in their order of precedence, within one snapshot.
async fn check(
    conn: &mut AnyConnection,
    reader: &mut BulkReader,
    usage_postings_per_pass: i64,
) -> Result<Result<Report, Violation>, sqlx::Error> {
    let ledger = read_ledger(conn, reader, usage_postings_per_pass).await?;
    if let Some(violation) = ledger.unbalanced {
        return Ok(Err(violation));
    }
    let books = match books(conn, reader, ledger.book_nanos).await? {
        Ok(books) => books,
        Err(violation) => return Ok(Err(violation)),
    };
    match ledger.usage {
        Some((_, _, _, _, Violation::WrongPayer { .. })) => {
            return Ok(Err(wrong_payer(conn).await?));
        }
        Some((.., violation)) => return Ok(Err(violation)),
        None => {}
    }
    if let Some(violation) = books.negative_credit_line {
        return Ok(Err(violation));
    }
    if let Some(violation) = rollups(conn, reader, ledger.record_sums).await? {
        return Ok(Err(violation));
    }
    if let Some(violation) = crate::invoices::verify(conn).await? {
        return Ok(Err(violation.into()));
    }
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Ok(Report {
        entries,
        books: books.count,
        usage_records: ledger.usage_records,
        platform_nanos: books.platform_nanos,
    }))
}

/// The text of field `index` of a bulk-read row, which its column never leaves NULL.
fn text<'a>(fields: &[Option<&'a str>], index: usize) -> Result<&'a str, sqlx::Error> {
    fields
        .get(index)
        .copied()
        .flatten()
        .ok_or_else(|| sqlx::Error::Decode(format!("verify: NULL in column {index}").into()))
}

/// Field `index` of a bulk-read row as a 64-bit integer.
fn integer(fields: &[Option<&str>], index: usize) -> Result<i64, sqlx::Error> {
    let field = text(fields, index)?;
    field
        .parse()
        .map_err(|_| sqlx::Error::Decode(format!("verify: {field:?} is not an integer").into()))
}

/// What the one pass over books found.
struct Books {
    count: i64,
    platform_nanos: BTreeMap<String, i128>,
    negative_credit_line: Option<Violation>,
}

/// The postings' sum per book (from [`read_ledger`]) beside the cached balances, in both
/// directions (a cached balance without postings, postings without a cache). An account
/// book must cache exactly its postings' sum; a platform book is summed exactly and
/// reported. The first violation of each kind is the least by book key.
async fn books(
    conn: &mut AnyConnection,
    reader: &mut BulkReader,
    mut derived: FastMap<String, i128>,
) -> Result<Result<Books, Violation>, sqlx::Error> {
    let mut found = Books {
        count: 0,
        platform_nanos: BTreeMap::new(),
        negative_credit_line: None,
    };
    let mut mismatch: Option<(String, i64, i128)> = None;
    let mut negative: Option<(String, i64)> = None;
    let mut compare = |book: &str, cached: Option<i64>, derived: i128| {
        found.count += 1;
        if cached.is_none() && is_platform_book(book) {
            found.platform_nanos.insert(book.to_owned(), derived);
            return;
        }
        let cached = cached.unwrap_or(0);
        if i128::from(cached) != derived
            && mismatch.as_ref().is_none_or(|(b, ..)| book < b.as_str())
        {
            mismatch = Some((book.to_owned(), cached, derived));
        }
        if cached < 0
            && book.starts_with("credit_line:")
            && negative.as_ref().is_none_or(|(b, _)| book < b.as_str())
        {
            negative = Some((book.to_owned(), cached));
        }
    };
    let query = BulkQuery::new("book_balances", &["book", "balance_nanos"]);
    reader
        .scan(conn, &query, |row| {
            let book = text(row, 0)?;
            let sum = derived.remove(book).unwrap_or(0);
            compare(book, Some(integer(row, 1)?), sum);
            Ok(())
        })
        .await?;
    for (book, sum) in derived {
        compare(&book, None, sum);
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

/// Balance postings per pass of the usage check, about, so that its in-memory groups stay
/// bounded (a pass holds about one group per balance posting of its entries; see [`usage`]).
const USAGE_POSTINGS_PER_PASS: i64 = 4_000_000;

/// Hash maps of the usage check: its keys are ids from this database, not from a caller,
/// and it hashes two keys or more per record, so the faster hasher pays.
type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// Small integer names for the ids the usage check meets (accounts, entries), so that its
/// groups are a few machine words each instead of three strings.
#[derive(Default)]
struct Interner {
    index: FastMap<String, u32>,
    names: Vec<String>,
    /// The id given last: rows of one entry come together, so most lookups are this one.
    last: Option<u32>,
}

impl Interner {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.index.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        self.last = Some(id);
        id
    }

    fn get(&mut self, name: &str) -> Option<u32> {
        if let Some(last) = self.last
            && self.name(last) == name
        {
            return Some(last);
        }
        let id = self.index.get(name).copied()?;
        self.last = Some(id);
        Some(id)
    }

    fn name(&self, id: u32) -> &str {
        usize::try_from(id)
            .ok()
            .and_then(|id| self.names.get(id))
            .map_or("", String::as_str)
    }

    fn len(&self) -> usize {
        self.names.len()
    }
}

/// Slot `id` of a table indexed by interned id, grown with defaults as needed (`None` only
/// for an id beyond the address space).
fn slot<T: Default>(table: &mut Vec<T>, id: u32) -> Option<&mut T> {
    let index = usize::try_from(id).ok()?;
    if index >= table.len() {
        table.resize_with(index.checked_add(1)?, T::default);
    }
    table.get_mut(index)
}

/// The spender of a group charged to the payer itself (`-` in messages).
const NO_SPENDER: u32 = u32::MAX;

/// What one entry's postings, and a usage entry's records, add up to.
#[derive(Default)]
struct EntryTotals {
    /// All its postings: zero in a balanced entry.
    sum_nanos: i128,
    rated_nanos: i128,
    charged_nanos: i128,
    records: bool,
    usage: bool,
}

/// What the read of postings and usage records found.
struct Ledger {
    /// The first entry (by id) whose postings do not sum to zero.
    unbalanced: Option<Violation>,
    /// Every book with postings and their exact sum.
    book_nanos: FastMap<String, i128>,
    /// The least usage violation.
    usage: Option<Candidate>,
    usage_records: i64,
    /// The records' sums per rollup key, for [`rollups`].
    record_sums: RecordSums,
}

/// Reads the postings and the usage records once each, unsorted, in stored order, and sums
/// them in this process, for three checks: every entry balances, each book's sum (compared
/// with its cache by [`books`]), and the usage checks, in their order of precedence (the
/// first violation reported is the least (check, entry, book or account, spender or payer)
/// found):
///
/// 1. Per entry with records: the revenue it credited equals its records' cost.
/// 2. Every usage entry has records.
/// 3. Every record's payer is the one its account's billing names: the account itself, or
///    its manager under rollup billing (manager and rollup flag are fixed for life).
/// 4. Per usage entry, balance book and spender: records' cost and postings cancel out
///    (a debit of the wrong balance, a lost spender tag, records or postings missing on
///    either side).
///
/// The records of an entry are grouped per payer and spender beside the usage entries'
/// balance postings and compared. (Grouping and joining the same in SQL sorted or hashed
/// about a million groups per million records, several times slower than reading them.)
/// Memory is one small group per usage posting: above [`USAGE_POSTINGS_PER_PASS`] the
/// entries are split into ranges of ids, one pass per range. Ids compare as bytes here.
async fn read_ledger(
    conn: &mut AnyConnection,
    reader: &mut BulkReader,
    postings_per_pass: i64,
) -> Result<Ledger, sqlx::Error> {
    let mut accounts = Interner::default();
    // The payer each account's billing names, by interned account id.
    let mut expected_payer: Vec<Option<u32>> = Vec::new();
    let query = BulkQuery::new(
        "accounts",
        &[
            "id",
            "CASE WHEN kind = 'managed' AND rollup_billing <> 0 THEN manager_id ELSE id END",
        ],
    );
    reader
        .scan(conn, &query, |row| {
            let account = accounts.id(text(row, 0)?);
            let payer = accounts.id(text(row, 1)?);
            if let Some(slot) = slot(&mut expected_payer, account) {
                *slot = Some(payer);
            }
            Ok(())
        })
        .await?;
    // In the database's own order: each pass then selects its range with the same
    // comparison as the bounds were chosen by (a collation need not order as bytes do).
    let usage_entries: Vec<String> =
        sqlx::query_scalar("SELECT id FROM journal_entries WHERE kind = 'usage' ORDER BY id")
            .fetch_all(&mut *conn)
            .await?;
    let postings: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM postings WHERE book >= 'balance:' AND book < 'balance;'",
    )
    .fetch_one(&mut *conn)
    .await?;
    let passes = usize::try_from(postings / postings_per_pass + 1)
        .unwrap_or(1)
        .min(usage_entries.len().max(1));
    // Range bounds: pass i reads entries in [bounds[i], bounds[i + 1]), open at both ends.
    let mut bounds: Vec<Option<String>> = vec![None];
    for pass in 1..passes {
        bounds.push(
            usage_entries
                .get(pass * usage_entries.len() / passes)
                .cloned(),
        );
    }
    bounds.push(None);
    let mut ledger = Ledger {
        unbalanced: None,
        book_nanos: FastMap::default(),
        usage: None,
        usage_records: 0,
        record_sums: RecordSums::default(),
    };
    let mut unbalanced: Option<(String, i128)> = None;
    for (low, high) in bounds.iter().zip(bounds.iter().skip(1)) {
        let range = |column| TextRange {
            column,
            low: low.as_deref(),
            high: high.as_deref(),
        };
        let found = ledger_pass(
            conn,
            reader,
            range,
            &mut accounts,
            &expected_payer,
            &mut ledger.book_nanos,
            &mut ledger.record_sums,
        )
        .await?;
        ledger.usage_records += found.records;
        if let Some(candidate) = found.first {
            keep_least(&mut ledger.usage, candidate);
        }
        if let Some((entry, sum)) = found.unbalanced
            && unbalanced.as_ref().is_none_or(|(least, _)| entry < *least)
        {
            unbalanced = Some((entry, sum));
        }
    }
    ledger.unbalanced =
        unbalanced.map(|(entry, sum_nanos)| Violation::UnbalancedEntry { entry, sum_nanos });
    ledger.record_sums.accounts = accounts;
    Ok(ledger)
}

/// A violation found by the usage check, with its place in the order of precedence:
/// (check, entry, book or account, spender or payer).
type Candidate = (i64, String, String, String, Violation);

/// Keeps in `least` whichever of it and `candidate` comes first.
fn keep_least(least: &mut Option<Candidate>, candidate: Candidate) {
    let key = |c: &Candidate| (c.0, c.1.clone(), c.2.clone(), c.3.clone());
    if least
        .as_ref()
        .is_none_or(|current| key(&candidate) < key(current))
    {
        *least = Some(candidate);
    }
}

/// What one pass of [`read_ledger`] found.
struct LedgerPass {
    records: i64,
    /// The least usage violation.
    first: Option<Candidate>,
    /// The least entry whose postings do not sum to zero, and their sum.
    unbalanced: Option<(String, i128)>,
}

/// One pass of [`read_ledger`] over the entries whose ids lie in `range`, adding each
/// posting to its book's sum in `book_nanos`.
async fn ledger_pass<'r>(
    conn: &mut AnyConnection,
    reader: &mut BulkReader,
    range: impl Fn(&'r str) -> TextRange<'r>,
    accounts: &mut Interner,
    expected_payer: &[Option<u32>],
    book_nanos: &mut FastMap<String, i128>,
    record_sums: &mut RecordSums,
) -> Result<LedgerPass, sqlx::Error> {
    let mut entries = Interner::default();
    // By interned entry id.
    let mut totals: Vec<EntryTotals> = Vec::new();
    let query = BulkQuery {
        filter: Some("kind = 'usage'"),
        range: Some(range("id")),
        ..BulkQuery::new("journal_entries", &["id"])
    };
    reader
        .scan(conn, &query, |row| {
            if let Some(totals) = slot(&mut totals, entries.id(text(row, 0)?)) {
                totals.usage = true;
            }
            Ok(())
        })
        .await?;
    // (entry, payer, spender) → records' cost plus postings: zero when they agree.
    let mut groups: FastMap<(u32, u32, u32), i128> = FastMap::default();
    let mut records = 0_i64;
    let mut wrong_payer: Option<(String, String, String)> = None;
    let query = BulkQuery {
        range: Some(range("entry_id")),
        ..BulkQuery::new(
            "usage_records",
            &[
                "entry_id",
                "account_id",
                "payer_account_id",
                "cost_nanos",
                "occurred_at_ms",
                "product",
                "country_code",
                "number_type",
                "quantity",
                "billable_quantity",
            ],
        )
    };
    reader
        .scan(conn, &query, |row| {
            records += 1;
            let entry = entries.id(text(row, 0)?);
            let account = accounts.id(text(row, 1)?);
            let payer = accounts.id(text(row, 2)?);
            let cost = i128::from(integer(row, 3)?);
            let expected = usize::try_from(account)
                .ok()
                .and_then(|account| expected_payer.get(account).copied().flatten());
            if expected.is_some_and(|expected| expected != payer) {
                let key = (
                    entries.name(entry).to_owned(),
                    accounts.name(account).to_owned(),
                    accounts.name(payer).to_owned(),
                );
                if wrong_payer.as_ref().is_none_or(|current| key < *current) {
                    wrong_payer = Some(key);
                }
            }
            if let Some(totals) = slot(&mut totals, entry) {
                totals.rated_nanos += cost;
                totals.records = true;
            }
            let spender = if account == payer {
                NO_SPENDER
            } else {
                account
            };
            *groups.entry((entry, payer, spender)).or_default() += cost;
            record_sums.add(
                crate::clock::day_start(integer(row, 4)?),
                account,
                [text(row, 5)?, text(row, 6)?, text(row, 7)?],
                [1, integer(row, 8)?, integer(row, 9)?, integer(row, 3)?],
            );
            Ok(())
        })
        .await?;
    let query = BulkQuery {
        range: Some(range("entry_id")),
        ..BulkQuery::new(
            "postings",
            &["entry_id", "book", "spender_account_id", "amount_nanos"],
        )
    };
    reader
        .scan(conn, &query, |row| {
            let entry = entries.id(text(row, 0)?);
            let book = text(row, 1)?;
            let amount = i128::from(integer(row, 3)?);
            match book_nanos.get_mut(book) {
                Some(sum) => *sum += amount,
                None => {
                    book_nanos.insert(book.to_owned(), amount);
                }
            }
            let Some(totals) = slot(&mut totals, entry) else {
                return Ok(());
            };
            totals.sum_nanos += amount;
            if book == "platform:revenue" {
                totals.charged_nanos += amount;
            } else if let (true, Some(payer)) = (totals.usage, book.strip_prefix("balance:")) {
                let payer = accounts.id(payer);
                let spender = row
                    .get(2)
                    .copied()
                    .flatten()
                    .map_or(NO_SPENDER, |spender| accounts.id(spender));
                *groups.entry((entry, payer, spender)).or_default() += amount;
            }
            Ok(())
        })
        .await?;

    let mut unbalanced: Option<(String, i128)> = None;
    let mut first: Option<Candidate> = None;
    let mut offer = |candidate: Candidate| keep_least(&mut first, candidate);
    for (entry, totals) in (0..entries.len()).zip(&totals) {
        let name = entries
            .name(u32::try_from(entry).unwrap_or(u32::MAX))
            .to_owned();
        if totals.sum_nanos != 0 && unbalanced.as_ref().is_none_or(|(least, _)| name < *least) {
            unbalanced = Some((name.clone(), totals.sum_nanos));
        }
        if totals.records && totals.charged_nanos != totals.rated_nanos {
            offer((
                USAGE_MISMATCH,
                name.clone(),
                String::new(),
                String::new(),
                Violation::UsageMismatch {
                    entry: name,
                    charged_nanos: clamp(totals.charged_nanos),
                    rated_nanos: clamp(totals.rated_nanos),
                },
            ));
        } else if totals.usage && !totals.records {
            offer((
                ENTRY_WITHOUT_RECORDS,
                name.clone(),
                String::new(),
                String::new(),
                Violation::UsageEntryWithoutRecords { entry: name },
            ));
        }
    }
    if let Some((entry, account, payer)) = wrong_payer {
        offer((
            WRONG_PAYER,
            entry,
            account.clone(),
            payer.clone(),
            // Named by [`wrong_payer`] once chosen: the first such record by event id.
            Violation::WrongPayer {
                event_id: String::new(),
                account,
                payer,
                expected: String::new(),
            },
        ));
    }
    for ((entry, payer, spender), difference) in groups {
        if difference == 0 {
            continue;
        }
        let entry = entries.name(entry).to_owned();
        let book = format!("balance:{}", accounts.name(payer));
        let spender = if spender == NO_SPENDER {
            "-".to_owned()
        } else {
            accounts.name(spender).to_owned()
        };
        offer((
            PAYER_POSTING_MISMATCH,
            entry.clone(),
            book.clone(),
            spender.clone(),
            Violation::PayerPostingMismatch {
                entry,
                book,
                spender,
                difference_nanos: clamp(difference),
            },
        ));
    }
    Ok(LedgerPass {
        records,
        first,
        unbalanced,
    })
}

/// A rollup key: (bucket, account, product, country, number type), the texts interned.
type RollupKey = (i64, [u32; 4]);

/// Events, quantity, billable quantity and cost. The rollups hold 64-bit sums, so a sum
/// past that range cannot be what a rollup holds: saturating keeps the mismatch visible.
type RollupSums = [i64; 4];

/// The usage records' sums per UTC day, account, product, country and number type: what
/// the daily rollups must hold (about 60 bytes of memory per key).
#[derive(Default)]
struct RecordSums {
    /// The accounts' ids, interned as the usage check interned them.
    accounts: Interner,
    /// Products, countries and number types: a few dozen names.
    names: Interner,
    days: FastMap<RollupKey, RollupSums>,
}

impl RecordSums {
    /// Adds a record of interned `account` with the other texts of its key.
    fn add(&mut self, day_ms: i64, account: u32, texts: [&str; 3], sums: RollupSums) {
        let [product, country, number_type] = texts.map(|text| self.names.id(text));
        let key = (day_ms, [account, product, country, number_type]);
        add_sums(self.days.entry(key).or_default(), sums);
    }
}

fn add_sums(total: &mut RollupSums, sums: RollupSums) {
    for (total, value) in total.iter_mut().zip(sums) {
        *total = total.saturating_add(value);
    }
}

/// The rollups against the records: every daily rollup row, and every monthly one of the
/// closed days, must hold exactly the sums of the records of its key, and every key with
/// records must have its row. The first mismatch reported is the least (table, bucket, key
/// texts).
async fn rollups(
    conn: &mut AnyConnection,
    reader: &mut BulkReader,
    records: RecordSums,
) -> Result<Option<Violation>, sqlx::Error> {
    let RecordSums {
        mut accounts,
        mut names,
        days,
    } = records;
    // The monthly rollups hold the closed days only (see `usage::rollups`).
    let closed_until_ms = crate::usage::rollups::closed_until(conn).await?;
    let mut months: FastMap<RollupKey, RollupSums> = FastMap::default();
    for (&(day_ms, texts), sums) in days
        .iter()
        .filter(|((day_ms, _), _)| *day_ms < closed_until_ms)
    {
        add_sums(
            months
                .entry((crate::clock::month_start(day_ms), texts))
                .or_default(),
            *sums,
        );
    }
    for (table, mut expected) in [
        ("usage_rollups_daily", days),
        ("usage_rollups_monthly", months),
    ] {
        // (bucket, texts) → (rolled up, recorded), for the least mismatch.
        let mut least: Option<((i64, [String; 4]), String, String)> = None;
        let mut offer = |bucket: i64, texts: [&str; 4], rolled_up: String, recorded: String| {
            let key = (bucket, texts.map(str::to_owned));
            if least.as_ref().is_none_or(|(current, ..)| key < *current) {
                least = Some((key, rolled_up, recorded));
            }
        };
        let query = BulkQuery::new(
            table,
            &[
                "bucket_ms",
                "account_id",
                "product",
                "country_code",
                "number_type",
                "event_count",
                "quantity",
                "billable_quantity",
                "cost_nanos",
            ],
        );
        reader
            .scan(conn, &query, |row| {
                let bucket = integer(row, 0)?;
                let texts = [text(row, 1)?, text(row, 2)?, text(row, 3)?, text(row, 4)?];
                let held = [
                    integer(row, 5)?,
                    integer(row, 6)?,
                    integer(row, 7)?,
                    integer(row, 8)?,
                ];
                let [account, product, country, number_type] = texts;
                let ids = [
                    accounts.get(account),
                    names.get(product),
                    names.get(country),
                    names.get(number_type),
                ];
                let recorded = match ids {
                    [Some(a), Some(p), Some(c), Some(n)] => {
                        expected.remove(&(bucket, [a, p, c, n]))
                    }
                    _ => None,
                };
                if recorded != Some(held) {
                    offer(bucket, texts, sums_text(Some(held)), sums_text(recorded));
                }
                Ok(())
            })
            .await?;
        for ((bucket, [account, product, country, number_type]), recorded) in expected {
            let texts = [
                accounts.name(account),
                names.name(product),
                names.name(country),
                names.name(number_type),
            ];
            offer(bucket, texts, sums_text(None), sums_text(Some(recorded)));
        }
        if let Some(((bucket, [account, product, country, number_type]), rolled_up, recorded)) =
            least
        {
            return Ok(Some(Violation::RollupMismatch {
                table: table.to_owned(),
                key: format!(
                    "bucket {bucket}, account {account}, product {product}, \
                     country '{country}', number type {number_type}"
                ),
                rolled_up,
                recorded,
            }));
        }
    }
    Ok(None)
}

/// Sums as a violation names them.
fn sums_text(sums: Option<RollupSums>) -> String {
    match sums {
        Some([events, quantity, billable, cost]) => format!(
            "{events} events, quantity {quantity}, billable quantity {billable}, \
             cost {cost} nano-units"
        ),
        None => "nothing".to_owned(),
    }
}

/// A sum as the 64-bit figure a violation reports (saturated: only a corrupt ledger gets
/// there).
fn clamp(nanos: i128) -> i64 {
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

const USAGE_MISMATCH: i64 = 1;
const ENTRY_WITHOUT_RECORDS: i64 = 2;
const WRONG_PAYER: i64 = 3;
const PAYER_POSTING_MISMATCH: i64 = 4;

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
