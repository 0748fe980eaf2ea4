//! The platform's counter-books are unbounded, and `verify-ledger` reports every kind of
//! damage it checks for.

use chrono::TimeDelta;
use serde_json::{Value, json};

use crate::helpers::{BASE_PRICES, TestApp, event, spawn_app};

/// Runs `steward admin verify-ledger` on the test database: success, stdout as JSON, stderr.
fn verify_ledger(app: &TestApp) -> (bool, Value, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "admin",
            "verify-ledger",
            "--database-url",
            &app.database_url,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        output.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr,
    )
}

/// The exact balance of a platform book as `verify` sums it (zero without postings).
async fn platform_nanos(app: &TestApp, book: &str) -> i128 {
    let report = steward::ledger::verify(&app.db).await.unwrap().unwrap();
    report.platform_nanos.get(book).copied().unwrap_or(0)
}

#[tokio::test]
async fn credits_keep_working_past_what_a_64_bit_platform_book_holds() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Big Co", json!({})).await;
    let accounts = [
        &app.standard.id,
        &app.manager.id,
        &app.other_manager.id,
        &managed.id,
    ];
    let funding_before = platform_nanos(&app, "platform:funding").await;
    // 100 credits of the largest amount one movement may carry: 10 billion units in all,
    // beyond the ~9.2 billion an i64 of nano-units holds. Each account takes 25 of them.
    for n in 0..100 {
        let account = accounts[n % accounts.len()];
        app.operator_post(
            &format!("/admin/v1/accounts/{account}/credits"),
            Some(&format!("huge-{n}")),
            json!({"amount": "100000000.00", "reason": "top-up"}),
        )
        .await
        .assert_status(200);
    }
    assert_eq!(app.balance_of(&app.standard.key).await, "2500000000.00");
    let funding_nanos = platform_nanos(&app, "platform:funding").await - funding_before;
    assert_eq!(funding_nanos, -10_000_000_000 * 1_000_000_000_i128);

    let (ok, report, stderr) = verify_ledger(&app);
    assert!(ok, "{stderr}");
    assert_eq!(report["ok"], true);
    let printed = report["platform_books"]["platform:funding"]
        .as_str()
        .unwrap();
    assert_eq!(
        printed,
        steward::money::sum_to_decimal_string(funding_before + funding_nanos)
    );
    assert!(printed.starts_with("-100000000"), "{printed}");
}

#[tokio::test]
async fn platform_books_sum_exactly_far_beyond_a_quadrillion_units() {
    let app = spawn_app().await;
    let before = platform_nanos(&app, "platform:funding").await;
    // 110,000 balanced entries each moving the largest BIGINT between two platform books:
    // about 1.01 × 10^15 currency units on each, written straight into the tables.
    let entries = 110_000_i64;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO journal_entries (id, kind, account_id, reason, created_by, created_at_ms) \
         SELECT 'big-' || CAST(i AS TEXT), 'adjustment', NULL, 'scale', 'test', 0 FROM n",
    )
    .bind(entries)
    .execute(&app.db.write)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO postings (entry_id, seq, book, amount_nanos) \
         SELECT id, 0, 'platform:funding', 9223372036854775807 FROM journal_entries WHERE id LIKE 'big-%' \
         UNION ALL \
         SELECT id, 1, 'platform:revenue', -9223372036854775807 FROM journal_entries WHERE id LIKE 'big-%'",
    )
    .execute(&app.db.write)
    .await
    .unwrap();

    let report = steward::ledger::verify(&app.db).await.unwrap().unwrap();
    let expected = before + i128::from(entries) * i128::from(i64::MAX);
    assert_eq!(report.platform_nanos["platform:funding"], expected);
    assert!(expected > 10_i128.pow(24), "beyond 10^15 units");
    let (ok, printed, stderr) = verify_ledger(&app);
    assert!(ok, "{stderr}");
    assert_eq!(
        printed["platform_books"]["platform:funding"],
        steward::money::sum_to_decimal_string(expected)
    );
}

async fn violation(app: &TestApp) -> String {
    let verdict = steward::ledger::verify(&app.db).await.unwrap();
    verdict.unwrap_err().to_string()
}

