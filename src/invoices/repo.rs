//! SQL for invoices: numbering, writing an invoice with its lines, reading them back.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::statement::{Line, LineEntry, Payer, Section, Statement, Totals};
use super::{Category, Invoice, InvoiceError, Period};
use crate::accounts::AccountId;
use crate::accounts::listing::PageRequest;
use crate::billing::CURRENCY;
use crate::money::Money;
use crate::pricing::Product;

/// Accounts read per query when closing a period for everyone.
pub const CANDIDATES_PER_BATCH: u32 = 100;

const INVOICE_COLUMNS: &str = "id, account_id, period, invoice_number, file_id, \
    opening_balance_nanos, usage_nanos, credits_nanos, adjustments_nanos, payments_nanos, \
    other_nanos, shows_rates, platform_name, business_name, email, closed_by, created_at_ms";

fn corrupt(what: &str) -> InvoiceError {
    InvoiceError::Corrupt(what.to_owned())
}

/// Takes the next invoice number, locking the counter until the transaction ends: numbers
/// are handed out one transaction at a time, and a rolled-back one is handed out again.
pub async fn take_number(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE invoice_counters SET last_number = last_number + 1 WHERE id = 1 \
         RETURNING last_number",
    )
    .fetch_one(conn)
    .await
}

/// Writes a closed invoice and its lines.
pub async fn insert(
    conn: &mut AnyConnection,
    invoice: &Invoice,
    pdf: &[u8],
    pdf_sha256: &str,
) -> Result<(), sqlx::Error> {
    let s = &invoice.statement;
    let t = &s.totals;
    sqlx::query(
        "INSERT INTO invoices (id, account_id, period, period_start_ms, period_end_ms, \
         invoice_number, file_id, currency, opening_balance_nanos, usage_nanos, credits_nanos, \
         adjustments_nanos, payments_nanos, other_nanos, closing_balance_nanos, amount_due_nanos, \
         shows_rates, platform_name, business_name, email, pdf, pdf_sha256, closed_by, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
         $19, $20, $21, $22, $23, $24)",
    )
    .bind(&invoice.id)
    .bind(s.payer.id.to_string())
    .bind(s.period.to_string())
    .bind(s.period.start_ms())
    .bind(s.period.end_ms())
    .bind(invoice.number)
    .bind(&invoice.file_id)
    .bind(CURRENCY)
    .bind(t.opening.nanos())
    .bind(t.of(Category::Usage).nanos())
    .bind(t.of(Category::Credit).nanos())
    .bind(t.of(Category::Adjustment).nanos())
    .bind(t.of(Category::Payment).nanos())
    .bind(t.of(Category::Other).nanos())
    .bind(t.closing().nanos())
    .bind(t.amount_due().nanos())
    .bind(i64::from(s.shows_rates))
    .bind(&invoice.platform_name)
    .bind(&s.payer.business_name)
    .bind(&s.payer.email)
    .bind(pdf.to_vec())
    .bind(pdf_sha256)
    .bind(&invoice.closed_by)
    .bind(invoice.created_at_ms)
    .execute(&mut *conn)
    .await?;
    for (seq, line) in s.lines.iter().enumerate() {
        insert_line(conn, &invoice.id, seq, line).await?;
    }
    Ok(())
}

async fn insert_line(
    conn: &mut AnyConnection,
    invoice_id: &str,
    seq: usize,
    line: &Line,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO invoice_lines (invoice_id, seq, category, section_account_id, section_name, \
         product, usage_month, rate_nanos, event_count, quantity, billable_quantity, entry_id, \
         entry_kind, posted_at_ms, description, amount_nanos) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(invoice_id)
    .bind(i64::try_from(seq).unwrap_or(i64::MAX))
    .bind(line.category.as_str())
    .bind(line.section.as_ref().map(|s| s.account_id.to_string()))
    .bind(line.section.as_ref().map(|s| s.name.clone()))
    .bind(line.product.map(Product::as_str))
    .bind(line.usage_month.map(|m| m.to_string()))
    .bind(line.rate_nanos)
    .bind(line.event_count)
    .bind(line.quantity)
    .bind(line.billable_quantity)
    .bind(line.entry.as_ref().map(|e| e.id.clone()))
    .bind(line.entry.as_ref().map(|e| e.kind.clone()))
    .bind(line.entry.as_ref().map(|e| e.posted_at_ms))
    .bind(line.entry.as_ref().and_then(|e| e.description.clone()))
    .bind(line.amount.nanos())
    .execute(conn)
    .await?;
    Ok(())
}

