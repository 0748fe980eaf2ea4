//! The OpenAPI document's shared parts: its header, one security scheme per kind of key,
//! and the error statuses of every operation, generated in one place from what the
//! operation takes (its key, path and query parameters, body) rather than written by hand.
//!
//! The rules follow the extractors every handler goes through: a key is looked up in the
//! database (401, 429 for throttled failures, 503, 408), an account key of a disabled,
//! cancelled or blocked account is refused (403), a path parameter names something that may
//! not exist (404), query parameters and bodies are parsed strictly (400, 422), a body has a
//! size limit and a media type (413, 415). Outcomes specific to one handler (e.g. 404 for a
//! price list that does not exist yet) stay in that handler's `responses`.

use std::collections::BTreeMap;

use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response, ResponseBuilder, Schema};

use super::error;

/// The document's header; the paths come from the route table.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Steward API",
        description = "Managed accounts, wire-compatible with the Telnyx API v2. \
            Pricing changes (managed_account_allow_custom_pricing) take effect for usage rated after \
            the change; usage already charged is never re-rated.",
    ),
    modifiers(&KeySchemes),
    components(schemas(error::ErrorEnvelope))
)]
pub(super) struct ApiDoc;

/// The kinds of key an operation may require, by security-scheme name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// An account's API key: refused with 403 when the account is not active.
    Account,
    /// A network element's ingest key.
    Ingest,
    /// The operator's key.
    Operator,
}

impl KeyKind {
    const ALL: [KeyKind; 3] = [Self::Account, Self::Ingest, Self::Operator];

    /// The scheme name handlers write in `security((…))`.
    fn scheme(self) -> &'static str {
        match self {
            Self::Account => "account_key",
            Self::Ingest => "ingest_key",
            Self::Operator => "operator_key",
        }
    }

    fn parse(scheme: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.scheme() == scheme)
    }

    fn description(self) -> &'static str {
        match self {
            Self::Account => {
                "An account's API key, sent as `Authorization: Bearer KEY…`. The key of a \
                 disabled, cancelled or blocked account is refused with 403."
            }
            Self::Ingest => {
                "A network element's ingest key (`steward admin create-ingest-key`), sent as \
                 `Authorization: Bearer …`."
            }
            Self::Operator => {
                "The operator's key (`steward admin create-operator-key`), sent as \
                 `Authorization: Bearer …`."
            }
        }
    }
}

struct KeySchemes;

impl utoipa::Modify for KeySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for kind in KeyKind::ALL {
            components.add_security_scheme(
                kind.scheme(),
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(kind.description()))
                        .build(),
                ),
            );
        }
    }
}

/// The body an operation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Csv,
}

/// What an operation takes, as far as the generic errors are concerned.
#[derive(Debug, Default)]
struct Takes {
    key: Option<KeyKind>,
    path: bool,
    query: bool,
    body: Option<BodyKind>,
}

impl Takes {
    fn of(operation: &Operation) -> Self {
        let located = |place: ParameterIn| {
            operation
                .parameters
                .iter()
                .flatten()
                .any(|p| p.parameter_in == place)
        };
        let body = operation.request_body.as_ref().map(|body| {
            if body.content.contains_key("text/csv") {
                BodyKind::Csv
            } else {
                BodyKind::Json
            }
        });
        Self {
            key: key_kind(operation),
            path: located(ParameterIn::Path),
            query: located(ParameterIn::Query),
            body,
        }
    }

