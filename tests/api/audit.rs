//! The audit trail: who changed what, readable by the account and by its manager.

use chrono::TimeDelta;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{BASE_PRICES, TestApp, spawn_app};

async fn trail(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v2/audit_events?{query}"), key).await;
    reply.assert_status(200);
    reply.body["data"].as_array().unwrap().clone()
}

fn wire_now(app: &TestApp) -> String {
    use steward::clock::Clock;
    steward::clock::to_wire(app.clock.now())
}

fn kinds(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["change_type"].as_str().unwrap().to_owned(),
                e["change_made_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_managed_accounts_trail_shows_what_its_manager_and_the_operator_changed() {
    let app = spawn_app().await;
    let managed = app
        .managed_of(
            &app.manager,
            "Trail Co",
            json!({"password": "first password"}),
        )
        .await;
    let path = format!("/v2/managed_accounts/{}", managed.id);
    app.clock.advance(TimeDelta::seconds(1));
    app.patch(
        &path,
        &app.manager.key,
        json!({"email": "renamed@trail.example", "business_name": "Trail Ltd",
               "managed_account_allow_custom_pricing": true}),
    )
    .await
    .assert_status(200);
    app.clock.advance(TimeDelta::seconds(1));
    app.post(&format!("{path}/actions/disable"), &app.manager.key, None)
        .await
        .assert_status(200);
    app.post(&format!("{path}/actions/enable"), &app.manager.key, None)
        .await
        .assert_status(200);
    app.patch(
        &format!("{path}/update_global_channel_limit"),
        &app.manager.key,
        json!({"channel_limit": 3}),
    )
    .await
    .assert_status(200);
    let minted = app
        .post(&format!("{path}/api_keys"), &app.manager.key, None)
        .await;
    minted.assert_status(200);
    let key_id = minted.body["data"]["id"].as_str().unwrap().to_owned();
    let secret = minted.body["data"]["api_key"].as_str().unwrap().to_owned();
    app.request(
        Method::DELETE,
        &format!("{path}/api_keys/{key_id}"),
        Some(&app.manager.key),
        None,
    )
    .await
    .assert_status(200);
    app.clock.advance(TimeDelta::seconds(1));
    app.operator_post(
        &format!("/admin/v1/accounts/{}/credits", managed.id),
        Some("trail-credit"),
        json!({"amount": "20.00", "reason": "welcome"}),
    )
    .await
    .assert_status(200);
    app.operator_post(
        &format!("/admin/v1/accounts/{}/credit_limit", managed.id),
        None,
        json!({"amount": "5.00"}),
    )
    .await
    .assert_status(200);
    let list = app
        .import_prices(BASE_PRICES, &format!("assign_to={}", managed.id))
        .await;
    list.assert_status(200);
    let list_id = list.body["data"]["id"].as_str().unwrap().to_owned();
    // The account's own user changes its email.
    app.patch(
        "/v2/account",
        &managed.key,
        json!({"email": "own@trail.example"}),
    )
    .await
    .assert_status(200);

    let by_manager = trail(
        &app,
        &app.manager.key,
        &format!(
            "filter%5Baccount_id%5D={}&sort=asc&page%5Bsize%5D=50",
            managed.id
        ),
    )
    .await;
    let own = trail(&app, &managed.key, "sort=asc&page%5Bsize%5D=50").await;
    assert_eq!(
        by_manager, own,
        "the manager and the account read one trail"
    );
    let manager = "account_manager".to_owned();
    let operator = "telnyx".to_owned();
    let expected: Vec<(String, String)> = [
        ("managed_account.create", &manager),
        ("managed_account.update", &manager),
        ("managed_account.disable", &manager),
        ("managed_account.enable", &manager),
        ("managed_account.channel_limit", &manager),
        ("api_key.create", &manager),
        ("api_key.revoke", &manager),
        ("credit", &operator),
        ("credit_limit.update", &operator),
        ("pricing.change", &operator),
        ("account.update", &"account_owner".to_owned()),
    ]
    .into_iter()
    .map(|(t, by)| (t.to_owned(), by.clone()))
    .collect();
    assert_eq!(kinds(&own), expected);
    let update = &own[1];
    assert_eq!(update["user_id"], managed.id);
    assert_eq!(update["actor_account_id"], app.manager.id);
    assert_eq!(update["record_type"], "audit_event");
    let changed: Vec<&str> = update["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        changed,
        [
            "managed_account_allow_custom_pricing",
            "email",
            "organization_name"
        ]
    );
    assert_eq!(update["changes"][1]["to"], "renamed@trail.example");
    assert_eq!(own[4]["changes"][0]["to"], 3);

    // No secret, password or price ever appears, nor the price list that set the prices.
    let text = serde_json::to_string(&own).unwrap();
    for secret in [
        secret.as_str(),
        "first password",
        &list_id,
        "0.0100",
        "0.004",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[tokio::test]
async fn an_account_never_reads_its_managers_trail_or_another_tenants() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Walled Co", json!({})).await;
    app.post("/v2/api_keys", &app.manager.key, None)
        .await
        .assert_status(200);

    let managers_own = trail(&app, &app.manager.key, "").await;
    assert_eq!(
        kinds(&managers_own),
        [
            ("api_key.create".to_owned(), "account_owner".to_owned()),
            ("account.create".to_owned(), "telnyx".to_owned())
        ]
    );
    let own = trail(&app, &managed.key, "").await;
    assert!(own.iter().all(|e| e["user_id"] == managed.id), "{own:?}");
    let up = app
        .get(
            &format!("/v2/audit_events?filter%5Baccount_id%5D={}", app.manager.id),
            &managed.key,
        )
        .await;
    up.assert_error(403, "10010", None);
    let across = app
        .get(
            &format!("/v2/audit_events?filter%5Baccount_id%5D={}", managed.id),
            &app.other_manager.key,
        )
        .await;
    across.assert_error(404, "10005", None);
}

#[tokio::test]
async fn the_trail_filters_by_time_pages_and_records_only_what_happened() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Paged Co", json!({})).await;
    let path = format!("/v2/managed_accounts/{}", managed.id);
    let start = wire_now(&app);
    for n in 0..5 {
        app.clock.advance(TimeDelta::minutes(1));
        app.patch(
            &path,
            &app.manager.key,
            json!({"business_name": format!("Paged {n}")}),
        )
        .await
        .assert_status(200);
    }
    let middle = wire_now(&app);
    app.clock.advance(TimeDelta::minutes(1));
    // A refused change records nothing: the event shares the change's transaction.
    app.patch(
        &path,
        &app.manager.key,
        json!({"email": app.standard.email}),
    )
    .await
    .assert_status(422);
    // Restating the current values changes nothing and records nothing.
    app.patch(&path, &app.manager.key, json!({"business_name": "Paged 4"}))
        .await
        .assert_status(200);

    let key = &app.manager.key;
    let all = trail(&app, key, &format!("filter%5Baccount_id%5D={}", managed.id)).await;
    assert_eq!(all.len(), 6);
    assert_eq!(all[0]["changes"][0]["to"], "Paged 4", "newest first");
    let window = trail(
        &app,
        key,
        &format!(
            "filter%5Baccount_id%5D={}&filter%5Bcreated_after%5D={}&filter%5Bcreated_before%5D={}",
            managed.id,
            start.replace('+', "%2B"),
            middle.replace('+', "%2B")
        ),
    )
    .await;
    assert_eq!(window.len(), 4);
    let page = app
        .get(
            &format!(
                "/v2/audit_events?filter%5Baccount_id%5D={}&sort=asc&page%5Bsize%5D=4&page%5Bnumber%5D=2",
                managed.id
            ),
            key,
        )
        .await;
    page.assert_status(200);
    assert_eq!(page.body["meta"]["total_results"], 6);
    assert_eq!(page.body["meta"]["total_pages"], 2);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 2);
    let bad = app
        .get("/v2/audit_events?filter%5Bcreated_after%5D=yesterday", key)
        .await;
    bad.assert_error(400, "10015", Some(("parameter", "filter[created_after]")));
}
