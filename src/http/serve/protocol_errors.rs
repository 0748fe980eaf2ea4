//! The error envelope for answers hyper writes itself.
//!
//! When a request head cannot be parsed (a garbage request line, bytes that are not a URI
//! such as invalid UTF-8 in the path, a URI over 64 KiB, a head over
//! [`HEAD_SIZE_MAX_BYTES`](super::connection::HEAD_SIZE_MAX_BYTES)), hyper answers 400, 414
//! or 431 on its own, with no body, and closes the connection: no service, so no router and
//! no middleware, ever sees the request. The alternatives were to parse every head a second
//! time before hyper (a second parser whose rules can drift from hyper's, on the hot path
//! of every request) or to let hyper answer and rewrite its answer on the way out. This
//! module does the latter, at the connection's IO:
//!
//! - hyper writes through a non-vectored IO, so a response head arrives in one write;
//! - a write is hyper's own answer when no request is in the router and it is a head of a
//!   4xx status without a `Content-Type` (every response of the router has one: JSON, or
//!   the envelope for errors);
//! - such a write is replaced by the envelope with the same status (the table in
//!   `error.rs`), the default security headers and `Connection: close`, and reported to
//!   hyper as written in full; the replacement is flushed before anything else.
//!
//! Whatever the parse failure, the client gets a status and a JSON body; the check costs a
//! comparison of the first bytes of each write.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::connection::{Activity, HEAD_SIZE_MAX_BYTES};
use crate::http::error::{ErrorKind, envelope_json};
use crate::http::security_headers;

/// A TCP stream that notes arriving bytes and rewrites hyper's body-less error answers.
#[derive(Debug)]
pub(super) struct EnvelopeIo {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// A replacement answer and how much of it is written.
    pending: Vec<u8>,
    pending_written: usize,
}

impl EnvelopeIo {
    pub(super) fn new(stream: TcpStream, activity: Arc<Activity>) -> Self {
        Self {
            stream,
            activity,
            pending: Vec::new(),
            pending_written: 0,
        }
    }

    /// Writes what is left of a replacement answer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = self
            .pending
            .get(self.pending_written..)
            .filter(|rest| !rest.is_empty())
        {
            let written = ready!(Pin::new(&mut self.stream).poll_write(cx, rest))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_written += written;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for EnvelopeIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for EnvelopeIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if !this.activity.is_busy()
            && let Some(status) = automatic_error_status(buf)
        {
            tracing::debug!(
                http.status = status.as_u16(),
                "Answering an unparsable request head with {status}"
            );
            this.pending = envelope_response(status);
            this.pending_written = 0;
            // Pending is fine: hyper flushes next, and the flush drains the rest.
            if let Poll::Ready(Err(error)) = this.poll_drain(cx) {
                return Poll::Ready(Err(error));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// The status of `bytes` if they are a whole response head of a 4xx status without a
/// `Content-Type`: the shape of hyper's automatic answers.
fn automatic_error_status(bytes: &[u8]) -> Option<StatusCode> {
    let rest = bytes
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| bytes.strip_prefix(b"HTTP/1.0 "))?;
    let code = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    let status = StatusCode::from_u16(code).ok()?;
    if !status.is_client_error() {
        return None;
    }
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = bytes.get(..end)?.to_ascii_lowercase();
    let has_content_type = head.windows(15).any(|w| w == b"\r\ncontent-type:");
    (!has_content_type).then_some(status)
}

/// The envelope answer for one of hyper's automatic statuses, as bytes on the wire.
fn envelope_response(status: StatusCode) -> Vec<u8> {
    let (kind, detail) = match status {
        StatusCode::URI_TOO_LONG => (
            ErrorKind::UriTooLong,
            "The request URI is longer than the server reads (64 KiB).".to_owned(),
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            ErrorKind::HeadersTooLarge,
            format!(
                "The request line and headers are larger than the server reads ({} KiB).",
                HEAD_SIZE_MAX_BYTES / 1024
            ),
        ),
        _ => (
            ErrorKind::BadRequest,
            "The request line or headers are not valid HTTP/1.1. The path must be ASCII: \
             percent-encode anything else."
                .to_owned(),
        ),
    };
    let (status, _, _) = kind.spec();
    let body = envelope_json(kind, &detail);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        body.len()
    );
    for (name, value) in &security_headers::DEFAULTS {
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(value.to_str().unwrap_or_default());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut response = head.into_bytes();
    response.extend_from_slice(&body);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hyper_answers_and_not_the_routers() {
        let hyper = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_error_status(hyper), Some(StatusCode::BAD_REQUEST));
        let router = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\r\n{}";
        assert_eq!(automatic_error_status(router), None);
        assert_eq!(automatic_error_status(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        assert_eq!(automatic_error_status(b"{\"errors\":[]}"), None);
    }
}
