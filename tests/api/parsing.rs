//! How requests are parsed: content types, duplicate keys, page parameters and unknown body
//! fields (NUL characters: `nul.rs`). Each answer must be the same on SQLite and PostgreSQL,
//! and a refused request changes nothing.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{BASE_PRICES, Reply, TestApp, event, spawn_app};

/// Sends `body` with exactly the given `Content-Type` (none when `None`).
pub async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = app.client.request(method, format!("{}{path}", app.address));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    TestApp::read(request.body(body).send().await.expect("request sent")).await
}

pub async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&app.db.read)
        .await
        .unwrap()
}

pub fn detail(reply: &Reply) -> &str {
    reply.error()["detail"].as_str().unwrap_or_default()
}

// --- Content types ----------------------------------------------------------------------

#[tokio::test]
async fn a_json_body_not_sent_as_json_is_a_415_and_creates_nothing() {
    let app = spawn_app().await;
    let body = json!({"business_name": "Typed Co"}).to_string();

    for content_type in [
        Some("text/plain"),
        None,
        Some("application/x-www-form-urlencoded"),
    ] {
        let reply = send(
            &app,
            Method::POST,
            "/v2/managed_accounts",
            Some(&app.manager.key),
            content_type,
            body.clone(),
        )
        .await;

        reply.assert_error(415, "40008", None);
        assert!(
            detail(&reply).contains("application/json"),
            "{}",
            reply.body
        );
    }
    let listed = app.get("/v2/managed_accounts", &app.manager.key).await;
    assert_eq!(listed.body["meta"]["total_results"], 0);
}

#[tokio::test]
async fn json_media_types_and_bodiless_actions_are_accepted() {
    let app = spawn_app().await;

    for (n, content_type) in [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.api+json",
        "*/*", // what the Node SDK sends on some calls
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({"business_name": format!("Typed Co {n}")}).to_string();
        send(
            &app,
            Method::POST,
            "/v2/managed_accounts",
            Some(&app.manager.key),
            Some(content_type),
            body,
        )
        .await
        .assert_status(200);
    }
    // An action without a body needs no content type (the Python SDK sends neither).
    let child = app.managed_of(&app.manager, "Bodiless Co", json!({})).await;
    for action in ["disable", "enable"] {
        send(
            &app,
            Method::POST,
            &format!("/v2/managed_accounts/{}/actions/{action}", child.id),
            Some(&app.manager.key),
            None,
            "",
        )
        .await
        .assert_status(200);
    }
}

#[tokio::test]
async fn a_price_list_must_be_sent_as_csv() {
    let app = spawn_app().await;

    for content_type in [Some("application/json"), None, Some("*/*")] {
        send(
            &app,
            Method::POST,
            "/admin/v1/price_lists?name=deck",
            Some(&app.operator_key),
            content_type,
            BASE_PRICES,
        )
        .await
        .assert_error(415, "40008", None);
    }
    assert_eq!(count(&app, "price_lists").await, 0);
    send(
        &app,
        Method::POST,
        "/admin/v1/price_lists?name=deck",
        Some(&app.operator_key),
        Some("text/csv; charset=utf-8"),
        BASE_PRICES,
    )
    .await
    .assert_status(200);
}

// --- Duplicate keys ---------------------------------------------------------------------

#[tokio::test]
async fn a_duplicate_key_is_a_400_naming_it() {
    let app = spawn_app().await;

    let reply = app
        .raw(
            Method::POST,
            "/v2/managed_accounts",
            &app.manager.key,
            r#"{"business_name": "One", "business_name": "Two"}"#,
        )
        .await;

    reply.assert_error(400, "10015", Some(("pointer", "/business_name")));
    assert!(detail(&reply).contains("'business_name'"), "{}", reply.body);
    let listed = app.get("/v2/managed_accounts", &app.manager.key).await;
    assert_eq!(listed.body["meta"]["total_results"], 0);
}

