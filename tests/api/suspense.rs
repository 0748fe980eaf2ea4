//! Usage that cannot be rated when it arrives is kept in suspense, listed, counted, and
//! charged exactly once by a re-rating after pricing (or the account) is fixed.

use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use steward::accounts::AccountId;
use steward::cli::AdminCommand;
use steward::clock::ClockHandle;

use crate::helpers::{BASE_PRICES, TestApp, event, spawn_app, test_payments_config};
use crate::parsing::count;

/// Only US voice, from 2025: a call elsewhere has no rate.
const US_VOICE_ONLY: &str = "product,prefix,rate,initial_increment_s,subsequent_increment_s\nvoice_outbound,1,0.0100,60,60\n";

async fn admin(app: &TestApp, command: AdminCommand) -> anyhow::Result<Value> {
    let clock: ClockHandle = Arc::new(app.clock.clone());
    steward::admin::run(&app.db, &clock, &test_payments_config(), command).await
}

async fn rerate(app: &TestApp, reason: Option<&str>, account: Option<&str>) -> Value {
    admin(
        app,
        AdminCommand::RerateSuspended {
            reason: reason.map(str::to_owned),
            account: account.map(str::to_owned),
        },
    )
    .await
    .unwrap()
}

async fn verify(app: &TestApp) -> Value {
    admin(app, AdminCommand::VerifyLedger).await.unwrap()
}

async fn suspended(app: &TestApp, query: &str) -> Value {
    let reply = app
        .get(
            &format!("/admin/v1/suspended_usage{query}"),
            &app.operator_key,
        )
        .await;
    reply.assert_status(200);
    reply.body
}

fn ids(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["event_id"].as_str().unwrap())
        .collect()
}

async fn import(app: &TestApp, csv: &str, effective_from: &str) {
    app.import_prices(
        csv,
        &format!("platform_default=true&effective_from={effective_from}"),
    )
    .await
    .assert_status(200);
}

