//! Ingestion benchmark: usage events over HTTP against a running `steward serve`, beside a
//! baseline that writes the same rows straight into the same database with no rating and
//! no ledger. Run by `bench/ingest.sh`; prints one JSON object.
//!
//! Set-up (through the library, on the server's database): 10 managers × 100 managed
//! accounts (every other one rollup), a platform price list of 20,000 voice and SMS
//! prefixes, an ingest key. Then `batches` batches of 1,000 events each are sent over
//! `connections` concurrent HTTP connections.
//!
//! `--traffic realistic` (the default) sends what switches send: random (v4) event ids and
//! `occurred_at` spread over the last 20 days. `--traffic friendly` sends near-sequential
//! ids all at one instant, which keeps every index's working set small: the figure it gives
//! is an upper bound, not a rate to plan with.
//!
//! With `--server-pid`, the physical cost of the HTTP phase is measured too: bytes the
//! server (and, on a local PostgreSQL, the database's processes) wrote to disk, bytes the
//! database grew by, and the server's peak resident memory.

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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Traffic {
    Realistic,
    Friendly,
}

struct Args {
    database_url: String,
    server: String,
    batches: usize,
    connections: usize,
    traffic: Traffic,
    server_pid: Option<u32>,
    /// Whether to run verify-ledger after the run (minutes on a database of 50 M records).
    verify: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        database_url: String::new(),
        server: String::new(),
        batches: 100,
        connections: 4,
        traffic: Traffic::Realistic,
        server_pid: None,
        verify: true,
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
            "--traffic" => {
                parsed.traffic = match value.as_str() {
                    "realistic" => Traffic::Realistic,
                    "friendly" => Traffic::Friendly,
                    _ => anyhow::bail!("--traffic is realistic or friendly"),
                }
            }
            "--server-pid" => parsed.server_pid = Some(value.parse()?),
            "--verify" => parsed.verify = value.parse()?,
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

/// Realistic traffic spreads `occurred_at` over this many days before now.
const SPREAD_DAYS: u64 = 20;

fn batch(
    rng: &mut Lcg,
    traffic: Traffic,
    now_ms: i64,
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
            let (id, occurred_at) = match traffic {
                Traffic::Friendly => (
                    format!("{run}-{number}-{n}"),
                    "2026-01-01T00:00:00Z".to_owned(),
                ),
                Traffic::Realistic => {
                    // Fresh in every run: the seeded generator would repeat the last run's
                    // ids, and a second run on the same database would send only duplicates.
                    let id = uuid::Uuid::new_v4();
                    let back_ms =
                        (rng.next() << 16 | rng.next() & 0xffff) % (SPREAD_DAYS * 86_400_000);
                    let at = chrono::DateTime::from_timestamp_millis(now_ms - back_ms as i64)
                        .unwrap_or_default();
                    (
                        id.to_string(),
                        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    )
                }
            };
            json!({
                "id": id,
                "account_id": account,
                "product": if voice { "voice_outbound" } else { "sms_outbound" },
                "destination": format!("+{prefix}{:06}", rng.next() % 1_000_000),
                "quantity": if voice { i64::try_from(rng.next() % 600).unwrap_or(0) } else { 1 },
                "occurred_at": occurred_at,
            })
        })
        .collect()
}

/// The baseline: the same rows (the events' ids and times) inserted straight into a table
/// shaped like `usage_records` (its columns, key and account/time index), in transactions
/// of one batch, statements sized as the server sizes them, without rating or ledger.
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
        let mut tx = db.begin_write().await?;
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
                    .bind(occurred_at_ms(event))
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

fn occurred_at_ms(event: &Value) -> i64 {
    event["occurred_at"]
        .as_str()
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
        .map_or(0, |at| at.timestamp_millis())
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

/// What the HTTP phase cost the machine, measured around it.
struct Physical {
    /// Per process: bytes it has caused to be written to storage (`/proc/<pid>/io`).
    written: std::collections::HashMap<u32, u64>,
    stored_bytes: i64,
}

/// The processes whose writes are the database's: the server (whose SQLite writer commits
/// and checkpoints), this process (its final checkpoint) and a local PostgreSQL's processes.
fn writers(server_pid: u32) -> Vec<u32> {
    let mut pids = vec![server_pid, std::process::id()];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim_end() == "postgres" {
                pids.push(pid);
            }
        }
    }
    pids
}

fn proc_field(path: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
}

