use chrono::TimeDelta;
use futures::future::join_all;
use serde_json::json;

use crate::helpers::{BASE_PRICES, spawn_app};

async fn fund(app: &crate::helpers::TestApp, account: &str, amount: &str) {
    app.operator_post(
        &format!("/admin/v1/accounts/{account}/credit_limit"),
        None,
        json!({"amount": amount}),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn concurrent_admissions_never_exceed_the_channel_limit() {
    let app = spawn_app().await; // the manager's pool is 10
    let child = app.managed_of(&app.manager, "Busy Co", json!({})).await;
    fund(&app, &child.id, "50.00").await;
    app.set_channel_limit(&app.manager.key, &child.id, 3).await;

    let replies = join_all((0..12).map(|_| app.admit(&child.id, "voice_outbound"))).await;

    let admitted: Vec<&serde_json::Value> = replies
        .iter()
        .map(|r| &r.body["data"])
        .filter(|d| d["admitted"] == true)
        .collect();
    assert_eq!(admitted.len(), 3);
    for refused in replies
        .iter()
        .map(|r| &r.body["data"])
        .filter(|d| d["admitted"] == false)
    {
        assert_eq!(refused["reason"], "channel_limit_reached");
    }
    // Messages and inbound calls take no outbound channel.
    assert_eq!(
        app.admit(&child.id, "sms_outbound").await.body["data"]["admitted"],
        true
    );
    assert_eq!(
        app.admit(&child.id, "voice_inbound").await.body["data"]["admitted"],
        true
    );

    // Releasing one frees one.
    let lease = admitted[0]["lease_id"].as_str().unwrap();
    let released = app
        .post(
            &format!("/v2/channel_leases/{lease}/actions/release"),
            &app.ingest_key,
            None,
        )
        .await;
    released.assert_status(200);
    assert_eq!(released.body["data"]["live"], false);
    assert_eq!(
        app.admit(&child.id, "voice_outbound").await.body["data"]["admitted"],
        true
    );
    assert_eq!(
        app.admit(&child.id, "voice_outbound").await.body["data"]["reason"],
        "channel_limit_reached"
    );

    // Leases of a crashed switch expire.
    app.clock.advance(TimeDelta::seconds(301));
    assert_eq!(
        app.admit(&child.id, "voice_outbound").await.body["data"]["admitted"],
        true
    );
}

#[tokio::test]
async fn a_zero_channel_limit_admits_no_outbound_call_when_the_pool_is_on() {
    let app = spawn_app().await;
    let child = app.managed_of(&app.manager, "Zero Co", json!({})).await;
    fund(&app, &child.id, "5.00").await;
    assert_eq!(
        app.admit(&child.id, "voice_outbound").await.body["data"]["reason"],
        "channel_limit_reached"
    );
    // A manager without a pool (feature off) does not limit its accounts.
    let other = app
        .managed_of(&app.standard_manager().await, "Free Co", json!({}))
        .await;
    fund(&app, &other.id, "5.00").await;
    assert_eq!(
        app.admit(&other.id, "voice_outbound").await.body["data"]["admitted"],
        true
    );
}

#[tokio::test]
async fn no_credit_no_admission_and_rollup_uses_the_managers_credit() {
    let app = spawn_app().await;
    let own = app.managed_of(&app.manager, "Broke Co", json!({})).await;
    let rollup = app
        .managed_of(&app.manager, "Rollup Co", json!({"rollup_billing": true}))
        .await;

    assert_eq!(
        app.admit(&own.id, "sms_outbound").await.body["data"]["reason"],
        "insufficient_credit"
    );
    assert_eq!(
        app.admit(&rollup.id, "sms_outbound").await.body["data"]["reason"],
        "insufficient_credit"
    );
    let credited = app
        .operator_post(
            &format!("/admin/v1/accounts/{}/credits", app.manager.id),
            Some("topup-1"),
            json!({"amount": "10.00", "reason": "wire transfer"}),
        )
        .await;
    credited.assert_status(200);
    assert_eq!(
        app.admit(&rollup.id, "sms_outbound").await.body["data"]["admitted"],
        true
    );
    assert_eq!(
        app.admit(&own.id, "sms_outbound").await.body["data"]["reason"],
        "insufficient_credit"
    );
    // A rollup account cannot be credited itself.
    app.operator_post(
        &format!("/admin/v1/accounts/{}/credits", rollup.id),
        Some("topup-2"),
        json!({"amount": "1.00", "reason": "x"}),
    )
    .await
    .assert_error(422, "40004", None);
}

#[tokio::test]
async fn a_disabled_accounts_admitted_call_completes_and_is_charged() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let child = app.managed_of(&app.manager, "Ending Co", json!({})).await;
    fund(&app, &child.id, "20.00").await;
    app.set_channel_limit(&app.manager.key, &child.id, 1).await;
    let admitted = app.admit(&child.id, "voice_outbound").await;
    let lease = admitted.body["data"]["lease_id"]
        .as_str()
        .unwrap()
        .to_owned();

    app.post(
        &format!("/v2/managed_accounts/{}/actions/disable", child.id),
        &app.manager.key,
        None,
    )
    .await
    .assert_status(200);
    assert_eq!(
        app.admit(&child.id, "voice_outbound").await.body["data"]["reason"],
        "account_disabled"
    );
    assert_eq!(
        app.admit(&child.id, "sms_outbound").await.body["data"]["reason"],
        "account_disabled"
    );

    let mut call = crate::helpers::event(
        "ended-call",
        &child.id,
        "voice_outbound",
        "+14155550100",
        90,
    );
    call["lease_id"] = json!(lease);
    let charged = app.ingest(json!([call])).await;
    assert_eq!(charged.body["data"][0]["status"], "accepted");
    let live: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM channel_leases WHERE released_at_ms IS NULL")
            .fetch_one(&app.db.read)
            .await
            .unwrap();
    assert_eq!(live, 0, "charging the call released its lease");
    let balance = app
        .client
        .get(format!(
            "{}/admin/v1/accounts/{}/balance",
            app.address, child.id
        ))
        .bearer_auth(&app.operator_key)
        .send()
        .await
        .unwrap();
    let balance = crate::helpers::TestApp::read(balance).await;
    assert_eq!(balance.body["data"]["balance"], "-0.02");
    assert_eq!(balance.body["data"]["available_credit"], "19.98");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn credits_and_adjustments_are_idempotent_and_audited() {
    let app = spawn_app().await;
    let path = format!("/admin/v1/accounts/{}/credits", app.standard.id);
    let body = json!({"amount": "25.50", "reason": "goodwill"});

    let first = app.operator_post(&path, Some("k-1"), body.clone()).await;
    let retry = app.operator_post(&path, Some("k-1"), body.clone()).await;

    first.assert_status(200);
    assert_eq!(first.body, retry.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(app.balance_of(&app.standard.key).await, "25.50");
    app.operator_post(
        &path,
        Some("k-1"),
        json!({"amount": "99.00", "reason": "goodwill"}),
    )
    .await
    .assert_error(422, "40001", Some(("parameter", "Idempotency-Key")));
    app.operator_post(&path, None, body.clone())
        .await
        .assert_error(422, "10004", Some(("parameter", "Idempotency-Key")));
    app.operator_post(
        &path,
        Some("k-2"),
        json!({"amount": "-1.00", "reason": "x"}),
    )
    .await
    .assert_error(422, "40001", Some(("pointer", "/amount")));
    app.operator_post(&path, Some("k-3"), json!({"amount": "1.00"}))
        .await
        .assert_error(422, "10004", Some(("pointer", "/reason")));

    let adjusted = app
        .operator_post(
            &format!("/admin/v1/accounts/{}/adjustments", app.standard.id),
            Some("adj-1"),
            json!({"amount": "-0.50", "reason": "fee"}),
        )
        .await;
    adjusted.assert_status(200);
    assert_eq!(adjusted.body["data"]["balance_after"], "25.00");
    let audited: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_events WHERE account_id = $1 AND action <> 'account.create' \
         ORDER BY created_at_ms, id",
    )
    .bind(&app.standard.id)
    .fetch_all(&app.db.read)
    .await
    .unwrap();
    assert_eq!(audited, ["credit", "adjustment"]);
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn the_channel_limit_holds_across_two_servers_on_one_database() {
    let app = spawn_app().await;
    let second = app.second_server().await;
    let child = app.managed_of(&app.manager, "Two Servers", json!({})).await;
    fund(&app, &child.id, "50.00").await;
    app.set_channel_limit(&app.manager.key, &child.id, 4).await;
    let body =
        json!({"account_id": child.id, "product": "voice_outbound", "destination": "+14155550100"});

    let replies = join_all((0..16).map(|n| {
        let base = if n % 2 == 0 {
            app.address.clone()
        } else {
            second.clone()
        };
        let request = app
            .client
            .post(format!("{base}/v2/admissions"))
            .bearer_auth(&app.ingest_key)
            .json(&body);
        async move { crate::helpers::TestApp::read(request.send().await.unwrap()).await }
    }))
    .await;

    let admitted = replies
        .iter()
        .filter(|r| r.body["data"]["admitted"] == true)
        .count();
    assert_eq!(admitted, 4);
}

#[tokio::test]
async fn requests_decided_together_are_each_answered_on_their_own() {
    let app = spawn_app().await; // the manager's pool is 10
    let three = app.managed_of(&app.manager, "Three Co", json!({})).await;
    let five = app.managed_of(&app.manager, "Five Co", json!({})).await;
    let off = app.managed_of(&app.manager, "Off Co", json!({})).await;
    for account in [&three, &five, &off] {
        fund(&app, &account.id, "50.00").await;
    }
    app.set_channel_limit(&app.manager.key, &three.id, 3).await;
    app.set_channel_limit(&app.manager.key, &five.id, 5).await;
    app.post(
        &format!("/v2/managed_accounts/{}/actions/disable", off.id),
        &app.manager.key,
        None,
    )
    .await
    .assert_status(200);
    let unknown = uuid::Uuid::new_v4().to_string();

    // 40 requests at once, interleaved: the server decides them in a few shared batches.
    let accounts = [&three.id, &five.id, &off.id, &unknown];
    let replies = join_all((0..40).map(|n| app.admit(accounts[n % 4], "voice_outbound"))).await;
    let mut leases: std::collections::HashMap<&str, Vec<String>> = Default::default();
    for (n, reply) in replies.iter().enumerate() {
        let account = accounts[n % 4];
        if account == &unknown {
            reply.assert_error(404, "10005", None);
            continue;
        }
        reply.assert_status(200);
        let data = &reply.body["data"];
        if account == &off.id {
            assert_eq!(data["reason"], "account_disabled", "{data:?}");
        } else if data["admitted"] == true {
            leases
                .entry(account.as_str())
                .or_default()
                .push(data["lease_id"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(data["reason"], "channel_limit_reached", "{data:?}");
        }
    }
    assert_eq!(leases[three.id.as_str()].len(), 3);
    assert_eq!(leases[five.id.as_str()].len(), 5);

    // Releases beside new admissions, each lease released twice at once: exactly one of the
    // two ends it, and every freed channel can be taken again.
    let all: Vec<String> = leases.values().flatten().cloned().collect();
    let released = join_all(
        all.iter()
            .chain(all.iter())
            .map(|lease| release(&app, lease)),
    )
    .await;
    for lease in &all {
        let ended: Vec<bool> = released
            .iter()
            .filter(|r| r.body["data"]["id"] == lease.as_str())
            .map(|r| r.body["data"]["released_now"] == true)
            .collect();
        assert_eq!(ended.len(), 2);
        assert_eq!(ended.iter().filter(|now| **now).count(), 1, "{lease}");
    }
    let again = join_all((0..16).map(|n| app.admit(accounts[n % 2], "voice_outbound"))).await;
    let admitted = |account: &str| {
        again
            .iter()
            .enumerate()
            .filter(|(n, r)| accounts[n % 2] == account && r.body["data"]["admitted"] == true)
            .count()
    };
    assert_eq!(admitted(&three.id), 3);
    assert_eq!(admitted(&five.id), 5);
}

/// Admits one outbound call of `account` and returns its lease id.
async fn lease_of(app: &crate::helpers::TestApp, account: &str) -> String {
    let admitted = app.admit(account, "voice_outbound").await;
    assert_eq!(
        admitted.body["data"]["admitted"], true,
        "{:?}",
        admitted.body
    );
    admitted.body["data"]["lease_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Ends `lease` with the ingest key.
async fn release(app: &crate::helpers::TestApp, lease: &str) -> crate::helpers::Reply {
    app.post(
        &format!("/v2/channel_leases/{lease}/actions/release"),
        &app.ingest_key,
        None,
    )
    .await
}

/// Renews `lease` for `ttl_s` with the ingest key.
async fn renew(app: &crate::helpers::TestApp, lease: &str, ttl_s: u32) -> crate::helpers::Reply {
    app.post(
        &format!("/v2/channel_leases/{lease}/actions/renew"),
        &app.ingest_key,
        Some(json!({ "ttl_s": ttl_s })),
    )
    .await
}

#[tokio::test]
async fn only_the_leases_own_account_may_end_it_with_usage() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let holder = app.managed_of(&app.manager, "Holder Co", json!({})).await;
    let other = app.managed_of(&app.manager, "Other Co", json!({})).await;
    for account in [&holder, &other] {
        fund(&app, &account.id, "20.00").await;
        app.set_channel_limit(&app.manager.key, &account.id, 1)
            .await;
    }
    let lease = lease_of(&app, &holder.id).await;

    // Another account's event names the lease: it is charged, the lease is left alone.
    let mut foreign = crate::helpers::event(
        "foreign-call",
        &other.id,
        "voice_outbound",
        "+14155550100",
        60,
    );
    foreign["lease_id"] = json!(lease);
    let mut unknown = crate::helpers::event(
        "unknown-lease-call",
        &other.id,
        "voice_outbound",
        "+14155550100",
        60,
    );
    unknown["lease_id"] = json!("no-such-lease");
    let answer = app.ingest(json!([foreign, unknown])).await;
    answer.assert_status(200);
    assert_eq!(answer.body["data"][0]["status"], "accepted");
    assert_eq!(answer.body["data"][0]["lease"], "other_account");
    assert_eq!(answer.body["data"][1]["status"], "accepted");
    assert_eq!(answer.body["data"][1]["lease"], "unknown");
    // The holder's channel is still taken.
    assert_eq!(
        app.admit(&holder.id, "voice_outbound").await.body["data"]["reason"],
        "channel_limit_reached"
    );

    // The holder's own event ends it; a resend of that event is a duplicate and says nothing
    // about the lease.
    let mut own =
        crate::helpers::event("own-call", &holder.id, "voice_outbound", "+14155550100", 60);
    own["lease_id"] = json!(lease);
    let answer = app.ingest(json!([own.clone()])).await;
    assert_eq!(answer.body["data"][0]["lease"], "released");
    let again = app.ingest(json!([own])).await;
    assert_eq!(again.body["data"][0]["status"], "duplicate");
    assert!(again.body["data"][0].get("lease").is_none());
    let next = lease_of(&app, &holder.id).await;

    // A second call's event naming a lease that has already ended says so.
    let released = app
        .post(
            &format!("/v2/channel_leases/{next}/actions/release"),
            &app.ingest_key,
            None,
        )
        .await;
    released.assert_status(200);
    let mut late = crate::helpers::event(
        "late-call",
        &holder.id,
        "voice_outbound",
        "+14155550100",
        60,
    );
    late["lease_id"] = json!(next);
    let answer = app.ingest(json!([late])).await;
    assert_eq!(answer.body["data"][0]["lease"], "already_ended");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn ended_leases_cannot_be_renewed_and_a_second_release_says_so() {
    let app = spawn_app().await;
    let child = app.managed_of(&app.manager, "Lease Co", json!({})).await;
    fund(&app, &child.id, "20.00").await;
    app.set_channel_limit(&app.manager.key, &child.id, 2).await;

    let lease = lease_of(&app, &child.id).await;
    let renewed = renew(&app, &lease, 600).await;
    renewed.assert_status(200);
    assert_eq!(renewed.body["data"]["live"], true);

    let first = release(&app, &lease).await;
    first.assert_status(200);
    assert_eq!(first.body["data"]["released_now"], true);
    assert_eq!(first.body["data"]["live"], false);
    let second = release(&app, &lease).await;
    second.assert_status(200);
    assert_eq!(second.body["data"]["released_now"], false);
    assert_eq!(second.body["data"]["live"], false);
    let refused = renew(&app, &lease, 600).await;
    refused.assert_error(422, "40004", None);
    assert!(
        refused.error()["detail"]
            .as_str()
            .unwrap()
            .contains("already ended"),
        "{:?}",
        refused.body
    );

    // An expired lease: not renewed back to life, and releasing it ends nothing.
    let expiring = lease_of(&app, &child.id).await;
    app.clock.advance(TimeDelta::seconds(301));
    renew(&app, &expiring, 600)
        .await
        .assert_error(422, "40004", None);
    let late = release(&app, &expiring).await;
    late.assert_status(200);
    assert_eq!(late.body["data"]["released_now"], false);

    release(&app, "no-such-lease")
        .await
        .assert_error(404, "10005", None);
    renew(&app, "no-such-lease", 600)
        .await
        .assert_error(404, "10005", None);
}

#[tokio::test]
async fn leases_ended_over_the_retention_are_deleted_and_late_usage_still_charged() {
    let app = spawn_app().await;
    app.import_prices(BASE_PRICES, "platform_default=true")
        .await
        .assert_status(200);
    let child = app.managed_of(&app.manager, "Old Calls", json!({})).await;
    fund(&app, &child.id, "20.00").await;
    app.set_channel_limit(&app.manager.key, &child.id, 5).await;

    let released = lease_of(&app, &child.id).await;
    release(&app, &released).await.assert_status(200);
    let expired = lease_of(&app, &child.id).await;
    let long_call = lease_of(&app, &child.id).await;
    renew(&app, &long_call, 14_400).await.assert_status(200);
    // Eight days pass; the long call renews its lease every three hours.
    for _ in 0..64 {
        app.clock.advance(TimeDelta::hours(3));
        renew(&app, &long_call, 14_400).await.assert_status(200);
    }
    let ended_recently = lease_of(&app, &child.id).await;
    release(&app, &ended_recently).await.assert_status(200);

    let clock: steward::clock::ClockHandle = std::sync::Arc::new(app.clock.clone());
    let swept = steward::admission::sweep_ended_leases(&app.db, &clock)
        .await
        .unwrap();
    assert_eq!(swept, 2);
    for gone in [&released, &expired] {
        release(&app, gone).await.assert_error(404, "10005", None);
    }
    renew(&app, &long_call, 14_400).await.assert_status(200);
    let kept = release(&app, &ended_recently).await;
    kept.assert_status(200);
    assert_eq!(kept.body["data"]["released_now"], false);

    // The old call's usage arrives late: it is charged, its lease now unknown.
    let mut late =
        crate::helpers::event("late-call", &child.id, "voice_outbound", "+14155550100", 60);
    late["lease_id"] = json!(released);
    let answer = app.ingest(json!([late])).await;
    answer.assert_status(200);
    assert_eq!(answer.body["data"][0]["status"], "accepted");
    assert_eq!(answer.body["data"][0]["lease"], "unknown");
    // A second sweep finds nothing more.
    assert_eq!(
        steward::admission::sweep_ended_leases(&app.db, &clock)
            .await
            .unwrap(),
        0
    );
}
