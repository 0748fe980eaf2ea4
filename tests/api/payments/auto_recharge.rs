//! Auto-recharge: preferences in the Telnyx shape, one recharge per crossing of the
//! threshold however much usage arrives at once, and failures that back off, then disable.

use chrono::TimeDelta;
use futures::future::join_all;
use serde_json::{Value, json};
use steward::payments::auto_recharge;

use super::*;
use crate::helpers::{BASE_PRICES, event, spawn_app};

/// Charges `dollars` of number rental to `account` in one batch.
async fn usage(app: &TestApp, id: String, account: &Actor, dollars: i64) {
    let reply = app
        .ingest(json!([event(
            &id,
            &account.id,
            "number_rental",
            "+14155550100",
            dollars
        )]))
        .await;
    reply.assert_status(200);
    assert_eq!(reply.statuses(), ["accepted"], "{}", reply.body);
}

async fn recharges(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM payment_attempts WHERE auto_recharge = 1")
        .fetch_one(&app.db.read)
        .await
        .unwrap()
}

async fn enable(app: &TestApp, account: &Actor, threshold: &str, recharge: &str) -> Value {
    let reply = app
        .patch(
            "/v2/payment/auto_recharge_prefs",
            &account.key,
            json!({"enabled": true, "threshold_amount": threshold, "recharge_amount": recharge}),
        )
        .await;
    reply.assert_status(200);
    reply.body["data"].clone()
}

#[tokio::test]
async fn auto_recharge_fires_once_per_crossing_under_concurrent_usage() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let account = paid_customer(&app, "Recharged", "50.00").await;
    enable(&app, &account, "20.00", "30.00").await;

    // Eight batches at once take 50.00 down to 10.00, crossing 20.00 on the way.
    join_all((0..8).map(|n| usage(&app, format!("a{n}"), &account, 5))).await;
    assert_eq!(app.balance_of(&account.key).await, "10.00");
    let reports = join_all((0..3).map(|_| async {
        let payments = service(&app);
        auto_recharge::process_once(&payments).await.unwrap()
    }))
    .await;

    assert_eq!(
        reports.iter().map(|r| r.recharged).sum::<u64>(),
        1,
        "{reports:?}"
    );
    assert_eq!(recharges(&app).await, 1);
    // (threshold 20.00 − balance 10.00) + recharge 30.00.
    assert_eq!(app.balance_of(&account.key).await, "50.00");
    let listed = app
        .get("/v2/payment/stored_payment_transactions", &account.key)
        .await;
    assert_eq!(listed.body["data"][0]["auto_recharge"], true);
    assert_eq!(listed.body["data"][0]["amount"], "40.00");
    let nothing = auto_recharge::process_once(&service(&app)).await.unwrap();
    assert_eq!(nothing, auto_recharge::AutoRechargeReport::default());

    // A second crossing, a second recharge.
    join_all((0..7).map(|n| usage(&app, format!("b{n}"), &account, 5))).await;
    auto_recharge::process_once(&service(&app)).await.unwrap();
    assert_eq!(recharges(&app).await, 2);
    assert_eq!(app.balance_of(&account.key).await, "50.00");

    let trail = app.get("/v2/audit_events", &account.key).await;
    let by_steward = trail.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["change_type"] == "stored_payment_transaction.create"
                && e["change_made_by"] == "telnyx"
        })
        .count();
    assert_eq!(by_steward, 2);
    assert_books_clean(&app).await;
}

#[tokio::test]
async fn usage_above_the_threshold_or_with_auto_recharge_off_triggers_nothing() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let account = paid_customer(&app, "Quiet", "50.00").await;
    enable(&app, &account, "20.00", "30.00").await;
    usage(&app, "q1".to_owned(), &account, 5).await;
    app.patch(
        "/v2/payment/auto_recharge_prefs",
        &account.key,
        json!({"enabled": false}),
    )
    .await
    .assert_status(200);
    usage(&app, "q2".to_owned(), &account, 40).await;

    let report = auto_recharge::process_once(&service(&app)).await.unwrap();

    assert_eq!(report, auto_recharge::AutoRechargeReport::default());
    assert_eq!(recharges(&app).await, 0);
    assert_eq!(app.balance_of(&account.key).await, "5.00");
}

