//! `steward admin copy-database`: a platform moves to another database (the embedded SQLite
//! file to PostgreSQL, above all) and carries on there as if nothing happened.

use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use steward::clock::ClockHandle;
use steward::http::Application;

use crate::helpers::{
    BASE_PRICES, TestApp, backend_is_postgres, event, fresh_database_url, spawn_app_on,
    test_settings,
};

fn copy(from: &str, to: &str) -> (bool, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["admin", "copy-database", "--from", from, "--to", to])
        .output()
        .expect("run steward");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (
        output.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What the platform's users see: the same requests, asked of one server or another.
async fn views(client: &reqwest::Client, address: &str, app: &TestApp, own_key: &str) -> Value {
    let manager = &app.manager.key;
    let requests = [
        ("/v2/managed_accounts?page[size]=50", manager.as_str()),
        // Served by the trigram index, which the target builds for itself.
        (
            "/v2/managed_accounts?filter[organization_name][contains]=BALANC",
            manager.as_str(),
        ),
        ("/v2/balance", manager.as_str()),
        ("/v2/balance", own_key),
        ("/v2/audit_events?page[size]=100", manager.as_str()),
        ("/v2/invoices", manager.as_str()),
        ("/v2/invoices", own_key),
        (
            "/v2/usage_reports?product=sip-trunking&dimensions=date&metrics=count,call_sec,cost\
             &managed_accounts=true&start_date=2026-01-01T00:00:00Z&end_date=2026-01-02T00:00:00Z",
            manager.as_str(),
        ),
        (
            "/v2/usage_reports?product=sip-trunking&dimensions=date&metrics=count,call_sec\
             &start_date=2026-01-01T00:00:00Z&end_date=2026-01-02T00:00:00Z",
            own_key,
        ),
    ];
    let mut seen = Vec::new();
    for (path, key) in requests {
        let response = client
            .get(format!("{address}{path}"))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), 200, "{path}");
        // Links name the server that answered.
        let text = response
            .text()
            .await
            .expect("body")
            .replace(address, "BASE");
        seen.push(serde_json::from_str::<Value>(&text).expect("JSON"));
    }
    Value::Array(seen)
}

async fn moves_and_carries_on(source_on_postgres: bool, target_on_postgres: bool) {
    let app = spawn_app_on(source_on_postgres, |_| {}).await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let own = app.managed_of(&app.manager, "Own Balance", json!({})).await;
    let rollup = app
        .managed_of(&app.manager, "Rolls Up", json!({"rollup_billing": true}))
        .await;
    app.ingest(json!([
        event("call-1", &own.id, "voice_outbound", "+14155550100", 61),
        event("call-2", &rollup.id, "voice_outbound", "+442079460000", 61),
        // An account id naming no account: kept in suspense, which moves too.
        event(
            "call-x",
            "00000000-0000-4000-8000-000000000000",
            "voice_outbound",
            "+14155550100",
            61,
        ),
    ]))
    .await
    .assert_status(200);
    // January ends and is closed (the command runs on the wall clock, long after it ended):
    // invoices and their stored documents move too.
    app.clock.advance(chrono::Duration::days(31));
    let closed = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["admin", "--database-url", &app.database_url])
        .args(["close-invoices", "--period", "2026-01"])
        .output()
        .expect("run steward");
    assert!(closed.status.success(), "{closed:?}");
    let client = reqwest::Client::new();
    let before = views(&client, &app.address, &app, &own.key).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let target = fresh_database_url(&dir, target_on_postgres).await;
    let (ok, report, stderr) = copy(&app.database_url, &target);
    assert!(ok, "{stderr}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["tables"]["usage_records"], 2);
    assert_eq!(report["tables"]["suspended_usage"], 1);
    assert_eq!(report["tables"]["accounts"], 5);
    assert_eq!(report["usage_records"], 2);
    assert!(report["balances_compared"].as_u64().unwrap() >= 3);
    assert!(!stderr.contains(&app.manager.key));

    // The copy refuses to merge into a platform, and leaves it as it was.
    let (ok, _, stderr) = copy(&app.database_url, &target);
    assert!(!ok);
    assert!(stderr.contains("not empty"), "{stderr}");

    // A server on the copy answers every user exactly as the original did: same ids,
    // balances, audit trail and reports, and the same keys sign in.
    let clock: ClockHandle = Arc::new(app.clock.clone());
    let moved = Application::build(&test_settings(&target), clock)
        .await
        .expect("serve the copy");
    let moved_address = format!("http://{}", moved.local_addr().unwrap());
    tokio::spawn(moved.run_until(std::future::pending()));
    let after = views(&client, &moved_address, &app, &own.key).await;
    assert_eq!(before, after);

    // And it carries on: events it already charged stay charged once, new ones are charged.
    let ingested: Value = client
        .post(format!("{moved_address}/v2/usage_events"))
        .bearer_auth(&app.ingest_key)
        .json(&json!({"events": [
            event("call-1", &own.id, "voice_outbound", "+14155550100", 61),
            event("call-3", &own.id, "voice_outbound", "+14155550100", 61),
        ]}))
        .send()
        .await
        .expect("ingest on the copy")
        .json()
        .await
        .expect("JSON");
    let statuses: Vec<&str> = ingested["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|outcome| outcome["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["duplicate", "accepted"]);
    let balance: Value = client
        .get(format!("{moved_address}/v2/balance"))
        .bearer_auth(&own.key)
        .send()
        .await
        .expect("balance")
        .json()
        .await
        .expect("JSON");
    // Two calls of 61 s billed as 120 s at 0.01 a minute.
    assert_eq!(balance["data"]["balance"], "-0.04");
    let target_db =
        steward::db::Db::connect(&steward::config::DatabaseUrl::parse(&target).unwrap())
            .await
            .expect("open the copy");
    let verdict = steward::ledger::verify(&target_db).await.unwrap();
    assert!(verdict.is_ok(), "{verdict:?}");
    // The original is untouched by what happened on the copy.
    assert_eq!(app.balance_of(&own.key).await, "-0.02");
}

/// On the PostgreSQL run, both directions between the engines (SQLite to PostgreSQL is what
/// a growing platform does); on the SQLite run, from one file to a new one.
#[tokio::test]
async fn a_platform_moves_to_a_new_database_and_carries_on() {
    if backend_is_postgres() {
        moves_and_carries_on(false, true).await;
        moves_and_carries_on(true, false).await;
    } else {
        moves_and_carries_on(false, false).await;
    }
}
