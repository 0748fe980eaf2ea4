//! The database: one set of portable migrations, SQLite or PostgreSQL chosen by URL scheme.
//!
//! All SQL goes through sqlx's `Any` driver with `$N` placeholders, so the same text runs on
//! both engines. SQLite allows one writer at a time; rather than let concurrent writers
//! collide (`SQLITE_BUSY`), Steward gives SQLite a write pool of exactly one connection and
//! a separate read pool. PostgreSQL uses one pool for both.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::config::DatabaseUrl;

pub mod bulk;
pub mod copy;
mod group;

pub use group::{GroupCounts, replicate};

/// Connections in the PostgreSQL pool: enough to keep both cores busy while some wait on I/O.
pub const POSTGRES_POOL_SIZE_MAX: u32 = 16;

/// Readers in the SQLite read pool (WAL lets readers run beside the writer).
pub const SQLITE_READ_POOL_SIZE_MAX: u32 = 4;

/// How long a request waits for a pooled connection before failing.
pub const ACQUIRE_TIMEOUT_MS: u64 = 10_000;

/// How long SQLite waits on a lock held by another process (the CLI beside a server).
const SQLITE_BUSY_TIMEOUT_MS: u64 = 10_000;

/// Page cache of the one writing connection, in KiB. SQLite's default (2 MiB) is smaller
/// than what one ingestion batch dirties across the records' and rollups' indexes: the
/// writer then spilled pages to the log mid-transaction and read them back from the file
/// system in the next one (a fifth of the writer's time in a profile of ingestion).
const SQLITE_WRITE_CACHE_KIB: u32 = 65_536;

/// Page cache of each reading connection, in KiB.
const SQLITE_READ_CACHE_KIB: u32 = 16_384;

/// Size the WAL file is cut back to once a checkpoint has emptied it. A long reader (a
/// report, verify-ledger) keeps checkpoints from emptying the WAL, so it grows while
/// ingestion goes on (2.4 GB in 30 s during a benchmark); without a limit the file keeps
/// its peak size for ever.
const SQLITE_WAL_KEPT_BYTES: u64 = 64 * 1024 * 1024;

/// Which engine is behind the pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Handles to the database: `write` for transactions that change data, `read` for queries.
#[derive(Debug, Clone)]
pub struct Db {
    /// Pool for writes (a single connection on SQLite).
    pub write: AnyPool,
    /// Pool for reads.
    pub read: AnyPool,
    /// The engine.
    pub backend: Backend,
    /// What this process must forget once it has committed a change to access (see
    /// [`Db::on_access_changed`]).
    access_observer: Option<Arc<dyn AccessObserver>>,
    /// SQLite's queue of writes that share a transaction (see [`Db::write_grouped`]).
    group: Arc<group::GroupCommit>,
    /// Where a native PostgreSQL connection connects, for bulk reads ([`bulk`]); `None` on
    /// SQLite. Shared, as the handle is cloned often and the options hold several strings.
    postgres_options: Option<Arc<sqlx::postgres::PgConnectOptions>>,
}

/// Something in this process that holds what a change to access (a key, an account's
/// status) makes stale, told of each such change its own process commits.
pub trait AccessObserver: Send + Sync + std::fmt::Debug {
    /// A change to access has just committed.
    fn access_changed(&self);
}

/// How a SQLite write transaction begins (see [`Db::begin_write`]).
const SQLITE_BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Marks the start of lines one engine runs alone, in a migration file.
const ENGINE_MARKER: &str = "-- engine: ";

/// A migration's SQL as `backend` runs it: lines after `-- engine: sqlite` or
/// `-- engine: postgres` are kept only for that engine, up to the next marker (`-- engine:
/// all` returns to lines both run). Portable SQL is the rule; this is for what has no
/// portable form (FTS5 tables, PostgreSQL extensions).
fn for_engine(sql: &str, backend: Backend) -> String {
    let mine = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let mut keep = true;
    let mut out = String::with_capacity(sql.len());
    for line in sql.split_inclusive('\n') {
        if let Some(engine) = line.trim_end().strip_prefix(ENGINE_MARKER) {
            keep = engine == "all" || engine == mine;
            continue;
        }
        if keep {
            out.push_str(line);
        }
    }
    out
}

/// The migrations, each as this engine runs it.
#[derive(Debug)]
struct EngineMigrations(Vec<sqlx::migrate::Migration>);

impl sqlx::migrate::MigrationSource<'static> for EngineMigrations {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async move { Ok(self.0) })
    }
}

