//! A cancelled account takes no change but reads; its email can be released by the operator.

use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{BASE_PRICES, TestApp, spawn_app};

fn steward(database_url: &str, args: &[&str], stdin: Option<&str>) -> (bool, Value, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
        .arg("admin")
        .args(args)
        .args(["--database-url", database_url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run steward");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        output.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr,
    )
}

async fn key_ids(app: &TestApp, managed_id: &str) -> Vec<(String, bool)> {
    let reply = app
        .get(
            &format!("/v2/managed_accounts/{managed_id}/api_keys"),
            &app.manager.key,
        )
        .await;
    reply.assert_status(200);
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_owned(),
                k["revoked_at"].is_null(),
            )
        })
        .collect()
}

#[tokio::test]
async fn cancelling_revokes_every_key_and_no_key_can_be_minted_or_revoked_after() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Closing Co", json!({})).await;
    let keys_path = format!("/v2/managed_accounts/{}/api_keys", managed.id);
    app.post(&keys_path, &app.manager.key, None)
        .await
        .assert_status(200);
    assert_eq!(key_ids(&app, &managed.id).await.len(), 2);

    app.cancel_account(&managed.id, false).await;

    let keys = key_ids(&app, &managed.id).await;
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|(_, live)| !live), "{keys:?}");
    let minted = app.post(&keys_path, &app.manager.key, None).await;
    minted.assert_error(422, "40004", None);
    assert!(
        minted.error()["detail"]
            .as_str()
            .unwrap()
            .contains("cancelled")
    );
    let revoked = app
        .request(
            Method::DELETE,
            &format!("{keys_path}/{}", keys[0].0),
            Some(&app.manager.key),
            None,
        )
        .await;
    revoked.assert_error(422, "40004", None);
    assert_eq!(key_ids(&app, &managed.id).await.len(), 2);
}

