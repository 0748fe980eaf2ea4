use std::collections::HashSet;

use chrono::TimeDelta;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn list(app: &TestApp, query: &[(&str, &str)]) -> crate::helpers::Reply {
    let query: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    app.get(
        &format!("/v2/managed_accounts?{}", query.join("&")),
        &app.manager.key,
    )
    .await
}

fn emails(reply: &crate::helpers::Reply) -> Vec<String> {
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["email"].as_str().unwrap().to_owned())
        .collect()
}

/// Three accounts created a second apart: alpha, bravo, charlie.
async fn three_accounts(app: &TestApp) {
    for (name, email) in [
        ("Alpha Widgets", "alpha@one.example"),
        ("Bravo Ünïcode GmbH", "bravo@two.example"),
        ("Charlie 100%_Sure", "charlie@three.example"),
    ] {
        app.managed_of(&app.manager, name, json!({"email": email}))
            .await;
        app.clock.advance(TimeDelta::seconds(1));
    }
}

#[tokio::test]
async fn list_items_carry_no_secrets_and_default_to_newest_first() {
    let app = spawn_app().await;
    three_accounts(&app).await;

    let reply = list(&app, &[]).await;

    reply.assert_status(200);
    assert_eq!(
        emails(&reply),
        [
            "charlie@three.example",
            "bravo@two.example",
            "alpha@one.example"
        ]
    );
    assert_eq!(
        reply.body["meta"],
        json!({"page_number": 1, "page_size": 20, "total_pages": 1, "total_results": 3})
    );
    for item in reply.body["data"].as_array().unwrap() {
        assert!(
            item.get("api_key").is_none()
                && item.get("api_token").is_none()
                && item.get("balance").is_none()
        );
        assert_eq!(item["api_user"], app.manager.email);
    }
}

#[tokio::test]
async fn sort_accepts_both_keys_in_both_directions() {
    let app = spawn_app().await;
    three_accounts(&app).await;

    assert_eq!(
        emails(&list(&app, &[("sort", "created_at")]).await)[0],
        "alpha@one.example"
    );
    assert_eq!(
        emails(&list(&app, &[("sort", "-created_at")]).await)[0],
        "charlie@three.example"
    );
    assert_eq!(
        emails(&list(&app, &[("sort", "email")]).await)[0],
        "alpha@one.example"
    );
    assert_eq!(
        emails(&list(&app, &[("sort", "-email")]).await)[0],
        "charlie@three.example"
    );
    list(&app, &[("sort", "balance")]).await.assert_error(
        400,
        "10015",
        Some(("parameter", "sort")),
    );
}

#[tokio::test]
async fn filters_match_case_insensitively_and_literally() {
    let app = spawn_app().await;
    three_accounts(&app).await;
    let app_ref = &app;
    let only = |query: Vec<(&'static str, &'static str)>| async move {
        emails(&list(app_ref, &query).await)
    };

    assert_eq!(
        only(vec![("filter[email][contains]", "BRAVO")]).await,
        ["bravo@two.example"]
    );
    assert_eq!(
        only(vec![("filter[email][eq]", "Alpha@One.example")]).await,
        ["alpha@one.example"]
    );
    assert_eq!(
        only(vec![("filter[organization_name][contains]", "üNÏ")]).await,
        ["bravo@two.example"]
    );
    assert_eq!(
        only(vec![("filter[organization_name][eq]", "Alpha Widgets")]).await,
        ["alpha@one.example"]
    );
    assert!(
        only(vec![("filter[organization_name][eq]", "alpha widgets")])
            .await
            .is_empty()
    );
    // LIKE metacharacters match only themselves.
    assert_eq!(
        only(vec![("filter[organization_name][contains]", "0%_")]).await,
        ["charlie@three.example"]
    );
    assert!(
        only(vec![("filter[organization_name][contains]", "%%%")])
            .await
            .is_empty()
    );
    assert!(
        only(vec![("filter[email][contains]", "___")])
            .await
            .is_empty()
    );
    // SQL metacharacters are data.
    assert!(
        only(vec![("filter[email][contains]", "' OR 1=1 --")])
            .await
            .is_empty()
    );
    assert!(
        only(vec![(
            "filter[organization_name][eq]",
            "x'); DROP TABLE accounts; --"
        )])
        .await
        .is_empty()
    );
    assert_eq!(list(&app, &[]).await.body["meta"]["total_results"], 3);
    // Filters combine.
    assert!(
        only(vec![
            ("filter[email][contains]", "alpha"),
            ("filter[organization_name][contains]", "bravo")
        ])
        .await
        .is_empty()
    );
}

