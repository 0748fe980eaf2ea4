//! Domain types of accounts. Each crosses one fallible constructor; fields are private.

use std::fmt;

use uuid::Uuid;

/// Longest email accepted (RFC 5321 path limit).
pub const EMAIL_LENGTH_MAX: usize = 254;

/// Longest organization name accepted, in characters.
pub const ORGANIZATION_NAME_LENGTH_MAX: usize = 255;

/// Shortest password accepted, in characters.
pub const PASSWORD_LENGTH_MIN: usize = 8;

/// Longest password accepted, in characters: bounds argon2 work per request.
pub const PASSWORD_LENGTH_MAX: usize = 256;

/// Why a free-text field holding a payment card number is refused (it would be stored).
const CARD_NUMBER_REFUSED: &str =
    "must not contain a payment card number; card numbers are entered only in the card form";

/// An account's id (a UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(Uuid);

impl AccountId {
    /// A new, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses the canonical text form; anything else is not an id.
    pub fn parse(text: &str) -> Option<Self> {
        Uuid::try_parse(text).ok().map(Self)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Why a field value was refused; the message is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// An email address, as given (case kept), with the key that makes it unique.
///
/// Two spellings of one mailbox must not become two accounts, and an address must not be
/// able to pass for another one: the key lower-cases the local part and maps the domain to
/// its one ASCII form (UTS-46: `bücher.example` and `xn--bcher-kva.example` are one
/// domain); invisible characters (zero-width spaces, bidi controls …) and parts mixing
/// scripts (a Cyrillic `а` among Latin letters) are refused, because they exist only to
/// make one address look like another.
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    text: String,
    normalized: String,
}

/// The reserved top-level domain of released emails ([`Email::tombstone`]): RFC 2606 keeps
/// `.invalid` from ever being a real domain, and [`Email::parse`] refuses it, so a
/// tombstone can never collide with an address someone registers.
const TOMBSTONE_DOMAIN: &str = "released.invalid";

impl Email {
    /// Parses an address: trimmed, at most 254 characters, one `@`, a dotted domain that
    /// maps to ASCII under UTS-46, no invisible characters, no part mixing scripts.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let text = text.trim();
        if crate::sensitive::contains_card_number(text) {
            return Err(InvalidValue(CARD_NUMBER_REFUSED.to_owned()));
        }
        let invalid = || InvalidValue(format!("'{text}' is not a valid email address"));
        if text.is_empty() || text.len() > EMAIL_LENGTH_MAX {
            return Err(invalid());
        }
        if let Some(c) = text.chars().find(|c| c.is_control() || is_invisible(*c)) {
            return Err(InvalidValue(format!(
                "the email address contains an invisible or control character (U+{:04X}); \
                 such characters make one address look like another",
                u32::from(c)
            )));
        }
        let (local, domain) = text.rsplit_once('@').ok_or_else(invalid)?;
        // Quoted locals and IP-literal domains are valid RFC 5322 but never a real sign-in.
        if text.contains(['"', ' ', '[', ']']) || !domain.contains('.') || domain.ends_with('.') {
            return Err(invalid());
        }
        let ascii_domain = domain_to_ascii(domain).ok_or_else(invalid)?;
        // Scripts are judged on the domain as it reads, so that a look-alike written in
        // punycode (`xn--…`) is caught as surely as one written in Unicode.
        let readable_domain = domain_to_unicode(&ascii_domain).ok_or_else(invalid)?;
        for part in std::iter::once(local).chain(readable_domain.split('.')) {
            if !unicode_security::MixedScript::is_single_script(part) {
                return Err(InvalidValue(format!(
                    "'{part}' mixes letters of different scripts (for example Latin and \
                     Cyrillic), which makes the address look like another one; \
                     write it in one script"
                )));
            }
        }
        if ascii_domain == TOMBSTONE_DOMAIN || ascii_domain.ends_with(".invalid") {
            return Err(InvalidValue(
                "addresses under the reserved .invalid domain cannot be used".to_owned(),
            ));
        }
        if !email_address::EmailAddress::is_valid(&format!("{local}@{ascii_domain}")) {
            return Err(invalid());
        }
        Ok(Self {
            text: text.to_owned(),
            normalized: format!("{}@{ascii_domain}", local.to_lowercase()),
        })
    }

    /// The address a cancelled account keeps once its email is released: unique (it names
    /// the account) and under a domain no real address can have.
    pub fn tombstone(account: AccountId) -> Self {
        let text = format!("cancelled-{account}@{TOMBSTONE_DOMAIN}");
        Self {
            normalized: text.clone(),
            text,
        }
    }

