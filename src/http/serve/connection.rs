//! One connection: hyper's HTTP/1 state machine, the router as its service, and a watchdog.
//!
//! hyper's own header-read timer starts as soon as a connection is idle, so it cannot tell
//! an idle keep-alive connection from a slow request head and one duration would have to
//! serve for both. The watchdog keeps the two apart. A connection is in one of three phases:
//!
//! - `Head`: waiting for a complete request head, since the connection opened or since the
//!   first byte after an idle spell; closed when the header-read timeout passes;
//! - `Busy`: a request is in the router; its time is bounded by the per-request time limit
//!   (which covers reading the body), not here;
//! - `Idle`: the last response is done and nothing new has arrived; closed when the
//!   keep-alive timeout passes.
//!
//! During shutdown a connection reading a head is closed at once; hyper's graceful shutdown
//! closes idle ones and lets a `Busy` one finish its request, then close.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

use super::protocol_errors::EnvelopeIo;

/// Largest request head (request line and headers) read, in bytes; a larger one is
/// answered 431. Steward's largest legitimate head is well under 16 KiB (an 8 KiB query
/// string, a key, a few headers); 96 KiB leaves room for headers proxies add and stays
/// above hyper's 64 KiB limit on the URI, so an over-long URI is still answered as such
/// (414).
pub const HEAD_SIZE_MAX_BYTES: usize = 96 * 1024;

/// The time bounds of a connection, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time allowed to send a complete request head.
    pub header_read_timeout_ms: u64,
    /// Time an idle keep-alive connection stays open.
    pub keep_alive_timeout_ms: u64,
    /// Time requests in flight get to finish after a shutdown signal.
    pub shutdown_grace_ms: u64,
}

/// Where a connection stands; see the module documentation.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Head { since: Instant },
    Busy,
    Idle { since: Instant },
}

/// The phase, shared by the IO (bytes arriving), the service (requests) and the watchdog.
/// Changes wake no one: the watchdog looks again at least every [`check_interval`], which
/// keeps the cost per request to a lock and a clock read.
#[derive(Debug)]
pub(super) struct Activity {
    phase: Mutex<Phase>,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
        }
    }

    fn set(&self, next: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        *phase = next(*phase);
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: an idle connection starts reading a head.
    pub(super) fn bytes_read(&self) {
        if matches!(self.phase(), Phase::Idle { .. }) {
            self.set(|phase| match phase {
                Phase::Idle { .. } => Phase::Head {
                    since: Instant::now(),
                },
                other => other,
            });
        }
    }

    /// True while a request is in the router.
    pub(super) fn is_busy(&self) -> bool {
        matches!(self.phase(), Phase::Busy)
    }

    /// When the connection must be closed, if its phase has a bound.
    fn deadline(&self, limits: ConnectionLimits, draining: bool, now: Instant) -> Option<Instant> {
        let after = |since: Instant, ms: u64| since + Duration::from_millis(ms);
        match self.phase() {
            Phase::Busy => None,
            // A partial head is not a request in flight; hyper closes idle connections itself
            // (and an "idle" one may still be writing its last response).
            Phase::Head { .. } if draining => Some(now),
            Phase::Head { since } => Some(after(since, limits.header_read_timeout_ms)),
            Phase::Idle { since } => Some(after(since, limits.keep_alive_timeout_ms)),
        }
    }

    /// Resolves when the connection has outlived its phase's bound (at most
    /// [`check_interval`] late).
    async fn expired(&self, limits: ConnectionLimits, draining: bool) {
        let check = check_interval(limits);
        loop {
            let now = Instant::now();
            match self.deadline(limits, draining, now) {
                Some(deadline) if deadline <= now => return,
                Some(deadline) => tokio::time::sleep_until(deadline.min(now + check)).await,
                None => tokio::time::sleep(check).await,
            }
        }
    }
}

/// How often the watchdog looks at a connection whose phase may have changed: a quarter of
/// the shorter bound, so a bound is overrun by at most a quarter of itself.
fn check_interval(limits: ConnectionLimits) -> Duration {
    let shorter_ms = limits
        .header_read_timeout_ms
        .min(limits.keep_alive_timeout_ms);
    Duration::from_millis((shorter_ms / 4).max(1))
}

/// Marks a request in the router; dropping it (response ready, or request abandoned)
/// makes the connection idle.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.set(|_| Phase::Busy);
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(|_| Phase::Idle {
            since: Instant::now(),
        });
    }
}

/// Serves one connection until the client leaves, a bound passes or shutdown closes it.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    proxies: Arc<super::TrustedProxies>,
    mut stopped: watch::Receiver<bool>,
) {
    // Responses go out in one write each; without this, Nagle's algorithm can hold the
    // last segment of a response back for a delayed ACK. Failure only costs latency.
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(EnvelopeIo::new(stream, Arc::clone(&activity)));
    let service_activity = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let client = proxies.client(peer.ip(), request.headers());
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
        let in_flight = InFlight::start(&service_activity);
        let response = router.clone().oneshot(request.map(axum::body::Body::new));
        async move {
            let response = response.await;
            drop(in_flight);
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        // The watchdog owns the head and idle bounds (see the module documentation).
        .header_read_timeout(None)
        .max_buf_size(HEAD_SIZE_MAX_BYTES)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = *stopped.borrow();
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "Connection from {peer} ended: {error}");
                }
                return;
            }
            () = activity.expired(limits, draining) => {
                tracing::debug!(%peer, "Closing the connection from {peer}: idle or slow past its bound");
                return;
            }
            _ = stopped.changed(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
