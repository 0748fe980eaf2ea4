//! Top-ups: each test card's outcome, exactly-once posting under retries and lost answers,
//! amounts, rollup accounts, managers, refunds.

use chrono::TimeDelta;
use futures::future::join_all;
use serde_json::json;

use super::*;
use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn each_test_card_answers_as_documented() {
    let app = spawn_app().await;
    for (n, number) in [VISA, MASTERCARD, AMEX, DISCOVER, SLOW_SUCCESS]
        .into_iter()
        .enumerate()
    {
        let account = customer(&app, &format!("Payer {n}")).await;
        add_card(&app, &account.key, None, number).await;

        let reply = top_up_amount(&app, &account.key, None, "120.00").await;

        reply.assert_status(200);
        let data = &reply.body["data"];
        assert_eq!(data["record_type"], "transaction");
        assert_eq!(data["transaction_processing_type"], "stored_payment");
        assert_eq!(data["amount_cents"], 12000);
        assert_eq!(data["amount_currency"], "USD");
        assert_eq!(data["status"], "succeeded");
        assert_eq!(data["processor_status"], "submitted_for_settlement");
        assert_eq!(data["auto_recharge"], false);
        assert_eq!(app.balance_of(&account.key).await, "120.00", "{number}");
    }
    let declines = [
        (INSUFFICIENT_FUNDS, "insufficient funds"),
        (STOLEN, "declined by its issuer"),
        (EXPIRED, "has expired"),
        (INCORRECT_CVC, "security code (CVC) is incorrect"),
    ];
    for (n, (number, words)) in declines.into_iter().enumerate() {
        let account = customer(&app, &format!("Declined {n}")).await;
        add_card(&app, &account.key, None, number).await;

        let reply = top_up_amount(&app, &account.key, None, "120.00").await;

        reply.assert_error(422, "40021", None);
        let detail = reply.error()["detail"].as_str().unwrap();
        assert!(detail.contains(words), "{number}: {detail}");
        assert!(!detail.to_lowercase().contains("stolen"), "{detail}");
        assert_eq!(app.balance_of(&account.key).await, "0.00");
        let listed = app
            .get("/v2/payment/stored_payment_transactions", &account.key)
            .await;
        assert_eq!(listed.body["data"][0]["status"], "declined");
        assert_ne!(listed.body["data"][0]["decline_code"], "stolen_card");
    }
    let failing = customer(&app, "Processor Error").await;
    add_card(&app, &failing.key, None, PROCESSOR_ERROR).await;
    let failed = top_up_amount(&app, &failing.key, None, "120.00").await;
    failed.assert_error(502, "40022", None);
    // The SDKs retry 5xx on their own, without a key unless told: not this one.
    assert_eq!(failed.headers["x-should-retry"], "false");
    assert_eq!(app.balance_of(&failing.key).await, "0.00");

    let lost = customer(&app, "Lost Answer").await;
    add_card(&app, &lost.key, None, LOST_ANSWER).await;
    let first = top_up(
        &app,
        &lost.key,
        None,
        json!({"amount": "120.00"}),
        Some("lost-1"),
    )
    .await;
    first.assert_status(202);
    assert_eq!(first.body["data"]["status"], "pending");
    assert!(first.headers.get("retry-after").is_some());
    assert_eq!(app.balance_of(&lost.key).await, "0.00");
    let retried = top_up(
        &app,
        &lost.key,
        None,
        json!({"amount": "120.00"}),
        Some("lost-1"),
    )
    .await;
    retried.assert_status(200);
    assert_eq!(retried.body["data"]["id"], first.body["data"]["id"]);
    assert_eq!(retried.headers["idempotent-replayed"], "true");
    assert_eq!(app.balance_of(&lost.key).await, "120.00");

    assert_eq!(card_payment_entries(&app).await, 6);
    assert_books_clean(&app).await;
}

#[tokio::test]
async fn retries_with_one_idempotency_key_charge_the_card_and_post_once() {
    let app = spawn_app().await;
    let account = customer(&app, "Retrier").await;
    add_card(&app, &account.key, None, VISA).await;
    let body = json!({"amount": "50.00"});

    let replies =
        join_all((0..6).map(|_| top_up(&app, &account.key, None, body.clone(), Some("retry-key"))))
            .await;
    let settled = top_up(&app, &account.key, None, body.clone(), Some("retry-key")).await;

    let id = &settled.body["data"]["id"];
    for reply in &replies {
        assert!(matches!(reply.status.as_u16(), 200 | 202), "{}", reply.body);
        assert_eq!(&reply.body["data"]["id"], id);
    }
    settled.assert_status(200);
    assert_eq!(settled.headers["idempotent-replayed"], "true");
    assert_eq!(app.balance_of(&account.key).await, "50.00");
    assert_eq!(sandbox_charges(&app).await, 1);
    assert_eq!(card_payment_entries(&app).await, 1);

    // The same key for another amount is refused; a request without a key is a new one.
    top_up(
        &app,
        &account.key,
        None,
        json!({"amount": "60.00"}),
        Some("retry-key"),
    )
    .await
    .assert_error(422, "40001", Some(("parameter", "Idempotency-Key")));
    top_up_amount(&app, &account.key, None, "50.00")
        .await
        .assert_status(200);
    assert_eq!(app.balance_of(&account.key).await, "100.00");
    assert_books_clean(&app).await;
}