/// An account created under an id the network already used (provisioning lag): written
/// straight to the database, as no API lets a caller choose an account id.
async fn create_account_with_id(app: &TestApp, id: AccountId) {
    let mut conn = app.db.write.acquire().await.unwrap();
    steward::accounts::repo::insert(
        &mut conn,
        &steward::accounts::repo::NewAccountRow {
            id,
            email: "late@standard.example",
            email_normalized: "late@standard.example",
            organization_name: "Late Co",
            organization_name_folded: "late co",
            password_hash: None,
            kind: steward::accounts::AccountKind::Standard,
            manager_id: None,
            managed_account_allow_custom_pricing: false,
            rollup_billing: false,
            max_managed_accounts: 1000,
            allocatable_channels: 0,
            now_ms: 0,
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn unratable_events_are_suspended_listed_and_counted() {
    let app = spawn_app().await;
    let own = app.managed_of(&app.manager, "Early Co", json!({})).await;
    let nobody = AccountId::generate().to_string();

    // No price list yet.
    let first = app
        .ingest(json!([
            event("np-1", &own.id, "voice_outbound", "+14155550100", 61),
            event("who-1", &nobody, "sms_outbound", "+14155550100", 2),
            event("typo-1", "not-a-uuid", "sms_outbound", "+14155550100", 2),
        ]))
        .await;
    app.clock.advance(chrono::Duration::seconds(10));
    import(&app, US_VOICE_ONLY, "2025-01-01T00:00:00Z").await;
    let second = app
        .ingest(json!([
            event("nr-1", &own.id, "voice_outbound", "+442079460000", 60),
            event("ok-1", &own.id, "voice_outbound", "+14155550100", 61),
        ]))
        .await;

    assert_eq!(first.statuses(), ["suspended", "suspended", "rejected"]);
    assert_eq!(second.statuses(), ["suspended", "accepted"]);
    let answers = &first.body["data"];
    assert_eq!(answers[0]["reason_code"], "no_price_list");
    assert_eq!(answers[1]["reason_code"], "unknown_account");
    assert!(answers[1]["reason"].as_str().unwrap().contains("suspense"));
    // A malformed account id is refused, not kept.
    assert!(answers[2].get("reason_code").is_none());
    assert!(
        answers[2]["reason"].as_str().unwrap().contains("UUID"),
        "{answers}"
    );
    assert_eq!(second.body["data"][0]["reason_code"], "no_rate");

    let all = suspended(&app, "").await;
    assert_eq!(ids(&all), ["np-1", "who-1", "nr-1"]);
    assert_eq!(all["meta"]["total_results"], 3);
    let oldest = &all["data"][0];
    assert_eq!(oldest["record_type"], "suspended_usage");
    assert_eq!(oldest["reason"], "no_price_list");
    assert_eq!(oldest["account_id"], own.id.as_str());
    assert_eq!(oldest["product"], "voice_outbound");
    assert_eq!(oldest["destination"], "+14155550100");
    assert_eq!(oldest["quantity"], 61);
    assert_eq!(oldest["occurred_at"], "2026-01-01T12:00:30.000Z");
    assert_eq!(oldest["first_seen_at"], "2026-01-01T12:00:00.000Z");
    assert_eq!(oldest["last_seen_at"], "2026-01-01T12:00:00.000Z");
    assert_eq!(oldest["seen_count"], 1);
    assert_eq!(all["data"][2]["first_seen_at"], "2026-01-01T12:00:10.000Z");

    // Filters and paging.
    assert_eq!(
        ids(&suspended(&app, "?filter[reason]=no_rate").await),
        ["nr-1"]
    );
    assert_eq!(
        ids(&suspended(&app, &format!("?filter%5Baccount_id%5D={nobody}")).await),
        ["who-1"]
    );
    assert_eq!(
        ids(&suspended(
            &app,
            &format!(
                "?filter[account_id]={}&filter[reason]=no_price_list",
                own.id
            )
        )
        .await),
        ["np-1"]
    );
    let page = suspended(&app, "?page[number]=2&page[size]=2").await;
    assert_eq!(ids(&page), ["nr-1"]);
    assert_eq!(page["meta"]["total_pages"], 2);
    let key = &app.operator_key;
    app.get("/admin/v1/suspended_usage?filter[status]=x", key)
        .await
        .assert_error(400, "10015", Some(("parameter", "filter[status]")));
    let bad_reason = app
        .get("/admin/v1/suspended_usage?filter[reason]=broke", key)
        .await;
    bad_reason.assert_error(422, "40001", Some(("parameter", "filter[reason]")));
    let detail = bad_reason.error()["detail"].as_str().unwrap();
    assert!(
        detail.contains("no_price_list, no_rate, unknown_account"),
        "{detail}"
    );
    app.get("/admin/v1/suspended_usage?filter[account_id]=nope", key)
        .await
        .assert_error(422, "40001", Some(("parameter", "filter[account_id]")));
    app.get("/admin/v1/suspended_usage?filter[reason]=no%00rate", key)
        .await
        .assert_error(400, "10015", Some(("parameter", "filter[reason]")));
    // Only the operator reads it.
    app.get("/admin/v1/suspended_usage", &app.manager.key)
        .await
        .assert_status(401);

    // Nothing was charged for them, and verify-ledger counts them.
    assert_eq!(app.balance_of(&own.key).await, "-0.02");
    assert_eq!(count(&app, "usage_records").await, 1);
    let verified = verify(&app).await;
    assert_eq!(verified["ok"], true);
    assert_eq!(
        verified["suspended_usage"],
        json!({"events": 3, "by_reason": {"no_price_list": 1, "no_rate": 1, "unknown_account": 1}})
    );
}

#[tokio::test]
async fn a_resend_refreshes_suspense_and_charges_nothing() {
    let app = spawn_app().await;
    let own = app.managed_of(&app.manager, "Resend Co", json!({})).await;
    let call = event("again-1", &own.id, "voice_outbound", "+14155550100", 61);

    let first = app.ingest(json!([call.clone()])).await;
    app.clock.advance(chrono::Duration::seconds(90));
    // Sent twice more, once twice in one batch.
    let second = app.ingest(json!([call.clone(), call.clone()])).await;
    import(&app, US_VOICE_ONLY, "2025-01-01T00:00:00Z").await;
    let mut elsewhere = call.clone();
    elsewhere["destination"] = json!("+442079460000");
    app.clock.advance(chrono::Duration::seconds(30));
    let third = app.ingest(json!([elsewhere])).await;

    assert_eq!(first.statuses(), ["suspended"]);
    assert_eq!(second.statuses(), ["suspended", "suspended"]);
    assert_eq!(third.statuses(), ["suspended"]);
    assert_eq!(third.body["data"][0]["reason_code"], "no_rate");
    let list = suspended(&app, "").await;
    assert_eq!(ids(&list), ["again-1"]);
    let kept = &list["data"][0];
    assert_eq!(kept["seen_count"], 3);
    assert_eq!(kept["first_seen_at"], "2026-01-01T12:00:00.000Z");
    assert_eq!(kept["last_seen_at"], "2026-01-01T12:02:00.000Z");
    // The event as last sent, with the reason that applies to it.
    assert_eq!(kept["reason"], "no_rate");
    assert_eq!(kept["destination"], "+442079460000");
    assert_eq!(count(&app, "usage_records").await, 0);
    assert_eq!(count(&app, "suspended_usage").await, 1);
    assert_eq!(app.balance_of(&own.key).await, "0.00");

    // Sent again once it can be rated, it is charged once and leaves suspense.
    let charged = app.ingest(json!([call.clone()])).await;
    let again = app.ingest(json!([call])).await;
    assert_eq!(charged.statuses(), ["accepted"]);
    assert_eq!(again.statuses(), ["duplicate"]);
    assert_eq!(count(&app, "suspended_usage").await, 0);
    assert_eq!(app.balance_of(&own.key).await, "-0.02");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn rerating_charges_each_event_once_after_pricing_is_fixed() {
    let app = spawn_app().await;
    let own = app.managed_of(&app.manager, "Fixed Co", json!({})).await;
    let late = AccountId::generate();
    let late_id = late.to_string();

    let before_any_list = app
        .ingest(json!([event(
            "a1",
            &own.id,
            "voice_outbound",
            "+14155550100",
            61
        )]))
        .await;
    import(&app, US_VOICE_ONLY, "2025-01-01T00:00:00Z").await;
    let with_a_list = app
        .ingest(json!([
            event("a2", &own.id, "voice_outbound", "+442079460000", 60),
            event("a3", &late_id, "sms_outbound", "+14155550100", 5),
            event("a4", &own.id, "voice_outbound", "+14155550100", 61),
        ]))
        .await;
    assert_eq!(before_any_list.statuses(), ["suspended"]);
    assert_eq!(
        with_a_list.statuses(),
        ["suspended", "suspended", "accepted"]
    );

    // The list now in force covers a1's call; the others still cannot be rated.
    let first = rerate(&app, None, None).await;
    assert_eq!(first["examined"], 3);
    assert_eq!(first["charged"], 1);
    assert_eq!(first["charged_amount"], "0.020000000");
    assert_eq!(
        first["still_suspended"],
        json!({"no_price_list": 0, "no_rate": 1, "unknown_account": 1})
    );
    assert_eq!(ids(&suspended(&app, "").await), ["a2", "a3"]);

    // Pricing fixed (a fuller list in force from before the calls) and the account created.
    import(&app, BASE_PRICES, "2025-06-01T00:00:00Z").await;
    create_account_with_id(&app, late).await;

    // Filters limit what is re-rated.
    let by_reason = rerate(&app, Some("no_rate"), None).await;
    assert_eq!(by_reason["examined"], 1);
    assert_eq!(by_reason["charged"], 1);
    assert_eq!(by_reason["charged_amount"], "0.050000000");
    assert_eq!(ids(&suspended(&app, "").await), ["a3"]);
    let other_account = rerate(&app, None, Some(&own.id)).await;
    assert_eq!(other_account["examined"], 0);
    assert_eq!(ids(&suspended(&app, "").await), ["a3"]);
    let by_account = rerate(&app, None, Some(&late_id)).await;
    assert_eq!(by_account["charged"], 1);
    assert_eq!(by_account["charged_amount"], "0.020000000");
    assert_eq!(by_account["suspended_usage"]["events"], 0);

    // A second run charges nothing.
    let second = rerate(&app, None, None).await;
    assert_eq!(second["examined"], 0);
    assert_eq!(second["charged"], 0);

    // Each charged once, at the rate of the list in force at occurred_at.
    assert_eq!(count(&app, "usage_records").await, 4);
    assert_eq!(app.balance_of(&own.key).await, "-0.09");
    let late_balance = app
        .get(
            &format!("/admin/v1/accounts/{late_id}/balance"),
            &app.operator_key,
        )
        .await;
    assert_eq!(late_balance.body["data"]["balance"], "-0.02");
    let verified = verify(&app).await;
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["usage_records"], 4);
    assert_eq!(verified["suspended_usage"]["events"], 0);
    // Resent now, every one is a duplicate.
    let resent = app
        .ingest(json!([
            event("a1", &own.id, "voice_outbound", "+14155550100", 61),
            event("a2", &own.id, "voice_outbound", "+442079460000", 60),
            event("a3", &late_id, "sms_outbound", "+14155550100", 5),
        ]))
        .await;
    assert_eq!(resent.statuses(), ["duplicate", "duplicate", "duplicate"]);
    assert_eq!(app.balance_of(&own.key).await, "-0.09");

    // A reason that does not exist is refused.
    let refused = admin(
        &app,
        AdminCommand::RerateSuspended {
            reason: Some("broke".to_owned()),
            account: None,
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("no_price_list, no_rate, unknown_account"),
        "{refused}"
    );
}

#[tokio::test]
async fn an_event_charged_before_is_a_duplicate_whatever_pricing_says_today() {
    let app = spawn_app().await;
    let own = app.managed_of(&app.manager, "Repriced Co", json!({})).await;
    import(&app, BASE_PRICES, "2025-01-01T00:00:00Z").await;
    let call = event("old-1", &own.id, "voice_outbound", "+442079460000", 60);
    let charged = app.ingest(json!([call.clone()])).await;
    assert_eq!(charged.statuses(), ["accepted"]);

    // From before the call on, a list without a rate for it applies.
    import(&app, US_VOICE_ONLY, "2025-06-01T00:00:00Z").await;
    let fresh = event("new-1", &own.id, "voice_outbound", "+442079460000", 60);
    let reply = app.ingest(json!([call, fresh])).await;

    assert_eq!(reply.statuses(), ["duplicate", "suspended"]);
    assert_eq!(ids(&suspended(&app, "").await), ["new-1"]);
    assert_eq!(app.balance_of(&own.key).await, "-0.05");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn rerating_beside_resends_and_another_rerating_charges_once() {
    let app = spawn_app().await;
    let racing = app.managed_of(&app.manager, "Racing Co", json!({})).await;
    let paired = app.managed_of(&app.manager, "Paired Co", json!({})).await;
    let batch = |account: &str, prefix: &str| -> Value {
        (0..40)
            .map(|n| {
                event(
                    &format!("{prefix}-{n:02}"),
                    account,
                    "sms_outbound",
                    "+14155550100",
                    1,
                )
            })
            .collect()
    };
    let first = app.ingest(batch(&racing.id, "race")).await;
    let second = app.ingest(batch(&paired.id, "pair")).await;
    assert!(first.statuses().iter().all(|s| *s == "suspended"));
    assert!(second.statuses().iter().all(|s| *s == "suspended"));
    import(&app, BASE_PRICES, "2025-01-01T00:00:00Z").await;

    // A re-rating while the switch sends the same events again.
    let (rerated, resent) = tokio::join!(
        rerate(&app, None, Some(&racing.id)),
        app.ingest(batch(&racing.id, "race"))
    );
    // Two re-ratings at once.
    let (one, two) = tokio::join!(rerate(&app, None, None), rerate(&app, None, None));

    let accepted = resent
        .statuses()
        .iter()
        .filter(|s| **s == "accepted")
        .count();
    let accepted = u64::try_from(accepted).unwrap();
    let charged = |report: &Value| report["charged"].as_u64().unwrap();
    // Every event charged once, by one side or the other.
    assert_eq!(charged(&rerated) + accepted, 40, "{rerated} {resent:?}");
    assert_eq!(charged(&one) + charged(&two), 40, "{one} {two}");
    assert_eq!(count(&app, "usage_records").await, 80);
    assert_eq!(ids(&suspended(&app, "").await).len(), 0);
    // 40 parts at 0.004 each.
    assert_eq!(app.balance_of(&racing.key).await, "-0.16");
    assert_eq!(app.balance_of(&paired.key).await, "-0.16");
    let verified = verify(&app).await;
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["suspended_usage"]["events"], 0);
}

#[tokio::test]
async fn the_cli_verb_prints_its_counts() {
    let app = spawn_app().await;
    app.ingest(json!([event(
        "cli-1",
        &AccountId::generate().to_string(),
        "sms_outbound",
        "+14155550100",
        1
    )]))
    .await;

    let output = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["admin", "--database-url", &app.database_url])
        .args(["rerate-suspended", "--reason", "unknown_account"])
        .output()
        .expect("run steward");

    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["examined"], 1);
    assert_eq!(printed["charged"], 0);
    assert_eq!(printed["still_suspended"]["unknown_account"], 1);
    assert_eq!(
        printed["suspended_usage"]["by_reason"]["unknown_account"],
        1
    );
}

#[tokio::test]
async fn a_suspended_call_frees_its_channel() {
    let app = spawn_app().await;
    let child = app.managed_of(&app.manager, "Channel Co", json!({})).await;
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
    assert_eq!(
        app.admit(&child.id, "voice_outbound").await.body["data"]["reason"],
        "channel_limit_reached"
    );
    let mut call = event("leased-1", &child.id, "voice_outbound", "+14155550100", 30);
    call["lease_id"] = json!(lease);

    // No price list: the call is kept in suspense, and it is over.
    let reply = app.ingest(json!([call])).await;

    assert_eq!(reply.statuses(), ["suspended"]);
    assert_eq!(
        suspended(&app, "").await["data"][0]["lease_id"],
        lease.as_str()
    );
    assert_eq!(
        app.admit(&child.id, "voice_outbound").await.body["data"]["admitted"],
        true
    );
    // Charged later, it releases nothing more.
    import(&app, BASE_PRICES, "2025-01-01T00:00:00Z").await;
    assert_eq!(rerate(&app, None, None).await["charged"], 1);
    assert_eq!(
        app.admit(&child.id, "voice_outbound").await.body["data"]["reason"],
        "channel_limit_reached"
    );
    app.assert_ledger_clean().await;
}

/// On PostgreSQL a batch charging an id and another suspending it can commit side by side;
/// the row left in suspense is never shown, counted or charged, and a re-rating clears it.
#[tokio::test]
async fn a_suspense_row_whose_event_was_charged_is_ignored_and_cleared() {
    let app = spawn_app().await;
    let own = app.managed_of(&app.manager, "Raced Co", json!({})).await;
    import(&app, BASE_PRICES, "2025-01-01T00:00:00Z").await;
    let call = event("both-1", &own.id, "voice_outbound", "+14155550100", 61);
    app.ingest(json!([call])).await;
    // What the losing side of that race leaves behind.
    sqlx::query(
        "INSERT INTO suspended_usage (event_id, reason, account_id, product, destination, \
         quantity, occurred_at_ms, lease_id, first_seen_at_ms, last_seen_at_ms, seen_count) \
         VALUES ('both-1', 'no_rate', $1, 'voice_outbound', '14155550100', 61, 0, NULL, 0, 0, 1)",
    )
    .bind(&own.id)
    .execute(&app.db.write)
    .await
    .unwrap();

    assert_eq!(suspended(&app, "").await["meta"]["total_results"], 0);
    assert_eq!(verify(&app).await["suspended_usage"]["events"], 0);
    let rerated = rerate(&app, None, None).await;

    assert_eq!(rerated["examined"], 0);
    assert_eq!(rerated["charged"], 0);
    assert_eq!(count(&app, "suspended_usage").await, 0);
    assert_eq!(app.balance_of(&own.key).await, "-0.02");
}
