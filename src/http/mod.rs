//! The HTTP edge: one route table (which also feeds the OpenAPI document), middleware, and
//! the application's build/run steps.

pub mod account;
pub mod admin;
pub mod api_keys;
pub mod audit_events;
pub mod auth_throttle;
pub mod body;
pub mod channels;
pub mod charges;
pub mod detail_records;
pub mod download;
pub mod error;
pub mod extract;
pub mod health;
pub mod invoices;
pub mod managed_accounts;
pub mod metrics;
mod openapi;
pub mod payment_methods;
pub mod payments;
pub mod pricing;
pub mod report_jobs;
pub mod sandbox;
pub mod scope;
pub mod security_headers;
pub mod serve;
pub mod usage;
pub mod usage_reports;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::error::{ApiError, ErrorKind};
use crate::clock::ClockHandle;
use crate::config::Settings;
use crate::db::Db;

/// What every handler can reach: a handle to the one [`App`] of this server. Every request
/// clones it (axum's `State`), so it is a single reference count, not the app's fields (the
/// database handles, the payment settings) cloned and dropped per request.
#[derive(Debug, Clone)]
pub struct AppState(std::sync::Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// The server's shared parts, reached through [`AppState`].
#[derive(Debug)]
pub struct App {
    /// The database.
    pub db: Db,
    /// This process's authenticated API keys (see `accounts::access`), dropped by every
    /// change to access `db` commits.
    pub key_cache: std::sync::Arc<crate::accounts::access::KeyCache>,
    /// The clock.
    pub clock: ClockHandle,
    /// This process's copy of the pricing index.
    pub pricing: std::sync::Arc<crate::pricing::PricingCache>,
    /// Per-request time limit.
    pub request_timeout_ms: u64,
    /// Counts of bad keys per client address (per process).
    pub auth_throttle: std::sync::Arc<auth_throttle::AuthThrottle>,
    /// This application's metrics registry.
    pub metrics: std::sync::Arc<metrics::Metrics>,
    /// Signs links that work without a key (report files, invoice documents).
    pub signer: std::sync::Arc<crate::signing::Signer>,
    /// Wakes this server's report worker when a job is created here (other servers' workers
    /// find it on their next poll).
    pub reports_wake: std::sync::Arc<tokio::sync::Notify>,
    /// Card payments and their gateway.
    pub payments: crate::payments::Payments,
    /// This server's admissions and lease releases, decided in batches.
    pub admissions: crate::admission::Admissions,
}

/// The route table. Every route is listed here and nowhere else.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::livez))
        .routes(routes!(metrics::metrics))
        .routes(routes!(managed_accounts::list, managed_accounts::create))
        .routes(routes!(channels::allocatable_channels))
        .routes(routes!(
            managed_accounts::retrieve,
            managed_accounts::update
        ))
        .routes(routes!(managed_accounts::disable))
        .routes(routes!(managed_accounts::enable))
        .routes(routes!(channels::update_channel_limit))
        .routes(routes!(api_keys::list_managed, api_keys::mint_managed))
        .routes(routes!(api_keys::revoke_managed))
        .routes(routes!(api_keys::list_own, api_keys::mint_own))
        .routes(routes!(api_keys::revoke_own))
        .routes(routes!(account::retrieve, account::update))
        .routes(routes!(account::balance))
        .routes(routes!(usage::ingest))
        .routes(routes!(usage::admit))
        .routes(routes!(usage::release))
        .routes(routes!(usage::renew))
        .routes(routes!(detail_records::list))
        .routes(routes!(audit_events::list))
        .routes(routes!(usage_reports::list))
        .routes(routes!(usage_reports::options))
        .routes(routes!(report_jobs::list_voice, report_jobs::create_voice))
        .routes(routes!(
            report_jobs::retrieve_voice,
            report_jobs::delete_voice
        ))
        .routes(routes!(report_jobs::csv_voice))
        .routes(routes!(
            report_jobs::list_messaging,
            report_jobs::create_messaging
        ))
        .routes(routes!(
            report_jobs::retrieve_messaging,
            report_jobs::delete_messaging
        ))
        .routes(routes!(report_jobs::csv_messaging))
        .routes(routes!(invoices::list))
        .routes(routes!(invoices::retrieve))
        .routes(routes!(invoices::pdf))
        .routes(routes!(charges::summary))
        .routes(routes!(charges::breakdown))
        .routes(routes!(pricing::own_rates))
        .routes(routes!(pricing::own_rate))
        .routes(routes!(pricing::managed_rates))
        .routes(routes!(pricing::managed_rate))
        .routes(routes!(admin::import_price_list))
        .routes(routes!(admin::assign_price_list))
        .routes(routes!(admin::balance))
        .routes(routes!(admin::set_credit_limit))
        .routes(routes!(admin::credit))
        .routes(routes!(admin::adjust))
        .routes(routes!(admin::price_list_rates))
        .routes(routes!(admin::account_rate))
        .routes(routes!(admin::suspended_usage))
        // Payments.
        .routes(routes!(
            payment_methods::list_own,
            payment_methods::create_own
        ))
        .routes(routes!(payment_methods::delete_own))
        .routes(routes!(payment_methods::set_default_own))
        .routes(routes!(
            payment_methods::list_managed,
            payment_methods::create_managed
        ))
        .routes(routes!(payment_methods::delete_managed))
        .routes(routes!(payment_methods::set_default_managed))
        .routes(routes!(payments::list, payments::create))
        .routes(routes!(payments::create_sdk_path))
        .routes(routes!(payments::list_managed, payments::create_managed))
        .routes(routes!(payments::get_prefs, payments::update_prefs))
        .routes(routes!(
            payments::get_managed_prefs,
            payments::update_managed_prefs
        ))
        .routes(routes!(sandbox::tokenize))
}

