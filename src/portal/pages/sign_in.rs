//! Signing in and out.
//!
//! A wrong password and an unknown email get the same answer and count alike against the
//! backoff (per email and per client address, see [`throttle`]); while a backoff lasts the
//! password is not checked at all. A successful sign-in always starts a new session (an
//! old or planted cookie is never promoted).

use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::accounts::AccountStatus;
use crate::accounts::sign_in::{self, SignIn};
use crate::clock::to_epoch_ms;
use crate::http::AppState;
use crate::portal::auth::{Viewer, client_of};
use crate::portal::cookies::{self, Flash};
use crate::portal::error::PortalError;
use crate::portal::form::Form;
use crate::portal::page::{Bare, Html, safe_next, see_other};
use crate::portal::sessions::{self, SESSION_LIFETIME_MS, SessionToken};
use crate::portal::throttle::{self, Subject};

/// Where a signed-in person lands when no page was asked for.
const HOME: &str = "/dashboard";

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    bare: Bare,
    csrf: String,
    email: String,
    next: String,
    error: String,
    flash: Option<Flash>,
}

/// `?next=` of the sign-in page.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /sign-in`.
pub async fn show(
    State(state): State<AppState>,
    query: Query<NextQuery>,
    request: Request,
) -> Response {
    let next = query
        .next
        .as_deref()
        .and_then(safe_next)
        .unwrap_or(HOME)
        .to_owned();
    let headers = request.headers();
    // Already signed in: straight on.
    if let Some(token) = cookies::read(headers, cookies::SESSION).and_then(SessionToken::parse) {
        let now_ms = to_epoch_ms(state.clock.now());
        if let Ok(Some(_)) = sessions::resolve(&state.db, &token, now_ms).await {
            return see_other(&next, None);
        }
    }
    let flash = cookies::read(headers, cookies::FLASH).and_then(Flash::decode);
    let had_flash = cookies::read(headers, cookies::FLASH).is_some();
    let mut response = form_page(
        headers,
        String::new(),
        next,
        String::new(),
        flash,
        StatusCode::OK,
    );
    if had_flash {
        cookies::remove(response.headers_mut(), cookies::FLASH);
    }
    response
}

/// The sign-in form; its token is the browser's sign-in cookie, made if it has none.
fn form_page(
    headers: &axum::http::HeaderMap,
    email: String,
    next: String,
    error: String,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    let csrf = cookies::read(headers, cookies::SIGN_IN_CSRF)
        .and_then(SessionToken::parse)
        .unwrap_or_else(SessionToken::generate);
    let page = SignInPage {
        bare: Bare::new("Sign in"),
        csrf: csrf.expose().to_owned(),
        email,
        next,
        error,
        flash,
    };
    let mut response = Html(page).with_status(status);
    cookies::add(
        response.headers_mut(),
        cookies::SIGN_IN_CSRF,
        csrf.expose(),
        None,
    );
    response
}

/// `POST /sign-in`.
pub async fn submit(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, PortalError> {
    let form = request
        .extensions()
        .get::<Form>()
        .cloned()
        .unwrap_or_default();
    let email = form.text("email").trim().to_owned();
    let next = safe_next(form.text("next")).unwrap_or(HOME).to_owned();
    let email_subject = Subject::email(&email);
    let mut subjects = vec![email_subject.clone()];
    if let Some(client) = client_of(request.extensions()) {
        subjects.push(Subject::address(&client));
    }
    let now_ms = to_epoch_ms(state.clock.now());
    let headers = request.headers();
    let refuse = |error: String, status: StatusCode| {
        form_page(headers, email.clone(), next.clone(), error, None, status)
    };
    if let Some(wait_ms) = throttle::backoff_remaining_ms(&state.db, &subjects, now_ms).await? {
        let minutes = wait_ms.div_euclid(60_000) + 1;
        let mut response = refuse(
            format!(
                "Too many failed sign-ins for this email or from this network. Wait about \
                 {minutes} minute{} and try again.",
                if minutes == 1 { "" } else { "s" }
            ),
            StatusCode::TOO_MANY_REQUESTS,
        );
        let seconds = (wait_ms + 999).div_euclid(1000);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return Ok(response);
    }
    let outcome = sign_in::check_password(&state.db, &email, form.text("password")).await?;
    let refusal = match outcome {
        SignIn::Verified(account) => {
            throttle::record_success(&state.db, &email_subject, now_ms).await?;
            let token = sessions::create(&state.db, account.id, now_ms).await?;
            tracing::info!(account.id = %account.id, "Account {} signed in to the portal", account.id);
            let mut response = see_other(&next, None);
            let max_age_s = SESSION_LIFETIME_MS / 1000;
            cookies::add(
                response.headers_mut(),
                cookies::SESSION,
                token.expose(),
                Some(max_age_s),
            );
            cookies::remove(response.headers_mut(), cookies::SIGN_IN_CSRF);
            return Ok(response);
        }
        SignIn::WrongCredentials => {
            throttle::record_failure(&state.db, &subjects, now_ms).await?;
            "The email or the password is not right.".to_owned()
        }
        SignIn::NoPassword => {
            throttle::record_failure(&state.db, &subjects, now_ms).await?;
            "This account has no password yet, so it cannot sign in. Ask your manager to set \
             one in the account's General settings (a manager asks the platform operator)."
                .to_owned()
        }
        SignIn::NotAllowed(status) => match status {
            AccountStatus::Disabled => {
                "This account is disabled, so it cannot sign in. Its manager can enable it again."
            }
            AccountStatus::Cancelled => "This account is cancelled and can no longer sign in.",
            _ => "This account is blocked. Contact the platform operator.",
        }
        .to_owned(),
    };
    Ok(refuse(refusal, StatusCode::UNPROCESSABLE_ENTITY))
}

/// `POST /sign-out`: ends the session (and any acting with it).
pub async fn sign_out(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PortalError> {
    sessions::destroy(&state.db, &viewer.token).await?;
    let mut response = see_other("/sign-in", Some(Flash::success("You have signed out.")));
    cookies::remove(response.headers_mut(), cookies::SESSION);
    Ok(response.into_response())
}
