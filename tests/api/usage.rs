use futures::future::join_all;
use serde_json::json;

use crate::helpers::{BASE_PRICES, event, spawn_app};

#[tokio::test]
async fn usage_is_rated_exactly_and_charged_to_the_right_balance() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let own = app.managed_of(&app.manager, "Own Balance", json!({})).await;
    let rollup = app
        .managed_of(&app.manager, "Rolls Up", json!({"rollup_billing": true}))
        .await;

    let reply = app
        .ingest(json!([
            event("call-1", &own.id, "voice_outbound", "+14155550100", 61), // 120 s at 0.01/min = 0.02
            event("call-2", &own.id, "voice_outbound", "+442079460000", 61), // catch-all 1/1: 61 s at 0.05 = 0.0508333..→ 0.050833333
            event("sms-1", &rollup.id, "sms_outbound", "+14155550100", 3),   // 3 × 0.004 = 0.012
            event(
                "rent-1",
                &app.manager.id,
                "number_rental",
                "+14155550199",
                2
            ), // 2 × 1.00
        ]))
        .await;

    reply.assert_status(200);
    assert_eq!(reply.statuses(), ["accepted"; 4]);
    assert_eq!(app.balance_of(&own.key).await, "-0.07");
    // Rollup spend lands on the manager: 0.012 + 2.00.
    assert_eq!(app.balance_of(&app.manager.key).await, "-2.01");
    assert_eq!(app.balance_of(&rollup.key).await, "0.00");
    let costs: Vec<(String, i64)> =
        sqlx::query_as("SELECT event_id, cost_nanos FROM usage_records ORDER BY event_id")
            .fetch_all(&app.db.read)
            .await
            .unwrap();
    assert_eq!(
        costs,
        [
            ("call-1".into(), 20_000_000),
            ("call-2".into(), 50_833_333),
            ("rent-1".into(), 2_000_000_000),
            ("sms-1".into(), 12_000_000)
        ]
    );
    // The manager's charge for the rollup account is tagged with it.
    let tagged: Vec<(String, i64)> = sqlx::query_as(
        "SELECT spender_account_id, amount_nanos FROM postings WHERE spender_account_id IS NOT NULL",
    )
    .fetch_all(&app.db.read)
    .await
    .unwrap();
    assert_eq!(tagged, [(rollup.id.clone(), -12_000_000)]);
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_retried_batch_charges_nothing_twice() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let own = app.managed_of(&app.manager, "Retry Co", json!({})).await;
    let batch = json!(
        (0..50)
            .map(|n| event(
                &format!("ev-{n}"),
                &own.id,
                "sms_outbound",
                "+15550000000",
                1
            ))
            .collect::<Vec<_>>()
    );

    let first = app.ingest(batch.clone()).await;
    let again = app.ingest(batch.clone()).await;
    // And the same batch sent many times at once.
    let concurrent = join_all((0..4).map(|_| app.ingest(batch.clone()))).await;

    assert!(
        first.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "accepted")
    );
    assert!(
        again.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "duplicate")
    );
    for reply in concurrent {
        assert!(
            reply.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == "duplicate")
        );
    }
    assert_eq!(app.balance_of(&own.key).await, "-0.20");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn concurrent_overlapping_batches_charge_each_event_once() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let own = app.managed_of(&app.manager, "Overlap Co", json!({})).await;
    let batches: Vec<_> = (0..6)
        .map(|b| {
            json!(
                (b * 10..b * 10 + 30)
                    .map(|n| event(
                        &format!("ov-{n}"),
                        &own.id,
                        "sms_outbound",
                        "+15550000000",
                        1
                    ))
                    .collect::<Vec<_>>()
            )
        })
        .collect();

    let replies = join_all(batches.into_iter().map(|b| app.ingest(b))).await;

    let accepted: usize = replies
        .iter()
        .map(|r| r.statuses().iter().filter(|s| **s == "accepted").count())
        .sum();
    assert_eq!(accepted, 80); // ids 0..80
    assert_eq!(app.balance_of(&own.key).await, "-0.32");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn batches_sharing_ids_in_opposite_orders_never_fail() {
    let app = crate::helpers::spawn_app_with(|s| s.body_limit_bytes = 4 * 1024 * 1024).await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let own = app.managed_of(&app.manager, "Crossing Co", json!({})).await;
    for round in 0..3 {
        let forward: Vec<_> = (0..2_000)
            .map(|n| {
                let id = format!("x{round}-{n:04}");
                event(&id, &own.id, "sms_outbound", "+15550000000", 1)
            })
            .collect();
        let backward: Vec<_> = forward.iter().rev().cloned().collect();

        let (a, b) = tokio::join!(app.ingest(json!(forward)), app.ingest(json!(backward)));

        a.assert_status(200);
        b.assert_status(200);
        let accepted = [a.statuses(), b.statuses()]
            .concat()
            .into_iter()
            .filter(|s| *s == "accepted")
            .count();
        assert_eq!(accepted, 2_000, "round {round}");
    }
    // 6,000 messages at 0.004.
    assert_eq!(app.balance_of(&own.key).await, "-24.00");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn bad_events_are_rejected_one_by_one_with_a_reason() {
    let app = spawn_app().await;
    app.import_prices("product,prefix,rate,initial_increment_s,subsequent_increment_s\nvoice_outbound,1,0.01,60,60\n", "platform_default=true")
        .await
        .assert_status(200);
    let own = app.managed_of(&app.manager, "Bad Co", json!({})).await;
    let mut negative = event("neg", &own.id, "voice_outbound", "+14155550100", 1);
    negative["quantity"] = json!(-5);

    let reply = app
        .ingest(json!([
            event("ok", &own.id, "voice_outbound", "+14155550100", 30),
            negative,
            event("no-rate", &own.id, "voice_outbound", "+442079460000", 30),
            event(
                "who",
                "00000000-0000-0000-0000-000000000000",
                "voice_outbound",
                "+14155550100",
                30
            ),
            event("fax", &own.id, "fax", "+14155550100", 1),
            event("ok", &own.id, "voice_outbound", "+14155550100", 30),
            // Wrongly typed fields and non-objects spoil only their own event.
            json!({"id": "typed", "account_id": 42, "product": "voice_outbound",
                   "destination": "+14155550100", "quantity": 30, "occurred_at": "2026-01-01T12:00:30Z"}),
            json!("not an event"),
            event("after", &own.id, "voice_outbound", "+14155550100", 30),
        ]))
        .await;

    let results = reply.body["data"].as_array().unwrap();
    let summary: Vec<(Option<&str>, &str)> = results
        .iter()
        .map(|r| (r["id"].as_str(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            (Some("ok"), "accepted"),
            (Some("neg"), "rejected"),
            (Some("no-rate"), "suspended"),
            (Some("who"), "suspended"),
            (Some("fax"), "rejected"),
            (Some("ok"), "duplicate"),
            (Some("typed"), "rejected"),
            (None, "rejected"),
            (Some("after"), "accepted"),
        ]
    );
    for malformed in &results[6..8] {
        let reason = malformed["reason"].as_str().unwrap();
        assert!(reason.contains("malformed event"), "{reason}");
    }
    assert!(
        results[1]["reason"]
            .as_str()
            .unwrap()
            .contains("bad quantity")
    );
    // Well-formed but not chargeable now: kept in suspense, not refused.
    assert_eq!(results[2]["reason_code"], "no_rate");
    assert_eq!(results[3]["reason_code"], "unknown_account");
    assert!(
        results[4]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown product")
    );
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn ingestion_needs_an_ingest_key_and_bounds_the_batch() {
    let app = spawn_app().await;
    let as_manager = app
        .request(
            reqwest::Method::POST,
            "/v2/usage_events",
            Some(&app.manager.key),
            Some(json!({"events": []})),
        )
        .await;
    as_manager.assert_error(401, "10009", None);
    app.ingest(json!([])).await.assert_status(200);
    let too_many: Vec<_> = (0..10_001)
        .map(|n| json!({"id": format!("x{n}")}))
        .collect();
    let big = crate::helpers::spawn_app_with(|s| s.body_limit_bytes = 4 * 1024 * 1024).await;
    big.ingest(json!(too_many))
        .await
        .assert_error(422, "40001", Some(("pointer", "/events")));
    app.request(
        reqwest::Method::POST,
        "/v2/usage_events",
        Some(&app.ingest_key),
        Some(json!({})),
    )
    .await
    .assert_error(422, "10004", Some(("pointer", "/events")));
}

#[tokio::test]
async fn a_manager_reads_a_managed_accounts_records_with_costs_and_the_account_without() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let own = app.managed_of(&app.manager, "Records Co", json!({})).await;
    app.ingest(json!([
        event("c1", &own.id, "voice_outbound", "+14155550100", 61),
        event("m1", &own.id, "sms_outbound", "+14155550100", 2),
    ]))
    .await
    .assert_status(200);

    let mine = app
        .get(
            "/v2/detail_records?filter%5Brecord_type%5D=sip-trunking",
            &own.key,
        )
        .await;
    mine.assert_status(200);
    let call = &mine.body["data"][0];
    assert_eq!(call["uuid"], "c1");
    assert_eq!(call["call_sec"], 61);
    // Billed seconds would reveal the increments (60/60) of the manager's list.
    assert!(call.get("billed_sec").is_none());
    assert!(call.get("cost").is_none() && call.get("rate").is_none());
    let managers_calls = app
        .get(
            &format!(
                "/v2/detail_records?filter%5Brecord_type%5D=sip-trunking&filter%5Baccount_id%5D={}",
                own.id
            ),
            &app.manager.key,
        )
        .await;
    assert_eq!(managers_calls.body["data"][0]["billed_sec"], 120);

    let managers_view = app
        .get(
            &format!(
                "/v2/detail_records?filter%5Brecord_type%5D=messaging&filter%5Baccount_id%5D={}",
                own.id
            ),
            &app.manager.key,
        )
        .await;
    managers_view.assert_status(200);
    let message = &managers_view.body["data"][0];
    assert_eq!(message["record_type"], "message_detail_record");
    assert_eq!(message["parts"], 2);
    assert_eq!(message["cost"], "0.008000000");
    assert_eq!(message["rate"], "0.004000000");

    // Another manager cannot read them; the record type is required.
    app.get(
        &format!(
            "/v2/detail_records?filter%5Brecord_type%5D=messaging&filter%5Baccount_id%5D={}",
            own.id
        ),
        &app.other_manager.key,
    )
    .await
    .assert_error(404, "10005", None);
    app.get("/v2/detail_records", &own.key).await.assert_error(
        422,
        "10004",
        Some(("parameter", "filter[record_type]")),
    );
    let ranged = app
        .get("/v2/detail_records?filter%5Brecord_type%5D=sip-trunking&filter%5Bstarted_at%5D%5Bgte%5D=2026-01-02", &own.key)
        .await;
    assert_eq!(ranged.body["meta"]["total_results"], 0);
}

#[tokio::test]
async fn verify_ledger_names_a_tampered_balance() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let own = app.managed_of(&app.manager, "Tamper Co", json!({})).await;
    app.ingest(json!([event(
        "t1",
        &own.id,
        "sms_outbound",
        "+15550000000",
        1
    )]))
    .await
    .assert_status(200);
    app.assert_ledger_clean().await;

    sqlx::query("UPDATE book_balances SET balance_nanos = balance_nanos + 1 WHERE book = $1")
        .bind(format!("balance:{}", own.id))
        .execute(&app.db.write)
        .await
        .unwrap();

    let verdict = steward::ledger::verify(&app.db).await.unwrap();
    let violation = verdict.unwrap_err().to_string();
    assert!(violation.contains(&own.id), "{violation}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "admin",
            "verify-ledger",
            "--database-url",
            &app.database_url,
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("caches"));
}

#[tokio::test]
async fn verify_ledger_names_charges_on_the_wrong_balance_and_entries_without_usage() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let rollup = app
        .managed_of(&app.manager, "Rollup Co", json!({"rollup_billing": true}))
        .await;
    let own = app.managed_of(&app.manager, "Own Co", json!({})).await;
    // Two batches, so that each event has a journal entry of its own.
    for (id, account) in [("p1", &rollup.id), ("p2", &own.id)] {
        app.ingest(json!([event(
            id,
            account,
            "sms_outbound",
            "+15550000000",
            1
        )]))
        .await
        .assert_status(200);
    }
    app.assert_ledger_clean().await;
    let verdict = || async { steward::ledger::verify(&app.db).await.unwrap() };
    let manager_book = format!("balance:{}", app.manager.id);
    let own_book = format!("balance:{}", own.id);

    // A rollup charge recorded as paid by the managed account itself.
    let set_payer = "UPDATE usage_records SET payer_account_id = $1 WHERE event_id = $2";
    app.tamper(set_payer, &[&rollup.id, "p1"]).await;
    let violation = verdict().await.unwrap_err().to_string();
    assert!(
        violation.contains("p1") && violation.contains("not to"),
        "{violation}"
    );
    app.tamper(set_payer, &[&app.manager.id, "p1"]).await;
    app.assert_ledger_clean().await;

    // The manager's debit moved onto another account's balance, with the cached balances
    // moved along so that every book still matches its postings.
    let move_posting =
        "UPDATE postings SET book = $1 WHERE book = $2 AND spender_account_id IS NOT NULL";
    // Moves `nanos` of cached balance from one book to another (sums stay matched).
    let pool = &app.db.write;
    let move_cache = |from: String, to: String, nanos: i64| async move {
        let sql = "UPDATE book_balances SET balance_nanos = balance_nanos + $1 WHERE book = $2";
        for (book, delta) in [(from, -nanos), (to, nanos)] {
            sqlx::query(sql)
                .bind(delta)
                .bind(book)
                .execute(pool)
                .await
                .unwrap();
        }
    };
    app.tamper(move_posting, &[&own_book, &manager_book]).await;
    // The debit is -0.004: moving it is moving -4,000,000 nano-units.
    move_cache(manager_book.clone(), own_book.clone(), -4_000_000).await;
    let violation = verdict().await.unwrap_err().to_string();
    assert!(violation.contains("debits"), "{violation}");
    app.tamper(move_posting, &[&manager_book, &own_book]).await;
    move_cache(own_book.clone(), manager_book.clone(), -4_000_000).await;
    app.assert_ledger_clean().await;

    // A usage entry whose records are gone.
    app.tamper("DELETE FROM usage_records WHERE event_id = $1", &["p2"])
        .await;
    let violation = verdict().await.unwrap_err().to_string();
    assert!(violation.contains("no usage records"), "{violation}");
}

