//! The portal's cookies, read and written by hand (three cookies do not need a crate).
//!
//! Every cookie is `__Host-` prefixed, `Secure`, `HttpOnly`, `SameSite=Lax` and `Path=/`
//! with no `Domain`: browsers then refuse it from any other origin or over plain HTTP
//! (loopback addresses count as secure, so a local quick start works), scripts cannot read
//! it, and it is not sent with cross-site form posts. A removal carries the same attributes,
//! or browsers would reject it.

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};

/// The session token.
pub const SESSION: &str = "__Host-steward_session";

/// The form token of the sign-in form (there is no session yet to derive one from).
pub const SIGN_IN_CSRF: &str = "__Host-steward_sign_in";

/// A one-time message for the next page (Post/Redirect/Get).
pub const FLASH: &str = "__Host-steward_flash";

/// Longest flash message kept (they are short sentences of ours).
const FLASH_LENGTH_MAX: usize = 500;

/// The value of cookie `name` in the request, if sent.
pub fn read<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// A `Set-Cookie` value; `max_age_s` of `None` makes a cookie that ends with the browser.
fn set_cookie(name: &str, value: &str, max_age_s: Option<i64>) -> Option<HeaderValue> {
    let age = max_age_s
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax{age}"
    ))
    .ok()
}

/// Adds cookie `name` to a response.
pub fn add(headers: &mut HeaderMap, name: &str, value: &str, max_age_s: Option<i64>) {
    if let Some(value) = set_cookie(name, value, max_age_s) {
        headers.append(SET_COOKIE, value);
    }
}

/// Removes cookie `name` from the browser.
pub fn remove(headers: &mut HeaderMap, name: &str) {
    add(headers, name, "", Some(0));
}

/// Whether a response already sets cookie `name`.
pub fn sets(headers: &HeaderMap, name: &str) -> bool {
    let prefix = format!("{name}=");
    headers
        .get_all(SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(prefix.as_bytes()))
}

/// A message shown once on the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Whether it reports a failure (shown as an alert).
    pub is_error: bool,
    /// The sentence.
    pub text: String,
}

impl Flash {
    /// A confirmation.
    pub fn success(text: impl Into<String>) -> Self {
        Self {
            is_error: false,
            text: text.into(),
        }
    }

    /// A failure.
    pub fn error(text: impl Into<String>) -> Self {
        Self {
            is_error: true,
            text: text.into(),
        }
    }

    /// The cookie value: a kind letter and the percent-encoded text.
    pub fn encode(&self) -> String {
        let text: String = self.text.chars().take(FLASH_LENGTH_MAX).collect();
        let kind = if self.is_error { 'e' } else { 's' };
        format!(
            "{kind}{}",
            form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
        )
    }

    /// Reads a cookie value written by [`Flash::encode`]. The text is shown escaped, so a
    /// forged one can say nothing worse than text to its own sender.
    pub fn decode(value: &str) -> Option<Self> {
        let mut chars = value.chars();
        let is_error = match chars.next()? {
            'e' => true,
            's' => false,
            _ => return None,
        };
        let raw = format!("t={}", chars.as_str());
        let text = form_urlencoded::parse(raw.as_bytes())
            .next()
            .map(|(_, v)| v.chars().take(FLASH_LENGTH_MAX).collect::<String>())?;
        (!text.is_empty()).then_some(Self { is_error, text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; __Host-steward_session=abc ; b=2"),
        );
        assert_eq!(read(&headers, SESSION), Some("abc"));
        assert_eq!(read(&headers, "c"), None);
    }

    #[test]
    fn set_cookies_carry_every_protective_attribute() {
        let mut headers = HeaderMap::new();
        add(&mut headers, SESSION, "t", Some(60));
        remove(&mut headers, FLASH);
        let values: Vec<&str> = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        for value in &values {
            for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
                assert!(value.contains(attribute), "{value}");
            }
        }
        assert!(sets(&headers, SESSION));
    }

    #[test]
    fn flashes_survive_the_cookie() {
        let flash = Flash::error("Could not; \"really\" 100% é");
        assert_eq!(Flash::decode(&flash.encode()), Some(flash));
        assert_eq!(Flash::decode("xhello"), None);
    }
}
