//! Usage-report benchmark (`bench/reports.sh`): seeds one manager with 1,000 managed
//! accounts and N events spread over the latest 31-day calendar month through the ingestion
//! code itself (rating, ledger, rollups — everything but HTTP), closes the month's days as
//! a server does as they end (timed), then times the manager's per-account report through
//! HTTP against a running `steward serve`: over the month (read from the monthly rollups)
//! and over 31 days that are not a month (read as the month less its first day plus the
//! next month's first day, the days from the daily rollups), beside the same aggregation
//! over the raw records (the query the rollups spare). Prints one JSON object.
//!
//! `--phase ab` measures what the rollups cost the write path, on its own empty database:
//! `--pairs` pairs of seeding rounds, one with rollup maintenance and one without, the
//! order turned around from pair to pair (so table growth and machine noise fall on both
//! alike); the ratio is the median of the pairs' ratios. A warm-up round (with rollups)
//! comes first and is not counted. Beside the rates, the machine's busy CPU time per event
//! of each round (`/proc/stat`, so the database server's too when it runs here) gives a
//! second ratio, which the host's other guests move less. `--phase aa` runs the same with
//! both sides of every pair without rollups, to show the measure's own bias and noise.
//! `--ingest http` sends the A/B's events as a network element does, in `POST
//! /v2/usage_events` batches over HTTP to a server this process runs on the same database
//! (so one switch turns its rollups off and on); `library` (the default) calls ingestion's
//! code directly, without HTTP.
//!
//! Traffic is shaped like a reseller's customers: each account calls and texts a small
//! book of contacts, mostly in its home country; products are mostly calls and SMS.

#![expect(
    clippy::indexing_slicing,
    clippy::as_conversions,
    reason = "a benchmark driver: indices are taken modulo the length, counts become rates"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

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
const DAYS: i64 = 31;
const DAY_MS: i64 = 86_400_000;
const BATCH_EVENTS: usize = 5_000;
const SEED_TASKS: usize = 2;
const CONTACTS_PER_ACCOUNT: usize = 40;

/// Countries and the shape of their numbers: calling code, national digits.
const COUNTRIES: [(&str, usize); 12] = [
    ("1415", 7),
    ("1212", 7),
    ("4420", 8),
    ("447400", 6),
    ("4930", 8),
    ("49151", 8),
    ("331", 8),
    ("336", 8),
    ("3491", 7),
    ("3906", 8),
    ("6128", 8),
    ("8190", 8),
];

struct Args {
    database_url: String,
    server: String,
    events: usize,
    reports: usize,
    phase: String,
    order: Order,
    /// Pairs of A/B rounds (one with rollups, one without).
    pairs: usize,
    /// Whether the A/B's events reach ingestion over HTTP (`--ingest http`).
    ingest_over_http: bool,
}

/// Where seeding sends its batches.
enum Sink {
    /// `steward::usage::ingest`, called directly.
    Library,
    /// `POST /v2/usage_events` to a server in this process.
    Http {
        client: reqwest::Client,
        url: String,
        key: String,
    },
}

/// When the seeded events happened, in the order they are sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Each event at a random moment of the 31 days: every batch touches every day (the
    /// worst case for the daily rollups; the report benchmark's seeding).
    Spread,
    /// As switches send them: each batch holds what happened in the last minutes, and a
    /// few events arrive late (up to two days), the 31 days passing in one seeding.
    Arrival,
    /// As switches send them while it happens: each event ended up to ten minutes before
    /// its batch is sent (one in fifty up to two days), on the wall clock, so the
    /// benchmark's own rate sets how many events share a day (a platform's traffic as it is
    /// ingested, rather than a month's backfill). For `--phase ab`: the reports measured
    /// cover a month that has ended.
    Live,
}

