//! NUL characters in a request: PostgreSQL cannot store one in text (a 500 there) and SQLite
//! stores it, so every place a request carries text refuses one before anything reaches the
//! database: query and path parameters with a 400 naming the parameter, JSON bodies at any
//! depth and the CSV of a price list with a 422.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{BASE_PRICES, event, spawn_app};
use crate::parsing::{count, detail, send};

#[tokio::test]
async fn a_nul_in_a_list_filter_is_a_400_naming_the_parameter() {
    let app = spawn_app().await;
    app.managed_of(&app.manager, "Filtered Co", json!({})).await;

    for (encoded, name) in [
        ("filter%5Bemail%5D%5Beq%5D=a%00b", "filter[email][eq]"),
        (
            "filter%5Borganization_name%5D%5Bcontains%5D=Fil%00",
            "filter[organization_name][contains]",
        ),
        ("filter%5Bstatus%5D%5Beq%5D=all%00", "filter[status][eq]"),
    ] {
        let reply = app
            .get(&format!("/v2/managed_accounts?{encoded}"), &app.manager.key)
            .await;

        reply.assert_error(400, "10015", Some(("parameter", name)));
        assert!(detail(&reply).contains("NUL"), "{}", reply.body);
    }
    // In any parameter a route reads, even one it would ignore.
    app.get("/v2/managed_accounts?extra=%00", &app.manager.key)
        .await
        .assert_error(400, "10015", Some(("parameter", "extra")));
    app.get(
        "/v2/detail_records?filter%5Brecord_type%5D=messaging&filter%5Baccount_id%5D=x%00",
        &app.manager.key,
    )
    .await
    .assert_error(400, "10015", Some(("parameter", "filter[account_id]")));
}

#[tokio::test]
async fn a_nul_in_a_key_id_is_a_400_naming_the_path_parameter() {
    let app = spawn_app().await;
    let child = app.managed_of(&app.manager, "Keyed Co", json!({})).await;

    for path in [
        "/v2/api_keys/KEY%00".to_owned(),
        format!("/v2/managed_accounts/{}/api_keys/KEY%00abc", child.id),
    ] {
        app.request(Method::DELETE, &path, Some(&app.manager.key), None)
            .await
            .assert_error(400, "10015", Some(("parameter", "key_id")));
    }
    // Both keys still work.
    app.get("/v2/balance", &app.manager.key)
        .await
        .assert_status(200);
    app.get("/v2/balance", &child.key).await.assert_status(200);
}

#[tokio::test]
async fn a_nul_in_a_lease_id_is_refused_and_releases_nothing() {
    let app = spawn_app().await;
    let child = app.managed_of(&app.manager, "Leasing Co", json!({})).await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-01-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    app.operator_post(
        &format!("/admin/v1/accounts/{}/credit_limit", child.id),
        None,
        json!({"amount": "50.00"}),
    )
    .await
    .assert_status(200);
    app.set_channel_limit(&app.manager.key, &child.id, 1).await;
    let lease = app.admit(&child.id, "voice_outbound").await.body["data"]["lease_id"]
        .as_str()
        .unwrap()
        .to_owned();

    for action in ["release", "renew"] {
        app.post(
            &format!("/v2/channel_leases/{lease}%00/actions/{action}"),
            &app.ingest_key,
            None,
        )
        .await
        .assert_error(400, "10015", Some(("parameter", "id")));
    }
    let mut call = event("call-1", &child.id, "voice_outbound", "+14155550100", 30);
    call["lease_id"] = json!(format!("{lease}\u{0}"));
    let reply = app.ingest(json!([call])).await;

    reply.assert_error(422, "40001", Some(("pointer", "/events/0/lease_id")));
    assert_eq!(count(&app, "usage_records").await, 0);
    // The lease still holds the account's only channel.
    assert_eq!(
        app.admit(&child.id, "voice_outbound").await.body["data"]["reason"],
        "channel_limit_reached"
    );
}

