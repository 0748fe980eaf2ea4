//! Usage reports over the rollups, report jobs, and the whole-tree detail records.

use std::time::Duration;

use chrono::TimeDelta;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Actor, BASE_PRICES, TestApp, spawn_app};

/// A custom list for one managed account: calls at 0.10/min, per second.
const CUSTOM_PRICES: &str = "product,prefix,rate,initial_increment_s,subsequent_increment_s
voice_outbound,,0.10,1,1
sms_outbound,,0.01,,
";

fn at(id: &str, account: &str, product: &str, to: &str, quantity: i64, when: &str) -> Value {
    json!({"id": id, "account_id": account, "product": product, "destination": to,
           "quantity": quantity, "occurred_at": when})
}

/// A manager's tree: `own` (own balance), `rollup` (charged to the manager), `custom`
/// (its own price list), with usage on 2026-01-01 and 2026-01-02.
struct Tree {
    own: Actor,
    rollup: Actor,
    custom: Actor,
}

async fn tree_with_usage(app: &TestApp) -> Tree {
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-12-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let own = app.managed_of(&app.manager, "Own Co", json!({})).await;
    let rollup = app
        .managed_of(&app.manager, "Rollup Co", json!({"rollup_billing": true}))
        .await;
    let custom = app
        .managed_of(
            &app.manager,
            "Custom Co",
            json!({"managed_account_allow_custom_pricing": true}),
        )
        .await;
    app.import_prices(
        CUSTOM_PRICES,
        &format!(
            "assign_to={}&effective_from=2025-12-01T00:00:00Z",
            custom.id
        ),
    )
    .await
    .assert_status(200);
    let reply = app
        .ingest(json!([
            // 61 s to the US at 0.01/min, 60/60: 120 s billed, 0.02.
            at(
                "a1",
                &own.id,
                "voice_outbound",
                "+14155550100",
                61,
                "2026-01-01T10:15:00Z"
            ),
            // 61 s to GB at the 0.05/min catch-all, 1/1: 0.050833333.
            at(
                "a2",
                &own.id,
                "voice_outbound",
                "+442079460000",
                61,
                "2026-01-02T09:00:00Z"
            ),
            // 3 parts at 0.004: 0.012.
            at(
                "a3",
                &own.id,
                "sms_outbound",
                "+447400123456",
                3,
                "2026-01-01T11:00:00Z"
            ),
            // 10 s inbound at 0.002/min, 6/6: 12 s billed, 0.0004.
            at(
                "b1",
                &rollup.id,
                "voice_inbound",
                "+18005550199",
                10,
                "2026-01-01T10:30:00Z"
            ),
            // 2 parts at 0.004: 0.008.
            at(
                "b2",
                &rollup.id,
                "sms_outbound",
                "+14155550100",
                2,
                "2026-01-01T11:30:00Z"
            ),
            // 30 s at the custom 0.10/min, 1/1: 0.05.
            at(
                "c1",
                &custom.id,
                "voice_outbound",
                "+442079460000",
                30,
                "2026-01-01T23:59:00Z"
            ),
            // The manager's own rental, outside any managed account's report: 2.00.
            at(
                "m1",
                &app.manager.id,
                "number_rental",
                "+14155550199",
                2,
                "2026-01-01T00:00:00Z"
            ),
        ]))
        .await;
    assert_eq!(reply.statuses(), ["accepted"; 7], "{}", reply.body);
    Tree {
        own,
        rollup,
        custom,
    }
}

const RANGE: &str = "start_date=2026-01-01T00:00:00Z&end_date=2026-01-03T00:00:00Z";

async fn report(app: &TestApp, key: &str, query: &str) -> Value {
    let reply = app.get(&format!("/v2/usage_reports?{query}"), key).await;
    reply.assert_status(200);
    reply.body
}

#[tokio::test]
async fn a_managers_report_sums_each_managed_accounts_charges_exactly() {
    let app = spawn_app().await;
    let tree = tree_with_usage(&app).await;

    let body = report(
        &app,
        &app.manager.key,
        &format!(
            "product=sip-trunking&dimensions=product&metrics=count,call_sec,billed_sec,cost\
             &managed_accounts=true&{RANGE}"
        ),
    )
    .await;
    let rows = body["data"].as_array().unwrap();
    let expected = [
        (&tree.own.id, "voice_outbound", 2, 122, 181, "0.070833333"),
        (&tree.rollup.id, "voice_inbound", 1, 10, 12, "0.0004"),
        (&tree.custom.id, "voice_outbound", 1, 30, 30, "0.05"),
    ];
    assert_eq!(rows.len(), expected.len(), "{body}");
    for (row, (user, product, count, call_sec, billed_sec, cost)) in rows.iter().zip(expected) {
        assert_eq!(row.as_object().unwrap().len(), 6, "{row}");
        assert_eq!(row["user_id"], *user);
        assert_eq!(row["product"], product);
        assert_eq!(row["count"], count);
        assert_eq!(row["call_sec"], call_sec);
        assert_eq!(row["billed_sec"], billed_sec);
        assert!(row["cost"].is_number(), "{row}");
        assert_eq!(row["cost"].to_string(), cost);
    }
    assert_eq!(body["meta"]["total_results"], 3);

    // The same figures from the detail records the report summarises.
    let messaging = report(
        &app,
        &app.manager.key,
        &format!(
            "product=messaging&dimensions=country_code,message_type&metrics=count,parts,cost\
             &managed_accounts=true&{RANGE}&sort=-parts"
        ),
    )
    .await;
    let rows = messaging["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{messaging}");
    assert_eq!(
        (
            &rows[0]["user_id"],
            &rows[0]["country_code"],
            &rows[0]["parts"]
        ),
        (&json!(tree.own.id), &json!("GB"), &json!(3))
    );
    assert_eq!(rows[0]["message_type"], "SMS");
    assert_eq!(rows[1]["cost"].to_string(), "0.008");
}

