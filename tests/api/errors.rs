use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

async fn managed_count(app: &TestApp) -> u64 {
    app.get(
        "/v2/managed_accounts?filter%5Bstatus%5D%5Beq%5D=all",
        &app.manager.key,
    )
    .await
    .body["meta"]["total_results"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn malformed_bodies_get_the_envelope_and_change_nothing() {
    let app = spawn_app().await;
    let key = &app.manager.key;

    let syntax = app
        .raw(
            Method::POST,
            "/v2/managed_accounts",
            key,
            "{\"business_name\": ",
        )
        .await;
    syntax.assert_error(400, "10015", None);
    let trailing = app
        .raw(
            Method::POST,
            "/v2/managed_accounts",
            key,
            "{\"business_name\": \"A\"} x",
        )
        .await;
    trailing.assert_error(400, "10015", None);
    let not_object = app
        .raw(Method::POST, "/v2/managed_accounts", key, "[1, 2]")
        .await;
    not_object.assert_error(400, "10015", None);
    let binary = app
        .raw(
            Method::POST,
            "/v2/managed_accounts",
            key,
            vec![0xff_u8, 0xfe, 0x00],
        )
        .await;
    binary.assert_error(400, "10015", None);

    assert_eq!(managed_count(&app).await, 0);
}

#[tokio::test]
async fn oversize_bodies_are_refused_before_they_are_read() {
    let app = spawn_app().await; // 64 KiB limit in tests
    let huge = json!({"business_name": "x".repeat(100_000)}).to_string();

    let reply = app
        .raw(Method::POST, "/v2/managed_accounts", &app.manager.key, huge)
        .await;

    reply.assert_error(413, "40005", None);
    assert_eq!(managed_count(&app).await, 0);
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_in_the_envelope() {
    let app = spawn_app().await;

    let none = app.request(Method::GET, "/v2/balance", None, None).await;
    none.assert_error(401, "10009", None);
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    app.request(Method::GET, "/v2/balance", Some("KEY123_nope"), None)
        .await
        .assert_error(401, "10009", None);
    app.request(Method::GET, "/v2/balance", Some(&"k".repeat(5000)), None)
        .await
        .assert_error(401, "10009", None);
    let basic = app
        .client
        .get(format!("{}/v2/balance", app.address))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    TestApp::read(basic).await.assert_error(401, "10009", None);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_envelope() {
    let app = spawn_app().await;

    app.get("/v2/nothing_here", &app.manager.key)
        .await
        .assert_error(404, "10005", None);
    app.request(
        Method::PUT,
        "/v2/managed_accounts",
        Some(&app.manager.key),
        Some(json!({})),
    )
    .await
    .assert_error(405, "40006", None);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;

    let reply = app.get("/v2/balance", &app.manager.key).await;
    assert!(reply.headers.get("x-request-id").is_some());
    let echoed = app
        .client
        .get(format!("{}/livez", app.address))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-123");
}

#[tokio::test]
async fn health_endpoints_answer() {
    let app = spawn_app().await;
    let live = app
        .client
        .get(format!("{}/livez", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(TestApp::read(live).await.body, json!({"status": "ok"}));
    let ready = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(TestApp::read(ready).await.body, json!({"status": "ok"}));
}

#[tokio::test]
async fn a_request_over_its_time_limit_is_cut_off_with_408() {
    let app = crate::helpers::spawn_app_with(|settings| settings.request_timeout_ms = 1).await;

    // Creating an account hashes a password with argon2id, which takes far longer than 1 ms.
    let reply = app
        .create_managed(
            &app.manager.key,
            json!({"business_name": "Slow", "password": "a long enough password"}),
        )
        .await;

    reply.assert_error(408, "10008", None);
    // A write cut short is not for the SDKs to repeat on their own.
    assert_eq!(reply.headers["x-should-retry"], "false");
}

#[tokio::test]
async fn exact_error_envelope_for_a_blamed_field() {
    let app = spawn_app().await;

    let reply = app
        .create_managed(&app.manager.key, json!({"email": "x@y.example"}))
        .await;

    assert_eq!(
        reply.body,
        json!({"errors": [{"code": "10004", "title": "Missing required parameter",
                           "detail": "business_name is required", "source": {"pointer": "/business_name"}}]})
    );
}

#[tokio::test]
async fn a_card_number_in_any_field_or_parameter_is_never_echoed_nor_stored() {
    let app = spawn_app().await;
    let key = &app.standard.key;
    let replies = [
        app.patch("/v2/account", key, json!({"email": "4242 4242 4242 4242"}))
            .await,
        app.patch(
            "/v2/account",
            key,
            json!({"email": "4242424242424242@cards.example"}),
        )
        .await,
        app.patch(
            "/v2/account",
            key,
            json!({"business_name": "Acme 4242-4242-4242-4242"}),
        )
        .await,
        app.patch("/v2/account", key, json!({"email": 4242424242424242_u64}))
            .await,
        app.get(
            "/v2/managed_accounts?filter[5555555555554444]=x",
            &app.manager.key,
        )
        .await,
        app.create_managed(
            &app.manager.key,
            json!({"business_name": "Fine", "password": 5555555555554444_u64}),
        )
        .await,
    ];
    for reply in replies {
        assert!(reply.status.is_client_error(), "{}", reply.body);
        let text = reply.body.to_string();
        for spelling in [
            "4242424242424242",
            "4242 4242 4242 4242",
            "4242-4242-4242-4242",
            "5555555555554444",
        ] {
            assert!(!text.contains(spelling), "echoed: {text}");
        }
    }
    let me = app.get("/v2/account", key).await;
    assert_eq!(me.body["data"]["organization_name"], "Standalone");
    assert_eq!(me.body["data"]["email"], "solo@standard.example");
}
