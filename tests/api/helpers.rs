//! A real Steward per test: fresh database, real HTTP on an ephemeral port.
//!
//! The backend comes from `STEWARD_TEST_BACKEND` (`sqlite`, the default, or `postgres`).
//! On PostgreSQL each test gets its own schema in the database named by
//! `STEWARD_TEST_DATABASE_URL`.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward::accounts::{self, AccountId, Email, NewAccount, OrganizationName};
use steward::clock::{ClockHandle, ManualClock};
use steward::config::{DatabaseUrl, Settings};
use steward::db::Db;
use steward::http::Application;

/// An account seeded for a test, with a working API key.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub email: String,
    pub key: String,
}

pub struct TestApp {
    pub address: String,
    /// The separate metrics listener (`http://…`), when the settings asked for one.
    pub metrics_address: Option<String>,
    pub client: reqwest::Client,
    pub db: Db,
    /// The server's cache of authenticated keys (which `db` drops with each change).
    pub key_cache: Arc<steward::accounts::access::KeyCache>,
    pub clock: ManualClock,
    pub database_url: String,
    /// An approved manager with a pool of 10 channels.
    pub manager: Actor,
    /// A second, unrelated approved manager.
    pub other_manager: Actor,
    /// A standard (not approved) account.
    pub standard: Actor,
    /// Key of the operator API.
    pub operator_key: String,
    /// Key of a network element (ingest, admission).
    pub ingest_key: String,
    _dir: tempfile::TempDir,
}

