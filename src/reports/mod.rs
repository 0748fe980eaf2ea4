//! Usage reports: aggregated usage per product, dimension and metric, answered from the
//! rollups that charging keeps (`usage::rollups`), never from raw records.
//!
//! Prices stay hidden from managed accounts: a report that asks for a metric revealing them
//! (`cost`, or `billed_sec`, from which billing increments follow) is refused, and the
//! options list does not offer them.

pub mod catalog;
pub mod jobs;
pub mod query;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};

pub use catalog::{Dimension, Metric, ReportProduct};
pub use query::{Cell, RangeError, ReportRow, Scope, SortKey, TimeRange, UsageReport};

use crate::accounts::listing::PageRequest;
use crate::usage::rollups::DAY_MS;

/// Why a report request was refused. Each names the parameter to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// A required parameter is missing.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A value is not one the catalog knows; the text lists the valid ones.
    #[error("{detail}")]
    Invalid {
        /// The parameter.
        parameter: &'static str,
        /// What is wrong and what is valid.
        detail: String,
    },
    /// The caller may not see prices (a managed account).
    #[error(
        "pricing is managed by this account's manager: {0} is not available to it; ask for \
         count and quantities instead"
    )]
    PricesHidden(String),
}

impl ReportError {
    /// The parameter to blame.
    pub fn parameter(&self) -> &'static str {
        match self {
            Self::Missing(parameter) | Self::Invalid { parameter, .. } => parameter,
            Self::PricesHidden(_) => "metrics",
        }
    }
}

fn invalid(parameter: &'static str, detail: String) -> ReportError {
    ReportError::Invalid { parameter, detail }
}

/// A report request as it arrives (strings as sent).
#[derive(Debug, Default, Clone)]
pub struct ReportParams {
    /// `product`.
    pub product: Option<String>,
    /// `dimensions`, comma-separated.
    pub dimensions: Option<String>,
    /// `metrics`, comma-separated.
    pub metrics: Option<String>,
    /// `start_date`.
    pub start_date: Option<String>,
    /// `end_date`.
    pub end_date: Option<String>,
    /// `date_range`.
    pub date_range: Option<String>,
    /// Filters: the string form (`country_code:GB,direction:outbound`) and the bracket
    /// form (`filter[country_code]=GB`), merged.
    pub filters: Vec<(String, String)>,
    /// `sort`, comma-separated, `-` for descending.
    pub sort: Option<String>,
}

/// Who asks, as far as reports care.
#[derive(Debug, Clone, Copy)]
pub struct Audience {
    /// Whose usage.
    pub scope: Scope,
    /// Whether prices may be shown.
    pub may_see_prices: bool,
}