/// The migrator for `backend`. Each migration keeps the checksum of its whole file, so a
/// database records the same checksums whichever engine it is on.
async fn migrator(backend: Backend) -> anyhow::Result<sqlx::migrate::Migrator> {
    let migrations = MIGRATOR
        .iter()
        .map(|migration| {
            let mut migration = migration.clone();
            if migration.sql.contains(ENGINE_MARKER) {
                migration.sql = for_engine(&migration.sql, backend).into();
            }
            migration
        })
        .collect();
    Ok(sqlx::migrate::Migrator::new(EngineMigrations(migrations)).await?)
}

impl Db {
    /// Opens the pools and applies pending migrations.
    pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let db = if url.is_postgres() {
            let pool = pool_options(POSTGRES_POOL_SIZE_MAX)
                .connect(url.expose())
                .await
                .with_context(|| format!("Failed to connect to {url}"))?;
            Db {
                write: pool.clone(),
                read: pool,
                backend: Backend::Postgres,
                access_observer: None,
                group: Arc::default(),
                postgres_options: Some(Arc::new(
                    url.expose()
                        .parse()
                        .with_context(|| format!("Failed to parse {url}"))?,
                )),
            }
        } else {
            let url = sqlite_url(url)?;
            let options: AnyConnectOptions =
                url.parse().context("Failed to parse the SQLite URL")?;
            let write = sqlite_pool_options(1, SQLITE_WRITE_CACHE_KIB)
                .connect_with(options.clone())
                .await
                .context("Failed to open the SQLite database")?;
            let read = sqlite_pool_options(SQLITE_READ_POOL_SIZE_MAX, SQLITE_READ_CACHE_KIB)
                .connect_with(options)
                .await
                .context("Failed to open the SQLite database for reading")?;
            Db {
                write,
                read,
                backend: Backend::Sqlite,
                access_observer: None,
                group: Arc::default(),
                postgres_options: None,
            }
        };
        migrator(db.backend)
            .await?
            .run(&db.write)
            .await
            .context("Failed to apply database migrations")?;
        Ok(db)
    }

    /// The same pools, telling `observer` of every change to access committed through this
    /// handle or its clones (a server's cache of authenticated keys, which must be dropped
    /// at once; see `accounts::access::commit`). A handle without one tells nobody.
    pub fn on_access_changed(self, observer: Arc<dyn AccessObserver>) -> Self {
        Self {
            access_observer: Some(observer),
            ..self
        }
    }

    /// Tells this handle's observer that a change to access has just committed.
    pub fn access_changed(&self) {
        if let Some(observer) = &self.access_observer {
            observer.access_changed();
        }
    }

    /// Begins a transaction that changes data, on the write pool. On SQLite it takes the
    /// database's write lock at once (`BEGIN IMMEDIATE`): a deferred transaction that reads
    /// first pins a snapshot, and its first write then fails at once with `SQLITE_BUSY` if
    /// another process (a CLI verb beside the server) committed meanwhile, whereas a writer
    /// that finds the lock taken waits for it (`busy_timeout`). PostgreSQL locks rows as a
    /// transaction goes.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.write.begin_with(SQLITE_BEGIN_WRITE).await,
            #[expect(
                clippy::disallowed_methods,
                reason = "the one place a write transaction begins as a pool begins it"
            )]
            Backend::Postgres => self.write.begin().await,
        }
    }

    /// What [`Db::write_grouped`]'s shared transactions have held so far (nothing on
    /// PostgreSQL, where writes are not grouped).
    pub fn group_commits(&self) -> GroupCounts {
        self.group.counts()
    }

    /// Runs `work` in a write transaction and returns its output once committed. On SQLite,
    /// writes that arrive while another commits share one transaction (group commit), each
    /// in a savepoint of its own, so a failing write changes nothing and fails alone; on
    /// PostgreSQL each is its own transaction. For frequent writes whose cost is mostly the
    /// commit (ingestion).
    pub async fn write_grouped<T, F>(&self, work: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut sqlx::AnyConnection,
            )
                -> futures_util::future::BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        match self.backend {
            Backend::Sqlite => self.group.write(&self.write, work).await,
            Backend::Postgres => {
                let mut tx = self.begin_write().await?;
                let output = work(&mut tx).await?;
                tx.commit().await?;
                Ok(output)
            }
        }
    }

    /// Closes every connection (graceful shutdown).
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

