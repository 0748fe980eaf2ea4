//! Card data is never echoed in an error nor stored in any table, wherever a customer
//! pastes it.

use reqwest::Method;
use serde_json::json;

use super::*;
use crate::helpers::{backend_is_postgres, spawn_app};

/// Spellings of the card numbers a scan looks for.
fn spellings(number: &str) -> Vec<String> {
    let grouped: Vec<String> = number
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    vec![number.to_owned(), grouped.join(" "), grouped.join("-")]
}

#[track_caller]
fn assert_no_card_data(text: &str) {
    for number in ALL_CARDS {
        for spelling in spellings(number) {
            assert!(
                !text.contains(&spelling),
                "card number {spelling} in: {text}"
            );
        }
    }
    assert!(!text.contains("tok_"), "a raw token in: {text}");
}

#[tokio::test]
async fn card_data_pasted_into_other_fields_is_never_echoed() {
    let app = spawn_app().await;
    let account = customer(&app, "Paster").await;
    let token = tokenize(&app, &account.key, VISA).await;
    let grouped = "4242 4242 4242 4242";
    let replies = [
        app.patch("/v2/account", &account.key, json!({"email": grouped}))
            .await,
        app.patch(
            "/v2/account",
            &account.key,
            json!({"email": format!("{VISA}@pay.example")}),
        )
        .await,
        app.patch(
            "/v2/account",
            &account.key,
            json!({"business_name": format!("Acme {grouped} Ltd")}),
        )
        .await,
        app.create_managed(&app.manager.key, json!({"business_name": MASTERCARD}))
            .await,
        app.create_managed(
            &app.manager.key,
            json!({"business_name": "Fine", "email": format!("{AMEX}@x.example")}),
        )
        .await,
        app.patch(
            &format!("/v2/managed_accounts/{}", account.id),
            &app.manager.key,
            json!({"business_name": DISCOVER}),
        )
        .await,
        app.get(
            &format!("/v2/managed_accounts?filter[{VISA}]=1"),
            &app.manager.key,
        )
        .await,
        app.post(
            "/v2/payment_methods",
            &account.key,
            Some(json!({"token": VISA})),
        )
        .await,
        app.post(
            "/v2/payment_methods",
            &account.key,
            Some(json!({"token": 4242424242424242_u64})),
        )
        .await,
        top_up(&app, &account.key, None, json!({"amount": VISA}), None).await,
        top_up(
            &app,
            &account.key,
            None,
            json!({"amount": "20.00", "payment_method_id": token}),
            None,
        )
        .await,
        top_up(
            &app,
            &account.key,
            None,
            json!({"amount": "20.00", "payment_method_id": 4242424242424242_u64}),
            None,
        )
        .await,
        app.request(
            Method::DELETE,
            &format!("/v2/payment_methods/{token}"),
            Some(&account.key),
            None,
        )
        .await,
        app.patch(
            "/v2/payment/auto_recharge_prefs",
            &account.key,
            json!({"threshold_amount": VISA}),
        )
        .await,
    ];
    for reply in replies {
        assert!(reply.status.is_client_error(), "{}", reply.body);
        assert_no_card_data(&reply.body.to_string());
    }
    // Nothing was stored under those names.
    let me = app.get("/v2/account", &account.key).await;
    assert_eq!(me.body["data"]["organization_name"], "Paster");
}

/// Every text of every column of every table.
async fn every_stored_text(app: &TestApp) -> Vec<String> {
    let tables: Vec<String> = if backend_is_postgres() {
        sqlx::query_scalar("SELECT CAST(table_name AS TEXT) FROM information_schema.tables WHERE table_schema = current_schema()")
            .fetch_all(&app.db.read)
            .await
            .unwrap()
    } else {
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&app.db.read)
            .await
            .unwrap()
    };
    assert!(tables.iter().any(|t| t == "sandbox_cards"), "{tables:?}");
    let mut texts = Vec::new();
    // The migrations' own bookkeeping (names and binary checksums) holds no data, and the
    // SQLite trigram index's internals are binary pages over the texts that the index's
    // content table (read here) holds as they are.
    let binary = [
        "_sqlx_migrations",
        "account_search_data",
        "account_search_idx",
        "account_search_docsize",
        "account_search_config",
    ];
    for table in tables.into_iter().filter(|t| !binary.contains(&t.as_str())) {
        let columns: Vec<String> = if backend_is_postgres() {
            sqlx::query_scalar(
                "SELECT CAST(column_name AS TEXT) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
            )
            .bind(&table)
            .fetch_all(&app.db.read)
            .await
            .unwrap()
        } else {
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                .bind(&table)
                .fetch_all(&app.db.read)
                .await
                .unwrap()
        };
        for column in columns {
            let sql = format!("SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\"");
            let values: Vec<Option<String>> = sqlx::query_scalar(&sql)
                .fetch_all(&app.db.read)
                .await
                .unwrap();
            texts.extend(values.into_iter().flatten());
        }
    }
    texts
}

#[tokio::test]
async fn no_table_holds_a_card_number_or_a_security_code_after_every_card_was_used() {
    let app = spawn_app().await;
    for (n, number) in ALL_CARDS.into_iter().enumerate() {
        let account = customer(&app, &format!("Scanned {n}")).await;
        add_card(&app, &account.key, None, number).await;
        top_up(
            &app,
            &account.key,
            None,
            json!({"amount": "15.00"}),
            Some("scan"),
        )
        .await;
        top_up(
            &app,
            &account.key,
            None,
            json!({"amount": "15.00"}),
            Some("scan"),
        )
        .await;
        // Pasted where it does not belong, too.
        app.patch(
            "/v2/account",
            &account.key,
            json!({"business_name": number}),
        )
        .await;
    }
    service(&app).reconcile_once().await.unwrap();

    let texts = every_stored_text(&app).await;

    assert!(
        texts.len() > 100,
        "the scan read too little: {}",
        texts.len()
    );
    for text in &texts {
        assert_no_card_data_stored(text);
    }
}

#[track_caller]
fn assert_no_card_data_stored(text: &str) {
    for number in ALL_CARDS {
        for spelling in spellings(number) {
            assert!(!text.contains(&spelling), "card number stored: {text}");
        }
    }
    assert!(
        text != CVC && text != AMEX_CVC,
        "a security code is stored: {text}"
    );
    assert!(
        !text.contains("\"cvc\""),
        "a security code is stored: {text}"
    );
}