/// An app with one charged event (`v1`, 0.004 on `own`'s balance) in an entry of its own.
async fn charged(app: &TestApp) -> crate::helpers::Actor {
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let own = app.managed_of(&app.manager, "Own Co", json!({})).await;
    app.ingest(json!([event(
        "v1",
        &own.id,
        "sms_outbound",
        "+15550000000",
        1
    )]))
    .await
    .assert_status(200);
    app.assert_ledger_clean().await;
    own
}

#[tokio::test]
async fn verify_names_an_unbalanced_entry() {
    let app = spawn_app().await;
    charged(&app).await;
    app.tamper(
        "UPDATE postings SET amount_nanos = amount_nanos + 7 WHERE book = 'platform:revenue'",
        &[],
    )
    .await;
    let found = violation(&app).await;
    assert!(found.contains("summing to 7 "), "{found}");
}

#[tokio::test]
async fn verify_names_a_balance_cached_without_postings_and_postings_without_a_cache() {
    let app = spawn_app().await;
    let own = charged(&app).await;
    let book = format!("balance:{}", own.id);
    app.tamper("DELETE FROM book_balances WHERE book = $1", &[&book])
        .await;
    let found = violation(&app).await;
    assert!(
        found.contains(&format!("{book} caches 0 but its postings sum to -4000000")),
        "{found}"
    );
    app.tamper(
        "INSERT INTO book_balances (book, balance_nanos, updated_at_ms) VALUES ($1, -4000000, 0)",
        &[&book],
    )
    .await;
    app.assert_ledger_clean().await;

    app.tamper("INSERT INTO book_balances (book, balance_nanos, updated_at_ms) VALUES ('balance:ghost', 5, 0)",
        &[],
    )
    .await;
    let found = violation(&app).await;
    assert!(
        found.contains("balance:ghost caches 5 but its postings sum to 0"),
        "{found}"
    );
    app.tamper(
        "DELETE FROM book_balances WHERE book = 'balance:ghost'",
        &[],
    )
    .await;

    // A platform book has no cache: one that appears (and so goes stale) is reported.
    app.tamper("INSERT INTO book_balances (book, balance_nanos, updated_at_ms) VALUES ('platform:revenue', 1, 0)",
        &[],
    )
    .await;
    let found = violation(&app).await;
    assert!(
        found.contains("platform:revenue caches 1 but its postings sum to 4000000"),
        "{found}"
    );
}

#[tokio::test]
async fn verify_names_usage_charged_other_than_rated() {
    let app = spawn_app().await;
    charged(&app).await;
    app.tamper(
        "UPDATE usage_records SET cost_nanos = cost_nanos + 1 WHERE event_id = 'v1'",
        &[],
    )
    .await;
    let found = violation(&app).await;
    assert!(
        found.contains("charges 4000000 but its usage records cost 4000001"),
        "{found}"
    );
}

#[tokio::test]
async fn verify_names_a_negative_credit_limit() {
    let app = spawn_app().await;
    charged(&app).await;
    let book = format!("credit_line:{}", app.standard.id);
    app.tamper(
        "INSERT INTO journal_entries (id, kind, account_id, reason, created_by, created_at_ms) \
         VALUES ('neg', 'credit_limit', $1, 'tampered', 'test', 0)",
        &[&app.standard.id],
    )
    .await;
    app.tamper(
        "INSERT INTO postings (entry_id, seq, book, amount_nanos) \
         VALUES ('neg', 0, $1, -5), ('neg', 1, 'platform:credit_lines', 5)",
        &[&book],
    )
    .await;
    app.tamper(
        "INSERT INTO book_balances (book, balance_nanos, updated_at_ms) VALUES ($1, -5, 0)",
        &[&book],
    )
    .await;
    let found = violation(&app).await;
    assert!(
        found.contains(&format!("{book} holds a negative credit limit (-5)")),
        "{found}"
    );
}

