//! Crashes: a client ingests usage and credits money while the server is killed with
//! SIGKILL and restarted, retrying whatever was not acknowledged with the same ids and
//! idempotency keys. Afterwards every acknowledged write is present once, no retry charged
//! twice, balances equal the sums the client can work out alone, and the ledger verifies.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Actor, BASE_PRICES, TestApp, spawn_app};

/// Kills per run; each lands at a random point of the load.
const KILLS: usize = 5;
/// Batches the client sends in all (each is retried until acknowledged).
const BATCHES: usize = 40;
/// Events per batch.
const EVENTS_PER_BATCH: usize = 50;
/// Cost of one event: one SMS part at 0.004.
const EVENT_COST_NANOS: i64 = 4_000_000;
/// Each credit adds 1.00.
const CREDIT_NANOS: i64 = 1_000_000_000;

struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(database_url: &str, port: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", database_url])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start steward");
        Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn wait_live(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client
                .get(format!("{}/livez", self.address))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("steward did not come up");
    }

    fn kill(mut self) {
        // SIGKILL: no shutdown, no flush beyond what each commit already made durable.
        self.child.kill().expect("kill steward");
        self.child.wait().expect("reap steward");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A write the client keeps sending until the server acknowledges it.
enum Write {
    Batch(usize),
    Credit(usize),
}

fn request(
    client: &reqwest::Client,
    address: &str,
    app: &TestApp,
    write: &Write,
    accounts: &[Actor],
) -> reqwest::RequestBuilder {
    let request = match write {
        Write::Batch(batch) => {
            let events: Vec<Value> = (0..EVENTS_PER_BATCH)
                .map(|i| {
                    let account = &accounts[(batch * EVENTS_PER_BATCH + i) % accounts.len()];
                    json!({"id": format!("crash-{batch}-{i}"), "account_id": account.id,
                           "product": "sms_outbound", "destination": "+14155550100",
                           "quantity": 1, "occurred_at": "2026-01-01T12:00:00Z"})
                })
                .collect();
            client
                .post(format!("{address}/v2/usage_events"))
                .bearer_auth(&app.ingest_key)
                .json(&json!({ "events": events }))
        }
        Write::Credit(n) => {
            let account = &accounts[n % accounts.len()];
            client
                .post(format!(
                    "{address}/admin/v1/accounts/{}/credits",
                    account.id
                ))
                .bearer_auth(&app.operator_key)
                .header("idempotency-key", format!("crash-credit-{n}"))
                .json(&json!({"amount": "1.00", "reason": "crash test"}))
        }
    };
    request.timeout(Duration::from_secs(5))
}

async fn acknowledged(request: reqwest::RequestBuilder) -> Result<Value, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    response.json().await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_and_retries_never_charge_twice() {
    let app = spawn_app().await;
    app.import_prices(
        BASE_PRICES,
        "platform_default=true&effective_from=2025-01-01T00:00:00Z",
    )
    .await
    .assert_status(200);
    let mut accounts = Vec::new();
    for n in 0..4 {
        accounts.push(
            app.managed_of(&app.manager, &format!("Crash {n}"), json!({}))
                .await,
        );
    }
    let rollup = app
        .managed_of(
            &app.manager,
            "Crash Rollup",
            json!({"rollup_billing": true}),
        )
        .await;
    // Usage of the rollup account is charged to its manager.
    let mut payers: Vec<String> = accounts.iter().map(|a| a.id.clone()).collect();
    payers.push(app.manager.id.clone());
    let creditable = accounts.clone();
    accounts.push(rollup);

    let client = reqwest::Client::new();
    let port = free_port();
    let mut server = Server::start(&app.database_url, port);
    server.wait_live(&client).await;
    let address = server.address.clone();

    // Interleave usage batches and credits; kill the server every few writes.
    let mut writes: Vec<Write> = Vec::new();
    for n in 0..BATCHES {
        writes.push(Write::Batch(n));
        if n % 4 == 0 {
            writes.push(Write::Credit(n / 4));
        }
    }
    let credits = writes
        .iter()
        .filter(|w| matches!(w, Write::Credit(_)))
        .count();
    let kill_every = writes.len() / (KILLS + 1);
    let mut acknowledged_events = 0_usize;
    let mut kills = 0_usize;
    for (n, write) in writes.iter().enumerate() {
        if n > 0 && n % kill_every == 0 && kills < KILLS {
            // Fire the write and kill the server while it may be in flight; acknowledged or
            // not, it is sent again below with the same ids and idempotency key.
            let users = if matches!(write, Write::Credit(_)) {
                &creditable
            } else {
                &accounts
            };
            let in_flight =
                tokio::spawn(acknowledged(request(&client, &address, &app, write, users)));
            tokio::time::sleep(Duration::from_millis(u64::try_from(n % 15).unwrap())).await;
            server.kill();
            kills += 1;
            let _ = in_flight.await;
            server = Server::start(&app.database_url, port);
            server.wait_live(&client).await;
        }
        let users = if matches!(write, Write::Credit(_)) {
            &creditable
        } else {
            &accounts
        };
        let reply = loop {
            match acknowledged(request(&client, &address, &app, write, users)).await {
                Ok(reply) => break reply,
                Err(_) => server.wait_live(&client).await,
            }
        };
        if let Write::Batch(_) = write {
            let statuses: Vec<&str> = reply["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["status"].as_str().unwrap())
                .collect();
            assert!(
                statuses
                    .iter()
                    .all(|s| *s == "accepted" || *s == "duplicate"),
                "{statuses:?}"
            );
            acknowledged_events += statuses.len();
        }
    }
    assert_eq!(kills, KILLS);
    server.kill();
    assert_eq!(acknowledged_events, BATCHES * EVENTS_PER_BATCH);

    // Every event is charged once, whatever was retried.
    let records: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM usage_records WHERE event_id LIKE 'crash-%'")
            .fetch_one(&app.db.read)
            .await
            .unwrap();
    assert_eq!(records, i64::try_from(BATCHES * EVENTS_PER_BATCH).unwrap());
    let credit_entries: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM journal_entries WHERE kind = 'credit' AND reason = 'crash test'",
    )
    .fetch_one(&app.db.read)
    .await
    .unwrap();
    assert_eq!(credit_entries, i64::try_from(credits).unwrap());

    // Balances equal what the client can work out alone.
    let mut expected: HashMap<String, i64> = HashMap::new();
    for event in 0..BATCHES * EVENTS_PER_BATCH {
        *expected
            .entry(payers[event % payers.len()].clone())
            .or_default() -= EVENT_COST_NANOS;
    }
    for credit in 0..credits {
        *expected
            .entry(creditable[credit % creditable.len()].id.clone())
            .or_default() += CREDIT_NANOS;
    }
    for (payer, nanos) in expected {
        let balance: i64 =
            sqlx::query_scalar("SELECT balance_nanos FROM book_balances WHERE book = $1")
                .bind(format!("balance:{payer}"))
                .fetch_one(&app.db.read)
                .await
                .unwrap();
        assert_eq!(balance, nanos, "balance of {payer}");
    }
    app.assert_ledger_clean().await;
}
