//! Signing in: the answer, the backoff, sessions and their end.

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::json;

use super::{Browser, PASSWORD, give_password, manager_browser};
use crate::helpers::spawn_app;

#[tokio::test]
async fn signing_in_opens_the_dashboard_and_signing_out_ends_the_session() {
    let app = spawn_app().await;
    let mut browser = manager_browser(&app).await;

    let dashboard = browser.get("/dashboard").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("Reseller One"));
    let stolen = browser.cookies.clone();

    let out = browser.fill("/dashboard", "/sign-out", &[]).await;
    out.assert_redirect("/sign-in");
    browser.cookies = stolen;
    let after = browser.get("/dashboard").await;

    after.assert_redirect("/sign-in?next=%2Fdashboard");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    give_password(&app, &app.manager).await;
    let mut browser = Browser::new(&app);

    let wrong = browser
        .try_sign_in(&app.manager.email, "not the password", None)
        .await;
    let unknown = browser
        .try_sign_in("nobody@nowhere.example", PASSWORD, None)
        .await;

    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.status, wrong.status);
    let message = "The email or the password is not right.";
    assert!(wrong.body.contains(message) && unknown.body.contains(message));
    assert!(!browser.cookies.contains_key("__Host-steward_session"));
}

#[tokio::test]
async fn failed_sign_ins_back_off_per_email_whether_or_not_it_exists() {
    let app = spawn_app().await;
    give_password(&app, &app.manager).await;
    let mut browser = Browser::new(&app);
    for _ in 0..5 {
        let page = browser
            .try_sign_in(&app.manager.email, "wrong guess", None)
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    for _ in 0..5 {
        browser
            .try_sign_in("ghost@nowhere.example", "wrong guess", None)
            .await;
    }

    // Even the right password is refused now, the same way as for an email no one has.
    let known = browser
        .try_sign_in(&app.manager.email, PASSWORD, None)
        .await;
    let unknown = browser
        .try_sign_in("ghost@nowhere.example", PASSWORD, None)
        .await;

    for page in [&known, &unknown] {
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(page.body.contains("Too many failed sign-ins"));
        let retry: i64 = page.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    assert!(!browser.cookies.contains_key("__Host-steward_session"));

    // Another email from the same address is not held back by these.
    give_password(&app, &app.other_manager).await;
    browser.sign_in(&app.other_manager.email, PASSWORD).await;

    app.clock.advance(TimeDelta::seconds(61));
    Browser::new(&app)
        .sign_in(&app.manager.email, PASSWORD)
        .await;
}

#[tokio::test]
async fn failed_sign_ins_back_off_per_client_address() {
    let app = spawn_app().await;
    give_password(&app, &app.manager).await;
    let mut browser = Browser::new(&app);
    // Thirty different emails, each failing once: no email reaches its own limit.
    for n in 0..30 {
        let email = format!("guess{n}@nowhere.example");
        let page = browser.try_sign_in(&email, "password1", None).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "attempt {n}");
    }

    let refused = browser
        .try_sign_in(&app.manager.email, PASSWORD, None)
        .await;

    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn an_account_without_a_password_is_told_to_ask_for_one() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "No Password", json!({})).await;
    let mut browser = Browser::new(&app);

    let page = browser
        .try_sign_in(&managed.email, "anything at all", None)
        .await;

    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.body.contains("no password yet"), "{}", page.body);
    assert!(page.body.contains("Ask your manager"));
}

