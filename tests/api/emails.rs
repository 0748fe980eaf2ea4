//! Emails: one key per mailbox, whatever the spelling of its domain; no look-alikes.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn an_internationalized_domain_and_its_punycode_are_one_mailbox() {
    let app = spawn_app().await;
    let first = app
        .create_managed(
            &app.manager.key,
            json!({"business_name": "Bücher A", "email": "u@bücher.example"}),
        )
        .await;
    first.assert_status(200);
    assert_eq!(first.body["data"]["email"], "u@bücher.example");

    let second = app
        .create_managed(
            &app.manager.key,
            json!({"business_name": "Bücher B", "email": "U@xn--bcher-kva.EXAMPLE"}),
        )
        .await;
    second.assert_error(422, "10012", Some(("pointer", "/email")));
    // The same rule holds for changing an email, and for the exact-match filter.
    let taken = app
        .patch(
            "/v2/account",
            &app.standard.key,
            json!({"email": "u@XN--BCHER-KVA.example"}),
        )
        .await;
    taken.assert_error(422, "10012", Some(("pointer", "/email")));
    let found = app
        .get(
            "/v2/managed_accounts?filter%5Bemail%5D%5Beq%5D=u%40xn--bcher-kva.example",
            &app.manager.key,
        )
        .await;
    assert_eq!(found.body["meta"]["total_results"], 1);
}

#[tokio::test]
async fn invisible_and_mixed_script_addresses_are_refused_and_say_why() {
    let app = spawn_app().await;
    for (email, why) in [
        ("jo\u{200B}hn@example.com", "invisible"),
        ("john\u{2060}@example.com", "invisible"),
        ("p\u{0430}ypal@example.com", "scripts"),
        ("billing@\u{0440}aypal.com", "scripts"),
    ] {
        let reply = app
            .create_managed(
                &app.manager.key,
                json!({"business_name": "Look Alike", "email": email}),
            )
            .await;
        reply.assert_error(422, "40001", Some(("pointer", "/email")));
        let detail = reply.error()["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{email:?}: {detail}");
        let changed = app
            .patch("/v2/account", &app.standard.key, json!({"email": email}))
            .await;
        changed.assert_error(422, "40001", Some(("pointer", "/email")));
    }
    // Nothing was created.
    let listed = app
        .get(
            "/v2/managed_accounts?filter%5Bstatus%5D%5Beq%5D=all",
            &app.manager.key,
        )
        .await;
    assert_eq!(listed.body["meta"]["total_results"], 0);
}

#[tokio::test]
async fn emails_stored_before_domain_keys_are_rekeyed_once_at_start() {
    let app = spawn_app().await;
    let managed = app
        .managed_of(
            &app.manager,
            "Legacy Co",
            json!({"email": "legacy@münchen.example"}),
        )
        .await;
    // As an earlier version stored it: the lower-cased address, domain in Unicode.
    sqlx::query("UPDATE accounts SET email_normalized = 'legacy@münchen.example' WHERE id = $1")
        .bind(&managed.id)
        .execute(&app.db.write)
        .await
        .unwrap();
    sqlx::query("DELETE FROM maintenance_runs")
        .execute(&app.db.write)
        .await
        .unwrap();

    // A server starting on the database re-keys it.
    app.second_server().await;

    let key: String = sqlx::query_scalar("SELECT email_normalized FROM accounts WHERE id = $1")
        .bind(&managed.id)
        .fetch_one(&app.db.read)
        .await
        .unwrap();
    assert_eq!(key, "legacy@xn--mnchen-3ya.example");
    let duplicate = app
        .create_managed(
            &app.manager.key,
            json!({"business_name": "Copy", "email": "legacy@xn--mnchen-3ya.example"}),
        )
        .await;
    duplicate.assert_error(422, "10012", Some(("pointer", "/email")));
}
