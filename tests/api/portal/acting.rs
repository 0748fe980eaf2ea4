//! "Log in as": what a manager reaches while acting as a managed account, how changes are
//! recorded, and when acting ends.

use std::sync::Arc;

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::json;
use steward::accounts::{AccountId, operator};
use steward::clock::ClockHandle;

use super::{Browser, PASSWORD, manager_browser};
use crate::helpers::{self, spawn_app};

#[tokio::test]
async fn changes_made_while_acting_are_recorded_as_the_managers() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Acted Upon", json!({})).await;
    let mut browser = manager_browser(&app).await;

    browser
        .act_as(&managed.id)
        .await
        .assert_redirect("/dashboard");
    let dashboard = browser.get("/dashboard").await;
    assert!(
        dashboard
            .body
            .contains("You are acting as <strong>Acted Upon</strong>")
    );
    browser
        .fill(
            "/settings",
            "/settings/profile",
            &[
                ("email", "acted@customer.example"),
                ("organization_name", "Acted Upon"),
            ],
        )
        .await
        .assert_redirect("/settings");
    browser
        .fill(
            "/settings",
            "/settings/password",
            &[("new_password", PASSWORD), ("confirm_password", PASSWORD)],
        )
        .await
        .assert_redirect("/settings");
    let minted = browser.fill("/api-keys", "/api-keys", &[]).await;
    assert_eq!(minted.status, StatusCode::OK);
    let marker = "readonly value=\"";
    let start = minted.body.find(marker).expect("the key is shown") + marker.len();
    let key = minted.body[start..].split('"').next().unwrap().to_owned();
    assert!(key.starts_with("KEY"), "{key}");

    // The key works for the managed account.
    let account = app.get("/v2/account", &key).await;
    account.assert_status(200);
    assert_eq!(account.body["data"]["email"], "acted@customer.example");
    let trail = app
        .get(
            &format!("/v2/audit_events?filter%5Baccount_id%5D={}", managed.id),
            &app.manager.key,
        )
        .await;
    let events = trail.body["data"].as_array().unwrap();
    for change in ["account.update", "password.set", "api_key.create"] {
        let event = events
            .iter()
            .find(|e| e["change_type"] == change)
            .unwrap_or_else(|| panic!("no {change} in {}", trail.body));
        assert_eq!(event["change_made_by"], "account_manager", "{event}");
        assert_eq!(
            event["actor_account_id"],
            app.manager.id.as_str(),
            "{event}"
        );
    }
    // And the account can now sign in itself.
    Browser::new(&app)
        .sign_in("acted@customer.example", PASSWORD)
        .await;
}

