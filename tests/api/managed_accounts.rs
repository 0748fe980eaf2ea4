use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn manager_creates_a_managed_account_and_sees_its_key_in_full_only_once() {
    let app = spawn_app().await;

    let created = app
        .create_managed(
            &app.manager.key,
            json!({"business_name": "Larry's Cat Food Inc", "email": "larry@customer.example",
                   "password": "3jVjLq!tMuWKyWx4NN*CvhnB", "rollup_billing": false}),
        )
        .await;

    created.assert_status(200);
    let data = &created.body["data"];
    assert_eq!(data["record_type"], "managed_account");
    assert_eq!(data["email"], "larry@customer.example");
    assert_eq!(data["organization_name"], "Larry's Cat Food Inc");
    assert_eq!(data["manager_account_id"], app.manager.id);
    assert_eq!(data["api_user"], app.manager.email);
    assert_eq!(data["api_token"], "");
    assert_eq!(data["managed_account_allow_custom_pricing"], false);
    assert_eq!(data["rollup_billing"], false);
    assert_eq!(data["balance"]["balance"], "0.00");
    assert_eq!(data["balance"]["available_credit"], "0.00");
    assert_eq!(data["balance"]["currency"], "USD");
    assert!(data["created_at"].as_str().unwrap().ends_with('Z'));
    let key = data["api_key"].as_str().unwrap();
    let (public_id, _) = key.split_once('_').unwrap();

    // The key works and acts as the new account.
    let me = app.get("/v2/account", key).await;
    me.assert_status(200);
    assert_eq!(me.body["data"]["id"], data["id"]);
    assert_eq!(me.body["data"]["kind"], "managed");

    // Later reads carry the key's public identifier, never the secret.
    let id = data["id"].as_str().unwrap();
    let fetched = app
        .get(&format!("/v2/managed_accounts/{id}"), &app.manager.key)
        .await;
    fetched.assert_status(200);
    assert_eq!(fetched.body["data"]["api_key"], public_id);
    assert!(!fetched.body.to_string().contains(key));
}

#[tokio::test]
async fn without_an_email_one_is_generated_from_the_managers_and_is_unique() {
    let app = spawn_app().await;

    let first = app.managed_of(&app.manager, "First Co", json!({})).await;
    let second = app.managed_of(&app.manager, "Second Co", json!({})).await;

    for actor in [&first, &second] {
        assert!(actor.email.starts_with("Manager+"), "{}", actor.email);
        assert!(
            actor.email.ends_with("@Reseller.example"),
            "{}",
            actor.email
        );
    }
    assert_ne!(first.email.to_lowercase(), second.email.to_lowercase());
}

#[tokio::test]
async fn a_generated_email_stays_valid_for_long_manager_addresses() {
    let app = spawn_app().await;
    let long_local = "l".repeat(64);
    let manager = app
        .manager_with_email(&format!("{long_local}@reseller.example"))
        .await;

    let created = app.managed_of(&manager, "Long Co", json!({})).await;
    let (local, domain) = created.email.split_once('@').unwrap();
    assert_eq!(domain, "reseller.example");
    assert!(local.len() <= 64, "{local}");
    assert!(local.starts_with("lll") && local.contains('+'), "{local}");

    // A domain so long that no tag fits: the manager is asked for an email instead.
    let label = "d".repeat(60);
    let domain = format!("{label}.{label}.{label}.{label}.example");
    let crowded = app.manager_with_email(&format!("x@{domain}")).await;
    app.create_managed(&crowded.key, json!({"business_name": "Crowded"}))
        .await
        .assert_error(422, "10004", Some(("pointer", "/email")));
    let listed = app.get("/v2/managed_accounts", &crowded.key).await;
    assert_eq!(listed.body["meta"]["total_results"], 0);
}

#[tokio::test]
async fn an_email_in_use_anywhere_is_refused_whatever_its_case() {
    let app = spawn_app().await;
    app.managed_of(
        &app.manager,
        "Taken Co",
        json!({"email": "taken@customer.example"}),
    )
    .await;

    for email in [
        "TAKEN@customer.example",
        "solo@STANDARD.example",
        "boss@other.example",
    ] {
        let reply = app
            .create_managed(
                &app.manager.key,
                json!({"business_name": "Again", "email": email}),
            )
            .await;
        reply.assert_error(422, "10012", Some(("pointer", "/email")));
        assert!(
            reply.error()["detail"]
                .as_str()
                .unwrap()
                .contains("cannot be moved")
        );
    }
    let listed = app.get("/v2/managed_accounts", &app.manager.key).await;
    assert_eq!(listed.body["meta"]["total_results"], 1);
}

