use serde_json::{Value, json};

use crate::helpers::{BASE_PRICES, TestApp, event, spawn_app};

const CUSTOM_PRICES: &str =
    "product,prefix,rate,initial_increment_s,subsequent_increment_s\nsms_outbound,,0.001,,\n";
const MANAGER_PRICES: &str =
    "product,prefix,rate,initial_increment_s,subsequent_increment_s\nsms_outbound,,0.003,,\n";

#[tokio::test]
async fn managed_accounts_inherit_their_managers_committed_prices() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    app.import_prices(MANAGER_PRICES, &format!("assign_to={}", app.manager.id))
        .await
        .assert_status(200);
    let child = app.managed_of(&app.manager, "Child", json!({})).await;
    let stranger = app
        .managed_of(&app.other_manager, "Stranger", json!({}))
        .await;

    app.ingest(json!([
        event("a", &child.id, "sms_outbound", "+15550000000", 1),
        event("b", &stranger.id, "sms_outbound", "+15550000000", 1),
    ]))
    .await
    .assert_status(200);

    let cost = |id: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT cost_nanos FROM usage_records WHERE event_id = $1")
                .bind(id)
                .fetch_one(&db.read)
                .await
                .unwrap()
        }
    };
    assert_eq!(cost("a").await, 3_000_000);
    assert_eq!(cost("b").await, 4_000_000);
}

#[tokio::test]
async fn custom_pricing_needs_both_the_flag_and_an_assigned_list_and_never_rerates() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let child = app.managed_of(&app.manager, "Custom Co", json!({})).await;
    let sms = |id: &str| json!([event(id, &child.id, "sms_outbound", "+15550000000", 1)]);
    let cost_of = |app: &TestApp, id: String| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT cost_nanos FROM usage_records WHERE event_id = $1")
                .bind(id)
                .fetch_one(&db.read)
                .await
                .unwrap()
        }
    };

    // A list of its own, without the flag: still the manager's (platform) prices.
    app.import_prices(CUSTOM_PRICES, &format!("assign_to={}", child.id))
        .await
        .assert_status(200);
    app.ingest(sms("before-flag")).await.assert_status(200);
    assert_eq!(cost_of(&app, "before-flag".into()).await, 4_000_000);

    // Flag on: its own list.
    app.patch(
        &format!("/v2/managed_accounts/{}", child.id),
        &app.manager.key,
        json!({"managed_account_allow_custom_pricing": true}),
    )
    .await
    .assert_status(200);
    app.ingest(sms("with-flag")).await.assert_status(200);
    assert_eq!(cost_of(&app, "with-flag".into()).await, 1_000_000);

    // Flag off again: back to the manager's; nothing charged before was re-rated.
    app.patch(
        &format!("/v2/managed_accounts/{}", child.id),
        &app.manager.key,
        json!({"managed_account_allow_custom_pricing": false}),
    )
    .await
    .assert_status(200);
    app.ingest(sms("flag-off")).await.assert_status(200);
    assert_eq!(cost_of(&app, "flag-off".into()).await, 4_000_000);
    assert_eq!(cost_of(&app, "with-flag".into()).await, 1_000_000);
    assert_eq!(app.balance_of(&child.key).await, "-0.01"); // 0.004 + 0.001 + 0.004
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_flagged_account_without_its_own_list_keeps_the_managers() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let child = app
        .managed_of(
            &app.manager,
            "Flag Only",
            json!({"managed_account_allow_custom_pricing": true}),
        )
        .await;

    app.ingest(json!([event(
        "x",
        &child.id,
        "sms_outbound",
        "+15550000000",
        1
    )]))
    .await
    .assert_status(200);

    let cost: i64 = sqlx::query_scalar("SELECT cost_nanos FROM usage_records WHERE event_id = 'x'")
        .fetch_one(&app.db.read)
        .await
        .unwrap();
    assert_eq!(cost, 4_000_000);
}

#[tokio::test]
async fn a_file_with_any_bad_line_imports_nothing_and_names_the_lines() {
    let app = spawn_app().await;
    let bad = "product,prefix,rate,initial_increment_s,subsequent_increment_s\nsms_outbound,,0.004,,\nfax,1,0.1,,\nvoice_outbound,1,abc,60,60\n";

    let reply = app.import_prices(bad, "platform_default=true").await;

    reply.assert_error(422, "40001", None);
    let detail = reply.error()["detail"].as_str().unwrap();
    assert!(
        detail.contains("line 3") && detail.contains("line 4"),
        "{detail}"
    );
    let lists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM price_lists")
        .fetch_one(&app.db.read)
        .await
        .unwrap();
    assert_eq!(lists, 0);
    // Only the operator may import.
    let as_manager = app
        .client
        .post(format!("{}/admin/v1/price_lists?name=x", app.address))
        .bearer_auth(&app.manager.key)
        .body(BASE_PRICES)
        .send()
        .await
        .unwrap();
    assert_eq!(as_manager.status(), 401);
}