/// Used pages only on SQLite (freed pages of the baseline's dropped table are reused); the
/// database's files on PostgreSQL.
async fn stored_bytes(db: &Db) -> anyhow::Result<i64> {
    Ok(match db.backend {
        steward::db::Backend::Sqlite => {
            sqlx::query_scalar::<_, i64>(
                "SELECT (p.page_count - f.freelist_count) * s.page_size \
                 FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s",
            )
            .fetch_one(&db.write)
            .await?
        }
        steward::db::Backend::Postgres => {
            sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())")
                .fetch_one(&db.write)
                .await?
        }
    })
}

/// Flushes what the database holds only in memory or in its log, so the writes it owes are
/// counted: a WAL checkpoint on SQLite, a `CHECKPOINT` on PostgreSQL.
async fn flush(db: &Db) -> anyhow::Result<()> {
    let sql = match db.backend {
        steward::db::Backend::Sqlite => "PRAGMA wal_checkpoint(TRUNCATE)",
        steward::db::Backend::Postgres => "CHECKPOINT",
    };
    sqlx::query(sql).execute(&db.write).await?;
    Ok(())
}

async fn physical(db: &Db, server_pid: u32) -> anyhow::Result<Physical> {
    flush(db).await?;
    let written = writers(server_pid)
        .into_iter()
        .filter_map(|pid| Some((pid, proc_field(&format!("/proc/{pid}/io"), "write_bytes")?)))
        .collect();
    Ok(Physical {
        written,
        stored_bytes: stored_bytes(db).await?,
    })
}

/// Bytes written to disk and bytes stored per accepted event, their ratio, and the server's
/// peak resident memory. A process that started during the phase counts whole; one that
/// ended during it (an autovacuum worker) is missed.
fn physical_figures(before: &Physical, after: &Physical, events: usize, server_pid: u32) -> Value {
    let written: u64 = after
        .written
        .iter()
        .map(|(pid, bytes)| bytes.saturating_sub(before.written.get(pid).copied().unwrap_or(0)))
        .sum();
    let stored = after.stored_bytes - before.stored_bytes;
    let per_event = |bytes: f64| (bytes / events.max(1) as f64).round();
    json!({
        "disk_bytes_written_per_event": per_event(written as f64),
        "stored_bytes_per_event": per_event(stored as f64),
        "write_amplification": if stored > 0 {
            json!((written as f64 / stored as f64 * 100.0).round() / 100.0)
        } else {
            Value::Null
        },
        "server_peak_rss_mib": proc_field(&format!("/proc/{server_pid}/status"), "VmHWM")
            .map(|kib| kib / 1024),
    })
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
    let now_ms = clock.now().timestamp_millis();
    let batches: Vec<Vec<Value>> = (0..args.batches)
        .map(|n| {
            batch(
                &mut rng,
                args.traffic,
                now_ms,
                &run,
                n,
                &accounts,
                &prefixes,
            )
        })
        .collect();
    // Warm up: one batch so the server has loaded its pricing index.
    let warm: Vec<Vec<Value>> = vec![batch(
        &mut rng,
        args.traffic,
        now_ms,
        &format!("{run}-warm"),
        0,
        &accounts,
        &prefixes,
    )];
    over_http(&args.server, key.secret(), warm, 1).await?;
    let baseline_events_per_s = baseline(&db, &batches).await?;
    let before = match args.server_pid {
        Some(pid) => Some(physical(&db, pid).await?),
        None => None,
    };
    let (http_events_per_s, accepted) =
        over_http(&args.server, key.secret(), batches, args.connections).await?;
    let physical = match (args.server_pid, before) {
        (Some(pid), Some(before)) => {
            physical_figures(&before, &physical(&db, pid).await?, accepted, pid)
        }
        _ => Value::Null,
    };
    let ledger_clean = if args.verify {
        Some(steward::ledger::verify(&db).await?.is_ok())
    } else {
        None
    };
    println!(
        "{}",
        json!({
            "traffic": match args.traffic {
                Traffic::Realistic => "realistic",
                Traffic::Friendly => "friendly",
            },
            "events": args.batches * BATCH_EVENTS,
            "accepted": accepted,
            "connections": args.connections,
            "physical": physical,
            "baseline_events_per_s": baseline_events_per_s.round(),
            "ingest_events_per_s": http_events_per_s.round(),
            "ratio_to_baseline": (http_events_per_s / baseline_events_per_s * 100.0).round() / 100.0,
            "ledger_clean": ledger_clean,
        })
    );
    Ok(())
}