/// The routes and the OpenAPI document of everything they serve.
fn routes_and_document() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = routes().split_for_parts();
    // After the split: the document holds every route's operation only now.
    openapi::complete(&mut document);
    (router, document)
}

/// The OpenAPI document of everything served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes_and_document().1
}

/// The complete application: routes, OpenAPI document, middleware.
pub fn router(state: AppState, body_limit_bytes: usize) -> Router {
    let (router, document) = routes_and_document();
    let document = std::sync::Arc::new(document);
    let router = router
        .route(
            "/v2/openapi.json",
            axum::routing::get(move || {
                let document = std::sync::Arc::clone(&document);
                async move { Json(document.as_ref().clone()) }
            }),
        )
        // The portal's pages, under `/` (not in the OpenAPI document: they are HTML).
        .merge(crate::portal::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let path = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", MatchedPath::as_str);
                    let request_id = request
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "steward.http.request",
                        http.method = %request.method(),
                        http.route = path,
                        request.id = request_id,
                        account.id = tracing::field::Empty,
                    )
                })
                .on_response(
                    DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(LatencyUnit::Millis),
                ),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(drop_unusable_request_id))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                ApiError::internal(anyhow::anyhow!("a request handler panicked")).into_response()
            },
        ))
        // Outside the panic catcher, so that a panic counts as the 500 it is answered with.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track_requests,
        ))
        .with_state(state);
    // Outermost, so that every answer (a panic's 500 too) carries them.
    security_headers::layer(router)
}

/// Longest `x-request-id` accepted from a client; a UUID is 36 bytes and common tracing
/// ids are shorter still. Longer ids would bloat every log line of the request.
pub const REQUEST_ID_LENGTH_MAX: usize = 128;

