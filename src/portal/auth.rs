//! Authentication and form protection, as layers on the portal's routes.
//!
//! [`require_session`] guards every signed-in page: it resolves the session cookie (or
//! sends the browser to sign in, remembering where it was going), ends acting when it must,
//! and for every unsafe method reads the form and refuses it unless it carries this
//! session's form token and names the account whose page it came from. A refused form
//! changes nothing: the handler never runs. [`sign_in_forms`] does the same for the sign-in
//! form, whose token is a random cookie set with the form (there is no session yet).
//! Requests a browser marks as cross-site (`Sec-Fetch-Site`) are refused outright.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::cookies::{self, Flash};
use super::error::PortalError;
use super::form::{FORM_BYTES_MAX, Form};
use super::page::see_other;
use super::sessions::{self, SessionToken};
use crate::accounts::{Account, AccountKind};
use crate::audit::Actor;
use crate::clock::to_epoch_ms;
use crate::http::AppState;
use crate::http::auth_throttle::Client;

/// Who is looking at a signed-in page, and whose page it is.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The signed-in account (the manager, while it acts as a managed account).
    pub user: Account,
    /// Whose pages these are: the user's own, or the managed account it acts as.
    pub subject: Account,
    /// While acting: when acting ends at the latest, ms.
    pub acting_until_ms: Option<i64>,
    /// This session's form token.
    pub csrf: String,
    /// The session's token.
    pub token: SessionToken,
    /// The one-time message for this page, if any.
    pub flash: Option<Flash>,
}

impl Viewer {
    /// Whether a manager is acting as one of its managed accounts.
    pub fn is_acting(&self) -> bool {
        self.acting_until_ms.is_some()
    }

    /// Who changes are recorded as made by: the account's own user, or the manager (with
    /// its identity) when acting.
    pub fn actor(&self) -> Actor {
        if self.is_acting() {
            Actor::Manager(self.user.id)
        } else {
            Actor::Owner(self.subject.id)
        }
    }

    /// Whether prices may be shown: never on a managed account's pages, whoever looks.
    pub fn may_see_prices(&self) -> bool {
        self.subject.kind != AccountKind::Managed
    }

    /// Whether the manager's own pages (managed accounts) are open: a manager in its own
    /// account, not acting.
    pub fn manages(&self) -> bool {
        !self.is_acting() && self.user.kind == AccountKind::Manager
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Viewer>().cloned().ok_or_else(|| {
            PortalError::internal(anyhow::anyhow!(
                "a page was served outside the session layer"
            ))
        })
    }
}

/// Routes whose forms are not tied to the account shown (they act on the session itself).
const SUBJECT_FREE_PATHS: [&str; 2] = ["/sign-out", "/acting/stop"];

/// The session layer of signed-in pages.
pub async fn require_session(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match guard(&state, request).await {
        Ok(Guarded::Pass(request, had_flash)) => {
            let mut response = next.run(*request).await;
            if had_flash && !cookies::sets(response.headers(), cookies::FLASH) {
                cookies::remove(response.headers_mut(), cookies::FLASH);
            }
            response
        }
        Ok(Guarded::Answer(response)) => response,
        Err(error) => error.into_response(),
    }
}

enum Guarded {
    Pass(Box<Request>, bool),
    Answer(Response),
}

