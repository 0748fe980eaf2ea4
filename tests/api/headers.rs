//! Headers every response carries: request ids and security headers.

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, spawn_app};

async fn livez_with_request_id(app: &TestApp, id: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/livez", app.address))
        .header("x-request-id", id)
        .send()
        .await
        .unwrap()
}

#[track_caller]
fn assert_generated(response: &reqwest::Response, sent: &str) {
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, sent);
    assert!(uuid::Uuid::parse_str(id).is_ok(), "not a UUID: {id}");
}

#[tokio::test]
async fn a_good_request_id_is_echoed() {
    let app = spawn_app().await;

    let response = livez_with_request_id(&app, "trace-me_123.abc").await;

    assert_eq!(response.headers()["x-request-id"], "trace-me_123.abc");
}

#[tokio::test]
async fn an_over_long_request_id_is_replaced() {
    let app = spawn_app().await;
    let long = "a".repeat(4_000);

    let response = livez_with_request_id(&app, &long).await;

    assert_eq!(response.status(), 200);
    assert_generated(&response, &long);
}

#[tokio::test]
async fn a_request_id_with_a_tab_or_non_ascii_bytes_is_replaced() {
    let app = spawn_app().await;
    // A tab and non-ASCII bytes are what the HTTP parser lets through in a header value
    // (other control characters are a 400 before any middleware); reqwest sends neither.
    let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();

    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: s\r\nX-Request-Id: a\tforged\xc3\xa9\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();

    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    let id = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap();
    assert!(uuid::Uuid::parse_str(id.trim()).is_ok(), "not a UUID: {id}");
    assert!(!answer.contains("forged"));
}

#[tokio::test]
async fn a_300_kb_request_id_is_refused_with_the_envelope() {
    let app = spawn_app().await;

    let response = livez_with_request_id(&app, &"a".repeat(300_000)).await;

    let reply = TestApp::read(response).await;
    reply.assert_error(431, "40009", None);
    assert!(reply.headers.get("x-request-id").is_none());
}

#[tokio::test]
async fn a_space_in_a_request_id_is_replaced() {
    let app = spawn_app().await;

    let response = livez_with_request_id(&app, "two words").await;

    assert_generated(&response, "two words");
}

#[track_caller]
fn assert_security_headers(reply: &crate::helpers::Reply, what: &str) {
    let headers = &reply.headers;
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["cache-control"], "no-store", "{what}");
    assert_eq!(
        headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'",
        "{what}"
    );
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    let key = app.manager.key.clone();
    let operator = app.operator_key.clone();

    let replies = [
        ("account", app.get("/v2/balance", &key).await),
        ("minted key", app.post("/v2/api_keys", &key, None).await),
        (
            "no key",
            app.request(Method::GET, "/v2/balance", None, None).await,
        ),
        ("no route", app.get("/v2/nothing", &key).await),
        (
            "operator",
            app.get(
                &format!("/admin/v1/accounts/{}/balance", app.manager.id),
                &operator,
            )
            .await,
        ),
        (
            "document",
            app.request(Method::GET, "/v2/openapi.json", None, None)
                .await,
        ),
        (
            "liveness",
            app.request(Method::GET, "/livez", None, None).await,
        ),
        (
            "readiness",
            app.request(Method::GET, "/healthz", None, None).await,
        ),
    ];

    for (what, reply) in &replies {
        assert!(reply.status.as_u16() < 500, "{what}: {}", reply.body);
        assert_security_headers(reply, what);
    }
}
