use crate::helpers::{TestApp, spawn_app};

#[tokio::test]
async fn the_openapi_document_describes_every_route_served() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/v2/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    let document = TestApp::read(response).await.body;

    let expected = [
        ("get", "/v2/managed_accounts"),
        ("post", "/v2/managed_accounts"),
        (
            "get",
            "/v2/managed_accounts/allocatable_global_outbound_channels",
        ),
        ("get", "/v2/managed_accounts/{id}"),
        ("patch", "/v2/managed_accounts/{id}"),
        ("post", "/v2/managed_accounts/{id}/actions/disable"),
        ("post", "/v2/managed_accounts/{id}/actions/enable"),
        (
            "patch",
            "/v2/managed_accounts/{id}/update_global_channel_limit",
        ),
        ("get", "/v2/managed_accounts/{id}/api_keys"),
        ("post", "/v2/managed_accounts/{id}/api_keys"),
        ("delete", "/v2/managed_accounts/{id}/api_keys/{key_id}"),
        ("get", "/v2/api_keys"),
        ("post", "/v2/api_keys"),
        ("delete", "/v2/api_keys/{key_id}"),
        ("get", "/v2/account"),
        ("patch", "/v2/account"),
        ("get", "/v2/balance"),
        ("get", "/healthz"),
        ("get", "/livez"),
        ("get", "/metrics"),
        ("post", "/v2/usage_events"),
        ("post", "/v2/admissions"),
        ("post", "/v2/channel_leases/{id}/actions/release"),
        ("post", "/v2/channel_leases/{id}/actions/renew"),
        ("get", "/v2/detail_records"),
        ("get", "/v2/audit_events"),
        ("get", "/v2/usage_reports"),
        ("get", "/v2/usage_reports/options"),
        ("get", "/v2/legacy/reporting/usage_reports/voice"),
        ("post", "/v2/legacy/reporting/usage_reports/voice"),
        ("get", "/v2/legacy/reporting/usage_reports/voice/{id}"),
        ("delete", "/v2/legacy/reporting/usage_reports/voice/{id}"),
        ("get", "/v2/legacy/reporting/usage_reports/voice/{id}/csv"),
        ("get", "/v2/legacy/reporting/usage_reports/messaging"),
        ("post", "/v2/legacy/reporting/usage_reports/messaging"),
        ("get", "/v2/legacy/reporting/usage_reports/messaging/{id}"),
        (
            "delete",
            "/v2/legacy/reporting/usage_reports/messaging/{id}",
        ),
        (
            "get",
            "/v2/legacy/reporting/usage_reports/messaging/{id}/csv",
        ),
        ("get", "/v2/invoices"),
        ("get", "/v2/invoices/{id}"),
        ("get", "/v2/invoices/{id}/pdf"),
        ("get", "/v2/charges_summary"),
        ("get", "/v2/charges_breakdown"),
        ("get", "/v2/pricing/rates"),
        ("get", "/v2/pricing/rate"),
        ("get", "/v2/managed_accounts/{id}/pricing/rates"),
        ("get", "/v2/managed_accounts/{id}/pricing/rate"),
        ("post", "/admin/v1/price_lists"),
        ("post", "/admin/v1/price_lists/{id}/assignments"),
        ("get", "/admin/v1/accounts/{id}/balance"),
        ("post", "/admin/v1/accounts/{id}/credit_limit"),
        ("post", "/admin/v1/accounts/{id}/credits"),
        ("post", "/admin/v1/accounts/{id}/adjustments"),
        ("get", "/admin/v1/price_lists/{id}/rates"),
        ("get", "/admin/v1/accounts/{id}/pricing/rate"),
        ("get", "/admin/v1/suspended_usage"),
        ("get", "/v2/payment_methods"),
        ("post", "/v2/payment_methods"),
        ("delete", "/v2/payment_methods/{id}"),
        ("post", "/v2/payment_methods/{id}/actions/set_default"),
        ("get", "/v2/managed_accounts/{id}/payment_methods"),
        ("post", "/v2/managed_accounts/{id}/payment_methods"),
        (
            "delete",
            "/v2/managed_accounts/{id}/payment_methods/{payment_method_id}",
        ),
        (
            "post",
            "/v2/managed_accounts/{id}/payment_methods/{payment_method_id}/actions/set_default",
        ),
        ("get", "/v2/payment/stored_payment_transactions"),
        ("post", "/v2/payment/stored_payment_transactions"),
        ("post", "/v2/v2/payment/stored_payment_transactions"),
        (
            "get",
            "/v2/managed_accounts/{id}/payment/stored_payment_transactions",
        ),
        (
            "post",
            "/v2/managed_accounts/{id}/payment/stored_payment_transactions",
        ),
        ("get", "/v2/payment/auto_recharge_prefs"),
        ("patch", "/v2/payment/auto_recharge_prefs"),
        (
            "get",
            "/v2/managed_accounts/{id}/payment/auto_recharge_prefs",
        ),
        (
            "patch",
            "/v2/managed_accounts/{id}/payment/auto_recharge_prefs",
        ),
        ("post", "/sandbox/v1/tokens"),
    ];
    let paths = document["paths"].as_object().unwrap();
    let mut documented = 0;
    for (path, item) in paths {
        documented += item.as_object().unwrap().len();
        for (method, _) in item.as_object().unwrap() {
            assert!(
                expected.contains(&(method.as_str(), path.as_str())),
                "undocumented in test: {method} {path}"
            );
        }
    }
    assert_eq!(documented, expected.len());
    // Every documented route answers something other than "no such route".
    for (method, path) in expected {
        let url = format!(
            "{}{}",
            app.address,
            path.replace("{id}", "00000000-0000-0000-0000-000000000000")
                .replace("{key_id}", "KEY0")
                .replace(
                    "{payment_method_id}",
                    "00000000-0000-0000-0000-000000000000"
                )
        );
        let reply = app
            .client
            .request(method.to_uppercase().parse().unwrap(), url)
            .bearer_auth(&app.manager.key)
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        let body = TestApp::read(reply).await.body;
        assert!(
            !(status == 404 && body.to_string().contains("No such route")),
            "{method} {path} is not served"
        );
        assert_ne!(status, 405, "{method} {path}");
    }
    assert_eq!(
        document["paths"]["/v2/managed_accounts"]["get"]["operationId"],
        "ListManagedAccounts"
    );
}