#[tokio::test]
async fn a_nul_in_a_credit_reason_is_a_422_and_credits_nothing() {
    let app = spawn_app().await;
    let path = format!("/admin/v1/accounts/{}/credits", app.standard.id);

    let reply = app
        .operator_post(
            &path,
            Some("nul-1"),
            json!({"amount": "10.00", "reason": "top\u{0}up"}),
        )
        .await;

    reply.assert_error(422, "40001", Some(("pointer", "/reason")));
    assert!(detail(&reply).contains("NUL"), "{}", reply.body);
    assert_eq!(app.balance_of(&app.standard.key).await, "0.00");
    // Nothing was kept under the idempotency key: a clean retry is a first credit.
    let retry = app
        .operator_post(
            &path,
            Some("nul-1"),
            json!({"amount": "10.00", "reason": "top up"}),
        )
        .await;
    retry.assert_status(200);
    assert!(retry.headers.get("idempotent-replayed").is_none());
    assert_eq!(app.balance_of(&app.standard.key).await, "10.00");
}

#[tokio::test]
async fn a_nul_in_a_price_list_name_or_its_csv_imports_nothing() {
    let app = spawn_app().await;

    let named = send(
        &app,
        Method::POST,
        "/admin/v1/price_lists?name=deck%00one",
        Some(&app.operator_key),
        Some("text/csv"),
        BASE_PRICES,
    )
    .await;
    named.assert_error(400, "10015", Some(("parameter", "name")));
    let csv = BASE_PRICES.replace("sms_outbound,,0.004,,", "sms_outbound,,0.004\0,,");
    let in_csv = send(
        &app,
        Method::POST,
        "/admin/v1/price_lists?name=deck",
        Some(&app.operator_key),
        Some("text/csv"),
        csv,
    )
    .await;

    in_csv.assert_error(422, "40001", None);
    assert!(
        detail(&in_csv).contains("line 5") && detail(&in_csv).contains("NUL"),
        "{}",
        in_csv.body
    );
    assert_eq!(count(&app, "price_lists").await, 0);
}

#[tokio::test]
async fn a_nul_anywhere_in_a_usage_batch_refuses_the_batch() {
    let app = spawn_app().await;
    let child = app.managed_of(&app.manager, "Batch Co", json!({})).await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-01-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let good = event("good-1", &child.id, "sms_outbound", "+14155550100", 1);
    let mut bad_id = event("bad\u{0}", &child.id, "sms_outbound", "+14155550100", 1);
    let mut deep = event("deep-1", &child.id, "sms_outbound", "+14155550100", 1);
    deep["switch"] = json!({"tags": ["a", "b\u{0}"]});

    let by_id = app.ingest(json!([good.clone(), bad_id.clone()])).await;
    let by_metadata = app.ingest(json!([good.clone(), deep])).await;
    bad_id["id"] = json!("bad-1");
    bad_id["a\u{0}key"] = json!(1);
    let by_key = app.ingest(json!([good, bad_id])).await;

    by_id.assert_error(422, "40001", Some(("pointer", "/events/1/id")));
    by_metadata.assert_error(422, "40001", Some(("pointer", "/events/1/switch/tags/1")));
    by_key.assert_error(422, "40001", Some(("pointer", "/events/1/a\u{0}key")));
    assert_eq!(count(&app, "usage_records").await, 0);
    assert_eq!(app.balance_of(&child.key).await, "0.00");
}

#[tokio::test]
async fn a_nul_in_a_body_field_is_a_422_pointing_at_it() {
    let app = spawn_app().await;

    app.patch(
        "/v2/account",
        &app.standard.key,
        json!({"email": "solo\u{0}@standard.example"}),
    )
    .await
    .assert_error(422, "40001", Some(("pointer", "/email")));
    app.post(
        "/v2/admissions",
        &app.ingest_key,
        Some(json!({"account_id": format!("{}\u{0}", app.standard.id),
                    "product": "sms_outbound", "destination": "+14155550100"})),
    )
    .await
    .assert_error(422, "40001", Some(("pointer", "/account_id")));
    // A backslash followed by `u0000` is text, not a NUL.
    let literal = app
        .create_managed(&app.manager.key, json!({"business_name": "C:\\u0000 Ltd"}))
        .await;
    literal.assert_status(200);
    assert_eq!(literal.body["data"]["organization_name"], "C:\\u0000 Ltd");
}
