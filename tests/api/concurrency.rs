use std::sync::Arc;

use futures::future::join_all;
use serde_json::json;
use steward::accounts::{AccountId, operator};
use steward::clock::ClockHandle;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_managed_account_limit_holds_under_concurrent_creates() {
    let app = spawn_app().await;
    let clock: ClockHandle = Arc::new(app.clock.clone());
    let manager_id = AccountId::parse(&app.manager.id).unwrap();
    operator::set_managed_account_limit(
        &app.db,
        &clock,
        manager_id,
        5,
        &crate::helpers::operator(),
    )
    .await
    .unwrap();

    let replies = join_all((0..12).map(|n| {
        app.create_managed(
            &app.manager.key,
            json!({"business_name": format!("Racer {n}")}),
        )
    }))
    .await;

    let created = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(created, 5);
    for refused in replies.iter().filter(|r| r.status != 200) {
        refused.assert_error(422, "40002", None);
        assert!(
            refused.error()["detail"]
                .as_str()
                .unwrap()
                .contains("limit of 5")
        );
    }
    let listed = app.get("/v2/managed_accounts", &app.manager.key).await;
    assert_eq!(listed.body["meta"]["total_results"], 5);

    // Cancelled accounts free their place.
    let first = listed.body["data"][0]["id"].as_str().unwrap().to_owned();
    app.cancel_account(&first, false).await;
    app.create_managed(&app.manager.key, json!({"business_name": "Late"}))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn concurrent_allocations_never_exceed_the_channel_pool() {
    let app = spawn_app().await; // pool of 10
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(
            app.managed_of(&app.manager, &format!("Chan {n}"), json!({}))
                .await
                .id,
        );
    }

    let paths: Vec<String> = ids
        .iter()
        .map(|id| format!("/v2/managed_accounts/{id}/update_global_channel_limit"))
        .collect();
    let replies = join_all(
        paths
            .iter()
            .map(|path| app.patch(path, &app.manager.key, json!({"channel_limit": 3}))),
    )
    .await;

    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 3);
    let allocated: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(channel_limit), 0) AS BIGINT) FROM accounts WHERE manager_id = $1",
    )
    .bind(&app.manager.id)
    .fetch_one(&app.db.read)
    .await
    .unwrap();
    assert_eq!(allocated, 9);
}

#[tokio::test]
async fn concurrent_creates_with_one_email_yield_one_account() {
    let app = spawn_app().await;

    let replies = join_all((0..8).map(|n| {
        let key = if n % 2 == 0 { &app.manager.key } else { &app.other_manager.key };
        app.create_managed(key, json!({"business_name": "Twin", "email": if n % 3 == 0 { "TWIN@same.example" } else { "twin@same.example" }}))
    }))
    .await;

    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 1);
    for refused in replies.iter().filter(|r| r.status != 200) {
        refused.assert_error(422, "10012", Some(("pointer", "/email")));
    }
}

#[tokio::test]
async fn an_enable_racing_a_cancellation_never_revives_the_account() {
    let app = spawn_app().await;
    let clock: ClockHandle = Arc::new(app.clock.clone());
    let mut ids = Vec::new();
    for n in 0..8 {
        let account = app
            .managed_of(&app.manager, &format!("Race {n}"), json!({}))
            .await;
        let path = format!("/v2/managed_accounts/{}/actions/disable", account.id);
        app.post(&path, &app.manager.key, None)
            .await
            .assert_status(200);
        ids.push(account.id);
    }

    let app = &app;
    let operator = crate::helpers::operator();
    let operator = &operator;
    let enables = join_all(ids.iter().map(|id| {
        let path = format!("/v2/managed_accounts/{id}/actions/enable");
        async move { app.post(&path, &app.manager.key, None).await }
    }));
    let cancels = join_all(ids.iter().map(|id| {
        let id = AccountId::parse(id).unwrap();
        operator::cancel_account(&app.db, &clock, id, false, false, operator)
    }));
    let (enabled, cancelled) = tokio::join!(enables, cancels);

    for outcome in cancelled {
        outcome.unwrap();
    }
    for reply in &enabled {
        // Either the enable came first (200) or it saw the cancellation (422).
        assert!(reply.status == 200 || reply.status == 422, "{reply:?}");
    }
    for id in &ids {
        let status: String = sqlx::query_scalar("SELECT status FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db.read)
            .await
            .unwrap();
        assert_eq!(status, "cancelled", "account {id}");
    }
}

#[tokio::test]
async fn a_cancelled_manager_creates_nothing_even_with_a_key_checked_before() {
    let app = spawn_app().await;
    let manager = app.standard_manager().await;
    let clock: ClockHandle = Arc::new(app.clock.clone());
    let id = AccountId::parse(&manager.id).unwrap();
    let creates =
        join_all((0..6).map(|n| {
            app.create_managed(&manager.key, json!({"business_name": format!("Late {n}")}))
        }));
    let operator = crate::helpers::operator();
    let cancel = operator::cancel_account(&app.db, &clock, id, true, false, &operator);
    let (replies, cancelled) = tokio::join!(creates, cancel);
    cancelled.unwrap();

    // Whatever was created before the cancellation was cancelled with it.
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM accounts WHERE manager_id = $1 AND status <> 'cancelled'",
    )
    .bind(&manager.id)
    .fetch_one(&app.db.read)
    .await
    .unwrap();
    assert_eq!(live, 0, "{replies:?}");
}
