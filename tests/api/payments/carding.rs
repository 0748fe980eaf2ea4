//! Carding defences: every rule trips at its threshold, answers 429 with Retry-After and
//! advice, keeps the gateway out of it, and lifts after its window (or by the operator);
//! every test runs its requests through two servers on one database, taking turns.

use std::sync::Arc;

use chrono::TimeDelta;
use futures::future::join_all;
use serde_json::{Value, json};
use steward::clock::ClockHandle;
use steward::payments::carding;

use super::*;
use crate::helpers::spawn_app;

#[track_caller]
fn assert_paused(reply: &Reply, retry_after_s: u64) {
    reply.assert_error(429, "40020", None);
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry_after, retry_after_s, "{}", reply.body);
    assert_eq!(reply.headers["x-should-retry"], "false");
    let detail = reply.error()["detail"].as_str().unwrap();
    assert!(
        detail.contains("larger amounts") && detail.contains("rollup billing"),
        "no advice: {detail}"
    );
}

/// The test app and a second server on its database. Requests take turns between them, so
/// that every rule is decided by two servers with the database as the only arbiter.
struct Servers<'a> {
    app: &'a TestApp,
    addresses: [String; 2],
    turn: std::cell::Cell<usize>,
}

impl<'a> Servers<'a> {
    async fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            addresses: [app.address.clone(), app.second_server().await],
            turn: std::cell::Cell::new(0),
        }
    }

    fn next(&self) -> &str {
        let turn = self.turn.get();
        self.turn.set(turn + 1);
        &self.addresses[turn % 2]
    }
}

async fn top_up_via(
    servers: &Servers<'_>,
    key: &str,
    managed: Option<&Actor>,
    body: Value,
    idempotency_key: Option<&str>,
) -> Reply {
    top_up_at(
        servers.next(),
        servers.app,
        key,
        managed,
        body,
        idempotency_key,
    )
    .await
}

async fn pay(servers: &Servers<'_>, key: &str, managed: Option<&Actor>, amount: &str) -> Reply {
    top_up_via(servers, key, managed, json!({ "amount": amount }), None).await
}

async fn add_token_via(
    servers: &Servers<'_>,
    key: &str,
    managed: Option<&Actor>,
    token: &str,
) -> Reply {
    add_token_at(servers.next(), servers.app, key, managed, token).await
}

async fn add_card_via(servers: &Servers<'_>, key: &str, managed: Option<&Actor>, number: &str) {
    let token = tokenize(servers.app, key, number).await;
    add_token_via(servers, key, managed, &token)
        .await
        .assert_status(200);
}

const DAY_S: u64 = 86_400;
const HOUR_S: u64 = 3_600;

/// Five managed accounts of one manager, each with the same card saved.
async fn five_accounts_one_card(servers: &Servers<'_>) -> Vec<Actor> {
    let app = servers.app;
    let mut accounts = Vec::new();
    for n in 0..5 {
        let account = customer(app, &format!("Shop {n}")).await;
        add_card_via(servers, &app.manager.key, Some(&account), VISA).await;
        accounts.push(account);
    }
    accounts
}

#[tokio::test]
async fn one_card_topping_up_a_fourth_account_in_a_day_is_paused_with_advice_until_the_day_is_over()
{
    let app = spawn_app().await;
    let servers = Servers::new(&app).await;
    let accounts = five_accounts_one_card(&servers).await;

    let mut replies = Vec::new();
    for account in &accounts {
        replies.push(pay(&servers, &app.manager.key, Some(account), "25.00").await);
    }

    for reply in replies.iter().take(3) {
        reply.assert_status(200);
    }
    assert_paused(&replies[3], DAY_S);
    assert!(
        replies[3].error()["detail"]
            .as_str()
            .unwrap()
            .contains("3 different accounts in 24 hours")
    );
    assert_paused(&replies[4], DAY_S);
    assert_eq!(
        sandbox_charges(&app).await,
        3,
        "blocked attempts reached the gateway"
    );
    // The card is paused everywhere, also on the accounts it already topped up.
    assert_paused(
        &pay(&servers, &app.manager.key, Some(&accounts[0]), "25.00").await,
        DAY_S,
    );

    app.clock.advance(TimeDelta::hours(23));
    assert_paused(
        &pay(&servers, &app.manager.key, Some(&accounts[3]), "25.00").await,
        HOUR_S,
    );
    app.clock.advance(TimeDelta::hours(1));
    pay(&servers, &app.manager.key, Some(&accounts[3]), "25.00")
        .await
        .assert_status(200);

    // The block is on the trail of the account that tripped it, set by Steward itself.
    let trail = app
        .get(
            &format!("/v2/audit_events?filter[account_id]={}", accounts[3].id),
            &app.manager.key,
        )
        .await;
    let block = trail.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["change_type"] == "payment_block.create")
        .cloned()
        .unwrap_or_else(|| panic!("no block event: {}", trail.body));
    assert_eq!(block["change_made_by"], "telnyx");
    assert_books_clean(&app).await;
}

