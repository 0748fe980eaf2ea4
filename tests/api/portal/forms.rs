//! Form tokens and redirects: a forged or missing token is refused and changes nothing; no
//! `next` leads off the site.

use reqwest::StatusCode;
use serde_json::json;

use super::{Browser, PASSWORD, give_password, manager_browser};
use crate::helpers::spawn_app;

/// The manager's email as the API reads it.
async fn email_of(app: &crate::helpers::TestApp, key: &str) -> String {
    let reply = app.get("/v2/account", key).await;
    reply.body["data"]["email"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn forms_without_this_sessions_token_change_nothing() {
    let app = spawn_app().await;
    let mut browser = manager_browser(&app).await;
    let mut other = Browser::new(&app);
    give_password(&app, &app.other_manager).await;
    other.sign_in(&app.other_manager.email, PASSWORD).await;
    let others_token = other.get("/settings").await.field("csrf_token").unwrap();
    let settings = browser.get("/settings").await;
    let subject = settings.field("subject").unwrap();
    let change = |token: Option<String>| {
        let mut fields = vec![
            ("subject".to_owned(), subject.clone()),
            ("email".to_owned(), "hijacked@evil.example".to_owned()),
            ("organization_name".to_owned(), "Hijacked".to_owned()),
        ];
        if let Some(token) = token {
            fields.push(("csrf_token".to_owned(), token));
        }
        fields
    };

    for (what, token) in [
        ("missing", None),
        ("forged", Some("0".repeat(64))),
        ("another session's", Some(others_token)),
    ] {
        let fields = change(token);
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let page = browser.post_raw("/settings/profile", &fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{what} token");
        assert!(page.body.contains("nothing was changed"), "{what} token");
    }

    // A page another site frames into posting, with a good token even, is refused.
    let token = settings.field("csrf_token").unwrap();
    let page = browser
        .post_with(
            "/settings/profile",
            &[
                ("csrf_token", token.as_str()),
                ("subject", subject.as_str()),
                ("email", "hijacked@evil.example"),
                ("organization_name", "Hijacked"),
            ],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    assert_eq!(email_of(&app, &app.manager.key).await, app.manager.email);
    let audit = app.get("/v2/audit_events", &app.manager.key).await;
    assert!(
        !audit.body.to_string().contains("hijacked"),
        "{}",
        audit.body
    );
}

#[tokio::test]
async fn a_genuine_form_changes_the_email_by_the_same_rules_as_the_api() {
    let app = spawn_app().await;
    let mut browser = manager_browser(&app).await;

    let taken = browser
        .fill(
            "/settings",
            "/settings/profile",
            &[
                ("email", &app.other_manager.email),
                ("organization_name", "Reseller One"),
            ],
        )
        .await;
    assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        taken
            .body
            .contains("An account with this email already exists")
    );
    assert!(taken.body.contains("id=\"email-error\""));
    let bad = browser
        .fill(
            "/settings",
            "/settings/profile",
            &[
                ("email", "not an email"),
                ("organization_name", "Reseller One"),
            ],
        )
        .await;
    assert!(bad.body.contains("is not a valid email address"));

    let changed = browser
        .fill(
            "/settings",
            "/settings/profile",
            &[
                ("email", "new@reseller.example"),
                ("organization_name", "Reseller One"),
            ],
        )
        .await;

    changed.assert_redirect("/settings");
    assert_eq!(
        email_of(&app, &app.manager.key).await,
        "new@reseller.example"
    );
    let audit = app.get("/v2/audit_events", &app.manager.key).await;
    assert_eq!(audit.body["data"][0]["change_made_by"], "account_owner");
}

#[tokio::test]
async fn the_sign_in_form_needs_its_own_token() {
    let app = spawn_app().await;
    give_password(&app, &app.manager).await;
    let mut browser = Browser::new(&app);
    browser.get("/sign-in").await;

    let page = browser
        .post_raw(
            "/sign-in",
            &[
                ("csrf_token", &"1".repeat(64)),
                ("email", &app.manager.email),
                ("password", PASSWORD),
            ],
        )
        .await;

    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!browser.cookies.contains_key("__Host-steward_session"));
}

#[tokio::test]
async fn next_leads_only_to_a_page_of_this_site() {
    let app = spawn_app().await;
    give_password(&app, &app.manager).await;

    for next in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "/\r\nLocation: https://evil.example",
    ] {
        let mut browser = Browser::new(&app);
        let page = browser
            .try_sign_in(&app.manager.email, PASSWORD, Some(next))
            .await;
        page.assert_redirect("/dashboard");
        let shown = Browser::new(&app)
            .get(&format!(
                "/sign-in?next={}",
                form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            ))
            .await;
        assert_eq!(shown.field("next").as_deref(), Some("/dashboard"), "{next}");
    }

    let mut browser = Browser::new(&app);
    let asked = browser.get("/usage?product=messaging").await;
    asked.assert_redirect("/sign-in?next=%2Fusage%3Fproduct%3Dmessaging");
    let page = browser
        .try_sign_in(
            &app.manager.email,
            PASSWORD,
            Some("/usage?product=messaging"),
        )
        .await;
    page.assert_redirect("/usage?product=messaging");
}

#[tokio::test]
async fn disabling_asks_for_confirmation_first_without_script() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Confirm Me", json!({})).await;
    let mut browser = manager_browser(&app).await;
    let action = format!("/managed-accounts/{}/disable", managed.id);

    let asked = browser.fill("/managed-accounts", &action, &[]).await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.body.contains("Please confirm"));
    let path = format!("/v2/managed_accounts/{}", managed.id);
    let status = async || app.get(&path, &app.manager.key).await.body["data"]["status"].clone();
    assert_eq!(status().await, "active");

    let done = browser.submit(&action, &[("confirmed", "1")]).await;

    done.assert_redirect(&format!("/managed-accounts/{}", managed.id));
    assert_eq!(status().await, "disabled");
}