#[tokio::test]
async fn managers_read_prices_for_themselves_and_their_accounts_but_managed_accounts_cannot() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let child = app.managed_of(&app.manager, "Priced", json!({})).await;

    let rate = app
        .get(
            "/v2/pricing/rate?product=voice_outbound&destination=%2B14155550100",
            &app.manager.key,
        )
        .await;
    rate.assert_status(200);
    assert_eq!(rate.body["data"]["prefix"], "1");
    assert_eq!(rate.body["data"]["rate"], "0.010000000");
    assert_eq!(rate.body["data"]["initial_increment_s"], 60);
    let catch_all = app
        .get(
            "/v2/pricing/rate?product=voice_outbound&destination=%2B33100000000",
            &app.standard.key,
        )
        .await;
    assert_eq!(catch_all.body["data"]["prefix"], "");
    let listed = app
        .get(
            &format!(
                "/v2/managed_accounts/{}/pricing/rates?page%5Bsize%5D=2",
                child.id
            ),
            &app.manager.key,
        )
        .await;
    listed.assert_status(200);
    assert_eq!(listed.body["meta"]["total_results"], 6);
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);

    for path in [
        "/v2/pricing/rates",
        "/v2/pricing/rate?product=sms_outbound&destination=%2B15550000000",
    ] {
        let refused = app.get(path, &child.key).await;
        refused.assert_error(403, "10010", None);
        assert!(
            refused.error()["detail"]
                .as_str()
                .unwrap()
                .contains("managed by its manager")
        );
    }
    app.get(
        &format!("/v2/managed_accounts/{}/pricing/rates", child.id),
        &app.other_manager.key,
    )
    .await
    .assert_error(404, "10005", None);
}

/// Every number that appears in a price list or as a cost, as text.
fn price_strings() -> Vec<&'static str> {
    vec![
        "0.01",
        "0.05",
        "0.002",
        "0.004",
        "0.02",
        "1.00",
        "0.008",
        "0.0508",
        "cost",
        "\"rate\"",
        "rate_measured_in",
        "price_list",
        "billed_sec",
    ]
}

fn assert_no_prices(path: &str, body: &Value) {
    let text = body.to_string();
    for needle in price_strings() {
        assert!(
            !text.contains(needle),
            "{path} shows {needle} to a managed account: {text}"
        );
    }
}

#[tokio::test]
async fn a_managed_account_can_reach_no_price_or_cost_anywhere() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let child = app.managed_of(&app.manager, "Nosy", json!({})).await;
    app.ingest(json!([
        event("v", &child.id, "voice_outbound", "+14155550100", 61),
        event("s", &child.id, "sms_outbound", "+14155550100", 2),
        event("r", &child.id, "number_rental", "+14155550100", 1),
        event("i", &child.id, "voice_inbound", "+14155550100", 61),
    ]))
    .await
    .assert_status(200);

    // Every route a managed account's key can call with GET, from the OpenAPI document.
    let document = app
        .client
        .get(format!("{}/v2/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    let document = TestApp::read(document).await.body;
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        if item.get("get").is_none() || path.starts_with("/admin") {
            continue;
        }
        let concrete = path.replace("{id}", &child.id);
        let urls = match concrete.as_str() {
            "/v2/detail_records" => ["sip-trunking", "messaging", "number-rental"]
                .iter()
                .map(|t| format!("{concrete}?filter%5Brecord_type%5D={t}"))
                .collect(),
            "/v2/pricing/rate" => vec![format!(
                "{concrete}?product=voice_outbound&destination=%2B14155550100"
            )],
            _ => vec![concrete.clone()],
        };
        for url in urls {
            let reply = app.get(&url, &child.key).await;
            assert_no_prices(&url, &reply.body);
            checked += 1;
        }
    }
    assert!(checked >= 10, "checked only {checked} routes");
    // Its own money stays visible: 0.02 + 0.008 + 1.00 + 0.0062 (61 s inbound at 6/6 → 66 s at 0.002/min = 0.0022).
    let balance = app.get("/v2/balance", &child.key).await;
    assert_eq!(balance.body["data"]["balance"], "-1.03");
}