#[tokio::test]
async fn acting_reaches_only_the_managed_accounts_own_pages() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Mine", json!({})).await;
    let others = app
        .managed_of(&app.other_manager, "Not Mine", json!({}))
        .await;
    let mut browser = manager_browser(&app).await;

    // Another manager's account answers like one that does not exist.
    let missing = browser.act_as(&others.id).await;
    let unknown = browser.act_as(&AccountId::generate().to_string()).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body, unknown.body);
    assert_eq!(
        browser
            .get(&format!("/managed-accounts/{}", others.id))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(
        !browser
            .get("/dashboard")
            .await
            .body
            .contains("You are acting as")
    );

    browser
        .act_as(&managed.id)
        .await
        .assert_redirect("/dashboard");
    for own_page in [
        "/managed-accounts".to_owned(),
        "/managed-accounts/new".to_owned(),
        format!("/managed-accounts/{}", managed.id),
    ] {
        let page = browser.get(&own_page).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{own_page}");
        assert!(page.body.contains("Return to your account"));
    }
    // The manager's own actions are refused too, whatever the form says.
    browser.get("/settings").await;
    let disable = browser
        .submit(
            &format!("/managed-accounts/{}/disable", managed.id),
            &[("confirmed", "1")],
        )
        .await;
    assert_eq!(disable.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.get("/pricing").await.status, StatusCode::NOT_FOUND);
    let nav = browser.get("/dashboard").await.body;
    assert!(!nav.contains("href=\"/pricing\"") && !nav.contains("href=\"/managed-accounts\""));
    let switch = browser
        .submit(&format!("/managed-accounts/{}/act", others.id), &[])
        .await;
    assert_eq!(switch.status, StatusCode::NOT_FOUND);

    // Returning brings the manager's pages back.
    browser.fill("/dashboard", "/acting/stop", &[]).await;
    assert_eq!(
        browser.get("/managed-accounts").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_form_from_another_accounts_page_changes_nothing() {
    let app = spawn_app().await;
    let first = app.managed_of(&app.manager, "First", json!({})).await;
    let second = app.managed_of(&app.manager, "Second", json!({})).await;
    let mut browser = manager_browser(&app).await;
    browser.act_as(&first.id).await;
    let stale = browser.get("/settings").await;
    let (token, subject) = (
        stale.field("csrf_token").unwrap(),
        stale.field("subject").unwrap(),
    );
    browser.fill("/dashboard", "/acting/stop", &[]).await;
    browser.act_as(&second.id).await;

    // The old tab's form, meant for the first account, is posted now.
    let page = browser
        .post_raw(
            "/settings/profile",
            &[
                ("csrf_token", token.as_str()),
                ("subject", subject.as_str()),
                ("email", "moved@customer.example"),
                ("organization_name", "First"),
            ],
        )
        .await;

    page.assert_redirect("/dashboard");
    let second_now = app
        .get(
            &format!("/v2/managed_accounts/{}", second.id),
            &app.manager.key,
        )
        .await;
    assert_eq!(second_now.body["data"]["email"], second.email.as_str());
    assert_eq!(second_now.body["data"]["organization_name"], "Second");
}

#[tokio::test]
async fn acting_ends_after_its_time_limit() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Timed", json!({})).await;
    let mut browser = manager_browser(&app).await;
    browser.act_as(&managed.id).await;
    for _ in 0..2 {
        app.clock.advance(TimeDelta::minutes(29));
        assert!(
            browser
                .get("/dashboard")
                .await
                .body
                .contains("You are acting as")
        );
    }

    app.clock.advance(TimeDelta::minutes(3));
    let ended = browser.get("/settings").await;

    ended.assert_redirect("/dashboard");
    let dashboard = browser.get("/dashboard").await;
    assert!(dashboard.body.contains("the time limit passed"));
    assert!(!dashboard.body.contains("You are acting as"));
    assert!(dashboard.body.contains("Reseller One"));
}

#[tokio::test]
async fn acting_ends_when_the_manager_is_no_longer_approved() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Orphaned", json!({})).await;
    let mut browser = manager_browser(&app).await;
    browser.act_as(&managed.id).await;
    let pending = browser.get("/settings").await;
    assert_eq!(pending.status, StatusCode::OK);

    let clock: ClockHandle = Arc::new(app.clock.clone());
    operator::revoke_manager(
        &app.db,
        &clock,
        AccountId::parse(&app.manager.id).unwrap(),
        &helpers::operator(),
    )
    .await
    .unwrap();
    // A form of the managed account's page, posted now, must not land on the manager's own.
    let posted = browser
        .submit(
            "/settings/profile",
            &[
                ("email", "wrong@place.example"),
                ("organization_name", "Wrong"),
            ],
        )
        .await;

    posted.assert_redirect("/dashboard");
    let dashboard = browser.get("/dashboard").await;
    assert!(dashboard.body.contains("no longer an approved manager"));
    assert_eq!(
        app.get("/v2/account", &app.manager.key).await.body["data"]["email"],
        app.manager.email.as_str()
    );
    assert_eq!(
        browser.get("/managed-accounts").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn signing_out_ends_acting() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Brief", json!({})).await;
    let mut browser = manager_browser(&app).await;
    browser.act_as(&managed.id).await;

    browser.fill("/dashboard", "/sign-out", &[]).await;
    browser.sign_in(&app.manager.email, PASSWORD).await;

    assert!(
        !browser
            .get("/dashboard")
            .await
            .body
            .contains("You are acting as")
    );
}

#[tokio::test]
async fn another_managers_account_is_missing_for_every_action() {
    let app = spawn_app().await;
    let others = app
        .managed_of(&app.other_manager, "Theirs", json!({}))
        .await;
    let mut browser = manager_browser(&app).await;
    browser.get("/settings").await;

    for (action, fields) in [
        ("disable", vec![("confirmed", "1")]),
        ("enable", vec![("confirmed", "1")]),
        ("channel-limit", vec![("channel_limit", "1")]),
        (
            "custom-pricing",
            vec![("managed_account_allow_custom_pricing", "on")],
        ),
    ] {
        let page = browser
            .submit(
                &format!("/managed-accounts/{}/{action}", others.id),
                &fields,
            )
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{action}");
    }

    let theirs = app
        .get(
            &format!("/v2/managed_accounts/{}", others.id),
            &app.other_manager.key,
        )
        .await;
    assert_eq!(theirs.body["data"]["status"], "active");
    assert_eq!(theirs.body["data"]["channel_limit"], 0);
    assert_eq!(
        theirs.body["data"]["managed_account_allow_custom_pricing"],
        false
    );
}