    /// The key that makes emails unique: lower-cased local part, ASCII (UTS-46) domain.
    pub fn normalized(&self) -> String {
        self.normalized.clone()
    }

    /// The local part and the domain.
    pub fn split(&self) -> (&str, &str) {
        self.text.rsplit_once('@').unwrap_or((&self.text, ""))
    }
}

/// A domain in its one ASCII form (UTS-46, strict: STD3 rules, hyphen rules, DNS lengths),
/// lower-cased; `None` if it is not a valid domain.
fn domain_to_ascii(domain: &str) -> Option<String> {
    use idna::AsciiDenyList;
    use idna::uts46::{DnsLength, Hyphens, Uts46};
    Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Check,
            DnsLength::Verify,
        )
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// A domain's readable (Unicode) form, or `None` if its punycode is not valid.
fn domain_to_unicode(ascii: &str) -> Option<String> {
    use idna::AsciiDenyList;
    use idna::uts46::{Hyphens, Uts46};
    let (text, result) =
        Uts46::new().to_unicode(ascii.as_bytes(), AsciiDenyList::STD3, Hyphens::Check);
    result.ok().map(|()| text.into_owned())
}

/// Characters that render as nothing (Unicode Default_Ignorable_Code_Point: zero-width
/// spaces and joiners, bidi controls, soft hyphens, variation selectors, tags …).
fn is_invisible(c: char) -> bool {
    use icu_properties::CodePointSetData;
    use icu_properties::props::DefaultIgnorableCodePoint;
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Email {
    // Emails are personal data: never in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email([redacted])")
    }
}

/// An organization (business) name: trimmed, 1..=255 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationName(String);

impl OrganizationName {
    /// Parses a name.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let text = text.trim();
        if text.is_empty() {
            return Err(InvalidValue("must not be blank".to_owned()));
        }
        if text.chars().count() > ORGANIZATION_NAME_LENGTH_MAX {
            return Err(InvalidValue(format!(
                "must be at most {ORGANIZATION_NAME_LENGTH_MAX} characters"
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(InvalidValue(
                "must not contain control characters".to_owned(),
            ));
        }
        if crate::sensitive::contains_card_number(text) {
            return Err(InvalidValue(CARD_NUMBER_REFUSED.to_owned()));
        }
        Ok(Self(text.to_owned()))
    }

    /// The case-folded form used for case-insensitive matching.
    pub fn folded(&self) -> String {
        fold(&self.0)
    }
}

impl AsRef<str> for OrganizationName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Case folding used for every case-insensitive comparison (stored and queried alike).
pub fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// A plaintext password on its way to being hashed. Never printed.
pub struct Password(String);

impl Password {
    /// Accepts 8..=256 characters.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let length = text.chars().count();
        if length < PASSWORD_LENGTH_MIN {
            return Err(InvalidValue(format!(
                "must be at least {PASSWORD_LENGTH_MIN} characters"
            )));
        }
        if length > PASSWORD_LENGTH_MAX {
            return Err(InvalidValue(format!(
                "must be at most {PASSWORD_LENGTH_MAX} characters"
            )));
        }
        Ok(Self(text.to_owned()))
    }

    /// Hashes with argon2id and a fresh salt; the result is a PHC string.
    pub fn hash(&self) -> anyhow::Result<String> {
        use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("Failed to hash a password: {e}"))
    }

    /// Whether this password is the one `phc` (an argon2 PHC string made by
    /// [`Password::hash`]) was made from. A stored string that does not parse matches nothing.
    /// Deliberately slow, like hashing: run it off the async workers.
    pub fn verify(&self, phc: &str) -> bool {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(phc).is_ok_and(|hash| {
            argon2::Argon2::default()
                .verify_password(self.0.as_bytes(), &hash)
                .is_ok()
        })
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// What an account is in the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// An ordinary customer.
    Standard,
    /// Approved by the operator to own managed accounts.
    Manager,
    /// Owned by one manager for life.
    Managed,
}

impl AccountKind {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Manager => "manager",
            Self::Managed => "managed",
        }
    }

    /// Reads the database spelling.
    pub fn from_db(text: &str) -> Option<Self> {
        match text {
            "standard" => Some(Self::Standard),
            "manager" => Some(Self::Manager),
            "managed" => Some(Self::Managed),
            _ => None,
        }
    }
}

/// Whether an account may use the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// Normal.
    Active,
    /// Switched off by its manager (or itself); can be enabled again.
    Disabled,
    /// Closed for good.
    Cancelled,
    /// Reserved for operator holds; nothing sets it yet.
    Blocked,
}

