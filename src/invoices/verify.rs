//! The invoices' part of `verify-ledger`: every closed invoice still ties out to the ledger,
//! and invoice numbers run from 1 without a gap.
//!
//! One grouped pass sums every invoiced account's postings per month (UTC) and entry kind,
//! one sums every invoice's lines per category; each invoice is then checked in Rust
//! against both: its opening balance is the sum of the months before its period, each of
//! its movements the sum of its period's postings of that kind, its closing balance and
//! amount due follow from them, and its lines add up to each movement.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::{Category, invoice_number_text, month_sql};

/// A closed invoice that does not tie out, or a gap in the numbering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceViolation {
    /// A stored figure of an invoice differs from what the ledger (or the invoice's own
    /// other figures) give.
    #[error(
        "invoice {invoice} ({account}, {period}) states {figure} as {stored_nanos} nano-units but the ledger gives {derived_nanos}"
    )]
    Mismatch {
        /// Invoice number as printed.
        invoice: String,
        /// The account billed.
        account: String,
        /// The period.
        period: String,
        /// Which figure (`opening balance`, `usage`, `closing balance`, `usage lines` …).
        figure: String,
        /// What the invoice states.
        stored_nanos: i128,
        /// What it should state.
        derived_nanos: i128,
    },
    /// Invoice numbers that do not run 1, 2, 3 … up to the counter.
    #[error("invoice numbers have a gap: expected {expected}, found {found}")]
    NumberGap {
        /// The number expected next.
        expected: i64,
        /// The number found instead (or the counter's value).
        found: i64,
    },
}

/// Movements per category, in [`Category::ALL`] order.
type Sums = [i128; 5];

fn add(sums: &mut Sums, category: Category, nanos: i64) {
    if let Some(index) = Category::ALL.iter().position(|c| *c == category)
        && let Some(slot) = sums.get_mut(index)
    {
        *slot += i128::from(nanos);
    }
}

fn of(sums: &Sums, category: Category) -> i128 {
    Category::ALL
        .iter()
        .position(|c| *c == category)
        .and_then(|i| sums.get(i))
        .copied()
        .unwrap_or(0)
}

/// Checks every invoice; `Ok(Some(violation))` names the first one (lowest number) that
/// fails.
pub async fn verify(conn: &mut AnyConnection) -> Result<Option<InvoiceViolation>, sqlx::Error> {
    let monthly = monthly_movements(conn).await?;
    let lines = line_sums(conn).await?;
    let rows = sqlx::query(
        "SELECT id, invoice_number, account_id, period, opening_balance_nanos, usage_nanos, \
         credits_nanos, adjustments_nanos, payments_nanos, other_nanos, closing_balance_nanos, \
         amount_due_nanos FROM invoices ORDER BY invoice_number",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut expected_number: i64 = 1;
    for row in &rows {
        let number: i64 = row.try_get("invoice_number")?;
        if number != expected_number {
            return Ok(Some(InvoiceViolation::NumberGap {
                expected: expected_number,
                found: number,
            }));
        }
        expected_number += 1;
        if let Some(violation) = check(row, &monthly, &lines)? {
            return Ok(Some(violation));
        }
    }
    let counter: i64 = sqlx::query_scalar("SELECT last_number FROM invoice_counters WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    if counter != expected_number - 1 {
        return Ok(Some(InvoiceViolation::NumberGap {
            expected: expected_number - 1,
            found: counter,
        }));
    }
    Ok(None)
}

fn check(
    row: &sqlx::any::AnyRow,
    monthly: &HashMap<String, Vec<(String, Sums)>>,
    lines: &HashMap<String, Sums>,
) -> Result<Option<InvoiceViolation>, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let account: String = row.try_get("account_id")?;
    let period: String = row.try_get("period")?;
    let stored = |column: &str| -> Result<i128, sqlx::Error> {
        Ok(i128::from(row.try_get::<i64, _>(column)?))
    };
    let months = monthly.get(&account).map(Vec::as_slice).unwrap_or_default();
    let opening: i128 = months
        .iter()
        .filter(|(month, _)| month.as_str() < period.as_str())
        .map(|(_, sums)| sums.iter().sum::<i128>())
        .sum();
    let in_period = months
        .iter()
        .find(|(month, _)| *month == period)
        .map(|(_, sums)| *sums)
        .unwrap_or_default();
    let line_sums = lines.get(&id).copied().unwrap_or_default();
    let columns = [
        "usage_nanos",
        "credits_nanos",
        "adjustments_nanos",
        "payments_nanos",
        "other_nanos",
    ];
    let mut figures: Vec<(String, i128, i128)> = vec![(
        "opening balance".to_owned(),
        stored("opening_balance_nanos")?,
        opening,
    )];
    let mut closing = stored("opening_balance_nanos")?;
    for (category, column) in Category::ALL.into_iter().zip(columns) {
        let movement = stored(column)?;
        closing += movement;
        figures.push((
            category.as_str().to_owned(),
            movement,
            of(&in_period, category),
        ));
        figures.push((
            format!("{} lines", category.as_str()),
            of(&line_sums, category),
            movement,
        ));
    }
    figures.push((
        "closing balance".to_owned(),
        stored("closing_balance_nanos")?,
        closing,
    ));
    figures.push((
        "amount due".to_owned(),
        stored("amount_due_nanos")?,
        (-closing).max(0),
    ));
    let number: i64 = row.try_get("invoice_number")?;
    Ok(figures
        .into_iter()
        .find(|(_, stored, derived)| stored != derived)
        .map(
            |(figure, stored_nanos, derived_nanos)| InvoiceViolation::Mismatch {
                invoice: invoice_number_text(number),
                account: account.clone(),
                period: period.clone(),
                figure,
                stored_nanos,
                derived_nanos,
            },
        ))
}