#[tokio::test]
async fn a_lost_answer_is_settled_once_by_the_reconciler() {
    let app = spawn_app().await;
    let account = customer(&app, "Lost").await;
    add_card(&app, &account.key, None, LOST_ANSWER).await;

    let first = top_up_amount(&app, &account.key, None, "75.00").await;
    first.assert_status(202);
    let reports = join_all((0..3).map(|_| async {
        let payments = service(&app);
        payments.reconcile_once().await.unwrap()
    }))
    .await;

    let settled: u64 = reports.iter().map(|r| r.settled).sum();
    assert!(settled >= 1, "{reports:?}");
    assert_eq!(app.balance_of(&account.key).await, "75.00");
    assert_eq!(card_payment_entries(&app).await, 1);
    let again = service(&app).reconcile_once().await.unwrap();
    assert_eq!((again.settled, again.still_pending), (0, 0));
    let listed = app
        .get("/v2/payment/stored_payment_transactions", &account.key)
        .await;
    assert_eq!(listed.body["data"][0]["status"], "succeeded");
    assert_eq!(listed.body["meta"]["total_results"], 1);
    assert_books_clean(&app).await;
}

#[tokio::test]
async fn a_charge_the_processor_never_received_fails_after_the_grace_period() {
    // The request is cut off while the sandbox is still on its way to the charge: the
    // attempt is recorded, the processor has nothing.
    let app = spawn_app_with(|settings| {
        settings.request_timeout_ms = 300;
        settings.payments.sandbox_latency_ms = 5_000;
    })
    .await;
    let account = customer(&app, "Cut Off").await;
    let payments = service(&app);
    let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let card = steward::payments::gateway::CardEntry {
        number: steward::payments::card::CardNumber::parse(VISA).unwrap(),
        expiry: steward::payments::card::Expiry::parse(12, 2030, today).unwrap(),
        cvc: steward::payments::card::Cvc::parse(CVC, "visa").unwrap(),
    };
    let token = payments.tokenize(card).await.unwrap().token;
    let owner =
        steward::audit::Actor::Owner(steward::accounts::AccountId::parse(&account.id).unwrap());
    payments
        .add_method(
            steward::accounts::AccountId::parse(&account.id).unwrap(),
            &token,
            false,
            &owner,
        )
        .await
        .unwrap();

    top_up(
        &app,
        &account.key,
        None,
        json!({"amount": "20.00"}),
        Some("cut-1"),
    )
    .await
    .assert_status(408);
    let early = service(&app).reconcile_once().await.unwrap();
    app.clock.advance(TimeDelta::seconds(41));
    let late = service(&app).reconcile_once().await.unwrap();

    assert_eq!((early.settled, early.still_pending), (0, 1));
    assert_eq!(late.settled, 1);
    assert_eq!(sandbox_charges(&app).await, 0);
    assert_eq!(app.balance_of(&account.key).await, "0.00");
    let listed = app
        .get("/v2/payment/stored_payment_transactions", &account.key)
        .await;
    assert_eq!(listed.body["data"][0]["status"], "failed");
    assert_books_clean(&app).await;
}

#[tokio::test]
async fn amounts_that_are_not_dollars_and_cents_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let account = customer(&app, "Amounts").await;
    add_card(&app, &account.key, None, VISA).await;
    let format = [
        json!("-5.00"),
        json!("12.345"),
        json!("1e3"),
        json!("12.5"),
        json!(120),
        json!(120.0),
        json!("+12.00"),
        json!(" 12.00"),
        json!("twelve"),
        json!(["12.00"]),
    ];
    let range = [
        json!("0.00"),
        json!("9.99"),
        json!("10000.01"),
        json!("99999999999.00"),
        json!("999999999999999999999999.00"),
    ];

    for amount in &format {
        top_up(&app, &account.key, None, json!({"amount": amount}), None)
            .await
            .assert_error(422, "10027", Some(("pointer", "/amount")));
    }
    for amount in &range {
        let reply = top_up(&app, &account.key, None, json!({"amount": amount}), None).await;
        reply.assert_error(422, "40001", Some(("pointer", "/amount")));
    }
    top_up(&app, &account.key, None, json!({}), None)
        .await
        .assert_error(422, "10004", Some(("pointer", "/amount")));

    assert_eq!(sandbox_charges(&app).await, 0);
    let listed = app
        .get("/v2/payment/stored_payment_transactions", &account.key)
        .await;
    assert_eq!(listed.body["meta"]["total_results"], 0);
    assert_eq!(app.balance_of(&account.key).await, "0.00");
}

