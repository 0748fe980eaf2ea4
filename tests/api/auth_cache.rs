//! The cache of authenticated keys: a change to access is refused at once by the server that
//! made it and within the stated bound by every other server on the database (`steward
//! admin` included); the cache can be turned off and never holds more than its setting.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use steward::accounts::access::{CACHE_FRESH_MS, GENERATION_POLL_MS};

use crate::helpers::{Actor, TestApp, spawn_app, spawn_app_with};

/// How long another server may take to refuse: the stated bound, plus room for a test
/// machine busy with other work to schedule the watcher and answer the request.
const ELSEWHERE_DEADLINE_MS: u64 = CACHE_FRESH_MS + 1_000;

/// GET /v2/balance as `key` on the server at `address`: its status.
async fn balance_status(app: &TestApp, address: &str, key: &str) -> u16 {
    app.client
        .get(format!("{address}/v2/balance"))
        .bearer_auth(key)
        .send()
        .await
        .expect("request sent")
        .status()
        .as_u16()
}

/// Asks until the server answers `expected` or the deadline passes; returns how long it took.
async fn answers_within(
    app: &TestApp,
    address: &str,
    key: &str,
    path: &str,
    expected: u16,
) -> Duration {
    let started = Instant::now();
    loop {
        let status = app
            .client
            .get(format!("{address}{path}"))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent")
            .status()
            .as_u16();
        if status == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_millis(ELSEWHERE_DEADLINE_MS),
            "{address}{path} still answered {status} after {:?}, not {expected}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Uses `key` on both servers until both hold it in a cache that serves (the watchers have
/// read the counter since), so that what follows tests the cache, not a lookup.
async fn warm(app: &TestApp, second: &str, key: &str) {
    tokio::time::sleep(Duration::from_millis(GENERATION_POLL_MS * 2)).await;
    for address in [app.address.as_str(), second] {
        assert_eq!(balance_status(app, address, key).await, 200);
        assert_eq!(balance_status(app, address, key).await, 200);
    }
    assert!(!app.key_cache.is_empty(), "the first server caches keys");
}

async fn own_key_id(app: &TestApp, key: &str) -> String {
    let keys = app.get("/v2/api_keys", key).await;
    keys.assert_status(200);
    keys.body["data"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_once_here_and_within_the_bound_elsewhere() {
    let app = spawn_app().await;
    let (second, second_cache) = app.second_server_and_cache().await;
    let account = app.managed_of(&app.manager, "Cached", json!({})).await;
    warm(&app, &second, &account.key).await;
    assert!(!second_cache.is_empty(), "the second server caches keys");

    let key_id = own_key_id(&app, &account.key).await;
    let path = format!("/v2/managed_accounts/{}/api_keys/{key_id}", account.id);
    app.request(reqwest::Method::DELETE, &path, Some(&app.manager.key), None)
        .await
        .assert_status(200);

    assert_eq!(balance_status(&app, &app.address, &account.key).await, 401);
    answers_within(&app, &second, &account.key, "/v2/balance", 401).await;
}

#[tokio::test]
async fn a_disabled_account_is_refused_at_once_here_and_within_the_bound_elsewhere() {
    let app = spawn_app().await;
    let (second, _) = app.second_server_and_cache().await;
    let account = app.managed_of(&app.manager, "Cached", json!({})).await;
    warm(&app, &second, &account.key).await;

    let path = format!("/v2/managed_accounts/{}/actions/disable", account.id);
    app.post(&path, &app.manager.key, None)
        .await
        .assert_status(200);

    assert_eq!(balance_status(&app, &app.address, &account.key).await, 403);
    answers_within(&app, &second, &account.key, "/v2/balance", 403).await;

    // Enabled again on the second server: it takes the key back at once, the first soon.
    let path = format!("/v2/managed_accounts/{}/actions/enable", account.id);
    let enabled = app
        .client
        .post(format!("{second}{path}"))
        .bearer_auth(&app.manager.key)
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), 200);
    assert_eq!(balance_status(&app, &second, &account.key).await, 200);
    answers_within(&app, &app.address, &account.key, "/v2/balance", 200).await;
}

fn steward_admin(app: &TestApp, args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_steward"))
        .arg("admin")
        .args(args)
        .args(["--database-url", &app.database_url])
        .output()
        .expect("run steward");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_operators_verbs_reach_every_server_within_the_bound() {
    let app = spawn_app().await;
    let (second, _) = app.second_server_and_cache().await;
    let account = app.managed_of(&app.manager, "Cached", json!({})).await;
    warm(&app, &second, &account.key).await;
    warm(&app, &second, &app.other_manager.key).await;
    for address in [app.address.as_str(), second.as_str()] {
        answers_within(
            &app,
            address,
            &app.other_manager.key,
            "/v2/managed_accounts",
            200,
        )
        .await;
    }

    // Another process changes access: no server made the change, both see it.
    steward_admin(
        &app,
        &["revoke-manager", "--account", &app.other_manager.id],
    );
    steward_admin(&app, &["cancel-account", "--account", &account.id]);
    for address in [app.address.as_str(), second.as_str()] {
        answers_within(&app, address, &account.key, "/v2/balance", 401).await;
        answers_within(
            &app,
            address,
            &app.other_manager.key,
            "/v2/managed_accounts",
            403,
        )
        .await;
    }
}

/// POST /v2/admissions for `account` with the ingest key, on the server at `address`.
async fn admit_status(app: &TestApp, address: &str, account: &str) -> u16 {
    app.client
        .post(format!("{address}/v2/admissions"))
        .bearer_auth(&app.ingest_key)
        .json(&json!({"account_id": account, "product": "sms_outbound", "destination": "+14155550100"}))
        .send()
        .await
        .expect("request sent")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_revoked_ingest_key_is_refused_by_every_server_within_the_bound() {
    let app = spawn_app().await;
    let (second, second_cache) = app.second_server_and_cache().await;
    let account = app.managed_of(&app.manager, "Caller", json!({})).await;
    tokio::time::sleep(Duration::from_millis(GENERATION_POLL_MS * 2)).await;
    for address in [app.address.as_str(), second.as_str()] {
        assert_eq!(admit_status(&app, address, &account.id).await, 200);
        assert_eq!(admit_status(&app, address, &account.id).await, 200);
    }
    assert!(!second_cache.is_empty(), "the second server caches the key");

    let key_id = app.ingest_key.split('_').next().unwrap();
    steward_admin(&app, &["revoke-service-key", "--id", key_id]);
    for address in [app.address.as_str(), second.as_str()] {
        let started = Instant::now();
        loop {
            let status = admit_status(&app, address, &account.id).await;
            if status == 401 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_millis(ELSEWHERE_DEADLINE_MS),
                "{address} still admitted with a revoked key after {:?} ({status})",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // A key that is not live cannot be revoked again.
    let again = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["admin", "revoke-service-key", "--id", key_id])
        .args(["--database-url", &app.database_url])
        .output()
        .expect("run steward");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("No live service key"));
}

#[tokio::test]
async fn with_the_cache_off_every_request_reads_its_key() {
    let app = spawn_app_with(|settings| settings.auth_cache_entries = 0).await;
    let account = app.managed_of(&app.manager, "Uncached", json!({})).await;
    for _ in 0..3 {
        assert_eq!(balance_status(&app, &app.address, &account.key).await, 200);
    }
    assert!(app.key_cache.is_empty());
    // Even a change that moves no counter (made behind Steward's back) is seen at once.
    sqlx::query("UPDATE accounts SET status = 'disabled' WHERE id = $1")
        .bind(&account.id)
        .execute(&app.db.write)
        .await
        .unwrap();
    assert_eq!(balance_status(&app, &app.address, &account.key).await, 403);
}

#[tokio::test]
async fn the_cache_never_holds_more_keys_than_its_setting() {
    let app = spawn_app_with(|settings| settings.auth_cache_entries = 3).await;
    tokio::time::sleep(Duration::from_millis(GENERATION_POLL_MS * 2)).await;
    let mut accounts: Vec<Actor> = Vec::new();
    for n in 0..6 {
        accounts.push(
            app.managed_of(&app.manager, &format!("Bounded {n}"), json!({}))
                .await,
        );
    }
    for round in 0..3 {
        for account in &accounts {
            assert_eq!(
                balance_status(&app, &app.address, &account.key).await,
                200,
                "round {round}"
            );
            assert!(app.key_cache.len() <= 3, "{}", app.key_cache.len());
        }
    }
    assert_eq!(app.key_cache.capacity(), 3);
    assert!(!app.key_cache.is_empty());
}
