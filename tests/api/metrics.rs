//! `GET /metrics`: real figures, an operator key on the main listener, none on its own.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{BASE_PRICES, TestApp, backend_is_postgres, event, spawn_app, spawn_app_with};

/// The exposition as the operator scrapes it.
pub async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .bearer_auth(&app.operator_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    response.text().await.unwrap()
}

/// The value of the sample named `series` (with its labels exactly as written), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

/// How much the sample named `series` moved between two scrapes.
#[track_caller]
fn delta(before: &str, after: &str, series: &str) -> f64 {
    sample(after, series).expect(series) - sample(before, series).expect(series)
}

#[track_caller]
fn assert_sample(text: &str, series: &str, expected: f64) {
    assert_eq!(sample(text, series), Some(expected), "{series} in:\n{text}");
}

#[tokio::test]
async fn request_counts_and_latencies_follow_the_requests_made() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.request(Method::GET, "/livez", None, None).await;
    }
    app.get("/v2/nothing_here", &app.manager.key).await;
    let id = app.manager.id.clone();
    app.get(
        &format!("/admin/v1/accounts/{id}/balance"),
        &app.operator_key,
    )
    .await
    .assert_status(200);

    let text = scrape(&app).await;

    assert_sample(
        &text,
        r#"steward_http_request_duration_seconds_count{route="/livez",method="GET",status="200"}"#,
        3.0,
    );
    assert_sample(
        &text,
        r#"steward_http_request_duration_seconds_count{route="/livez",method="GET",status="200"}"#,
        3.0,
    );
    assert_sample(
        &text,
        r#"steward_http_request_duration_seconds_count{route="unmatched",method="GET",status="404"}"#,
        1.0,
    );
    // The route template, not the account id, labels the series.
    assert_sample(
        &text,
        r#"steward_http_request_duration_seconds_count{route="/admin/v1/accounts/{id}/balance",method="GET",status="200"}"#,
        1.0,
    );
    assert!(!text.contains(&id));
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn ingestion_and_admission_outcomes_and_charges_are_counted() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let account = app.managed_of(&app.manager, "Counted", json!({})).await;
    let sms = |id: &str| event(id, &account.id, "sms_outbound", "+14155550100", 3);

    app.ingest(json!([sms("sms-1"), sms("sms-2"), {"id": "bad"}]))
        .await
        .assert_status(200);
    let again = app.ingest(json!([sms("sms-1")])).await;
    // A fresh account has no credit: admission is refused for that reason.
    let refused = app.admit(&account.id, "sms_outbound").await;
    let text = scrape(&app).await;

    assert_eq!(again.statuses(), ["duplicate"]);
    assert_eq!(refused.body["data"]["reason"], "insufficient_credit");
    assert_sample(
        &text,
        r#"steward_usage_events_total{outcome="accepted"}"#,
        2.0,
    );
    assert_sample(
        &text,
        r#"steward_usage_events_total{outcome="duplicate"}"#,
        1.0,
    );
    assert_sample(
        &text,
        r#"steward_usage_events_total{outcome="rejected"}"#,
        1.0,
    );
    // Two events of 3 parts at 0.004 each: 0.024.
    assert_sample(&text, "steward_usage_charged_nanos_total", 24_000_000.0);
    assert_sample(
        &text,
        r#"steward_admissions_total{outcome="insufficient_credit"}"#,
        1.0,
    );
    // The lone admission was decided in a batch of its own.
    assert_sample(&text, "steward_admission_batch_requests_count", 1.0);
    assert_sample(&text, "steward_admission_batch_requests_sum", 1.0);
}

#[tokio::test]
async fn pool_and_database_gauges_are_read_at_scrape_time() {
    let app = spawn_app().await;

    let text = scrape(&app).await;

    let pools: &[(&str, f64)] = if backend_is_postgres() {
        &[("shared", f64::from(steward::db::POSTGRES_POOL_SIZE_MAX))]
    } else {
        &[
            ("write", 1.0),
            ("read", f64::from(steward::db::SQLITE_READ_POOL_SIZE_MAX)),
        ]
    };
    for (pool, size_max) in pools {
        let labels = format!(r#"{{pool="{pool}"}}"#);
        assert_sample(
            &text,
            &format!("steward_db_pool_max_connections{labels}"),
            *size_max,
        );
        let open = sample(&text, &format!("steward_db_pool_connections{labels}")).unwrap();
        let idle = sample(&text, &format!("steward_db_pool_idle_connections{labels}")).unwrap();
        let in_use = sample(
            &text,
            &format!("steward_db_pool_in_use_connections{labels}"),
        )
        .unwrap();
        assert!(open >= 1.0 && open <= *size_max, "{text}");
        assert_eq!(open, idle + in_use);
        assert!(
            sample(
                &text,
                &format!("steward_db_pool_acquire_probe_seconds{labels}")
            )
            .is_some()
        );
    }
    assert_sample(&text, "steward_db_pool_acquire_timeouts_total", 0.0);
    assert_sample(&text, "steward_channel_leases_live", 0.0);
}

#[tokio::test]
async fn live_leases_are_counted_from_the_database() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let account = app.managed_of(&app.manager, "Caller", json!({})).await;
    app.set_channel_limit(&app.manager.key, &account.id, 2)
        .await;
    app.operator_post(
        &format!("/admin/v1/accounts/{}/credits", account.id),
        Some("credit-1"),
        json!({"amount": "10.00", "reason": "test"}),
    )
    .await
    .assert_status(200);

    let admitted = app.admit(&account.id, "voice_outbound").await;
    let text = scrape(&app).await;

    assert_eq!(admitted.body["data"]["admitted"], true, "{}", admitted.body);
    assert_sample(&text, "steward_channel_leases_live", 1.0);
    assert_sample(
        &text,
        r#"steward_admissions_total{outcome="admitted"}"#,
        1.0,
    );
}

