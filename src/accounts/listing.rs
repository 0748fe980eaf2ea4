//! The query behind `GET /v2/managed_accounts`: filters, order and paging as domain values.

use super::types::{AccountStatus, fold};

/// Default page size of list endpoints (Telnyx).
pub const PAGE_SIZE_DEFAULT: u32 = 20;

/// Largest page size of the managed-accounts list (Telnyx: 1..=250).
pub const PAGE_SIZE_MAX: u32 = 250;

/// Highest page number accepted: beyond it the offset would overflow nothing useful.
pub const PAGE_NUMBER_MAX: u32 = 1_000_000;

/// Shortest text a `contains` filter accepts (Telnyx).
pub const CONTAINS_LENGTH_MIN: usize = 3;

/// Longest filter value accepted.
pub const FILTER_LENGTH_MAX: usize = 256;

/// Which statuses a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusFilter {
    /// Every status except cancelled, unless cancelled accounts are asked for.
    #[default]
    NotCancelled,
    /// Every status.
    All,
    /// Only accounts that can use the platform now (`active`/`enabled`).
    Enabled,
    /// Exactly this status.
    Only(AccountStatus),
}

/// What to sort on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Creation time.
    CreatedAt,
    /// Email, case-insensitively.
    Email,
}

/// Order of results: key and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    /// The key.
    pub key: SortKey,
    /// True for descending.
    pub descending: bool,
}

impl Default for Sort {
    /// Newest first (Telnyx: no `sort` means `created_at` descending).
    fn default() -> Self {
        Self {
            key: SortKey::CreatedAt,
            descending: true,
        }
    }
}

impl Sort {
    /// Parses `created_at`, `-created_at`, `email`, `-email`.
    pub fn parse(text: &str) -> Option<Self> {
        let (descending, name) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let key = match name {
            "created_at" => SortKey::CreatedAt,
            "email" => SortKey::Email,
            _ => return None,
        };
        Some(Self { key, descending })
    }
}

/// One page of a list: 1-based number and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    number: u32,
    size: u32,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            number: 1,
            size: PAGE_SIZE_DEFAULT,
        }
    }
}

impl PageRequest {
    /// A page, if `number ≥ 1` and `1 ≤ size ≤ size_max`.
    pub fn new(number: u32, size: u32, size_max: u32) -> Option<Self> {
        ((1..=PAGE_NUMBER_MAX).contains(&number) && (1..=size_max).contains(&size))
            .then_some(Self { number, size })
    }

    /// The page number.
    pub fn number(self) -> u32 {
        self.number
    }

    /// The page size.
    pub fn size(self) -> u32 {
        self.size
    }

    /// Rows to skip.
    pub fn offset(self) -> u64 {
        u64::from(self.number - 1) * u64::from(self.size)
    }

    /// Pages needed for `total` results.
    pub fn total_pages(self, total: u64) -> u64 {
        total.div_ceil(u64::from(self.size))
    }
}

/// A page of results with the total count.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// The request that produced it.
    pub request: PageRequest,
    /// Results across all pages.
    pub total_results: u64,
}

/// Filters of the managed-accounts list, already normalised for matching.
#[derive(Debug, Clone, Default)]
pub struct ManagedAccountFilter {
    pub(crate) email_contains: Option<String>,
    pub(crate) email_eq: Option<String>,
    pub(crate) organization_name_contains: Option<String>,
    pub(crate) organization_name_eq: Option<String>,
    pub(crate) status: StatusFilter,
}

/// Why a filter value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A `contains` value shorter than three characters.
    #[error("must be at least {CONTAINS_LENGTH_MIN} characters")]
    TooShort,
    /// Longer than any stored value could be.
    #[error("must be at most {FILTER_LENGTH_MAX} characters")]
    TooLong,
}

fn check_length(text: &str, min: usize) -> Result<(), FilterError> {
    let length = text.chars().count();
    if length < min {
        Err(FilterError::TooShort)
    } else if length > FILTER_LENGTH_MAX {
        Err(FilterError::TooLong)
    } else {
        Ok(())
    }
}

impl ManagedAccountFilter {
    /// Case-insensitive substring of the email.
    pub fn email_contains(&mut self, text: &str) -> Result<(), FilterError> {
        check_length(text, CONTAINS_LENGTH_MIN)?;
        self.email_contains = Some(fold(text));
        Ok(())
    }

    /// Exact email, compared by its unique key (case-insensitive, one form of the domain);
    /// text that is not a valid address can match nothing but is compared folded.
    pub fn email_eq(&mut self, text: &str) -> Result<(), FilterError> {
        check_length(text, 0)?;
        let key = super::Email::parse(text)
            .map(|email| email.normalized())
            .unwrap_or_else(|_| fold(text.trim()));
        self.email_eq = Some(key);
        Ok(())
    }

    /// Case-insensitive substring of the organization name.
    pub fn organization_name_contains(&mut self, text: &str) -> Result<(), FilterError> {
        check_length(text, CONTAINS_LENGTH_MIN)?;
        self.organization_name_contains = Some(fold(text));
        Ok(())
    }

    /// Exact organization name.
    pub fn organization_name_eq(&mut self, text: &str) -> Result<(), FilterError> {
        check_length(text, 0)?;
        self.organization_name_eq = Some(text.to_owned());
        Ok(())
    }

    /// Restricts statuses.
    pub fn status(&mut self, status: StatusFilter) {
        self.status = status;
    }

    /// Whether cancelled accounts are wanted beside the others (`include_cancelled_accounts`).
    pub fn include_cancelled(&mut self) {
        if self.status == StatusFilter::NotCancelled {
            self.status = StatusFilter::All;
        }
    }
}

/// A `LIKE` pattern matching `needle` anywhere, with `\` as the escape character.
pub(crate) fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }

    #[test]
    fn pages_count_up() {
        let page = PageRequest::new(2, 20, PAGE_SIZE_MAX).unwrap();
        assert_eq!(page.offset(), 20);
        assert_eq!(page.total_pages(41), 3);
        assert_eq!(page.total_pages(0), 0);
        assert!(PageRequest::new(0, 20, PAGE_SIZE_MAX).is_none());
        assert!(PageRequest::new(1, 251, PAGE_SIZE_MAX).is_none());
    }

    #[test]
    fn sort_parses_both_directions() {
        assert_eq!(Sort::parse("-email").unwrap().key, SortKey::Email);
        assert!(Sort::parse("-email").unwrap().descending);
        assert!(!Sort::parse("created_at").unwrap().descending);
        assert!(Sort::parse("balance").is_none());
    }
}
