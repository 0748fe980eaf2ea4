//! Money: one integer newtype in nano-units of the currency.
//!
//! Invariant: no floating point touches an amount. Amounts cross the wire only as decimal
//! strings, converted here; rounding happens in one place, [`Money::to_decimal_string`],
//! with one rule (half away from zero to the requested number of decimals).

use std::fmt;

/// Nano-units per unit of currency (1 USD = 1,000,000,000 nano-USD): fine enough for
/// per-second telecom rates without rounding at rating time.
pub const NANOS_PER_UNIT: i64 = 1_000_000_000;

/// The largest amount, of either sign, that one movement, one rate or one batch of usage
/// may carry: 100 million units. Bounding every input keeps every sum of an entry, a batch
/// or a balance far from the limit of an `i64` of nano-units (about 9.2 billion units).
pub const AMOUNT_ABS_MAX_NANOS: i64 = 100_000_000 * NANOS_PER_UNIT;

/// Decimal places in `NANOS_PER_UNIT`.
const NANO_DECIMALS: u32 = 9;

/// An amount of money in nano-units. Checked arithmetic only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money {
    nanos: i64,
}

/// Why a decimal string is not an amount.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyParseError {
    /// Not of the form `-?digits(.digits)?`.
    #[error("amount must be a decimal string such as \"12.50\"")]
    Malformed,
    /// More than nine decimal places.
    #[error("amount has more than 9 decimal places")]
    TooPrecise,
    /// Larger than [`AMOUNT_ABS_MAX_NANOS`] either way.
    #[error("amount is out of range (at most 100000000 either way)")]
    OutOfRange,
}

impl Money {
    /// Zero.
    pub const ZERO: Money = Money { nanos: 0 };

    /// An amount from nano-units.
    pub const fn from_nanos(nanos: i64) -> Self {
        Self { nanos }
    }

    /// The amount in nano-units.
    pub const fn nanos(self) -> i64 {
        self.nanos
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.nanos.checked_add(other.nanos).map(Money::from_nanos)
    }

    /// `self - other`, or `None` on overflow.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.nanos.checked_sub(other.nanos).map(Money::from_nanos)
    }

    /// Parses `"12.5"`, `"-0.000000001"`, `"300"`: exact, no rounding, and within
    /// [`AMOUNT_ABS_MAX_NANOS`] either way.
    pub fn parse_decimal(text: &str) -> Result<Money, MoneyParseError> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
            return Err(MoneyParseError::Malformed);
        }
        if unsigned.ends_with('.') {
            return Err(MoneyParseError::Malformed);
        }
        let fraction_len =
            u32::try_from(fraction.len()).map_err(|_| MoneyParseError::TooPrecise)?;
        if fraction_len > NANO_DECIMALS {
            return Err(MoneyParseError::TooPrecise);
        }
        let whole_units: i64 = whole.parse().map_err(|_| MoneyParseError::OutOfRange)?;
        let fraction_value: i64 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| MoneyParseError::Malformed)?
        };
        let fraction_nanos = fraction_value * 10_i64.pow(NANO_DECIMALS - fraction_len);
        let magnitude = whole_units
            .checked_mul(NANOS_PER_UNIT)
            .and_then(|n| n.checked_add(fraction_nanos))
            .filter(|n| *n <= AMOUNT_ABS_MAX_NANOS)
            .ok_or(MoneyParseError::OutOfRange)?;
        Ok(Money::from_nanos(if negative {
            -magnitude
        } else {
            magnitude
        }))
    }

    /// The amount as a decimal string with `decimals` places (at most 9), rounded half away
    /// from zero. This is the only rounding of money for display.
    pub fn to_decimal_string(self, decimals: u32) -> String {
        let decimals = decimals.min(NANO_DECIMALS);
        let step = 10_i128.pow(NANO_DECIMALS - decimals);
        let nanos = i128::from(self.nanos);
        let magnitude = nanos.abs();
        let rounded = (magnitude + step / 2) / step;
        let scale = 10_i128.pow(decimals);
        let sign = if nanos < 0 && rounded != 0 { "-" } else { "" };
        let whole = rounded / scale;
        if decimals == 0 {
            return format!("{sign}{whole}");
        }
        let fraction = rounded % scale;
        let width = usize::try_from(decimals).unwrap_or(2);
        format!("{sign}{whole}.{fraction:0width$}")
    }
}

/// An exact sum of nano-units (any number of movements added up, beyond what one `Money`
/// holds) as a decimal string of currency units with all 9 places.
pub fn sum_to_decimal_string(nanos: i128) -> String {
    let scale = i128::from(NANOS_PER_UNIT);
    let sign = if nanos < 0 { "-" } else { "" };
    let magnitude = nanos.unsigned_abs();
    let scale = scale.unsigned_abs();
    let width = usize::try_from(NANO_DECIMALS).unwrap_or(9);
    format!("{sign}{}.{:0width$}", magnitude / scale, magnitude % scale)
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_string(NANO_DECIMALS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_beyond_one_amount_print_exactly() {
        assert_eq!(sum_to_decimal_string(0), "0.000000000");
        assert_eq!(sum_to_decimal_string(-1), "-0.000000001");
        // 10^15 units and one nano-unit: far beyond an i64 of nano-units.
        let big = 10_i128.pow(24) + 1;
        assert_eq!(sum_to_decimal_string(big), "1000000000000000.000000001");
        assert_eq!(
            sum_to_decimal_string(i128::MIN),
            "-170141183460469231731687303715.884105728"
        );
    }

    #[test]
    fn parses_and_prints_exactly() {
        let m = Money::parse_decimal("300.5").unwrap();
        assert_eq!(m.nanos(), 300_500_000_000);
        assert_eq!(m.to_decimal_string(2), "300.50");
        assert_eq!(Money::parse_decimal("-0.000000001").unwrap().nanos(), -1);
        assert_eq!(
            Money::parse_decimal("7").unwrap().to_decimal_string(2),
            "7.00"
        );
    }

    #[test]
    fn rounds_half_away_from_zero_once() {
        assert_eq!(Money::from_nanos(5_000_000).to_decimal_string(2), "0.01");
        assert_eq!(Money::from_nanos(4_999_999).to_decimal_string(2), "0.00");
        assert_eq!(Money::from_nanos(-5_000_000).to_decimal_string(2), "-0.01");
        assert_eq!(Money::from_nanos(-4_999_999).to_decimal_string(2), "0.00");
    }

    #[test]
    fn rejects_what_is_not_an_amount() {
        for bad in [
            "",
            "-",
            "1.",
            ".5",
            "1e3",
            "1,00",
            " 1",
            "NaN",
            "1.0000000001",
        ] {
            assert!(Money::parse_decimal(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            Money::parse_decimal("99999999999999999999"),
            Err(MoneyParseError::OutOfRange)
        );
        assert_eq!(
            Money::parse_decimal("-100000000.000000001"),
            Err(MoneyParseError::OutOfRange)
        );
        assert_eq!(
            Money::parse_decimal("100000000").unwrap().nanos(),
            AMOUNT_ABS_MAX_NANOS
        );
    }
}
