//! Prometheus metrics: `GET /metrics` in the OpenMetrics text format.
//!
//! Each application owns its [`Metrics`] (a `prometheus_client` registry in `AppState`)
//! rather than installing a process-wide recorder: the tests run many applications in one
//! process and each must see only its own figures, and nothing else in Steward is global
//! either. The crate encodes the exposition; nothing here writes the format by hand.
//!
//! Most series are updated where things happen (requests in a middleware, ingestion and
//! admission outcomes by their handlers). Figures that live in the database or the pools
//! are read at scrape time: the pool gauges, and the [`ScrapeGauge`]s, each a query whose
//! rows become the series of one gauge. A new figure of that kind is one more entry in
//! [`Metrics::new`].
//!
//! On the main listener `/metrics` needs an operator key like `/admin/v1`; the optional
//! metrics listener serves it without one and is meant for a private interface.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use sqlx::AnyPool;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use super::extract::OperatorCaller;
use crate::accounts::access::KeyCache;
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::{Backend, Db};

/// Upper bounds of the request latency buckets, in seconds: from a cached read (~1 ms) to
/// the per-request time limit's order of magnitude.
/// Requests per admission batch: 1, 2, 4 … 512 (the most a batch takes).
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

const LATENCY_BUCKETS_S: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The content type of the OpenMetrics text format, which Prometheus scrapes natively.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a scrape waits for a pooled connection when it measures the wait; a scrape
/// must answer even when the pool is exhausted.
const ACQUIRE_PROBE_TIMEOUT_MS: u64 = 1_000;

/// Labels of a request series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// The route template (`/v2/managed_accounts/{id}`), or `unmatched`.
    route: String,
    /// The method, or `other` for a method the API does not use (bounds the series).
    method: &'static str,
    /// The response status.
    status: u16,
}

/// Labels of a series with one open-ended `outcome`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

/// Labels of a pool series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

/// The rows of a scrape-time query: label pairs and a value for each series.
pub type ScrapeRows = Vec<(Vec<(String, String)>, i64)>;

/// A query run at scrape time.
pub type ScrapeQuery =
    for<'a> fn(
        &'a Db,
        &'a ClockHandle,
    ) -> Pin<Box<dyn Future<Output = Result<ScrapeRows, sqlx::Error>> + Send + 'a>>;

/// A gauge whose series are read from the database at each scrape.
#[derive(Debug)]
pub struct ScrapeGauge {
    name: &'static str,
    family: Family<Vec<(String, String)>, Gauge>,
    query: ScrapeQuery,
}

/// The registry and every series the application updates.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    request_duration: Family<RequestLabels, Histogram, fn() -> Histogram>,
    usage_events: Family<OutcomeLabels, Counter>,
    usage_charged_nanos: Counter<f64, std::sync::atomic::AtomicU64>,
    admissions: Family<OutcomeLabels, Counter>,
    admission_batch: Histogram,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_idle: Family<PoolLabels, Gauge>,
    pool_in_use: Family<PoolLabels, Gauge>,
    pool_size_max: Family<PoolLabels, Gauge>,
    pool_acquire_probe: Family<PoolLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pool_exhausted: Counter,
    pricing_lists: Family<PlaceLabels, Gauge>,
    scrape_gauges: Vec<ScrapeGauge>,
}