    /// Every error status this operation can answer whatever its handler does, with why.
    fn statuses(&self) -> BTreeMap<&'static str, String> {
        let mut statuses = BTreeMap::new();
        let mut unparsable = Vec::new();
        let mut refused = Vec::new();
        if self.path {
            unparsable.push("a path parameter holds a NUL character (%00)");
            statuses.insert(
                "404",
                "No such resource, or one the caller may not see".to_owned(),
            );
        }
        if self.query {
            unparsable.push(
                "a query parameter is malformed, is an unknown filter, or holds a NUL character",
            );
            refused.push("a query parameter is missing or out of range");
        }
        match self.body {
            Some(BodyKind::Json) => {
                unparsable.push(
                    "the body is not a JSON object, is not valid JSON, or repeats a key in one object",
                );
                refused.push(
                    "a body field is missing, of the wrong type, out of range, not taken by this \
                     operation, or holds a NUL character; or the resource's state does not allow \
                     the change",
                );
                statuses.insert(
                    "415",
                    "The body is not JSON (send Content-Type: application/json)".to_owned(),
                );
            }
            Some(BodyKind::Csv) => {
                unparsable.push("the body is not UTF-8 text");
                refused.push("a line of the CSV is refused (each bad line is listed)");
                statuses.insert(
                    "415",
                    "The body is not CSV (send Content-Type: text/csv)".to_owned(),
                );
            }
            None => {}
        }
        if self.body.is_some() {
            statuses.insert(
                "413",
                "The body is larger than the server accepts".to_owned(),
            );
        }
        if !unparsable.is_empty() {
            statuses.insert(
                "400",
                format!("The request could not be parsed: {}", unparsable.join("; ")),
            );
        }
        if !refused.is_empty() {
            statuses.insert(
                "422",
                format!(
                    "A value was refused (the error's source names it): {}",
                    refused.join("; ")
                ),
            );
        }
        if let Some(key) = self.key {
            statuses.insert(
                "401",
                "No key, or a key that is unknown, revoked or of another kind".to_owned(),
            );
            if key == KeyKind::Account {
                statuses.insert(
                    "403",
                    "The account is disabled, cancelled or blocked, or may not use this operation"
                        .to_owned(),
                );
            }
            statuses.insert(
                "429",
                "Too many failed authentications from this address; retry after Retry-After"
                    .to_owned(),
            );
            // Every keyed operation reads the database to check the key.
            statuses.insert(
                "408",
                "The request ran out of time; nothing was committed".to_owned(),
            );
            statuses.insert(
                "503",
                "The database is unreachable or overloaded; retry".to_owned(),
            );
        }
        statuses.insert("500", "An unexpected error (logged)".to_owned());
        statuses
    }
}

/// The kind of key an operation's security requirement names, if any.
fn key_kind(operation: &Operation) -> Option<KeyKind> {
    let requirements = serde_json::to_value(operation.security.as_ref()?).ok()?;
    requirements
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_object)
        .flat_map(|requirement| requirement.keys())
        .find_map(|scheme| KeyKind::parse(scheme))
}

fn envelope(description: String) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .build(),
        )
        .build()
        .into()
}

fn operations_mut(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut Operation> + '_ {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.put,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
    })
}

/// utoipa writes an optional body as `oneOf: [null, X]`, which offers a JSON `null` as the
/// body; the API takes no body or `X` (a body must be an object). Says that instead.
fn optional_body_without_null(operation: &mut Operation) {
    let Some(body) = operation.request_body.as_mut() else {
        return;
    };
    for content in body.content.values_mut() {
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        let mut others = one_of.items.iter().filter(|item| !is_null(item));
        if let (Some(only), None) = (others.next(), others.next()) {
            content.schema = Some(only.clone());
            body.required = Some(Required::False);
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(object))
        if object.schema_type == SchemaType::Type(Type::Null))
}

/// Adds to every operation the error statuses it can answer (see the module header), and
/// states optional bodies plainly. Runs once the route table has put every operation in
/// the document.
pub(super) fn complete(openapi: &mut utoipa::openapi::OpenApi) {
    for operation in operations_mut(openapi) {
        optional_body_without_null(operation);
        for (status, description) in Takes::of(operation).statuses() {
            operation
                .responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| envelope(description));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyed_operation_names_a_known_kind_of_key() {
        let (_, mut document) = super::super::routes().split_for_parts();
        for operation in operations_mut(&mut document) {
            let id = operation.operation_id.clone().unwrap_or_default();
            let Some(security) = operation.security.as_ref() else {
                continue;
            };
            if !security.is_empty() {
                assert!(
                    key_kind(operation).is_some(),
                    "{id}: unknown security scheme"
                );
            }
        }
    }

    /// A status the generator documents is not written by hand as well, unless the handler
    /// says what it means there (e.g. a 429 that is a carding block, not a throttled key):
    /// one place says each thing.
    #[test]
    fn handlers_write_only_the_statuses_the_generator_cannot_know() {
        let (_, mut document) = super::super::routes().split_for_parts();
        let mut duplicates = Vec::new();
        for operation in operations_mut(&mut document) {
            let generated = Takes::of(operation).statuses();
            for (status, response) in &operation.responses.responses {
                let described = match response {
                    RefOr::T(response) => !response.description.is_empty(),
                    RefOr::Ref(_) => false,
                };
                if generated.contains_key(status.as_str()) && !described {
                    duplicates.push(format!("{:?} {status}", operation.operation_id));
                }
            }
        }
        assert!(duplicates.is_empty(), "written by hand: {duplicates:?}");
    }
}
