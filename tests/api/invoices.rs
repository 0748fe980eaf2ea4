//! Monthly invoices over real HTTP: closing a month (by the background task, by a call, from
//! two servers at once), totals that tie to the events and money sent, late usage, the PDF
//! (read back with `pdftotext`) and its signed download link, and verify-ledger.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::{Value, json};
use steward::accounts::AccountId;
use steward::clock::ClockHandle;
use steward::invoices::{self, Closed, Period};

use crate::helpers::{Actor, BASE_PRICES, TestApp, event, operator, spawn_app};

/// From the test clock's start (2026-01-01 12:00) to just after January closes.
fn past_january_end() -> TimeDelta {
    TimeDelta::days(30) + TimeDelta::hours(12) + TimeDelta::minutes(6)
}

fn january() -> Period {
    Period::parse("2026-01").unwrap()
}

fn clock(app: &TestApp) -> ClockHandle {
    Arc::new(app.clock.clone())
}

async fn close(app: &TestApp, period: Period, account: &str) -> Closed {
    invoices::close_period(
        &app.db,
        &clock(app),
        period,
        AccountId::parse(account).unwrap(),
        &operator(),
    )
    .await
    .unwrap()
}

/// The text of a PDF, as `pdftotext` extracts it.
pub fn pdf_text(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invoice.pdf");
    std::fs::write(&path, bytes).unwrap();
    let output = std::process::Command::new("pdftotext")
        .args(["-layout", path.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext (poppler-utils) is installed");
    assert!(output.status.success(), "pdftotext failed");
    String::from_utf8(output.stdout).unwrap()
}

async fn credit(app: &TestApp, account: &str, amount: &str, key: &str) {
    app.operator_post(
        &format!("/admin/v1/accounts/{account}/credits"),
        Some(key),
        json!({"amount": amount, "reason": "opening credit"}),
    )
    .await
    .assert_status(200);
}

/// A manager's tree with January activity: the manager's own usage, a managed account that
/// pays for itself, two rollup accounts; credits and an adjustment.
struct Tree {
    own: Actor,
    rollup: Actor,
    rollup_rental: Actor,
}

async fn january_activity(app: &TestApp) -> Tree {
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-01-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let own = app.managed_of(&app.manager, "Own Pays", json!({})).await;
    let rollup = app
        .managed_of(&app.manager, "Rollup One", json!({"rollup_billing": true}))
        .await;
    let rollup_rental = app
        .managed_of(&app.manager, "Rollup Two", json!({"rollup_billing": true}))
        .await;
    credit(app, &app.manager.id, "100.00", "c-manager").await;
    credit(app, &own.id, "20.00", "c-own").await;
    app.operator_post(
        &format!("/admin/v1/accounts/{}/adjustments", own.id),
        Some("a-own"),
        json!({"amount": "-1.50", "reason": "porting fee"}),
    )
    .await
    .assert_status(200);
    let reply = app
        .ingest(json!([
            // Manager: 61 s at 0.01/min 60/60 = 120 s billed = 0.02; 5 parts at 0.004 = 0.02.
            event(
                "m-voice",
                &app.manager.id,
                "voice_outbound",
                "+14155550100",
                61
            ),
            event("m-sms", &app.manager.id, "sms_outbound", "+14155550100", 5),
            // Rollup One: 60 s at the catch-all 0.05/min 1/1 = 0.05 (on the manager).
            event("r-voice", &rollup.id, "voice_outbound", "+442079460000", 60),
            // Rollup Two: a number for a month, 1.00 (on the manager).
            event(
                "r-rent",
                &rollup_rental.id,
                "number_rental",
                "+14155550123",
                1
            ),
            // Own: 10 parts = 0.04 and 120 s at 0.01/min = 0.02.
            event("o-sms", &own.id, "sms_outbound", "+14155550100", 10),
            event("o-voice", &own.id, "voice_outbound", "+14155550100", 120),
        ]))
        .await;
    assert_eq!(reply.statuses(), ["accepted"; 6], "{}", reply.body);
    Tree {
        own,
        rollup,
        rollup_rental,
    }
}

/// The caller's invoices, waiting (briefly) for the background task to write `count`.
async fn invoices_of(app: &TestApp, key: &str, count: usize) -> Vec<Value> {
    for _ in 0..200 {
        let reply = app.get("/v2/invoices", key).await;
        reply.assert_status(200);
        let data = reply.body["data"].as_array().unwrap().clone();
        if data.len() >= count {
            return data;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the background task did not close the month");
}

#[tokio::test]
async fn the_month_closes_into_invoices_that_tie_to_the_events_and_money_sent() {
    let app = spawn_app().await;
    let tree = january_activity(&app).await;

    app.clock.advance(past_january_end());
    let listed = invoices_of(&app, &app.manager.key, 1).await;

    let invoice = &listed[0];
    assert_eq!(invoice["period_start"], "2026-01-01");
    assert_eq!(invoice["period_end"], "2026-01-31");
    // 0.02 + 0.02 own, 0.05 + 1.00 of the rollup accounts.
    assert_eq!(invoice["opening_balance"], "0.00");
    assert_eq!(invoice["movements"]["usage"], "-1.09");
    assert_eq!(invoice["movements"]["credits"], "100.00");
    assert_eq!(invoice["closing_balance"], "98.91");
    assert_eq!(invoice["amount_due"], "0.00");
    assert_eq!(invoice["paid"], true);
    let id = invoice["invoice_id"].as_str().unwrap();
    let detail = app
        .get(&format!("/v2/invoices/{id}"), &app.manager.key)
        .await;
    detail.assert_status(200);
    let rollups = &detail.body["data"]["rollup_accounts"];
    assert_eq!(
        rollups,
        &json!([
            {"account_id": tree.rollup.id, "business_name": "Rollup One", "usage": "-0.05"},
            {"account_id": tree.rollup_rental.id, "business_name": "Rollup Two", "usage": "-1.00"},
        ])
    );
    // The manager sees its own rates.
    let lines = detail.body["data"]["lines"].as_array().unwrap();
    let voice = lines
        .iter()
        .find(|l| l["product"] == "voice_outbound" && l.get("account_id").is_none())
        .unwrap();
    assert_eq!(voice["rate"], "0.010000000");
    assert_eq!(voice["billed_quantity"], 120);

    // The managed account that pays for itself: its own invoice, without any rate.
    let own = invoices_of(&app, &tree.own.key, 1).await;
    assert_eq!(own[0]["movements"]["usage"], "-0.06");
    assert_eq!(own[0]["movements"]["credits"], "20.00");
    assert_eq!(own[0]["movements"]["adjustments"], "-1.50");
    assert_eq!(own[0]["closing_balance"], "18.44");
    let own_id = own[0]["invoice_id"].as_str().unwrap();
    for key in [&tree.own.key, &app.manager.key] {
        let detail = app.get(&format!("/v2/invoices/{own_id}"), key).await;
        detail.assert_status(200);
        let text = detail.body.to_string();
        assert!(!text.contains("\"rate"), "{text}");
        assert!(!text.contains("billed_quantity"), "{text}");
    }
    let by_manager = app
        .get(
            &format!("/v2/invoices?filter%5Baccount_id%5D={}", tree.own.id),
            &app.manager.key,
        )
        .await;
    by_manager.assert_status(200);
    assert_eq!(by_manager.body["data"][0]["invoice_id"], own_id);

    // A rollup account has none, and is told why.
    let refused = app.get("/v2/invoices", &tree.rollup.key).await;
    refused.assert_error(403, "10010", None);
    assert!(
        refused.error()["detail"]
            .as_str()
            .unwrap()
            .contains("manager's invoice")
    );
    app.get(
        &format!("/v2/invoices?filter%5Baccount_id%5D={}", tree.rollup.id),
        &app.manager.key,
    )
    .await
    .assert_error(422, "40004", Some(("parameter", "filter[account_id]")));

    // Another tenant's invoice is not found, by id or by filter.
    app.get(&format!("/v2/invoices/{id}"), &app.other_manager.key)
        .await
        .assert_error(404, "10005", None);
    app.get(&format!("/v2/invoices/{own_id}"), &app.standard.key)
        .await
        .assert_error(404, "10005", None);
    app.get(
        &format!("/v2/invoices?filter%5Baccount_id%5D={}", tree.own.id),
        &app.other_manager.key,
    )
    .await
    .assert_error(404, "10005", None);

    // Every paying account got one, numbered 1..=4 without a gap: the two managers, the
    // standard account and the managed account that pays for itself.
    invoices_of(&app, &app.standard.key, 1).await;
    invoices_of(&app, &app.other_manager.key, 1).await;
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT invoice_number FROM invoices ORDER BY invoice_number")
            .fetch_all(&app.db.read)
            .await
            .unwrap();
    assert_eq!(numbers, [1, 2, 3, 4]);
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn an_invoice_with_an_amount_due_is_unpaid_until_the_balance_recovers() {
    let app = spawn_app().await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-01-01T00:00:00Z",
    )
    .await;
    app.operator_post(
        &format!("/admin/v1/accounts/{}/credit_limit", app.standard.id),
        None,
        json!({"amount": "10.00"}),
    )
    .await
    .assert_status(200);
    app.ingest(json!([event(
        "s-rent",
        &app.standard.id,
        "number_rental",
        "+14155550111",
        3
    )]))
    .await
    .assert_status(200);
    app.clock.advance(past_january_end());
    let closed = close(&app, january(), &app.standard.id).await;
    assert_eq!(closed.invoice.amount_due().to_decimal_string(2), "3.00");

    let listed = invoices_of(&app, &app.standard.key, 1).await;
    assert_eq!(listed[0]["amount_due"], "3.00");
    assert_eq!(listed[0]["paid"], false);
    credit(&app, &app.standard.id, "3.00", "pay-up").await;
    let listed = invoices_of(&app, &app.standard.key, 1).await;
    assert_eq!(listed[0]["paid"], true);
    assert_eq!(
        listed[0]["amount_due"], "3.00",
        "a closed invoice never changes"
    );
}

#[tokio::test]
async fn late_usage_lands_on_the_next_invoice_marked_with_its_month() {
    let app = spawn_app().await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-01-01T00:00:00Z",
    )
    .await;
    let standard = &app.standard;
    app.ingest(json!([event(
        "jan",
        &standard.id,
        "sms_outbound",
        "+14155550100",
        5
    )]))
    .await
    .assert_status(200);
    app.clock.advance(past_january_end());
    let january_invoice = close(&app, january(), &standard.id).await.invoice;
    let january_pdf = invoices::repo::pdf(
        &mut app.db.read.acquire().await.unwrap(),
        &january_invoice.id,
    )
    .await
    .unwrap()
    .unwrap()
    .2;

    // In February a switch reports a January message it had held back.
    let late = json!([{"id": "late-jan", "account_id": standard.id, "product": "sms_outbound",
        "destination": "+14155550100", "quantity": 25, "occurred_at": "2026-01-20T09:00:00Z"}]);
    assert_eq!(app.ingest(late).await.statuses(), ["accepted"]);
    app.clock.advance(TimeDelta::days(28));

    let february = close(&app, Period::parse("2026-02").unwrap(), &standard.id).await;
    let usage = february
        .invoice
        .statement
        .totals
        .of(invoices::Category::Usage);
    assert_eq!(usage.to_decimal_string(2), "-0.10", "25 parts at 0.004");
    let detail = app
        .get(
            &format!("/v2/invoices/{}", february.invoice.id),
            &standard.key,
        )
        .await;
    let lines = detail.body["data"]["lines"].as_array().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["usage_month"], "2026-01");
    assert_eq!(lines[0]["amount"], "-0.10");
    let text = pdf_text(&invoices::pdf::render(&february.invoice).unwrap());
    assert!(text.contains("Late usage"), "{text}");
    assert!(text.contains("used in January 2026"), "{text}");

    // January's invoice did not change.
    let again = close(&app, january(), &standard.id).await;
    assert!(!again.created);
    assert_eq!(again.invoice.statement, january_invoice.statement);
    let january_pdf_now = invoices::repo::pdf(
        &mut app.db.read.acquire().await.unwrap(),
        &january_invoice.id,
    )
    .await
    .unwrap()
    .unwrap()
    .2;
    assert_eq!(january_pdf_now, january_pdf);
    assert_eq!(
        january_invoice
            .statement
            .totals
            .of(invoices::Category::Usage)
            .to_decimal_string(2),
        "-0.02"
    );
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn closing_twice_or_from_two_servers_at_once_makes_one_invoice() {
    let app = spawn_app().await;
    january_activity(&app).await;
    let second = app.second_server().await;
    app.clock.advance(past_january_end());

    // Both servers' background tasks and four direct calls race for the same month.
    let clock = clock(&app);
    let manager = AccountId::parse(&app.manager.id).unwrap();
    let actor = operator();
    let attempts =
        (0..4).map(|_| invoices::close_period(&app.db, &clock, january(), manager, &actor));
    let closed: Vec<Closed> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let everyone = invoices::close_all(&app.db, &clock, january(), &operator())
        .await
        .unwrap();
    assert_eq!(everyone.failed, 0);

    let ids: std::collections::BTreeSet<&str> =
        closed.iter().map(|c| c.invoice.id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one invoice for the manager's January");
    assert!(closed.iter().filter(|c| c.created).count() <= 1);
    let rows: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM invoices WHERE account_id = $1 AND period = '2026-01'",
    )
    .bind(&app.manager.id)
    .fetch_one(&app.db.read)
    .await
    .unwrap();
    assert_eq!(rows, 1);
    // The second server serves it too.
    let reply = app
        .client
        .get(format!("{second}/v2/invoices"))
        .bearer_auth(&app.manager.key)
        .send()
        .await
        .unwrap();
    let body = TestApp::read(reply).await.body;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    // Four paying accounts, four numbers, no gap (verify-ledger checks the counter too).
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT invoice_number FROM invoices ORDER BY invoice_number")
            .fetch_all(&app.db.read)
            .await
            .unwrap();
    assert_eq!(numbers, [1, 2, 3, 4]);
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_month_not_yet_ended_is_refused() {
    let app = spawn_app().await;
    let early = invoices::close_period(
        &app.db,
        &clock(&app),
        january(),
        AccountId::parse(&app.standard.id).unwrap(),
        &operator(),
    )
    .await;
    assert!(
        matches!(early, Err(invoices::InvoiceError::NotEnded { .. })),
        "{early:?}"
    );
    // Nor just after the end, while charges stamped in it may still be committing.
    app.clock
        .advance(TimeDelta::days(30) + TimeDelta::hours(12) + TimeDelta::minutes(1));
    let settling = invoices::close_all(&app.db, &clock(&app), january(), &operator()).await;
    assert!(matches!(
        settling,
        Err(invoices::InvoiceError::NotEnded { .. })
    ));
    let rollup = app
        .managed_of(&app.manager, "Rolls", json!({"rollup_billing": true}))
        .await;
    app.clock.advance(TimeDelta::minutes(5));
    let refused = invoices::close_period(
        &app.db,
        &clock(&app),
        january(),
        AccountId::parse(&rollup.id).unwrap(),
        &operator(),
    )
    .await;
    assert!(matches!(refused, Err(invoices::InvoiceError::RollupBilled)));
}

#[tokio::test]
async fn the_pdf_carries_the_totals_and_a_managed_accounts_carries_no_rate() {
    let app = spawn_app().await;
    let tree = january_activity(&app).await;
    let name = steward::accounts::OrganizationName::parse("Acme Telecom").unwrap();
    steward::platform::set_name(&mut app.db.write.acquire().await.unwrap(), &name, 0)
        .await
        .unwrap();
    app.clock.advance(past_january_end());
    let manager_invoice = close(&app, january(), &app.manager.id).await.invoice;
    let own_invoice = close(&app, january(), &tree.own.id).await.invoice;

    let link = app
        .get(
            &format!("/v2/invoices/{}?action=link", manager_invoice.id),
            &app.manager.key,
        )
        .await;
    link.assert_status(200);
    let url = link.body["data"]["download_url"]
        .as_str()
        .unwrap()
        .to_owned();
    // A browser download: no key at all.
    let download = app.client.get(&url).send().await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "application/pdf");
    let bytes = download.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF"));
    let text = pdf_text(&bytes);
    for expected in [
        "Acme Telecom",
        "Reseller One",
        "Manager@Reseller.example",
        "INV-0000",
        "Period: 2026-01-01 to 2026-01-31",
        "98.91",
        "100.00",
        "-1.09",
        "Nothing due",
        "Rollup One",
        "Total for Rollup One",
        "Rollup Two",
        "Total for Rollup Two",
        "1.00",
        "0.01 / min",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    // The managed account's document: its totals, quantities and amounts, no rate.
    let own_url = app
        .get(
            &format!("/v2/invoices/{}?action=link", own_invoice.id),
            &tree.own.key,
        )
        .await
        .body["data"]["download_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let own_text = pdf_text(
        &app.client
            .get(&own_url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    );
    for expected in [
        "Own Pays",
        "18.44",
        "-1.50",
        "porting fee",
        "10 parts",
        "0.04",
    ] {
        assert!(
            own_text.contains(expected),
            "{expected:?} missing from:\n{own_text}"
        );
    }
    for hidden in ["Rate", "/ min", "/ part", "0.004", "0.01 "] {
        assert!(
            !own_text.contains(hidden),
            "{hidden:?} shown to a managed account:\n{own_text}"
        );
    }

    // Tampered, then expired.
    let tampered = url.replace("signature=", "signature=00");
    let reply = TestApp::read(app.client.get(&tampered).send().await.unwrap()).await;
    reply.assert_error(403, "10010", None);
    assert!(
        reply.error()["detail"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
    app.clock.advance(TimeDelta::seconds(
        steward::http::invoices::INVOICE_LINK_TTL_S,
    ));
    let reply = TestApp::read(app.client.get(&url).send().await.unwrap()).await;
    reply.assert_error(403, "10010", None);
    assert!(
        reply.error()["detail"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Without a link: the owner's key or its manager's, nobody else's.
    let path = format!("{}/v2/invoices/{}/pdf", app.address, own_invoice.id);
    for (key, status) in [
        (Some(&tree.own.key), 200),
        (Some(&app.manager.key), 200),
        (Some(&app.other_manager.key), 404),
        (None, 401),
    ] {
        let mut request = app.client.get(&path);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        assert_eq!(request.send().await.unwrap().status(), status);
    }
    // Rendering is deterministic: the stored document is what the invoice renders to.
    assert_eq!(
        invoices::pdf::render(&manager_invoice).unwrap(),
        bytes.to_vec()
    );
}

#[tokio::test]
async fn verify_ledger_catches_a_tampered_invoice() {
    let app = spawn_app().await;
    january_activity(&app).await;
    app.clock.advance(past_january_end());
    let invoice = close(&app, january(), &app.manager.id).await.invoice;
    app.assert_ledger_clean().await;

    for (column, figure) in [
        ("closing_balance_nanos", "closing balance"),
        ("usage_nanos", "usage"),
        ("opening_balance_nanos", "opening balance"),
    ] {
        let tamper = |delta: i64| {
            let sql = format!("UPDATE invoices SET {column} = {column} + $1 WHERE id = $2");
            let db = app.db.clone();
            let id = invoice.id.clone();
            async move {
                sqlx::query(&sql)
                    .bind(delta)
                    .bind(id)
                    .execute(&db.write)
                    .await
                    .unwrap();
            }
        };
        tamper(10_000_000).await;
        let verdict = steward::ledger::verify(&app.db).await.unwrap();
        let Err(steward::ledger::Violation::Invoice(violation)) = verdict else {
            panic!("{column}: not caught: {verdict:?}");
        };
        assert!(violation.to_string().contains(figure), "{violation}");
        tamper(-10_000_000).await;
        app.assert_ledger_clean().await;
    }
    // A line changed, too.
    sqlx::query("UPDATE invoice_lines SET amount_nanos = amount_nanos - 1 WHERE invoice_id = $1 AND seq = 0")
        .bind(&invoice.id)
        .execute(&app.db.write)
        .await
        .unwrap();
    let verdict = steward::ledger::verify(&app.db).await.unwrap();
    assert!(
        matches!(verdict, Err(steward::ledger::Violation::Invoice(_))),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn the_cli_closes_a_past_month_once_and_refuses_one_not_ended() {
    let app = spawn_app().await;
    // The binary runs on the real clock, long after this test's January.
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
            .arg("admin")
            .args(args)
            .args(["--database-url", &app.database_url])
            .output()
            .unwrap();
        (
            output.status.success(),
            serde_json::from_slice::<Value>(&output.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, first, stderr) = run(&["close-invoices", "--period", "2026-01"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        first["closed"].as_u64().unwrap() + first["already_closed"].as_u64().unwrap(),
        3
    );
    let (ok, one, stderr) = run(&[
        "close-invoices",
        "--period",
        "2026-01",
        "--account",
        &app.standard.id,
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(one["created"], false);
    assert_eq!(one["closing_balance"], "0.00");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invoices")
        .fetch_one(&app.db.read)
        .await
        .unwrap();
    assert_eq!(count, 3);

    let (ok, _, stderr) = run(&["close-invoices", "--period", "2999-01"]);
    assert!(!ok);
    assert!(stderr.contains("has not ended"), "{stderr}");
    let (ok, _, stderr) = run(&["close-invoices", "--period", "2026-13"]);
    assert!(!ok);
    assert!(stderr.contains("YYYY-MM"), "{stderr}");
    let (ok, named, stderr) = run(&["set-platform-name", "--name", "Acme Telecom"]);
    assert!(ok, "{stderr}");
    assert_eq!(named["platform_name"], "Acme Telecom");
    // The closing is on each account's audit trail.
    let trail = app.get("/v2/audit_events", &app.standard.key).await;
    assert!(
        trail.body.to_string().contains("invoice.close"),
        "{}",
        trail.body
    );
}

#[tokio::test]
async fn the_charges_summary_and_breakdown_read_the_same_ledger() {
    let app = spawn_app().await;
    let tree = january_activity(&app).await;
    // February: the rollup account keeps its number and rents a new one.
    app.clock.advance(past_january_end());
    let february = json!([
        {"id": "r-rent-2", "account_id": tree.rollup_rental.id, "product": "number_rental",
         "destination": "+14155550123", "quantity": 1, "occurred_at": "2026-02-01T00:06:00Z"},
        {"id": "r-rent-new", "account_id": tree.rollup_rental.id, "product": "number_rental",
         "destination": "+18005550199", "quantity": 1, "occurred_at": "2026-02-01T00:06:00Z"},
        {"id": "m-voice-2", "account_id": app.manager.id, "product": "voice_outbound",
         "destination": "+14155550100", "quantity": 30, "occurred_at": "2026-02-01T00:06:00Z"},
    ]);
    assert_eq!(app.ingest(february).await.statuses(), ["accepted"; 3]);
    app.operator_post(
        &format!("/admin/v1/accounts/{}/adjustments", app.manager.id),
        Some("m-adj"),
        json!({"amount": "2.00", "reason": "goodwill"}),
    )
    .await
    .assert_status(200);

    let summary = app
        .get(
            "/v2/charges_summary?start_date=2026-02-01&end_date=2026-03-01",
            &app.manager.key,
        )
        .await;
    summary.assert_status(200);
    let data = &summary.body["data"];
    assert_eq!(data["user_id"], app.manager.id);
    assert_eq!(data["start_date"], "2026-02-01");
    assert_eq!(data["end_date"], "2026-03-01");
    assert_eq!(
        data["summary"]["lines"],
        json!([
            {"type": "simple", "name": "Outbound calls (seconds)", "alias": "voice_outbound",
             "quantity": 30, "amount": "0.01"},
            {"type": "comparative", "name": "Number rental", "alias": "number_rental",
             "new_this_month": {"quantity": 1, "mrc": "1.00", "otc": "0.00"},
             "existing_this_month": {"quantity": 1, "mrc": "1.00", "otc": "0.00"}},
        ])
    );
    assert_eq!(
        data["summary"]["adjustments"],
        json!([{"amount": "-2.00", "description": "goodwill", "event_date": "2026-02-01"}])
    );
    assert_eq!(
        data["total"],
        json!({"new_mrc": "1.00", "new_otc": "0.00", "existing_mrc": "1.00", "other": "0.01",
               "credits": "0.00", "ledger_adjustments": "-2.00", "grand_total": "0.01"})
    );
    // January by the same rules: the credit, and the usage the invoice shows.
    let january = app
        .get(
            "/v2/charges_summary?start_date=2026-01-01&end_date=2026-02-01",
            &app.manager.key,
        )
        .await;
    assert_eq!(january.body["data"]["total"]["credits"], "-100.00");
    assert_eq!(january.body["data"]["total"]["grand_total"], "-98.91");

    let breakdown = app
        .get(
            "/v2/charges_breakdown?start_date=2026-02-01",
            &app.manager.key,
        )
        .await;
    breakdown.assert_status(200);
    assert_eq!(breakdown.body["data"]["end_date"], "2026-03-01");
    let results = breakdown.body["data"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["tn"], "+14155550123");
    assert_eq!(results[0]["charge_type"], "local");
    assert_eq!(results[0]["service_owner_user_id"], tree.rollup_rental.id);
    assert_eq!(
        results[0]["services"],
        json!([{"name": "Number rental", "cost_type": "MRC", "cost": "1.00"}])
    );
    assert_eq!(results[1]["charge_type"], "toll_free");
    let csv = app
        .client
        .get(format!(
            "{}/v2/charges_breakdown?start_date=2026-02-01&format=csv",
            app.address
        ))
        .bearer_auth(&app.manager.key)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(
        csv.starts_with("tn,charge_type,service_owner_user_id"),
        "{csv}"
    );
    assert!(csv.contains("+18005550199,toll_free,"), "{csv}");

    // A managed account: its summary (amounts, no rates), never its breakdown per number.
    let own = app
        .get(
            "/v2/charges_summary?start_date=2026-01-01&end_date=2026-02-01",
            &tree.own.key,
        )
        .await;
    own.assert_status(200);
    assert_eq!(own.body["data"]["total"]["grand_total"], "-18.44");
    assert!(!own.body.to_string().contains("rate"));
    let refused = app
        .get("/v2/charges_breakdown?start_date=2026-01-01", &tree.own.key)
        .await;
    refused.assert_error(403, "10010", None);
    assert!(
        refused.error()["detail"]
            .as_str()
            .unwrap()
            .contains("managed by its manager")
    );
    app.get(
        "/v2/charges_summary?start_date=2026-01-01&end_date=2026-02-01",
        &tree.rollup.key,
    )
    .await
    .assert_error(403, "10010", None);
}

#[tokio::test]
async fn bad_charge_ranges_are_400s_naming_the_parameter() {
    let app = spawn_app().await;
    for (query, parameter) in [
        ("end_date=2026-01-02", "start_date"),
        ("start_date=2026-01-01", "end_date"),
        ("start_date=01/01/2026&end_date=2026-01-02", "start_date"),
        ("start_date=2026-01-01&end_date=2026-02-30", "end_date"),
        ("start_date=2026-01-05&end_date=2026-01-01", "end_date"),
        ("start_date=2026-01-01&end_date=2026-01-01", "end_date"),
        ("start_date=2026-01-01&end_date=2026-02-02", "end_date"),
    ] {
        app.get(&format!("/v2/charges_summary?{query}"), &app.manager.key)
            .await
            .assert_error(400, "10015", Some(("parameter", parameter)));
    }
    app.get(
        "/v2/charges_breakdown?start_date=2026-01-01&end_date=2026-03-01",
        &app.manager.key,
    )
    .await
    .assert_error(400, "10015", Some(("parameter", "end_date")));
    app.get(
        "/v2/charges_breakdown?start_date=2026-01-01&format=xml",
        &app.manager.key,
    )
    .await
    .assert_error(400, "10015", Some(("parameter", "format")));
    for (path, parameter) in [
        ("/v2/invoices?sort=created_at", "sort"),
        ("/v2/invoices?filter%5Bstatus%5D=paid", "filter[status]"),
        (
            "/v2/invoices/00000000-0000-0000-0000-000000000000?action=pdf",
            "action",
        ),
    ] {
        app.get(path, &app.manager.key).await.assert_error(
            400,
            "10015",
            Some(("parameter", parameter)),
        );
    }
    app.get(
        "/v2/invoices/00000000-0000-0000-0000-000000000000",
        &app.manager.key,
    )
    .await
    .assert_error(404, "10005", None);
}

#[tokio::test]
async fn card_payments_are_on_the_invoice_of_the_month_they_were_made() {
    use crate::payments::{VISA, add_card, top_up_amount};
    let app = spawn_app().await;
    add_card(&app, &app.standard.key, None, VISA).await;
    top_up_amount(&app, &app.standard.key, None, "25.00")
        .await
        .assert_status(200);
    app.clock.advance(past_january_end());

    let invoice = close(&app, january(), &app.standard.id).await.invoice;
    let listed = invoices_of(&app, &app.standard.key, 1).await;
    assert_eq!(listed[0]["movements"]["payments"], "25.00");
    assert_eq!(listed[0]["closing_balance"], "25.00");
    let detail = app
        .get(&format!("/v2/invoices/{}", invoice.id), &app.standard.key)
        .await;
    let lines = detail.body["data"]["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["category"], "payment");
    assert_eq!(lines[0]["amount"], "25.00");
    let text = pdf_text(&invoices::pdf::render(&invoice).unwrap());
    assert!(text.contains("Card payment"), "{text}");
    app.assert_ledger_clean().await;
}