/// Splitting the usage check into passes over ranges of entries (as it does for ledgers
/// too large to hold at once) changes no verdict: clean, and each kind of damage named the
/// same way, whichever pass finds it.
#[tokio::test]
async fn verify_in_many_passes_agrees_with_one_pass() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let rollup = app
        .managed_of(&app.manager, "Rollup Co", json!({"rollup_billing": true}))
        .await;
    let own = app.managed_of(&app.manager, "Own Co", json!({})).await;
    // Six batches, so six usage entries, each with records of both accounts.
    for batch in 0..6 {
        let events: Vec<Value> = (0..4)
            .map(|n| {
                let account = if n % 2 == 0 { &rollup.id } else { &own.id };
                event(
                    &format!("m{batch}-{n}"),
                    account,
                    "sms_outbound",
                    "+15550000000",
                    1 + n,
                )
            })
            .collect();
        app.ingest(Value::Array(events)).await.assert_status(200);
    }
    let one = steward::ledger::verify(&app.db).await.unwrap();
    let many = steward::ledger::verify_in_passes(&app.db, 1).await.unwrap();
    let (one, many) = (one.unwrap(), many.unwrap());
    assert_eq!(one.usage_records, 24);
    assert_eq!(one, many);

    // (damage, repair): each is undone before the next.
    let cases = [
        (
            "UPDATE postings SET amount_nanos = amount_nanos + 1 WHERE book = 'platform:revenue' \
             AND entry_id = (SELECT entry_id FROM usage_records WHERE event_id = 'm2-0')",
            "UPDATE postings SET amount_nanos = amount_nanos - 1 WHERE book = 'platform:revenue' \
             AND entry_id = (SELECT entry_id FROM usage_records WHERE event_id = 'm2-0')",
            "postings summing to 1 nano-units",
        ),
        (
            "UPDATE book_balances SET balance_nanos = balance_nanos + 1 \
             WHERE book = (SELECT MIN(book) FROM book_balances WHERE book LIKE 'balance:%')",
            "UPDATE book_balances SET balance_nanos = balance_nanos - 1 \
             WHERE book = (SELECT MIN(book) FROM book_balances WHERE book LIKE 'balance:%')",
            "but its postings sum to",
        ),
        (
            "UPDATE usage_records SET cost_nanos = cost_nanos + 1 WHERE event_id = 'm3-1'",
            "UPDATE usage_records SET cost_nanos = cost_nanos - 1 WHERE event_id = 'm3-1'",
            "usage records cost",
        ),
        (
            "UPDATE usage_records SET payer_account_id = account_id WHERE event_id = 'm4-2'",
            "UPDATE usage_records SET payer_account_id = (SELECT manager_id FROM accounts \
             WHERE id = usage_records.account_id) WHERE event_id = 'm4-2'",
            "not to",
        ),
        (
            "UPDATE postings SET spender_account_id = NULL WHERE spender_account_id IS NOT NULL \
             AND entry_id = (SELECT entry_id FROM usage_records WHERE event_id = 'm5-0')",
            "UPDATE postings SET spender_account_id = $1 WHERE book = $2 \
             AND spender_account_id IS NULL \
             AND entry_id = (SELECT entry_id FROM usage_records WHERE event_id = 'm5-0')",
            "debits",
        ),
    ];
    let manager_book = format!("balance:{}", app.manager.id);
    for (damage, repair, named) in cases {
        app.tamper(damage, &[]).await;
        let one = violation(&app).await;
        let many = steward::ledger::verify_in_passes(&app.db, 1)
            .await
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(one.contains(named), "{one}");
        assert_eq!(one, many);
        if repair.contains("$2") {
            app.tamper(repair, &[&rollup.id, &manager_book]).await;
        } else {
            app.tamper(repair, &[]).await;
        }
        app.assert_ledger_clean().await;
    }
}

/// Every row of `query`, read in bulk within a fresh snapshot, sorted.
async fn bulk_rows(
    app: &TestApp,
    query: &steward::db::bulk::BulkQuery<'_>,
) -> Vec<Vec<Option<String>>> {
    use sqlx::Connection;
    let mut conn = app.db.read.acquire().await.unwrap();
    let begin = steward::db::snapshot_begin(&conn);
    let mut snapshot = conn.begin_with(begin).await.unwrap();
    let mut reader = steward::db::bulk::BulkReader::open(&app.db, &mut snapshot)
        .await
        .unwrap();
    let mut rows = Vec::new();
    let count = reader
        .scan(&mut snapshot, query, |row| {
            rows.push(row.iter().map(|f| f.map(str::to_owned)).collect());
            Ok(())
        })
        .await
        .unwrap();
    reader.close().await.unwrap();
    assert_eq!(usize::try_from(count).unwrap(), rows.len());
    rows.sort();
    rows
}

