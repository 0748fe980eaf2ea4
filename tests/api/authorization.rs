//! The authorization matrix: every operation of `/v2/openapi.json` (the operator's
//! included) called by every kind of caller, each answer compared with the one written down
//! for it below. A route without an entry fails the test, so no route is added unexamined.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};
use steward::http::auth_throttle::FAILURE_WINDOW_MS;

use crate::helpers::{Actor, BASE_PRICES, TestApp, spawn_app};

/// The callers, in the order of every row of [`EXPECTED`].
const ROLES: [&str; 11] = [
    "operator",
    "manager",
    "other manager",
    "managed",
    "rollup managed",
    "disabled",
    "cancelled",
    "standard",
    "ingest key",
    "revoked key",
    "no key",
];

// Shorthands for the rows: who may call, and what everyone else gets.
/// An operator-key operation.
const OPERATOR: [u16; 11] = [200, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401];
/// An ingest-key operation.
const INGEST: [u16; 11] = [401, 401, 401, 401, 401, 401, 401, 401, 200, 401, 401];
/// Any account on its own data.
const ANY_ACCOUNT: [u16; 11] = [401, 200, 200, 200, 200, 403, 401, 200, 401, 401, 401];
/// Any account that may see prices, on its own data.
const PRICED_ACCOUNT: [u16; 11] = [401, 200, 200, 403, 403, 403, 401, 200, 401, 401, 401];
/// A manager, on its own managed accounts as a whole.
const MANAGER: [u16; 11] = [401, 200, 200, 403, 403, 403, 401, 403, 401, 401, 401];
/// A manager, on one managed account of the first manager (another manager: not found).
const MANAGER_OF_TARGET: [u16; 11] = [401, 200, 404, 403, 403, 403, 401, 403, 401, 401, 401];
/// Something of the first manager's own, addressed by id (anyone else: not found).
const OWNED_BY_MANAGER: [u16; 11] = [401, 200, 404, 404, 404, 403, 401, 404, 401, 401, 401];
/// Open to all.
const PUBLIC: [u16; 11] = [200; 11];
/// Any account with a balance of its own (a rollup account has none: its manager pays).
const OWN_BALANCE: [u16; 11] = [401, 200, 200, 200, 422, 403, 401, 200, 401, 401, 401];
/// A card of the manager's own: anyone else's is not found, and a rollup account is told it
/// has no cards (its manager pays for it).
const MANAGERS_CARD: [u16; 11] = [401, 200, 404, 404, 422, 403, 401, 404, 401, 401, 401];
/// A top-up of the caller's own balance by its default card: the manager and the target
/// (the managed role) have one; the others are told to add a card first.
const TOP_UP: [u16; 11] = [401, 200, 422, 200, 422, 403, 401, 422, 401, 401, 401];

/// Invoices and charges: any account with money of its own; a rollup account is told it has
/// none (its manager's invoice carries its spend).
const INVOICED_ACCOUNT: [u16; 11] = [401, 200, 200, 200, 403, 403, 401, 200, 401, 401, 401];
/// One invoice of the first manager's: anyone else's is not found (a rollup account is told
/// it has no invoices at all).
const MANAGERS_INVOICE: [u16; 11] = [401, 200, 404, 404, 403, 403, 401, 404, 401, 401, 401];

