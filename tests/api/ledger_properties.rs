//! Property test over the real server and database: random batches of usage, some sent
//! twice, some repeating ids across batches, must charge every distinct event exactly once,
//! to the right balance, with every ledger invariant intact.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// SMS at 0.004 a part; voice at 0.06 a minute in 6-second blocks (exactly 1,000,000 nanos
/// per billed second), so the expected cost needs no rating code.
const PRICES: &str = "product,prefix,rate,initial_increment_s,subsequent_increment_s
sms_outbound,,0.004,,
voice_outbound,,0.06,6,6
";

#[derive(Debug, Clone)]
struct Event {
    id: u8,
    account: usize,
    voice: bool,
    quantity: i64,
}

fn expected_cost(event: &Event) -> i64 {
    if event.voice {
        let billed = if event.quantity == 0 {
            0
        } else {
            (event.quantity + 5) / 6 * 6
        };
        billed * 1_000_000
    } else {
        event.quantity * 4_000_000
    }
}

fn events() -> impl Strategy<Value = Vec<(Vec<Event>, bool)>> {
    let event = (0_u8..40, 0_usize..3, any::<bool>(), 0_i64..200).prop_map(
        |(id, account, voice, quantity)| Event {
            id,
            account,
            voice,
            quantity,
        },
    );
    proptest::collection::vec(
        (proptest::collection::vec(event, 1..25), any::<bool>()),
        1..6,
    )
}

async fn balance_nanos(app: &TestApp, account: &str) -> i64 {
    let id = steward::accounts::AccountId::parse(account).unwrap();
    let mut conn = app.db.read.acquire().await.unwrap();
    steward::ledger::repo::account_balance(&mut conn, id)
        .await
        .unwrap()
        .balance
        .nanos()
}

#[test]
fn random_batches_with_retries_charge_each_event_exactly_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(async {
        let app = spawn_app().await;
        app.import_prices(PRICES, "platform_default=true")
            .await
            .assert_status(200);
        app
    });
    let (own, rollup) = runtime.block_on(async {
        let own = app.managed_of(&app.manager, "Own", json!({})).await;
        let rollup = app
            .managed_of(&app.manager, "Rollup", json!({"rollup_billing": true}))
            .await;
        (own, rollup)
    });
    let accounts = [own.id.clone(), rollup.id.clone(), app.manager.id.clone()];
    let mut runner = TestRunner::new(Config {
        cases: 16,
        ..Config::default()
    });
    let cases = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&events(), |batches| {
            let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            runtime.block_on(async {
                let start_own = balance_nanos(&app, &own.id).await;
                let start_manager = balance_nanos(&app, &app.manager.id).await;
                // The oracle: the first occurrence of an id, in sending order, is the one charged.
                let mut charged: HashMap<u8, Event> = HashMap::new();
                for (batch, retry) in &batches {
                    let body: Vec<Value> = batch
                        .iter()
                        .map(|e| {
                            json!({"id": format!("case{case}-ev{}", e.id), "account_id": accounts[e.account],
                                   "product": if e.voice { "voice_outbound" } else { "sms_outbound" },
                                   "destination": "+15550000000", "quantity": e.quantity,
                                   "occurred_at": "2026-01-01T12:00:30Z"})
                        })
                        .collect();
                    let reply = app.ingest(json!(body)).await;
                    reply.assert_status(200);
                    for (event, result) in batch.iter().zip(reply.body["data"].as_array().unwrap()) {
                        let first = !charged.contains_key(&event.id);
                        let expected = if first { "accepted" } else { "duplicate" };
                        prop_assert_eq!(result["status"].as_str().unwrap(), expected);
                        charged.entry(event.id).or_insert_with(|| event.clone());
                    }
                    if *retry {
                        let again = app.ingest(json!(body)).await;
                        let all_duplicate =
                            again.body["data"].as_array().unwrap().iter().all(|r| r["status"] == "duplicate");
                        prop_assert!(all_duplicate, "a retried batch charged again: {}", again.body);
                    }
                }
                let spent = |who: &[usize]| -> i64 {
                    charged.values().filter(|e| who.contains(&e.account)).map(expected_cost).sum()
                };
                prop_assert_eq!(balance_nanos(&app, &own.id).await - start_own, -spent(&[0]));
                prop_assert_eq!(balance_nanos(&app, &app.manager.id).await - start_manager, -spent(&[1, 2]));
                prop_assert_eq!(balance_nanos(&app, &rollup.id).await, 0);
                let verdict = steward::ledger::verify(&app.db).await.unwrap();
                prop_assert!(verdict.is_ok(), "ledger violation: {:?}", verdict);
                Ok(())
            })
        })
        .unwrap();
}
