//! The OpenAPI document against the server: every operation it lists is probed with the
//! requests that reach each kind of error (no key, a revoked key, a disabled, cancelled or
//! managed account's key, a key of another kind, a path id that does not exist, malformed,
//! mistyped, oversize and NUL-holding input), and every status the server answers must be
//! one the document lists for that operation. A new route, or a new error a handler can
//! answer, that the document does not state fails here.

use std::collections::BTreeSet;
use steward::http::auth_throttle::FAILURE_WINDOW_MS;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Actor, BASE_PRICES, TestApp, spawn_app};

/// One operation of the document, as far as the probes need it.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: Method,
    pub path: String,
    /// The security scheme it requires, if any.
    pub scheme: Option<String>,
    pub path_parameters: Vec<String>,
    pub query_parameters: Vec<String>,
    /// The media type of its body, if it takes one.
    pub body: Option<String>,
    /// The statuses its `responses` list.
    pub documented: BTreeSet<u16>,
}

/// Every operation of `GET /v2/openapi.json`.
pub async fn operations(app: &TestApp) -> Vec<Operation> {
    let response = app
        .client
        .get(format!("{}/v2/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    let document = TestApp::read(response).await.body;
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let parameters = |place: &str| -> Vec<String> {
                operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == place)
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            };
            operations.push(Operation {
                method: method.to_uppercase().parse().unwrap(),
                path: path.clone(),
                scheme: operation["security"]
                    .as_array()
                    .and_then(|s| s.first())
                    .and_then(Value::as_object)
                    .and_then(|s| s.keys().next().cloned()),
                path_parameters: parameters("path"),
                query_parameters: parameters("query"),
                body: operation["requestBody"]["content"]
                    .as_object()
                    .and_then(|c| c.keys().next().cloned()),
                documented: operation["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(|s| s.parse().unwrap())
                    .collect(),
            });
        }
    }
    operations
}

/// Real objects for every path parameter, and keys of every kind and state.
pub struct Ids {
    /// A managed account of the manager that the probes act on.
    target: Actor,
    /// A managed account of the manager, never changed: its key is a managed account's.
    managed: Actor,
    disabled: Actor,
    cancelled: Actor,
    revoked_key: String,
    lease_id: String,
    price_list_id: String,
    /// A key of the manager's own besides the one it calls with.
    own_key_id: String,
    /// A key of the target besides the one it was created with.
    target_key_id: String,
    /// The manager's report jobs, voice and messaging.
    voice_job_id: String,
    messaging_job_id: String,
    /// The manager's invoice for January 2026.
    invoice_id: String,
    /// A saved card of the manager's, and one of the target's.
    manager_method_id: String,
    target_method_id: String,
}

