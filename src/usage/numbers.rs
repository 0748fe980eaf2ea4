//! What a destination number is: its country (ISO 3166 alpha-2) and kind (geographic,
//! mobile, toll-free …), from libphonenumber's metadata through the `phonenumber` crate.
//!
//! Derived once per record at ingestion and stored with it, so reports never parse numbers.
//! Parsing runs regular expressions of the metadata (microseconds per number), so results
//! are cached per number in a bounded map: real traffic repeats destinations.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use phonenumber::Type;
use phonenumber::metadata::DATABASE;

/// Numbers whose classification is kept; beyond it the cache starts over (a bound on memory,
/// not on correctness).
const CACHE_ENTRIES_MAX: usize = 200_000;

/// Compiled metadata patterns the library keeps (its default of 100 thrashes: the metadata
/// has thousands of patterns and every country uses several).
const PATTERN_CACHE_ENTRIES: usize = 20_000;

/// The lazy-DFA cache each metadata expression may grow, per thread that matches with it.
/// The library builds its expressions with the regex engine's default (2 MiB): with
/// destinations spread over many countries the ~900 expressions it compiles held ~550 KiB
/// each (~460 MiB in all, see BENCHMARKS.md). With 64 KiB they held ~180 MiB in all, and
/// classifying was no slower (the states a digit string visits are few).
const PATTERN_DFA_BYTES_MAX: usize = 64 * 1024;

/// A destination's country and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// ISO 3166 alpha-2 region, upper case; empty when the number belongs to no country
    /// (international services such as +800) or is not a valid number.
    pub country_code: String,
    /// One of [`NUMBER_TYPES`].
    pub number_type: &'static str,
}

/// Every number type a report can show.
pub const NUMBER_TYPES: [&str; 11] = [
    "geographic",
    "mobile",
    "geographic_or_mobile",
    "toll-free",
    "premium",
    "shared-cost",
    "personal",
    "voip",
    "pager",
    "uan",
    "unknown",
];

fn type_name(kind: Type) -> &'static str {
    match kind {
        Type::FixedLine => "geographic",
        Type::Mobile => "mobile",
        // Some plans (e.g. North America) do not tell fixed from mobile by the number.
        Type::FixedLineOrMobile => "geographic_or_mobile",
        Type::TollFree => "toll-free",
        Type::PremiumRate => "premium",
        Type::SharedCost => "shared-cost",
        Type::PersonalNumber => "personal",
        Type::Voip => "voip",
        Type::Pager => "pager",
        Type::Uan => "uan",
        _ => "unknown",
    }
}

fn cache() -> &'static Mutex<HashMap<String, Classification>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Classification>>> = OnceLock::new();
    CACHE.get_or_init(|| {
        DATABASE
            .cache()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_capacity(PATTERN_CACHE_ENTRIES);
        Mutex::new(HashMap::new())
    })
}

/// Classifies E.164 `digits` (without `+`).
pub fn classify(digits: &str) -> Classification {
    let cache = cache();
    if let Some(hit) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(digits)
    {
        return hit.clone();
    }
    let classification = classify_uncached(digits);
    let mut entries = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if entries.len() >= CACHE_ENTRIES_MAX {
        entries.clear();
    }
    entries.insert(digits.to_owned(), classification.clone());
    classification
}

/// Rebuilds the expressions the library compiled since the last call with a lazy-DFA cache
/// of [`PATTERN_DFA_BYTES_MAX`], from the same source and with the options the library
/// gives its metadata (whitespace ignored, as the metadata's patterns are laid out; its one
/// other pattern, `00[39]`, has none), so that they match alike.
/// Expressions are never evicted at the cache's capacity (the metadata has far fewer), so
/// each is rebuilt once.
fn bound_new_patterns() {
    static REBUILT: OnceLock<Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    let rebuilt = REBUILT.get_or_init(Mutex::default);
    let shared = DATABASE.cache();
    let mut patterns = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let mut rebuilt = rebuilt.lock().unwrap_or_else(PoisonError::into_inner);
    if patterns.len() == rebuilt.len() {
        return;
    }
    for (source, regex) in patterns.iter_mut() {
        if rebuilt.contains(source) {
            continue;
        }
        if let Ok(bounded) = regex::RegexBuilder::new(source)
            .ignore_whitespace(true)
            .dfa_size_limit(PATTERN_DFA_BYTES_MAX)
            .build()
        {
            *regex = bounded;
        }
        rebuilt.insert(source.clone());
    }
}

fn classify_uncached(digits: &str) -> Classification {
    let classification = parse_and_classify(digits);
    bound_new_patterns();
    classification
}

fn parse_and_classify(digits: &str) -> Classification {
    let Ok(number) = phonenumber::parse(None, format!("+{digits}")) else {
        return Classification {
            country_code: String::new(),
            number_type: "unknown",
        };
    };
    let country = number.country();
    let region = country.id().map(|id| id.as_ref().to_owned()).or_else(|| {
        // The library finds no region for some valid numbers (national numbers with a
        // leading zero, such as Italian fixed lines): the calling code's main region,
        // which the metadata lists first, is then the best answer it has.
        DATABASE
            .region(&country.code())
            .and_then(|regions| regions.into_iter().next())
            .filter(|region| *region != "001")
            .map(str::to_owned)
    });
    Classification {
        country_code: region.unwrap_or_default(),
        number_type: type_name(number.number_type(&DATABASE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_classified_by_the_library() {
        let cases = [
            ("442079460000", "GB", "geographic"),
            ("447400123456", "GB", "mobile"),
            ("448001111111", "GB", "toll-free"),
            ("4930123456", "DE", "geographic"),
            ("4915123456789", "DE", "mobile"),
            ("12015550123", "US", "geographic_or_mobile"),
            ("18005550199", "US", "toll-free"),
            ("80012345678", "", "toll-free"),
        ];
        for (digits, country, kind) in cases {
            let class = classify(digits);
            assert_eq!(
                (class.country_code.as_str(), class.number_type),
                (country, kind),
                "{digits}"
            );
            assert!(NUMBER_TYPES.contains(&class.number_type));
        }
        // Italian fixed lines keep their leading zero; the library finds no region for
        // them, the calling code's main one stands in.
        assert_eq!(classify("390612345678").country_code, "IT");
        assert_eq!(classify("999123").number_type, "unknown");
        assert_eq!(classify("1").country_code, "");
    }

    #[test]
    fn rebuilt_patterns_classify_as_the_library_built_them() {
        // Numbers of several plans and kinds, some invalid; read past our per-number cache.
        let numbers = [
            "442079460000",
            "447400123456",
            "448001111111",
            "4930123456",
            "4915123456789",
            "12015550123",
            "13654705085",
            "18005550199",
            "31460172156",
            "390612345678",
            "33612345678",
            "61412345678",
            "819012345678",
            "5511987654321",
            "27821234567",
            "80012345678",
            "999123",
        ];
        let before: Vec<Classification> = numbers.iter().map(|n| parse_and_classify(n)).collect();
        bound_new_patterns();
        let after: Vec<Classification> = numbers.iter().map(|n| parse_and_classify(n)).collect();
        assert_eq!(before, after);
        assert_eq!(after[8].country_code, "NL");
        assert_eq!(after[8].number_type, "geographic");
        assert_eq!(after[6].country_code, "CA");
    }
}