#[tokio::test]
async fn the_main_listener_wants_an_operator_key() {
    let app = spawn_app().await;

    let none = app.request(Method::GET, "/metrics", None, None).await;
    let account = app.get("/metrics", &app.manager.key).await;

    none.assert_error(401, "10009", None);
    account.assert_error(401, "10009", None);
}

#[tokio::test]
async fn the_metrics_listener_serves_without_a_key() {
    let app = spawn_app_with(|s| s.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let metrics = app.metrics_address.clone().unwrap();
    app.request(Method::GET, "/livez", None, None).await;

    let open = app
        .client
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    let elsewhere = app
        .client
        .get(format!("{metrics}/v2/balance"))
        .send()
        .await
        .unwrap();

    assert_eq!(open.status(), 200);
    let text = open.text().await.unwrap();
    assert_sample(
        &text,
        r#"steward_http_request_duration_seconds_count{route="/livez",method="GET",status="200"}"#,
        1.0,
    );
    TestApp::read(elsewhere)
        .await
        .assert_error(404, "10005", None);
}

#[tokio::test]
async fn suspended_usage_is_counted_and_gauged_by_reason() {
    let app = spawn_app().await;
    let account = app.managed_of(&app.manager, "Suspended", json!({})).await;
    let nobody = steward::accounts::AccountId::generate().to_string();

    // No price list in force yet: both are kept in suspense.
    app.ingest(json!([
        event("s-1", &account.id, "sms_outbound", "+14155550100", 1),
        event("s-2", &nobody, "sms_outbound", "+14155550100", 1),
        event("s-3", &nobody, "sms_outbound", "+14155550100", 1),
    ]))
    .await
    .assert_status(200);
    let text = scrape(&app).await;

    assert_sample(
        &text,
        r#"steward_usage_events_total{outcome="suspended"}"#,
        3.0,
    );
    assert_sample(
        &text,
        r#"steward_usage_suspended_events{reason="no_price_list"}"#,
        1.0,
    );
    assert_sample(
        &text,
        r#"steward_usage_suspended_events{reason="unknown_account"}"#,
        2.0,
    );
    assert_sample(
        &text,
        r#"steward_usage_suspended_events{reason="no_rate"}"#,
        0.0,
    );

    // Read at scrape time: charged by a resend once pricing exists, it leaves the gauge.
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-01-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    app.ingest(json!([event(
        "s-1",
        &account.id,
        "sms_outbound",
        "+14155550100",
        1
    )]))
    .await
    .assert_status(200);
    let text = scrape(&app).await;
    assert_sample(
        &text,
        r#"steward_usage_suspended_events{reason="no_price_list"}"#,
        0.0,
    );
    assert_sample(
        &text,
        r#"steward_usage_events_total{outcome="accepted"}"#,
        1.0,
    );
}

#[tokio::test]
async fn the_key_cache_counts_each_lookup_once_as_a_hit_or_a_miss() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    for _ in 0..3 {
        app.get("/v2/balance", &app.manager.key)
            .await
            .assert_status(200);
    }
    let after = scrape(&app).await;

    let delta = |series: &str| delta(&before, &after, series);
    let hits = delta("steward_auth_cache_hits_total");
    let misses = delta("steward_auth_cache_misses_total");
    // Three balance reads and the second scrape's operator key.
    assert_eq!(hits + misses, 4.0, "{after}");
    // The manager's key was never presented before, so its first lookup read the database.
    assert!(misses >= 1.0, "{after}");
    assert!(sample(&after, "steward_auth_cache_keys").expect("keys") >= 2.0);
}

#[tokio::test]
async fn sqlite_counts_its_shared_write_transactions_and_postgres_has_none() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let account = app.managed_of(&app.manager, "Grouped", json!({})).await;
    let sms = |id: &str| event(id, &account.id, "sms_outbound", "+14155550100", 1);
    let before = scrape(&app).await;

    app.ingest(json!([sms("g-1")])).await.assert_status(200);
    app.ingest(json!([sms("g-2"), sms("g-3")]))
        .await
        .assert_status(200);
    let after = scrape(&app).await;

    let delta = |series: &str| delta(&before, &after, series);
    let writes = delta("steward_db_group_writes_total");
    let transactions = delta("steward_db_group_transactions_total");
    if backend_is_postgres() {
        assert_eq!((writes, transactions), (0.0, 0.0), "{after}");
    } else {
        // One write per ingested batch, in one or two transactions.
        assert_eq!(writes, 2.0, "{after}");
        assert!((1.0..=2.0).contains(&transactions), "{after}");
    }
}