impl Ids {
    pub async fn seed(app: &TestApp) -> Self {
        // First of all, so that what follows (leases, links) lives in February: a closed
        // January gives the manager an invoice.
        app.clock.advance(
            chrono::TimeDelta::days(31)
                + chrono::TimeDelta::milliseconds(steward::invoices::SETTLE_MS),
        );
        let clock: steward::clock::ClockHandle = std::sync::Arc::new(app.clock.clone());
        let invoice_id = steward::invoices::close_period(
            &app.db,
            &clock,
            steward::invoices::Period::parse("2026-01").unwrap(),
            steward::accounts::AccountId::parse(&app.manager.id).unwrap(),
            &crate::helpers::operator(),
        )
        .await
        .unwrap()
        .invoice
        .id;
        let target = app
            .managed_of(&app.manager, "Probe Target", json!({}))
            .await;
        let managed = app
            .managed_of(&app.manager, "Probe Managed", json!({}))
            .await;
        let disabled = app
            .managed_of(&app.manager, "Probe Disabled", json!({}))
            .await;
        app.post(
            &format!("/v2/managed_accounts/{}/actions/disable", disabled.id),
            &app.manager.key,
            None,
        )
        .await
        .assert_status(200);
        let cancelled = app
            .managed_of(&app.manager, "Probe Cancelled", json!({}))
            .await;
        app.cancel_account(&cancelled.id, false).await;
        let minted = app.post("/v2/api_keys", &app.standard.key, None).await;
        let revoked_key = minted.body["data"]["api_key"].as_str().unwrap().to_owned();
        let revoked_id = minted.body["data"]["id"].as_str().unwrap();
        app.request(
            Method::DELETE,
            &format!("/v2/api_keys/{revoked_id}"),
            Some(&app.standard.key),
            None,
        )
        .await
        .assert_status(200);
        let price_list_id = app
            .import_prices(
                BASE_PRICES,
                "platform_default=true&effective_from=2025-01-01T00:00:00Z",
            )
            .await
            .body["data"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.operator_post(
            &format!("/admin/v1/accounts/{}/credit_limit", target.id),
            None,
            json!({"amount": "50.00"}),
        )
        .await
        .assert_status(200);
        app.patch(
            &format!(
                "/v2/managed_accounts/{}/update_global_channel_limit",
                target.id
            ),
            &app.manager.key,
            json!({"channel_limit": 2}),
        )
        .await
        .assert_status(200);
        let lease_id = app.admit(&target.id, "voice_outbound").await.body["data"]["lease_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let own_key_id = app.post("/v2/api_keys", &app.manager.key, None).await.body["data"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let target_key_id = app
            .post(
                &format!("/v2/managed_accounts/{}/api_keys", target.id),
                &app.manager.key,
                None,
            )
            .await
            .body["data"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let job = |kind: &'static str| {
            let path = format!("/v2/legacy/reporting/usage_reports/{kind}");
            async move {
                app.post(
                    &path,
                    &app.manager.key,
                    Some(json!({"aggregation_type": 0,
                        "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z"})),
                )
                .await
                .body["data"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }
        };
        let voice_job_id = job("voice").await;
        let messaging_job_id = job("messaging").await;
        use crate::payments::{MASTERCARD, VISA, add_card};
        let manager_method_id = add_card(app, &app.manager.key, None, VISA).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let target_method_id =
            add_card(app, &app.manager.key, Some(&target), MASTERCARD).await["id"]
                .as_str()
                .unwrap()
                .to_owned();
        Self {
            invoice_id,
            manager_method_id,
            target_method_id,
            voice_job_id,
            messaging_job_id,
            target,
            managed,
            disabled,
            cancelled,
            revoked_key,
            lease_id,
            price_list_id,
            own_key_id,
            target_key_id,
        }
    }

    /// The operation's path with real ids.
    pub fn path(&self, operation: &Operation) -> String {
        self.path_with(operation, &self.target.id)
    }

    fn path_with(&self, operation: &Operation, account_id: &str) -> String {
        let path = &operation.path;
        let id = if path.starts_with("/v2/managed_accounts/{id}")
            || path.starts_with("/admin/v1/accounts/{id}")
        {
            account_id
        } else if path.starts_with("/v2/channel_leases/{id}") {
            &self.lease_id
        } else if path.starts_with("/admin/v1/price_lists/{id}") {
            &self.price_list_id
        } else if path.starts_with("/v2/payment_methods/{id}") {
            &self.manager_method_id
        } else if path.starts_with("/v2/legacy/reporting/usage_reports/voice/{id}") {
            &self.voice_job_id
        } else if path.starts_with("/v2/legacy/reporting/usage_reports/messaging/{id}") {
            &self.messaging_job_id
        } else if path.starts_with("/v2/invoices/{id}") {
            &self.invoice_id
        } else {
            assert!(
                !path.contains("{id}"),
                "no id for {path}: add one to Ids::path"
            );
            ""
        };
        let key_id = if path.starts_with("/v2/managed_accounts/") {
            &self.target_key_id
        } else {
            &self.own_key_id
        };
        let path = path
            .replace("{id}", id)
            .replace("{key_id}", key_id)
            .replace("{payment_method_id}", &self.target_method_id);
        assert!(
            !path.contains('{'),
            "no id for {path}: add one to Ids::path"
        );
        path
    }

    /// The operation's path with ids that name nothing.
    fn absent_path(operation: &Operation) -> String {
        operation
            .path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{key_id}", "KEY00000000000000000000000000000000")
    }

    /// The operation's path with a NUL character in every path parameter.
    fn nul_path(&self, operation: &Operation) -> String {
        let real = self.path(operation);
        let mut path = operation.path.clone();
        for name in &operation.path_parameters {
            let placeholder = format!("{{{name}}}");
            let value = if name == "key_id" {
                &self.own_key_id
            } else {
                "x"
            };
            path = path.replace(&placeholder, &format!("{value}%00"));
        }
        assert_ne!(path, real);
        path
    }

    /// The key the operation is meant to be called with.
    pub fn key<'a>(&'a self, app: &'a TestApp, operation: &Operation) -> &'a str {
        // Any other scheme is one the server does not know of; every probe then tells.
        match operation.scheme.as_deref() {
            Some("ingest_key") => &app.ingest_key,
            Some("operator_key") => &app.operator_key,
            _ => &app.manager.key,
        }
    }

    /// A key of another kind than the operation takes.
    fn wrong_kind<'a>(&'a self, app: &'a TestApp, operation: &Operation) -> &'a str {
        match operation.scheme.as_deref() {
            Some("account_key") => &app.ingest_key,
            _ => &app.manager.key,
        }
    }
}

/// One request of a probe.
#[derive(Clone)]
struct Probe<'a> {
    name: &'static str,
    path: String,
    key: Option<&'a str>,
    content_type: Option<&'static str>,
    body: Option<String>,
}

/// The requests sent to `operation`: the one it is meant for, and one per way to get it
/// wrong.
fn probes<'a>(app: &'a TestApp, ids: &'a Ids, operation: &Operation) -> Vec<Probe<'a>> {
    let (media_type, plain_body) = match operation.body.as_deref() {
        Some("text/csv") => ("text/csv", BASE_PRICES),
        _ => ("application/json", "{}"),
    };
    let intended = Probe {
        name: "as intended",
        path: ids.path(operation),
        key: Some(ids.key(app, operation)),
        content_type: Some(media_type),
        body: operation.body.as_ref().map(|_| plain_body.to_owned()),
    };
    let keyed = |name, key: &'a str| Probe {
        name,
        key: Some(key),
        ..intended.clone()
    };
    let sent = |name, content_type, body: &str| Probe {
        name,
        content_type,
        body: Some(body.to_owned()),
        ..intended.clone()
    };
    let at = |name, path: String| Probe {
        name,
        path,
        ..intended.clone()
    };
    let mut probes = vec![
        Probe {
            name: "no key",
            key: None,
            ..intended.clone()
        },
        keyed("revoked key", &ids.revoked_key),
        keyed("disabled account's key", &ids.disabled.key),
        keyed("cancelled account's key", &ids.cancelled.key),
        keyed("managed account's key", &ids.managed.key),
        keyed("key of another kind", ids.wrong_kind(app, operation)),
        sent("malformed body", Some(media_type), r#"{"a": "#),
        sent("body not an object", Some(media_type), "[1]"),
        sent("duplicate key", Some(media_type), r#"{"a": 1, "a": 2}"#),
        sent(
            "unknown field",
            Some(media_type),
            r#"{"unexpected_field": 1}"#,
        ),
        sent("NUL in the body", Some(media_type), r#"{"a": "\u0000"}"#),
        sent("non-JSON content type", Some("text/plain"), "{}"),
        sent("no content type", None, "{}"),
        at("NUL in the query", format!("{}?probe=%00", intended.path)),
        at("bad page", format!("{}?page%5Bsize%5D=-1", intended.path)),
    ];
    if operation.body.is_some() {
        let oversize = format!(r#"{{"a": "{}"}}"#, "x".repeat(70_000));
        probes.push(sent("oversize body", Some(media_type), &oversize));
    }
    if !operation.path_parameters.is_empty() {
        probes.extend([
            at("absent path id", Ids::absent_path(operation)),
            at("NUL in the path", ids.nul_path(operation)),
            at(
                "cancelled account as path id",
                ids.path_with(operation, &ids.cancelled.id),
            ),
            at(
                "another manager's account as path id",
                ids.path_with(operation, &app.other_manager.id),
            ),
        ]);
    }
    probes.push(intended);
    probes
}

#[tokio::test]
async fn every_status_the_server_answers_is_documented() {
    let app = spawn_app().await;
    let ids = Ids::seed(&app).await;
    let operations = operations(&app).await;
    assert!(
        operations.len() > 30,
        "the document lists too few operations"
    );

    let mut undocumented = Vec::new();
    let mut answered = BTreeSet::new();
    for operation in &operations {
        // Each operation's probes present a few bad keys: a new failure window per
        // operation keeps the address below the throttle (tested on its own elsewhere).
        app.clock
            .advance(chrono::TimeDelta::milliseconds(FAILURE_WINDOW_MS + 1));
        for (n, probe) in probes(&app, &ids, operation).into_iter().enumerate() {
            let mut request = app
                .client
                .request(
                    operation.method.clone(),
                    format!("{}{}", app.address, probe.path),
                )
                .header(
                    "idempotency-key",
                    format!("probe-{}-{n}", operation.path.len()),
                );
            if let Some(key) = probe.key {
                request = request.bearer_auth(key);
            }
            if let Some(content_type) = probe.content_type {
                request = request.header("content-type", content_type);
            }
            if let Some(body) = probe.body {
                request = request.body(body);
            }
            // Success bodies may be CSV or text; only the status matters here.
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            answered.insert(status);
            if !operation.documented.contains(&status) {
                undocumented.push(format!(
                    "{} {} ({}): {status} {body}",
                    operation.method, operation.path, probe.name
                ));
            }
        }
    }

    assert!(
        undocumented.is_empty(),
        "statuses answered but not documented:\n{}",
        undocumented.join("\n")
    );
    // The probes did reach every kind of refusal.
    for status in [200, 400, 401, 403, 404, 413, 415, 422] {
        assert!(answered.contains(&status), "no probe was answered {status}");
    }
}

#[tokio::test]
async fn every_operation_documents_the_errors_of_what_it_takes() {
    let app = spawn_app().await;

    for operation in operations(&app).await {
        let name = format!("{} {}", operation.method, operation.path);
        let mut expected = vec![500];
        if let Some(scheme) = operation.scheme.as_deref() {
            expected.extend([401, 429, 503]);
            if scheme == "account_key" {
                expected.push(403);
            }
        }
        if !operation.path_parameters.is_empty() {
            expected.extend([400, 404]);
        }
        if operation.body.is_some() {
            expected.extend([400, 413, 415, 422]);
        }
        for status in expected {
            assert!(
                operation.documented.contains(&status),
                "{name} lacks {status}"
            );
        }
    }
}