#[tokio::test]
async fn a_cancelled_account_takes_no_update_money_or_pricing() {
    let app = spawn_app().await;
    let managed = app
        .managed_of(
            &app.manager,
            "Frozen Co",
            json!({"managed_account_allow_custom_pricing": false}),
        )
        .await;
    app.cancel_account(&managed.id, false).await;
    let account_path = format!("/v2/managed_accounts/{}", managed.id);

    let patched = app
        .patch(
            &account_path,
            &app.manager.key,
            json!({"managed_account_allow_custom_pricing": true}),
        )
        .await;
    patched.assert_error(422, "40004", None);
    let credit = app
        .operator_post(
            &format!("/admin/v1/accounts/{}/credits", managed.id),
            Some("credit-cancelled"),
            json!({"amount": "10.00", "reason": "goodwill"}),
        )
        .await;
    credit.assert_error(422, "40004", None);
    let adjustment = app
        .operator_post(
            &format!("/admin/v1/accounts/{}/adjustments", managed.id),
            Some("adjust-cancelled"),
            json!({"amount": "-1.00", "reason": "fee"}),
        )
        .await;
    adjustment.assert_error(422, "40004", None);
    let limit = app
        .operator_post(
            &format!("/admin/v1/accounts/{}/credit_limit", managed.id),
            None,
            json!({"amount": "50.00"}),
        )
        .await;
    limit.assert_error(422, "40004", None);
    let list = app
        .import_prices(BASE_PRICES, &format!("assign_to={}", managed.id))
        .await;
    list.assert_error(422, "40004", None);

    // Nothing changed: reads still work and show the account as it was.
    let read = app.get(&account_path, &app.manager.key).await;
    read.assert_status(200);
    assert_eq!(
        read.body["data"]["managed_account_allow_custom_pricing"],
        false
    );
    assert_eq!(read.body["data"]["balance"]["balance"], "0.00");
    assert_eq!(read.body["data"]["balance"]["credit_limit"], "0.00");
    let assignments: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM price_list_assignments WHERE account_id = $1")
            .bind(&managed.id)
            .fetch_one(&app.db.read)
            .await
            .unwrap();
    assert_eq!(assignments, 0);
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn an_existing_customer_moves_under_a_manager_by_cancel_and_release() {
    let app = spawn_app().await;
    let (ok, joe, stderr) = steward(
        &app.database_url,
        &[
            "create-account",
            "--email",
            "Joe@Customer.example",
            "--business-name",
            "Joe's Shop",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    let joe_id = joe["id"].as_str().unwrap();

    // While Joe's own account holds the email, the manager is told what to do.
    let refused = app
        .create_managed(
            &app.manager.key,
            json!({"business_name": "Joe's Shop", "email": "joe@customer.example"}),
        )
        .await;
    refused.assert_error(422, "10012", Some(("pointer", "/email")));
    let detail = refused.error()["detail"].as_str().unwrap();
    assert!(
        detail.contains("cancel") && detail.contains("release"),
        "{detail}"
    );

    // A live account's email is never released.
    let (ok, _, stderr) = steward(
        &app.database_url,
        &["release-email", "--account", joe_id],
        None,
    );
    assert!(!ok);
    assert!(stderr.contains("cancel"), "{stderr}");

    let (ok, cancelled, stderr) = steward(
        &app.database_url,
        &["cancel-account", "--account", joe_id, "--release-email"],
        None,
    );
    assert!(ok, "{stderr}");
    assert_eq!(cancelled["status"], "cancelled");
    let tombstone = cancelled["email"].as_str().unwrap();
    assert!(tombstone.contains(joe_id) && tombstone.ends_with(".invalid"));

    let created = app
        .create_managed(
            &app.manager.key,
            json!({"business_name": "Joe's Shop", "email": "Joe@Customer.example"}),
        )
        .await;
    created.assert_status(200);
    assert_eq!(created.body["data"]["email"], "Joe@Customer.example");

    // The release is in the audit trail, in the same transaction as the change.
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_events WHERE account_id = $1 ORDER BY created_at_ms, id",
    )
    .bind(joe_id)
    .fetch_all(&app.db.read)
    .await
    .unwrap();
    assert_eq!(
        actions,
        ["account.create", "account.cancel", "account.release_email"]
    );
    // Releasing again changes nothing and succeeds.
    let (ok, again, stderr) = steward(
        &app.database_url,
        &["release-email", "--account", joe_id],
        None,
    );
    assert!(ok, "{stderr}");
    assert_eq!(again["email"], tombstone);
}

#[tokio::test]
async fn the_operator_sets_passwords_from_standard_input_and_never_for_cancelled_accounts() {
    let app = spawn_app().await;
    let (ok, created, stderr) = steward(
        &app.database_url,
        &[
            "create-account",
            "--email",
            "first@manager.example",
            "--business-name",
            "First Manager",
            "--manager",
            "--password-stdin",
        ],
        Some("correct horse battery staple\n"),
    );
    assert!(ok, "{stderr}");
    assert_eq!(created["password_set"], true);
    let id = created["id"].as_str().unwrap();
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db.read)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("horse"));

    let (ok, _, stderr) = steward(
        &app.database_url,
        &[
            "set-password",
            "--account",
            &app.standard.id,
            "--password",
            "short",
        ],
        None,
    );
    assert!(!ok && stderr.contains("at least 8"), "{stderr}");
    let (ok, updated, stderr) = steward(
        &app.database_url,
        &[
            "set-password",
            "--account",
            &app.standard.id,
            "--password-stdin",
        ],
        Some("another good password\n"),
    );
    assert!(ok, "{stderr}");
    assert_eq!(updated["password_set"], true);

    app.cancel_account(&app.standard.id, false).await;
    let (ok, _, stderr) = steward(
        &app.database_url,
        &[
            "set-password",
            "--account",
            &app.standard.id,
            "--password",
            "yet another one",
        ],
        None,
    );
    assert!(!ok && stderr.contains("cancelled"), "{stderr}");
}
