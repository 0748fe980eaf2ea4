//! Payment amounts as the Telnyx API takes them: a JSON string of dollars and cents with
//! exactly two decimals (`"120.00"`). Anything else (a number, a sign, an exponent, one or
//! three decimals) is Telnyx's 10027; a well-formed amount outside the operator's bounds is
//! refused separately, saying the bounds.

use super::PaymentError;
use crate::money::{Money, MoneyParseError};

/// Reads `value` (the body field `field`) as dollars and cents within `min..=max`.
pub fn parse(
    value: Option<&serde_json::Value>,
    field: &'static str,
    min: Money,
    max: Money,
) -> Result<Money, PaymentError> {
    let text = match value {
        Some(serde_json::Value::String(text)) => text,
        None | Some(serde_json::Value::Null) => {
            return Err(PaymentError::Invalid {
                field,
                message: format!("{field} is required"),
            });
        }
        Some(_) => return Err(PaymentError::AmountFormat { field }),
    };
    let amount = dollars_and_cents(text).map_err(|error| match error {
        MoneyParseError::OutOfRange => out_of_range(field, min, max),
        MoneyParseError::Malformed | MoneyParseError::TooPrecise => {
            PaymentError::AmountFormat { field }
        }
    })?;
    if amount < min || amount > max {
        return Err(out_of_range(field, min, max));
    }
    Ok(amount)
}

fn out_of_range(field: &'static str, min: Money, max: Money) -> PaymentError {
    PaymentError::AmountOutOfRange {
        field,
        min: min.to_decimal_string(2),
        max: max.to_decimal_string(2),
    }
}

/// `digits.dd`, nothing else.
pub fn dollars_and_cents(text: &str) -> Result<Money, MoneyParseError> {
    let (whole, cents) = text.split_once('.').ok_or(MoneyParseError::Malformed)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(cents) || cents.len() != 2 {
        return Err(MoneyParseError::Malformed);
    }
    Money::parse_decimal(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(value: &serde_json::Value) -> Result<Money, PaymentError> {
        let min = Money::from_nanos(10_000_000_000);
        let max = Money::from_nanos(10_000_000_000_000);
        parse(Some(value), "amount", min, max)
    }

    #[test]
    fn only_dollars_and_cents_within_bounds_are_amounts() {
        assert_eq!(read(&json!("120.00")).unwrap().nanos(), 120_000_000_000);
        for format in [
            json!(120),
            json!("120"),
            json!("120.0"),
            json!("120.000"),
            json!("-5.00"),
            json!("+5.00"),
            json!("1e3"),
            json!(" 12.00"),
            json!("12.00 "),
            json!(".50"),
            json!(true),
        ] {
            assert!(
                matches!(read(&format), Err(PaymentError::AmountFormat { .. })),
                "{format}"
            );
        }
        for range in [
            json!("0.00"),
            json!("9.99"),
            json!("10000.01"),
            json!("99999999999999999999.00"),
        ] {
            assert!(
                matches!(read(&range), Err(PaymentError::AmountOutOfRange { .. })),
                "{range}"
            );
        }
        assert!(matches!(
            read(&json!(null)),
            Err(PaymentError::Invalid { .. })
        ));
    }
}
