//! The connection layer over raw TCP: time bounds, shutdown, and the envelope on answers
//! to requests that are not valid HTTP.

use std::time::{Duration, Instant};

use serde_json::Value;
use steward::clock::ClockHandle;
use steward::config::Settings;
use steward::http::Application;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app, spawn_app_with, test_settings};

/// Longest a test waits for the server to act on a bound of a few hundred milliseconds.
const PATIENCE: Duration = Duration::from_secs(5);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection; panics if it does not within `PATIENCE`.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .ok();
    received
}

/// One response on a keep-alive connection: head and `Content-Length` body.
async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut byte = [0_u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "connection closed"
        );
        bytes.push(byte[0]);
    }
    let head = String::from_utf8(bytes).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0_u8; length];
    stream.read_exact(&mut body).await.unwrap();
    (head, body)
}

/// The status, lower-cased head and JSON body of a raw response.
fn parse(raw: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, head.to_ascii_lowercase(), body)
}

/// Sends `request` on a fresh connection and returns the answer as parsed by [`parse`].
async fn exchange(app: &TestApp, request: &[u8]) -> (u16, String, Value) {
    let mut stream = connect(app).await;
    stream.write_all(request).await.unwrap();
    parse(&read_to_close(&mut stream).await)
}

#[tokio::test]
async fn a_client_that_stops_inside_its_request_line_is_disconnected() {
    let app = spawn_app_with(|s| s.header_read_timeout_ms = 300).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();

    stream.write_all(b"GET /liv").await.unwrap();
    let received = read_to_close(&mut stream).await;

    assert!(
        received.is_empty(),
        "nothing is answered to half a request line"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_disconnected() {
    let app = spawn_app_with(|s| s.header_read_timeout_ms = 300).await;
    let mut stream = connect(&app).await;

    let received = read_to_close(&mut stream).await;

    assert!(received.is_empty());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_own_timeout() {
    let app = spawn_app_with(|s| {
        s.header_read_timeout_ms = 200;
        s.keep_alive_timeout_ms = 1_000;
    })
    .await;
    let mut stream = connect(&app).await;
    let request = b"GET /livez HTTP/1.1\r\nHost: steward\r\n\r\n";

    stream.write_all(request).await.unwrap();
    let (first, _) = read_response(&mut stream).await;
    // Idle for longer than the header-read timeout, shorter than the keep-alive timeout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.write_all(request).await.unwrap();
    let (second, _) = read_response(&mut stream).await;
    let idle_since = Instant::now();
    let rest = read_to_close(&mut stream).await;

    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(rest.is_empty());
    assert!(idle_since.elapsed() >= Duration::from_millis(900));
}

/// A server on `app`'s database that stops when the returned sender fires.
async fn stoppable_server(
    app: &TestApp,
    configure: impl FnOnce(&mut Settings),
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let mut settings = test_settings(&app.database_url);
    configure(&mut settings);
    let clock: ClockHandle = std::sync::Arc::new(app.clock.clone());
    let server = Application::build(&settings, clock).await.unwrap();
    let address = server.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    (address, stop, running)
}

#[tokio::test]
async fn shutdown_completes_while_a_client_is_sending_a_slow_head() {
    let app = spawn_app().await;
    let (address, stop, running) = stoppable_server(&app, |s| {
        s.header_read_timeout_ms = 60_000;
        s.shutdown_grace_ms = 2_000;
    })
    .await;
    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /livez HTTP/1.1\r\nHost: ste")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();

    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(PATIENCE, running).await;

    assert!(outcome.expect("shutdown completes").unwrap().is_ok());
    assert!(started.elapsed() < Duration::from_millis(2_000));
    assert!(read_to_close(&mut slow).await.is_empty());
    assert!(
        TcpStream::connect(&address).await.is_err(),
        "no longer accepting"
    );
}

/// Starts creating a managed account on `address` and sends all of its body but the last
/// byte, so that the request sits in its handler, waiting.
async fn request_waiting_for_its_body(address: &str, key: &str) -> (TcpStream, &'static [u8]) {
    let body: &'static [u8] = br#"{"business_name": "In Flight"}"#;
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /v2/managed_accounts HTTP/1.1\r\nHost: steward\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..body.len() - 1]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    (stream, &body[body.len() - 1..])
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_finishes_within_the_grace_period() {
    let app = spawn_app().await;
    let (address, stop, running) = stoppable_server(&app, |s| s.shutdown_grace_ms = 5_000).await;
    let (mut stream, last_byte) = request_waiting_for_its_body(&address, &app.manager.key).await;

    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(last_byte).await.unwrap();
    let (status, head, body) = parse(&read_to_close(&mut stream).await);

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["organization_name"], "In Flight");
    assert!(head.contains("connection: close"));
    let outcome = tokio::time::timeout(PATIENCE, running).await;
    assert!(outcome.expect("shutdown completes").unwrap().is_ok());
}

#[tokio::test]
async fn a_request_still_running_after_the_grace_period_is_cut_off() {
    let app = spawn_app().await;
    let (address, stop, running) = stoppable_server(&app, |s| s.shutdown_grace_ms = 300).await;
    let (mut stream, _) = request_waiting_for_its_body(&address, &app.manager.key).await;
    let started = Instant::now();

    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(PATIENCE, running).await;

    assert!(outcome.expect("shutdown completes").unwrap().is_ok());
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(read_to_close(&mut stream).await.is_empty());
}

/// Asserts the answer is the envelope with `status` and `code`, JSON, and closes.
#[track_caller]
fn assert_envelope((status, head, body): &(u16, String, Value), expected: u16, code: &str) {
    assert_eq!(*status, expected, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert_eq!(body["errors"][0]["code"], code, "{body}");
    assert!(
        body["errors"][0]["title"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
}

#[tokio::test]
async fn a_garbage_request_line_is_answered_with_the_envelope() {
    let app = spawn_app().await;

    let answer = exchange(&app, b"this is not http at all\r\n\r\n").await;

    assert_envelope(&answer, 400, "10015");
}

#[tokio::test]
async fn invalid_utf8_in_the_path_is_answered_with_the_envelope() {
    let app = spawn_app().await;

    let answer = exchange(&app, b"GET /v2/\xff\xfe HTTP/1.1\r\nHost: steward\r\n\r\n").await;

    assert_envelope(&answer, 400, "10015");
}

#[tokio::test]
async fn an_over_long_uri_is_answered_414_with_the_envelope() {
    let app = spawn_app().await;
    let request = format!(
        "GET /{} HTTP/1.1\r\nHost: steward\r\n\r\n",
        "a".repeat(70_000)
    );

    let answer = exchange(&app, request.as_bytes()).await;

    assert_envelope(&answer, 414, "40010");
}

#[tokio::test]
async fn oversized_headers_are_answered_431_with_the_envelope() {
    let app = spawn_app().await;
    let request = format!(
        "GET /livez HTTP/1.1\r\nHost: steward\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(200_000)
    );

    let answer = exchange(&app, request.as_bytes()).await;

    assert_envelope(&answer, 431, "40009");
}

#[tokio::test]
async fn a_bad_second_request_on_a_kept_alive_connection_gets_the_envelope() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;

    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: steward\r\n\r\nGET /\x01 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (first, _) = read_response(&mut stream).await;
    let answer = parse(&read_to_close(&mut stream).await);

    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert_envelope(&answer, 400, "10015");
}
