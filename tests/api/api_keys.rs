use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_manager_mints_lists_and_revokes_a_managed_accounts_keys() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Keyed Co", json!({})).await;
    let keys_path = format!("/v2/managed_accounts/{}/api_keys", managed.id);

    let minted = app.post(&keys_path, &app.manager.key, None).await;
    minted.assert_status(200);
    let data = &minted.body["data"];
    let secret = data["api_key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(&format!("{}_", data["id"].as_str().unwrap())));
    assert_eq!(data["account_id"], managed.id);
    assert_eq!(data["created_by_account_id"], app.manager.id);
    app.get("/v2/account", &secret).await.assert_status(200);

    let listed = app.get(&keys_path, &app.manager.key).await;
    listed.assert_status(200);
    assert_eq!(listed.body["meta"]["total_results"], 2);
    assert!(
        !listed.body.to_string().contains(&secret[4..]),
        "a secret was listed"
    );
    assert!(
        !listed.body.to_string().contains(&managed.key[40..]),
        "a secret was listed"
    );

    let revoked = app
        .request(
            Method::DELETE,
            &format!("{keys_path}/{}", data["id"].as_str().unwrap()),
            Some(&app.manager.key),
            None,
        )
        .await;
    revoked.assert_status(200);
    assert!(revoked.body["data"]["revoked_at"].is_string());
    app.get("/v2/account", &secret)
        .await
        .assert_error(401, "10009", None);
    // The other key still works.
    app.get("/v2/account", &managed.key)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn every_account_manages_its_own_keys_and_no_one_elses() {
    let app = spawn_app().await;
    let minted = app.post("/v2/api_keys", &app.standard.key, None).await;
    minted.assert_status(200);
    let id = minted.body["data"]["id"].as_str().unwrap().to_owned();

    // Another account cannot revoke it: it is simply not there for them.
    app.request(
        Method::DELETE,
        &format!("/v2/api_keys/{id}"),
        Some(&app.manager.key),
        None,
    )
    .await
    .assert_error(404, "10005", None);
    let mine = app.get("/v2/api_keys", &app.standard.key).await;
    assert_eq!(mine.body["meta"]["total_results"], 2);

    app.request(
        Method::DELETE,
        &format!("/v2/api_keys/{id}"),
        Some(&app.standard.key),
        None,
    )
    .await
    .assert_status(200);
    // Revoking twice changes nothing.
    app.request(
        Method::DELETE,
        &format!("/v2/api_keys/{id}"),
        Some(&app.standard.key),
        None,
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn keys_are_stored_only_as_digests() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Digest Co", json!({})).await;

    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, secret_sha256 FROM api_keys")
        .fetch_all(&app.db.read)
        .await
        .unwrap();

    assert_eq!(rows.len(), 4);
    for (id, digest) in rows {
        assert_eq!(digest.len(), 64);
        assert!(!managed.key.contains(&digest) && !app.manager.key.contains(&digest));
        assert!(id.starts_with("KEY"));
    }
    let stored = steward::keys::digest(&managed.key);
    let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE secret_sha256 = $1")
        .bind(stored)
        .fetch_one(&app.db.read)
        .await
        .unwrap();
    assert_eq!(found, 1);
}
