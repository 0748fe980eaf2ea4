//! Charges of a date range (Telnyx's charges summary and breakdown), from the same ledger
//! data as invoices: usage records and entries posted in the range, for the account that
//! pays them (a manager's include its rollup accounts' usage).
//!
//! Signs are those of a bill: a charge is positive, a credit negative.

use std::collections::BTreeMap;

use chrono::{Months, NaiveDate};
use sqlx::{AnyConnection, Row};

use crate::accounts::AccountId;
use crate::ledger::Book;
use crate::money::Money;
use crate::pricing::Product;

/// Longest range asked for at once, in days (Telnyx's limit).
pub const RANGE_DAYS_MAX: i64 = 31;

/// How far before a range a number's rental counts as "existing" rather than "new": two
/// months, so that a number rented every month is always found in the month before.
const RENTAL_LOOKBACK_MS: i64 = 62 * 24 * 3600 * 1000;

/// Why a date range was refused; each names the parameter to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// A required date is missing.
    #[error("{0} is required (a date such as 2026-01-01)")]
    Missing(&'static str),
    /// Not a `YYYY-MM-DD` date.
    #[error("{0} must be a date written YYYY-MM-DD, such as 2026-01-01")]
    Malformed(&'static str),
    /// The end is not after the start.
    #[error("end_date must be after start_date (end_date is exclusive)")]
    EndNotAfterStart,
    /// Longer than [`RANGE_DAYS_MAX`].
    #[error("the range may cover at most 31 days; end_date is exclusive")]
    TooLong,
}

impl RangeError {
    /// The parameter to blame.
    pub fn parameter(&self) -> &'static str {
        match self {
            Self::Missing(p) | Self::Malformed(p) => p,
            Self::EndNotAfterStart | Self::TooLong => "end_date",
        }
    }
}

/// A range of whole UTC days, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    start: NaiveDate,
    end: NaiveDate,
}

fn date(name: &'static str, text: &str) -> Result<NaiveDate, RangeError> {
    let well_formed = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    well_formed
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
        .filter(|d| (2000..=9999).contains(&chrono::Datelike::year(d)))
        .ok_or(RangeError::Malformed(name))
}

impl DateRange {
    /// Parses `start_date` and `end_date`. Without an end date, `end_default_month` makes it
    /// one month after the start (the breakdown's default); otherwise it is required.
    pub fn parse(
        start: Option<&str>,
        end: Option<&str>,
        end_default_month: bool,
    ) -> Result<Self, RangeError> {
        let start = date(
            "start_date",
            start.ok_or(RangeError::Missing("start_date"))?,
        )?;
        let end = match end {
            Some(text) => date("end_date", text)?,
            None if end_default_month => start
                .checked_add_months(Months::new(1))
                .ok_or(RangeError::Malformed("start_date"))?,
            None => return Err(RangeError::Missing("end_date")),
        };
        if end <= start {
            return Err(RangeError::EndNotAfterStart);
        }
        if (end - start).num_days() > RANGE_DAYS_MAX {
            return Err(RangeError::TooLong);
        }
        Ok(Self { start, end })
    }

    /// First day.
    pub fn start(&self) -> NaiveDate {
        self.start
    }

    /// The day after the last (exclusive).
    pub fn end(&self) -> NaiveDate {
        self.end
    }

    fn ms(day: NaiveDate) -> i64 {
        day.and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis()
    }

    /// First instant, ms.
    pub fn start_ms(&self) -> i64 {
        Self::ms(self.start)
    }

    /// First instant after, ms.
    pub fn end_ms(&self) -> i64 {
        Self::ms(self.end)
    }
}

/// Charged usage of one product (other than number rental).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductCharge {
    /// The product.
    pub product: Product,
    /// Quantity in its unit (seconds, parts).
    pub quantity: i64,
    /// What it cost.
    pub amount: Money,
}

/// Number rental, split into numbers new in the range and numbers rented before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RentalCharge {
    /// Numbers first rented in the range.
    pub new_numbers: i64,
    /// Their charge.
    pub new_amount: Money,
    /// Numbers also rented in the two months before the range.
    pub existing_numbers: i64,
    /// Their charge.
    pub existing_amount: Money,
}

/// An operator adjustment in the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentCharge {
    /// Charge (positive takes money from the account).
    pub amount: Money,
    /// Its reason.
    pub description: String,
    /// The day it was posted.
    pub date: NaiveDate,
}