fn invoice_from_row(row: &AnyRow, lines: Vec<Line>) -> Result<Invoice, InvoiceError> {
    let nanos = |column: &str| -> Result<Money, InvoiceError> {
        Ok(Money::from_nanos(row.try_get::<i64, _>(column)?))
    };
    let account: String = row.try_get("account_id")?;
    let period: String = row.try_get("period")?;
    let totals = Totals {
        opening: nanos("opening_balance_nanos")?,
        movements: [
            nanos("usage_nanos")?,
            nanos("credits_nanos")?,
            nanos("adjustments_nanos")?,
            nanos("payments_nanos")?,
            nanos("other_nanos")?,
        ],
    };
    Ok(Invoice {
        id: row.try_get("id")?,
        number: row.try_get("invoice_number")?,
        file_id: row.try_get("file_id")?,
        platform_name: row.try_get("platform_name")?,
        closed_by: row.try_get("closed_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        statement: Statement {
            payer: Payer {
                id: AccountId::parse(&account).ok_or_else(|| corrupt("invoice account"))?,
                business_name: row.try_get("business_name")?,
                email: row.try_get("email")?,
            },
            period: Period::parse(&period).ok_or_else(|| corrupt("invoice period"))?,
            shows_rates: row.try_get::<i64, _>("shows_rates")? != 0,
            totals,
            lines,
        },
    })
}

async fn lines_of(conn: &mut AnyConnection, invoice_id: &str) -> Result<Vec<Line>, InvoiceError> {
    let rows = sqlx::query(
        "SELECT category, section_account_id, section_name, product, usage_month, rate_nanos, \
         event_count, quantity, billable_quantity, entry_id, entry_kind, posted_at_ms, \
         description, amount_nanos FROM invoice_lines WHERE invoice_id = $1 ORDER BY seq",
    )
    .bind(invoice_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(line_from_row).collect()
}

fn line_from_row(row: &AnyRow) -> Result<Line, InvoiceError> {
    let category: String = row.try_get("category")?;
    let section_id: Option<String> = row.try_get("section_account_id")?;
    let product: Option<String> = row.try_get("product")?;
    let month: Option<String> = row.try_get("usage_month")?;
    let entry_id: Option<String> = row.try_get("entry_id")?;
    let section = section_id
        .map(|id| {
            Ok::<_, InvoiceError>(Section {
                account_id: AccountId::parse(&id).ok_or_else(|| corrupt("line section"))?,
                name: row
                    .try_get::<Option<String>, _>("section_name")?
                    .unwrap_or_default(),
            })
        })
        .transpose()?;
    let entry = entry_id
        .map(|id| {
            Ok::<_, InvoiceError>(LineEntry {
                id,
                kind: row
                    .try_get::<Option<String>, _>("entry_kind")?
                    .unwrap_or_default(),
                posted_at_ms: row
                    .try_get::<Option<i64>, _>("posted_at_ms")?
                    .unwrap_or_default(),
                description: row.try_get("description")?,
            })
        })
        .transpose()?;
    Ok(Line {
        category: Category::parse(&category).ok_or_else(|| corrupt("line category"))?,
        section,
        product: product
            .map(|p| Product::parse(&p).ok_or_else(|| corrupt("line product")))
            .transpose()?,
        usage_month: month
            .map(|m| Period::parse(&m).ok_or_else(|| corrupt("line month")))
            .transpose()?,
        rate_nanos: row.try_get("rate_nanos")?,
        event_count: row.try_get("event_count")?,
        quantity: row.try_get("quantity")?,
        billable_quantity: row.try_get("billable_quantity")?,
        entry,
        amount: Money::from_nanos(row.try_get("amount_nanos")?),
    })
}

/// The invoice of `account` for `period`, with its lines.
pub async fn find_by_period(
    conn: &mut AnyConnection,
    account: AccountId,
    period: Period,
) -> Result<Option<Invoice>, InvoiceError> {
    let sql =
        format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE account_id = $1 AND period = $2");
    let row = sqlx::query(&sql)
        .bind(account.to_string())
        .bind(period.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => {
            let id: String = row.try_get("id")?;
            let lines = lines_of(conn, &id).await?;
            invoice_from_row(&row, lines).map(Some)
        }
        None => Ok(None),
    }
}

/// One invoice by id, with its lines.
pub async fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Invoice>, InvoiceError> {
    let sql = format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => {
            let lines = lines_of(conn, id).await?;
            invoice_from_row(&row, lines).map(Some)
        }
        None => Ok(None),
    }
}

