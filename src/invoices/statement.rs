//! What an invoice says, and how it is derived from the ledger.
//!
//! Totals come from the postings of the payer's balance book (`balance:<account>`), grouped
//! by their entry's kind, split at the period's start (opening balance) and end. Lines come
//! from the same data at a finer grain: usage lines from the usage records the period's
//! entries charged to the payer, money lines from the other entries, one per entry. A
//! statement whose lines do not add up to its totals is refused.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};

use super::{Category, InvoiceError, Period, month_sql};
use crate::accounts::{Account, AccountId, AccountKind};
use crate::ledger::Book;
use crate::money::Money;
use crate::pricing::Product;

/// The paying account as the invoice names it (as it was at closing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payer {
    /// Account id.
    pub id: AccountId,
    /// Business (organization) name.
    pub business_name: String,
    /// Email.
    pub email: String,
}

/// A rollup-billing managed account whose usage the payer (its manager) pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The managed account.
    pub account_id: AccountId,
    /// Its business name at closing.
    pub name: String,
}

/// The journal entry behind a money line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineEntry {
    /// Entry id.
    pub id: String,
    /// Its kind as stored (`credit`, `card_payment` …).
    pub kind: String,
    /// When it was posted, ms.
    pub posted_at_ms: i64,
    /// Its reason, if it has one.
    pub description: Option<String>,
}

/// One line of an invoice. `amount` is the line's movement of the balance: usage negative,
/// money in positive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What kind of movement.
    pub category: Category,
    /// For usage of a rollup account: whose.
    pub section: Option<Section>,
    /// For usage: the product.
    pub product: Option<Product>,
    /// For late usage: the month it occurred in.
    pub usage_month: Option<Period>,
    /// For usage, when the invoice shows rates: the rate per rate unit.
    pub rate_nanos: Option<i64>,
    /// Usage events.
    pub event_count: i64,
    /// Quantity in the product's unit (seconds, parts, months).
    pub quantity: i64,
    /// Quantity after billing increments.
    pub billable_quantity: i64,
    /// For money lines: the entry.
    pub entry: Option<LineEntry>,
    /// The movement.
    pub amount: Money,
}

/// The balance movements of the period, per category, and the balance before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Balance at the period's start.
    pub opening: Money,
    /// Movement per category, in [`Category::ALL`] order.
    pub movements: [Money; 5],
}

impl Totals {
    /// The movement of `category`.
    pub fn of(&self, category: Category) -> Money {
        self.movements
            .get(
                Category::ALL
                    .iter()
                    .position(|c| *c == category)
                    .unwrap_or(0),
            )
            .copied()
            .unwrap_or_default()
    }

    fn slot(&mut self, category: Category) -> Option<&mut Money> {
        let index = Category::ALL.iter().position(|c| *c == category)?;
        self.movements.get_mut(index)
    }

    /// Balance at the period's end (saturating: balances are far inside `i64`).
    pub fn closing(&self) -> Money {
        self.movements
            .iter()
            .fold(self.opening, |sum, m| sum.checked_add(*m).unwrap_or(sum))
    }

    /// What is owed: the closing balance's shortfall below zero, else zero.
    pub fn amount_due(&self) -> Money {
        let closing = self.closing();
        if closing < Money::ZERO {
            Money::ZERO.checked_sub(closing).unwrap_or_default()
        } else {
            Money::ZERO
        }
    }
}

/// What an invoice says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Who pays.
    pub payer: Payer,
    /// The month.
    pub period: Period,
    /// Whether lines carry rates (never for a managed account).
    pub shows_rates: bool,
    /// Opening balance and movements.
    pub totals: Totals,
    /// Usage lines (own first, then each rollup account's), then money lines by date.
    pub lines: Vec<Line>,
}

impl Statement {
    /// The rollup accounts with usage on this invoice, in order.
    pub fn sections(&self) -> Vec<Section> {
        let mut seen: Vec<Section> = Vec::new();
        for section in self.lines.iter().filter_map(|l| l.section.as_ref()) {
            if !seen.iter().any(|s| s.account_id == section.account_id) {
                seen.push(section.clone());
            }
        }
        seen
    }

    /// Sum of the usage lines of one section (`None`: the payer's own).
    pub fn usage_of(&self, section: Option<AccountId>) -> Money {
        sum(self
            .lines
            .iter()
            .filter(|l| l.category == Category::Usage)
            .filter(|l| l.section.as_ref().map(|s| s.account_id) == section))
    }
}