#[tokio::test]
async fn reports_group_by_day_country_and_number_type_within_any_range_of_whole_days() {
    let app = spawn_app().await;
    let tree = tree_with_usage(&app).await;
    let key = &tree.own.key;

    let by_day = report(
        &app,
        key,
        &format!("product=sip-trunking&dimensions=date,country_code,number_type&metrics=count,call_sec&{RANGE}"),
    )
    .await;
    assert_eq!(
        by_day["data"],
        json!([
            {"date": "2026-01-01", "country_code": "US", "number_type": "geographic_or_mobile", "count": 1, "call_sec": 61},
            {"date": "2026-01-02", "country_code": "GB", "number_type": "geographic", "count": 1, "call_sec": 61},
        ])
    );
    // One day of the two: a2 (09:00 on the 2nd) alone; a3 is SMS.
    let second_day = report(
        &app,
        key,
        "product=sip-trunking&dimensions=direction,country_code&metrics=count,call_sec\
         &start_date=2026-01-02T00:00:00Z&end_date=2026-01-03T00:00:00Z",
    )
    .await;
    assert_eq!(
        second_day["data"],
        json!([{"direction": "outbound", "country_code": "GB", "count": 1, "call_sec": 61}])
    );
    let before = report(
        &app,
        key,
        "product=sip-trunking&dimensions=direction&metrics=count\
         &start_date=2025-12-30T00:00:00Z&end_date=2026-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(before["data"], json!([]));
    assert_eq!(before["meta"]["total_results"], 0);
    // Filters in both forms narrow alike.
    for filter in ["filter=country_code:GB", "filter%5Bcountry_code%5D=GB"] {
        let filtered = report(
            &app,
            key,
            &format!("product=sip-trunking&dimensions=date&metrics=count&{RANGE}&{filter}"),
        )
        .await;
        assert_eq!(
            filtered["data"],
            json!([{"date": "2026-01-02", "count": 1}]),
            "{filter}"
        );
    }
}

#[tokio::test]
async fn csv_reports_match_the_json_rows() {
    let app = spawn_app().await;
    let _tree = tree_with_usage(&app).await;
    let query = format!(
        "product=sip-trunking&dimensions=product,country_code&metrics=count,cost\
         &managed_accounts=true&{RANGE}"
    );
    let json_rows = report(&app, &app.manager.key, &query).await["data"].clone();
    let response = app
        .client
        .get(format!(
            "{}/v2/usage_reports?{query}&format=csv",
            app.address
        ))
        .bearer_auth(&app.manager.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = response.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("user_id,product,country_code,count,cost")
    );
    let csv_rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    let json_as_text: Vec<Vec<String>> = json_rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            ["user_id", "product", "country_code", "count", "cost"]
                .iter()
                .map(|k| match &row[*k] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    assert_eq!(csv_rows, json_as_text);
}

#[tokio::test]
async fn managed_accounts_report_on_their_own_usage_without_prices() {
    let app = spawn_app().await;
    let tree = tree_with_usage(&app).await;

    // A rollup account's usage is its own to report on, though its manager pays for it.
    let own = report(
        &app,
        &tree.rollup.key,
        &format!("product=messaging&dimensions=product&metrics=count,parts&{RANGE}"),
    )
    .await;
    assert_eq!(
        own["data"],
        json!([{"product": "sms_outbound", "count": 1, "parts": 2}])
    );
    for metrics in ["cost", "count,billed_sec"] {
        let refused = app
            .get(
                &format!(
                    "/v2/usage_reports?product=sip-trunking&dimensions=date&metrics={metrics}&{RANGE}"
                ),
                &tree.custom.key,
            )
            .await;
        refused.assert_error(403, "10010", None);
        assert!(
            refused.error()["detail"]
                .as_str()
                .unwrap()
                .contains("pricing is managed by this account's manager")
        );
    }
    let options = app.get("/v2/usage_reports/options", &tree.custom.key).await;
    options.assert_status(200);
    for product in options.body["data"].as_array().unwrap() {
        let metrics = product["product_metrics"].as_array().unwrap();
        assert!(!metrics.contains(&json!("cost")) && !metrics.contains(&json!("billed_sec")));
        assert!(metrics.contains(&json!("count")));
    }
    let manager_options = app
        .get(
            "/v2/usage_reports/options?product=sip-trunking",
            &app.manager.key,
        )
        .await;
    assert_eq!(
        manager_options.body["data"][0]["product_metrics"],
        json!(["count", "call_sec", "billed_sec", "cost"])
    );
    // Not a manager: no report over managed accounts.
    let refused = app
        .get(
            &format!("/v2/usage_reports?product=messaging&dimensions=date&metrics=count&managed_accounts=true&{RANGE}"),
            &tree.own.key,
        )
        .await;
    refused.assert_error(403, "10010", None);
}

#[tokio::test]
async fn bad_report_requests_name_the_parameter_and_the_valid_values() {
    let app = spawn_app().await;
    let key = &app.manager.key;
    let cases = [
        (
            "product=fax&dimensions=date&metrics=count",
            "product",
            "sip-trunking",
        ),
        (
            "product=messaging&dimensions=colour&metrics=count",
            "dimensions",
            "country_code",
        ),
        (
            "product=messaging&dimensions=date&metrics=call_sec",
            "metrics",
            "parts",
        ),
        ("product=messaging&metrics=count", "dimensions", "required"),
        (
            "product=messaging&dimensions=date&metrics=count&start_date=2026-01-01T00:00:00Z&end_date=2026-02-05T00:00:00Z",
            "end_date",
            "31 days",
        ),
        (
            "product=messaging&dimensions=date&metrics=count&start_date=2026-01-05T00:00:00Z&end_date=2026-01-01T00:00:00Z",
            "end_date",
            "after",
        ),
        (
            "product=messaging&dimensions=date&metrics=count&start_date=yesterday&end_date=2026-01-01T00:00:00Z",
            "start_date",
            "date-time",
        ),
        (
            "product=messaging&dimensions=date&metrics=count&format=xml",
            "format",
            "json or csv",
        ),
        (
            "product=messaging&dimensions=date&metrics=count&start_date=2026-01-01T13:00:00Z&end_date=2026-01-02T00:00:00Z",
            "start_date",
            "whole UTC days",
        ),
        (
            "product=messaging&dimensions=date&metrics=count&start_date=2026-01-01T00:00:00Z&end_date=2026-01-02T10:00:00Z",
            "end_date",
            "2026-01-02T00:00:00Z",
        ),
        (
            "product=messaging&dimensions=date&metrics=count&start_date=2026-01-01T00:30:00Z&end_date=2026-01-02T09:00:00Z",
            "start_date",
            "whole UTC days",
        ),
        (
            "product=messaging&dimensions=date&metrics=count&start_date=2026-01-01T00:00:00%2B01:00&end_date=2026-01-02T00:00:00Z",
            "start_date",
            "whole UTC days",
        ),
        (
            "product=messaging&dimensions=date&metrics=count&date_range=fortnight",
            "date_range",
            "last_N_days",
        ),
        (
            "product=messaging&dimensions=date&metrics=count&sort=-colour",
            "sort",
            "date",
        ),
        (
            "product=messaging&dimensions=date&metrics=count&filter=nonsense",
            "filter",
            "dimension:value",
        ),
        (
            "product=messaging&dimensions=date&metrics=count&filter%5Bcolour%5D=red",
            "filter",
            "country_code",
        ),
    ];
    for (query, parameter, hint) in cases {
        let reply = app.get(&format!("/v2/usage_reports?{query}"), key).await;
        reply.assert_error(400, "10015", Some(("parameter", parameter)));
        let detail = reply.error()["detail"].as_str().unwrap();
        assert!(detail.contains(hint), "{query}: {detail}");
    }
}

#[tokio::test]
async fn report_pages_are_stable_and_counted() {
    let app = spawn_app().await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-12-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let managed = app.managed_of(&app.manager, "Pages Co", json!({})).await;
    let events: Vec<Value> = (0..10)
        .map(|h| {
            at(
                &format!("p{h}"),
                &managed.id,
                "sms_outbound",
                "+14155550100",
                h + 1,
                &format!("2026-01-01T{h:02}:10:00Z"),
            )
        })
        .collect();
    app.ingest(json!(events)).await.assert_status(200);
    let page = |n: u32| {
        format!(
            "product=messaging&dimensions=date&metrics=parts&managed_accounts=true&{RANGE}\
             &page%5Bsize%5D=1&page%5Bnumber%5D={n}"
        )
    };
    let first = report(&app, &app.manager.key, &page(1)).await;
    assert_eq!(first["meta"]["total_results"], 1);
    assert_eq!(first["data"][0]["parts"], 55);
    let beyond = report(&app, &app.manager.key, &page(3)).await;
    assert_eq!(beyond["data"], json!([]));
    assert_eq!(beyond["meta"]["total_results"], 1);
    // A second day: every page, full or past the end, counts both groups, in date order.
    app.ingest(json!([at(
        "p-next-day",
        &managed.id,
        "sms_outbound",
        "+14155550100",
        7,
        "2026-01-02T08:00:00Z",
    )]))
    .await
    .assert_status(200);
    for (n, date, parts) in [
        (1, json!("2026-01-01"), json!(55)),
        (2, json!("2026-01-02"), json!(7)),
    ] {
        let one = report(&app, &app.manager.key, &page(n)).await;
        assert_eq!(one["meta"]["total_results"], 2, "{one}");
        assert_eq!(
            (&one["data"][0]["date"], &one["data"][0]["parts"]),
            (&date, &parts)
        );
    }
    let beyond = report(&app, &app.manager.key, &page(3)).await;
    assert_eq!(
        (&beyond["data"], &beyond["meta"]["total_results"]),
        (&json!([]), &json!(2))
    );
    let oversize = app
        .get(
            "/v2/usage_reports?product=messaging&dimensions=date&metrics=parts&page%5Bsize%5D=5001",
            &app.manager.key,
        )
        .await;
    assert_eq!(oversize.status, 422);
}

async fn job_until_done(app: &TestApp, key: &str, kind: &str, id: &str) -> Value {
    for _ in 0..200 {
        let reply = app
            .get(
                &format!("/v2/legacy/reporting/usage_reports/{kind}/{id}"),
                key,
            )
            .await;
        reply.assert_status(200);
        if reply.body["data"]["status"] != 1 {
            return reply.body["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("report job {id} did not finish");
}

#[tokio::test]
async fn report_jobs_run_in_the_background_and_serve_their_csv_by_signed_link() {
    let app = spawn_app().await;
    let tree = tree_with_usage(&app).await;

    let created = app
        .post(
            "/v2/legacy/reporting/usage_reports/voice",
            &app.manager.key,
            Some(
                json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-03T00:00:00Z",
                        "aggregation_type": 0, "product_breakdown": 2, "connections": [42],
                        "select_all_managed_accounts": true}),
            ),
        )
        .await;
    created.assert_status(200);
    assert_eq!(created.body["data"]["connections"], json!(["42"]));
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    let job = job_until_done(&app, &app.manager.key, "voice", &id).await;
    assert_eq!(job["status"], 2, "{job}");
    let rows = job["result"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{job}");
    assert_eq!(rows[0]["user_id"], tree.own.id);
    assert!(rows.iter().all(|r| r.get("cost").is_some()));

    // The link works without a key, and only as signed, and only until it expires.
    let url = job["report_url"].as_str().unwrap().to_owned();
    let fetch = |url: String| {
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    let csv = fetch(url.clone()).await;
    assert_eq!(csv.status(), 200);
    let text = csv.text().await.unwrap();
    assert!(
        text.starts_with("user_id,direction,country_code,count,call_sec,billed_sec,cost\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5);
    let tampered = fetch(url.replace("signature=", "signature=00")).await;
    assert_eq!(tampered.status(), 403);
    let other_job = url.replace(&id, "00000000-0000-7000-8000-000000000000");
    assert_eq!(fetch(other_job).await.status(), 403);
    app.clock.advance(TimeDelta::hours(25));
    let expired = fetch(url).await;
    assert_eq!(expired.status(), 403);
    let body: Value = expired.json().await.unwrap();
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    // The owner's key opens it without a signature; another tenant's does not.
    let keyed = app
        .client
        .get(format!(
            "{}/v2/legacy/reporting/usage_reports/voice/{id}/csv",
            app.address
        ))
        .bearer_auth(&app.manager.key)
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200);
    let foreign = app
        .get(
            &format!("/v2/legacy/reporting/usage_reports/voice/{id}/csv"),
            &app.other_manager.key,
        )
        .await;
    foreign.assert_error(404, "10005", None);

    let listed = app
        .get(
            "/v2/legacy/reporting/usage_reports/voice?per_page=1",
            &app.manager.key,
        )
        .await;
    assert_eq!(listed.body["meta"]["total_results"], 1);
    let deleted = app
        .request(
            Method::DELETE,
            &format!("/v2/legacy/reporting/usage_reports/voice/{id}"),
            Some(&app.manager.key),
            None,
        )
        .await;
    deleted.assert_status(200);
    app.get(
        &format!("/v2/legacy/reporting/usage_reports/voice/{id}"),
        &app.manager.key,
    )
    .await
    .assert_error(404, "10005", None);
}

#[tokio::test]
async fn report_jobs_stay_within_the_callers_tree_and_hide_prices_from_managed_accounts() {
    let app = spawn_app().await;
    let tree = tree_with_usage(&app).await;
    let body = json!({"aggregation_type": 0, "start_time": "2026-01-01T00:00:00Z",
                      "end_time": "2026-01-03T00:00:00Z", "managed_accounts": [tree.own.id]});
    let foreign = app
        .post(
            "/v2/legacy/reporting/usage_reports/messaging",
            &app.other_manager.key,
            Some(body.clone()),
        )
        .await;
    foreign.assert_error(404, "10005", None);
    let not_manager = app
        .post(
            "/v2/legacy/reporting/usage_reports/messaging",
            &tree.own.key,
            Some(body),
        )
        .await;
    not_manager.assert_error(403, "10010", None);
    let bad = app
        .post(
            "/v2/legacy/reporting/usage_reports/messaging",
            &tree.own.key,
            Some(json!({"aggregation_type": 2})),
        )
        .await;
    bad.assert_error(422, "40001", Some(("pointer", "/aggregation_type")));
    // Jobs cover whole UTC days too; the error points at the end that is not.
    for (start, end, pointer) in [
        (
            "2026-01-01T06:00:00Z",
            "2026-01-03T00:00:00Z",
            "/start_time",
        ),
        ("2026-01-01T00:00:00Z", "2026-01-02T18:00:00Z", "/end_time"),
    ] {
        let refused = app
            .post(
                "/v2/legacy/reporting/usage_reports/messaging",
                &tree.own.key,
                Some(json!({"aggregation_type": 0, "start_time": start, "end_time": end})),
            )
            .await;
        refused.assert_error(422, "40001", Some(("pointer", pointer)));
        assert!(
            refused.error()["detail"]
                .as_str()
                .unwrap()
                .contains("whole UTC days"),
            "{}",
            refused.body
        );
    }

    let own = app
        .post(
            "/v2/legacy/reporting/usage_reports/messaging",
            &tree.own.key,
            Some(
                json!({"aggregation_type": 0, "start_time": "2026-01-01T00:00:00Z",
                        "end_time": "2026-01-03T00:00:00Z"}),
            ),
        )
        .await;
    own.assert_status(200);
    let id = own.body["data"]["id"].as_str().unwrap().to_owned();
    let job = job_until_done(&app, &tree.own.key, "messaging", &id).await;
    assert_eq!(
        job["result"]["rows"],
        json!([{"user_id": tree.own.id, "direction": "outbound", "message_type": "SMS",
                "count": 1, "parts": 3}])
    );
    let csv = app
        .client
        .get(job["report_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv.lines().next(),
        Some("user_id,direction,message_type,count,parts")
    );
}

#[tokio::test]
async fn a_pending_job_runs_once_across_servers_and_after_a_crash() {
    let app = spawn_app().await;
    let _tree = tree_with_usage(&app).await;
    // A job claimed by a server that then died: its lease holds it until it runs out.
    let created = app
        .post(
            "/v2/legacy/reporting/usage_reports/voice",
            &app.manager.key,
            Some(
                json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-03T00:00:00Z",
                        "select_all_managed_accounts": true}),
            ),
        )
        .await;
    let first = created.body["data"]["id"].as_str().unwrap().to_owned();
    job_until_done(&app, &app.manager.key, "voice", &first).await;
    let claimed_by_the_dead = uuid::Uuid::now_v7().to_string();
    let now_ms = {
        use steward::clock::Clock;
        app.clock.now().timestamp_millis()
    };
    sqlx::query(
        "INSERT INTO report_jobs (id, kind, owner_account_id, request, show_cost, status, \
         claimed_until_ms, attempts, created_at_ms, updated_at_ms) \
         SELECT $1, kind, owner_account_id, request, show_cost, 1, $2, 1, $3, $3 \
         FROM report_jobs WHERE id = $4",
    )
    .bind(&claimed_by_the_dead)
    .bind(now_ms + steward::reports::jobs::CLAIM_LEASE_MS)
    .bind(now_ms)
    .bind(&first)
    .execute(&app.db.write)
    .await
    .unwrap();
    let second = app.second_server().await;
    let third = app.second_server().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let still: i64 = sqlx::query_scalar("SELECT status FROM report_jobs WHERE id = $1")
        .bind(&claimed_by_the_dead)
        .fetch_one(&app.db.read)
        .await
        .unwrap();
    assert_eq!(still, 1, "a live lease is respected");

    app.clock.advance(TimeDelta::milliseconds(
        steward::reports::jobs::CLAIM_LEASE_MS,
    ));
    let job = job_until_done(&app, &app.manager.key, "voice", &claimed_by_the_dead).await;
    assert_eq!(job["status"], 2);
    let attempts: i64 = sqlx::query_scalar("SELECT attempts FROM report_jobs WHERE id = $1")
        .bind(&claimed_by_the_dead)
        .fetch_one(&app.db.read)
        .await
        .unwrap();
    assert_eq!(
        attempts, 2,
        "claimed once by the dead server, once after it"
    );
    drop((second, third));
}

#[tokio::test]
async fn a_manager_lists_the_detail_records_of_its_whole_tree() {
    let app = spawn_app().await;
    let tree = tree_with_usage(&app).await;
    let reply = app
        .get(
            "/v2/detail_records?filter%5Brecord_type%5D=sip-trunking&managed_accounts=true\
             &filter%5Bstarted_at%5D%5Bgte%5D=2026-01-01&sort=started_at",
            &app.manager.key,
        )
        .await;
    reply.assert_status(200);
    let users: Vec<&str> = reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        [
            tree.own.id.as_str(),
            tree.rollup.id.as_str(),
            tree.custom.id.as_str(),
            tree.own.id.as_str()
        ]
    );
    assert!(reply.body["data"][0]["cost"].is_string());
    let refused = app
        .get(
            "/v2/detail_records?filter%5Brecord_type%5D=sip-trunking&managed_accounts=true",
            &tree.own.key,
        )
        .await;
    refused.assert_error(403, "10010", None);
}

#[tokio::test]
async fn usage_stored_before_rollups_is_classified_and_rolled_up_once_at_start() {
    let app = spawn_app().await;
    let tree = tree_with_usage(&app).await;
    // As an earlier version left it: no destination classes, no rollups.
    for sql in [
        "UPDATE usage_records SET country_code = NULL, number_type = NULL",
        "DELETE FROM usage_rollups_daily",
        "DELETE FROM maintenance_runs WHERE name = 'usage_rollups_v1'",
    ] {
        sqlx::query(sql).execute(&app.db.write).await.unwrap();
    }
    let empty = report(
        &app,
        &tree.own.key,
        &format!("product=sip-trunking&dimensions=country_code&metrics=count&{RANGE}"),
    )
    .await;
    assert_eq!(empty["data"], json!([]));

    // A server starting on the database upgrades it; a second start changes nothing.
    app.second_server().await;
    app.second_server().await;

    let rebuilt = report(
        &app,
        &tree.own.key,
        &format!("product=sip-trunking&dimensions=country_code,number_type&metrics=count,call_sec&{RANGE}"),
    )
    .await;
    assert_eq!(
        rebuilt["data"],
        json!([
            {"country_code": "GB", "number_type": "geographic", "count": 1, "call_sec": 61},
            {"country_code": "US", "number_type": "geographic_or_mobile", "count": 1, "call_sec": 61},
        ])
    );
}

#[tokio::test]
async fn a_report_over_a_calendar_month_reads_the_monthly_rollups_and_agrees_with_the_days() {
    let app = spawn_app().await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-12-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let managed = app.managed_of(&app.manager, "Month Co", json!({})).await;
    app.clock.advance(TimeDelta::days(31));
    let days = [
        "2026-01-01T00:00:00Z",
        "2026-01-15T13:00:00Z",
        "2026-01-31T23:59:59Z",
    ];
    let events: Vec<Value> = days
        .iter()
        .enumerate()
        .map(|(n, when)| {
            at(
                &format!("m{n}"),
                &managed.id,
                "sms_outbound",
                "+447400123456",
                2,
                when,
            )
        })
        .chain([at(
            "feb",
            &managed.id,
            "sms_outbound",
            "+447400123456",
            5,
            "2026-02-01T00:00:00Z",
        )])
        .collect();
    app.ingest(json!(events)).await.assert_status(200);
    // January has ended: closed, it is read from its monthly rows alone.
    close_days(&app).await;
    assert_eq!(closed_until(&app).await, "2026-02-01T00:00:00.000Z");
    let january = "start_date=2026-01-01T00:00:00Z&end_date=2026-02-01T00:00:00Z";
    let whole = report(
        &app,
        &managed.key,
        &format!("product=messaging&dimensions=country_code&metrics=count,parts&{january}"),
    )
    .await;
    assert_eq!(
        whole["data"],
        json!([{"country_code": "GB", "count": 3, "parts": 6}])
    );
    let by_day = report(
        &app,
        &managed.key,
        &format!("product=messaging&dimensions=date&metrics=parts&{january}"),
    )
    .await;
    assert_eq!(
        by_day["data"],
        json!([{"date": "2026-01-01", "parts": 2}, {"date": "2026-01-15", "parts": 2},
               {"date": "2026-01-31", "parts": 2}])
    );
    // The monthly rollups of usage charged before they existed are built once, at start.
    for sql in [
        "DELETE FROM usage_rollups_monthly",
        "DELETE FROM maintenance_runs WHERE name = 'usage_rollups_monthly_v1'",
    ] {
        sqlx::query(sql).execute(&app.db.write).await.unwrap();
    }
    app.second_server().await;
    let rebuilt = report(
        &app,
        &managed.key,
        &format!("product=messaging&dimensions=country_code&metrics=count,parts&{january}"),
    )
    .await;
    assert_eq!(rebuilt["data"], whole["data"]);
}

/// Closes the days that ended before the test clock's today, as a server's closer does.
async fn close_days(app: &TestApp) -> i64 {
    use steward::clock::Clock;
    steward::usage::rollups::close_days(&app.db, app.clock.now().timestamp_millis())
        .await
        .unwrap()
}

/// The mark of closed days, as an RFC 3339 instant.
async fn closed_until(app: &TestApp) -> String {
    let mut conn = app.db.read.acquire().await.unwrap();
    let ms = steward::usage::rollups::closed_until(&mut conn)
        .await
        .unwrap();
    steward::clock::to_wire(steward::clock::from_epoch_ms(ms))
}

#[tokio::test]
async fn closing_days_moves_them_into_their_months_and_changes_no_report() {
    let app = spawn_app().await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-12-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let north = app.managed_of(&app.manager, "North Co", json!({})).await;
    let south = app
        .managed_of(&app.manager, "South Co", json!({"rollup_billing": true}))
        .await;
    // Today is 20 January.
    app.clock.advance(TimeDelta::days(19));
    // (account, destination, parts, when): SMS at 0.004 a part.
    let send = |batch: &[(&Actor, &str, i64, &str)], first: usize| -> Value {
        json!(
            batch
                .iter()
                .enumerate()
                .map(|(n, (account, to, parts, when))| at(
                    &format!("c{}", first + n),
                    &account.id,
                    "sms_outbound",
                    to,
                    *parts,
                    when
                ))
                .collect::<Vec<_>>()
        )
    };
    // Usage of days that have ended: last month's last second, this month, yesterday. The
    // days close, as a server's closer leaves them.
    let mut sent = vec![
        (&north, "+447400123456", 2, "2025-12-31T23:59:59Z"),
        (&north, "+447400123456", 3, "2026-01-05T10:00:00Z"),
        (&south, "+14155550100", 4, "2026-01-19T23:59:59Z"),
    ];
    let reply = app.ingest(send(&sent, 0)).await;
    assert_eq!(reply.statuses(), ["accepted"; 3], "{}", reply.body);
    close_days(&app).await;
    assert_eq!(closed_until(&app).await, "2026-01-20T00:00:00.000Z");
    // Today's usage, in the daily rollups only, and usage arriving late for a closed day,
    // in both.
    let more = [
        (&south, "+447400123456", 5, "2026-01-20T00:00:00Z"),
        (&north, "+14155550100", 6, "2026-01-20T11:00:00Z"),
        (&south, "+447400123456", 1, "2026-01-10T09:00:00Z"),
    ];
    let reply = app.ingest(send(&more, 3)).await;
    assert_eq!(reply.statuses(), ["accepted"; 3], "{}", reply.body);
    sent.extend(more);
    // (verify-ledger holds each month to exactly its closed days' usage.)
    app.assert_ledger_clean().await;

    // A month read whole, months in part from either side, a 31-day window that is a
    // month less a day plus a day, days by date, and today alone.
    let ranges = [
        ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),
        ("2025-12-20T00:00:00Z", "2026-01-20T00:00:00Z"),
        ("2025-12-31T00:00:00Z", "2026-01-31T00:00:00Z"),
        ("2026-01-02T00:00:00Z", "2026-02-02T00:00:00Z"),
        ("2026-01-20T00:00:00Z", "2026-01-21T00:00:00Z"),
    ];
    let queries: Vec<String> = ranges
        .iter()
        .flat_map(|(from, until)| {
            [
                format!(
                    "product=messaging&dimensions=country_code&metrics=count,parts,cost\
                     &managed_accounts=true&start_date={from}&end_date={until}"
                ),
                format!(
                    "product=messaging&dimensions=date,country_code&metrics=count,parts\
                     &managed_accounts=true&start_date={from}&end_date={until}"
                ),
            ]
        })
        .collect();
    // Each report's rows from the events sent: (user, country) → (count, parts).
    let expected = |sent: &[(&Actor, &str, i64, &str)], (from, until): (&str, &str)| {
        let mut sums: std::collections::BTreeMap<(String, &str), (i64, i64)> =
            std::collections::BTreeMap::new();
        for (account, to, parts, when) in sent {
            if *when >= from && *when < until {
                let country = if to.starts_with("+44") { "GB" } else { "US" };
                let slot = sums.entry((account.id.clone(), country)).or_default();
                slot.0 += 1;
                slot.1 += parts;
            }
        }
        sums.into_iter()
            .map(|((user, country), (count, parts))| {
                json!({"user_id": user, "country_code": country, "count": count,
                       "parts": parts, "cost": decimal(parts * 4_000_000)})
            })
            .collect::<Vec<Value>>()
    };
    let cost_as_text = |body: &Value| -> Vec<Value> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let mut row = row.clone();
                row["cost"] = json!(row["cost"].to_string());
                row
            })
            .collect()
    };
    let mut before = Vec::new();
    for query in &queries {
        before.push(report(&app, &app.manager.key, query).await);
    }
    for (n, range) in ranges.iter().enumerate() {
        assert_eq!(
            cost_as_text(&before[2 * n]),
            expected(&sent, *range),
            "{range:?}"
        );
    }

    // 3 February: the rest of January and two days of February close, in a step per month.
    app.clock.advance(TimeDelta::days(14));
    close_days(&app).await;
    assert_eq!(closed_until(&app).await, "2026-02-03T00:00:00.000Z");
    assert_eq!(close_days(&app).await, 0, "nothing left to close");
    for (query, earlier) in queries.iter().zip(&before) {
        assert_eq!(
            &report(&app, &app.manager.key, query).await,
            earlier,
            "{query}"
        );
    }
    app.assert_ledger_clean().await;

    // Usage that arrives for a closed day goes to its month as it is charged.
    let late = [(&north, "+447400123456", 7, "2026-01-25T08:00:00Z")];
    let reply = app.ingest(send(&late, 6)).await;
    assert_eq!(reply.statuses(), ["accepted"], "{}", reply.body);
    sent.extend(late);
    for (n, range) in ranges.iter().enumerate() {
        let body = report(&app, &app.manager.key, &queries[2 * n]).await;
        assert_eq!(cost_as_text(&body), expected(&sent, *range), "{range:?}");
    }
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn days_close_beside_charging_and_each_event_is_in_its_month_once() {
    let app = spawn_app().await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-12-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let managed = app.managed_of(&app.manager, "Busy Co", json!({})).await;
    close_days(&app).await;
    // Two senders charge usage of 1 January while the day ends and is closed, again and
    // again, beside them: a batch that charged the day before the closing read it must be
    // in its month after it, and no batch in it twice.
    let (batches, per_batch) = (12, 25);
    let sender = |name: &'static str| {
        let app = &app;
        let account = managed.id.clone();
        async move {
            for b in 0..batches {
                let events: Vec<Value> = (0..per_batch)
                    .map(|n| {
                        at(
                            &format!("{name}-{b}-{n}"),
                            &account,
                            "sms_outbound",
                            "+447400123456",
                            1,
                            "2026-01-01T11:59:59Z",
                        )
                    })
                    .collect();
                let reply = app.ingest(json!(events)).await;
                assert_eq!(
                    reply.statuses(),
                    vec!["accepted"; per_batch],
                    "{}",
                    reply.body
                );
            }
        }
    };
    let closer = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        app.clock.advance(TimeDelta::days(1));
        for _ in 0..batches {
            close_days(&app).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::join!(sender("a"), sender("b"), closer);
    close_days(&app).await;
    assert_eq!(closed_until(&app).await, "2026-01-02T00:00:00.000Z");
    app.assert_ledger_clean().await;
    let body = report(
        &app,
        &managed.key,
        "product=messaging&dimensions=country_code&metrics=count,parts\
         &start_date=2026-01-01T00:00:00Z&end_date=2026-02-01T00:00:00Z",
    )
    .await;
    let total = i64::try_from(2 * batches * per_batch).unwrap();
    assert_eq!(
        body["data"],
        json!([{"country_code": "GB", "count": total, "parts": total}])
    );
}

/// `nanos` as the API writes an amount: a decimal without trailing zeros.
fn decimal(nanos: i64) -> String {
    let text = format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[tokio::test]
async fn a_31_day_window_from_the_2nd_is_a_month_less_a_day_plus_a_day_and_sums_exactly() {
    let app = spawn_app().await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-12-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let north = app.managed_of(&app.manager, "North Co", json!({})).await;
    let south = app.managed_of(&app.manager, "South Co", json!({})).await;
    let gone = app.managed_of(&app.manager, "Gone Co", json!({})).await;
    app.clock.advance(TimeDelta::days(33));
    // (account, destination, parts, when): SMS at 0.004 a part, whatever the destination.
    let sent = [
        // 1 January, outside the window: a group also inside, and groups only here (north
        // to the US, and every group of `gone`).
        (&north, "+447400123456", 7, "2026-01-01T00:00:00Z"),
        (&north, "+14155550100", 4, "2026-01-01T12:00:00Z"),
        (&gone, "+447400123456", 9, "2026-01-01T23:59:59Z"),
        // Inside: 2 January's first instant, mid-month, the month's last second, and
        // 1 February, the next month's first day, whole.
        (&north, "+447400123456", 2, "2026-01-02T00:00:00Z"),
        (&south, "+14155550100", 3, "2026-01-15T08:30:00Z"),
        (&north, "+447400123456", 5, "2026-01-31T23:59:59Z"),
        (&south, "+447400123456", 1, "2026-02-01T00:00:00Z"),
        (&north, "+447400123456", 6, "2026-02-01T23:59:59Z"),
        // 2 February, the window's end, outside.
        (&south, "+14155550100", 8, "2026-02-02T00:00:00Z"),
        (&north, "+33612345678", 3, "2026-02-02T00:00:00Z"),
    ];
    let events: Vec<Value> = sent
        .iter()
        .enumerate()
        .map(|(n, (account, to, parts, when))| {
            at(
                &format!("w{n}"),
                &account.id,
                "sms_outbound",
                to,
                *parts,
                when,
            )
        })
        .collect();
    let reply = app.ingest(json!(events)).await;
    assert_eq!(reply.statuses(), ["accepted"; 10], "{}", reply.body);

    // The expected rows from the events sent, in the report's order (account, country).
    let (from, until) = ("2026-01-02T00:00:00Z", "2026-02-02T00:00:00.000Z");
    let mut expected: std::collections::BTreeMap<(String, &str), (i64, i64)> =
        std::collections::BTreeMap::new();
    for (account, to, parts, when) in &sent {
        if *when < from || *when >= until {
            continue;
        }
        let country = if to.starts_with("+44") { "GB" } else { "US" };
        let slot = expected.entry((account.id.clone(), country)).or_default();
        slot.0 += 1;
        slot.1 += parts;
    }
    let expected: Vec<Value> = expected
        .into_iter()
        .map(|((user, country), (count, parts))| {
            json!({"user_id": user, "country_code": country, "count": count, "parts": parts,
                   "cost": decimal(parts * 4_000_000)})
        })
        .collect();
    assert_eq!(expected.len(), 3, "north GB, south GB, south US");

    let body = report(
        &app,
        &app.manager.key,
        &format!(
            "product=messaging&dimensions=country_code&metrics=count,parts,cost\
             &managed_accounts=true&start_date={from}&end_date={until}"
        ),
    )
    .await;
    let rows: Vec<Value> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let mut row = row.clone();
            row["cost"] = json!(row["cost"].to_string());
            row
        })
        .collect();
    assert_eq!(rows, expected, "{body}");
    assert_eq!(body["meta"]["total_results"], 3);
    // Paged: the total counts the groups left after subtracting, not those read.
    let paged = |number: usize| {
        format!(
            "product=messaging&dimensions=country_code&metrics=count\
             &managed_accounts=true&start_date={from}&end_date={until}\
             &page%5Bsize%5D=1&page%5Bnumber%5D={number}"
        )
    };
    for (number, row) in expected.iter().enumerate() {
        let page = report(&app, &app.manager.key, &paged(number + 1)).await;
        assert_eq!(page["meta"]["total_results"], 3, "{page}");
        assert_eq!(page["data"][0]["user_id"], row["user_id"], "{page}");
        assert_eq!(page["data"][0]["count"], row["count"], "{page}");
    }
    // Past the last page: no rows, the same total.
    let beyond = report(&app, &app.manager.key, &paged(4)).await;
    assert_eq!(
        (&beyond["data"], &beyond["meta"]["total_results"]),
        (&json!([]), &json!(3)),
        "{beyond}"
    );

    // The same window by date reads days only, and agrees.
    let by_date = report(
        &app,
        &app.manager.key,
        &format!(
            "product=messaging&dimensions=date&metrics=count,parts\
             &managed_accounts=true&start_date={from}&end_date={until}&page%5Bsize%5D=100"
        ),
    )
    .await;
    let (mut count, mut parts) = (0, 0);
    for row in by_date["data"].as_array().unwrap() {
        count += row["count"].as_i64().unwrap();
        parts += row["parts"].as_i64().unwrap();
    }
    let sums = rows.iter().fold((0, 0), |(c, p), row| {
        (
            c + row["count"].as_i64().unwrap(),
            p + row["parts"].as_i64().unwrap(),
        )
    });
    assert_eq!((count, parts), sums);
}