/// One page of an account's invoices (without their lines) and the total count.
pub async fn list(
    conn: &mut AnyConnection,
    account: AccountId,
    newest_first: bool,
    page: PageRequest,
) -> Result<(Vec<Invoice>, i64), InvoiceError> {
    let direction = if newest_first { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE account_id = $1 \
         ORDER BY period_start_ms {direction} LIMIT {} OFFSET {}",
        page.size(),
        page.offset()
    );
    let rows = sqlx::query(&sql)
        .bind(account.to_string())
        .fetch_all(&mut *conn)
        .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invoices WHERE account_id = $1")
        .bind(account.to_string())
        .fetch_one(&mut *conn)
        .await?;
    let invoices = rows
        .iter()
        .map(|row| invoice_from_row(row, Vec::new()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((invoices, total))
}

/// The stored PDF of an invoice and the account it bills.
pub async fn pdf(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<(AccountId, i64, Vec<u8>)>, InvoiceError> {
    let row = sqlx::query("SELECT account_id, invoice_number, pdf FROM invoices WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|row| {
        let account: String = row.try_get("account_id")?;
        Ok((
            AccountId::parse(&account).ok_or_else(|| corrupt("invoice account"))?,
            row.try_get("invoice_number")?,
            row.try_get("pdf")?,
        ))
    })
    .transpose()
}

/// Paying accounts that have no invoice for `period` yet, after `after` in id order: those
/// created before it ended, except rollup-billing managed accounts (their manager pays) and
/// accounts cancelled before it began whose balance did not move in it.
pub async fn accounts_to_close(
    conn: &mut AnyConnection,
    period: Period,
    after: &str,
) -> Result<Vec<AccountId>, sqlx::Error> {
    let sql = format!(
        "SELECT a.id FROM accounts a \
         WHERE a.created_at_ms < $2 AND a.id > $4 \
           AND NOT (a.kind = 'managed' AND a.rollup_billing <> 0) \
           AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.account_id = a.id AND i.period = $3) \
           AND (a.status <> 'cancelled' OR a.updated_at_ms >= $1 OR EXISTS ( \
             SELECT 1 FROM postings p JOIN journal_entries e ON e.id = p.entry_id \
             WHERE p.book = 'balance:' || a.id AND e.created_at_ms >= $1 AND e.created_at_ms < $2)) \
         ORDER BY a.id LIMIT {CANDIDATES_PER_BATCH}"
    );
    let ids: Vec<String> = sqlx::query_scalar(&sql)
        .bind(period.start_ms())
        .bind(period.end_ms())
        .bind(period.to_string())
        .bind(after)
        .fetch_all(conn)
        .await?;
    Ok(ids.iter().filter_map(|id| AccountId::parse(id)).collect())
}

/// Records that every paying account has its invoice for `period`.
pub async fn mark_complete(
    conn: &mut AnyConnection,
    period: Period,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO invoice_periods (period, completed_at_ms) VALUES ($1, $2) \
         ON CONFLICT (period) DO NOTHING",
    )
    .bind(period.to_string())
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// The latest period every paying account has its invoice for.
pub async fn latest_complete(conn: &mut AnyConnection) -> Result<Option<Period>, sqlx::Error> {
    let latest: Option<String> = sqlx::query_scalar("SELECT MAX(period) FROM invoice_periods")
        .fetch_one(conn)
        .await?;
    Ok(latest.as_deref().and_then(Period::parse))
}
