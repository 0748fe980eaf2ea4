//! `verify-ledger` benchmark (`bench/verify.sh`), in two phases.
//!
//! `--phase seed`: one manager with 1,000 managed accounts (every fifth rollup billing), a
//! platform price list, then `--records` usage events charged through the ingestion code
//! itself (rating, ledger, rollups — everything but HTTP) in batches of `--batch` events of
//! random accounts, so that each entry debits ~`--batch` balances: as many postings as
//! records, the ledger's largest shape for its number of records.
//!
//! `--phase baseline`: the same-run baseline, one plain aggregate over every usage record
//! (`COUNT(*)` and `SUM(cost_nanos)`), the least any check of every record has to read.
//!
//! Prints one JSON object.

#![expect(
    clippy::indexing_slicing,
    clippy::as_conversions,
    reason = "a benchmark driver: indices are taken modulo the length, counts become rates"
)]

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use sqlx::Row;
use steward::clock::{ClockHandle, SystemClock};
use steward::config::DatabaseUrl;
use steward::db::Db;
use steward::pricing::{self, Increments, Product, RateRow};
use steward::usage::RawEvent;
use support::Lcg;

mod support;

const MANAGED: usize = 1_000;
const SEED_TASKS: usize = 2;
const DAY_MS: i64 = 86_400_000;
/// Events occur over the 30 days before the run.
const DAYS: i64 = 30;
const PREFIXES: [&str; 8] = [
    "1415", "1212", "4420", "447400", "4930", "331", "3491", "6128",
];

struct Args {
    database_url: String,
    records: usize,
    batch: usize,
    phase: String,
}

fn args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        database_url: String::new(),
        records: 1_000_000,
        batch: 100,
        phase: "seed".into(),
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--database-url" => parsed.database_url = value,
            "--records" => parsed.records = value.parse()?,
            "--batch" => parsed.batch = value.parse()?,
            "--phase" => parsed.phase = value,
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    anyhow::ensure!(parsed.batch > 0, "--batch must be above zero");
    Ok(parsed)
}

async fn set_up(db: &Db, clock: &ClockHandle, run: &str) -> anyhow::Result<Vec<String>> {
    let mut rows = Vec::new();
    for (n, prefix) in PREFIXES.iter().enumerate() {
        let step = i64::try_from(n).unwrap_or(0) * 1_000_000;
        rows.push(RateRow {
            product: Product::VoiceOutbound,
            prefix: (*prefix).to_owned(),
            rate_nanos: 10_000_000 + step,
            increments: Increments::new(6, 6),
        });
        rows.push(RateRow {
            product: Product::SmsOutbound,
            prefix: (*prefix).to_owned(),
            rate_nanos: 4_000_000 + step / 10,
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
    support::import_platform_list(db, clock, format!("verify bench {run}"), &rows).await?;
    let (_, _, managed) = support::reseller_with_customers(
        db,
        clock,
        &format!("verify-bench-{run}@reseller.example"),
        "Verify Bench Reseller",
        MANAGED,
    )
    .await?;
    Ok(managed)
}

fn batch(
    rng: &mut Lcg,
    accounts: &[String],
    now_ms: i64,
    run: &str,
    first: usize,
    count: usize,
) -> Vec<Result<RawEvent, String>> {
    (first..first + count)
        .map(|n| {
            let account = &accounts[rng.below(accounts.len())];
            let mut destination = format!("+{}", PREFIXES[rng.below(PREFIXES.len())]);
            for _ in 0..7 {
                destination.push(char::from(b'0' + (rng.next() % 10) as u8));
            }
            let (product, quantity) = if rng.below(10) < 6 {
                (Product::VoiceOutbound, 5 + rng.below(600))
            } else {
                (Product::SmsOutbound, 1 + rng.below(3))
            };
            let at_ms = now_ms - 1 - (rng.next() as i64 % (DAYS * DAY_MS));
            Ok(RawEvent {
                id: Some(format!("vb-{run}-{n}")),
                account_id: Some(account.clone()),
                product: Some(product.as_str().to_owned()),
                destination: Some(destination),
                quantity: Some(serde_json::json!(quantity)),
                occurred_at: Some(steward::clock::to_wire(steward::clock::from_epoch_ms(
                    at_ms,
                ))),
                lease_id: None,
            })
        })
        .collect()
}

async fn seed(
    db: &Db,
    clock: &ClockHandle,
    records: usize,
    batch_events: usize,
    run: &str,
    accounts: Arc<Vec<String>>,
) -> anyhow::Result<f64> {
    let pricing = Arc::new(pricing::PricingCache::default());
    let now_ms = clock.now().timestamp_millis();
    let started = Instant::now();
    let batches = records.div_ceil(batch_events);
    let mut tasks = Vec::new();
    for task in 0..SEED_TASKS {
        let (db, clock, pricing, accounts) = (
            db.clone(),
            Arc::clone(clock),
            Arc::clone(&pricing),
            Arc::clone(&accounts),
        );
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(1_000 + task as u64);
            for b in (task..batches).step_by(SEED_TASKS) {
                let first = b * batch_events;
                let count = batch_events.min(records - first);
                let raw = batch(&mut rng, &accounts, now_ms, &run, first, count);
                let ingested = steward::usage::ingest(&db, &pricing, &clock, &raw, "bench")
                    .await
                    .context("Failed to ingest a seed batch")?;
                anyhow::ensure!(
                    ingested
                        .outcomes
                        .iter()
                        .all(|o| matches!(o, steward::usage::Outcome::Accepted)),
                    "a seed event was not accepted"
                );
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The baseline: the fastest of three plain aggregates over every usage record.
async fn baseline(db: &Db) -> anyhow::Result<serde_json::Value> {
    let mut best_s = f64::MAX;
    let mut records = 0_i64;
    for _ in 0..3 {
        let started = Instant::now();
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(SUM(cost_nanos) AS BIGINT) AS cost FROM usage_records",
        )
        .fetch_one(&db.read)
        .await?;
        best_s = best_s.min(started.elapsed().as_secs_f64());
        records = row.try_get("n")?;
    }
    let postings: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM postings")
        .fetch_one(&db.read)
        .await?;
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal_entries")
        .fetch_one(&db.read)
        .await?;
    Ok(
        serde_json::json!({"records": records, "entries": entries, "postings": postings,
                          "baseline_seconds": best_s}),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let clock: ClockHandle = Arc::new(SystemClock);
    let url = DatabaseUrl::parse(&args.database_url).map_err(anyhow::Error::msg)?;
    let db = Db::connect(&url).await?;
    steward::upgrade::run(&db, &clock).await?;
    let out = match args.phase.as_str() {
        "seed" => {
            let run = format!("{:x}", clock.now().timestamp_millis());
            let managed = set_up(&db, &clock, &run).await?;
            let seconds = seed(
                &db,
                &clock,
                args.records,
                args.batch,
                &run,
                Arc::new(managed),
            )
            .await?;
            serde_json::json!({"seeded_records": args.records, "batch": args.batch,
                "seed_seconds": seconds,
                "seed_records_per_second": (args.records as f64 / seconds).round()})
        }
        "baseline" => baseline(&db).await?,
        other => anyhow::bail!("unknown phase {other}"),
    };
    db.close().await;
    println!("{out}");
    Ok(())
}