#[tokio::test]
async fn the_operator_sees_every_list_and_every_accounts_rates() {
    let app = spawn_app().await;
    let imported = app
        .import_prices(BASE_PRICES, "platform_default=true")
        .await;
    let list_id = imported.body["data"]["id"].as_str().unwrap().to_owned();
    app.import_prices(CUSTOM_PRICES, "name=x")
        .await
        .assert_status(200);
    let child = app.managed_of(&app.manager, "Seen", json!({})).await;
    let operator_get = |path: String| {
        let request = app
            .client
            .get(format!("{}{path}", app.address))
            .bearer_auth(&app.operator_key);
        async move { TestApp::read(request.send().await.unwrap()).await }
    };

    let rates = operator_get(format!(
        "/admin/v1/price_lists/{list_id}/rates?page%5Bsize%5D=50"
    ))
    .await;
    rates.assert_status(200);
    assert_eq!(rates.body["meta"]["total_results"], 6);
    let rate = operator_get(format!(
        "/admin/v1/accounts/{}/pricing/rate?product=sms_outbound&destination=%2B15550000000",
        child.id
    ))
    .await;
    assert_eq!(rate.body["data"]["rate"], "0.004000000");
    operator_get("/admin/v1/price_lists/nope/rates".to_owned())
        .await
        .assert_error(404, "10005", None);
    // Account keys cannot use the operator API.
    let refused = app
        .get(
            &format!("/admin/v1/price_lists/{list_id}/rates"),
            &app.manager.key,
        )
        .await;
    refused.assert_error(401, "10009", None);
}

/// A server holds the rates of the lists that can still apply, not of every list ever
/// imported; late usage from an older list's time is still rated with that list, read when
/// needed, and only a few such lists are kept.
#[tokio::test]
async fn a_server_holds_the_lists_that_can_apply_and_reads_older_ones_for_late_usage() {
    use crate::metrics::{sample, scrape};
    let app = spawn_app().await;
    let own = app.managed_of(&app.manager, "History Co", json!({})).await;
    // Six platform defaults, one from the first of each month of 2025, an SMS part at
    // 0.00n under list n; the clock stands at 2026-01-01, so only the sixth can apply.
    for n in 1..=6 {
        let csv = format!(
            "product,prefix,rate,initial_increment_s,subsequent_increment_s\nsms_outbound,,0.00{n},,\n"
        );
        app.import_prices(
            &csv,
            &format!("platform_default=true&effective_from=2025-0{n}-01T00:00:00Z"),
        )
        .await
        .assert_status(200);
    }
    let sms = |id: &str, occurred_at: &str| {
        let mut event = event(id, &own.id, "sms_outbound", "+14155550100", 1);
        event["occurred_at"] = json!(occurred_at);
        event
    };
    app.ingest(json!([sms("now-1", "2026-01-01T11:00:00Z")]))
        .await
        .assert_status(200);
    let held = |text: &str, place: &str| {
        sample(
            text,
            &format!("steward_pricing_lists_held{{place=\"{place}\"}}"),
        )
    };
    let text = scrape(&app).await;
    assert_eq!(held(&text, "index"), Some(1.0), "{text}");
    assert_eq!(held(&text, "kept"), Some(0.0), "{text}");

    // Late usage from each earlier month, in one batch: each rated with its month's list.
    let late: Vec<Value> = (1..=5)
        .map(|n| sms(&format!("late-{n}"), &format!("2025-0{n}-15T00:00:00Z")))
        .collect();
    let reply = app.ingest(Value::Array(late)).await;
    assert_eq!(reply.statuses(), ["accepted"; 5]);
    let records = app
        .get(
            &format!(
                "/v2/detail_records?filter%5Brecord_type%5D=messaging&filter%5Baccount_id%5D={}&page%5Bsize%5D=20",
                own.id
            ),
            &app.manager.key,
        )
        .await;
    records.assert_status(200);
    let mut rates: Vec<(String, String)> = records.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["uuid"].as_str().unwrap().to_owned();
            (id, r["rate"].as_str().unwrap().to_owned())
        })
        .collect();
    rates.sort();
    let expected: Vec<(String, String)> = (1..=5)
        .map(|n| (format!("late-{n}"), format!("0.00{n}000000")))
        .chain([("now-1".to_owned(), "0.006000000".to_owned())])
        .collect();
    assert_eq!(rates, expected);
    let text = scrape(&app).await;
    assert_eq!(held(&text, "index"), Some(1.0), "{text}");
    let kept = u32::try_from(steward::pricing::COLD_LISTS_KEPT).unwrap();
    assert_eq!(held(&text, "kept"), Some(f64::from(kept)), "{text}");

    // A list assigned ahead of its own start joins the index at once, beside the one in
    // force until then.
    app.import_prices(
        "product,prefix,rate,initial_increment_s,subsequent_increment_s\nsms_outbound,,0.009,,\n",
        "platform_default=true&effective_from=2026-02-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let reply = app
        .ingest(json!([sms("now-2", "2026-01-01T11:30:00Z")]))
        .await;
    assert_eq!(reply.statuses(), ["accepted"]);
    let text = scrape(&app).await;
    assert_eq!(held(&text, "index"), Some(2.0), "{text}");
}
