//! The `steward` binary's operator verbs, run as a process against a real database.

use std::process::Command;

use serde_json::Value;

use crate::helpers::spawn_app;

fn steward(database_url: &str, args: &[&str]) -> (bool, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_steward"))
        .arg("admin")
        .args(args)
        .args(["--database-url", database_url])
        .output()
        .expect("run steward");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.success(), json, stderr)
}

#[tokio::test]
async fn create_account_prints_the_account_with_a_working_key() {
    let app = spawn_app().await;

    let (ok, created, stderr) = steward(
        &app.database_url,
        &[
            "create-account",
            "--email",
            "Ops@Reseller2.example",
            "--business-name",
            "Reseller Two",
            "--manager",
            "--max-managed-accounts",
            "3",
            "--allocatable-channels",
            "7",
        ],
    );

    assert!(ok, "{stderr}");
    assert_eq!(created["email"], "Ops@Reseller2.example");
    assert_eq!(created["kind"], "manager");
    assert_eq!(created["max_managed_accounts"], 3);
    let key = created["api_key"].as_str().unwrap();
    let channels = app
        .get(
            "/v2/managed_accounts/allocatable_global_outbound_channels",
            key,
        )
        .await;
    assert_eq!(
        channels.body["data"]["allocatable_global_outbound_channels"],
        7
    );
    // The key is in no log line.
    assert!(!stderr.contains(key));

    let (ok, _, stderr) = steward(
        &app.database_url,
        &[
            "create-account",
            "--email",
            "ops@RESELLER2.example",
            "--business-name",
            "Dup",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[tokio::test]
async fn operator_verbs_approve_limit_pool_and_cancel() {
    let app = spawn_app().await;
    let db = app.database_url.clone();
    let standard = app.standard.id.clone();

    let (ok, approved, stderr) = steward(&db, &["approve-manager", "--account", &standard]);
    assert!(ok, "{stderr}");
    assert_eq!(approved["kind"], "manager");
    app.get("/v2/managed_accounts", &app.standard.key)
        .await
        .assert_status(200);

    let (ok, limited, _) = steward(
        &db,
        &[
            "set-managed-account-limit",
            "--account",
            &standard,
            "--limit",
            "0",
        ],
    );
    assert!(ok);
    assert_eq!(limited["max_managed_accounts"], 0);
    app.create_managed(
        &app.standard.key,
        serde_json::json!({"business_name": "No Room"}),
    )
    .await
    .assert_error(422, "40002", None);

    // The pool cannot shrink below what is allocated.
    let child = app
        .managed_of(&app.manager, "Child", serde_json::json!({}))
        .await;
    app.patch(
        &format!(
            "/v2/managed_accounts/{}/update_global_channel_limit",
            child.id
        ),
        &app.manager.key,
        serde_json::json!({"channel_limit": 8}),
    )
    .await
    .assert_status(200);
    let (ok, _, stderr) = steward(
        &db,
        &[
            "set-channel-pool",
            "--account",
            &app.manager.id,
            "--channels",
            "5",
        ],
    );
    assert!(
        !ok && stderr.contains("8 channels are allocated"),
        "{stderr}"
    );
    let (ok, pooled, _) = steward(
        &db,
        &[
            "set-channel-pool",
            "--account",
            &app.manager.id,
            "--channels",
            "8",
        ],
    );
    assert!(ok);
    assert_eq!(pooled["allocatable_channels"], 8);

    // A manager with live managed accounts is cancelled only together with them.
    let (ok, _, stderr) = steward(&db, &["cancel-account", "--account", &app.manager.id]);
    assert!(!ok && stderr.contains("--include-managed"), "{stderr}");
    let (ok, cancelled, _) = steward(
        &db,
        &[
            "cancel-account",
            "--account",
            &app.manager.id,
            "--include-managed",
        ],
    );
    assert!(ok);
    assert_eq!(cancelled["status"], "cancelled");
    // Cancelling revoked the managed account's keys with it.
    app.get("/v2/account", &child.key)
        .await
        .assert_error(401, "10009", None);

    let (ok, _, stderr) = steward(&db, &["approve-manager", "--account", "not-a-uuid"]);
    assert!(!ok && stderr.contains("not an account id"), "{stderr}");
    let (ok, _, stderr) = steward(&db, &["revoke-manager", "--account", &child.id]);
    assert!(!ok && stderr.contains("one level only"), "{stderr}");
}

#[tokio::test]
async fn money_and_pricing_verbs_work_end_to_end() {
    let app = spawn_app().await;
    let db = app.database_url.clone();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("prices.csv");
    std::fs::write(&csv, crate::helpers::BASE_PRICES).unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "product,prefix,rate,initial_increment_s,subsequent_increment_s\nsms_outbound,1,x,,\n",
    )
    .unwrap();

    let (ok, _, stderr) = steward(
        &db,
        &[
            "import-price-list",
            "--file",
            bad.to_str().unwrap(),
            "--name",
            "Bad",
        ],
    );
    assert!(!ok && stderr.contains("line 2"), "{stderr}");
    let (ok, list, stderr) = steward(
        &db,
        &[
            "import-price-list",
            "--file",
            csv.to_str().unwrap(),
            "--name",
            "Base",
            "--assign-to",
            &app.standard.id,
            "--effective-from",
            "2026-01-01T00:00:00Z",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(list["rate_count"], 6);
    assert!(list["id"].as_str().is_some());

    let (ok, limit, _) = steward(
        &db,
        &[
            "set-credit-limit",
            "--account",
            &app.standard.id,
            "--amount",
            "100.00",
        ],
    );
    assert!(ok);
    assert_eq!(limit["available_credit"], "100.00");
    let credit = [
        "credit",
        "--account",
        &app.standard.id,
        "--amount",
        "50.00",
        "--reason",
        "prepayment",
        "--idempotency-key",
        "cli-1",
    ];
    let (ok, first, _) = steward(&db, &credit);
    let (ok_again, again, _) = steward(&db, &credit);
    assert!(ok && ok_again);
    assert_eq!(first["entry_id"], again["entry_id"]);
    assert_eq!(again["replayed"], true);
    let (ok, adjusted, _) = steward(
        &db,
        &[
            "adjust",
            "--account",
            &app.standard.id,
            "--amount",
            "-5.00",
            "--reason",
            "fee",
            "--idempotency-key",
            "cli-2",
        ],
    );
    assert!(ok);
    assert_eq!(adjusted["balance_after"], "45.00");

    let (ok, ingest, _) = steward(&db, &["create-ingest-key"]);
    assert!(ok);
    let key = ingest["api_key"].as_str().unwrap();
    let reply = app
        .client
        .post(format!("{}/v2/usage_events", app.address))
        .bearer_auth(key)
        .json(&serde_json::json!({"events": [crate::helpers::event("cli-e1", &app.standard.id, "sms_outbound", "+15550000000", 1)]}))
        .send()
        .await
        .unwrap();
    let reply = crate::helpers::TestApp::read(reply).await;
    assert_eq!(reply.body["data"][0]["status"], "accepted");
    assert_eq!(app.balance_of(&app.standard.key).await, "45.00"); // 44.996 shown to two places

    let (ok, verified, stderr) = steward(&db, &["verify-ledger"]);
    assert!(ok, "{stderr}");
    assert_eq!(verified["ok"], true);
    assert!(verified["entries"].as_i64().unwrap() >= 4);
}