#[tokio::test]
async fn bulk_reads_return_every_row_with_its_text_exact() {
    let app = spawn_app().await;
    app.tamper(
        "CREATE TABLE bulk_probe (id BIGINT NOT NULL, label TEXT, kind TEXT NOT NULL)",
        &[],
    )
    .await;
    // More rows than one SQLite document holds, so that reads continue across documents.
    app.tamper(
        "INSERT INTO bulk_probe (id, label, kind) WITH RECURSIVE n (i) AS ( \
           SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25001) \
         SELECT i, 'row-' || CAST(i AS TEXT), CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END FROM n",
        &[],
    )
    .await;
    let awkward = [
        "tab\there",
        "line\nbreak\r",
        "back\\slash \\N",
        "\\N",
        "quote's \"double\"",
        "",
        "ünïcödé ✓",
    ];
    for (n, label) in awkward.iter().enumerate() {
        let id = (100_000 + n).to_string();
        app.tamper(
            "INSERT INTO bulk_probe (id, label, kind) VALUES (CAST($1 AS BIGINT), $2, 'odd')",
            &[&id, label],
        )
        .await;
    }
    app.tamper(
        "INSERT INTO bulk_probe (id, label, kind) VALUES (-7, NULL, 'odd')",
        &[],
    )
    .await;
    let all = bulk_rows(
        &app,
        &steward::db::bulk::BulkQuery::new("bulk_probe", &["id", "label"]),
    )
    .await;
    assert_eq!(all.len(), 25_001 + awkward.len() + 1);
    let by_id: std::collections::HashMap<i64, Option<String>> = all
        .iter()
        .map(|row| (row[0].as_deref().unwrap().parse().unwrap(), row[1].clone()))
        .collect();
    assert_eq!(by_id[&1], Some("row-1".to_owned()));
    assert_eq!(by_id[&25_001], Some("row-25001".to_owned()));
    assert_eq!(by_id[&-7], None);
    for (n, label) in awkward.iter().enumerate() {
        assert_eq!(
            by_id[&(100_000 + i64::try_from(n).unwrap())].as_deref(),
            Some(*label)
        );
    }
    // Range bounds with a quote and a backslash select exactly the rows between them.
    for (low, high, expected) in [
        ("back\\", "back]", "back\\slash \\N"),
        ("quote'", "quote(", "quote's \"double\""),
    ] {
        let rows = bulk_rows(
            &app,
            &steward::db::bulk::BulkQuery {
                table: "bulk_probe",
                columns: &["label"],
                filter: None,
                range: Some(steward::db::bulk::TextRange {
                    column: "label",
                    low: Some(low),
                    high: Some(high),
                }),
            },
        )
        .await;
        assert_eq!(rows, vec![vec![Some(expected.to_owned())]]);
    }
    // A filter, a half-open range on a text column, and an expression as a column.
    let narrowed = bulk_rows(
        &app,
        &steward::db::bulk::BulkQuery {
            table: "bulk_probe",
            columns: &["label", "id * 2"],
            filter: Some("kind = 'even'"),
            range: Some(steward::db::bulk::TextRange {
                column: "label",
                low: Some("row-2"),
                high: Some("row-3"),
            }),
        },
    )
    .await;
    let expected: Vec<i64> = (1..=25_001_i64)
        .filter(|i| i % 2 == 0 && i.to_string().starts_with('2'))
        .collect();
    assert_eq!(narrowed.len(), expected.len());
    for row in &narrowed {
        let label = row[0].as_deref().unwrap();
        let id: i64 = label.strip_prefix("row-").unwrap().parse().unwrap();
        assert!(id % 2 == 0 && label.starts_with("row-2"), "{row:?}");
        assert_eq!(row[1].as_deref(), Some((id * 2).to_string().as_str()));
    }
}