/// The expected status of every operation for every caller of [`ROLES`].
const EXPECTED: &[(&str, &str, [u16; 11])] = &[
    ("GET", "/healthz", PUBLIC),
    ("GET", "/livez", PUBLIC),
    ("GET", "/metrics", OPERATOR),
    ("GET", "/v2/managed_accounts", MANAGER),
    ("POST", "/v2/managed_accounts", MANAGER),
    (
        "GET",
        "/v2/managed_accounts/allocatable_global_outbound_channels",
        MANAGER,
    ),
    ("GET", "/v2/managed_accounts/{id}", MANAGER_OF_TARGET),
    ("PATCH", "/v2/managed_accounts/{id}", MANAGER_OF_TARGET),
    (
        "POST",
        "/v2/managed_accounts/{id}/actions/disable",
        MANAGER_OF_TARGET,
    ),
    (
        "POST",
        "/v2/managed_accounts/{id}/actions/enable",
        MANAGER_OF_TARGET,
    ),
    (
        "PATCH",
        "/v2/managed_accounts/{id}/update_global_channel_limit",
        MANAGER_OF_TARGET,
    ),
    (
        "GET",
        "/v2/managed_accounts/{id}/api_keys",
        MANAGER_OF_TARGET,
    ),
    (
        "POST",
        "/v2/managed_accounts/{id}/api_keys",
        MANAGER_OF_TARGET,
    ),
    (
        "DELETE",
        "/v2/managed_accounts/{id}/api_keys/{key_id}",
        MANAGER_OF_TARGET,
    ),
    (
        "GET",
        "/v2/managed_accounts/{id}/pricing/rates",
        MANAGER_OF_TARGET,
    ),
    (
        "GET",
        "/v2/managed_accounts/{id}/pricing/rate",
        MANAGER_OF_TARGET,
    ),
    ("GET", "/v2/api_keys", ANY_ACCOUNT),
    ("POST", "/v2/api_keys", ANY_ACCOUNT),
    ("DELETE", "/v2/api_keys/{key_id}", OWNED_BY_MANAGER),
    ("GET", "/v2/account", ANY_ACCOUNT),
    ("PATCH", "/v2/account", ANY_ACCOUNT),
    ("GET", "/v2/balance", ANY_ACCOUNT),
    ("GET", "/v2/detail_records", ANY_ACCOUNT),
    ("GET", "/v2/audit_events", ANY_ACCOUNT),
    ("GET", "/v2/usage_reports", ANY_ACCOUNT),
    ("GET", "/v2/usage_reports/options", ANY_ACCOUNT),
    ("GET", "/v2/pricing/rates", PRICED_ACCOUNT),
    ("GET", "/v2/pricing/rate", PRICED_ACCOUNT),
    (
        "GET",
        "/v2/legacy/reporting/usage_reports/voice",
        ANY_ACCOUNT,
    ),
    (
        "POST",
        "/v2/legacy/reporting/usage_reports/voice",
        ANY_ACCOUNT,
    ),
    (
        "GET",
        "/v2/legacy/reporting/usage_reports/voice/{id}",
        OWNED_BY_MANAGER,
    ),
    (
        "DELETE",
        "/v2/legacy/reporting/usage_reports/voice/{id}",
        OWNED_BY_MANAGER,
    ),
    (
        "GET",
        "/v2/legacy/reporting/usage_reports/voice/{id}/csv",
        OWNED_BY_MANAGER,
    ),
    (
        "GET",
        "/v2/legacy/reporting/usage_reports/messaging",
        ANY_ACCOUNT,
    ),
    (
        "POST",
        "/v2/legacy/reporting/usage_reports/messaging",
        ANY_ACCOUNT,
    ),
    (
        "GET",
        "/v2/legacy/reporting/usage_reports/messaging/{id}",
        OWNED_BY_MANAGER,
    ),
    (
        "DELETE",
        "/v2/legacy/reporting/usage_reports/messaging/{id}",
        OWNED_BY_MANAGER,
    ),
    (
        "GET",
        "/v2/legacy/reporting/usage_reports/messaging/{id}/csv",
        OWNED_BY_MANAGER,
    ),
    ("GET", "/v2/invoices", INVOICED_ACCOUNT),
    ("GET", "/v2/invoices/{id}", MANAGERS_INVOICE),
    ("GET", "/v2/invoices/{id}/pdf", MANAGERS_INVOICE),
    ("GET", "/v2/charges_summary", INVOICED_ACCOUNT),
    ("GET", "/v2/charges_breakdown", PRICED_ACCOUNT),
    ("GET", "/v2/payment_methods", OWN_BALANCE),
    ("POST", "/v2/payment_methods", MANAGERS_CARD),
    ("DELETE", "/v2/payment_methods/{id}", MANAGERS_CARD),
    (
        "POST",
        "/v2/payment_methods/{id}/actions/set_default",
        MANAGERS_CARD,
    ),
    (
        "GET",
        "/v2/managed_accounts/{id}/payment_methods",
        MANAGER_OF_TARGET,
    ),
    (
        "POST",
        "/v2/managed_accounts/{id}/payment_methods",
        MANAGER_OF_TARGET,
    ),
    (
        "DELETE",
        "/v2/managed_accounts/{id}/payment_methods/{payment_method_id}",
        MANAGER_OF_TARGET,
    ),
    (
        "POST",
        "/v2/managed_accounts/{id}/payment_methods/{payment_method_id}/actions/set_default",
        MANAGER_OF_TARGET,
    ),
    (
        "GET",
        "/v2/payment/stored_payment_transactions",
        OWN_BALANCE,
    ),
    ("POST", "/v2/payment/stored_payment_transactions", TOP_UP),
    ("POST", "/v2/v2/payment/stored_payment_transactions", TOP_UP),
    (
        "GET",
        "/v2/managed_accounts/{id}/payment/stored_payment_transactions",
        MANAGER_OF_TARGET,
    ),
    (
        "POST",
        "/v2/managed_accounts/{id}/payment/stored_payment_transactions",
        MANAGER_OF_TARGET,
    ),
    ("GET", "/v2/payment/auto_recharge_prefs", OWN_BALANCE),
    ("PATCH", "/v2/payment/auto_recharge_prefs", OWN_BALANCE),
    (
        "GET",
        "/v2/managed_accounts/{id}/payment/auto_recharge_prefs",
        MANAGER_OF_TARGET,
    ),
    (
        "PATCH",
        "/v2/managed_accounts/{id}/payment/auto_recharge_prefs",
        MANAGER_OF_TARGET,
    ),
    ("POST", "/sandbox/v1/tokens", ANY_ACCOUNT),
    ("POST", "/v2/usage_events", INGEST),
    ("POST", "/v2/admissions", INGEST),
    ("POST", "/v2/channel_leases/{id}/actions/release", INGEST),
    ("POST", "/v2/channel_leases/{id}/actions/renew", INGEST),
    ("POST", "/admin/v1/price_lists", OPERATOR),
    ("GET", "/admin/v1/price_lists/{id}/rates", OPERATOR),
    ("POST", "/admin/v1/price_lists/{id}/assignments", OPERATOR),
    ("GET", "/admin/v1/accounts/{id}/balance", OPERATOR),
    ("POST", "/admin/v1/accounts/{id}/credit_limit", OPERATOR),
    ("POST", "/admin/v1/accounts/{id}/credits", OPERATOR),
    ("POST", "/admin/v1/accounts/{id}/adjustments", OPERATOR),
    ("GET", "/admin/v1/accounts/{id}/pricing/rate", OPERATOR),
    ("GET", "/admin/v1/suspended_usage", OPERATOR),
];

