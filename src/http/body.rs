//! Request bodies: the one way a body becomes a typed value.
//!
//! A JSON body is refused before anything reaches the domain when its `Content-Type` is not
//! JSON (415); when it is not a JSON object, not valid JSON or holds a key twice in one object,
//! at any depth (400); when any string or key in it holds a NUL character, or it has a field the
//! endpoint does not take (422). Every refusal names the place with a JSON pointer.
//! A CSV body (the price-list import) must say `text/csv`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::map::Entry;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorKind};

/// A type a JSON body is parsed into.
pub trait RequestBody: DeserializeOwned {
    /// A refusal more helpful than "unknown field" for a top-level field this body does not
    /// take (`pointer` is e.g. `/password`), typically one that is set somewhere else.
    /// `None` keeps the generic answer.
    fn refuse_field(_pointer: &str) -> Option<ApiError> {
        None
    }
}

/// The body of an action that takes no fields: no body at all, or `{}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

impl RequestBody for EmptyBody {}

/// A JSON body. An empty body reads as `{}` (the SDKs send none for body-less actions).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: RequestBody, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let media_type = MediaType::of(request.headers());
        let bytes = read(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return parse_json(b"{}").map(JsonBody);
        }
        if !media_type.is_json() {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                format!(
                    "The request body must be JSON, sent with 'Content-Type: application/json'; \
                     this request {}.",
                    media_type.described()
                ),
            ));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// A CSV body, as UTF-8 text: it must be sent as `text/csv`.
#[derive(Debug)]
pub struct CsvBody(pub String);

impl<S: Send + Sync> FromRequest<S> for CsvBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let media_type = MediaType::of(request.headers());
        let bytes = read(request, state).await?;
        if !bytes.is_empty() && !media_type.is("text/csv") {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                format!(
                    "The request body must be CSV, sent with 'Content-Type: text/csv'; \
                     this request {}.",
                    media_type.described()
                ),
            ));
        }
        String::from_utf8(Vec::from(bytes))
            .map(CsvBody)
            .map_err(|_| ApiError::new(ErrorKind::BadRequest, "The CSV must be UTF-8 text."))
    }
}

async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorKind::PayloadTooLarge,
                    "The request body is larger than the server accepts.",
                )
            } else {
                ApiError::new(
                    ErrorKind::BadRequest,
                    format!("The request body could not be read: {rejection}"),
                )
            }
        })
}

/// The media type a request declares (`Content-Type` without its parameters), lowercased.
struct MediaType(Option<String>);

/// Longest media type quoted back in an error: enough for any real one, and a client cannot
/// make the answer as long as its header.
const MEDIA_TYPE_QUOTED_MAX: usize = 100;

impl MediaType {
    fn of(headers: &HeaderMap) -> Self {
        Self(headers.get(CONTENT_TYPE).map(|value| {
            let text = String::from_utf8_lossy(value.as_bytes());
            let essence = text.split(';').next().unwrap_or_default();
            essence.trim().to_ascii_lowercase()
        }))
    }

    fn is(&self, expected: &str) -> bool {
        self.0.as_deref() == Some(expected)
    }

    /// `application/json`, a JSON-based `application/…+json`, or `*/*` (which the Node SDK
    /// sends with a JSON body on some calls).
    fn is_json(&self) -> bool {
        match self.0.as_deref() {
            Some("application/json" | "*/*") => true,
            Some(other) => other
                .strip_prefix("application/")
                .is_some_and(|subtype| subtype.ends_with("+json")),
            None => false,
        }
    }

    fn described(&self) -> String {
        match &self.0 {
            None => "has no Content-Type".to_owned(),
            Some(media_type) => {
                let quoted: String = media_type.chars().take(MEDIA_TYPE_QUOTED_MAX).collect();
                format!("says '{quoted}'")
            }
        }
    }
}

/// Parses `bytes` as `T`, mapping every failure to the envelope.
fn parse_json<T: RequestBody>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also build a struct from a JSON array; the API takes objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            "The request body must be a JSON object.",
        ));
    }
    refuse_nul(bytes)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let pointer = json_pointer(error.path());
        refusal::<T>(pointer, &error.into_inner())
    })?;
    deserializer.end().map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            format!("The request body is not valid JSON: {}", describe(&e)),
        )
    })?;
    Ok(value)
}