#[tokio::test]
async fn bad_fields_are_refused_with_a_pointer_and_create_nothing() {
    let app = spawn_app().await;
    let cases = [
        (json!({}), "10004", "/business_name"),
        (json!({"business_name": null}), "10004", "/business_name"),
        (json!({"business_name": "   "}), "40001", "/business_name"),
        (json!({"business_name": 42}), "40001", "/business_name"),
        (
            json!({"business_name": "Ok", "email": "not-an-email"}),
            "40001",
            "/email",
        ),
        (
            json!({"business_name": "Ok", "password": "short"}),
            "40001",
            "/password",
        ),
        (
            json!({"business_name": "Ok", "rollup_billing": "yes"}),
            "40001",
            "/rollup_billing",
        ),
        (
            json!({"business_name": "x".repeat(256)}),
            "40001",
            "/business_name",
        ),
    ];
    for (body, code, pointer) in cases {
        let reply = app.create_managed(&app.manager.key, body.clone()).await;
        assert_eq!(reply.status.as_u16(), 422, "{body} -> {}", reply.body);
        reply.assert_error(422, code, Some(("pointer", pointer)));
    }
    let listed = app.get("/v2/managed_accounts", &app.manager.key).await;
    assert_eq!(listed.body["meta"]["total_results"], 0);
}

#[tokio::test]
async fn only_approved_managers_may_manage_accounts() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Child", json!({})).await;

    let by_standard = app
        .create_managed(&app.standard.key, json!({"business_name": "X"}))
        .await;
    by_standard.assert_error(403, "10010", None);
    assert!(
        by_standard.error()["detail"]
            .as_str()
            .unwrap()
            .contains("approved manager")
    );

    for (method, path) in [
        (Method::GET, "/v2/managed_accounts".to_owned()),
        (Method::POST, "/v2/managed_accounts".to_owned()),
        (
            Method::GET,
            "/v2/managed_accounts/allocatable_global_outbound_channels".to_owned(),
        ),
        (Method::GET, format!("/v2/managed_accounts/{}", managed.id)),
    ] {
        let reply = app
            .request(
                method.clone(),
                &path,
                Some(&managed.key),
                Some(json!({"business_name": "Grandchild"})),
            )
            .await;
        reply.assert_error(403, "10010", None);
        let reply = app
            .request(
                method,
                &path,
                Some(&app.standard.key),
                Some(json!({"business_name": "Grandchild"})),
            )
            .await;
        reply.assert_error(403, "10010", None);
    }
}

#[tokio::test]
async fn another_managers_account_is_not_found_everywhere() {
    let app = spawn_app().await;
    let theirs = app
        .managed_of(&app.other_manager, "Not Yours", json!({}))
        .await;
    let id = &theirs.id;
    let key = &app.manager.key;

    let replies = [
        app.get(&format!("/v2/managed_accounts/{id}"), key).await,
        app.patch(
            &format!("/v2/managed_accounts/{id}"),
            key,
            json!({"managed_account_allow_custom_pricing": true}),
        )
        .await,
        app.post(
            &format!("/v2/managed_accounts/{id}/actions/disable"),
            key,
            None,
        )
        .await,
        app.post(
            &format!("/v2/managed_accounts/{id}/actions/enable"),
            key,
            Some(json!({})),
        )
        .await,
        app.patch(
            &format!("/v2/managed_accounts/{id}/update_global_channel_limit"),
            key,
            json!({"channel_limit": 1}),
        )
        .await,
        app.get(&format!("/v2/managed_accounts/{id}/api_keys"), key)
            .await,
        app.post(&format!("/v2/managed_accounts/{id}/api_keys"), key, None)
            .await,
        app.get("/v2/managed_accounts/not-a-uuid", key).await,
        app.get(
            "/v2/managed_accounts/00000000-0000-0000-0000-000000000000",
            key,
        )
        .await,
    ];
    for reply in replies {
        reply.assert_error(404, "10005", None);
    }
    // Nothing changed for the real owner.
    let owner_view = app
        .get(
            &format!("/v2/managed_accounts/{id}"),
            &app.other_manager.key,
        )
        .await;
    assert_eq!(owner_view.body["data"]["status"], "active");
    assert_eq!(
        owner_view.body["data"]["managed_account_allow_custom_pricing"],
        false
    );
}