fn args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        database_url: String::new(),
        server: String::new(),
        events: 10_000_000,
        reports: 100,
        phase: "all".into(),
        order: Order::Spread,
        pairs: 5,
        ingest_over_http: false,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--database-url" => parsed.database_url = value,
            "--server" => parsed.server = value,
            "--events" => parsed.events = value.parse()?,
            "--reports" => parsed.reports = value.parse()?,
            "--phase" => parsed.phase = value,
            "--pairs" => parsed.pairs = value.parse::<usize>()?.max(1),
            "--ingest" => {
                parsed.ingest_over_http = match value.as_str() {
                    "library" => false,
                    "http" => true,
                    _ => anyhow::bail!("--ingest is library or http"),
                }
            }
            "--order" => {
                parsed.order = match value.as_str() {
                    "spread" => Order::Spread,
                    "arrival" => Order::Arrival,
                    "live" => Order::Live,
                    _ => anyhow::bail!("--order is spread, arrival or live"),
                }
            }
            _ => anyhow::bail!("unknown flag {flag}"),
        }
    }
    Ok(parsed)
}

fn number(rng: &mut Lcg, country: usize) -> String {
    let (prefix, digits) = COUNTRIES[country];
    let mut text = format!("+{prefix}");
    for _ in 0..digits {
        text.push(char::from(b'0' + (rng.next() % 10) as u8));
    }
    text
}

async fn set_up(
    db: &Db,
    clock: &ClockHandle,
    run: &str,
) -> anyhow::Result<(String, String, Vec<String>)> {
    let rate = |product, prefix: &str, nanos, increments| RateRow {
        product,
        prefix: prefix.to_owned(),
        rate_nanos: nanos,
        increments,
    };
    let mut rows = Vec::new();
    for (n, (prefix, _)) in COUNTRIES.iter().enumerate() {
        let step = i64::try_from(n).unwrap_or(0) * 1_000_000;
        rows.push(rate(
            Product::VoiceOutbound,
            prefix,
            10_000_000 + step,
            Increments::new(6, 6),
        ));
        rows.push(rate(
            Product::SmsOutbound,
            prefix,
            4_000_000 + step / 10,
            None,
        ));
    }
    rows.push(rate(
        Product::VoiceOutbound,
        "",
        50_000_000,
        Increments::new(60, 60),
    ));
    rows.push(rate(
        Product::VoiceInbound,
        "",
        2_000_000,
        Increments::new(6, 6),
    ));
    rows.push(rate(Product::SmsOutbound, "", 5_000_000, None));
    rows.push(rate(Product::SmsInbound, "", 1_000_000, None));
    rows.push(rate(Product::MmsOutbound, "", 20_000_000, None));
    rows.push(rate(Product::NumberRental, "", 1_000_000_000, None));
    support::import_platform_list(db, clock, format!("report bench {run}"), &rows).await?;
    support::reseller_with_customers(
        db,
        clock,
        &format!("report-bench-{run}@reseller.example"),
        "Report Bench Reseller",
        MANAGED,
    )
    .await
}

/// When the events of one seeding happen: `events` of them over the 31 days from `start_ms`.
#[derive(Clone, Copy)]
struct Timeline {
    start_ms: i64,
    events: usize,
    order: Order,
}

impl Timeline {
    /// When the `n`th event sent happened.
    fn at_ms(self, n: usize, rng: &mut Lcg, now_ms: i64) -> i64 {
        let span_ms = DAYS * DAY_MS;
        let delay_ms = |rng: &mut Lcg| {
            // Calls end and are reported within minutes; one event in fifty is late.
            if rng.below(50) == 0 {
                rng.next() as i64 % (2 * DAY_MS)
            } else {
                rng.next() as i64 % 600_000
            }
        };
        match self.order {
            // Two draws: one holds 31 bits, fewer than the 31 days' milliseconds (2^31 ms
            // is 24.9 days).
            Order::Spread => self.start_ms + (((rng.next() << 31) | rng.next()) as i64 % span_ms),
            Order::Arrival => {
                let sent_ms = self.start_ms + (n as i64 * span_ms) / self.events.max(1) as i64;
                (sent_ms - delay_ms(rng)).max(self.start_ms)
            }
            Order::Live => now_ms - delay_ms(rng),
        }
    }
}