fn pool_options(size_max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(size_max)
        .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
        // By default every connection leaving the pool is checked with a round trip (on
        // SQLite a hop to the connection's thread and back, on PostgreSQL a message to the
        // server), which on the hot paths doubled what a one-query request cost. Only a
        // connection idle for a while is checked now; one that breaks while in use fails
        // its statement and is replaced.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < Duration::from_millis(IDLE_CHECK_AFTER_MS) {
                    return Ok(true);
                }
                Ok(sqlx::Connection::ping(conn).await.is_ok())
            })
        })
}

/// A pooled connection idle at least this long is checked before it is used again.
const IDLE_CHECK_AFTER_MS: u64 = 1_000;

fn sqlite_pool_options(size_max: u32, cache_kib: u32) -> AnyPoolOptions {
    pool_options(size_max).after_connect(move |conn, _meta| {
        Box::pin(async move {
            // WAL lets readers run beside the writer; synchronous=FULL makes every commit
            // durable before it is acknowledged (money must survive a power cut). Statement
            // journals (kept so that one failing statement of a transaction can be undone
            // alone) stay in memory: they only ever live inside a transaction.
            let pragmas = format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; \
                 PRAGMA cache_size = -{cache_kib}; PRAGMA temp_store = MEMORY; \
                 PRAGMA journal_size_limit = {SQLITE_WAL_KEPT_BYTES};"
            );
            conn.execute(sqlx::raw_sql(&pragmas)).await?;
            // FTS5 reads its configuration the first time a connection uses its table, even
            // while preparing a statement. Inside a write transaction (an INSERT whose trigger
            // keeps the accounts' trigram index) that read pins a snapshot, and the write then
            // fails at once with SQLITE_BUSY if another process committed meanwhile. So the
            // table is opened here, outside any transaction (once migration 0015 made it).
            let search: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'account_search'",
            )
            .fetch_optional(&mut *conn)
            .await?;
            if search.is_some() {
                conn.execute("SELECT rowid FROM account_search WHERE rowid = 0")
                    .await?;
            }
            Ok(())
        })
    })
}

/// Makes a SQLite URL creatable (`mode=rwc`) and creates its folder.
fn sqlite_url(url: &DatabaseUrl) -> anyhow::Result<String> {
    let raw = url.expose();
    let path = raw
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    let parent = std::path::Path::new(path).parent();
    if let Some(parent) = parent.filter(|p| path != ":memory:" && !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("Failed to create the folder {}", parent.display()))?;
    }
    Ok(if raw.contains("mode=") {
        raw.to_owned()
    } else if raw.contains('?') {
        format!("{raw}&mode=rwc")
    } else {
        format!("{raw}?mode=rwc")
    })
}

/// True when `error` is a violation of a unique constraint whose name or message mentions
/// `needle` (PostgreSQL names the constraint; SQLite names the columns).
pub fn is_unique_violation(error: &sqlx::Error, needle: &str) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                && (db.constraint().is_some_and(|c| c.contains(needle))
                    || db.message().contains(needle))
        }
        _ => false,
    }
}

/// `BEGIN` for a read-only transaction that reads one snapshot from its first statement to
/// its end, on this connection's engine: PostgreSQL's default isolation takes a snapshot per
/// statement; SQLite's WAL readers hold one from their first read.
pub fn snapshot_begin(conn: &sqlx::AnyConnection) -> &'static str {
    if conn.backend_name() == "SQLite" {
        "BEGIN"
    } else {
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    }
}

/// Converts a count or limit read from the database into `u64`, treating negatives as 0.
pub fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Rows per multi-row `INSERT` on this connection's engine. sqlx's SQLite driver slows down
/// sharply as one statement's bound parameters grow (measured: 500 rows × 15 values ran at
/// 7,000 rows/s, 10–20 rows at 80,000+), so SQLite gets small statements; PostgreSQL does
/// best with large ones, up to its 65,535-parameter limit.
pub fn insert_chunk_rows(conn: &sqlx::AnyConnection, columns: usize) -> usize {
    /// Bound parameters per statement that SQLite handles fastest through sqlx.
    const SQLITE_PARAMETERS_BEST: usize = 240;
    /// Bound parameters per statement on PostgreSQL (well under its 65,535 limit).
    const POSTGRES_PARAMETERS_MAX: usize = 15_000;
    let budget = if conn.backend_name() == "SQLite" {
        SQLITE_PARAMETERS_BEST
    } else {
        POSTGRES_PARAMETERS_MAX
    };
    (budget / columns.max(1)).max(1)
}