#[tokio::test]
async fn custom_pricing_can_change_but_rollup_billing_cannot() {
    let app = spawn_app().await;
    let managed = app
        .managed_of(&app.manager, "Roll Co", json!({"rollup_billing": true}))
        .await;
    let path = format!("/v2/managed_accounts/{}", managed.id);

    let on = app
        .patch(
            &path,
            &app.manager.key,
            json!({"managed_account_allow_custom_pricing": true}),
        )
        .await;
    on.assert_status(200);
    assert_eq!(
        on.body["data"]["managed_account_allow_custom_pricing"],
        true
    );
    // A rollup account has no balance of its own.
    assert!(on.body["data"].get("balance").is_none());

    let change = app
        .patch(
            &path,
            &app.manager.key,
            json!({"rollup_billing": false, "managed_account_allow_custom_pricing": false}),
        )
        .await;
    change.assert_error(422, "40003", Some(("pointer", "/rollup_billing")));
    assert!(change.error()["detail"].as_str().unwrap().contains("fixed"));

    // Restating the current value is not a change; nothing else was applied by the refused request.
    let same = app
        .patch(&path, &app.manager.key, json!({"rollup_billing": true}))
        .await;
    same.assert_status(200);
    assert_eq!(same.body["data"]["rollup_billing"], true);
    assert_eq!(
        same.body["data"]["managed_account_allow_custom_pricing"],
        true
    );
}

#[tokio::test]
async fn disabling_refuses_the_accounts_keys_and_enabling_restores_them() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Switch Co", json!({})).await;
    let actions = format!("/v2/managed_accounts/{}/actions", managed.id);

    // The SDK sends no body for disable.
    let disabled = app
        .post(&format!("{actions}/disable"), &app.manager.key, None)
        .await;
    disabled.assert_status(200);
    assert_eq!(disabled.body["data"]["status"], "disabled");

    let refused = app.get("/v2/balance", &managed.key).await;
    refused.assert_error(403, "10010", None);
    assert!(
        refused.error()["detail"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );

    // Repeating the action is harmless.
    app.post(&format!("{actions}/disable"), &app.manager.key, None)
        .await
        .assert_status(200);

    let listed = app
        .get(
            "/v2/managed_accounts?filter%5Bstatus%5D%5Beq%5D=disabled",
            &app.manager.key,
        )
        .await;
    assert_eq!(listed.body["meta"]["total_results"], 1);

    let enabled = app
        .post(
            &format!("{actions}/enable"),
            &app.manager.key,
            Some(json!({"reenable_all_connections": true})),
        )
        .await;
    enabled.assert_status(200);
    assert_eq!(enabled.body["data"]["status"], "active");
    app.get("/v2/balance", &managed.key)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_cancelled_account_can_be_neither_enabled_nor_disabled() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Gone Co", json!({})).await;
    app.cancel_account(&managed.id, false).await;
    let actions = format!("/v2/managed_accounts/{}/actions", managed.id);

    for action in ["enable", "disable"] {
        let reply = app
            .post(
                &format!("{actions}/{action}"),
                &app.manager.key,
                Some(json!({})),
            )
            .await;
        reply.assert_error(422, "40004", None);
        assert!(
            reply.error()["detail"]
                .as_str()
                .unwrap()
                .contains("cancelled")
        );
    }
    // Its keys were revoked when it was cancelled.
    let refused = app.get("/v2/account", &managed.key).await;
    refused.assert_error(401, "10009", None);
}