/// Everything the summary lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Usage per product (number rental apart).
    pub products: Vec<ProductCharge>,
    /// Number rental, if any.
    pub rental: Option<RentalCharge>,
    /// Adjustments.
    pub adjustments: Vec<AdjustmentCharge>,
    /// Operator credits, as a (negative) charge.
    pub credits: Money,
}

fn neg(nanos: i64) -> Money {
    Money::from_nanos(nanos.checked_neg().unwrap_or(i64::MAX))
}

/// The charges `payer` paid in `range`.
pub async fn summary(
    conn: &mut AnyConnection,
    payer: AccountId,
    range: DateRange,
) -> Result<Summary, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT product, CAST(SUM(quantity) AS BIGINT) AS quantity, \
           CAST(SUM(cost_nanos) AS BIGINT) AS cost_nanos FROM usage_records \
         WHERE payer_account_id = $1 AND created_at_ms >= $2 AND created_at_ms < $3 \
           AND product <> 'number_rental' GROUP BY product ORDER BY product",
    )
    .bind(payer.to_string())
    .bind(range.start_ms())
    .bind(range.end_ms())
    .fetch_all(&mut *conn)
    .await?;
    let mut products = Vec::new();
    for row in rows {
        let product: String = row.try_get("product")?;
        if let Some(product) = Product::parse(&product) {
            products.push(ProductCharge {
                product,
                quantity: row.try_get("quantity")?,
                amount: Money::from_nanos(row.try_get("cost_nanos")?),
            });
        }
    }
    products.sort_by_key(|p| p.product.index());
    let rental = rental(conn, payer, range).await?;
    let (adjustments, credits) = money(conn, payer, range).await?;
    Ok(Summary {
        products,
        rental,
        adjustments,
        credits,
    })
}

async fn rental(
    conn: &mut AnyConnection,
    payer: AccountId,
    range: DateRange,
) -> Result<Option<RentalCharge>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT account_id, destination, in_range, CAST(SUM(cost_nanos) AS BIGINT) AS cost_nanos \
         FROM (SELECT account_id, destination, cost_nanos, \
                 CASE WHEN created_at_ms >= $2 THEN 1 ELSE 0 END AS in_range \
               FROM usage_records WHERE payer_account_id = $1 AND product = 'number_rental' \
                 AND created_at_ms >= $4 AND created_at_ms < $3) rented \
         GROUP BY account_id, destination, in_range",
    )
    .bind(payer.to_string())
    .bind(range.start_ms())
    .bind(range.end_ms())
    .bind(range.start_ms().saturating_sub(RENTAL_LOOKBACK_MS))
    .fetch_all(conn)
    .await?;
    // (account, number) -> (cost in range, rented before).
    let mut numbers: BTreeMap<(String, String), (Option<i64>, bool)> = BTreeMap::new();
    for row in rows {
        let key = (row.try_get("account_id")?, row.try_get("destination")?);
        let in_range: i64 = row.try_get("in_range")?;
        let cost: i64 = row.try_get("cost_nanos")?;
        let slot = numbers.entry(key).or_insert((None, false));
        if in_range == 1 {
            slot.0 = Some(cost);
        } else {
            slot.1 = true;
        }
    }
    let mut rental = RentalCharge::default();
    let mut any = false;
    for (cost, before) in numbers.into_values() {
        let Some(cost) = cost else { continue };
        any = true;
        let cost = Money::from_nanos(cost);
        if before {
            rental.existing_numbers += 1;
            rental.existing_amount = rental.existing_amount.checked_add(cost).unwrap_or_default();
        } else {
            rental.new_numbers += 1;
            rental.new_amount = rental.new_amount.checked_add(cost).unwrap_or_default();
        }
    }
    Ok(any.then_some(rental))
}

