//! Money in: payment methods, card top-ups, carding defences, auto-recharge, and what
//! happens when the processor's answer is lost or the server dies mid-payment.

mod auto_recharge;
mod carding;
mod crash;
mod methods;
mod operator;
mod secrecy;
mod top_ups;

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use steward::clock::ClockHandle;
use steward::payments::Payments;

use crate::helpers::{Actor, Reply, TestApp, test_payments_config};

/// Sandbox test cards (README): successes of four brands, then one card per behaviour.
pub const VISA: &str = "4242424242424242";
pub const MASTERCARD: &str = "5555555555554444";
pub const AMEX: &str = "378282246310005";
pub const DISCOVER: &str = "6011111111111117";
pub const INSUFFICIENT_FUNDS: &str = "4000000000009995";
pub const STOLEN: &str = "4000000000009979";
pub const EXPIRED: &str = "4000000000000069";
pub const INCORRECT_CVC: &str = "4000000000000127";
pub const LOST_ANSWER: &str = "4000000000007700";
pub const SLOW_SUCCESS: &str = "4000000000008807";
pub const PROCESSOR_ERROR: &str = "4000000000000119";

/// Every test card, for scans.
pub const ALL_CARDS: [&str; 11] = [
    VISA,
    MASTERCARD,
    AMEX,
    DISCOVER,
    INSUFFICIENT_FUNDS,
    STOLEN,
    EXPIRED,
    INCORRECT_CVC,
    LOST_ANSWER,
    SLOW_SUCCESS,
    PROCESSOR_ERROR,
];

/// Security codes the tests type: distinctive, so a scan for them means something.
pub const CVC: &str = "739";
pub const AMEX_CVC: &str = "7391";

fn cvc_for(number: &str) -> &'static str {
    if number.starts_with("37") {
        AMEX_CVC
    } else {
        CVC
    }
}

/// The payments service on the test app's database and clock, as the CLI would build it.
pub fn service(app: &TestApp) -> Payments {
    let clock: ClockHandle = Arc::new(app.clock.clone());
    Payments::new(app.db.clone(), clock, test_payments_config())
}

/// Card entry at the sandbox; the reply.
pub async fn tokenize_reply(app: &TestApp, key: &str, number: &str, cvc: &str) -> Reply {
    app.post(
        "/sandbox/v1/tokens",
        key,
        Some(json!({"number": number, "exp_month": 12, "exp_year": 2030, "cvc": cvc})),
    )
    .await
}

/// A sandbox token for a test card.
pub async fn tokenize(app: &TestApp, key: &str, number: &str) -> String {
    let reply = tokenize_reply(app, key, number, cvc_for(number)).await;
    reply.assert_status(200);
    reply.body["data"]["token"].as_str().unwrap().to_owned()
}

/// Saves a token as a card (of `managed` when given, by `key`'s manager); the reply.
pub async fn add_token(app: &TestApp, key: &str, managed: Option<&Actor>, token: &str) -> Reply {
    add_token_at(&app.address, app, key, managed, token).await
}

/// [`add_token`] against the server at `address`.
pub async fn add_token_at(
    address: &str,
    app: &TestApp,
    key: &str,
    managed: Option<&Actor>,
    token: &str,
) -> Reply {
    let path = match managed {
        Some(m) => format!("/v2/managed_accounts/{}/payment_methods", m.id),
        None => "/v2/payment_methods".to_owned(),
    };
    let request = app
        .client
        .post(format!("{address}{path}"))
        .bearer_auth(key)
        .json(&json!({ "token": token }));
    TestApp::read(request.send().await.expect("request sent")).await
}

/// Tokenizes and saves a test card; the payment method.
pub async fn add_card(app: &TestApp, key: &str, managed: Option<&Actor>, number: &str) -> Value {
    let token = tokenize(app, key, number).await;
    let reply = add_token(app, key, managed, &token).await;
    reply.assert_status(200);
    reply.body["data"].clone()
}

/// Tops up (a managed account when given), with an optional Idempotency-Key; the reply.
pub async fn top_up(
    app: &TestApp,
    key: &str,
    managed: Option<&Actor>,
    body: Value,
    idempotency_key: Option<&str>,
) -> Reply {
    top_up_at(&app.address, app, key, managed, body, idempotency_key).await
}

/// [`top_up`] against the server at `address`.
pub async fn top_up_at(
    address: &str,
    app: &TestApp,
    key: &str,
    managed: Option<&Actor>,
    body: Value,
    idempotency_key: Option<&str>,
) -> Reply {
    let path = match managed {
        Some(m) => format!(
            "/v2/managed_accounts/{}/payment/stored_payment_transactions",
            m.id
        ),
        None => "/v2/payment/stored_payment_transactions".to_owned(),
    };
    let mut request = app
        .client
        .request(Method::POST, format!("{address}{path}"))
        .bearer_auth(key)
        .json(&body);
    if let Some(idempotency_key) = idempotency_key {
        request = request.header("idempotency-key", idempotency_key);
    }
    TestApp::read(request.send().await.expect("request sent")).await
}

/// Tops up `amount` with the default card.
pub async fn top_up_amount(
    app: &TestApp,
    key: &str,
    managed: Option<&Actor>,
    amount: &str,
) -> Reply {
    top_up(app, key, managed, json!({ "amount": amount }), None).await
}

/// How many charges reached the sandbox processor.
pub async fn sandbox_charges(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sandbox_charges")
        .fetch_one(&app.db.read)
        .await
        .unwrap()
}

/// How many card payments were posted to the ledger.
pub async fn card_payment_entries(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries WHERE kind = 'card_payment'")
        .fetch_one(&app.db.read)
        .await
        .unwrap()
}

/// Every ledger and payment invariant holds.
pub async fn assert_books_clean(app: &TestApp) {
    app.assert_ledger_clean().await;
    let mut conn = app.db.read.acquire().await.unwrap();
    let verdict = steward::payments::verify(&mut conn).await.unwrap();
    assert!(verdict.is_ok(), "payment violation: {verdict:?}");
}

/// A managed account of the main manager with its own balance.
pub async fn customer(app: &TestApp, name: &str) -> Actor {
    app.managed_of(&app.manager, name, json!({})).await
}

/// A managed account of the main manager that saved a Visa test card and topped up
/// `amount` with it.
pub async fn paid_customer(app: &TestApp, name: &str, amount: &str) -> Actor {
    let account = customer(app, name).await;
    add_card(app, &account.key, None, VISA).await;
    top_up_amount(app, &account.key, None, amount)
        .await
        .assert_status(200);
    account
}

/// Sets an operator payment setting.
pub async fn set_setting(app: &TestApp, name: &str, value: &str) {
    let clock: ClockHandle = Arc::new(app.clock.clone());
    steward::payments::settings::set(&app.db, &clock, name, value, &crate::helpers::operator())
        .await
        .unwrap();
}
