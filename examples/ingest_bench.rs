//! Ingestion benchmark: usage events over HTTP against a running `steward serve`, beside a
//! baseline that writes the same rows straight into the same database with no rating and
//! no ledger. Run by `bench/ingest.sh`; prints one JSON object.
//!
//! Set-up (through the library, on the server's database): 10 managers × 100 managed
//! accounts (every other one rollup), a platform price list of 20,000 voice and SMS
//! prefixes, an ingest key. Then `batches` batches of 1,000 events each are sent over
//! `connections` concurrent HTTP connections.

#![expect(
    clippy::indexing_slicing,
    clippy::as_conversions,
    reason = "a benchmark driver: indices are taken modulo the length, counts become rates"
)]

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};
use steward::accounts::{self, Email, NewAccount, NewManagedAccount, OrganizationName};
use steward::audit::Actor;
use steward::clock::{ClockHandle, SystemClock};
use steward::config::DatabaseUrl;
use steward::db::Db;
use steward::pricing::{self, AssignTo, Increments, NewPriceList, Product, RateRow};

const MANAGERS: usize = 10;
const MANAGED_PER_MANAGER: usize = 100;
const PREFIXES: usize = 20_000;
const BATCH_EVENTS: usize = 1_000;

struct Args {
    database_url: String,
    server: String,
    batches: usize,
    connections: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        database_url: String::new(),
        server: String::new(),
        batches: 100,
        connections: 4,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--database-url" => parsed.database_url = value,
            "--server" => parsed.server = value,
            "--batches" => parsed.batches = value.parse()?,
            "--connections" => parsed.connections = value.parse()?,
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    Ok(parsed)
}

/// A small deterministic generator, so runs are comparable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn prefixes() -> Vec<String> {
    // Country-code-like prefixes of 3 to 6 digits, distinct.
    (0..PREFIXES)
        .map(|n| format!("{}{:04}", 1 + n % 9, n))
        .collect()
}