/// What the matrix acts on.
struct World {
    keys: [Option<String>; 11],
    target: Actor,
    price_list_id: String,
    target_key_id: String,
    manager_key_id: String,
    renew_lease_id: String,
    release_lease_id: String,
    /// Report jobs of the manager: one to read, one to delete, per kind.
    jobs: BTreeMap<(&'static str, &'static str), String>,
    /// Saved cards, the default and one to delete: the manager's own and the target's.
    manager_method_id: String,
    manager_deletable_id: String,
    target_method_id: String,
    target_deletable_id: String,
    /// Card tokens entered for the manager and for the target, to save.
    manager_token: String,
    target_token: String,
    /// The manager's invoice for January 2026.
    invoice_id: String,
}

async fn finished_job(app: &TestApp, kind: &str) -> String {
    let created = app
        .post(
            &format!("/v2/legacy/reporting/usage_reports/{kind}"),
            &app.manager.key,
            Some(
                json!({"aggregation_type": 0, "start_time": "2026-01-01T00:00:00Z",
                        "end_time": "2026-01-02T00:00:00Z"}),
            ),
        )
        .await;
    created.assert_status(200);
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        let reply = app
            .get(
                &format!("/v2/legacy/reporting/usage_reports/{kind}/{id}"),
                &app.manager.key,
            )
            .await;
        if reply.body["data"]["status"] == 2 {
            return id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("report job did not finish");
}

impl World {
    async fn build(app: &TestApp) -> Self {
        // First, so that everything below lives in February: January closed gives the
        // manager an invoice.
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
        let target = app
            .managed_of(&app.manager, "Matrix Target", json!({}))
            .await;
        let rollup = app
            .managed_of(
                &app.manager,
                "Matrix Rollup",
                json!({"rollup_billing": true}),
            )
            .await;
        let disabled = app
            .managed_of(&app.manager, "Matrix Disabled", json!({}))
            .await;
        app.post(
            &format!("/v2/managed_accounts/{}/actions/disable", disabled.id),
            &app.manager.key,
            None,
        )
        .await
        .assert_status(200);
        let cancelled = app
            .managed_of(&app.manager, "Matrix Cancelled", json!({}))
            .await;
        app.cancel_account(&cancelled.id, false).await;
        let revoked = app.post("/v2/api_keys", &app.standard.key, None).await;
        let revoked_key = revoked.body["data"]["api_key"].as_str().unwrap().to_owned();
        app.request(
            Method::DELETE,
            &format!(
                "/v2/api_keys/{}",
                revoked.body["data"]["id"].as_str().unwrap()
            ),
            Some(&app.standard.key),
            None,
        )
        .await
        .assert_status(200);
        app.patch(
            &format!(
                "/v2/managed_accounts/{}/update_global_channel_limit",
                target.id
            ),
            &app.manager.key,
            json!({"channel_limit": 4}),
        )
        .await
        .assert_status(200);
        app.operator_post(
            &format!("/admin/v1/accounts/{}/credits", target.id),
            Some("matrix-funds"),
            json!({"amount": "20.00", "reason": "matrix"}),
        )
        .await
        .assert_status(200);
        // Long leases: other cells move the clock, and an ended lease cannot be renewed.
        let lease = || async {
            app.post(
                "/v2/admissions",
                &app.ingest_key,
                Some(json!({"account_id": target.id, "product": "voice_outbound",
                    "destination": "+14155550100", "ttl_s": 14400})),
            )
            .await
            .body["data"]["lease_id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let renew_lease_id = lease().await;
        let release_lease_id = lease().await;
        let key_id =
            |reply: crate::helpers::Reply| reply.body["data"]["id"].as_str().unwrap().to_owned();
        let target_key_id = key_id(
            app.post(
                &format!("/v2/managed_accounts/{}/api_keys", target.id),
                &app.manager.key,
                None,
            )
            .await,
        );
        let manager_key_id = key_id(app.post("/v2/api_keys", &app.manager.key, None).await);
        let mut jobs = BTreeMap::new();
        for kind in ["voice", "messaging"] {
            jobs.insert((kind, "read"), finished_job(app, kind).await);
            jobs.insert((kind, "delete"), finished_job(app, kind).await);
        }
        use crate::payments::{
            AMEX, DISCOVER, INSUFFICIENT_FUNDS, MASTERCARD, PROCESSOR_ERROR, VISA, add_card,
            tokenize,
        };
        let method_id = |card: serde_json::Value| card["id"].as_str().unwrap().to_owned();
        // The first card saved is the default: top-ups charge it.
        let manager_method_id = method_id(add_card(app, &app.manager.key, None, VISA).await);
        let manager_deletable_id = method_id(add_card(app, &app.manager.key, None, DISCOVER).await);
        let target_method_id =
            method_id(add_card(app, &app.manager.key, Some(&target), MASTERCARD).await);
        let target_deletable_id =
            method_id(add_card(app, &app.manager.key, Some(&target), INSUFFICIENT_FUNDS).await);
        let manager_token = tokenize(app, &app.manager.key, AMEX).await;
        let target_token = tokenize(app, &app.manager.key, PROCESSOR_ERROR).await;
        let keys = [
            Some(app.operator_key.clone()),
            Some(app.manager.key.clone()),
            Some(app.other_manager.key.clone()),
            Some(target.key.clone()),
            Some(rollup.key.clone()),
            Some(disabled.key.clone()),
            Some(cancelled.key.clone()),
            Some(app.standard.key.clone()),
            Some(app.ingest_key.clone()),
            Some(revoked_key),
            None,
        ];
        Self {
            invoice_id,
            manager_method_id,
            manager_deletable_id,
            target_method_id,
            target_deletable_id,
            manager_token,
            target_token,
            keys,
            target,
            price_list_id,
            target_key_id,
            manager_key_id,
            renew_lease_id,
            release_lease_id,
            jobs,
        }
    }

    /// The path with real ids, and the query and body an authorized caller would send.
    fn request(&self, method: &str, path: &str, call: usize) -> (String, String, Option<Body>) {
        let mut real = path.replace(
            "{key_id}",
            if path.starts_with("/v2/managed_accounts") {
                &self.target_key_id
            } else {
                &self.manager_key_id
            },
        );
        if let Some(kind) = ["voice", "messaging"]
            .into_iter()
            .find(|k| path.starts_with(&format!("/v2/legacy/reporting/usage_reports/{k}/{{id}}")))
        {
            let use_ = if method == "DELETE" { "delete" } else { "read" };
            real = real.replace("{id}", &self.jobs[&(kind, use_)]);
        }
        real = real.replace(
            "{payment_method_id}",
            if method == "DELETE" {
                &self.target_deletable_id
            } else {
                &self.target_method_id
            },
        );
        let id = if path.contains("/price_lists/") {
            &self.price_list_id
        } else if path.starts_with("/v2/payment_methods/") && method == "DELETE" {
            &self.manager_deletable_id
        } else if path.starts_with("/v2/payment_methods/") {
            &self.manager_method_id
        } else if path.starts_with("/v2/invoices/") {
            &self.invoice_id
        } else if path.ends_with("/actions/renew") {
            &self.renew_lease_id
        } else if path.ends_with("/actions/release") {
            &self.release_lease_id
        } else {
            &self.target.id
        };
        real = real.replace("{id}", id);
        let query = match path {
            "/v2/detail_records" => "filter%5Brecord_type%5D=messaging",
            "/v2/usage_reports" => "product=messaging&dimensions=date&metrics=count",
            "/v2/pricing/rate"
            | "/v2/managed_accounts/{id}/pricing/rate"
            | "/admin/v1/accounts/{id}/pricing/rate" => {
                "product=voice_outbound&destination=%2B14155550100"
            }
            "/admin/v1/price_lists" => "name=matrix",
            "/v2/charges_summary" => "start_date=2026-01-01&end_date=2026-02-01",
            "/v2/charges_breakdown" => "start_date=2026-01-01",
            _ => "",
        }
        .to_owned();
        let body = match (method, path) {
            ("POST", "/v2/managed_accounts") => Some(Body::Json(
                json!({"business_name": format!("Matrix {call}")}),
            )),
            ("PATCH", "/v2/managed_accounts/{id}") => Some(Body::Json(
                json!({"managed_account_allow_custom_pricing": false}),
            )),
            ("PATCH", "/v2/managed_accounts/{id}/update_global_channel_limit") => {
                Some(Body::Json(json!({"channel_limit": 3})))
            }
            ("PATCH", "/v2/account") => Some(Body::Json(json!({}))),
            ("POST", "/v2/legacy/reporting/usage_reports/voice") => Some(Body::Json(
                json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z"}),
            )),
            ("POST", "/v2/legacy/reporting/usage_reports/messaging") => {
                Some(Body::Json(json!({"aggregation_type": 0})))
            }
            ("POST", "/v2/payment_methods") => {
                Some(Body::Json(json!({"token": self.manager_token})))
            }
            ("POST", "/v2/managed_accounts/{id}/payment_methods") => {
                Some(Body::Json(json!({"token": self.target_token})))
            }
            (
                "POST",
                "/v2/payment/stored_payment_transactions"
                | "/v2/v2/payment/stored_payment_transactions"
                | "/v2/managed_accounts/{id}/payment/stored_payment_transactions",
            ) => Some(Body::Json(json!({"amount": "10.00"}))),
            (
                "PATCH",
                "/v2/payment/auto_recharge_prefs"
                | "/v2/managed_accounts/{id}/payment/auto_recharge_prefs",
            ) => Some(Body::Json(json!({"enabled": false}))),
            ("POST", "/sandbox/v1/tokens") => Some(Body::Json(
                json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "739"}),
            )),
            ("POST", "/v2/usage_events") => Some(Body::Json(json!({"events": []}))),
            ("POST", "/v2/admissions") => Some(Body::Json(json!({
                "account_id": self.target.id, "product": "sms_outbound", "destination": "+14155550100"}))),
            ("POST", "/admin/v1/price_lists") => Some(Body::Csv(BASE_PRICES.to_owned())),
            ("POST", "/admin/v1/price_lists/{id}/assignments") => Some(Body::Json(
                json!({"account_id": self.target.id, "effective_from": "2025-06-01T00:00:00Z"}),
            )),
            ("POST", "/admin/v1/accounts/{id}/credit_limit") => {
                Some(Body::Json(json!({"amount": "5.00"})))
            }
            ("POST", "/admin/v1/accounts/{id}/credits" | "/admin/v1/accounts/{id}/adjustments") => {
                Some(Body::Json(json!({"amount": "1.00", "reason": "matrix"})))
            }
            _ => None,
        };
        (real, query, body)
    }
}

enum Body {
    Json(Value),
    Csv(String),
}

#[tokio::test]
async fn every_operation_answers_every_caller_as_written_down() {
    let app = spawn_app().await;
    let world = World::build(&app).await;
    let document = app.get("/v2/openapi.json", &app.manager.key).await.body;
    let mut served = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            served.push((method.to_uppercase(), path.clone()));
        }
    }
    for (method, path) in &served {
        assert!(
            EXPECTED.iter().any(|(m, p, _)| m == method && p == path),
            "{method} {path} has no row in the authorization matrix: write one down"
        );
    }
    assert_eq!(
        served.len(),
        EXPECTED.len(),
        "a row names a route that is not served"
    );

    let mut wrong = Vec::new();
    let mut call = 0;
    for (method, path, expected) in EXPECTED {
        // Each row presents a few bad keys: a fresh failure window keeps the address below
        // the throttle (tested on its own).
        app.clock
            .advance(chrono::TimeDelta::milliseconds(FAILURE_WINDOW_MS + 1));
        for (role, (key, expected)) in ROLES.iter().zip(world.keys.iter().zip(expected)) {
            call += 1;
            let (real, query, body) = world.request(method, path, call);
            let url = if query.is_empty() {
                format!("{}{real}", app.address)
            } else {
                format!("{}{real}?{query}", app.address)
            };
            let mut request = app
                .client
                .request(method.parse().unwrap(), url)
                .header("idempotency-key", format!("matrix-{call}"));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            request = match body {
                Some(Body::Json(json)) => request.json(&json),
                Some(Body::Csv(csv)) => request.header("content-type", "text/csv").body(csv),
                None => request,
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            if status != *expected {
                let text = response.text().await.unwrap_or_default();
                wrong.push(format!(
                    "{method} {path} as {role}: expected {expected}, got {status} {text}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