#[tokio::test]
async fn bad_list_parameters_are_refused_with_the_parameter_named() {
    let app = spawn_app().await;
    let cases: [(&str, &str, u16, &str); 8] = [
        ("filter[email][contains]", "ab", 422, "40001"),
        ("filter[organization_name][contains]", "é", 422, "40001"),
        ("filter[status][eq]", "sleeping", 422, "40001"),
        ("filter[balance][gt]", "1", 400, "10015"),
        ("page[size]", "0", 422, "40001"),
        ("page[size]", "251", 422, "40001"),
        ("page[number]", "abc", 422, "40001"),
        ("include_cancelled_accounts", "maybe", 400, "10015"),
    ];
    for (name, value, status, code) in cases {
        list(&app, &[(name, value)])
            .await
            .assert_error(status, code, Some(("parameter", name)));
    }
    // Unknown parameters outside `filter` are tolerated (the SDKs may send extra ones).
    list(&app, &[("extra", "1")]).await.assert_status(200);
}

#[tokio::test]
async fn paging_walks_every_account_exactly_once() {
    let app = spawn_app().await;
    for n in 0..23 {
        app.managed_of(&app.manager, &format!("Company {n}"), json!({}))
            .await;
    }

    let mut seen = HashSet::new();
    let mut page_number = 1;
    loop {
        let reply = list(
            &app,
            &[
                ("page[number]", &page_number.to_string()),
                ("page[size]", "5"),
            ],
        )
        .await;
        reply.assert_status(200);
        let meta = &reply.body["meta"];
        assert_eq!(meta["total_results"], 23);
        assert_eq!(meta["total_pages"], 5);
        assert_eq!(meta["page_number"], page_number);
        for item in reply.body["data"].as_array().unwrap() {
            assert!(
                seen.insert(item["id"].as_str().unwrap().to_owned()),
                "seen twice"
            );
        }
        if page_number >= meta["total_pages"].as_u64().unwrap() {
            break;
        }
        page_number += 1;
    }
    assert_eq!(seen.len(), 23);
    let beyond = list(&app, &[("page[number]", "9"), ("page[size]", "5")]).await;
    assert_eq!(beyond.body["data"], json!([]));
}

#[tokio::test]
async fn cancelled_accounts_are_listed_only_when_asked_for() {
    let app = spawn_app().await;
    let gone = app.managed_of(&app.manager, "Gone", json!({})).await;
    let off = app.managed_of(&app.manager, "Off", json!({})).await;
    app.managed_of(&app.manager, "On", json!({})).await;
    app.cancel_account(&gone.id, false).await;
    app.post(
        &format!("/v2/managed_accounts/{}/actions/disable", off.id),
        &app.manager.key,
        None,
    )
    .await;

    let total =
        |reply: crate::helpers::Reply| reply.body["meta"]["total_results"].as_u64().unwrap();
    assert_eq!(total(list(&app, &[]).await), 2);
    assert_eq!(
        total(list(&app, &[("include_cancelled_accounts", "true")]).await),
        3
    );
    assert_eq!(
        total(list(&app, &[("filter[status][eq]", "cancelled")]).await),
        1
    );
    assert_eq!(total(list(&app, &[("filter[status][eq]", "all")]).await), 3);
    assert_eq!(
        total(list(&app, &[("filter[status][eq]", "enabled")]).await),
        1
    );
    assert_eq!(
        total(list(&app, &[("filter[status][eq]", "active")]).await),
        1
    );
    assert_eq!(
        total(list(&app, &[("filter[status][eq]", "disabled")]).await),
        1
    );
    assert_eq!(
        total(list(&app, &[("filter[status][eq]", "blocked")]).await),
        0
    );
}

#[tokio::test]
async fn a_manager_lists_only_its_own_accounts() {
    let app = spawn_app().await;
    app.managed_of(&app.manager, "Mine", json!({})).await;
    app.managed_of(&app.other_manager, "Theirs", json!({}))
        .await;

    let reply = list(&app, &[("filter[status][eq]", "all")]).await;

    assert_eq!(reply.body["meta"]["total_results"], 1);
    assert_eq!(reply.body["data"][0]["organization_name"], "Mine");
}