#[tokio::test]
async fn a_duplicate_key_inside_a_usage_event_refuses_the_batch() {
    let app = spawn_app().await;
    let child = app.managed_of(&app.manager, "Twice Co", json!({})).await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-01-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let events: Vec<String> = (0..4)
        .map(|n| {
            event(
                &format!("e-{n}"),
                &child.id,
                "sms_outbound",
                "+14155550100",
                1,
            )
            .to_string()
        })
        .collect();
    let mut twice = events.clone();
    // The fourth event states its quantity twice: 1, then 1000.
    twice[3] = twice[3].replacen('}', r#","quantity":1000}"#, 1);
    let body = format!(r#"{{"events": [{}]}}"#, twice.join(","));

    let reply = app
        .raw(Method::POST, "/v2/usage_events", &app.ingest_key, body)
        .await;
    let top = app
        .raw(
            Method::POST,
            "/v2/usage_events",
            &app.ingest_key,
            format!(r#"{{"events": [{}], "events": []}}"#, events.join(",")),
        )
        .await;

    reply.assert_error(400, "10015", Some(("pointer", "/events/3/quantity")));
    assert!(detail(&reply).contains("'quantity'"), "{}", reply.body);
    top.assert_error(400, "10015", Some(("pointer", "/events")));
    assert_eq!(count(&app, "usage_records").await, 0);
}

// --- Page parameters --------------------------------------------------------------------

#[tokio::test]
async fn every_invalid_page_parameter_is_a_422_on_every_list() {
    let app = spawn_app().await;
    let child = app.managed_of(&app.manager, "Paged Co", json!({})).await;
    let list_id = app
        .import_prices(BASE_PRICES, "platform_default=true")
        .await
        .body["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lists = [
        ("/v2/managed_accounts".to_owned(), &app.manager.key, 250),
        ("/v2/api_keys".to_owned(), &app.manager.key, 250),
        (
            format!("/v2/managed_accounts/{}/api_keys", child.id),
            &app.manager.key,
            250,
        ),
        (
            "/v2/detail_records?filter%5Brecord_type%5D=messaging".to_owned(),
            &app.manager.key,
            50,
        ),
        ("/v2/pricing/rates".to_owned(), &app.manager.key, 250),
        ("/v2/audit_events".to_owned(), &app.manager.key, 250),
        ("/v2/invoices".to_owned(), &app.manager.key, 250),
        (
            "/v2/payment/stored_payment_transactions".to_owned(),
            &app.manager.key,
            250,
        ),
        (
            format!(
                "/v2/managed_accounts/{}/payment/stored_payment_transactions",
                child.id
            ),
            &app.manager.key,
            250,
        ),
        (
            "/v2/usage_reports?product=messaging&dimensions=date&metrics=count".to_owned(),
            &app.manager.key,
            5000,
        ),
        (
            format!("/v2/managed_accounts/{}/pricing/rates", child.id),
            &app.manager.key,
            250,
        ),
        (
            format!("/admin/v1/price_lists/{list_id}/rates"),
            &app.operator_key,
            250,
        ),
        (
            "/admin/v1/suspended_usage".to_owned(),
            &app.operator_key,
            250,
        ),
    ];
    let documented = crate::statuses::operations(&app)
        .await
        .into_iter()
        .filter(|op| op.query_parameters.iter().any(|p| p == "page[size]"))
        .count();
    assert_eq!(documented, lists.len(), "a list is missing here");

    for (path, key, size_max) in lists {
        let join = if path.contains('?') { '&' } else { '?' };
        let too_big = (size_max + 1).to_string();
        for (name, value) in [
            ("page[size]", "-1"),
            ("page[size]", "0"),
            ("page[size]", too_big.as_str()),
            ("page[size]", "abc"),
            ("page[size]", "1.5"),
            ("page[size]", "+5"),
            ("page[size]", ""),
            ("page[size]", "99999999999999999999"),
            ("page[number]", "-1"),
            ("page[number]", "0"),
            ("page[number]", "1000001"),
            ("page[number]", "two"),
        ] {
            let encoded = name.replace('[', "%5B").replace(']', "%5D");
            let reply = app
                .get(&format!("{path}{join}{encoded}={value}"), key)
                .await;
            reply.assert_error(422, "40001", Some(("parameter", name)));
        }
        app.get(
            &format!("{path}{join}page%5Bsize%5D={size_max}&page%5Bnumber%5D=1"),
            key,
        )
        .await
        .assert_status(200);
    }
}

// --- Unknown body fields ----------------------------------------------------------------

#[tokio::test]
async fn a_password_sent_to_an_update_says_where_passwords_are_set() {
    let app = spawn_app().await;
    let child = app.managed_of(&app.manager, "Secret Co", json!({})).await;

    let managed = app
        .patch(
            &format!("/v2/managed_accounts/{}", child.id),
            &app.manager.key,
            json!({"managed_account_allow_custom_pricing": true, "password": "a new password"}),
        )
        .await;
    let own = app
        .patch(
            "/v2/account",
            &child.key,
            json!({"password": "a new password"}),
        )
        .await;

    for reply in [&managed, &own] {
        reply.assert_error(422, "40003", Some(("pointer", "/password")));
        let text = detail(reply);
        assert!(
            text.contains("General settings") && text.contains("steward admin set-password"),
            "{text}"
        );
    }
    // Nothing else in the refused request was applied.
    let after = app
        .get(
            &format!("/v2/managed_accounts/{}", child.id),
            &app.manager.key,
        )
        .await;
    assert_eq!(
        after.body["data"]["managed_account_allow_custom_pricing"],
        false
    );
}

#[tokio::test]
async fn an_unknown_field_is_a_422_naming_it_on_every_json_body_operation() {
    let app = spawn_app().await;
    let ids = crate::statuses::Ids::seed(&app).await;

    for operation in crate::statuses::operations(&app).await {
        if operation.body.as_deref() != Some("application/json") {
            continue;
        }
        let reply = send(
            &app,
            operation.method.clone(),
            &ids.path(&operation),
            Some(ids.key(&app, &operation)),
            Some("application/json"),
            r#"{"unexpected_field": 1}"#,
        )
        .await;

        assert_eq!(
            reply.status, 422,
            "{} {}: {}",
            operation.method, operation.path, reply.body
        );
        assert_eq!(reply.error()["source"]["pointer"], "/unexpected_field");
        assert!(
            detail(&reply).contains("'unexpected_field'"),
            "{}",
            reply.body
        );
    }
}

#[tokio::test]
async fn usage_events_keep_accepting_keys_of_their_own() {
    let app = spawn_app().await;
    let child = app.managed_of(&app.manager, "Forward Co", json!({})).await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-01-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let mut tagged = event("tagged-1", &child.id, "sms_outbound", "+14155550100", 1);
    tagged["switch_id"] = json!("sw-7");
    tagged["carrier"] = json!({"mcc": "310", "mnc": "260"});

    let reply = app.ingest(json!([tagged])).await;

    reply.assert_status(200);
    assert_eq!(reply.statuses(), ["accepted"]);
    // The batch object itself takes only `events`.
    app.post(
        "/v2/usage_events",
        &app.ingest_key,
        Some(json!({"events": [], "batch_id": "b-1"})),
    )
    .await
    .assert_error(422, "40001", Some(("pointer", "/batch_id")));
}
