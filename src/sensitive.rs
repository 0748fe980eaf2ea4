//! Card data that must never be stored or shown: detecting payment card numbers in free text
//! and redacting them (and gateway tokens) from anything a client or a log line sees.
//!
//! A customer may paste a card number into any field (a business name, an email); error
//! messages that echo a value, and log lines that carry one, would then repeat it. Every
//! error detail passes through [`redact_card_data`] on its way out, and free-text fields that
//! are stored refuse a card number outright ([`contains_card_number`]).

use std::borrow::Cow;

/// Fewest digits of a payment card number (ISO/IEC 7812 allows 8, but every scheme in use
/// issues at least 13).
pub const CARD_DIGITS_MIN: usize = 13;

/// Most digits of a payment card number (ISO/IEC 7812).
pub const CARD_DIGITS_MAX: usize = 19;

/// What replaces redacted card data.
pub const REDACTED: &str = "[redacted]";

/// The prefix of every gateway token Steward hands out or accepts; anything that starts
/// with it is treated as a raw token.
pub const TOKEN_PREFIX: &str = "tok_";

/// True when the digits pass the Luhn check that every card number carries.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A run of digits, possibly grouped by single spaces or dashes as people write card
/// numbers (`4242 4242 4242 4242`), as byte offsets into the text.
struct DigitRun {
    start: usize,
    end: usize,
    digits: Vec<u8>,
}

fn digit_runs(text: &str) -> Vec<DigitRun> {
    let bytes = text.as_bytes();
    let mut runs = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if !bytes.get(index).is_some_and(u8::is_ascii_digit) {
            index += 1;
            continue;
        }
        let start = index;
        let mut digits = Vec::new();
        let mut end = index;
        while let Some(byte) = bytes.get(index) {
            if byte.is_ascii_digit() {
                digits.push(*byte);
                index += 1;
                end = index;
            } else if matches!(byte, b' ' | b'-')
                && bytes.get(index + 1).is_some_and(u8::is_ascii_digit)
            {
                index += 1;
            } else {
                break;
            }
        }
        runs.push(DigitRun { start, end, digits });
    }
    runs
}

/// Whether a run of digits holds a card number: any window of 13 to 19 of its digits that
/// starts as the card networks' numbers do (2 to 6: Mastercard, American Express, Visa,
/// Discover and the others in use) and passes the Luhn check. (Long digit runs are then
/// often treated as card data, which is the safe side.)
fn holds_card_number(digits: &[u8]) -> bool {
    if digits.len() < CARD_DIGITS_MIN {
        return false;
    }
    (CARD_DIGITS_MIN..=CARD_DIGITS_MAX.min(digits.len())).any(|width| {
        digits.windows(width).any(|window| {
            window.first().is_some_and(|d| (b'2'..=b'6').contains(d)) && luhn_valid(window)
        })
    })
}

/// True when `text` holds something that looks like a payment card number.
pub fn contains_card_number(text: &str) -> bool {
    digit_runs(text)
        .iter()
        .any(|run| holds_card_number(&run.digits))
}

/// `text` with every card number and every raw gateway token replaced by `[redacted]`.
pub fn redact_card_data(text: &str) -> Cow<'_, str> {
    let card_runs: Vec<(usize, usize)> = digit_runs(text)
        .into_iter()
        .filter(|run| holds_card_number(&run.digits))
        .map(|run| (run.start, run.end))
        .collect();
    let token_runs = token_spans(text);
    if card_runs.is_empty() && token_runs.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut spans: Vec<(usize, usize)> = card_runs.into_iter().chain(token_runs).collect();
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in spans {
        if start < copied {
            // Overlapping spans: extend the one already redacted.
            copied = copied.max(end);
            continue;
        }
        out.push_str(text.get(copied..start).unwrap_or_default());
        out.push_str(REDACTED);
        copied = end;
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    Cow::Owned(out)
}

/// Byte spans of `tok_…` tokens (the prefix and the word characters after it).
fn token_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(found) = text.get(from..).and_then(|rest| rest.find(TOKEN_PREFIX)) {
        let start = from + found;
        let tail = text.get(start + TOKEN_PREFIX.len()..).unwrap_or_default();
        let length = tail
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let end = start + TOKEN_PREFIX.len() + length;
        spans.push((start, end));
        from = end;
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_card_numbers_and_refuses_typos() {
        assert!(luhn_valid(b"4242424242424242"));
        assert!(luhn_valid(b"378282246310005"));
        assert!(!luhn_valid(b"4242424242424241"));
        assert!(!luhn_valid(b""));
        assert!(!luhn_valid(b"42a2"));
    }

    #[test]
    fn card_numbers_are_found_however_they_are_written() {
        assert!(contains_card_number("Acme 4242424242424242 Ltd"));
        assert!(contains_card_number("4242 4242 4242 4242"));
        assert!(contains_card_number("4242-4242-4242-4242@example.com"));
        assert!(contains_card_number("call 00 4242424242424242 99"));
        // A card number followed by more digits (an expiry, a code) is still found.
        assert!(contains_card_number("4242424242424242 12 30 739"));
        assert!(!contains_card_number("Acme Ltd, est. 1999"));
        assert!(!contains_card_number("+1 415 555 0100"));
        assert!(!contains_card_number("order 424242424242"));
        // Two short numbers next to each other do not join up across other punctuation.
        assert!(!contains_card_number("4242424, 242424242"));
    }

    #[test]
    fn redaction_removes_card_numbers_and_tokens_and_keeps_the_rest() {
        let text = "'4242 4242 4242 4242' is not a valid email; token tok_sandbox_ab12 too";
        let redacted = redact_card_data(text);
        assert_eq!(
            redacted,
            "'[redacted]' is not a valid email; token [redacted] too"
        );
        assert!(matches!(
            redact_card_data("nothing here 12"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            redact_card_data("a 5555555555554444 b 6011111111111117"),
            "a [redacted] b [redacted]"
        );
    }
}
