//! Prices never reach a managed account: every answer a managed account can get — lists,
//! reports in JSON and CSV, report files, the audit trail, refusals — is scanned for price
//! fields and for the rates in force (and each record's cost, which would reveal them).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Actor, TestApp, spawn_app};

/// Rates no balance or count could show by chance.
pub const PLATFORM_PRICES: &str = "product,prefix,rate,initial_increment_s,subsequent_increment_s
voice_outbound,,0.0137,30,6
voice_inbound,,0.0029,1,1
sms_outbound,,0.00731,,
mms_outbound,,0.0419,,
number_rental,,7.13,,
";

/// A custom-priced account's own list.
pub const CUSTOM_PRICES: &str = "product,prefix,rate,initial_increment_s,subsequent_increment_s
voice_outbound,44,0.0613,1,1
voice_outbound,,0.0577,1,1
voice_inbound,,0.0031,1,1
sms_outbound,,0.00917,,
mms_outbound,,0.0523,,
";

/// Every way a rate in force could be written.
pub const FORBIDDEN_NUMBERS: [&str; 14] = [
    "0.0137",
    "0.013700000",
    "0.0029",
    "0.002900000",
    "0.00731",
    "0.007310000",
    "0.0419",
    "0.041900000",
    "7.13",
    "7.130000000",
    "0.0613",
    "0.061300000",
    "0.00917",
    "0.009170000",
];

/// Keys that carry prices or let them be worked out.
const FORBIDDEN_KEYS: [&str; 9] = [
    "cost",
    "rate",
    "rates",
    "rate_measured_in",
    "billed_sec",
    "price",
    "unit_price",
    "price_list_id",
    "rate_prefix",
];

fn at(id: &str, account: &str, product: &str, to: &str, quantity: i64) -> Value {
    json!({"id": id, "account_id": account, "product": product, "destination": to,
           "quantity": quantity, "occurred_at": "2026-01-01T11:00:00Z"})
}

/// Usage of `account` whose single costs are all distinct from any balance.
pub fn usage_of(account: &Actor, tag: &str) -> Vec<Value> {
    vec![
        at(
            &format!("{tag}-v1"),
            &account.id,
            "voice_outbound",
            "+442079460000",
            61,
        ),
        at(
            &format!("{tag}-v2"),
            &account.id,
            "voice_outbound",
            "+14155550100",
            7,
        ),
        at(
            &format!("{tag}-v3"),
            &account.id,
            "voice_inbound",
            "+14155550100",
            95,
        ),
        at(
            &format!("{tag}-s1"),
            &account.id,
            "sms_outbound",
            "+447400123456",
            3,
        ),
        at(
            &format!("{tag}-s2"),
            &account.id,
            "sms_outbound",
            "+14155550100",
            1,
        ),
        at(
            &format!("{tag}-m1"),
            &account.id,
            "mms_outbound",
            "+14155550100",
            2,
        ),
    ]
}

/// Every per-record cost charged, in the forms a response could carry it.
pub async fn record_costs(app: &TestApp) -> Vec<String> {
    let costs: Vec<i64> = sqlx::query_scalar("SELECT cost_nanos FROM usage_records")
        .fetch_all(&app.db.read)
        .await
        .unwrap();
    costs
        .into_iter()
        .flat_map(|nanos| {
            let nine = steward::money::Money::from_nanos(nanos).to_decimal_string(9);
            let trimmed = nine.trim_end_matches('0').to_owned();
            [nine, trimmed]
        })
        .filter(|text| text.len() > 5)
        .collect()
}

fn scan(what: &str, text: &str, forbidden: &[String], leaks: &mut Vec<String>) {
    for needle in forbidden {
        if text.contains(needle.as_str()) {
            leaks.push(format!("{what}: contains {needle}: {text}"));
        }
    }
    if let Ok(json) = serde_json::from_str::<Value>(text) {
        scan_keys(what, &json, leaks);
    } else {
        // CSV: the header row names the columns.
        if let Some(header) = text.lines().next() {
            for column in header.split(',') {
                if FORBIDDEN_KEYS.contains(&column) {
                    leaks.push(format!("{what}: column {column}"));
                }
            }
        }
    }
}