/// Splits a comma-joined list (the SDKs' array encoding), dropping empty items.
fn list(text: &str) -> Vec<&str> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn names<T: Copy>(items: &[T], name: fn(T) -> &'static str) -> String {
    items
        .iter()
        .map(|i| name(*i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a request against the catalog and the audience's rights.
pub fn build(
    params: &ReportParams,
    audience: Audience,
    page: PageRequest,
    now: DateTime<Utc>,
) -> Result<UsageReport, ReportError> {
    let product_name = params
        .product
        .as_deref()
        .ok_or(ReportError::Missing("product"))?;
    let product = ReportProduct::parse(product_name).ok_or_else(|| {
        invalid(
            "product",
            format!(
                "Unknown product '{product_name}'. Available products: {}.",
                names(&ReportProduct::ALL, ReportProduct::name)
            ),
        )
    })?;
    let dimensions = parse_dimensions(product, params, audience)?;
    let metrics = parse_metrics(product, params, audience)?;
    let range = time_range(params, now)?;
    let filters = parse_filters(product, params)?;
    let sort = parse_sort(params, &dimensions, &metrics, audience)?;
    Ok(UsageReport {
        product,
        dimensions,
        metrics,
        range,
        filters,
        sort,
        scope: audience.scope,
        page,
    })
}

fn dimension(product: ReportProduct, name: &str) -> Option<Dimension> {
    product
        .dimensions()
        .iter()
        .copied()
        .find(|d| d.name() == name)
}

fn parse_dimensions(
    product: ReportProduct,
    params: &ReportParams,
    audience: Audience,
) -> Result<Vec<Dimension>, ReportError> {
    let text = params
        .dimensions
        .as_deref()
        .ok_or(ReportError::Missing("dimensions"))?;
    let mut dimensions = Vec::new();
    // A report over several accounts is grouped per account, the account first.
    if matches!(audience.scope, Scope::ManagedAccountsOf(_)) {
        dimensions.push(Dimension::UserId);
    }
    for name in list(text) {
        let found = dimension(product, name).ok_or_else(|| {
            invalid(
                "dimensions",
                format!(
                    "Dimensions invalid values: '{name}'. Available dimensions for {}: {}.",
                    product.name(),
                    names(product.dimensions(), Dimension::name)
                ),
            )
        })?;
        if !dimensions.contains(&found) {
            dimensions.push(found);
        }
    }
    Ok(dimensions)
}

fn parse_metrics(
    product: ReportProduct,
    params: &ReportParams,
    audience: Audience,
) -> Result<Vec<Metric>, ReportError> {
    let text = params
        .metrics
        .as_deref()
        .ok_or(ReportError::Missing("metrics"))?;
    let allowed = product.metrics_for(audience.may_see_prices);
    let mut metrics = Vec::new();
    for name in list(text) {
        let found = product.metrics().iter().copied().find(|m| m.name() == name);
        match found {
            Some(metric) if !allowed.contains(&metric) => {
                return Err(ReportError::PricesHidden(metric.name().to_owned()));
            }
            Some(metric) => {
                if !metrics.contains(&metric) {
                    metrics.push(metric);
                }
            }
            None => {
                return Err(invalid(
                    "metrics",
                    format!(
                        "Metrics invalid values: '{name}'. Available metrics for {}: {}.",
                        product.name(),
                        names(&allowed, Metric::name)
                    ),
                ));
            }
        }
    }
    if metrics.is_empty() {
        return Err(ReportError::Missing("metrics"));
    }
    Ok(metrics)
}

/// Reads filters in both forms: `dimension:value` or `dimension=value` items separated by
/// commas in `filter`, and `filter[dimension]=value`.
fn parse_filters(
    product: ReportProduct,
    params: &ReportParams,
) -> Result<Vec<(Dimension, String)>, ReportError> {
    let mut filters = Vec::new();
    for (name, value) in &params.filters {
        let found = dimension(product, name).ok_or_else(|| {
            invalid(
                "filter",
                format!(
                    "Cannot filter on '{name}'. Filters for {} may name: {}.",
                    product.name(),
                    names(product.dimensions(), Dimension::name)
                ),
            )
        })?;
        filters.push((found, value.clone()));
    }
    Ok(filters)
}

/// Splits the string form of `filter` into (dimension, value) pairs.
pub fn parse_filter_string(text: &str) -> Result<Vec<(String, String)>, ReportError> {
    list(text)
        .into_iter()
        .map(|item| {
            item.split_once([':', '='])
                .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                .filter(|(name, value)| !name.is_empty() && !value.is_empty())
                .ok_or_else(|| {
                    invalid(
                        "filter",
                        format!(
                            "'{item}' is not a filter: write dimension:value, e.g. \
                             country_code:GB (several separated by commas)"
                        ),
                    )
                })
        })
        .collect()
}

fn parse_sort(
    params: &ReportParams,
    dimensions: &[Dimension],
    metrics: &[Metric],
    audience: Audience,
) -> Result<Vec<(SortKey, bool)>, ReportError> {
    let Some(text) = params.sort.as_deref() else {
        return Ok(Vec::new());
    };
    list(text)
        .into_iter()
        .map(|item| {
            let (descending, name) = match item.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, item.strip_prefix('+').unwrap_or(item)),
            };
            if let Some(d) = dimensions.iter().find(|d| d.name() == name) {
                return Ok((SortKey::Dimension(*d), descending));
            }
            if let Some(m) = metrics.iter().find(|m| m.name() == name) {
                return Ok((SortKey::Metric(*m), descending));
            }
            if !audience.may_see_prices && matches!(name, "cost" | "billed_sec") {
                return Err(ReportError::PricesHidden(name.to_owned()));
            }
            Err(invalid(
                "sort",
                format!(
                    "Cannot sort on '{name}': sort on a requested dimension or metric ({}).",
                    dimensions
                        .iter()
                        .map(|d| d.name())
                        .chain(metrics.iter().map(|m| m.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
        })
        .collect()
}

/// The range from `date_range`, or `start_date`/`end_date`, or the last 30 days and today.
fn time_range(params: &ReportParams, now: DateTime<Utc>) -> Result<TimeRange, ReportError> {
    let (from_ms, until_ms, parameter) = match (
        params.date_range.as_deref(),
        params.start_date.as_deref(),
        params.end_date.as_deref(),
    ) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(invalid(
                "date_range",
                "give date_range or start_date and end_date, not both".to_owned(),
            ));
        }
        (Some(range), None, None) => {
            let (from, until) = named_range(range, now)?;
            (from, until, "date_range")
        }
        (None, Some(start), Some(end)) => (
            instant("start_date", start)?,
            instant("end_date", end)?,
            "end_date",
        ),
        (None, Some(_), None) => return Err(ReportError::Missing("end_date")),
        (None, None, Some(_)) => return Err(ReportError::Missing("start_date")),
        (None, None, None) => {
            let (from, until) = named_range("last_30_days", now)?;
            (from, until, "date_range")
        }
    };
    TimeRange::new(from_ms, until_ms).map_err(|e| {
        let parameter = match e {
            RangeError::StartNotAtMidnight if parameter == "end_date" => "start_date",
            _ => parameter,
        };
        invalid(parameter, e.to_string())
    })
}

fn instant(parameter: &'static str, text: &str) -> Result<i64, ReportError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            invalid(
                parameter,
                format!("{parameter} must be a date-time such as 2026-01-01T00:00:00Z"),
            )
        })
}

/// `[from, until)` of a named range, in UTC days.
fn named_range(name: &str, now: DateTime<Utc>) -> Result<(i64, i64), ReportError> {
    let today = now.date_naive();
    let midnight = |day: NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis()
    };
    let first_of_month = today.with_day(1).unwrap_or(today);
    let next_month = first_of_month
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(today);
    let monday = today - TimeDelta::days(i64::from(today.weekday().num_days_from_monday()));
    let days = |n: i64| n * DAY_MS;
    let today_ms = midnight(today);
    Ok(match name {
        "today" => (today_ms, today_ms + days(1)),
        "yesterday" => (today_ms - days(1), today_ms),
        "this_week" => (midnight(monday), midnight(monday) + days(7)),
        "last_week" => (midnight(monday) - days(7), midnight(monday)),
        "this_month" | "month_to_date" => (midnight(first_of_month), midnight(next_month)),
        "last_month" => {
            let start = first_of_month
                .checked_sub_months(chrono::Months::new(1))
                .unwrap_or(first_of_month);
            (midnight(start), midnight(first_of_month))
        }
        _ => {
            let n = name
                .strip_prefix("last_")
                .and_then(|t| t.strip_suffix("_days"))
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| (1..RANGE_DAYS_LAST_MAX).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "date_range",
                        format!(
                            "'{name}' is not a date range: use today, yesterday, this_week, \
                             last_week, this_month, last_month or last_N_days (N from 1 to {})",
                            RANGE_DAYS_LAST_MAX - 1
                        ),
                    )
                })?;
            // The last N whole days and today so far.
            (today_ms - days(n), today_ms + days(1))
        }
    })
}