async fn guard(state: &AppState, request: Request) -> Result<Guarded, PortalError> {
    let now_ms = to_epoch_ms(state.clock.now());
    let token = cookies::read(request.headers(), cookies::SESSION).and_then(SessionToken::parse);
    let resolved = match &token {
        Some(token) => sessions::resolve(&state.db, token, now_ms).await?,
        None => None,
    };
    let (Some(token), Some((session, ended))) = (token, resolved) else {
        return Ok(Guarded::Answer(to_sign_in(&request)));
    };
    if let Some(ended) = ended {
        // Whatever was asked of the managed account must not now land on the manager's own.
        return Ok(Guarded::Answer(see_other(
            "/dashboard",
            Some(Flash::error(ended.explain())),
        )));
    }
    tracing::Span::current().record("account.id", tracing::field::display(session.account.id));
    let flash = cookies::read(request.headers(), cookies::FLASH).and_then(Flash::decode);
    let had_flash = cookies::read(request.headers(), cookies::FLASH).is_some();
    let (subject, acting_until_ms) = match session.acting {
        Some(acting) => (acting.account, Some(acting.until_ms)),
        None => (session.account.clone(), None),
    };
    let viewer = Viewer {
        csrf: token.csrf_token(),
        user: session.account,
        subject,
        acting_until_ms,
        token,
        flash,
    };
    let mut request = request;
    if is_unsafe(request.method()) {
        let (checked, form) = read_form(request).await?;
        request = checked;
        if !same(form.text("csrf_token"), &viewer.csrf) {
            return Err(expired_form());
        }
        let bound = !SUBJECT_FREE_PATHS.contains(&request.uri().path());
        if bound && form.text("subject") != viewer.subject.id.to_string() {
            return Ok(Guarded::Answer(see_other(
                "/dashboard",
                Some(Flash::error(
                    "That form came from a page of another account than the one you are now \
                     in, so nothing was changed. Open the page again and retry.",
                )),
            )));
        }
        request.extensions_mut().insert(form);
    }
    request.extensions_mut().insert(viewer);
    Ok(Guarded::Pass(Box::new(request), had_flash))
}

/// The sign-in layer of the sign-in form: its token is a random cookie set with the form.
pub async fn sign_in_forms(request: Request, next: Next) -> Response {
    if !is_unsafe(request.method()) {
        return next.run(request).await;
    }
    let expected = cookies::read(request.headers(), cookies::SIGN_IN_CSRF).map(str::to_owned);
    let (mut request, form) = match read_form(request).await {
        Ok(read) => read,
        Err(error) => return error.into_response(),
    };
    let sent = form.text("csrf_token");
    match expected {
        Some(expected) if !expected.is_empty() && same(sent, &expected) => {
            request.extensions_mut().insert(form);
            next.run(request).await
        }
        _ => expired_form().into_response(),
    }
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Reads and parses a form body (refusing cross-site posts first), and puts the bytes back.
async fn read_form(request: Request) -> Result<(Request, Form), PortalError> {
    let cross_site = request
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    if cross_site {
        return Err(expired_form());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_BYTES_MAX)
        .await
        .map_err(|_| PortalError::bad_request("The form is larger than any form of this site."))?;
    let form = Form::parse(&bytes).ok_or_else(|| {
        PortalError::bad_request("The form holds characters no field accepts (such as NUL).")
    })?;
    Ok((Request::from_parts(parts, Body::from(bytes)), form))
}

/// The refusal of a form without this session's token: nothing was changed.
fn expired_form() -> PortalError {
    PortalError::forbidden(
        "This form has expired or did not come from this site, so nothing was changed. \
         Open the page again and resubmit the form.",
    )
}

/// Compares two tokens in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0_u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// Sends a browser without a session to sign in; a page it asked for comes back after.
fn to_sign_in(request: &Request) -> Response {
    let mut response = if request.method() == Method::GET {
        let wanted = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let next: String = form_urlencoded::byte_serialize(wanted.as_bytes()).collect();
        see_other(&format!("/sign-in?next={next}"), None)
    } else {
        see_other(
            "/sign-in",
            Some(Flash::error(
                "Your session has ended, so nothing was changed. Sign in again.",
            )),
        )
    };
    // A session cookie that resolved to nothing is dead: the browser may drop it.
    if cookies::read(request.headers(), cookies::SESSION).is_some() {
        cookies::remove(response.headers_mut(), cookies::SESSION);
    }
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
}

/// The client a sign-in counts against: the peer address (an IPv6 /64), when known.
pub fn client_of(parts: &axum::http::Extensions) -> Option<String> {
    parts
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| Client::of(peer.ip()).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }
}
