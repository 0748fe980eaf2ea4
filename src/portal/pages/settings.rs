//! General settings: email and business name, the password, and (for a manager acting as
//! the account) its channel limit. Every field goes through the same domain types and
//! functions as the API; a refusal is shown next to its field with the API's message.
//!
//! The password is changed with the current one; a passwordless account gets its first
//! password from its manager acting as it. A new password ends the account's other
//! sessions. Wrong current passwords count against the account's sign-in backoff.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::FieldErrors;
use crate::accounts::{self, Email, OrganizationName, Password, sign_in};
use crate::clock::to_epoch_ms;
use crate::http::AppState;
use crate::portal::auth::Viewer;
use crate::portal::cookies::Flash;
use crate::portal::error::PortalError;
use crate::portal::form::Form;
use crate::portal::page::{Chrome, Html, Section, see_other};
use crate::portal::sessions;
use crate::portal::throttle::{self, Subject};

/// A managed account's share of its manager's channel pool, as shown while acting.
#[derive(Debug)]
pub struct ChannelView {
    limit: i64,
    available: i64,
    pool: i64,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    email: String,
    organization_name: String,
    profile_errors: FieldErrors,
    needs_current_password: bool,
    password_errors: FieldErrors,
    channel: Option<ChannelView>,
    own_channel_limit: Option<i64>,
    channel_value: String,
    channel_errors: FieldErrors,
}

/// What the forms held when one is shown again.
#[derive(Default)]
struct Typed {
    email: Option<String>,
    organization_name: Option<String>,
    channel_limit: Option<String>,
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    typed: Typed,
    errors: [FieldErrors; 3],
) -> Result<Response, PortalError> {
    let subject = &viewer.subject;
    let channel = if viewer.is_acting() {
        let allocation = accounts::channel_allocation(&state.db, &viewer.user).await?;
        let others = allocation.allocated.saturating_sub(subject.channel_limit);
        Some(ChannelView {
            limit: subject.channel_limit,
            available: allocation.pool.saturating_sub(others).max(0),
            pool: allocation.pool,
        })
    } else {
        None
    };
    let failed = errors.iter().any(|e| !e.is_empty());
    let [profile_errors, password_errors, channel_errors] = errors;
    let page = SettingsPage {
        chrome: Chrome::new(viewer, Section::Settings, "General settings"),
        email: typed.email.unwrap_or_else(|| subject.email.clone()),
        organization_name: typed
            .organization_name
            .unwrap_or_else(|| subject.organization_name.clone()),
        profile_errors,
        needs_current_password: subject.has_password || !viewer.is_acting(),
        password_errors,
        own_channel_limit: (subject.manager_id.is_some() && !viewer.is_acting())
            .then_some(subject.channel_limit),
        channel_value: typed
            .channel_limit
            .unwrap_or_else(|| subject.channel_limit.to_string()),
        channel,
        channel_errors,
    };
    let status = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(Html(page).with_status(status))
}

/// `GET /settings`.
pub async fn show(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PortalError> {
    render(&state, &viewer, Typed::default(), Default::default()).await
}

/// `POST /settings/profile`: email and business name.
pub async fn profile(
    State(state): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> Result<Response, PortalError> {
    let typed = Typed {
        email: Some(form.text("email").to_owned()),
        organization_name: Some(form.text("organization_name").to_owned()),
        channel_limit: None,
    };
    let mut errors = FieldErrors::default();
    let email = Email::parse(form.text("email"))
        .map_err(|e| errors.add("email", e.0))
        .ok();
    let name = OrganizationName::parse(form.text("organization_name"))
        .map_err(|e| errors.add("organization_name", format!("The business name {}.", e.0)))
        .ok();
    if let (Some(email), Some(name)) = (email, name) {
        let actor = viewer.actor();
        match accounts::update_profile(
            &state.db,
            &state.clock,
            viewer.subject.id,
            Some(email),
            Some(name),
            &actor,
        )
        .await
        {
            Ok(_) => {
                return Ok(see_other(
                    "/settings",
                    Some(Flash::success("The general settings are saved.")),
                ));
            }
            Err(error) => errors = FieldErrors::from_refusal(error.into())?,
        }
    }
    render(
        &state,
        &viewer,
        typed,
        [errors, FieldErrors::default(), FieldErrors::default()],
    )
    .await
}

/// `POST /settings/password`.
pub async fn password(
    State(state): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> Result<Response, PortalError> {
    let mut errors = FieldErrors::default();
    let subject = &viewer.subject;
    let needs_current = subject.has_password || !viewer.is_acting();
    let now_ms = to_epoch_ms(state.clock.now());
    if needs_current {
        let guarded = [Subject::email(&subject.email)];
        let current = form.text("current_password");
        if throttle::backoff_remaining_ms(&state.db, &guarded, now_ms)
            .await?
            .is_some()
        {
            errors.add(
                "current_password",
                "Too many wrong passwords for this account. Wait a few minutes and try again.",
            );
        } else if !sign_in::password_matches(&state.db, subject.id, current).await? {
            throttle::record_failure(&state.db, &guarded, now_ms).await?;
            errors.add("current_password", "This is not the current password.");
        }
    }
    let new = form.text("new_password");
    let password = Password::parse(new)
        .map_err(|e| errors.add("new_password", format!("The password {}.", e.0)))
        .ok();
    if new != form.text("confirm_password") {
        errors.add(
            "confirm_password",
            "The two new passwords are not the same.",
        );
    }
    if let (Some(password), true) = (password, errors.is_empty()) {
        let actor = viewer.actor();
        match accounts::set_password(&state.db, &state.clock, subject.id, password, &actor).await {
            Ok(_) => {
                // Whoever knew the old password is signed out everywhere but here.
                let keep = (!viewer.is_acting()).then_some(&viewer.token);
                sessions::destroy_others(&state.db, subject.id, keep).await?;
                return Ok(see_other(
                    "/settings",
                    Some(Flash::success("The password is set.")),
                ));
            }
            Err(error) => errors = FieldErrors::from_refusal(error.into())?,
        }
    }
    render(
        &state,
        &viewer,
        Typed::default(),
        [FieldErrors::default(), errors, FieldErrors::default()],
    )
    .await
}

/// `POST /settings/channel-limit`: a manager acting as its managed account sets its share
/// of the pool (the manager's power, so only while acting).
pub async fn channel_limit(
    State(state): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> Result<Response, PortalError> {
    if !viewer.is_acting() {
        return Err(PortalError::not_found());
    }
    let text = form.text("channel_limit").trim().to_owned();
    let mut errors = FieldErrors::default();
    match text.parse::<u32>() {
        Ok(limit) => {
            match accounts::set_channel_limit(
                &state.db,
                &state.clock,
                &viewer.user,
                viewer.subject.id,
                limit,
            )
            .await
            {
                Ok(_) => {
                    return Ok(see_other(
                        "/settings",
                        Some(Flash::success(format!("The channel limit is {limit}."))),
                    ));
                }
                Err(error) => errors = FieldErrors::from_refusal(error.into())?,
            }
        }
        Err(_) => errors.add(
            "channel_limit",
            "The channel limit must be a whole number of at least 0.",
        ),
    }
    let typed = Typed {
        channel_limit: Some(text),
        ..Typed::default()
    };
    render(
        &state,
        &viewer,
        typed,
        [FieldErrors::default(), FieldErrors::default(), errors],
    )
    .await
}