#[tokio::test]
async fn amounts_are_bounded_so_no_sum_can_overflow() {
    let app = spawn_app().await;
    // 9,000 per minute is the highest rate a list may hold; one cent more is refused.
    app.import_prices(
        "product,prefix,rate,initial_increment_s,subsequent_increment_s\nvoice_outbound,,9000.01,1,1\n",
        "platform_default=true",
    )
    .await
    .assert_error(422, "40001", None);
    app.import_prices(
        "product,prefix,rate,initial_increment_s,subsequent_increment_s\nvoice_outbound,,9000,1,1\n",
        "platform_default=true",
    )
    .await
    .assert_status(200);
    let own = app.managed_of(&app.manager, "Big Spender", json!({})).await;
    // 400,000 seconds at 9,000 a minute: 60,000,000.00 each.
    let call = |id: &str| event(id, &own.id, "voice_outbound", "+15550000000", 400_000);

    let reply = app
        .ingest(json!([call("b1"), call("b2"), call("b3")]))
        .await;

    assert_eq!(reply.statuses(), ["accepted", "rejected", "rejected"]);
    let reason = reply.body["data"][1]["reason"].as_str().unwrap();
    assert!(reason.contains("another batch"), "{reason}");
    assert_eq!(app.balance_of(&own.key).await, "-60000000.00");
    // Sent again alone, it is charged.
    let again = app.ingest(json!([call("b3")])).await;
    assert_eq!(again.body["data"][0]["status"], "accepted");
    assert_eq!(app.balance_of(&own.key).await, "-120000000.00");
    app.assert_ledger_clean().await;

    // Operator amounts carry the same bound; and a cached balance next to the limit of its
    // integer takes no further change. Either movement is refused and nothing is posted.
    let book = format!("balance:{}", app.standard.id);
    sqlx::query(
        "INSERT INTO book_balances (book, balance_nanos, updated_at_ms) VALUES ($1, $2, 0)",
    )
    .bind(&book)
    .bind(i64::MAX - 1)
    .execute(&app.db.write)
    .await
    .unwrap();
    let entries = || async {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries")
            .fetch_one(&app.db.read)
            .await
            .unwrap();
        count
    };
    let entries_before = entries().await;
    let credits = format!("/admin/v1/accounts/{}/credits", app.standard.id);
    // The amount is at fault here, the balance's state there.
    for (key, amount, code, source) in [
        (
            "big-1",
            "100000000.01",
            "40001",
            Some(("pointer", "/amount")),
        ),
        ("big-2", "1.00", "40004", None),
    ] {
        app.operator_post(
            &credits,
            Some(key),
            json!({"amount": amount, "reason": "top-up"}),
        )
        .await
        .assert_error(422, code, source);
    }
    assert_eq!(entries().await, entries_before);
    let cached: i64 = sqlx::query_scalar("SELECT balance_nanos FROM book_balances WHERE book = $1")
        .bind(&book)
        .fetch_one(&app.db.read)
        .await
        .unwrap();
    assert_eq!(cached, i64::MAX - 1);
}
