//! API keys: list by public id, mint (the whole key shown once, with a copy button),
//! revoke. On a managed account's pages while acting, keys are minted and revoked for it
//! and recorded as its manager's doing.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{FieldErrors, confirmed, when};
use crate::accounts::api_keys::{self, ACTIVE_KEYS_PER_ACCOUNT_MAX, KeyRecord};
use crate::accounts::listing::PageRequest;
use crate::http::AppState;
use crate::portal::auth::Viewer;
use crate::portal::cookies::Flash;
use crate::portal::error::PortalError;
use crate::portal::form::Form;
use crate::portal::page::{Chrome, Html, Section, see_other};

/// Keys listed (live ones are at most 50; the newest revoked ones fill the rest).
const KEYS_LISTED: u32 = 100;

/// A key as listed.
#[derive(Debug)]
pub struct KeyRow {
    id: String,
    created_at: String,
    created_by: String,
    revoked_at: String,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<KeyRow>,
    live: usize,
    live_max: i64,
    minted: String,
    errors: FieldErrors,
}

fn created_by(viewer: &Viewer, key: &KeyRecord) -> String {
    match key.created_by_account_id {
        None => "The platform operator".to_owned(),
        Some(id) if id == viewer.subject.id => "This account".to_owned(),
        Some(id) if Some(id) == viewer.subject.manager_id => "Its manager".to_owned(),
        Some(id) => format!("Account {id}"),
    }
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    minted: String,
    errors: FieldErrors,
) -> Result<KeysPage, PortalError> {
    let request = PageRequest::new(1, KEYS_LISTED, KEYS_LISTED).unwrap_or_default();
    let listed = api_keys::list(&state.db, viewer.subject.id, request).await?;
    let keys: Vec<KeyRow> = listed
        .items
        .iter()
        .map(|k| KeyRow {
            id: k.id.clone(),
            created_at: when(k.created_at_ms),
            created_by: created_by(viewer, k),
            revoked_at: k.revoked_at_ms.map(when).unwrap_or_default(),
        })
        .collect();
    Ok(KeysPage {
        chrome: Chrome::new(viewer, Section::ApiKeys, "API keys"),
        live: keys.iter().filter(|k| k.revoked_at.is_empty()).count(),
        keys,
        live_max: ACTIVE_KEYS_PER_ACCOUNT_MAX,
        minted,
        errors,
    })
}

/// `GET /api-keys`.
pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PortalError> {
    Ok(Html(page(&state, &viewer, String::new(), FieldErrors::default()).await?).into_response())
}

/// `POST /api-keys`: mints a key and shows it, this once. (The one answer not redirected:
/// the key must not be kept anywhere to show it after a redirect; reloading the page
/// asks the browser before posting again.)
pub async fn mint(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PortalError> {
    let actor = viewer.actor();
    match api_keys::mint(&state.db, &state.clock, viewer.subject.id, &actor).await {
        Ok(key) => {
            let page = page(
                &state,
                &viewer,
                key.secret().to_owned(),
                FieldErrors::default(),
            )
            .await?;
            Ok(Html(page).into_response())
        }
        Err(error) => {
            let errors = FieldErrors::from_refusal(error.into())?;
            let page = page(&state, &viewer, String::new(), errors).await?;
            Ok(Html(page).with_status(StatusCode::UNPROCESSABLE_ENTITY))
        }
    }
}

/// `POST /api-keys/{id}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(key_id): Path<String>,
    form: Form,
) -> Result<Response, PortalError> {
    let action = format!("/api-keys/{key_id}/revoke");
    let question = format!(
        "Revoke the API key {key_id}? Anything using it stops working at once; this cannot be undone."
    );
    if let Some(ask) = confirmed(
        &viewer,
        &form,
        Section::ApiKeys,
        question,
        &action,
        "/api-keys",
    ) {
        return Ok(ask);
    }
    let actor = viewer.actor();
    api_keys::revoke(&state.db, &state.clock, viewer.subject.id, &key_id, &actor).await?;
    Ok(see_other(
        "/api-keys",
        Some(Flash::success(format!("The API key {key_id} is revoked."))),
    ))
}