#[tokio::test]
async fn channel_limits_stay_within_the_managers_pool() {
    let app = spawn_app().await; // the manager's pool is 10
    let a = app.managed_of(&app.manager, "Alpha", json!({})).await;
    let b = app.managed_of(&app.manager, "Bravo", json!({})).await;
    let limit = |id: &str| format!("/v2/managed_accounts/{id}/update_global_channel_limit");

    let set = app
        .patch(&limit(&a.id), &app.manager.key, json!({"channel_limit": 6}))
        .await;
    set.assert_status(200);
    assert_eq!(
        set.body["data"]["record_type"],
        "managed_account_global_outbound_settings"
    );
    assert_eq!(set.body["data"]["channel_limit"], 6);
    assert_eq!(set.body["data"]["manager_account_id"], app.manager.id);

    let too_much = app
        .patch(&limit(&b.id), &app.manager.key, json!({"channel_limit": 5}))
        .await;
    too_much.assert_error(422, "40001", Some(("pointer", "/channel_limit")));
    app.patch(&limit(&b.id), &app.manager.key, json!({"channel_limit": 4}))
        .await
        .assert_status(200);
    // Lowering one's own allocation is always possible, and frees channels.
    app.patch(&limit(&a.id), &app.manager.key, json!({"channel_limit": 0}))
        .await
        .assert_status(200);

    for bad in [
        json!({"channel_limit": -1}),
        json!({"channel_limit": 1.5}),
        json!({"channel_limit": "3"}),
    ] {
        app.patch(&limit(&b.id), &app.manager.key, bad)
            .await
            .assert_error(422, "40001", Some(("pointer", "/channel_limit")));
    }
    app.patch(&limit(&b.id), &app.manager.key, json!({}))
        .await
        .assert_error(422, "10004", Some(("pointer", "/channel_limit")));

    let summary = app
        .get(
            "/v2/managed_accounts/allocatable_global_outbound_channels",
            &app.manager.key,
        )
        .await;
    summary.assert_status(200);
    assert_eq!(
        summary.body["data"]["record_type"],
        "allocatable_global_outbound_channels"
    );
    assert_eq!(
        summary.body["data"]["allocatable_global_outbound_channels"],
        10
    );
    assert_eq!(summary.body["data"]["total_global_channels_allocated"], 4);
    assert_eq!(
        summary.body["data"]["managed_account_allow_custom_pricing"],
        false
    );
}

#[tokio::test]
async fn emails_change_by_the_manager_or_by_the_account_itself() {
    let app = spawn_app().await;
    let managed = app
        .managed_of(
            &app.manager,
            "Mail Co",
            json!({"email": "old@customer.example"}),
        )
        .await;
    let path = format!("/v2/managed_accounts/{}", managed.id);

    let by_manager = app
        .patch(
            &path,
            &app.manager.key,
            json!({"email": "New@Customer.example"}),
        )
        .await;
    by_manager.assert_status(200);
    assert_eq!(by_manager.body["data"]["email"], "New@Customer.example");

    let by_itself = app
        .patch(
            "/v2/account",
            &managed.key,
            json!({"email": "self@customer.example"}),
        )
        .await;
    by_itself.assert_status(200);
    assert_eq!(by_itself.body["data"]["email"], "self@customer.example");

    // The old address is free again; a taken one is refused, whoever asks.
    app.managed_of(
        &app.manager,
        "Reuse Co",
        json!({"email": "old@customer.example"}),
    )
    .await;
    app.patch(
        &path,
        &app.manager.key,
        json!({"email": "OLD@customer.example"}),
    )
    .await
    .assert_error(422, "10012", Some(("pointer", "/email")));
    app.patch(
        "/v2/account",
        &app.standard.key,
        json!({"email": "Self@Customer.Example"}),
    )
    .await
    .assert_error(422, "10012", Some(("pointer", "/email")));
    app.patch("/v2/account", &app.standard.key, json!({"email": "nope"}))
        .await
        .assert_error(422, "40001", Some(("pointer", "/email")));
}

#[tokio::test]
async fn balance_has_the_telnyx_fields_as_decimal_strings() {
    let app = spawn_app().await;

    let reply = app.get("/v2/balance", &app.manager.key).await;

    reply.assert_status(200);
    assert_eq!(
        reply.body,
        json!({"data": {"record_type": "balance", "balance": "0.00", "credit_limit": "0.00",
                        "available_credit": "0.00", "pending": "0.00", "currency": "USD",
                        "rollup_billing": false}})
    );
}

#[tokio::test]
async fn a_manager_whose_approval_is_withdrawn_can_no_longer_manage() {
    let app = spawn_app().await;
    let managed = app.managed_of(&app.manager, "Kept Co", json!({})).await;
    let id = steward::accounts::AccountId::parse(&app.manager.id).unwrap();
    let clock: steward::clock::ClockHandle = std::sync::Arc::new(app.clock.clone());

    steward::accounts::operator::revoke_manager(&app.db, &clock, id, &crate::helpers::operator())
        .await
        .unwrap();
    app.get("/v2/managed_accounts", &app.manager.key)
        .await
        .assert_error(403, "10010", None);
    // Its managed account keeps working.
    app.get("/v2/account", &managed.key)
        .await
        .assert_status(200);

    steward::accounts::operator::approve_manager(&app.db, &clock, id, &crate::helpers::operator())
        .await
        .unwrap();
    let listed = app.get("/v2/managed_accounts", &app.manager.key).await;
    assert_eq!(listed.body["meta"]["total_results"], 1);
}