#[tokio::test]
async fn a_rollup_account_has_no_payments_and_is_told_why() {
    let app = spawn_app().await;
    let rollup = app
        .managed_of(&app.manager, "Rollup Co", json!({"rollup_billing": true}))
        .await;
    let token = tokenize(&app, &rollup.key, VISA).await;
    let base = format!("/v2/managed_accounts/{}", rollup.id);
    let attempts = [
        app.post(
            "/v2/payment_methods",
            &rollup.key,
            Some(json!({"token": token})),
        )
        .await,
        app.get("/v2/payment_methods", &rollup.key).await,
        top_up_amount(&app, &rollup.key, None, "20.00").await,
        app.get("/v2/payment/auto_recharge_prefs", &rollup.key)
            .await,
        app.patch(
            "/v2/payment/auto_recharge_prefs",
            &rollup.key,
            json!({"enabled": true}),
        )
        .await,
        app.post(
            &format!("{base}/payment_methods"),
            &app.manager.key,
            Some(json!({"token": token})),
        )
        .await,
        top_up_amount(&app, &app.manager.key, Some(&rollup), "20.00").await,
        app.get(
            &format!("{base}/payment/auto_recharge_prefs"),
            &app.manager.key,
        )
        .await,
    ];
    for reply in attempts {
        reply.assert_error(422, "40004", None);
        let detail = reply.error()["detail"].as_str().unwrap();
        assert!(
            detail.contains("rollup billing") && detail.contains("manager"),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn a_manager_tops_up_its_managed_account_and_no_other_manager_can() {
    let app = spawn_app().await;
    let account = customer(&app, "Managed Payer").await;
    let card = add_card(&app, &app.manager.key, Some(&account), MASTERCARD).await;
    let base = format!("/v2/managed_accounts/{}", account.id);

    let paid = top_up_amount(&app, &app.manager.key, Some(&account), "30.00").await;

    paid.assert_status(200);
    assert_eq!(app.balance_of(&account.key).await, "30.00");
    let seen = app
        .get("/v2/payment/stored_payment_transactions", &account.key)
        .await;
    assert_eq!(seen.body["data"][0]["id"], paid.body["data"]["id"]);
    let trail = app.get("/v2/audit_events", &account.key).await;
    let top_up_event = trail.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["change_type"] == "stored_payment_transaction.create")
        .unwrap()
        .clone();
    assert_eq!(top_up_event["change_made_by"], "account_manager");

    let other = &app.other_manager.key;
    let card_id = card["id"].as_str().unwrap();
    let foreign = [
        app.get(&format!("{base}/payment_methods"), other).await,
        app.post(
            &format!("{base}/payment_methods"),
            other,
            Some(json!({"token": "tok_x"})),
        )
        .await,
        app.request(
            reqwest::Method::DELETE,
            &format!("{base}/payment_methods/{card_id}"),
            Some(other),
            None,
        )
        .await,
        app.post(
            &format!("{base}/payment_methods/{card_id}/actions/set_default"),
            other,
            None,
        )
        .await,
        top_up_amount(&app, other, Some(&account), "30.00").await,
        app.get(
            &format!("{base}/payment/stored_payment_transactions"),
            other,
        )
        .await,
        app.get(&format!("{base}/payment/auto_recharge_prefs"), other)
            .await,
        app.patch(
            &format!("{base}/payment/auto_recharge_prefs"),
            other,
            json!({"enabled": false}),
        )
        .await,
        // Another account's card, by its id, from the other manager's own account.
        app.request(
            reqwest::Method::DELETE,
            &format!("/v2/payment_methods/{card_id}"),
            Some(other),
            None,
        )
        .await,
        top_up(
            &app,
            other,
            None,
            json!({"amount": "30.00", "payment_method_id": card_id}),
            None,
        )
        .await,
    ];
    for reply in foreign {
        reply.assert_status(404);
    }
    // The SDKs' path serves the same top-up.
    let sdk = app
        .post(
            "/v2/v2/payment/stored_payment_transactions",
            &account.key,
            Some(json!({"amount": "10.00"})),
        )
        .await;
    sdk.assert_status(200);
    assert_eq!(app.balance_of(&account.key).await, "40.00");
    assert_books_clean(&app).await;
}

#[tokio::test]
async fn refunds_post_once_and_never_exceed_the_payment() {
    let app = spawn_app().await;
    let account = customer(&app, "Refunded").await;
    add_card(&app, &account.key, None, VISA).await;
    let paid = top_up_amount(&app, &account.key, None, "100.00").await;
    let payment = paid.body["data"]["id"].as_str().unwrap().to_owned();
    let payments = service(&app);
    let operator = crate::helpers::operator();
    let units = |n: i64| steward::money::Money::from_nanos(n * 1_000_000_000);

    let refund = payments
        .refund(&payment, Some(units(30)), "goodwill", &operator)
        .await
        .unwrap();
    let too_much = payments
        .refund(&payment, Some(units(71)), "again", &operator)
        .await;
    let rest = payments
        .refund(&payment, None, "closing", &operator)
        .await
        .unwrap();
    let nothing_left = payments
        .refund(&payment, None, "once more", &operator)
        .await;

    assert_eq!(
        (refund.status.as_str(), refund.amount.as_str()),
        ("succeeded", "30.00")
    );
    assert!(too_much.is_err());
    assert_eq!(rest.amount, "70.00");
    assert!(nothing_left.is_err());
    assert_eq!(app.balance_of(&account.key).await, "0.00");
    let listed = app
        .get("/v2/payment/stored_payment_transactions", &account.key)
        .await;
    assert_eq!(listed.body["data"][0]["refunded_amount"], "100.00");
    assert_books_clean(&app).await;
}

#[tokio::test]
async fn verification_finds_a_card_payment_posted_twice() {
    let app = spawn_app().await;
    let account = paid_customer(&app, "Twice", "25.00").await;
    assert_books_clean(&app).await;

    // A second entry for the same payment, balanced, as a double posting would leave it.
    let book = format!("balance:{}", account.id);
    let mut tx = app.db.begin_write().await.unwrap();
    sqlx::query("INSERT INTO journal_entries (id, kind, account_id, reason, created_by, created_at_ms) VALUES ('dup', 'card_payment', $1, 'dup', 'test', 0)")
        .bind(&account.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    for (seq, (book, nanos)) in [
        (book.as_str(), 25_000_000_000_i64),
        ("platform:card_payments", -25_000_000_000),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO postings (entry_id, seq, book, amount_nanos) VALUES ('dup', $1, $2, $3)",
        )
        .bind(i64::try_from(seq).unwrap())
        .bind(book)
        .bind(nanos)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let mut conn = app.db.read.acquire().await.unwrap();
    let verdict = steward::payments::verify(&mut conn).await.unwrap();
    assert!(
        matches!(verdict, Err(steward::payments::PaymentViolation::OrphanEntry { ref entry, .. }) if entry == "dup"),
        "{verdict:?}"
    );
}

/// verify-ledger's card-payment checks read the ledger checks' snapshot: a change committed
/// after the snapshot was taken is not seen by either, and is seen afresh.
#[tokio::test]
async fn card_payment_checks_read_the_ledger_checks_snapshot() {
    let app = spawn_app().await;
    paid_customer(&app, "Snapshot Co", "20.00").await;

    let mut conn = app.db.read.acquire().await.unwrap();
    let begin = steward::db::snapshot_begin(&conn);
    let mut snapshot = sqlx::Connection::begin_with(&mut *conn, begin)
        .await
        .unwrap();
    let ledger = steward::ledger::verify_in(&app.db, &mut snapshot)
        .await
        .unwrap();
    assert!(ledger.is_ok(), "{ledger:?}");
    // After the snapshot: the payment loses its entry (as if never posted).
    sqlx::query("UPDATE payment_attempts SET entry_id = NULL WHERE status = 'succeeded'")
        .execute(&app.db.write)
        .await
        .unwrap();
    let within = steward::payments::verify(&mut snapshot).await.unwrap();
    assert_eq!(within.map(|report| report.payments), Ok(1));
    snapshot.commit().await.unwrap();
    drop(conn);

    let mut conn = app.db.read.acquire().await.unwrap();
    let afresh = steward::payments::verify(&mut conn).await.unwrap();
    assert!(
        matches!(
            afresh,
            Err(steward::payments::PaymentViolation::PaymentNotPosted { .. })
        ),
        "{afresh:?}"
    );
}