/// The JSON and status of a response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The first error object, asserting there is one.
    pub fn error(&self) -> &Value {
        &self.body["errors"][0]
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// The per-event statuses of an ingestion reply, in request order.
    pub fn statuses(&self) -> Vec<&str> {
        self.body["data"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .map(|r| r["status"].as_str().unwrap_or("?"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts an error with this status, code and blamed pointer (or parameter).
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str, source: Option<(&str, &str)>) {
        self.assert_status(status);
        let error = self.error();
        assert_eq!(error["code"], code, "body: {}", self.body);
        assert!(error["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(error["detail"].as_str().is_some_and(|t| !t.is_empty()));
        if let Some((kind, value)) = source {
            assert_eq!(error["source"][kind], value, "body: {}", self.body);
        }
    }
}

/// The operator, as tests record it in the audit trail.
pub fn operator() -> steward::audit::Actor {
    steward::audit::Actor::Operator("operator:test".to_owned())
}

pub fn backend_is_postgres() -> bool {
    std::env::var("STEWARD_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// A fresh, empty database on the engine asked for: a file in `dir`, or a new schema of
/// the test PostgreSQL.
pub async fn fresh_database_url(dir: &tempfile::TempDir, postgres: bool) -> String {
    if !postgres {
        return format!("sqlite://{}/steward.db", dir.path().display());
    }
    let base = std::env::var("STEWARD_TEST_DATABASE_URL")
        .expect("STEWARD_TEST_BACKEND=postgres needs STEWARD_TEST_DATABASE_URL");
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&base)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create the test schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// Payments as tests run them: no sandbox latency and no background work (tests run each
/// unit of it themselves), a short slow card.
pub fn test_payments_config() -> steward::payments::PaymentsConfig {
    steward::payments::PaymentsConfig {
        sandbox_latency_ms: 0,
        sandbox_slow_charge_ms: 200,
        tasks_interval_ms: 0,
        ..Default::default()
    }
}

/// The settings of a test server: port 0, a 64 KiB body limit, test payments, defaults
/// otherwise.
pub fn test_settings(database_url: &str) -> Settings {
    Settings {
        body_limit_bytes: 64 * 1024,
        payments: test_payments_config(),
        ..Settings::new(
            "127.0.0.1:0".parse().unwrap(),
            DatabaseUrl::parse(database_url).unwrap(),
        )
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(backend_is_postgres(), configure).await
}

/// A test server on the engine asked for, whatever the run's backend.
pub async fn spawn_app_on(postgres: bool, configure: impl FnOnce(&mut Settings)) -> TestApp {
    // Logs only when asked for (RUST_LOG=info cargo test …): they drown test output.
    if std::env::var_os("RUST_LOG").is_some() {
        steward::telemetry::init(false);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = fresh_database_url(&dir, postgres).await;
    let mut settings = test_settings(&database_url);
    configure(&mut settings);
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap());
    let handle: ClockHandle = Arc::new(clock.clone());
    let app = Application::build(&settings, Arc::clone(&handle))
        .await
        .expect("build app");
    let address = format!("http://{}", app.local_addr().unwrap());
    let metrics_address = app
        .metrics_addr()
        .unwrap()
        .map(|addr| format!("http://{addr}"));
    // What the test changes through this handle, the server changed itself: its cache of
    // authenticated keys is dropped at once, as it would be for a change served over HTTP.
    let key_cache = app.key_cache();
    let db = Db::connect(&settings.database_url)
        .await
        .expect("second db handle")
        .on_access_changed(key_cache.clone());
    tokio::spawn(app.run_until(std::future::pending()));
    let seed = |email: &str, name: &str, manager: bool, channels: i64| {
        let db = db.clone();
        let handle = Arc::clone(&handle);
        let (email, name) = (email.to_owned(), name.to_owned());
        async move {
            let new = NewAccount {
                email: Email::parse(&email).unwrap(),
                organization_name: OrganizationName::parse(&name).unwrap(),
                manager,
                max_managed_accounts: None,
                allocatable_channels: Some(channels),
                password: None,
            };
            let (account, key) = accounts::create_account(&db, &handle, new, &operator())
                .await
                .unwrap();
            Actor {
                id: account.id.to_string(),
                email: account.email,
                key: key.secret().to_owned(),
            }
        }
    };
    let manager = seed("Manager@Reseller.example", "Reseller One", true, 10).await;
    let other_manager = seed("boss@other.example", "Other Reseller", true, 10).await;
    let standard = seed("solo@standard.example", "Standalone", false, 0).await;
    let operator_key =
        steward::keys::service::mint(&db, &handle, steward::keys::service::ServiceKind::Operator)
            .await
            .unwrap()
            .secret()
            .to_owned();
    let ingest_key =
        steward::keys::service::mint(&db, &handle, steward::keys::service::ServiceKind::Ingest)
            .await
            .unwrap()
            .secret()
            .to_owned();
    TestApp {
        operator_key,
        ingest_key,
        address,
        metrics_address,
        client: reqwest::Client::new(),
        db,
        key_cache,
        clock,
        database_url,
        manager,
        other_manager,
        standard,
        _dir: dir,
    }
}

impl TestApp {
    /// Sends a request; `body` of `None` sends no body at all.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::read(request.send().await.expect("request sent")).await
    }

    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        Reply {
            status,
            body,
            headers,
        }
    }

    /// Sends raw bytes as the body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let response = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        Self::read(response).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.request(Method::GET, path, Some(key), None).await
    }

    pub async fn create_managed(&self, key: &str, body: Value) -> Reply {
        self.request(Method::POST, "/v2/managed_accounts", Some(key), Some(body))
            .await
    }

    /// Creates a managed account of `manager` and returns it as an actor.
    pub async fn managed_of(&self, manager: &Actor, business_name: &str, extra: Value) -> Actor {
        let mut body = json!({ "business_name": business_name });
        if let (Some(target), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            target.extend(extra.clone());
        }
        let reply = self.create_managed(&manager.key, body).await;
        reply.assert_status(200);
        let data = &reply.body["data"];
        Actor {
            id: data["id"].as_str().unwrap().to_owned(),
            email: data["email"].as_str().unwrap().to_owned(),
            key: data["api_key"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Reply {
        self.request(Method::PATCH, path, Some(key), Some(body))
            .await
    }

    pub async fn post(&self, path: &str, key: &str, body: Option<Value>) -> Reply {
        self.request(Method::POST, path, Some(key), body).await
    }

    /// Runs an operator action as the CLI would.
    pub async fn cancel_account(&self, id: &str, include_managed: bool) {
        let id = AccountId::parse(id).unwrap();
        let clock: ClockHandle = Arc::new(self.clock.clone());
        accounts::operator::cancel_account(
            &self.db,
            &clock,
            id,
            include_managed,
            false,
            &operator(),
        )
        .await
        .unwrap();
    }
}

/// A price list: US voice 0.01/min 60/60, catch-all voice 0.05/min 1/1, SMS 0.004/part,
/// rental 1.00/month.
pub const BASE_PRICES: &str = "product,prefix,rate,initial_increment_s,subsequent_increment_s
voice_outbound,1,0.0100,60,60
voice_outbound,,0.05,1,1
voice_inbound,,0.002,6,6
sms_outbound,,0.004,,
mms_outbound,,0.02,,
number_rental,,1.00,,
";

impl TestApp {
    /// Runs `sql` (binding `args` in order) on the test database, behind the service's back:
    /// how tests damage the ledger that verification must catch.
    pub async fn tamper(&self, sql: &str, args: &[&str]) {
        let mut query = sqlx::query(sql);
        for arg in args {
            query = query.bind(*arg);
        }
        query.execute(&self.db.write).await.unwrap();
    }

    /// Imports a price list through the operator API; `query` like `platform_default=true`.
    pub async fn import_prices(&self, csv: &str, query: &str) -> Reply {
        let response = self
            .client
            .post(format!(
                "{}/admin/v1/price_lists?name=test&{query}",
                self.address
            ))
            .bearer_auth(&self.operator_key)
            .header("content-type", "text/csv")
            .body(csv.to_owned())
            .send()
            .await
            .expect("request sent");
        Self::read(response).await
    }

    /// Posts usage events with the ingest key.
    pub async fn ingest(&self, events: Value) -> Reply {
        self.request(
            Method::POST,
            "/v2/usage_events",
            Some(&self.ingest_key),
            Some(json!({ "events": events })),
        )
        .await
    }

    /// Asks for admission with the ingest key.
    /// The manager sets a managed account's channel limit (must succeed).
    pub async fn set_channel_limit(&self, manager_key: &str, account: &str, limit: u32) {
        self.patch(
            &format!("/v2/managed_accounts/{account}/update_global_channel_limit"),
            manager_key,
            json!({"channel_limit": limit}),
        )
        .await
        .assert_status(200);
    }

    pub async fn admit(&self, account: &str, product: &str) -> Reply {
        self.request(
            Method::POST,
            "/v2/admissions",
            Some(&self.ingest_key),
            Some(json!({"account_id": account, "product": product, "destination": "+14155550100"})),
        )
        .await
    }

    /// An operator API call with an idempotency key.
    pub async fn operator_post(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        body: Value,
    ) -> Reply {
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(&self.operator_key)
            .json(&body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        Self::read(request.send().await.expect("request sent")).await
    }

    /// The `balance` figure an account's key sees.
    pub async fn balance_of(&self, key: &str) -> String {
        let reply = self.get("/v2/balance", key).await;
        reply.assert_status(200);
        reply.body["data"]["balance"].as_str().unwrap().to_owned()
    }

    /// Checks every ledger invariant.
    pub async fn assert_ledger_clean(&self) {
        let verdict = steward::ledger::verify(&self.db).await.unwrap();
        assert!(verdict.is_ok(), "ledger violation: {verdict:?}");
    }
}

/// A usage event occurring shortly after the test clock's start.
pub fn event(id: &str, account: &str, product: &str, destination: &str, quantity: i64) -> Value {
    json!({"id": id, "account_id": account, "product": product, "destination": destination,
           "quantity": quantity, "occurred_at": "2026-01-01T12:00:30Z"})
}

impl TestApp {
    /// A manager with no channel pool (the feature off).
    pub async fn standard_manager(&self) -> Actor {
        self.manager_with_email("nopool@reseller.example").await
    }

    /// A manager with no channel pool, signing in as `email`.
    pub async fn manager_with_email(&self, email: &str) -> Actor {
        let clock: ClockHandle = Arc::new(self.clock.clone());
        let new = NewAccount {
            email: Email::parse(email).unwrap(),
            organization_name: OrganizationName::parse("No Pool").unwrap(),
            manager: true,
            max_managed_accounts: None,
            allocatable_channels: None,
            password: None,
        };
        let (account, key) = accounts::create_account(&self.db, &clock, new, &operator())
            .await
            .unwrap();
        Actor {
            id: account.id.to_string(),
            email: account.email,
            key: key.secret().to_owned(),
        }
    }
}

impl TestApp {
    /// Starts a second server on the same database (another process behind a load
    /// balancer, as far as the database can tell) and returns its base address.
    pub async fn second_server(&self) -> String {
        self.second_server_and_cache().await.0
    }

    /// Like [`TestApp::second_server`], with the second server's cache of authenticated
    /// keys (to see what it holds).
    pub async fn second_server_and_cache(
        &self,
    ) -> (String, Arc<steward::accounts::access::KeyCache>) {
        let settings = test_settings(&self.database_url);
        let clock: ClockHandle = Arc::new(self.clock.clone());
        let app = Application::build(&settings, clock)
            .await
            .expect("build second app");
        let address = format!("http://{}", app.local_addr().unwrap());
        let cache = app.key_cache();
        tokio::spawn(app.run_until(std::future::pending()));
        (address, cache)
    }
}
