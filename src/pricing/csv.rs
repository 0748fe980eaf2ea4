//! Price-list CSV: `product,prefix,rate,initial_increment_s,subsequent_increment_s`.
//!
//! A file is imported whole or not at all: every bad line is reported with its number and
//! reason, and a file with any bad line imports nothing.

use std::collections::HashSet;

use super::{Increments, Product, RateRow};
use crate::money::Money;

/// The header every file starts with.
pub const HEADER: &str = "product,prefix,rate,initial_increment_s,subsequent_increment_s";

/// Rows accepted in one file: far above any real rate deck, low enough to bound memory.
pub const ROWS_MAX: usize = 1_000_000;

/// Bad lines reported per file; the rest are counted, not listed.
pub const ERRORS_REPORTED_MAX: usize = 100;

/// Longest prefix: E.164 numbers have at most 15 digits.
pub const PREFIX_DIGITS_MAX: usize = 15;

/// The highest rate accepted: 9,000 per minute, part or month. Anything above is a typo,
/// and the bound keeps one event's cost within what one batch may charge: the longest call
/// (a week) rounded up by the longest increment bills 608,399 s, 91.3 million at this rate.
pub const RATE_MAX_NANOS: i64 = 9_000 * crate::money::NANOS_PER_UNIT;

/// Longest increment accepted, in seconds.
const INCREMENT_MAX_S: u32 = 3600;

/// One bad line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the file.
    pub line: usize,
    /// Why it was refused.
    pub message: String,
}

/// Parses a whole file; every bad line is reported (up to [`ERRORS_REPORTED_MAX`]).
pub fn parse(text: &str) -> Result<Vec<RateRow>, Vec<LineError>> {
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, l)| l.trim().trim_start_matches('\u{feff}'));
    if header != Some(HEADER) {
        return Err(vec![LineError {
            line: 1,
            message: format!("the first line must be the header `{HEADER}`"),
        }]);
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for (index, line) in lines {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if rows.len() >= ROWS_MAX {
            errors.push(LineError {
                line: number,
                message: format!("a file may hold at most {ROWS_MAX} rates"),
            });
            break;
        }
        // PostgreSQL cannot store a NUL in text, and no field may hold one.
        if line.contains('\0') {
            errors.push(LineError {
                line: number,
                message: "contains a NUL character, which no field may hold".to_owned(),
            });
            continue;
        }
        match parse_line(line) {
            Ok(row) if !seen.insert((row.product, row.prefix.clone())) => errors.push(LineError {
                line: number,
                message: format!(
                    "duplicate rate for {} prefix '{}'",
                    row.product.as_str(),
                    row.prefix
                ),
            }),
            Ok(row) => rows.push(row),
            Err(message) => errors.push(LineError {
                line: number,
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        errors.truncate(ERRORS_REPORTED_MAX);
        Err(errors)
    }
}

fn parse_line(line: &str) -> Result<RateRow, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [product, prefix, rate, initial, subsequent] = fields.as_slice() else {
        return Err(format!(
            "expected 5 comma-separated fields, found {}",
            fields.len()
        ));
    };
    let product = Product::parse(product).ok_or_else(|| format!("unknown product '{product}'"))?;
    let prefix = prefix.strip_prefix('+').unwrap_or(prefix);
    if prefix.len() > PREFIX_DIGITS_MAX || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "prefix '{prefix}' must be up to {PREFIX_DIGITS_MAX} digits (empty: catch-all)"
        ));
    }
    let rate_text = *rate;
    let rate = Money::parse_decimal(rate_text)
        .ok()
        .filter(|rate| (0..=RATE_MAX_NANOS).contains(&rate.nanos()))
        .ok_or_else(|| {
            format!(
                "rate '{rate_text}' must be a decimal from 0 to {}",
                Money::from_nanos(RATE_MAX_NANOS).to_decimal_string(2)
            )
        })?;
    let increments = match (product.is_voice(), *initial, *subsequent) {
        (true, initial, subsequent) => Some(parse_increments(initial, subsequent)?),
        (false, "", "") => None,
        (false, _, _) => {
            return Err(format!(
                "{} takes no billing increments; leave both empty",
                product.as_str()
            ));
        }
    };
    Ok(RateRow {
        product,
        prefix: prefix.to_owned(),
        rate_nanos: rate.nanos(),
        increments,
    })
}

fn parse_increments(initial: &str, subsequent: &str) -> Result<Increments, String> {
    let parse = |name: &str, text: &str| {
        text.parse::<u32>()
            .ok()
            .filter(|n| (1..=INCREMENT_MAX_S).contains(n))
            .ok_or_else(|| {
                format!(
                    "{name} '{text}' must be a whole number of seconds from 1 to {INCREMENT_MAX_S}"
                )
            })
    };
    let initial = parse("initial_increment_s", initial)?;
    let subsequent = parse("subsequent_increment_s", subsequent)?;
    Increments::new(initial, subsequent).ok_or_else(|| "invalid increments".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_good_file() {
        let text = format!(
            "{HEADER}\r\nvoice_outbound,1,0.0100,60,60\nvoice_outbound,,0.05,1,1\n\nsms_outbound,+44,0.004,,\nnumber_rental,1,1.00,,\n"
        );
        let rows = parse(&text).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].rate_nanos, 10_000_000);
        assert_eq!(rows[1].prefix, "");
        assert_eq!(rows[2].prefix, "44");
        assert!(rows[2].increments.is_none());
    }

    #[test]
    fn reports_every_bad_line_with_its_number() {
        let text = format!(
            "{HEADER}\nvoice_outbound,1,0.01,60,60\nfax,1,0.01,,\nvoice_outbound,1a,0.01,60,60\nvoice_outbound,2,-1,60,60\n\
             voice_outbound,3,0.01,,\nsms_outbound,1,0.01,1,1\nvoice_outbound,1,0.02,6,6\nsms_outbound,1\nvoice_outbound,4,1.0000000001,6,6\n\
             number_rental,5,9000.01,,\nnumber_rental,6,9000,,\n"
        );
        let errors = parse(&text).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert!(errors[8].message.contains("from 0 to 9000.00"));
        assert!(errors[0].message.contains("unknown product"));
        assert!(errors[5].message.contains("duplicate"));
    }

    #[test]
    fn refuses_a_missing_header() {
        assert_eq!(
            parse("voice_outbound,1,0.01,60,60\n").unwrap_err()[0].line,
            1
        );
        assert!(parse("").is_err());
    }

    #[test]
    fn the_costliest_event_fits_one_batch() {
        let longest = crate::pricing::Product::VoiceOutbound.quantity_max();
        let worst = Increments::new(INCREMENT_MAX_S, INCREMENT_MAX_S);
        let billed = crate::rating::billable_quantity(
            crate::pricing::Product::VoiceOutbound,
            longest,
            worst,
        );
        let cost = crate::rating::cost_nanos(
            crate::pricing::Product::VoiceOutbound,
            RATE_MAX_NANOS,
            billed,
        );
        assert!(cost.is_some_and(|c| c <= crate::money::AMOUNT_ABS_MAX_NANOS));
    }
}