/// The events of one batch: account by account, contact by contact, over the 31 days.
fn batch(
    rng: &mut Lcg,
    books: &[Vec<String>],
    accounts: &[String],
    timeline: Timeline,
    run: &str,
    numbers: std::ops::Range<usize>,
    now_ms: i64,
) -> Vec<Result<RawEvent, String>> {
    numbers
        .map(|n| {
            let account = rng.below(accounts.len());
            let contact = &books[account][rng.below(CONTACTS_PER_ACCOUNT)];
            let (product, quantity) = match rng.below(100) {
                0..=49 => (Product::VoiceOutbound, 5 + rng.below(600)),
                50..=59 => (Product::VoiceInbound, 5 + rng.below(300)),
                60..=89 => (Product::SmsOutbound, 1 + rng.below(3)),
                90..=94 => (Product::SmsInbound, 1),
                95..=98 => (Product::MmsOutbound, 1),
                _ => (Product::NumberRental, 1),
            };
            let at_ms = timeline.at_ms(n, rng, now_ms);
            Ok(RawEvent {
                id: Some(format!("rb-{run}-{n}")),
                account_id: Some(accounts[account].clone()),
                product: Some(product.as_str().to_owned()),
                destination: Some(contact.clone()),
                quantity: Some(serde_json::json!(quantity)),
                occurred_at: Some(steward::clock::to_wire(steward::clock::from_epoch_ms(
                    at_ms,
                ))),
                lease_id: None,
            })
        })
        .collect()
}

/// An event as a network element sends it.
fn wire_event(event: &RawEvent) -> serde_json::Value {
    serde_json::json!({
        "id": event.id,
        "account_id": event.account_id,
        "product": event.product,
        "destination": event.destination,
        "quantity": event.quantity,
        "occurred_at": event.occurred_at,
    })
}

/// A server on `url`'s database, run by this process on a port of its own (its background
/// tasks too, but for card payments, as `bench/reports.sh` runs one), and an ingest key.
async fn http_sink(db: &Db, clock: &ClockHandle, url: DatabaseUrl) -> anyhow::Result<Sink> {
    let mut settings = steward::config::Settings::new(([127, 0, 0, 1], 0).into(), url);
    settings.payments.tasks_interval_ms = 0;
    let app = steward::http::Application::build(&settings, Arc::clone(clock)).await?;
    let address = app.local_addr()?;
    tokio::spawn(app.run_until(std::future::pending()));
    let key = steward::keys::service::mint(db, clock, steward::keys::service::ServiceKind::Ingest)
        .await?
        .secret()
        .to_owned();
    Ok(Sink::Http {
        client: reqwest::Client::new(),
        url: format!("http://{address}/v2/usage_events"),
        key,
    })
}

