//! SQL for the ledger: posting entries and reading balances.

use std::collections::{BTreeSet, HashMap};

use sqlx::{AnyConnection, Row};

use super::{AccountBalance, Book, Entry, PostError};
use crate::accounts::AccountId;
use crate::money::{AMOUNT_ABS_MAX_NANOS, Money};

/// The largest cached balance, either way, that may still take a net change: any change
/// an entry can carry then still fits an `i64` (on SQLite an overflowing sum would silently
/// turn into a floating-point value).
const BALANCE_UPDATABLE_ABS_MAX_NANOS: i64 = i64::MAX - AMOUNT_ABS_MAX_NANOS;

/// Posts `entry` in the caller's transaction: the entry, its postings, and one update of
/// each touched account book's cached balance, in book order. On an error the caller must roll
/// back (dropping the transaction does).
pub async fn post_in_tx(
    conn: &mut AnyConnection,
    entry: &Entry,
    now_ms: i64,
) -> Result<(), PostError> {
    sqlx::query(
        "INSERT INTO journal_entries (id, kind, account_id, reason, created_by, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&entry.header.id)
    .bind(entry.header.kind.as_str())
    .bind(entry.header.account.map(|a| a.to_string()))
    .bind(entry.header.reason.as_deref())
    .bind(&entry.header.created_by)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    use crate::db::JsonColumn::{BigInt, Text};
    let postings: Vec<_> = entry
        .postings
        .iter()
        .enumerate()
        .map(|(seq, p)| {
            let seq = i64::try_from(seq).unwrap_or(i64::MAX);
            (
                entry.header.id.as_str(),
                seq,
                p.book.key(),
                p.amount.nanos(),
                p.spender.map(|s| s.to_string()),
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO postings (entry_id, seq, book, amount_nanos, spender_account_id) {}",
        crate::db::json_rows_select(conn, 1, &[Text, BigInt, Text, BigInt, Text])
    );
    sqlx::query(&sql)
        .bind(encode(&postings)?)
        .execute(&mut *conn)
        .await?;
    let net = entry
        .net_by_book()
        .map_err(|e| sqlx::Error::Protocol(format!("entry {}: {e}", entry.header.id)))?;
    let cached: BTreeSet<String> = entry
        .postings
        .iter()
        .filter(|p| p.book.is_cached())
        .map(|p| p.book.key())
        .collect();
    // One upsert for every touched account book, in book order, so that on PostgreSQL every
    // transaction takes its row locks in the same order and none waits crosswise. The
    // platform's counter-books have no row: nothing bounds them, and no transaction queues
    // on them.
    let books: Vec<(String, i64, i64)> = net
        .into_iter()
        .filter(|(book, _)| cached.contains(book))
        .map(|(book, amount)| (book, amount, now_ms))
        .collect();
    if books.is_empty() {
        return Ok(());
    }
    // A balance too close to the limit is not updated (the row does not count as
    // affected), which the count below turns into an error.
    let sql = format!(
        "INSERT INTO book_balances (book, balance_nanos, updated_at_ms) {} ORDER BY 1 \
         ON CONFLICT (book) DO UPDATE SET balance_nanos = book_balances.balance_nanos + excluded.balance_nanos, \
         updated_at_ms = excluded.updated_at_ms \
         WHERE book_balances.balance_nanos BETWEEN -{max} AND {max}",
        crate::db::json_rows_select(conn, 1, &[Text, BigInt, BigInt]),
        max = BALANCE_UPDATABLE_ABS_MAX_NANOS,
    );
    let updated = sqlx::query(&sql)
        .bind(encode(&books)?)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if usize::try_from(updated).ok() != Some(books.len()) {
        return Err(PostError::BalanceOutOfRange);
    }
    Ok(())
}

fn encode<T: serde::Serialize>(rows: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows)
        .map_err(|e| sqlx::Error::Protocol(format!("Failed to encode ledger rows: {e}")))
}

/// The cached balance of an account's book (zero if it has none yet). The platform's
/// counter-books have no cache: [`super::platform_totals`] sums them.
pub async fn book_balance(conn: &mut AnyConnection, book: Book) -> Result<Money, sqlx::Error> {
    let nanos: Option<i64> =
        sqlx::query_scalar("SELECT balance_nanos FROM book_balances WHERE book = $1")
            .bind(book.key())
            .fetch_optional(conn)
            .await?;
    Ok(Money::from_nanos(nanos.unwrap_or(0)))
}

/// Balance and credit limit of an account, in one query.
pub async fn account_balance(
    conn: &mut AnyConnection,
    account: AccountId,
) -> Result<AccountBalance, sqlx::Error> {
    let rows = sqlx::query("SELECT book, balance_nanos FROM book_balances WHERE book IN ($1, $2)")
        .bind(Book::Balance(account).key())
        .bind(Book::CreditLine(account).key())
        .fetch_all(conn)
        .await?;
    let mut balance = AccountBalance::default();
    for row in rows {
        let book: String = row.try_get("book")?;
        let amount = Money::from_nanos(row.try_get("balance_nanos")?);
        if book.starts_with("balance:") {
            balance.balance = amount;
        } else {
            balance.credit_limit = amount;
        }
    }
    Ok(balance)
}

/// [`account_balance`] of each of `accounts`, in one query (an account with no cached
/// books yet is absent: zero and no credit).
pub async fn account_balances(
    conn: &mut AnyConnection,
    accounts: &[AccountId],
) -> Result<HashMap<AccountId, AccountBalance>, sqlx::Error> {
    let mut balances: HashMap<AccountId, AccountBalance> = HashMap::new();
    let mut books: HashMap<String, (AccountId, bool)> = HashMap::with_capacity(accounts.len() * 2);
    for account in accounts {
        books.insert(Book::Balance(*account).key(), (*account, true));
        books.insert(Book::CreditLine(*account).key(), (*account, false));
    }
    if books.is_empty() {
        return Ok(balances);
    }
    let sql = format!(
        "SELECT book, balance_nanos FROM book_balances WHERE book IN ({})",
        crate::db::placeholders(1, books.len())
    );
    let mut query = sqlx::query(&sql).persistent(false);
    for key in books.keys() {
        query = query.bind(key.as_str());
    }
    let rows = query.fetch_all(conn).await?;
    for row in rows {
        let book: String = row.try_get("book")?;
        let Some((account, is_balance)) = books.get(&book) else {
            continue;
        };
        let amount = Money::from_nanos(row.try_get("balance_nanos")?);
        let figures = balances.entry(*account).or_default();
        if *is_balance {
            figures.balance = amount;
        } else {
            figures.credit_limit = amount;
        }
    }
    Ok(balances)
}

/// Locks a book's cached balance row for the rest of the transaction (creating it at
/// zero if needed), so decisions that read it are serialised across processes.
pub async fn lock_book(
    conn: &mut AnyConnection,
    book: Book,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO book_balances (book, balance_nanos, updated_at_ms) VALUES ($1, 0, $2) \
         ON CONFLICT (book) DO UPDATE SET updated_at_ms = book_balances.updated_at_ms",
    )
    .bind(book.key())
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}