async fn money(
    conn: &mut AnyConnection,
    payer: AccountId,
    range: DateRange,
) -> Result<(Vec<AdjustmentCharge>, Money), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.kind AS kind, e.reason AS reason, e.created_at_ms AS created_at_ms, \
           CAST(SUM(p.amount_nanos) AS BIGINT) AS nanos \
         FROM postings p JOIN journal_entries e ON e.id = p.entry_id \
         WHERE p.book = $1 AND e.kind IN ('adjustment', 'credit') \
           AND e.created_at_ms >= $2 AND e.created_at_ms < $3 \
         GROUP BY e.id, e.kind, e.reason, e.created_at_ms ORDER BY e.created_at_ms, e.id",
    )
    .bind(Book::Balance(payer).key())
    .bind(range.start_ms())
    .bind(range.end_ms())
    .fetch_all(conn)
    .await?;
    let mut adjustments = Vec::new();
    let mut credits = Money::ZERO;
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let charge = neg(row.try_get("nanos")?);
        if kind == "credit" {
            credits = credits.checked_add(charge).unwrap_or(credits);
            continue;
        }
        let reason: Option<String> = row.try_get("reason")?;
        adjustments.push(AdjustmentCharge {
            amount: charge,
            description: reason
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| "Adjustment".to_owned()),
            date: crate::clock::from_epoch_ms(row.try_get("created_at_ms")?).date_naive(),
        });
    }
    Ok((adjustments, credits))
}

/// One rented number's charges in the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberCharge {
    /// E.164 with `+`.
    pub number: String,
    /// Kind of number (`local`, `mobile`, `toll_free` …).
    pub charge_type: String,
    /// The account renting it.
    pub owner_id: String,
    /// Its email.
    pub owner_email: String,
    /// Rental charged in the range.
    pub amount: Money,
}

/// Telnyx's `charge_type` for a stored number type.
fn charge_type(number_type: Option<&str>) -> String {
    match number_type {
        Some("geographic") | Some("geographic_or_mobile") => "local".to_owned(),
        Some(other) => other.replace('-', "_"),
        None => "unknown".to_owned(),
    }
}

/// The numbers `payer` paid rental for in `range`, by number.
pub async fn breakdown(
    conn: &mut AnyConnection,
    payer: AccountId,
    range: DateRange,
) -> Result<Vec<NumberCharge>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT u.destination AS destination, u.account_id AS account_id, a.email AS email, \
           MAX(u.number_type) AS number_type, CAST(SUM(u.cost_nanos) AS BIGINT) AS cost_nanos \
         FROM usage_records u JOIN accounts a ON a.id = u.account_id \
         WHERE u.payer_account_id = $1 AND u.product = 'number_rental' \
           AND u.created_at_ms >= $2 AND u.created_at_ms < $3 \
         GROUP BY u.destination, u.account_id, a.email ORDER BY u.destination, u.account_id",
    )
    .bind(payer.to_string())
    .bind(range.start_ms())
    .bind(range.end_ms())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let number_type: Option<String> = row.try_get("number_type")?;
            Ok(NumberCharge {
                number: format!("+{}", row.try_get::<String, _>("destination")?),
                charge_type: charge_type(number_type.as_deref()),
                owner_id: row.try_get("account_id")?,
                owner_email: row.try_get("email")?,
                amount: Money::from_nanos(row.try_get("cost_nanos")?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        let ok = DateRange::parse(Some("2026-01-01"), Some("2026-02-01"), false).unwrap();
        assert_eq!(ok.end_ms() - ok.start_ms(), 31 * 24 * 3600 * 1000);
        let default = DateRange::parse(Some("2026-01-31"), None, true).unwrap();
        assert_eq!(default.end().to_string(), "2026-02-28");
        for (start, end, error) in [
            (None, Some("2026-01-02"), RangeError::Missing("start_date")),
            (Some("2026-01-01"), None, RangeError::Missing("end_date")),
            (
                Some("2026-1-01"),
                Some("2026-01-02"),
                RangeError::Malformed("start_date"),
            ),
            (
                Some("2026-01-01"),
                Some("2026-02-30"),
                RangeError::Malformed("end_date"),
            ),
            (
                Some("2026-01-01T00:00:00Z"),
                Some("2026-01-02"),
                RangeError::Malformed("start_date"),
            ),
            (
                Some("2026-01-02"),
                Some("2026-01-02"),
                RangeError::EndNotAfterStart,
            ),
            (
                Some("2026-01-03"),
                Some("2026-01-02"),
                RangeError::EndNotAfterStart,
            ),
            (Some("2026-01-01"), Some("2026-02-02"), RangeError::TooLong),
        ] {
            assert_eq!(DateRange::parse(start, end, false), Err(error));
        }
    }
}
