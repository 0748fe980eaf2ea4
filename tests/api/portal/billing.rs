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

#[tokio::test]
async fn invoices_download_for_their_own_account_only_and_show_no_rate_to_a_managed_account() {
    use std::sync::Arc;

    use steward::accounts::AccountId;
    use steward::clock::ClockHandle;
    use steward::invoices::{self, Period};

    use crate::price_leak::{FORBIDDEN_NUMBERS, PLATFORM_PRICES, usage_of};

    let app = spawn_app().await;
    app.import_prices(
        PLATFORM_PRICES,
        "platform_default=true&effective_from=2025-01-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let own = app
        .managed_of(&app.manager, "Invoiced", json!({"password": PASSWORD}))
        .await;
    let reply = app.ingest(json!(usage_of(&own, "inv"))).await;
    assert!(
        reply.statuses().iter().all(|s| *s == "accepted"),
        "{}",
        reply.body
    );
    app.clock.advance(chrono::TimeDelta::days(31));
    let clock: ClockHandle = Arc::new(app.clock.clone());
    let closed = invoices::close_period(
        &app.db,
        &clock,
        Period::parse("2026-01").unwrap(),
        AccountId::parse(&own.id).unwrap(),
        &crate::helpers::operator(),
    )
    .await
    .unwrap();
    let id = closed.invoice.id.clone();

    let mut itself = Browser::new(&app);
    itself.sign_in(&own.email, PASSWORD).await;
    let billing = itself.get("/billing").await;
    assert!(billing.body.contains("INV-"), "{}", billing.body);
    let path = format!("/billing/invoices/{id}/pdf");
    assert!(billing.body.contains(&path));
    let pdf = itself.get(&path).await;
    assert_eq!(pdf.status, StatusCode::OK);
    assert_eq!(pdf.headers["content-type"], "application/pdf");

    let response = reqwest::Client::new()
        .get(format!("{}{path}", app.address))
        .header(
            "cookie",
            format!(
                "__Host-steward_session={}",
                itself.cookies["__Host-steward_session"]
            ),
        )
        .send()
        .await
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF"));
    let text = crate::invoices::pdf_text(&bytes);
    for rate in FORBIDDEN_NUMBERS {
        assert!(
            !text.contains(rate),
            "the managed account's invoice shows {rate}:\n{text}"
        );
    }

    let mut manager = manager_browser(&app).await;
    super::give_password(&app, &app.other_manager).await;
    let mut other = Browser::new(&app);
    other.sign_in(&app.other_manager.email, PASSWORD).await;
    assert_eq!(other.get(&path).await.status, StatusCode::NOT_FOUND);
    // Its own manager reaches it only as the account.
    assert_eq!(manager.get(&path).await.status, StatusCode::NOT_FOUND);
    manager.act_as(&own.id).await;
    assert_eq!(manager.get(&path).await.status, StatusCode::OK);
}