#[tokio::test]
async fn a_disabled_or_cancelled_account_is_signed_out_at_once_and_cannot_sign_in() {
    let app = spawn_app().await;
    let managed = app
        .managed_of(&app.manager, "Soon Disabled", json!({"password": PASSWORD}))
        .await;
    let mut browser = Browser::new(&app);
    browser.sign_in(&managed.email, PASSWORD).await;
    assert_eq!(browser.get("/dashboard").await.status, StatusCode::OK);

    app.post(
        &format!("/v2/managed_accounts/{}/actions/disable", managed.id),
        &app.manager.key,
        None,
    )
    .await
    .assert_status(200);

    assert_eq!(
        browser.get("/dashboard").await.status,
        StatusCode::SEE_OTHER
    );
    let refused = browser.try_sign_in(&managed.email, PASSWORD, None).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("This account is disabled"));

    app.post(
        &format!("/v2/managed_accounts/{}/actions/enable", managed.id),
        &app.manager.key,
        None,
    )
    .await
    .assert_status(200);
    browser.sign_in(&managed.email, PASSWORD).await;
    app.cancel_account(&managed.id, false).await;

    assert_eq!(
        browser.get("/dashboard").await.status,
        StatusCode::SEE_OTHER
    );
    let refused = browser.try_sign_in(&managed.email, PASSWORD, None).await;
    assert!(refused.body.contains("cancelled"));
}

#[tokio::test]
async fn a_session_ends_when_idle_too_long_and_at_the_end_of_its_lifetime() {
    let app = spawn_app().await;
    let mut browser = manager_browser(&app).await;

    app.clock.advance(TimeDelta::minutes(29));
    assert_eq!(browser.get("/dashboard").await.status, StatusCode::OK);
    app.clock.advance(TimeDelta::minutes(31));
    assert_eq!(
        browser.get("/dashboard").await.status,
        StatusCode::SEE_OTHER
    );

    let mut busy = Browser::new(&app);
    busy.sign_in(&app.manager.email, PASSWORD).await;
    for _ in 0..(12 * 3 - 1) {
        app.clock.advance(TimeDelta::minutes(20));
        assert_eq!(busy.get("/dashboard").await.status, StatusCode::OK);
    }
    app.clock.advance(TimeDelta::minutes(20));
    assert_eq!(busy.get("/dashboard").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_session_works_on_another_server_of_the_same_database() {
    let app = spawn_app().await;
    let mut browser = manager_browser(&app).await;
    let second = app.second_server().await;

    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{second}/dashboard"))
        .header(
            "cookie",
            format!(
                "__Host-steward_session={}",
                browser.cookies["__Host-steward_session"]
            ),
        )
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(browser.get("/dashboard").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_new_password_signs_out_the_account_everywhere_else() {
    let app = spawn_app().await;
    let mut here = manager_browser(&app).await;
    let mut elsewhere = Browser::new(&app);
    elsewhere.sign_in(&app.manager.email, PASSWORD).await;

    let changed = here
        .fill(
            "/settings",
            "/settings/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "a brand new secret"),
                ("confirm_password", "a brand new secret"),
            ],
        )
        .await;

    changed.assert_redirect("/settings");
    assert_eq!(here.get("/dashboard").await.status, StatusCode::OK);
    assert_eq!(
        elsewhere.get("/dashboard").await.status,
        StatusCode::SEE_OTHER
    );
    Browser::new(&app)
        .sign_in(&app.manager.email, "a brand new secret")
        .await;
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing() {
    let app = spawn_app().await;
    let mut browser = manager_browser(&app).await;

    let refused = browser
        .fill(
            "/settings",
            "/settings/password",
            &[
                ("current_password", "not my password"),
                ("new_password", "a brand new secret"),
                ("confirm_password", "a brand new secret"),
            ],
        )
        .await;

    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("This is not the current password."));
    Browser::new(&app)
        .sign_in(&app.manager.email, PASSWORD)
        .await;
}

#[tokio::test]
async fn a_password_the_operator_sets_signs_the_account_out_everywhere() {
    let app = spawn_app().await;
    let mut browser = manager_browser(&app).await;

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "admin",
            "set-password",
            "--account",
            &app.manager.id,
            "--password",
            "set by the operator",
            "--database-url",
            &app.database_url,
        ])
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        browser.get("/dashboard").await.status,
        StatusCode::SEE_OTHER
    );
    Browser::new(&app)
        .sign_in(&app.manager.email, "set by the operator")
        .await;
}