async fn set_up(db: &Db, clock: &ClockHandle, run: &str) -> anyhow::Result<Vec<String>> {
    let mut rows = Vec::with_capacity(PREFIXES * 2 + 2);
    for (n, prefix) in prefixes().into_iter().enumerate() {
        let rate = 1_000_000 + i64::try_from(n % 1000).unwrap_or(0) * 10_000;
        rows.push(RateRow {
            product: Product::VoiceOutbound,
            prefix: prefix.clone(),
            rate_nanos: rate,
            increments: Increments::new(6, 6),
        });
        rows.push(RateRow {
            product: Product::SmsOutbound,
            prefix,
            rate_nanos: rate / 2,
            increments: None,
        });
    }
    rows.push(RateRow {
        product: Product::VoiceOutbound,
        prefix: String::new(),
        rate_nanos: 50_000_000,
        increments: Increments::new(60, 60),
    });
    rows.push(RateRow {
        product: Product::SmsOutbound,
        prefix: String::new(),
        rate_nanos: 5_000_000,
        increments: None,
    });
    let new = NewPriceList {
        name: format!("bench {run}"),
        currency: "USD".into(),
        effective_from_ms: 0,
        assign_to: Some(AssignTo::PlatformDefault),
    };
    pricing::import(
        db,
        clock,
        new,
        &rows,
        &Actor::Operator("operator:bench".to_owned()),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut managed = Vec::with_capacity(MANAGERS * MANAGED_PER_MANAGER);
    for m in 0..MANAGERS {
        let new = NewAccount {
            email: Email::parse(&format!("bench-{run}-{m}@reseller.example"))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            organization_name: OrganizationName::parse("Bench Reseller")
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            manager: true,
            max_managed_accounts: None,
            allocatable_channels: None,
            password: None,
        };
        let (manager, _) = accounts::create_account(
            db,
            clock,
            new,
            &Actor::Operator("operator:bench".to_owned()),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        for n in 0..MANAGED_PER_MANAGER {
            let new = NewManagedAccount {
                business_name: OrganizationName::parse(&format!("Customer {m}-{n}"))
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                email: None,
                password: None,
                managed_account_allow_custom_pricing: false,
                rollup_billing: n % 2 == 0,
            };
            let (account, _) = accounts::create_managed_account(db, clock, &manager, new)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            managed.push(account.id.to_string());
        }
    }
    Ok(managed)
}

fn batch(
    rng: &mut Lcg,
    run: &str,
    number: usize,
    accounts: &[String],
    prefixes: &[String],
) -> Vec<Value> {
    (0..BATCH_EVENTS)
        .map(|n| {
            let account = &accounts[usize::try_from(rng.next()).unwrap_or(0) % accounts.len()];
            let prefix = &prefixes[usize::try_from(rng.next()).unwrap_or(0) % prefixes.len()];
            let voice = rng.next() % 10 < 6;
            json!({
                "id": format!("{run}-{number}-{n}"),
                "account_id": account,
                "product": if voice { "voice_outbound" } else { "sms_outbound" },
                "destination": format!("+{prefix}{:06}", rng.next() % 1_000_000),
                "quantity": if voice { i64::try_from(rng.next() % 600).unwrap_or(0) } else { 1 },
                "occurred_at": "2026-01-01T00:00:00Z",
            })
        })
        .collect()
}

/// The baseline: the same rows inserted straight into a table shaped like `usage_records`
/// (its columns, key and account/time index), in transactions of one batch, statements
/// sized as the server sizes them, without rating or ledger.
async fn baseline(db: &Db, batches: &[Vec<Value>]) -> anyhow::Result<f64> {
    sqlx::query("DROP TABLE IF EXISTS bench_baseline_usage")
        .execute(&db.write)
        .await?;
    sqlx::query(
        "CREATE TABLE bench_baseline_usage (event_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, \
         payer_account_id TEXT NOT NULL, product TEXT NOT NULL, destination TEXT NOT NULL, quantity BIGINT NOT NULL, \
         billable_quantity BIGINT NOT NULL, price_list_id TEXT NOT NULL, rate_prefix TEXT NOT NULL, \
         rate_nanos BIGINT NOT NULL, cost_nanos BIGINT NOT NULL, occurred_at_ms BIGINT NOT NULL, lease_id TEXT, \
         entry_id TEXT NOT NULL, created_at_ms BIGINT NOT NULL)",
    )
    .execute(&db.write)
    .await?;
    // The same secondary index as usage_records: maintaining it is part of storing the rows.
    sqlx::query(
        "CREATE INDEX bench_baseline_usage_account_time ON bench_baseline_usage (account_id, occurred_at_ms)",
    )
    .execute(&db.write)
    .await?;
    let started = Instant::now();
    for events in batches {
        let mut tx = db.write.begin().await?;
        let chunk_rows = steward::db::insert_chunk_rows(&tx, 15);
        for chunk in events.chunks(chunk_rows) {
            let mut sql = String::from("INSERT INTO bench_baseline_usage VALUES ");
            for n in 0..chunk.len() {
                if n > 0 {
                    sql.push(',');
                }
                let b = n * 15;
                let params: Vec<String> = (1..=15).map(|c| format!("${}", b + c)).collect();
                sql.push_str(&format!("({})", params.join(",")));
            }
            let mut query = sqlx::query(&sql);
            for event in chunk {
                query = query
                    .bind(event["id"].as_str().unwrap_or_default().to_owned())
                    .bind(event["account_id"].as_str().unwrap_or_default().to_owned())
                    .bind(event["account_id"].as_str().unwrap_or_default().to_owned())
                    .bind(event["product"].as_str().unwrap_or_default().to_owned())
                    .bind(event["destination"].as_str().unwrap_or_default().to_owned())
                    .bind(event["quantity"].as_i64().unwrap_or(0))
                    .bind(event["quantity"].as_i64().unwrap_or(0))
                    .bind("baseline")
                    .bind("")
                    .bind(0_i64)
                    .bind(0_i64)
                    .bind(0_i64)
                    .bind(None::<String>)
                    .bind("baseline")
                    .bind(0_i64);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE bench_baseline_usage")
        .execute(&db.write)
        .await?;
    Ok(count_events(batches) / elapsed)
}

fn count_events(batches: &[Vec<Value>]) -> f64 {
    batches.iter().map(Vec::len).sum::<usize>() as f64
}

async fn over_http(
    server: &str,
    key: &str,
    batches: Vec<Vec<Value>>,
    connections: usize,
) -> anyhow::Result<(f64, usize)> {
    let client = reqwest::Client::new();
    let total = count_events(&batches);
    let queue = Arc::new(tokio::sync::Mutex::new(batches));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (client, queue, url, key) = (
                client.clone(),
                Arc::clone(&queue),
                format!("{server}/v2/usage_events"),
                key.to_owned(),
            );
            tokio::spawn(async move {
                let mut accepted = 0_usize;
                loop {
                    let Some(events) = queue.lock().await.pop() else {
                        break;
                    };
                    let response = client
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&json!({"events": events}))
                        .send()
                        .await?;
                    anyhow::ensure!(
                        response.status().is_success(),
                        "ingest answered {}",
                        response.status()
                    );
                    let body: Value = response.json().await?;
                    accepted += body["data"].as_array().map_or(0, |a| {
                        a.iter().filter(|e| e["status"] == "accepted").count()
                    });
                }
                Ok::<usize, anyhow::Error>(accepted)
            })
        })
        .collect();
    let mut accepted = 0;
    for worker in workers {
        accepted += worker.await??;
    }
    Ok((total / started.elapsed().as_secs_f64(), accepted))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let clock: ClockHandle = Arc::new(SystemClock);
    let url = DatabaseUrl::parse(&args.database_url).map_err(anyhow::Error::msg)?;
    let db = Db::connect(&url).await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let accounts = set_up(&db, &clock, &run).await?;
    let key =
        steward::keys::service::mint(&db, &clock, steward::keys::service::ServiceKind::Ingest)
            .await?;
    let prefixes = prefixes();
    let mut rng = Lcg(42);
    let batches: Vec<Vec<Value>> = (0..args.batches)
        .map(|n| batch(&mut rng, &run, n, &accounts, &prefixes))
        .collect();
    // Warm up: one batch so the server has loaded its pricing index.
    let warm: Vec<Vec<Value>> = vec![batch(
        &mut rng,
        &format!("{run}-warm"),
        0,
        &accounts,
        &prefixes,
    )];
    over_http(&args.server, key.secret(), warm, 1).await?;
    let baseline_events_per_s = baseline(&db, &batches).await?;
    let (http_events_per_s, accepted) =
        over_http(&args.server, key.secret(), batches, args.connections).await?;
    let verdict = steward::ledger::verify(&db).await?;
    println!(
        "{}",
        json!({
            "events": args.batches * BATCH_EVENTS,
            "accepted": accepted,
            "connections": args.connections,
            "baseline_events_per_s": baseline_events_per_s.round(),
            "ingest_events_per_s": http_events_per_s.round(),
            "ratio_to_baseline": (http_events_per_s / baseline_events_per_s * 100.0).round() / 100.0,
            "ledger_clean": verdict.is_ok(),
        })
    );
    Ok(())
}