#[tokio::test]
async fn a_card_is_paused_after_its_daily_number_of_top_ups() {
    let app = spawn_app().await;
    let servers = Servers::new(&app).await;
    let account = customer(&app, "Frequent").await;
    add_card_via(&servers, &account.key, None, VISA).await;

    for _ in 0..10 {
        pay(&servers, &account.key, None, "10.00")
            .await
            .assert_status(200);
    }
    let eleventh = pay(&servers, &account.key, None, "10.00").await;

    assert_paused(&eleventh, DAY_S);
    assert!(
        eleventh.error()["detail"]
            .as_str()
            .unwrap()
            .contains("limit of 10 top-ups in 24 hours")
    );
    assert_eq!(sandbox_charges(&app).await, 10);
    app.clock.advance(TimeDelta::days(1));
    pay(&servers, &account.key, None, "10.00")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_account_adding_a_fourth_card_in_a_day_is_paused() {
    let app = spawn_app().await;
    let servers = Servers::new(&app).await;
    let account = customer(&app, "Collector").await;
    for number in [VISA, MASTERCARD, AMEX] {
        add_card_via(&servers, &account.key, None, number).await;
    }
    let token = tokenize(&app, &account.key, DISCOVER).await;

    let fourth = add_token_via(&servers, &account.key, None, &token).await;

    assert_paused(&fourth, DAY_S);
    assert!(
        fourth.error()["detail"]
            .as_str()
            .unwrap()
            .contains("added 3 different cards")
    );
    // The account is paused: its top-ups too. Other accounts are not.
    assert_paused(&pay(&servers, &account.key, None, "10.00").await, DAY_S);
    assert_eq!(sandbox_charges(&app).await, 0);
    let other = customer(&app, "Unaffected").await;
    add_card_via(&servers, &other.key, None, DISCOVER).await;
    pay(&servers, &other.key, None, "10.00")
        .await
        .assert_status(200);

    app.clock.advance(TimeDelta::days(1));
    add_token_via(&servers, &account.key, None, &token)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_account_is_paused_for_an_hour_after_three_declines() {
    let app = spawn_app().await;
    let servers = Servers::new(&app).await;
    let account = customer(&app, "Decliner").await;
    add_card_via(&servers, &account.key, None, INSUFFICIENT_FUNDS).await;
    add_card_via(&servers, &account.key, None, VISA).await;
    let visa_id = {
        let listed = app.get("/v2/payment_methods", &account.key).await;
        listed.body["data"][0]["id"].as_str().unwrap().to_owned()
    };

    for _ in 0..3 {
        pay(&servers, &account.key, None, "10.00")
            .await
            .assert_error(422, "40021", None);
    }
    let charges = sandbox_charges(&app).await;
    let with_good_card = top_up_via(
        &servers,
        &account.key,
        None,
        json!({"amount": "10.00", "payment_method_id": visa_id}),
        None,
    )
    .await;

    assert_paused(&with_good_card, HOUR_S);
    assert!(
        with_good_card.error()["detail"]
            .as_str()
            .unwrap()
            .contains("3 declined payments in 1 hour")
    );
    assert_eq!(sandbox_charges(&app).await, charges);
    app.clock.advance(TimeDelta::minutes(59));
    assert_paused(
        &top_up_via(
            &servers,
            &account.key,
            None,
            json!({"amount": "10.00", "payment_method_id": visa_id}),
            None,
        )
        .await,
        60,
    );
    app.clock.advance(TimeDelta::minutes(1));
    top_up_via(
        &servers,
        &account.key,
        None,
        json!({"amount": "10.00", "payment_method_id": visa_id}),
        None,
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn a_manager_tree_is_paused_after_its_declines_and_other_trees_are_not() {
    let app = spawn_app().await;
    let servers = Servers::new(&app).await;
    set_setting(&app, "tree_declines_max", "4").await;
    let mut declining = Vec::new();
    for n in 0..2 {
        let account = customer(&app, &format!("Tree {n}")).await;
        add_card_via(&servers, &app.manager.key, Some(&account), STOLEN).await;
        declining.push(account);
    }
    let third = customer(&app, "Tree Good").await;
    add_card_via(&servers, &app.manager.key, Some(&third), VISA).await;
    let elsewhere = app
        .managed_of(&app.other_manager, "Other Tree", json!({}))
        .await;
    add_card_via(
        &servers,
        &app.other_manager.key,
        Some(&elsewhere),
        MASTERCARD,
    )
    .await;

    for account in declining.iter().chain(declining.iter()) {
        pay(&servers, &app.manager.key, Some(account), "10.00")
            .await
            .assert_error(422, "40021", None);
    }
    let blocked = pay(&servers, &app.manager.key, Some(&third), "10.00").await;

    assert_paused(&blocked, HOUR_S);
    assert!(
        blocked.error()["detail"]
            .as_str()
            .unwrap()
            .contains("accounts of this manager had 4 declined")
    );
    pay(&servers, &app.other_manager.key, Some(&elsewhere), "10.00")
        .await
        .assert_status(200);
    app.clock.advance(TimeDelta::hours(1));
    pay(&servers, &app.manager.key, Some(&third), "10.00")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn the_operator_lists_and_lifts_a_block_and_the_counts_start_afresh() {
    let app = spawn_app().await;
    let servers = Servers::new(&app).await;
    let clock: ClockHandle = Arc::new(app.clock.clone());
    let accounts = five_accounts_one_card(&servers).await;
    for account in accounts.iter().take(4) {
        pay(&servers, &app.manager.key, Some(account), "25.00").await;
    }
    let blocks = carding::list_blocks(&app.db, &clock, false).await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        (blocks[0].scope.as_str(), blocks[0].rule.as_str()),
        ("card", "card_accounts")
    );
    assert_eq!(blocks[0].card.as_deref(), Some("visa •••• 4242"));

    let lifted = carding::lift_block(&app.db, &clock, &blocks[0].id, &crate::helpers::operator())
        .await
        .unwrap();

    assert!(!lifted.active && lifted.lifted_at.is_some());
    assert!(
        carding::list_blocks(&app.db, &clock, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        carding::list_blocks(&app.db, &clock, true)
            .await
            .unwrap()
            .len(),
        1
    );
    for account in &accounts[3..] {
        pay(&servers, &app.manager.key, Some(account), "25.00")
            .await
            .assert_status(200);
    }
    let trail = app
        .get(
            &format!("/v2/audit_events?filter[account_id]={}", accounts[3].id),
            &app.manager.key,
        )
        .await;
    assert!(
        trail.body.to_string().contains("payment_block.lift"),
        "{}",
        trail.body
    );
}

#[tokio::test]
async fn card_limits_hold_across_two_servers_and_under_concurrent_attempts() {
    let app = spawn_app().await;
    let servers = Servers::new(&app).await;
    let second = servers.addresses[1].clone();
    let accounts = five_accounts_one_card(&servers).await;

    let replies = join_all(accounts.iter().enumerate().map(|(n, account)| {
        let address = if n % 2 == 0 {
            app.address.clone()
        } else {
            second.clone()
        };
        let app = &app;
        async move {
            top_up_at(
                &address,
                app,
                &app.manager.key,
                Some(account),
                json!({"amount": "25.00"}),
                None,
            )
            .await
        }
    }))
    .await;

    let paid = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        paid,
        3,
        "{:?}",
        replies.iter().map(|r| r.body.clone()).collect::<Vec<_>>()
    );
    for refused in replies.iter().filter(|r| r.status != 200) {
        assert_paused(refused, DAY_S);
    }
    assert_eq!(sandbox_charges(&app).await, 3);
    // Either server refuses the card until the day is over.
    let last = &accounts[4];
    for address in [&app.address, &second] {
        let reply = top_up_at(
            address,
            &app,
            &app.manager.key,
            Some(last),
            json!({"amount": "25.00"}),
            None,
        )
        .await;
        assert_paused(&reply, DAY_S);
    }
    app.clock.advance(TimeDelta::days(1));
    top_up_at(
        &second,
        &app,
        &app.manager.key,
        Some(last),
        json!({"amount": "25.00"}),
        None,
    )
    .await
    .assert_status(200);
    assert_books_clean(&app).await;
}