/// `$first, $first+1, …`: `count` numbered parameters, for an `IN (…)` list. A short list
/// of keys goes better this way than as JSON rows: PostgreSQL's planner then knows how many
/// keys there are, where it takes a JSON function for 100 rows and may scan a whole table
/// to join them.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The SQL type of one column of rows passed as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonColumn {
    /// Text (JSON string or null).
    Text,
    /// 64-bit integer (JSON integer or null).
    BigInt,
}

/// A `SELECT` that yields the rows of a JSON array of arrays bound as parameter `$param`,
/// one typed column per array position, in array order.
///
/// Large batches go to the database as one JSON text parameter instead of thousands of
/// bound values: one statement per batch on either engine, and no per-parameter cost in
/// the driver. This is the one place where the SQL differs by engine (JSON functions).
pub fn json_rows_select(
    conn: &sqlx::AnyConnection,
    param: usize,
    columns: &[JsonColumn],
) -> String {
    let sqlite = conn.backend_name() == "SQLite";
    let fields: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| match (sqlite, column) {
            (true, _) => format!("json_extract(value, '$[{i}]')"),
            (false, JsonColumn::Text) => format!("(value ->> {i})"),
            (false, JsonColumn::BigInt) => format!("CAST(value ->> {i} AS BIGINT)"),
        })
        .collect();
    let source = if sqlite {
        format!("json_each(${param})")
    } else {
        format!("jsonb_array_elements(CAST(${param} AS JSONB)) AS rows (value)")
    };
    // `WHERE true` lets SQLite parse an upsert after INSERT … SELECT.
    format!("SELECT {} FROM {source} WHERE true", fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_sqlite_connection_sets_the_size_the_wal_is_cut_back_to() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite://{}/wal.db", dir.path().display());
        let db = Db::connect(&DatabaseUrl::parse(&url).expect("url"))
            .await
            .expect("database");
        for pool in [&db.write, &db.read] {
            let limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit")
                .fetch_one(pool)
                .await
                .expect("pragma");
            assert_eq!(u64::try_from(limit).ok(), Some(SQLITE_WAL_KEPT_BYTES));
        }
        db.close().await;
    }

    #[tokio::test]
    async fn a_sqlite_write_transaction_holds_the_write_lock_from_its_start() {
        // Two handles on one file, as a server and a CLI verb beside it are.
        let dir = tempfile::tempdir().expect("temporary folder");
        let url =
            DatabaseUrl::parse(&format!("sqlite://{}/lock.db", dir.path().display())).expect("url");
        let server = Db::connect(&url).await.expect("database");
        let beside = Db::connect(&url).await.expect("second handle");
        sqlx::query("CREATE TABLE t (n BIGINT)")
            .execute(&server.write)
            .await
            .expect("table");
        let mut other = beside.write.acquire().await.expect("connection");
        // Refused at once rather than after the usual wait, to see the lock held.
        sqlx::query("PRAGMA busy_timeout = 0")
            .execute(&mut *other)
            .await
            .expect("pragma");

        let mut tx = server.begin_write().await.expect("begin");
        // A read first pins the transaction's snapshot.
        let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *tx)
            .await
            .expect("read");
        assert_eq!(before, 0);
        // The other process cannot commit in between (deferred, it could, and this
        // transaction's write below would then fail with SQLITE_BUSY).
        let refused = sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *other)
            .await;
        assert!(refused.is_err(), "{refused:?}");
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await
            .expect("the write after the read");
        tx.commit().await.expect("commit");
        // Once it has committed, the other writer gets through.
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *other)
            .await
            .expect("the other write");
        let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&server.read)
            .await
            .expect("count");
        assert_eq!(after, 2);
        drop(other);
        server.close().await;
        beside.close().await;
    }

    #[test]
    fn placeholders_are_numbered_from_the_first() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(placeholders(1, 1), "$1");
    }

    #[test]
    fn engine_sections_run_on_their_engine_only() {
        let sql = "CREATE TABLE t (x BIGINT);\n-- engine: postgres\nCREATE EXTENSION e;\n\
                   -- engine: sqlite\nCREATE VIRTUAL TABLE v USING fts5(x);\n-- engine: all\nSELECT 1;\n";
        assert_eq!(
            for_engine(sql, Backend::Sqlite),
            "CREATE TABLE t (x BIGINT);\nCREATE VIRTUAL TABLE v USING fts5(x);\nSELECT 1;\n"
        );
        assert_eq!(
            for_engine(sql, Backend::Postgres),
            "CREATE TABLE t (x BIGINT);\nCREATE EXTENSION e;\nSELECT 1;\n"
        );
        assert_eq!(for_engine("SELECT 1;", Backend::Postgres), "SELECT 1;");
    }
}