/// The ids a filtered list answers with, all pages in one.
async fn matching_ids(app: &TestApp, name: &str, needle: &str) -> Vec<String> {
    let reply = list(app, &[(name, needle), ("page[size]", "250")]).await;
    reply.assert_status(200);
    let mut ids: Vec<String> = reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(reply.body["meta"]["total_results"], ids.len(), "{needle}");
    ids
}

#[tokio::test]
async fn contains_filters_served_by_the_index_match_exactly_what_a_substring_match_would() {
    let app = spawn_app().await;
    let names = [
        ("Straße \"Quoted\" Co", "strasse@one.example"),
        ("İstanbul Ltd", "istanbul@two.example"),
        ("ΣΊΣΥΦΟΣ Σ.Α.", "sisyphos@three.example"),
        ("東京都 Holdings", "tokyo@four.example"),
        ("50%_off\\back", "a_x@five.example"),
        ("Emoji 🎉🎉 Party", "emoji@six.example"),
        ("aaaa", "aaaa@seven.example"),
        ("ab\"c AND def OR ghi*", "quotes@eight.example"),
        ("Ordinary Reseller Customer", "Mixed.Case@Nine.Example"),
    ];
    let mut accounts = Vec::new();
    for (name, email) in names {
        let actor = app
            .managed_of(&app.manager, name, json!({"email": email}))
            .await;
        accounts.push((actor.id, name.to_owned(), email.to_owned()));
    }
    // Another manager's look-alike is never listed.
    app.managed_of(
        &app.other_manager,
        "aaaa too",
        json!({"email": "aaaa@other.example"}),
    )
    .await;

    let check = |accounts: Vec<(String, String, String)>| {
        let app = &app;
        async move {
            let names = [
                "\"quoted\"",
                "e \"q",
                "STRASSE",
                "straße",
                "İst",
                "ist",
                "istanbul",
                "σ.α",
                "ΦΟΣ",
                "σίσυφος",
                "東京都",
                "京都 h",
                "%_o",
                "\\ba",
                "0%_",
                "🎉🎉 ",
                "🎉 p",
                "aaa",
                "aaaaa",
                "b\"c",
                "\"\"\"",
                "___",
                "and def or",
                "ghi*",
                "ORDINARY",
                "reseller customer",
                "nothing like it",
            ];
            for needle in names {
                let folded = needle.to_lowercase();
                let mut expected: Vec<String> = accounts
                    .iter()
                    .filter(|(_, name, _)| name.to_lowercase().contains(&folded))
                    .map(|(id, _, _)| id.clone())
                    .collect();
                expected.sort();
                let got = matching_ids(app, "filter[organization_name][contains]", needle).await;
                assert_eq!(got, expected, "organization_name contains {needle:?}");
            }
            for needle in [
                "STRASSE",
                "a_x",
                "_x@",
                "aaa",
                ".example",
                "mixed.case@nine",
                "@one.",
                "ine.exa",
            ] {
                let folded = needle.to_lowercase();
                let mut expected: Vec<String> = accounts
                    .iter()
                    .filter(|(_, _, email)| email.to_lowercase().contains(&folded))
                    .map(|(id, _, _)| id.clone())
                    .collect();
                expected.sort();
                let got = matching_ids(app, "filter[email][contains]", needle).await;
                assert_eq!(got, expected, "email contains {needle:?}");
            }
        }
    };
    check(accounts.clone()).await;

    // Renamed: the index follows in the same transaction.
    let (renamed_id, _, renamed_email) = accounts[6].clone();
    app.patch(
        &format!("/v2/managed_accounts/{renamed_id}"),
        &app.manager.key,
        json!({"business_name": "zzzz bbb", "email": "renamed@seven.example"}),
    )
    .await
    .assert_status(200);
    assert_ne!(renamed_email, "renamed@seven.example");
    accounts[6] = (
        renamed_id,
        "zzzz bbb".to_owned(),
        "renamed@seven.example".to_owned(),
    );
    check(accounts).await;
    assert!(
        matching_ids(&app, "filter[organization_name][contains]", "zzz bb")
            .await
            .len()
            == 1
    );
}
