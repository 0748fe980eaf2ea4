//! Clients that present bad keys are backed off; valid keys and other clients are not.

use chrono::TimeDelta;
use reqwest::Method;
use serde_json::json;
use steward::http::auth_throttle::{BACKOFF_INITIAL_MS, FAILURES_PER_WINDOW_MAX};

use crate::helpers::{Reply, TestApp, spawn_app, spawn_app_with};

const BAD_KEY: &str = "KEY00000000000000000000000000000000_0000";

/// Sends bad keys until the address is backed off (the last one is still looked up).
async fn present_bad_keys_until_backoff(app: &TestApp) {
    for _ in 0..FAILURES_PER_WINDOW_MAX {
        app.get("/v2/balance", BAD_KEY)
            .await
            .assert_error(401, "10009", None);
    }
}

#[track_caller]
fn assert_backed_off(reply: &Reply, retry_after_s: i64) {
    reply.assert_error(429, "10011", None);
    assert_eq!(reply.error()["title"], "Too many requests");
    assert_eq!(
        reply.headers["retry-after"],
        retry_after_s.to_string().as_str()
    );
}

#[tokio::test]
async fn repeated_bad_keys_from_one_address_are_answered_429_until_the_backoff_ends() {
    let app = spawn_app().await;
    present_bad_keys_until_backoff(&app).await;

    let account = app.get("/v2/balance", BAD_KEY).await;
    let ingest = app
        .request(
            Method::POST,
            "/v2/usage_events",
            Some(BAD_KEY),
            Some(json!({"events": []})),
        )
        .await;
    let operator = app.get("/admin/v1/price_lists/x/rates", BAD_KEY).await;
    app.clock
        .advance(TimeDelta::milliseconds(BACKOFF_INITIAL_MS / 2));
    let later = app.get("/v2/balance", BAD_KEY).await;
    app.clock
        .advance(TimeDelta::milliseconds(BACKOFF_INITIAL_MS / 2));
    let after = app.get("/v2/balance", BAD_KEY).await;

    assert_backed_off(&account, BACKOFF_INITIAL_MS / 1000);
    assert_backed_off(&ingest, BACKOFF_INITIAL_MS / 1000);
    assert_backed_off(&operator, BACKOFF_INITIAL_MS / 1000);
    assert_backed_off(&later, BACKOFF_INITIAL_MS / 2000);
    after.assert_error(401, "10009", None);
}

#[tokio::test]
async fn the_next_backoff_is_twice_as_long() {
    let app = spawn_app().await;
    present_bad_keys_until_backoff(&app).await;
    app.clock
        .advance(TimeDelta::milliseconds(BACKOFF_INITIAL_MS));

    present_bad_keys_until_backoff(&app).await;
    let reply = app.get("/v2/balance", BAD_KEY).await;

    assert_backed_off(&reply, 2 * BACKOFF_INITIAL_MS / 1000);
}

#[tokio::test]
async fn keys_that_worked_from_a_backed_off_address_keep_working() {
    let app = spawn_app().await;
    app.get("/v2/balance", &app.manager.key)
        .await
        .assert_status(200);
    app.ingest(json!([])).await.assert_status(200);
    present_bad_keys_until_backoff(&app).await;

    let manager = app.get("/v2/balance", &app.manager.key).await;
    let ingest = app.ingest(json!([])).await;
    // A valid key never seen from this address waits like any other: refused unlooked.
    let newcomer = app.get("/v2/balance", &app.standard.key).await;

    manager.assert_status(200);
    ingest.assert_status(200);
    assert_backed_off(&newcomer, BACKOFF_INITIAL_MS / 1000);
}

#[tokio::test]
async fn another_address_is_not_affected() {
    let app = spawn_app().await;
    present_bad_keys_until_backoff(&app).await;
    let elsewhere = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();

    let bad = elsewhere
        .get(format!("{}/v2/balance", app.address))
        .bearer_auth(BAD_KEY)
        .send()
        .await
        .unwrap();
    let good = elsewhere
        .get(format!("{}/v2/balance", app.address))
        .bearer_auth(&app.standard.key)
        .send()
        .await
        .unwrap();

    TestApp::read(bad).await.assert_error(401, "10009", None);
    TestApp::read(good).await.assert_status(200);
    assert_backed_off(
        &app.get("/v2/balance", BAD_KEY).await,
        BACKOFF_INITIAL_MS / 1000,
    );
}

#[tokio::test]
async fn requests_without_a_key_do_not_count() {
    let app = spawn_app().await;
    for _ in 0..FAILURES_PER_WINDOW_MAX {
        app.request(Method::GET, "/v2/balance", None, None)
            .await
            .assert_error(401, "10009", None);
    }

    app.get("/v2/balance", BAD_KEY)
        .await
        .assert_error(401, "10009", None);
}

/// A request as a reverse proxy forwards it: `forwarded` is its `X-Forwarded-For`.
async fn get_forwarded(app: &TestApp, forwarded: &str, key: &str) -> Reply {
    let response = app
        .client
        .get(format!("{}/v2/balance", app.address))
        .bearer_auth(key)
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .unwrap();
    TestApp::read(response).await
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_is_backed_off_on_its_own() {
    let app = spawn_app_with(|settings| {
        settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for _ in 0..FAILURES_PER_WINDOW_MAX {
        get_forwarded(&app, "203.0.113.9", BAD_KEY)
            .await
            .assert_error(401, "10009", None);
    }

    let same_client = get_forwarded(&app, "203.0.113.9", BAD_KEY).await;
    // The proxy appends the address it saw; what the client wrote before it does not count.
    let same_client_spoofing = get_forwarded(&app, "198.51.100.4, 203.0.113.9", BAD_KEY).await;
    let other_client = get_forwarded(&app, "198.51.100.4", BAD_KEY).await;
    let other_client_good_key = get_forwarded(&app, "198.51.100.4", &app.standard.key).await;

    assert_backed_off(&same_client, BACKOFF_INITIAL_MS / 1000);
    assert_backed_off(&same_client_spoofing, BACKOFF_INITIAL_MS / 1000);
    other_client.assert_error(401, "10009", None);
    other_client_good_key.assert_status(200);
}

#[tokio::test]
async fn without_a_trusted_proxy_the_forwarded_address_is_ignored() {
    let app = spawn_app().await;
    for _ in 0..FAILURES_PER_WINDOW_MAX {
        get_forwarded(&app, "203.0.113.9", BAD_KEY)
            .await
            .assert_error(401, "10009", None);
    }

    let claims_to_be_another = get_forwarded(&app, "198.51.100.4", BAD_KEY).await;

    assert_backed_off(&claims_to_be_another, BACKOFF_INITIAL_MS / 1000);
}