/// Removes a client's `x-request-id` unless it is one short, visible-ASCII value, so that
/// the next layer generates a UUID instead: the id goes into every log line of the request
/// and back in the response, where control characters or a huge value would forge or
/// flood log lines.
async fn drop_unusable_request_id(mut request: Request) -> Request {
    let mut ids = request.headers().get_all(X_REQUEST_ID).iter();
    let usable = match (ids.next(), ids.next()) {
        (Some(id), None) => {
            let bytes = id.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= REQUEST_ID_LENGTH_MAX
                && bytes.iter().all(u8::is_ascii_graphic)
        }
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !usable {
        request.headers_mut().remove(X_REQUEST_ID);
    }
    request
}

/// An unknown route: the envelope for API clients, a page for browsers asking for one
/// outside the API's paths.
async fn not_found(request: Request) -> Response {
    let path = request.uri().path();
    let api = ["/v2", "/admin/", "/metrics", "/healthz", "/livez"]
        .iter()
        .any(|prefix| path.starts_with(prefix));
    let wants_html = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html && !api {
        let mut response = crate::portal::not_found_page();
        response.headers_mut().insert(
            axum::http::header::CONTENT_SECURITY_POLICY,
            axum::http::HeaderValue::from_static(crate::portal::page::CONTENT_SECURITY_POLICY),
        );
        return response;
    }
    ApiError::new(ErrorKind::NotFound, "No such route.").into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        "This route does not accept this method.",
    )
}

/// Cuts off requests that run too long. Dropping the handler rolls back its transaction.
async fn time_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = Duration::from_millis(state.request_timeout_ms);
    // The Telnyx SDKs repeat a 408 on their own; a write cut short may have reached a card
    // processor before it was stopped, so only a read may be repeated without the caller
    // deciding (with an Idempotency-Key, a repeated top-up is safe and the caller's choice).
    let read_only = request.method().is_safe();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let error = ApiError::new(
                ErrorKind::Timeout,
                "The request took longer than the server allows and was stopped; work not yet committed was rolled back.",
            );
            if read_only {
                error.into_response()
            } else {
                error.no_automatic_retry().into_response()
            }
        }
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A bound listener and everything needed to serve it.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// The separate metrics listener and its router, when configured.
    metrics: Option<(TcpListener, Router)>,
    db: Db,
    limits: serve::ConnectionLimits,
    proxies: std::sync::Arc<serve::TrustedProxies>,
    state: AppState,
}