fn sum<'a>(lines: impl Iterator<Item = &'a Line>) -> Money {
    lines.fold(Money::ZERO, |total, l| {
        total.checked_add(l.amount).unwrap_or(total)
    })
}

/// Whether `account` may see unit prices on its own invoice.
pub fn shows_rates(account: &Account) -> bool {
    account.kind != AccountKind::Managed
}

/// Derives the statement of `payer` for `period` from the ledger. Refuses one whose lines
/// do not add up to the ledger's totals.
pub async fn derive(
    conn: &mut AnyConnection,
    payer: &Account,
    period: Period,
) -> Result<Statement, InvoiceError> {
    let totals = totals(conn, payer.id, period).await?;
    let shows_rates = shows_rates(payer);
    let mut lines = usage_lines(conn, payer.id, period, shows_rates).await?;
    lines.extend(money_lines(conn, payer.id, period).await?);
    let statement = Statement {
        payer: Payer {
            id: payer.id,
            business_name: payer.organization_name.clone(),
            email: payer.email.clone(),
        },
        period,
        shows_rates,
        totals,
        lines,
    };
    if let Some(detail) = mismatch(&statement) {
        return Err(InvoiceError::DoesNotTieOut {
            account: payer.id,
            period,
            detail,
        });
    }
    Ok(statement)
}

/// Why the lines of `statement` do not add up to its totals, if they do not.
pub fn mismatch(statement: &Statement) -> Option<String> {
    Category::ALL.into_iter().find_map(|category| {
        let lines = sum(statement.lines.iter().filter(|l| l.category == category));
        let total = statement.totals.of(category);
        (lines != total).then(|| {
            format!(
                "{} lines sum to {} nano-units but the ledger moved {}",
                category.as_str(),
                lines.nanos(),
                total.nanos()
            )
        })
    })
}

/// Opening balance and movements per category, from the payer's postings.
async fn totals(
    conn: &mut AnyConnection,
    payer: AccountId,
    period: Period,
) -> Result<Totals, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, in_period, CAST(SUM(nanos) AS BIGINT) AS nanos FROM ( \
           SELECT e.kind AS kind, CASE WHEN e.created_at_ms < $2 THEN 0 ELSE 1 END AS in_period, \
             p.amount_nanos AS nanos \
           FROM postings p JOIN journal_entries e ON e.id = p.entry_id \
           WHERE p.book = $1 AND e.created_at_ms < $3 \
         ) moved GROUP BY kind, in_period",
    )
    .bind(Book::Balance(payer).key())
    .bind(period.start_ms())
    .bind(period.end_ms())
    .fetch_all(conn)
    .await?;
    let mut totals = Totals::default();
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let in_period: i64 = row.try_get("in_period")?;
        let nanos = Money::from_nanos(row.try_get("nanos")?);
        let slot = if in_period == 0 {
            Some(&mut totals.opening)
        } else {
            totals.slot(Category::of_entry_kind(&kind))
        };
        if let Some(slot) = slot {
            *slot = slot
                .checked_add(nanos)
                .ok_or_else(|| sqlx::Error::Protocol(format!("balance of {payer} out of range")))?;
        }
    }
    Ok(totals)
}