impl AccountStatus {
    /// The database and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Cancelled => "cancelled",
            Self::Blocked => "blocked",
        }
    }

    /// Reads the database spelling.
    pub fn from_db(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "disabled" => Some(Self::Disabled),
            "cancelled" => Some(Self::Cancelled),
            "blocked" => Some(Self::Blocked),
            _ => None,
        }
    }
}

/// An account as stored.
#[derive(Debug, Clone)]
pub struct Account {
    /// Id.
    pub id: AccountId,
    /// Sign-in and contact email, case as given.
    pub email: String,
    /// Organization (business) name.
    pub organization_name: String,
    /// Standard, manager or managed.
    pub kind: AccountKind,
    /// The owning manager, for managed accounts.
    pub manager_id: Option<AccountId>,
    /// Active, disabled, cancelled or blocked.
    pub status: AccountStatus,
    /// Whether a price list of its own may replace the manager's.
    pub managed_account_allow_custom_pricing: bool,
    /// Whether spend is charged to the manager's balance (fixed at creation).
    pub rollup_billing: bool,
    /// Managed accounts this manager may hold.
    pub max_managed_accounts: i64,
    /// The manager's pool of global outbound channels (0: feature off).
    pub allocatable_channels: i64,
    /// This managed account's share of its manager's pool.
    pub channel_limit: i64,
    /// Whether a password is set (the hash itself never leaves the repository).
    pub has_password: bool,
    /// Creation instant, ms since the epoch.
    pub created_at_ms: i64,
    /// Last change, ms since the epoch.
    pub updated_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_keyed_case_insensitively() {
        let email = Email::parse("  Larry@Example.COM ").unwrap();
        assert_eq!(email.as_ref(), "Larry@Example.COM");
        assert_eq!(email.normalized(), "larry@example.com");
    }

    #[test]
    fn bad_emails_are_refused() {
        for bad in [
            "",
            "plain",
            "a@b",
            "a@b.",
            "@x.com",
            "a b@x.com",
            "\"q\"@x.com",
            "a@[1.2.3.4]",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn one_mailbox_has_one_key_whatever_the_domain_spelling() {
        let unicode = Email::parse("U@Bücher.example").unwrap();
        let ascii = Email::parse("u@xn--bcher-kva.example").unwrap();
        assert_eq!(unicode.normalized(), "u@xn--bcher-kva.example");
        assert_eq!(unicode.normalized(), ascii.normalized());
        // As given, for display.
        assert_eq!(unicode.as_ref(), "U@Bücher.example");
    }

    #[test]
    fn look_alike_addresses_are_refused_with_a_reason() {
        for (bad, why) in [
            ("jo\u{200B}hn@example.com", "invisible"),
            ("john@exa\u{00AD}mple.com", "invisible"),
            ("john\u{202E}@example.com", "invisible"),
            ("p\u{0430}ypal@example.com", "scripts"), // Cyrillic а among Latin letters
            ("john@p\u{0430}ypal.com", "scripts"),
            ("john@xn--pypal-4ve.com", "scripts"), // the same look-alike, in punycode
            ("someone@released.invalid", "reserved"),
        ] {
            let error = Email::parse(bad).unwrap_err();
            assert!(error.0.contains(why), "{bad:?}: {}", error.0);
        }
        // One script, or scripts that are written together, are fine.
        for good in [
            "δοκιμή@example.gr",
            "山田たろう@example.jp",
            "user123@пример.рф",
        ] {
            assert!(Email::parse(good).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn tombstones_never_parse_as_user_input() {
        let id = AccountId::generate();
        let tombstone = Email::tombstone(id);
        assert!(tombstone.as_ref().contains(&id.to_string()));
        assert!(Email::parse(tombstone.as_ref()).is_err());
    }

    #[test]
    fn organization_names_are_checked() {
        assert!(OrganizationName::parse("   ").is_err());
        assert!(OrganizationName::parse("a\u{0}b").is_err());
        assert_eq!(
            OrganizationName::parse("Ünïcode Ltd").unwrap().folded(),
            "ünïcode ltd"
        );
    }

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let password = Password::parse("correct horse").unwrap();
        let hash = password.hash().unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(password.verify(&hash));
        assert!(!Password::parse("correct horsE").unwrap().verify(&hash));
        assert!(!password.verify("not a hash"));
    }

    #[test]
    fn debug_output_hides_secrets_and_personal_data() {
        let password = Password::parse("correct horse").unwrap();
        assert!(!format!("{password:?}").contains("horse"));
        let email = Email::parse("secret@example.com").unwrap();
        assert!(!format!("{email:?}").contains("secret"));
    }
}
