//! Typed configuration, built once at start-up and handed to the application.
//!
//! Precedence: built-in defaults, then `STEWARD_*` environment variables, then CLI flags
//! (clap applies the last two). Nothing below `main` reads the environment.

use std::fmt;
use std::net::SocketAddr;

/// Default listen address (DESIGN.md).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Default database: an embedded SQLite file under `./steward-data/` (DESIGN.md).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://steward-data/steward.db";

/// Requests that run longer are cut off with a 408: a stuck request must not hold a
/// database connection forever.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;

/// Largest accepted request body. The biggest legitimate body is a usage batch of 10,000
/// events (~2 MB); anything beyond 4 MiB is refused before it is read.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 4 * 1024 * 1024;

/// How long a client has to send a complete request head (request line and headers),
/// counted from the connection's opening or the first byte of the head. A head is a few
/// hundred bytes; 10 s is generous for a slow mobile link and short enough that clients
/// which trickle bytes (or send nothing) cannot hold connections for long.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;

/// How long an idle keep-alive connection stays open between requests. Longer than the
/// 60 s idle timeout of common load balancers, so that the balancer, not Steward, closes an
/// idle connection (the other way round a balancer may send a request on a connection
/// Steward is closing).
pub const DEFAULT_KEEP_ALIVE_TIMEOUT_MS: u64 = 75_000;

/// After a shutdown signal, how long requests in flight may run before their connections
/// are closed. Under the 30 s that process supervisors commonly wait before `SIGKILL`,
/// leaving time to close the database pools.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 25_000;

/// A database URL whose `Debug`/`Display` never show a password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL; checks only that the scheme is one Steward speaks.
    pub fn parse(url: &str) -> Result<Self, String> {
        let known = ["sqlite:", "postgres:", "postgresql:"];
        if known.iter().any(|scheme| url.starts_with(scheme)) {
            Ok(Self(url.to_owned()))
        } else {
            Err("STEWARD_DATABASE_URL must start with sqlite: or postgres:".to_owned())
        }
    }

    /// The full URL, secrets included: only for opening connections.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for PostgreSQL URLs.
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres")
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hide everything between the scheme and the host: user names and passwords.
        match (self.0.split_once("://"), self.0.rfind('@')) {
            (Some((scheme, _)), Some(at)) => {
                let host = self.0.get(at + 1..).unwrap_or_default();
                write!(f, "{scheme}://[redacted]@{host}")
            }
            _ => f.write_str(&self.0),
        }
    }
}

/// Settings of `steward serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Where the data lives.
    pub database_url: DatabaseUrl,
    /// Per-request time limit.
    pub request_timeout_ms: u64,
    /// Per-request body size limit.
    pub body_limit_bytes: usize,
    /// Time allowed to send a request head.
    pub header_read_timeout_ms: u64,
    /// Time an idle keep-alive connection stays open.
    pub keep_alive_timeout_ms: u64,
    /// Time requests in flight get to finish after a shutdown signal.
    pub shutdown_grace_ms: u64,
    /// A second address serving only `GET /metrics`, without a key (a private interface).
    pub metrics_listen: Option<SocketAddr>,
    /// API keys kept authenticated in memory (0: every request reads its key).
    pub auth_cache_entries: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client (none: the header is ignored).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Payment gateway and background payment work.
    pub payments: crate::payments::PaymentsConfig,
}

impl Settings {
    /// Settings with every default except the listen address and the database.
    pub fn new(listen: SocketAddr, database_url: DatabaseUrl) -> Self {
        Self {
            listen,
            database_url,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            body_limit_bytes: DEFAULT_BODY_LIMIT_BYTES,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            keep_alive_timeout_ms: DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            metrics_listen: None,
            auth_cache_entries: crate::accounts::access::DEFAULT_CACHE_ENTRIES,
            trusted_proxies: Vec::new(),
            payments: crate::payments::PaymentsConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        assert!(DEFAULT_LISTEN.parse::<SocketAddr>().is_ok());
        assert!(DatabaseUrl::parse(DEFAULT_DATABASE_URL).is_ok());
    }

    #[test]
    fn database_url_hides_credentials() {
        let url = DatabaseUrl::parse("postgres://steward:hunter2@db:5432/steward").unwrap();
        assert_eq!(format!("{url:?}"), "postgres://[redacted]@db:5432/steward");
        assert!(DatabaseUrl::parse("mysql://x").is_err());
    }
}
