//! The operator's payment verbs, run as the real binary: settings, blocks, refunds.

use std::process::Command;

use serde_json::{Value, json};

use super::*;
use crate::helpers::spawn_app;

fn steward(database_url: &str, args: &[&str]) -> Result<Value, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_steward"))
        .arg("admin")
        .args(args)
        .args(["--database-url", database_url, "--sandbox-latency-ms", "0"])
        .output()
        .expect("run steward");
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_operator_tunes_settings_lists_and_lifts_blocks_and_refunds_from_the_command_line() {
    let app = spawn_app().await;
    let db = app.database_url.clone();
    // The command line reads the wall clock: bring the server's clock to it.
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let server_ms = steward::clock::Clock::now(&app.clock).timestamp_millis();
    app.clock.advance(chrono::TimeDelta::milliseconds(
        i64::try_from(wall_ms).unwrap() - server_ms,
    ));

    let shown = steward(&db, &["payment-settings"]).unwrap();
    assert_eq!(shown["settings"]["card_accounts_max"]["value"], "3");
    assert_eq!(shown["settings"]["topup_amount_min"]["default"], "10.00");
    let changed = steward(
        &db,
        &[
            "set-payment-setting",
            "--name",
            "card_accounts_max",
            "--value",
            "1",
        ],
    )
    .unwrap();
    assert_eq!(changed["settings"]["card_accounts_max"]["value"], "1");
    assert!(
        steward(
            &db,
            &[
                "set-payment-setting",
                "--name",
                "card_accounts_max",
                "--value",
                "-1"
            ]
        )
        .is_err()
    );
    assert!(
        steward(
            &db,
            &[
                "set-payment-setting",
                "--name",
                "no_such_setting",
                "--value",
                "1"
            ]
        )
        .is_err()
    );
    assert!(
        steward(
            &db,
            &[
                "set-payment-setting",
                "--name",
                "topup_amount_min",
                "--value",
                "20000.00"
            ]
        )
        .is_err()
    );

    // With one account per card allowed, the second account trips the rule.
    let first = customer(&app, "First").await;
    let second = customer(&app, "Second").await;
    for account in [&first, &second] {
        add_card(&app, &app.manager.key, Some(account), VISA).await;
    }
    let paid = top_up_amount(&app, &app.manager.key, Some(&first), "40.00").await;
    paid.assert_status(200);
    top_up_amount(&app, &app.manager.key, Some(&second), "40.00")
        .await
        .assert_status(429);

    let blocks = steward(&db, &["payment-blocks"]).unwrap();
    let block = &blocks["blocks"][0];
    assert_eq!(
        (block["scope"].as_str(), block["active"].as_bool()),
        (Some("card"), Some(true))
    );
    let lifted = steward(
        &db,
        &["lift-block", "--block", block["id"].as_str().unwrap()],
    )
    .unwrap();
    assert_eq!(lifted["active"], false);
    assert_eq!(
        steward(&db, &["payment-blocks"]).unwrap()["blocks"],
        json!([])
    );
    assert_eq!(
        steward(&db, &["payment-blocks", "--all"]).unwrap()["blocks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    top_up_amount(&app, &app.manager.key, Some(&second), "40.00")
        .await
        .assert_status(200);

    let payment = paid.body["data"]["id"].as_str().unwrap();
    let refund = steward(
        &db,
        &[
            "refund-payment",
            "--payment",
            payment,
            "--amount",
            "15.00",
            "--reason",
            "goodwill",
        ],
    )
    .unwrap();
    assert_eq!(
        (refund["status"].as_str(), refund["amount"].as_str()),
        (Some("succeeded"), Some("15.00"))
    );
    assert!(
        steward(
            &db,
            &[
                "refund-payment",
                "--payment",
                payment,
                "--amount",
                "30.00",
                "--reason",
                "too much"
            ]
        )
        .is_err()
    );
    assert_eq!(app.balance_of(&first.key).await, "25.00");
    let verified = steward(&db, &["verify-ledger"]).unwrap();
    assert_eq!(
        (
            verified["card_payments"].as_i64(),
            verified["card_refunds"].as_i64()
        ),
        (Some(2), Some(1))
    );
}
