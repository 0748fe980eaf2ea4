//! The HTTP edge: one route table (which also feeds the OpenAPI document), middleware, and
//! the application's build/run steps.

pub mod account;
pub mod admin;
pub mod api_keys;
pub mod audit_events;
pub mod channels;
pub mod detail_records;
pub mod error;
pub mod extract;
pub mod health;
pub mod managed_accounts;
pub mod payment_methods;
pub mod payments;
pub mod pricing;
pub mod sandbox;
pub mod scope;
pub mod usage;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
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
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::error::{ApiError, ErrorKind};
use crate::clock::ClockHandle;
use crate::config::Settings;
use crate::db::Db;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The clock.
    pub clock: ClockHandle,
    /// This process's copy of the pricing index.
    pub pricing: std::sync::Arc<crate::pricing::PricingCache>,
    /// Per-request time limit.
    pub request_timeout_ms: u64,
    /// Card payments and their gateway.
    pub payments: crate::payments::Payments,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Steward API",
        description = "Managed accounts, wire-compatible with the Telnyx API v2. \
            Pricing changes (managed_account_allow_custom_pricing) take effect for usage rated after \
            the change; usage already charged is never re-rated.",
    ),
    modifiers(&BearerAuth),
    components(schemas(error::ErrorEnvelope))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Documents the errors any operation can answer, in the one envelope, so that the document
/// lists every status the server can send: 400 (unparsable request), 401 (for operations that
/// take a key), 422 (a value refused), 500 (a failure of ours).
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let envelope = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| envelope(description).into());
                };
                add("400", "The request could not be parsed");
                if secured {
                    add("401", "No valid key");
                }
                add("422", "A value was refused");
                add("500", "An unexpected error (logged)");
            }
        }
    }
}

/// The route table. Every route is listed here and nowhere else.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::livez))
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
    utoipa::Modify::modify(&CommonErrors, &mut document);
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
    router
        .route(
            "/v2/openapi.json",
            axum::routing::get(move || {
                let document = std::sync::Arc::clone(&document);
                async move { Json(document.as_ref().clone()) }
            }),
        )
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
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                ApiError::internal(anyhow::anyhow!("a request handler panicked")).into_response()
            },
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "No such route.")
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
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorKind::Timeout,
            "The request took longer than the server allows and was stopped; work not yet committed was rolled back.",
        )
        .into_response(),
    }
}

/// A bound listener and everything needed to serve it.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    db: Db,
    payments: crate::payments::Payments,
}

impl Application {
    /// Connects the database (applying migrations) and binds the listener, so that the
    /// real port is known before serving (tests bind port 0).
    pub async fn build(settings: &Settings, clock: ClockHandle) -> anyhow::Result<Self> {
        let db = Db::connect(&settings.database_url).await?;
        crate::accounts::upgrade_stored_emails(&db, &clock).await?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", settings.listen))?;
        let payments =
            crate::payments::Payments::new(db.clone(), clock.clone(), settings.payments.clone());
        payments.announce();
        let state = AppState {
            db: db.clone(),
            clock,
            pricing: std::sync::Arc::default(),
            request_timeout_ms: settings.request_timeout_ms,
            payments: payments.clone(),
        };
        Ok(Self {
            listener,
            router: router(state, settings.body_limit_bytes),
            db,
            payments,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("Failed to read the bound address")
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(listen = %self.local_addr()?, "Steward is listening on {}", self.local_addr()?);
        // Payments' background work stops with the same signal.
        let (stop_tasks, tasks_stopped) = tokio::sync::watch::channel(false);
        let tasks = crate::payments::tasks::spawn(self.payments, tasks_stopped);
        let shutdown = async move {
            shutdown.await;
            let _ = stop_tasks.send(true);
        };
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("Failed to serve HTTP")?;
        crate::payments::tasks::join(tasks).await;
        self.db.close().await;
        tracing::info!("Steward stopped");
        Ok(())
    }
}