#[tokio::test]
async fn failed_recharges_back_off_and_then_disable_the_preference() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let account = customer(&app, "Failing").await;
    add_card(&app, &account.key, None, PROCESSOR_ERROR).await;
    enable(&app, &account, "10.00", "20.00").await;
    usage(&app, "f1".to_owned(), &account, 1).await;
    let payments = service(&app);

    let first = auto_recharge::process_once(&payments).await.unwrap();
    let too_soon = auto_recharge::process_once(&payments).await.unwrap();
    app.clock.advance(TimeDelta::minutes(15));
    let second = auto_recharge::process_once(&payments).await.unwrap();
    app.clock.advance(TimeDelta::minutes(29));
    let still_waiting = auto_recharge::process_once(&payments).await.unwrap();
    app.clock.advance(TimeDelta::minutes(1));
    let third = auto_recharge::process_once(&payments).await.unwrap();

    assert_eq!((first.failed, too_soon.failed, second.failed), (1, 0, 1));
    assert_eq!(still_waiting, auto_recharge::AutoRechargeReport::default());
    assert_eq!(third.disabled, 1);
    assert_eq!(recharges(&app).await, 3);
    let pref = app
        .get("/v2/payment/auto_recharge_prefs", &account.key)
        .await;
    assert_eq!(pref.body["data"]["enabled"], false);
    let trail = app.get("/v2/audit_events", &account.key).await;
    assert!(
        trail
            .body
            .to_string()
            .contains("auto_recharge_pref.disable"),
        "{}",
        trail.body
    );
    assert_eq!(app.balance_of(&account.key).await, "-1.00");
    // Off now: more usage triggers nothing.
    usage(&app, "f2".to_owned(), &account, 1).await;
    assert_eq!(
        auto_recharge::process_once(&payments).await.unwrap(),
        auto_recharge::AutoRechargeReport::default()
    );
    assert_books_clean(&app).await;
}

#[tokio::test]
async fn preferences_read_and_change_in_the_telnyx_shape_and_refuse_bad_values() {
    let app = spawn_app().await;
    let account = customer(&app, "Prefs").await;
    let path = "/v2/payment/auto_recharge_prefs";

    let defaults = app.get(path, &account.key).await;

    defaults.assert_status(200);
    assert_eq!(
        defaults.body["data"],
        json!({"record_type": "auto_recharge_pref", "id": account.id, "enabled": false,
               "threshold_amount": "0.00", "recharge_amount": "0.00",
               "preference": "credit_paypal", "invoice_enabled": false})
    );
    let refused = [
        (
            json!({"enabled": true, "threshold_amount": "10.00", "recharge_amount": "50.00"}),
            422,
            "40004",
        ),
        (json!({"threshold_amount": "10"}), 422, "10027"),
        (json!({"threshold_amount": 10}), 422, "10027"),
        (json!({"recharge_amount": "5.00"}), 422, "40001"),
        (json!({"recharge_amount": "-50.00"}), 422, "10027"),
        (json!({"preference": "ach"}), 422, "40001"),
    ];
    for (body, status, code) in refused {
        app.patch(path, &account.key, body)
            .await
            .assert_error(status, code, None);
    }
    add_card(&app, &account.key, None, VISA).await;
    let set = app
        .patch(
            path,
            &account.key,
            json!({"enabled": true, "threshold_amount": "10.00",
            "recharge_amount": "50.00", "preference": "credit_paypal", "invoice_enabled": true}),
        )
        .await;
    set.assert_status(200);
    assert_eq!(set.body["data"]["enabled"], true);
    assert_eq!(set.body["data"]["recharge_amount"], "50.00");
    assert_eq!(set.body["data"]["invoice_enabled"], true);

    // The manager reads and changes it too; the change is on the account's trail.
    let managed_path = format!(
        "/v2/managed_accounts/{}/payment/auto_recharge_prefs",
        account.id
    );
    let seen = app.get(&managed_path, &app.manager.key).await;
    assert_eq!(seen.body["data"], set.body["data"]);
    app.patch(
        &managed_path,
        &app.manager.key,
        json!({"threshold_amount": "25.00"}),
    )
    .await
    .assert_status(200);
    assert_eq!(
        app.get(path, &account.key).await.body["data"]["threshold_amount"],
        "25.00"
    );
    let trail = app.get("/v2/audit_events", &account.key).await;
    let by_manager = trail.body["data"].as_array().unwrap().iter().any(|e| {
        e["change_type"] == "auto_recharge_pref.update" && e["change_made_by"] == "account_manager"
    });
    assert!(by_manager, "{}", trail.body);
}
