//! The accept loop: one task per connection, bounded in time at every stage.
//!
//! `axum::serve` has no header-read or idle timeout and waits for every connection at
//! shutdown, so a client that sends half a request line held its connection for ever and
//! kept `SIGTERM` from completing. This loop drives hyper's HTTP/1 connections itself:
//!
//! - each connection has a watchdog ([`connection`]) that closes it when a request head takes
//!   longer than the header-read timeout or when it sits idle longer than the keep-alive
//!   timeout;
//! - the handlers see the client's address as `ConnectInfo<SocketAddr>`: the peer's, or
//!   behind a trusted reverse proxy the address it forwarded ([`forwarded`]);
//! - hyper's own answers to unparsable heads are rewritten into the error envelope
//!   ([`protocol_errors`]);
//! - when the shutdown future resolves, the listener is dropped (new connections are
//!   refused), idle connections close, requests in flight get the grace period to finish,
//!   and whatever is still open after it is closed.

mod connection;
pub mod forwarded;
mod protocol_errors;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use self::connection::ConnectionLimits;
pub use self::forwarded::TrustedProxies;

/// Pause after a failed `accept` (typically: out of file descriptors) before trying again,
/// so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE_MS: u64 = 100;

/// Serves `router` on `listener` until `shutdown` resolves, then drains as described above.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    proxies: Arc<TrustedProxies>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection::serve(
                        stream,
                        peer,
                        router.clone(),
                        limits,
                        Arc::clone(&proxies),
                        stopped.clone(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "Failed to accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                }
            },
            // Reaps finished connections so the set does not grow with the server's age.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Every receiver is held by a connection task; none left means nothing to tell.
    let _ = stop.send(true);
    let grace = Duration::from_millis(limits.shutdown_grace_ms);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "Closing {} connections still open after the shutdown grace period",
            connections.len()
        );
        connections.shutdown().await;
    }
}