fn scan_keys(what: &str, value: &Value, leaks: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if FORBIDDEN_KEYS.contains(&key.as_str()) {
                    leaks.push(format!("{what}: key {key} in {value}"));
                }
                scan_keys(what, inner, leaks);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| scan_keys(what, i, leaks)),
        _ => {}
    }
}

async fn body(app: &TestApp, key: &str, path: &str) -> String {
    let response = app
        .client
        .get(format!("{}{path}", app.address))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    response.text().await.unwrap()
}

/// Every answer `account` can get, as (what, body) pairs.
async fn answers(app: &TestApp, account: &Actor) -> Vec<(String, String)> {
    let key = &account.key;
    let mut paths: Vec<String> = [
        "/v2/account",
        "/v2/balance",
        "/v2/api_keys",
        "/v2/audit_events?page%5Bsize%5D=250",
        "/v2/usage_reports/options",
        "/v2/pricing/rates",
        "/v2/pricing/rate?product=voice_outbound&destination=%2B442079460000",
        "/v2/legacy/reporting/usage_reports/voice",
        "/v2/legacy/reporting/usage_reports/messaging",
        "/v2/payment_methods",
        "/v2/payment/stored_payment_transactions",
        "/v2/payment/auto_recharge_prefs",
        "/v2/invoices",
        "/v2/charges_summary?start_date=2026-01-01&end_date=2026-02-01",
        "/v2/charges_breakdown?start_date=2026-01-01",
        "/v2/charges_breakdown?start_date=2026-01-01&format=csv",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for record_type in ["sip-trunking", "messaging", "number-rental"] {
        paths.push(format!(
            "/v2/detail_records?filter%5Brecord_type%5D={record_type}&page%5Bsize%5D=50"
        ));
    }
    // Every report a managed account may ask for, in both forms, and those it may not.
    let options: Value =
        serde_json::from_str(&body(app, key, "/v2/usage_reports/options").await).unwrap();
    for option in options["data"].as_array().unwrap() {
        let product = option["product"].as_str().unwrap();
        let dimensions: Vec<&str> = option["product_dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        let metrics: Vec<&str> = option["product_metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        let base = format!(
            "/v2/usage_reports?product={product}&dimensions={}&metrics={}&start_date=2026-01-01T00:00:00Z&end_date=2026-01-02T00:00:00Z",
            dimensions.join(","),
            metrics.join(",")
        );
        paths.push(base.clone());
        paths.push(format!("{base}&format=csv"));
        paths.push(format!("{base},cost"));
        paths.push(format!("{base}&sort=-billed_sec"));
    }
    let mut answers = Vec::new();
    for path in paths {
        answers.push((path.clone(), body(app, key, &path).await));
    }
    // Each invoice, its link and its document's text.
    let invoices: Value = serde_json::from_str(&body(app, key, "/v2/invoices").await).unwrap();
    for invoice in invoices["data"].as_array().into_iter().flatten() {
        let path = format!(
            "/v2/invoices/{}?action=link",
            invoice["invoice_id"].as_str().unwrap()
        );
        let detail = body(app, key, &path).await;
        let url = serde_json::from_str::<Value>(&detail).unwrap()["data"]["download_url"]
            .as_str()
            .unwrap()
            .to_owned();
        let pdf = app
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        answers.push((format!("{path} (PDF)"), crate::invoices::pdf_text(&pdf)));
        answers.push((path, detail));
    }
    // Report jobs and their files.
    for kind in ["voice", "messaging"] {
        let created = app
            .post(
                &format!("/v2/legacy/reporting/usage_reports/{kind}"),
                key,
                Some(if kind == "voice" {
                    json!({"product_breakdown": 3, "start_time": "2026-01-01T00:00:00Z",
                           "end_time": "2026-01-02T00:00:00Z"})
                } else {
                    json!({"aggregation_type": 0, "start_time": "2026-01-01T00:00:00Z",
                           "end_time": "2026-01-02T00:00:00Z"})
                }),
            )
            .await;
        created.assert_status(200);
        let id = created.body["data"]["id"].as_str().unwrap().to_owned();
        let path = format!("/v2/legacy/reporting/usage_reports/{kind}/{id}");
        let mut job = Value::Null;
        for _ in 0..200 {
            job = serde_json::from_str(&body(app, key, &path).await).unwrap();
            if job["data"]["status"] != 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(job["data"]["status"], 2, "{job}");
        answers.push((path.clone(), job.to_string()));
        let url = job["data"]["report_url"].as_str().unwrap();
        let csv = app
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        answers.push((format!("{path}/csv"), csv));
    }
    answers
}

#[tokio::test]
async fn no_answer_a_managed_account_can_get_carries_a_price() {
    let app = spawn_app().await;
    app.import_prices(
        PLATFORM_PRICES,
        "platform_default=true&effective_from=2025-01-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let own = app.managed_of(&app.manager, "Leak Own", json!({})).await;
    let rollup = app
        .managed_of(&app.manager, "Leak Rollup", json!({"rollup_billing": true}))
        .await;
    let custom = app
        .managed_of(
            &app.manager,
            "Leak Custom",
            json!({"managed_account_allow_custom_pricing": true}),
        )
        .await;
    app.import_prices(
        CUSTOM_PRICES,
        &format!(
            "assign_to={}&effective_from=2025-01-01T00:00:00Z",
            custom.id
        ),
    )
    .await
    .assert_status(200);
    for (account, tag) in [(&own, "own"), (&rollup, "rollup"), (&custom, "custom")] {
        app.operator_post(
            &format!(
                "/admin/v1/accounts/{}/credits",
                if account.id == rollup.id {
                    &app.manager.id
                } else {
                    &account.id
                }
            ),
            Some(&format!("leak-{tag}")),
            json!({"amount": "50.00", "reason": "leak test"}),
        )
        .await
        .assert_status(200);
        let reply = app.ingest(json!(usage_of(account, tag))).await;
        assert!(
            reply.statuses().iter().all(|s| *s == "accepted"),
            "{}",
            reply.body
        );
    }

    // January closes: the accounts paying for themselves get their invoices.
    app.clock
        .advance(chrono::TimeDelta::days(31) + chrono::TimeDelta::minutes(6));
    let clock: steward::clock::ClockHandle = std::sync::Arc::new(app.clock.clone());
    for account in [&own, &custom] {
        steward::invoices::close_period(
            &app.db,
            &clock,
            steward::invoices::Period::parse("2026-01").unwrap(),
            steward::accounts::AccountId::parse(&account.id).unwrap(),
            &crate::helpers::operator(),
        )
        .await
        .unwrap();
        let listed = app.get("/v2/invoices", &account.key).await;
        assert_eq!(
            listed.body["data"].as_array().unwrap().len(),
            1,
            "{}",
            listed.body
        );
    }

    let mut forbidden: Vec<String> = FORBIDDEN_NUMBERS.iter().map(|n| (*n).to_owned()).collect();
    forbidden.extend(record_costs(&app).await);
    let mut leaks = Vec::new();
    let mut scanned = 0;
    for account in [&own, &rollup, &custom] {
        for (what, text) in answers(&app, account).await {
            scanned += 1;
            scan(&what, &text, &forbidden, &mut leaks);
        }
    }
    assert!(scanned > 60, "only {scanned} answers scanned");
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );

    // The scan itself finds prices where they are allowed: the manager's own view.
    let mut manager_view = Vec::new();
    let text = body(
        &app,
        &app.manager.key,
        &format!(
            "/v2/detail_records?filter%5Brecord_type%5D=sip-trunking&filter%5Baccount_id%5D={}",
            own.id
        ),
    )
    .await;
    scan("manager", &text, &forbidden, &mut manager_view);
    assert!(!manager_view.is_empty(), "the scan would not see a price");
}
