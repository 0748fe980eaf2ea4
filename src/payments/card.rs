//! Card entry types: a card number, its expiry and its security code. Each crosses one
//! fallible constructor; none has a `Display`, and their `Debug` shows only what may be
//! shown (the last four digits), so that no log line or error can carry them by accident.
//! Refusals never repeat the value refused.

use std::fmt;

use crate::sensitive::{CARD_DIGITS_MAX, CARD_DIGITS_MIN, luhn_valid};

/// A card number: 13 to 19 digits passing the Luhn check (spaces and dashes between digit
/// groups are accepted on entry and dropped).
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    /// Parses a typed card number.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let digits: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        if !digits.bytes().all(|b| b.is_ascii_digit())
            || !(CARD_DIGITS_MIN..=CARD_DIGITS_MAX).contains(&digits.len())
        {
            return Err("the card number must be 13 to 19 digits");
        }
        if !luhn_valid(digits.as_bytes()) {
            return Err("the card number is not valid (check for a typo)");
        }
        Ok(Self(digits))
    }

    /// The digits, for the gateway's eyes only.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The last four digits.
    pub fn last4(&self) -> &str {
        self.0
            .get(self.0.len().saturating_sub(4)..)
            .unwrap_or_default()
    }

    /// The card scheme, from the number's leading digits.
    pub fn brand(&self) -> &'static str {
        let prefix = |n: usize| {
            self.0
                .get(..n)
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0)
        };
        match (prefix(1), prefix(2), prefix(4)) {
            (4, _, _) => "visa",
            (_, 34 | 37, _) => "amex",
            (_, 51..=55, _) | (_, _, 2221..=2720) => "mastercard",
            (_, 65, _) | (_, _, 6011) => "discover",
            _ => "unknown",
        }
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber(••••{})", self.last4())
    }
}

/// A card's expiry month and year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    month: u32,
    year: i32,
}

/// Latest expiry year accepted, counted from now: cards are issued for at most a decade or
/// so, and a far-off year is a typo.
const EXPIRY_YEARS_AHEAD_MAX: i32 = 20;

impl Expiry {
    /// A month of 1–12 and a four-digit year, not before `today`'s month and at most 20
    /// years ahead.
    pub fn parse(month: i64, year: i64, today: chrono::NaiveDate) -> Result<Self, &'static str> {
        use chrono::Datelike;
        let month = u32::try_from(month)
            .ok()
            .filter(|m| (1..=12).contains(m))
            .ok_or("exp_month must be a month from 1 to 12")?;
        let year = i32::try_from(year)
            .ok()
            .filter(|y| (1000..=9999).contains(y))
            .ok_or("exp_year must be a four-digit year")?;
        if (year, month) < (today.year(), today.month()) {
            return Err("the card has expired");
        }
        if year > today.year() + EXPIRY_YEARS_AHEAD_MAX {
            return Err("exp_year is too far in the future");
        }
        Ok(Self { month, year })
    }

    /// The month, 1–12.
    pub fn month(self) -> u32 {
        self.month
    }

    /// The year, four digits.
    pub fn year(self) -> i32 {
        self.year
    }
}

/// A card security code: 3 digits, or 4 for American Express.
#[derive(Clone, PartialEq, Eq)]
pub struct Cvc(String);

impl Cvc {
    /// Parses a security code for a card of `brand`.
    pub fn parse(text: &str, brand: &str) -> Result<Self, &'static str> {
        let length = if brand == "amex" { 4 } else { 3 };
        if text.len() != length || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(if length == 4 {
                "the security code (CVC) of this card is 4 digits"
            } else {
                "the security code (CVC) must be 3 digits"
            });
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Debug for Cvc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cvc(•••)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_parse_and_never_show_in_debug() {
        let number = CardNumber::parse("4242 4242-4242 4242").unwrap();
        assert_eq!(number.digits(), "4242424242424242");
        assert_eq!(number.last4(), "4242");
        assert_eq!(number.brand(), "visa");
        assert_eq!(format!("{number:?}"), "CardNumber(••••4242)");
        assert_eq!(
            format!("{:?}", Cvc::parse("123", "visa").unwrap()),
            "Cvc(•••)"
        );
        assert!(CardNumber::parse("4242424242424241").is_err());
        assert!(CardNumber::parse("42424242").is_err());
        assert!(CardNumber::parse("4242x424242424242").is_err());
    }

    #[test]
    fn brands_follow_the_leading_digits() {
        let brand = |n: &str| CardNumber::parse(n).unwrap().brand();
        assert_eq!(brand("5555555555554444"), "mastercard");
        assert_eq!(brand("378282246310005"), "amex");
        assert_eq!(brand("6011111111111117"), "discover");
    }

    #[test]
    fn expiry_and_cvc_are_checked() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 3, 15).unwrap();
        assert!(Expiry::parse(3, 2026, today).is_ok());
        assert_eq!(Expiry::parse(2, 2026, today), Err("the card has expired"));
        assert!(Expiry::parse(13, 2027, today).is_err());
        assert!(Expiry::parse(1, 27, today).is_err());
        assert!(Cvc::parse("1234", "amex").is_ok());
        assert!(Cvc::parse("123", "amex").is_err());
        assert!(Cvc::parse("12a", "visa").is_err());
    }
}