/// Usage lines: the payer's records charged in the period, per spender, product, month of
/// occurrence (late usage only) and rate (own usage, and only when rates are shown).
async fn usage_lines(
    conn: &mut AnyConnection,
    payer: AccountId,
    period: Period,
    shows_rates: bool,
) -> Result<Vec<Line>, InvoiceError> {
    let rate = if shows_rates {
        "CASE WHEN u.account_id = u.payer_account_id THEN u.rate_nanos ELSE -1 END"
    } else {
        "-1"
    };
    let sql = format!(
        "SELECT spender, section_name, product, usage_month, rate_nanos, COUNT(*) AS event_count, \
           CAST(SUM(quantity) AS BIGINT) AS quantity, \
           CAST(SUM(billable_quantity) AS BIGINT) AS billable_quantity, \
           CAST(SUM(cost_nanos) AS BIGINT) AS cost_nanos FROM ( \
           SELECT CASE WHEN u.account_id = u.payer_account_id THEN '' ELSE u.account_id END AS spender, \
             CASE WHEN u.account_id = u.payer_account_id THEN '' ELSE s.organization_name END AS section_name, \
             u.product AS product, \
             CASE WHEN u.occurred_at_ms < $2 THEN {month} ELSE '' END AS usage_month, \
             {rate} AS rate_nanos, u.quantity AS quantity, \
             u.billable_quantity AS billable_quantity, u.cost_nanos AS cost_nanos \
           FROM usage_records u JOIN accounts s ON s.id = u.account_id \
           WHERE u.payer_account_id = $1 AND u.created_at_ms >= $2 AND u.created_at_ms < $3 \
         ) charged GROUP BY spender, section_name, product, usage_month, rate_nanos \
         ORDER BY spender, usage_month, product, rate_nanos",
        month = month_sql(conn, "u.occurred_at_ms"),
    );
    let rows = sqlx::query(&sql)
        .bind(payer.to_string())
        .bind(period.start_ms())
        .bind(period.end_ms())
        .fetch_all(&mut *conn)
        .await?;
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        let spender: String = row.try_get("spender")?;
        let product: String = row.try_get("product")?;
        let month: String = row.try_get("usage_month")?;
        let rate_nanos: i64 = row.try_get("rate_nanos")?;
        let corrupt = |what: &str| InvoiceError::Corrupt(format!("usage record {what}"));
        let section = if spender.is_empty() {
            None
        } else {
            let account_id = AccountId::parse(&spender).ok_or_else(|| corrupt("account id"))?;
            Some(Section {
                account_id,
                name: row.try_get("section_name")?,
            })
        };
        let cost: i64 = row.try_get("cost_nanos")?;
        lines.push(Line {
            category: Category::Usage,
            section,
            product: Some(Product::parse(&product).ok_or_else(|| corrupt("product"))?),
            usage_month: if month.is_empty() {
                None
            } else {
                Some(Period::parse(&month).ok_or_else(|| corrupt("month"))?)
            },
            rate_nanos: (rate_nanos >= 0).then_some(rate_nanos),
            event_count: row.try_get("event_count")?,
            quantity: row.try_get("quantity")?,
            billable_quantity: row.try_get("billable_quantity")?,
            entry: None,
            amount: Money::from_nanos(cost.checked_neg().ok_or_else(|| corrupt("cost"))?),
        });
    }
    // Own usage first, then each rollup account's, by name.
    lines.sort_by(|a, b| {
        let key = |l: &Line| {
            l.section
                .as_ref()
                .map(|s| (1, s.name.clone(), s.account_id.to_string()))
                .unwrap_or((0, String::new(), String::new()))
        };
        key(a).cmp(&key(b))
    });
    Ok(lines)
}

/// One line per entry of the period that moved the balance and is not usage.
async fn money_lines(
    conn: &mut AnyConnection,
    payer: AccountId,
    period: Period,
) -> Result<Vec<Line>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.id AS id, e.kind AS kind, e.reason AS reason, e.created_at_ms AS created_at_ms, \
           CAST(SUM(p.amount_nanos) AS BIGINT) AS nanos \
         FROM postings p JOIN journal_entries e ON e.id = p.entry_id \
         WHERE p.book = $1 AND e.kind <> 'usage' AND e.created_at_ms >= $2 AND e.created_at_ms < $3 \
         GROUP BY e.id, e.kind, e.reason, e.created_at_ms ORDER BY e.created_at_ms, e.id",
    )
    .bind(Book::Balance(payer).key())
    .bind(period.start_ms())
    .bind(period.end_ms())
    .fetch_all(conn)
    .await?;
    let mut by_entry: BTreeMap<(i64, String), Line> = BTreeMap::new();
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let id: String = row.try_get("id")?;
        let posted_at_ms: i64 = row.try_get("created_at_ms")?;
        by_entry.insert(
            (posted_at_ms, id.clone()),
            Line {
                category: Category::of_entry_kind(&kind),
                section: None,
                product: None,
                usage_month: None,
                rate_nanos: None,
                event_count: 0,
                quantity: 0,
                billable_quantity: 0,
                entry: Some(LineEntry {
                    id,
                    kind,
                    posted_at_ms,
                    description: row.try_get("reason")?,
                }),
                amount: Money::from_nanos(row.try_get("nanos")?),
            },
        );
    }
    Ok(by_entry.into_values().collect())
}