/// The answer to a body serde could not turn into `T`; `pointer` is where it stopped.
fn refusal<T: RequestBody>(pointer: String, error: &serde_json::Error) -> ApiError {
    let message = describe(error);
    if error.classify() != serde_json::error::Category::Data {
        return ApiError::new(
            ErrorKind::BadRequest,
            format!("The request body is not valid JSON: {message}"),
        );
    }
    // Both serde's derived structs and `StrictValue` stop at the object holding the key.
    if let Some(key) = quoted_after(&message, "duplicate field `") {
        return ApiError::new(
            ErrorKind::BadRequest,
            format!("The key '{key}' appears more than once in the same object; send it once."),
        )
        .pointer(format!("{pointer}/{}", escape(key)));
    }
    // serde stops inside the unknown key, so the pointer already ends with it.
    if message.starts_with("unknown field `") {
        if let Some(specific) = T::refuse_field(&pointer) {
            return specific.pointer(pointer);
        }
        let accepted = match message.split_once(", expected ") {
            Some((_, list)) => {
                let list = list.strip_prefix("one of ").unwrap_or(list);
                format!("This request accepts {}.", list.replace('`', "'"))
            }
            None => "This request takes no fields.".to_owned(),
        };
        let key = pointer.rsplit('/').next().unwrap_or_default();
        let key = key.replace("~1", "/").replace("~0", "~");
        return ApiError::new(
            ErrorKind::InvalidValue,
            format!("Unknown field '{key}'. {accepted}"),
        )
        .pointer(pointer);
    }
    if pointer.is_empty() {
        return ApiError::new(
            ErrorKind::BadRequest,
            "The request body must be a JSON object.",
        );
    }
    ApiError::new(
        ErrorKind::InvalidValue,
        format!("{}: {message}", pointer.trim_start_matches('/')),
    )
    .pointer(pointer)
}

/// The text between `prefix` and the last backtick of `message` (serde quotes a field name
/// in backticks).
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.rfind('`').and_then(|end| rest.get(..end))
}

/// Refuses a NUL character anywhere in the body's strings or keys: PostgreSQL cannot store
/// one in text and nothing legitimate sends one. In JSON a NUL can only be written as the
/// escape `\u0000` (raw control characters are invalid), so a byte scan rules it out for
/// nearly every body; only a body holding that escape is walked to find where it is.
fn refuse_nul(bytes: &[u8]) -> Result<(), ApiError> {
    if !holds_nul_escape(bytes) {
        return Ok(());
    }
    // Not valid JSON: the typed parse reports the syntax error.
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(());
    };
    let mut pointer = String::new();
    match find_nul(&value, &mut pointer) {
        None => Ok(()), // `\\u0000`: an escaped backslash, not a NUL.
        Some(Place::Value) => Err(ApiError::new(
            ErrorKind::InvalidValue,
            format!(
                "{} contains a NUL character (\\u0000), which no text may hold.",
                pointer.trim_start_matches('/')
            ),
        )
        .pointer(pointer)),
        Some(Place::Key) => Err(ApiError::new(
            ErrorKind::InvalidValue,
            "A key of the request body contains a NUL character (\\u0000), which no text may hold.",
        )
        .pointer(pointer)),
    }
}

/// Whether the escape `\u0000` may occur in `bytes` (an escaped backslash followed by
/// `u0000` also matches; the walk tells them apart).
fn holds_nul_escape(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| b == b'\\') {
        rest = rest.get(at + 1..).unwrap_or_default();
        if rest.starts_with(b"u0000") {
            return true;
        }
    }
    false
}

/// Where a NUL was found: in a key or in a string value.
enum Place {
    Key,
    Value,
}

/// The first NUL in `value`, leaving `pointer` pointing at it.
fn find_nul(value: &Value, pointer: &mut String) -> Option<Place> {
    let at = pointer.len();
    match value {
        Value::String(text) => text.contains('\0').then_some(Place::Value),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            pointer.truncate(at);
            pointer.push('/');
            pointer.push_str(&index.to_string());
            find_nul(item, pointer)
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            pointer.truncate(at);
            pointer.push('/');
            pointer.push_str(&escape(key));
            if key.contains('\0') {
                Some(Place::Key)
            } else {
                find_nul(item, pointer)
            }
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// A key as a JSON-pointer segment (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// serde's message without its position suffix, which means nothing to an API client.
fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(at) => text.get(..at).unwrap_or(&text).to_owned(),
        None => text,
    }
}

fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        pointer.push('/');
        match segment {
            Segment::Seq { index } => pointer.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => pointer.push_str(&escape(key)),
            Segment::Unknown => pointer.push('?'),
        }
    }
    pointer
}

/// Any JSON value, for the parts of a body the API reads loosely (a usage event, whose
/// extra keys are kept for forward compatibility). Unlike `serde_json::Value`, which keeps
/// the last of two equal keys, a key repeated in one object is an error.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(deserializer).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match fields.entry(key) {
                Entry::Vacant(slot) => {
                    let StrictValue(item) = map.next_value()?;
                    slot.insert(item);
                }
                Entry::Occupied(taken) => {
                    // The phrase serde's derived structs use, so one mapping serves both.
                    let key = taken.key();
                    return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
                }
            }
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::ErrorSource;
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        #[expect(dead_code, reason = "only parsed")]
        name: Option<String>,
        #[expect(dead_code, reason = "only parsed")]
        events: Option<Vec<StrictValue>>,
    }

    impl RequestBody for Batch {}

    fn refused(body: &str) -> (ErrorKind, String, Option<ErrorSource>) {
        let error = parse_json::<Batch>(body.as_bytes()).unwrap_err();
        (
            error.kind(),
            error.detail().to_owned(),
            error.blamed().cloned(),
        )
    }

    fn pointer(text: &str) -> Option<ErrorSource> {
        Some(ErrorSource::Pointer(text.to_owned()))
    }

    #[test]
    fn duplicate_keys_are_named_at_any_depth() {
        let (kind, detail, source) = refused(r#"{"name": "a", "name": "b"}"#);
        assert_eq!((kind, source), (ErrorKind::BadRequest, pointer("/name")));
        assert!(detail.contains("'name'"), "{detail}");
        let (kind, _, source) =
            refused(r#"{"events": [{}, {"a": {"b/c": 1, "b/c": 2}}], "name": "x"}"#);
        assert_eq!(
            (kind, source),
            (ErrorKind::BadRequest, pointer("/events/1/a/b~1c"))
        );
    }

    #[test]
    fn nul_is_found_in_values_and_keys_but_not_in_an_escaped_backslash() {
        let (kind, _, source) = refused(r#"{"events": [{"id": "a"}, {"id": "x\u0000"}]}"#);
        assert_eq!(
            (kind, source),
            (ErrorKind::InvalidValue, pointer("/events/1/id"))
        );
        let (kind, _, source) = refused(r#"{"events": [{"k\u0000": 1}]}"#);
        assert_eq!(
            (kind, source),
            (ErrorKind::InvalidValue, pointer("/events/0/k\0"))
        );
        assert!(parse_json::<Batch>(br#"{"name": "C:\\u0000"}"#).is_ok());
    }

    #[test]
    fn unknown_fields_are_named_with_what_is_accepted() {
        let (kind, detail, source) = refused(r#"{"password": "x"}"#);
        assert_eq!(
            (kind, source),
            (ErrorKind::InvalidValue, pointer("/password"))
        );
        assert_eq!(
            detail,
            "Unknown field 'password'. This request accepts 'name' or 'events'."
        );
        // Events themselves take any extra keys.
        assert!(parse_json::<Batch>(br#"{"events": [{"switch": "a"}]}"#).is_ok());
    }

    #[test]
    fn media_types() {
        let of = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(CONTENT_TYPE, value.parse().unwrap());
            }
            MediaType::of(&headers)
        };
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
            "*/*",
        ] {
            assert!(of(Some(json)).is_json(), "{json}");
        }
        for other in ["text/plain", "application/jsonx", "text/json+xml", ""] {
            assert!(!of(Some(other)).is_json(), "{other}");
        }
        assert!(!of(None).is_json());
        assert!(of(Some("text/csv; charset=utf-8")).is("text/csv"));
    }
}