/// Labels of a series counted in one place of the process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PlaceLabels {
    place: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_S)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every series of Steward, under the `steward_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("steward");
        let request_duration =
            Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register_with_unit(
            "http_request_duration",
            "Requests answered and their time from reaching the router to the response, by route \
             template, method and status (`_count` is the number of requests)",
            Unit::Seconds,
            request_duration.clone(),
        );
        let usage_events = Family::default();
        registry.register(
            "usage_events",
            "Usage events ingested, by the outcome answered for each (accepted, duplicate, suspended, rejected)",
            usage_events.clone(),
        );
        // A float counter: a 64-bit integer of nano-units would wrap after ~18 billion
        // currency units charged; Prometheus keeps samples as floats anyway.
        let usage_charged_nanos = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "usage_charged_nanos",
            "Amount charged for accepted usage events, in nano-units of the currency",
            usage_charged_nanos.clone(),
        );
        let admissions = Family::default();
        registry.register(
            "admissions",
            "Admission decisions: admitted, or the refusal reason",
            admissions.clone(),
        );
        let admission_batch = Histogram::new(BATCH_BUCKETS);
        registry.register(
            "admission_batch_requests",
            "Admissions and lease releases decided together in one transaction, per batch \
             (`_count` is the number of batches)",
            admission_batch.clone(),
        );
        let pool = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<PoolLabels, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let pool_connections = pool(
            &mut registry,
            "db_pool_connections",
            "Connections open in the database pool (idle and in use), read at scrape time",
        );
        let pool_idle = pool(
            &mut registry,
            "db_pool_idle_connections",
            "Idle connections in the database pool, read at scrape time",
        );
        let pool_in_use = pool(
            &mut registry,
            "db_pool_in_use_connections",
            "Connections of the database pool in use, read at scrape time",
        );
        let pool_size_max = pool(
            &mut registry,
            "db_pool_max_connections",
            "Most connections the database pool opens",
        );
        let pool_acquire_probe = Family::default();
        registry.register_with_unit(
            "db_pool_acquire_probe",
            "Time this scrape waited for a connection from the pool (capped at 1 s): a sample of \
             the wait requests see at that moment; sqlx exposes no wait time of its own",
            Unit::Seconds,
            pool_acquire_probe.clone(),
        );
        let pool_exhausted = Counter::default();
        registry.register(
            "db_pool_acquire_timeouts",
            "Requests answered 503 because no pooled connection became free within the acquire timeout",
            pool_exhausted.clone(),
        );
        let pricing_lists = Family::<PlaceLabels, Gauge>::default();
        registry.register(
            "pricing_lists_held",
            "Price lists whose rates this process holds: in the index (those that can still \
             apply) and kept after late usage read an older one",
            pricing_lists.clone(),
        );
        let mut metrics = Self {
            registry,
            request_duration,
            usage_events,
            usage_charged_nanos,
            admissions,
            admission_batch,
            pool_connections,
            pool_idle,
            pool_in_use,
            pool_size_max,
            pool_acquire_probe,
            pool_exhausted,
            pricing_lists,
            scrape_gauges: Vec::new(),
        };
        metrics.add_scrape_gauge(
            "channel_leases_live",
            "Channel leases holding a channel now (not released, not expired), read at scrape time",
            |db, clock| Box::pin(live_leases(db, clock)),
        );
        metrics.add_scrape_gauge(
            "usage_suspended_events",
            "Usage events kept in suspense (well-formed, not chargeable yet), by reason, read at \
             scrape time",
            |db, _clock| Box::pin(suspended_events(db)),
        );
        metrics
    }

    /// Serves the figures of this process's key cache (see `accounts::access`).
    pub fn watch_key_cache(&mut self, cache: Arc<KeyCache>) {
        self.registry
            .register_collector(Box::new(KeyCacheFigures(cache)));
    }

    /// Serves the counts of SQLite's shared write transactions (see `db::group`).
    pub fn watch_group_commit(&mut self, db: Db) {
        self.registry
            .register_collector(Box::new(GroupCommitFigures(db)));
    }

    /// Registers a gauge whose series are the rows of `query`, run at each scrape.
    pub fn add_scrape_gauge(&mut self, name: &'static str, help: &str, query: ScrapeQuery) {
        let family = Family::default();
        self.registry.register(name, help, family.clone());
        self.scrape_gauges.push(ScrapeGauge {
            name,
            family,
            query,
        });
    }

    /// Counts one answered request.
    fn observe_request(&self, labels: &RequestLabels, elapsed: Duration) {
        self.request_duration
            .get_or_create(labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts ingested events by outcome (`accepted`, `duplicate`, `rejected`, ...).
    pub fn usage_events(&self, outcome: &str, count: u64) {
        if count > 0 {
            self.usage_events
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.to_owned(),
                })
                .inc_by(count);
        }
    }

    /// Adds an amount charged for usage.
    #[expect(
        clippy::as_conversions,
        reason = "a sample is a float: no lossless conversion from i64 exists"
    )]
    pub fn usage_charged(&self, amount_nanos: i64) {
        if amount_nanos > 0 {
            self.usage_charged_nanos.inc_by(amount_nanos as f64);
        }
    }

    /// Counts one admission decision: `admitted` or the refusal reason.
    /// Counts one admission batch of `requests` admissions and releases.
    pub fn admission_batch(&self, requests: usize) {
        self.admission_batch
            .observe(f64::from(u32::try_from(requests).unwrap_or(u32::MAX)));
    }

    pub fn admission(&self, outcome: &str) {
        self.admissions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Reads the figures that live outside the process and encodes everything.
    async fn render(&self, db: &Db, clock: &ClockHandle) -> Result<String, ApiError> {
        let pools: &[(&'static str, &AnyPool)] = match db.backend {
            Backend::Postgres => &[("shared", &db.write)],
            Backend::Sqlite => &[("write", &db.write), ("read", &db.read)],
        };
        for (name, pool) in pools {
            self.read_pool(name, pool).await;
        }
        for gauge in &self.scrape_gauges {
            gauge.family.clear();
            match (gauge.query)(db, clock).await {
                Ok(rows) => {
                    for (labels, value) in rows {
                        gauge.family.get_or_create(&labels).set(value);
                    }
                }
                // The other series are still worth serving; this one is left out.
                Err(error) => tracing::warn!(
                    metric = gauge.name,
                    %error,
                    "Failed to read the metric {}: {error}",
                    gauge.name
                ),
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("Failed to encode metrics: {e}")))?;
        Ok(text)
    }

    async fn read_pool(&self, name: &'static str, pool: &AnyPool) {
        let labels = PoolLabels { pool: name };
        let size = i64::from(pool.size());
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
        self.pool_connections.get_or_create(&labels).set(size);
        self.pool_idle.get_or_create(&labels).set(idle);
        self.pool_in_use
            .get_or_create(&labels)
            .set((size - idle).max(0));
        self.pool_size_max
            .get_or_create(&labels)
            .set(i64::from(pool.options().get_max_connections()));
        let started = Instant::now();
        let probe = Duration::from_millis(ACQUIRE_PROBE_TIMEOUT_MS);
        // The connection goes straight back to the pool.
        let _ = tokio::time::timeout(probe, pool.acquire()).await;
        self.pool_acquire_probe
            .get_or_create(&labels)
            .set(started.elapsed().min(probe).as_secs_f64());
    }
}

/// Encodes counters read at scrape time, each a `(name, help, value)`.
fn encode_counters<const N: usize>(
    encoder: &mut DescriptorEncoder<'_>,
    counters: [(&str, &str, u64); N],
) -> Result<(), std::fmt::Error> {
    for (name, help, value) in counters {
        let counter = ConstCounter::new(value);
        counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
    }
    Ok(())
}

/// The key cache's counters, read at each scrape: they live in the cache itself, which knows
/// nothing of metrics.
#[derive(Debug)]
struct KeyCacheFigures(Arc<KeyCache>);

impl Collector for KeyCacheFigures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let lookups = self.0.lookups();
        encode_counters(
            &mut encoder,
            [
                (
                    "auth_cache_hits",
                    "Presented keys answered from this process's key cache",
                    lookups.hits,
                ),
                (
                    "auth_cache_misses",
                    "Presented keys read from the database because the key cache did not hold them \
                     or was not fresh enough to answer (not counted with the cache off)",
                    lookups.misses,
                ),
            ],
        )?;
        let held = ConstGauge::new(i64::try_from(self.0.len()).unwrap_or(i64::MAX));
        held.encode(encoder.encode_descriptor(
            "auth_cache_keys",
            "Keys held in this process's key cache now (at most --auth-cache-entries)",
            None,
            held.metric_type(),
        )?)
    }
}

/// SQLite's group commit, read at each scrape from the database handle.
#[derive(Debug)]
struct GroupCommitFigures(Db);

impl Collector for GroupCommitFigures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let counts = self.0.group_commits();
        encode_counters(
            &mut encoder,
            [
                (
                    "db_group_transactions",
                    "Shared write transactions SQLite's writer ran (committed or not); none on \
                     PostgreSQL, where writes are not grouped",
                    counts.transactions,
                ),
                (
                    "db_group_writes",
                    "Writes those shared transactions held (ingestion batches): divided by the \
                     transactions, the mean group size",
                    counts.writes,
                ),
            ],
        )
    }
}

/// Live channel leases, one series without labels.
async fn live_leases(db: &Db, clock: &ClockHandle) -> Result<ScrapeRows, sqlx::Error> {
    let count = crate::admission::live_lease_count(db, to_epoch_ms(clock.now())).await?;
    Ok(vec![(Vec::new(), count)])
}

/// Usage events in suspense, one series per reason (zeros included, so that an alert
/// sees the series from the start).
async fn suspended_events(db: &Db) -> Result<ScrapeRows, sqlx::Error> {
    let counts = crate::usage::suspense::counts_by_reason(db).await?;
    Ok(counts
        .into_iter()
        .map(|(reason, count)| {
            (
                vec![("reason".to_owned(), reason.as_str().to_owned())],
                count,
            )
        })
        .collect())
}

/// Marks a response refused because the pool had no free connection; counted by
/// [`track_requests`].
#[derive(Debug, Clone, Copy)]
pub struct PoolExhausted;

/// Bounds the `method` label to the methods the API uses.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts and times every request by route template, method and status.
pub async fn track_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RequestLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    state.metrics.observe_request(&labels, started.elapsed());
    if response.extensions().get::<PoolExhausted>().is_some() {
        state.metrics.pool_exhausted.inc();
    }
    response
}

async fn exposition(state: &AppState) -> Result<Response, ApiError> {
    let (index, kept) = state.pricing.held_lists().await;
    for (place, lists) in [("index", index), ("kept", kept)] {
        state
            .metrics
            .pricing_lists
            .get_or_create(&PlaceLabels { place })
            .set(i64::try_from(lists).unwrap_or(i64::MAX));
    }
    let text = state.metrics.render(&state.db, &state.clock).await?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
    );
    Ok(response)
}

/// The metrics, for the operator (or a Prometheus holding an operator key).
#[utoipa::path(get, path = "/metrics", tag = "Operations",
    description = "Prometheus metrics in the OpenMetrics text format. Needs an operator key here; \
        `--metrics-listen` serves the same without a key on a separate (private) address.",
    responses((status = 200, description = "The exposition", content_type = "application/openmetrics-text", body = String)),
    security(("operator_key" = [])))]
pub async fn metrics(
    State(state): State<AppState>,
    _operator: OperatorCaller,
) -> Result<Response, ApiError> {
    exposition(&state).await
}

/// The same exposition without a key, for the separate metrics listener only.
pub async fn metrics_unauthenticated(State(state): State<AppState>) -> Result<Response, ApiError> {
    exposition(&state).await
}

/// The router of the separate metrics listener: `GET /metrics`, nothing else.
pub fn listener_router(state: AppState) -> axum::Router {
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics_unauthenticated))
        .fallback(|| async {
            ApiError::new(ErrorKind::NotFound, "This address serves only /metrics.")
        })
        .with_state(state);
    super::security_headers::layer(router)
}