impl Application {
    /// Connects the database (applying migrations) and binds the listener, so that the
    /// real port is known before serving (tests bind port 0).
    pub async fn build(settings: &Settings, clock: ClockHandle) -> anyhow::Result<Self> {
        let key_cache = std::sync::Arc::new(crate::accounts::access::KeyCache::new(
            settings.auth_cache_entries,
        ));
        let db = Db::connect(&settings.database_url)
            .await?
            .on_access_changed(key_cache.clone());
        crate::upgrade::run(&db, &clock).await?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", settings.listen))?;
        let signer = {
            let mut conn = db.write.acquire().await?;
            crate::signing::Signer::load(&mut conn, crate::clock::to_epoch_ms(clock.now())).await?
        };
        let payments =
            crate::payments::Payments::new(db.clone(), clock.clone(), settings.payments.clone());
        payments.announce();
        let metrics = {
            let mut metrics = metrics::Metrics::new();
            metrics.watch_key_cache(std::sync::Arc::clone(&key_cache));
            metrics.watch_group_commit(db.clone());
            std::sync::Arc::new(metrics)
        };
        let admissions =
            crate::admission::Admissions::new(db.clone(), clock.clone()).observed_by({
                let metrics = std::sync::Arc::clone(&metrics);
                std::sync::Arc::new(move |requests| metrics.admission_batch(requests))
            });
        let state = AppState(std::sync::Arc::new(App {
            db: db.clone(),
            key_cache,
            clock,
            pricing: std::sync::Arc::default(),
            request_timeout_ms: settings.request_timeout_ms,
            auth_throttle: std::sync::Arc::default(),
            metrics,
            signer: std::sync::Arc::new(signer),
            reports_wake: std::sync::Arc::default(),
            payments,
            admissions,
        }));
        let metrics = match settings.metrics_listen {
            Some(address) => {
                let listener = TcpListener::bind(address)
                    .await
                    .with_context(|| format!("Failed to listen for metrics on {address}"))?;
                Some((listener, metrics::listener_router(state.clone())))
            }
            None => None,
        };
        Ok(Self {
            listener,
            metrics,
            router: router(state.clone(), settings.body_limit_bytes),
            db,
            limits: serve::ConnectionLimits {
                header_read_timeout_ms: settings.header_read_timeout_ms,
                keep_alive_timeout_ms: settings.keep_alive_timeout_ms,
                shutdown_grace_ms: settings.shutdown_grace_ms,
            },
            proxies: std::sync::Arc::new(serve::TrustedProxies::new(
                settings.trusted_proxies.clone(),
            )),
            state,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("Failed to read the bound address")
    }

    /// This server's cache of authenticated keys. Another `Db` on the same database (as
    /// tests hold) drops it at once with every change it makes when told of it
    /// (`Db::on_access_changed`).
    pub fn key_cache(&self) -> std::sync::Arc<crate::accounts::access::KeyCache> {
        std::sync::Arc::clone(&self.state.key_cache)
    }

    /// The address of the separate metrics listener, if there is one.
    pub fn metrics_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        self.metrics
            .as_ref()
            .map(|(listener, _)| listener.local_addr())
            .transpose()
            .context("Failed to read the bound metrics address")
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish within the
    /// shutdown grace period and closes what is left.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(listen = %self.local_addr()?, "Steward is listening on {}", self.local_addr()?);
        tracing::info!(
            "The portal is at http://{}/ (the API under /v2)",
            self.local_addr()?
        );
        // One signal stops both listeners and the background workers.
        let (stop, _) = tokio::sync::watch::channel(false);
        let workers = [
            tokio::spawn(crate::reports::jobs::run_worker(
                self.state.db.clone(),
                std::sync::Arc::clone(&self.state.clock),
                std::sync::Arc::clone(&self.state.reports_wake),
                stop.subscribe(),
            )),
            tokio::spawn(crate::invoices::run_worker(
                self.state.db.clone(),
                std::sync::Arc::clone(&self.state.clock),
                stop.subscribe(),
            )),
            tokio::spawn(crate::accounts::access::watch(
                self.state.db.clone(),
                std::sync::Arc::clone(&self.state.key_cache),
                stop.subscribe(),
            )),
            tokio::spawn(crate::admission::run_sweeper(
                self.state.db.clone(),
                std::sync::Arc::clone(&self.state.clock),
                stop.subscribe(),
            )),
            tokio::spawn(crate::usage::rollups::run_closer(
                self.state.db.clone(),
                std::sync::Arc::clone(&self.state.clock),
                stop.subscribe(),
            )),
        ];
        let payments = crate::payments::tasks::spawn(self.state.payments.clone(), stop.subscribe());
        let metrics = self.metrics.map(|(listener, router)| {
            let proxies = std::sync::Arc::clone(&self.proxies);
            let mut stopped = stop.subscribe();
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            tokio::spawn(serve::serve(
                listener,
                router,
                self.limits,
                proxies,
                shutdown,
            ))
        });
        let shutdown = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        serve::serve(
            self.listener,
            self.router,
            self.limits,
            self.proxies,
            shutdown,
        )
        .await;
        if let Some(metrics) = metrics {
            // A panic in the metrics loop is no reason to skip closing the database.
            let _ = metrics.await;
        }
        // Work cut short is taken up again (a report job's lease runs out, then a worker
        // claims it); a worker's failure is logged, not a reason to skip closing.
        crate::payments::tasks::join(payments).await;
        for worker in workers {
            if let Err(error) = worker.await {
                tracing::error!(error = %error, "A background worker failed: {error}");
            }
        }
        self.db.close().await;
        tracing::info!("Steward stopped");
        Ok(())
    }
}
