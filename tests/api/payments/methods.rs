//! Payment methods: card entry at the sandbox, saving tokens, defaults, removal.

use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::helpers::spawn_app;

fn ids(reply: &Reply) -> Vec<(String, bool)> {
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["default"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn cards_are_saved_by_token_the_first_is_the_default_and_removal_stops_charges() {
    let app = spawn_app().await;
    let account = customer(&app, "Card Holder").await;

    let first = add_card(&app, &account.key, None, VISA).await;
    let second = add_card(&app, &account.key, None, MASTERCARD).await;

    assert_eq!(first["record_type"], "payment_method");
    assert_eq!(first["type"], "card");
    assert_eq!(
        (first["brand"].as_str(), first["last4"].as_str()),
        (Some("visa"), Some("4242"))
    );
    assert_eq!(
        (first["exp_month"].as_i64(), first["exp_year"].as_i64()),
        (Some(12), Some(2030))
    );
    assert_eq!(first["default"], true);
    assert_eq!(second["default"], false);
    assert!(first.get("token").is_none() && first.get("fingerprint").is_none());
    let (first_id, second_id) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );

    let switched = app
        .post(
            &format!("/v2/payment_methods/{second_id}/actions/set_default"),
            &account.key,
            None,
        )
        .await;
    switched.assert_status(200);
    let listed = app.get("/v2/payment_methods", &account.key).await;
    assert_eq!(
        ids(&listed),
        vec![(second_id.to_owned(), true), (first_id.to_owned(), false)]
    );
    let paid = top_up_amount(&app, &account.key, None, "20.00").await;
    assert_eq!(paid.body["data"]["payment_method_id"], second_id);
    assert_eq!(paid.body["data"]["card_last4"], "4444");

    let removed = app
        .request(
            Method::DELETE,
            &format!("/v2/payment_methods/{second_id}"),
            Some(&account.key),
            None,
        )
        .await;
    removed.assert_status(200);
    assert!(removed.body["data"]["deleted_at"].is_string());
    // The removed default leaves none: nothing is charged to a card nobody chose.
    top_up_amount(&app, &account.key, None, "20.00")
        .await
        .assert_error(422, "40004", Some(("pointer", "/payment_method_id")));
    top_up(
        &app,
        &account.key,
        None,
        json!({"amount": "20.00", "payment_method_id": second_id}),
        None,
    )
    .await
    .assert_status(404);
    app.request(
        Method::DELETE,
        &format!("/v2/payment_methods/{second_id}"),
        Some(&account.key),
        None,
    )
    .await
    .assert_status(404);
    let paid = top_up(
        &app,
        &account.key,
        None,
        json!({"amount": "20.00", "payment_method_id": first_id}),
        None,
    )
    .await;
    paid.assert_status(200);
    assert_eq!(
        ids(&app.get("/v2/payment_methods", &account.key).await).len(),
        1
    );

    let trail = app.get("/v2/audit_events", &account.key).await;
    let types: Vec<&str> = trail.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["change_type"].as_str().unwrap())
        .collect();
    for expected in [
        "payment_method.create",
        "payment_method.default",
        "payment_method.delete",
    ] {
        assert!(types.contains(&expected), "{types:?}");
    }
    assert_books_clean(&app).await;
}

#[tokio::test]
async fn a_token_is_saved_once_and_a_card_once_per_account() {
    let app = spawn_app().await;
    let account = customer(&app, "Once").await;
    let stranger = customer(&app, "Stranger").await;
    let token = tokenize(&app, &account.key, VISA).await;
    add_token(&app, &account.key, None, &token)
        .await
        .assert_status(200);

    // Another account's card token is not found; the same card again is a duplicate.
    add_token(&app, &stranger.key, None, &token)
        .await
        .assert_error(404, "10005", Some(("pointer", "/token")));
    let again = tokenize(&app, &account.key, VISA).await;
    add_token(&app, &account.key, None, &again)
        .await
        .assert_error(422, "10012", Some(("pointer", "/token")));
    add_token(&app, &account.key, None, "tok_sandbox_doesnotexist")
        .await
        .assert_error(404, "10005", Some(("pointer", "/token")));
    // The stranger may save the same card with a token of its own.
    add_token(&app, &stranger.key, None, &again)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn card_entry_refuses_what_is_not_a_test_card_without_repeating_it() {
    let app = spawn_app().await;
    let key = &app.standard.key;
    let cases: [(Value, &str); 8] = [
        (
            json!({"number": "4242424242424241", "exp_month": 12, "exp_year": 2030, "cvc": CVC}),
            "/number",
        ),
        (
            json!({"number": "4111111111111111", "exp_month": 12, "exp_year": 2030, "cvc": CVC}),
            "/number",
        ),
        (
            json!({"number": 4242424242424242_u64, "exp_month": 12, "exp_year": 2030, "cvc": CVC}),
            "/number",
        ),
        (
            json!({"number": VISA, "exp_month": 13, "exp_year": 2030, "cvc": CVC}),
            "/exp_month",
        ),
        (
            json!({"number": VISA, "exp_month": 12, "exp_year": 2025, "cvc": CVC}),
            "/exp_year",
        ),
        (
            json!({"number": VISA, "exp_month": 12, "exp_year": 2030, "cvc": "73"}),
            "/cvc",
        ),
        (
            json!({"number": VISA, "exp_month": 12, "exp_year": 2030, "cvc": 739}),
            "/cvc",
        ),
        (
            json!({"number": AMEX, "exp_month": 12, "exp_year": 2030, "cvc": CVC}),
            "/cvc",
        ),
    ];
    for (body, pointer) in cases {
        let reply = app
            .post("/sandbox/v1/tokens", key, Some(body.clone()))
            .await;
        reply.assert_error(422, "40001", Some(("pointer", pointer)));
        let text = reply.body.to_string();
        for secret in [
            "4242424242424241",
            "4111111111111111",
            VISA,
            AMEX,
            CVC,
            "\"73\"",
        ] {
            assert!(!text.contains(secret), "{body} answered {text}");
        }
    }
    app.post("/sandbox/v1/tokens", key, Some(json!({"exp_month": 12})))
        .await
        .assert_error(422, "10004", Some(("pointer", "/number")));
    // Card entry needs a signed-in account.
    app.request(
        reqwest::Method::POST,
        "/sandbox/v1/tokens",
        None,
        Some(json!({"number": VISA})),
    )
    .await
    .assert_status(401);
}