async fn seed(
    db: &Db,
    clock: &ClockHandle,
    sink: &Arc<Sink>,
    run: &str,
    accounts: Arc<Vec<String>>,
    timeline: Timeline,
) -> anyhow::Result<f64> {
    let events = timeline.events;
    let mut rng = Lcg(42);
    let books: Arc<Vec<Vec<String>>> = Arc::new(
        (0..accounts.len())
            .map(|_| {
                let home = rng.below(COUNTRIES.len());
                (0..CONTACTS_PER_ACCOUNT)
                    .map(|_| {
                        let country = if rng.below(10) < 8 {
                            home
                        } else {
                            rng.below(COUNTRIES.len())
                        };
                        number(&mut rng, country)
                    })
                    .collect()
            })
            .collect(),
    );
    let pricing = Arc::new(pricing::PricingCache::default());
    let started = Instant::now();
    let batches = events.div_ceil(BATCH_EVENTS);
    let mut tasks = Vec::new();
    for task in 0..SEED_TASKS {
        let (db, clock, sink, pricing, books, accounts) = (
            db.clone(),
            Arc::clone(clock),
            Arc::clone(sink),
            Arc::clone(&pricing),
            Arc::clone(&books),
            Arc::clone(&accounts),
        );
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(1_000 + task as u64);
            for b in (task..batches).step_by(SEED_TASKS) {
                let first = b * BATCH_EVENTS;
                let count = BATCH_EVENTS.min(events - first);
                let now_ms = clock.now().timestamp_millis();
                let raw = batch(
                    &mut rng,
                    &books,
                    &accounts,
                    timeline,
                    &run,
                    first..first + count,
                    now_ms,
                );
                // Resent on a pool timeout, as a sender resends on a 503: ingestion is
                // idempotent, and a loaded machine can hold the one SQLite writer longer
                // than the acquire timeout.
                let mut attempts = 0;
                match &*sink {
                    Sink::Library => loop {
                        match steward::usage::ingest(&db, &pricing, &clock, &raw, "bench").await {
                            Ok(_) => break,
                            Err(sqlx::Error::PoolTimedOut) if attempts < 10 => attempts += 1,
                            Err(e) => return Err(e).context("Failed to ingest a seed batch"),
                        }
                    },
                    Sink::Http { client, url, key } => {
                        let events: Vec<serde_json::Value> =
                            raw.iter().flatten().map(wire_event).collect();
                        let body = serde_json::json!({ "events": events });
                        loop {
                            let response =
                                client.post(url).bearer_auth(key).json(&body).send().await?;
                            let status = response.status();
                            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempts < 10 {
                                attempts += 1;
                                continue;
                            }
                            anyhow::ensure!(status.is_success(), "ingestion answered {status}");
                            let answer: serde_json::Value = response.json().await?;
                            let accepted = answer["data"].as_array().map_or(0, |events| {
                                events.iter().filter(|e| e["status"] == "accepted").count()
                            });
                            anyhow::ensure!(
                                accepted == events.len(),
                                "ingestion accepted {accepted} of {} events",
                                events.len()
                            );
                            break;
                        }
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The machine's CPU time so far, from `/proc/stat` (Linux): jiffies busy (user, nice,
/// system, interrupts; not idle, I/O wait or time stolen by the host) and in all, and the
/// number of cores. `None` where it cannot be read.
fn cpu_jiffies() -> Option<(u64, u64, usize)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let fields: Vec<u64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal (guest time is counted in user).
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6);
    let all = busy + field(3) + field(4) + field(7);
    let cores = lines.filter(|line| line.starts_with("cpu")).count();
    Some((busy, all, cores))
}

/// What one seeding round took: wall seconds, and the machine's busy CPU seconds (`None`
/// without `/proc/stat`).
struct Round {
    seconds: f64,
    cpu_seconds: Option<f64>,
}

async fn timed_round(
    db: &Db,
    clock: &ClockHandle,
    sink: &Arc<Sink>,
    run: &str,
    managed: &Arc<Vec<String>>,
    timeline: Timeline,
) -> anyhow::Result<Round> {
    let before = cpu_jiffies();
    let seconds = seed(db, clock, sink, run, Arc::clone(managed), timeline).await?;
    let cpu_seconds = match (before, cpu_jiffies()) {
        (Some((busy0, all0, cores)), Some((busy1, all1, _))) if all1 > all0 => {
            // Busy share of all the cores' time over the round, times that time.
            let share = (busy1 - busy0) as f64 / (all1 - all0) as f64;
            Some(share * seconds * cores as f64)
        }
        _ => None,
    };
    Ok(Round {
        seconds,
        cpu_seconds,
    })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn thousandths(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Alternates seeding rounds with rollups on and off, after one warm-up round; events per
/// second of each round and the ratio (on ÷ off) of each pair, with its median; and the
/// same for the machine's busy CPU time per event (off ÷ on), which the host's other
/// guests move less than the wall clock.
async fn rollups_ab(
    db: &Db,
    clock: &ClockHandle,
    sink: &Arc<Sink>,
    args: &Args,
    start_ms: i64,
) -> anyhow::Result<serde_json::Value> {
    let (events, order, pairs) = (args.events, args.order, args.pairs);
    let a_a = args.phase == "aa";
    let run = format!("ab{:x}", clock.now().timestamp_millis());
    let (_, _, managed) = set_up(db, clock, &run).await?;
    // The days before today closed, as a running server keeps them: `live` traffic's
    // events of today then go to the daily rollups only, those of earlier days to both.
    steward::usage::rollups::close_days(db, clock.now().timestamp_millis()).await?;
    let managed = Arc::new(managed);
    let rounds = pairs * 2;
    let per_round = (events / rounds).max(BATCH_EVENTS);
    let timeline = Timeline {
        start_ms,
        events: per_round,
        order,
    };
    // A first round is slower whatever it does (an A/A run, both sides without rollups,
    // gave its first pair 0.78–0.82 and the others 0.86–1.2): the process's pools and
    // caches fill, and the tables' first pages are laid out. Run with rollups, it also
    // creates the day's rollup keys, which a platform does once a day and later rounds
    // only update. Not counted; its rate is reported apart.
    steward::usage::rollups::maintain_for_benchmark(true);
    let warm_up = timed_round(db, clock, sink, &format!("{run}-w"), &managed, timeline).await?;
    let (mut on, mut off, mut pair_ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu_pair_ratios = Vec::new();
    let (mut cpu_on, mut cpu_off) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        // On then off, then off then on: whatever drifts over the run (the tables grow)
        // falls on both sides alike.
        let sides = if pair % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        let mut measured = Vec::with_capacity(2);
        for (side, maintained) in sides.into_iter().enumerate() {
            // An A/A run keeps both sides without rollups: what the A/B reads as a cost
            // is then the bench's own bias and noise.
            steward::usage::rollups::maintain_for_benchmark(maintained && !a_a);
            let round = timed_round(
                db,
                clock,
                sink,
                &format!("{run}-{pair}-{side}"),
                &managed,
                timeline,
            )
            .await?;
            let rate = (per_round as f64 / round.seconds).round();
            let cpu_us = round
                .cpu_seconds
                .map(|cpu| (cpu * 1e6 / per_round as f64 * 100.0).round() / 100.0);
            if maintained {
                on.push(rate);
                cpu_on.extend(cpu_us);
            } else {
                off.push(rate);
                cpu_off.extend(cpu_us);
            }
            measured.push((maintained, rate, cpu_us));
        }
        let side = |maintained: bool| {
            measured
                .iter()
                .find(|(m, _, _)| *m == maintained)
                .map(|(_, rate, cpu)| (*rate, *cpu))
                .unwrap_or((f64::NAN, None))
        };
        let ((with, with_cpu), (without, without_cpu)) = (side(true), side(false));
        pair_ratios.push(thousandths(with / without));
        if let (Some(with_cpu), Some(without_cpu)) = (with_cpu, without_cpu) {
            cpu_pair_ratios.push(thousandths(without_cpu / with_cpu));
        }
    }
    steward::usage::rollups::maintain_for_benchmark(true);
    let (on_median, off_median) = (median(&on), median(&off));
    let cpu = (!cpu_pair_ratios.is_empty()).then(|| {
        serde_json::json!({
            "with_rollups_cpu_us_per_event": cpu_on,
            "without_rollups_cpu_us_per_event": cpu_off,
            "pair_ratios": cpu_pair_ratios,
            "ratio": median(&cpu_pair_ratios),
        })
    });
    Ok(serde_json::json!({
        "a_a": a_a,
        "order": match order {
            Order::Spread => "spread",
            Order::Arrival => "arrival",
            Order::Live => "live",
        },
        "ingest": match &**sink {
            Sink::Library => "library",
            Sink::Http { .. } => "http",
        },
        "events_per_round": per_round,
        "warm_up_events_per_second": (per_round as f64 / warm_up.seconds).round(),
        "with_rollups_events_per_second": on,
        "without_rollups_events_per_second": off,
        "with_rollups_median": on_median,
        "without_rollups_median": off_median,
        "ratio_of_medians": thousandths(on_median / off_median),
        "pair_ratios": pair_ratios,
        "ratio": median(&pair_ratios),
        "cpu": cpu,
    }))
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let index = ((sorted_ms.len() as f64 - 1.0) * p).round() as usize;
    sorted_ms[index.min(sorted_ms.len() - 1)]
}

fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    serde_json::json!({"runs": ms.len(), "p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99),
                       "max_ms": ms.last().copied().unwrap_or(0.0)})
}

async fn time_report(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    reports: usize,
) -> anyhow::Result<(Vec<f64>, u64)> {
    let mut report_ms = Vec::with_capacity(reports);
    let mut rows = 0;
    for _ in 0..reports {
        let started = Instant::now();
        let response = client.get(url).bearer_auth(key).send().await?;
        anyhow::ensure!(
            response.status() == 200,
            "report answered {}",
            response.status()
        );
        let body: serde_json::Value = response.json().await?;
        report_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        rows = body["meta"]["total_results"].as_u64().unwrap_or(0);
    }
    Ok((report_ms, rows))
}

fn wire(ms: i64) -> String {
    steward::clock::to_wire(steward::clock::from_epoch_ms(ms)).replace(".000", "")
}

async fn measure(
    db: &Db,
    server: &str,
    key: &str,
    manager: &str,
    reports: usize,
    start_ms: i64,
) -> anyhow::Result<serde_json::Value> {
    let client = reqwest::Client::new();
    let report_url = |from_ms: i64, until_ms: i64| {
        format!(
            "{server}/v2/usage_reports?product=sip-trunking&dimensions=product,country_code&metrics=count,call_sec,billed_sec,cost&managed_accounts=true&page%5Bsize%5D=5000&start_date={}&end_date={}",
            wire(from_ms),
            wire(until_ms)
        )
    };
    let month_end = start_ms + DAYS * DAY_MS;
    let (month_ms, month_rows) =
        time_report(&client, &report_url(start_ms, month_end), key, reports).await?;
    // The same width a day later: no whole month inside, so the month less its first day
    // and plus the next month's first day.
    let (rolling_ms, rolling_rows) = time_report(
        &client,
        &report_url(start_ms + DAY_MS, month_end + DAY_MS),
        key,
        reports,
    )
    .await?;
    // The month's aggregation over the raw records, through the same driver.
    let sql = "SELECT account_id, product, country_code, COUNT(*) AS n, CAST(SUM(quantity) AS BIGINT) AS q, \
               CAST(SUM(billable_quantity) AS BIGINT) AS b, CAST(SUM(cost_nanos) AS BIGINT) AS c FROM usage_records \
               WHERE account_id IN (SELECT id FROM accounts WHERE manager_id = $1) AND product IN ('voice_outbound', 'voice_inbound') \
               AND occurred_at_ms >= $2 AND occurred_at_ms < $3 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    let mut raw_ms = Vec::new();
    let mut raw_rows = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let found = sqlx::query(sql)
            .bind(manager)
            .bind(start_ms)
            .bind(month_end)
            .fetch_all(&db.read)
            .await?;
        raw_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        raw_rows = found.len();
        if let Some(row) = found.first() {
            let _: i64 = row.try_get("n")?;
        }
    }
    let month = summary(month_ms);
    let raw = summary(raw_ms);
    let ratio =
        raw["p50_ms"].as_f64().unwrap_or(0.0) / month["p50_ms"].as_f64().unwrap_or(1.0).max(0.001);
    Ok(serde_json::json!({
        "month_report": month, "month_rows": month_rows,
        "rolling_31_days_report": summary(rolling_ms), "rolling_rows": rolling_rows,
        "baseline_raw_records_month": raw, "baseline_rows": raw_rows,
        "raw_over_month_report_p50": ratio}))
}

/// The start of the latest calendar month of 31 days that has ended.
fn latest_long_month(now_ms: i64) -> i64 {
    let mut start = steward::usage::rollups::month_start(now_ms);
    loop {
        let previous = steward::usage::rollups::month_start(start - 1);
        if start - previous == DAYS * DAY_MS {
            return previous;
        }
        start = previous;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let clock: ClockHandle = Arc::new(SystemClock);
    let url = DatabaseUrl::parse(&args.database_url).map_err(anyhow::Error::msg)?;
    let db = Db::connect(&url).await?;
    steward::upgrade::run(&db, &clock).await?;
    let start_ms = latest_long_month(clock.now().timestamp_millis());
    let state_file = std::path::Path::new(
        &std::env::var("STEWARD_REPORT_BENCH_STATE")
            .unwrap_or_else(|_| "target/report-bench.json".into()),
    )
    .to_path_buf();
    let mut out = serde_json::json!({"events": args.events});
    if args.phase == "ab" || args.phase == "aa" {
        let sink = Arc::new(match args.ingest_over_http {
            false => Sink::Library,
            true => http_sink(&db, &clock, url.clone()).await?,
        });
        out["rollups_ab"] = rollups_ab(&db, &clock, &sink, &args, start_ms).await?;
        db.close().await;
        println!("{out}");
        return Ok(());
    }
    if args.phase == "seed" || args.phase == "all" {
        let run = format!("{:x}", clock.now().timestamp_millis());
        let (manager, key, managed) = set_up(&db, &clock, &run).await?;
        let timeline = Timeline {
            start_ms,
            events: args.events,
            order: args.order,
        };
        let sink = Arc::new(Sink::Library);
        let seconds = seed(&db, &clock, &sink, &run, Arc::new(managed), timeline).await?;
        out["seed_seconds"] = seconds.into();
        out["seed_events_per_second"] = (args.events as f64 / seconds).round().into();
        // What a server's closer does as each day ends, for the whole month at once.
        let started = Instant::now();
        let days = steward::usage::rollups::close_days(&db, clock.now().timestamp_millis()).await?;
        out["closed_days"] = days.into();
        out["close_days_seconds"] = started.elapsed().as_secs_f64().into();
        let rollups: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_rollups_daily")
            .fetch_one(&db.read)
            .await?;
        out["daily_rollup_rows"] = rollups.into();
        // PostgreSQL's autovacuum gathers statistics for tables that changed this much, but
        // only some time later: a report timed at once would be planned without them.
        // (SQLite keeps none unless asked, and Steward does not ask.)
        if url.is_postgres() {
            sqlx::query("ANALYZE").execute(&db.write).await?;
        }
        std::fs::write(
            &state_file,
            serde_json::json!({"manager": manager, "key": key, "start_ms": start_ms}).to_string(),
        )?;
    }
    if args.phase == "measure" || args.phase == "all" {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state_file)?)?;
        let start_ms = state["start_ms"].as_i64().unwrap_or(start_ms);
        // Let the server's caches settle before timing.
        tokio::time::sleep(Duration::from_millis(200)).await;
        out["measure"] = measure(
            &db,
            &args.server,
            state["key"].as_str().unwrap_or_default(),
            state["manager"].as_str().unwrap_or_default(),
            args.reports,
            start_ms,
        )
        .await?;
    }
    db.close().await;
    println!("{out}");
    Ok(())
}