/// Per invoiced account: its balance's movements per month and category, months in order.
async fn monthly_movements(
    conn: &mut AnyConnection,
) -> Result<HashMap<String, Vec<(String, Sums)>>, sqlx::Error> {
    let sql = format!(
        "SELECT book, month, kind, CAST(SUM(nanos) AS BIGINT) AS nanos FROM ( \
           SELECT p.book AS book, {month} AS month, e.kind AS kind, p.amount_nanos AS nanos \
           FROM postings p JOIN journal_entries e ON e.id = p.entry_id \
           WHERE p.book IN (SELECT DISTINCT 'balance:' || i.account_id FROM invoices i) \
         ) moved GROUP BY book, month, kind ORDER BY book, month",
        month = month_sql(conn, "e.created_at_ms"),
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    let mut by_account: HashMap<String, Vec<(String, Sums)>> = HashMap::new();
    for row in rows {
        let book: String = row.try_get("book")?;
        let month: String = row.try_get("month")?;
        let kind: String = row.try_get("kind")?;
        let account = book.trim_start_matches("balance:").to_owned();
        let months = by_account.entry(account).or_default();
        if months.last().is_none_or(|(last, _)| *last != month) {
            months.push((month, Sums::default()));
        }
        if let Some((_, sums)) = months.last_mut() {
            add(sums, Category::of_entry_kind(&kind), row.try_get("nanos")?);
        }
    }
    Ok(by_account)
}

/// Per invoice: the sum of its lines per category.
async fn line_sums(conn: &mut AnyConnection) -> Result<HashMap<String, Sums>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT invoice_id, category, CAST(SUM(amount_nanos) AS BIGINT) AS nanos \
         FROM invoice_lines GROUP BY invoice_id, category",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut sums: HashMap<String, Sums> = HashMap::new();
    for row in rows {
        let category: String = row.try_get("category")?;
        let Some(category) = Category::parse(&category) else {
            continue;
        };
        add(
            sums.entry(row.try_get("invoice_id")?).or_default(),
            category,
            row.try_get("nanos")?,
        );
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::super::Period;

    #[test]
    fn months_sort_as_periods() {
        let a = Period::parse("2025-12").unwrap().to_string();
        let b = Period::parse("2026-01").unwrap().to_string();
        assert!(a < b);
    }
}