#[tokio::test]
async fn bulk_reads_see_their_transactions_snapshot_not_later_commits() {
    use sqlx::Connection;
    let app = spawn_app().await;
    app.tamper("CREATE TABLE bulk_probe (id BIGINT NOT NULL)", &[])
        .await;
    app.tamper("INSERT INTO bulk_probe (id) VALUES (1)", &[])
        .await;
    let mut conn = app.db.read.acquire().await.unwrap();
    let begin = steward::db::snapshot_begin(&conn);
    let mut snapshot = conn.begin_with(begin).await.unwrap();
    let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bulk_probe")
        .fetch_one(&mut *snapshot)
        .await
        .unwrap();
    assert_eq!(before, 1);
    // Committed after the snapshot was taken and before the reader opens: neither the
    // transaction nor its reader (on PostgreSQL, a connection of its own) sees it.
    app.tamper("INSERT INTO bulk_probe (id) VALUES (2)", &[])
        .await;
    let mut reader = steward::db::bulk::BulkReader::open(&app.db, &mut snapshot)
        .await
        .unwrap();
    app.tamper("INSERT INTO bulk_probe (id) VALUES (3)", &[])
        .await;
    let query = steward::db::bulk::BulkQuery::new("bulk_probe", &["id"]);
    let mut seen = Vec::new();
    reader
        .scan(&mut snapshot, &query, |row| {
            seen.push(row[0].map(str::to_owned));
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(seen, vec![Some("1".to_owned())]);
    let again: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bulk_probe")
        .fetch_one(&mut *snapshot)
        .await
        .unwrap();
    assert_eq!(
        again, 1,
        "the verification's own statements read one snapshot too"
    );
    reader.close().await.unwrap();
}

#[tokio::test]
async fn verify_names_a_usage_rollup_that_differs_from_its_records() {
    let app = spawn_app().await;
    let own = charged(&app).await;
    let day = "bucket 1767225600000";
    app.tamper(
        "UPDATE usage_rollups_daily SET quantity = quantity + 2",
        &[],
    )
    .await;
    let found = violation(&app).await;
    assert!(
        found.starts_with(&format!(
            "usage_rollups_daily holds 1 events, quantity 3, billable quantity 1, cost 4000000 \
             nano-units for {day}, account {}, product sms_outbound",
            own.id
        )),
        "{found}"
    );
    assert!(
        found.ends_with(
            "but the usage records sum to 1 events, quantity 1, billable quantity 1, \
             cost 4000000 nano-units"
        ),
        "{found}"
    );
    app.tamper(
        "UPDATE usage_rollups_daily SET quantity = quantity - 2",
        &[],
    )
    .await;
    app.assert_ledger_clean().await;

    // The day is not closed yet: its month may not hold it.
    app.tamper(
        "INSERT INTO usage_rollups_monthly SELECT * FROM usage_rollups_daily",
        &[],
    )
    .await;
    let found = violation(&app).await;
    assert!(
        found.starts_with(&format!(
            "usage_rollups_monthly holds 1 events, quantity 1, billable quantity 1, \
             cost 4000000 nano-units for {day}, account {}",
            own.id
        )),
        "{found}"
    );
    app.tamper("DELETE FROM usage_rollups_monthly", &[]).await;
    app.assert_ledger_clean().await;

    // Once the day is closed, a month's row missing: the records' group is named with what
    // it sums to.
    app.clock.advance(TimeDelta::days(1));
    {
        use steward::clock::Clock;
        steward::usage::rollups::close_days(&app.db, app.clock.now().timestamp_millis())
            .await
            .unwrap();
    }
    app.assert_ledger_clean().await;
    app.tamper("DELETE FROM usage_rollups_monthly", &[]).await;
    let found = violation(&app).await;
    assert!(
        found.starts_with(&format!(
            "usage_rollups_monthly holds nothing for {day}, account {}",
            own.id
        )),
        "{found}"
    );
    assert!(found.ends_with("cost 4000000 nano-units"), "{found}");
}

#[tokio::test]
async fn verify_names_a_usage_rollup_row_no_record_stands_for() {
    let app = spawn_app().await;
    let own = charged(&app).await;
    app.tamper(
        "INSERT INTO usage_rollups_daily (bucket_ms, account_id, product, country_code, \
         number_type, event_count, quantity, billable_quantity, cost_nanos) \
         VALUES (0, $1, 'sms_outbound', 'US', 'mobile', 1, 1, 1, 1)",
        &[&own.id],
    )
    .await;
    let found = violation(&app).await;
    assert_eq!(
        found,
        format!(
            "usage_rollups_daily holds 1 events, quantity 1, billable quantity 1, cost 1 \
             nano-units for bucket 0, account {}, product sms_outbound, country 'US', number \
             type mobile but the usage records sum to nothing",
            own.id
        )
    );
}
