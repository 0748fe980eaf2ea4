//! Billing in the portal: cards, top-ups charged once per form, auto-recharge, and a rollup
//! account with none of them.

use reqwest::StatusCode;
use serde_json::json;

use super::{Browser, PASSWORD, manager_browser};
use crate::helpers::spawn_app;

#[tokio::test]
async fn a_card_tops_up_the_balance_once_however_often_the_form_is_posted() {
    let app = spawn_app().await;
    let mut browser = manager_browser(&app).await;

    let bad = browser
        .fill(
            "/billing",
            "/billing/cards",
            &[
                ("number", "5555 5555 5555 4444"),
                ("exp_month", "12"),
                ("exp_year", "2030"),
                ("cvc", "1"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"cvc-error\""), "{}", bad.body);
    // What was typed is never shown back.
    assert!(!bad.body.contains("5555 5555") && !bad.body.contains("5555555555554444"));
    browser
        .fill(
            "/billing",
            "/billing/cards",
            &[
                ("number", "4242 4242 4242 4242"),
                ("exp_month", "12"),
                ("exp_year", "2030"),
                ("cvc", "123"),
            ],
        )
        .await
        .assert_redirect("/billing");

    let form = browser.get("/billing").await;
    let key = form.field("idempotency_key").unwrap();
    for _ in 0..2 {
        browser
            .submit(
                "/billing/top-up",
                &[("idempotency_key", &key), ("amount", "25.00")],
            )
            .await
            .assert_redirect("/billing");
    }

    assert_eq!(app.balance_of(&app.manager.key).await, "25.00");
    let page = browser.get("/billing").await;
    assert!(page.body.contains("ending 4242"));
    assert_eq!(
        page.body.matches("<td>succeeded</td>").count(),
        1,
        "{}",
        page.body
    );
    let tiny = browser
        .submit(
            "/billing/top-up",
            &[("idempotency_key", "another"), ("amount", "1.5")],
        )
        .await;
    assert_eq!(tiny.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(tiny.body.contains("id=\"amount-error\""), "{}", tiny.body);
    let on = browser
        .fill(
            "/billing",
            "/billing/auto-recharge",
            &[
                ("enabled", "on"),
                ("threshold_amount", "10.00"),
                ("recharge_amount", "50.00"),
            ],
        )
        .await;
    on.assert_redirect("/billing");
    let prefs = app
        .get("/v2/payment/auto_recharge_prefs", &app.manager.key)
        .await;
    assert_eq!(prefs.body["data"]["enabled"], true);
    assert_eq!(prefs.body["data"]["recharge_amount"], "50.00");
}

#[tokio::test]
async fn a_rollup_account_has_no_cards_or_top_ups() {
    let app = spawn_app().await;
    let rollup = app
        .managed_of(
            &app.manager,
            "Rolled Up",
            json!({"rollup_billing": true, "password": PASSWORD}),
        )
        .await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&rollup.email, PASSWORD).await;

    let page = browser.get("/billing").await;
    browser.get("/settings").await;
    let refused = browser
        .submit(
            "/billing/cards",
            &[
                ("number", "4242424242424242"),
                ("exp_month", "12"),
                ("exp_year", "2030"),
                ("cvc", "123"),
            ],
        )
        .await;

    assert!(page.body.contains("rollup billing") && !page.body.contains("Add a card"));
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("rollup"), "{}", refused.body);
}
