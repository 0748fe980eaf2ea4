//! The real binary killed in the middle of a payment: after a restart, reconciliation posts
//! what the processor charged exactly once and fails what it never received; the ledger
//! verifies; no log line of any process holds card data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::helpers::spawn_app;

/// How long a process gets to start or a state to appear.
const WAIT_MAX: Duration = Duration::from_secs(20);

/// Pause between two looks at a process's log or the database.
const POLL: Duration = Duration::from_millis(20);

/// A running `steward serve`; killed (SIGKILL) when dropped, also when a test fails.
struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL: no shutdown, no cleanup.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `steward serve` on a free port with JSON logs at debug level into `log`.
#[expect(
    clippy::zombie_processes,
    reason = "the child is handed to a Server, which kills and waits for it when dropped"
)]
fn serve(database_url: &str, log: &Path, extra: &[&str]) -> Server {
    let file = std::fs::File::create(log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .args(["--payment-tasks-interval-ms", "0"])
        .args(extra)
        .env("STEWARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start steward serve");
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let listen = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find_map(|line| line["listen"].as_str().map(str::to_owned));
        if let Some(listen) = listen {
            return Server {
                child,
                address: format!("http://{listen}"),
            };
        }
        if started.elapsed() >= WAIT_MAX {
            let _ = child.kill();
            let _ = child.wait();
            panic!("steward serve did not start:\n{text}");
        }
        std::thread::sleep(POLL);
    }
}

/// Runs `steward admin …` with JSON logs at debug level; its output and its log.
fn admin(database_url: &str, args: &[&str]) -> (Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_steward"))
        .arg("admin")
        .args(args)
        .args(["--database-url", database_url])
        .env("STEWARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .output()
        .expect("run steward admin");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?} failed: {stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

async fn wait_for(app: &TestApp, sql: &str) {
    let started = Instant::now();
    loop {
        let count: i64 = sqlx::query_scalar(sql)
            .fetch_one(&app.db.read)
            .await
            .unwrap();
        if count > 0 {
            return;
        }
        assert!(started.elapsed() < WAIT_MAX, "never true: {sql}");
        tokio::time::sleep(POLL).await;
    }
}

async fn status_of_latest(app: &TestApp, account: &Actor) -> String {
    sqlx::query_scalar(
        "SELECT status FROM payment_attempts WHERE account_id = $1 ORDER BY created_at_ms DESC, id DESC LIMIT 1",
    )
    .bind(&account.id)
    .fetch_one(&app.db.read)
    .await
    .unwrap()
}

fn kill(server: Server) {
    drop(server);
}

/// Sends a top-up in the background; the server may die before it answers.
fn send_top_up(app: &TestApp, address: &str, key: &str, amount: &str) {
    let request = app
        .client
        .post(format!("{address}/v2/payment/stored_payment_transactions"))
        .bearer_auth(key)
        .json(&json!({ "amount": amount }));
    tokio::spawn(async move {
        let _ = request.send().await;
    });
}

#[tokio::test]
async fn a_server_killed_mid_payment_is_reconciled_to_one_posting_and_no_log_holds_card_data() {
    let app = spawn_app().await;
    let url = app.database_url.clone();
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str| -> PathBuf { dir.path().join(name) };
    let slow = [
        "--sandbox-latency-ms",
        "0",
        "--sandbox-slow-charge-ms",
        "60000",
    ];
    let account = customer(&app, "Crash Test").await;

    // Card entry, and card data pasted where it does not belong, all through the binary.
    let first = serve(&url, &log("first.log"), &slow);
    let on_first = |path: &str| format!("{}{path}", first.address);
    for number in ALL_CARDS {
        let body = json!({"number": number, "exp_month": 12, "exp_year": 2030, "cvc": if number.starts_with("37") { AMEX_CVC } else { CVC }});
        let reply = app
            .client
            .post(on_first("/sandbox/v1/tokens"))
            .bearer_auth(&account.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }
    for bad in [
        json!({"email": VISA}),
        json!({"business_name": format!("Shop {MASTERCARD}")}),
    ] {
        let reply = app
            .client
            .patch(on_first("/v2/account"))
            .bearer_auth(&account.key)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 422);
    }
    let token = {
        let body = json!({"number": SLOW_SUCCESS, "exp_month": 12, "exp_year": 2030, "cvc": CVC});
        let reply = app
            .client
            .post(on_first("/sandbox/v1/tokens"))
            .bearer_auth(&account.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        TestApp::read(reply).await.body["data"]["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let saved = app
        .client
        .post(on_first("/v2/payment_methods"))
        .bearer_auth(&account.key)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);

    // Killed while the processor's answer to a charge it made is on its way.
    send_top_up(&app, &first.address, &account.key, "120.00");
    wait_for(&app, "SELECT COUNT(*) FROM sandbox_charges").await;
    kill(first);
    assert_eq!(status_of_latest(&app, &account).await, "pending");
    assert_eq!(card_payment_entries(&app).await, 0);

    // Restarted, the server knows nothing more until reconciliation asks the processor.
    let second = serve(&url, &log("second.log"), &slow);
    let (report, reconcile_log) = admin(&url, &["reconcile-payments", "--sandbox-latency-ms", "0"]);
    assert_eq!(report["reconcile"]["settled"], 1, "{report}");
    let (again, _) = admin(&url, &["reconcile-payments", "--sandbox-latency-ms", "0"]);
    assert_eq!(again["reconcile"]["settled"], 0, "{again}");
    assert_eq!(status_of_latest(&app, &account).await, "succeeded");
    assert_eq!(card_payment_entries(&app).await, 1);
    let balance = app
        .client
        .get(format!("{}/v2/balance", second.address))
        .bearer_auth(&account.key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        TestApp::read(balance).await.body["data"]["balance"],
        "120.00"
    );
    kill(second);

    // Killed before the processor received the charge: after the grace period (twice the
    // gateway's time limit, here 2 × 100 ms) reconciliation fails it; nothing is posted.
    let third = serve(&url, &log("third.log"), &["--sandbox-latency-ms", "60000"]);
    send_top_up(&app, &third.address, &account.key, "30.00");
    wait_for(
        &app,
        "SELECT COUNT(*) FROM payment_attempts WHERE status = 'pending'",
    )
    .await;
    kill(third);
    std::thread::sleep(Duration::from_millis(300));
    let quick = [
        "reconcile-payments",
        "--sandbox-latency-ms",
        "0",
        "--payment-gateway-timeout-ms",
        "100",
    ];
    let (report, late_log) = admin(&url, &quick);
    assert_eq!(report["reconcile"]["settled"], 1, "{report}");
    assert_eq!(status_of_latest(&app, &account).await, "failed");
    assert_eq!(sandbox_charges(&app).await, 1);

    let (verified, verify_log) = admin(&url, &["verify-ledger"]);
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["card_payments"], 1);
    assert_books_clean(&app).await;

    let mut logs = vec![reconcile_log, late_log, verify_log];
    for name in ["first.log", "second.log", "third.log"] {
        logs.push(std::fs::read_to_string(log(name)).unwrap());
    }
    let all = logs.join("\n");
    assert!(all.contains("sandbox"), "the logs were not captured");
    for number in ALL_CARDS {
        assert!(!all.contains(number), "card number {number} in a log");
    }
    for needle in [
        "\"cvc\"",
        &format!("\"{CVC}\""),
        &format!("\"{AMEX_CVC}\""),
        "tok_sandbox_",
    ] {
        assert!(!all.contains(needle), "{needle} in a log");
    }
}