/// `last_N_days` takes N below this: N days and today make at most 31 days.
const RANGE_DAYS_LAST_MAX: i64 = query::RANGE_DAYS_MAX;

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::accounts::AccountId;

    fn audience(may_see_prices: bool) -> Audience {
        Audience {
            scope: Scope::Account(AccountId::generate()),
            may_see_prices,
        }
    }

    fn params(product: &str, dimensions: &str, metrics: &str) -> ReportParams {
        ReportParams {
            product: Some(product.to_owned()),
            dimensions: Some(dimensions.to_owned()),
            metrics: Some(metrics.to_owned()),
            ..ReportParams::default()
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 15, 10, 30, 0).unwrap()
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let error = build(
            &params("fax", "date", "count"),
            audience(true),
            PageRequest::default(),
            now(),
        )
        .unwrap_err();
        assert_eq!(error.parameter(), "product");
        assert!(
            error
                .to_string()
                .contains("sip-trunking, messaging, number-rental")
        );
        let error = build(
            &params("messaging", "date", "count,call_sec"),
            audience(true),
            PageRequest::default(),
            now(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("count, parts, cost"), "{error}");
    }

    #[test]
    fn price_revealing_metrics_are_refused_to_those_who_may_not_see_prices() {
        for metrics in ["cost", "count,billed_sec"] {
            let error = build(
                &params("sip-trunking", "date", metrics),
                audience(false),
                PageRequest::default(),
                now(),
            )
            .unwrap_err();
            assert!(matches!(error, ReportError::PricesHidden(_)), "{metrics}");
        }
        let mut by_cost = params("sip-trunking", "date", "count");
        by_cost.sort = Some("-cost".to_owned());
        assert!(matches!(
            build(&by_cost, audience(false), PageRequest::default(), now()),
            Err(ReportError::PricesHidden(_))
        ));
        assert!(
            build(
                &params("sip-trunking", "date", "count,call_sec"),
                audience(false),
                PageRequest::default(),
                now()
            )
            .is_ok()
        );
    }

    #[test]
    fn named_ranges_are_whole_utc_days() {
        let day = |y, m, d| {
            Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(
            named_range("today", now()).unwrap(),
            (day(2026, 3, 15), day(2026, 3, 16))
        );
        assert_eq!(
            named_range("last_month", now()).unwrap(),
            (day(2026, 2, 1), day(2026, 3, 1))
        );
        assert_eq!(
            named_range("last_7_days", now()).unwrap(),
            (day(2026, 3, 8), day(2026, 3, 16))
        );
        assert!(named_range("last_31_days", now()).is_err());
        assert!(named_range("someday", now()).is_err());
    }

    #[test]
    fn filters_read_in_the_string_form() {
        assert_eq!(
            parse_filter_string("country_code:GB, direction=outbound").unwrap(),
            [
                ("country_code".to_owned(), "GB".to_owned()),
                ("direction".to_owned(), "outbound".to_owned())
            ]
        );
        assert!(parse_filter_string("GB").is_err());
    }
}
