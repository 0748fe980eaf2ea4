//! A managed account's own page (a manager in its own account): its figures, enable and
//! disable (confirmed first), channel limit, custom pricing, and the way into "log in as".
//! Another manager's account, or one that does not exist, is a missing page.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{Row, outside_own_pages};
use crate::accounts::{self, ManagedAccountUpdate};
use crate::billing;
use crate::http::AppState;
use crate::portal::auth::Viewer;
use crate::portal::cookies::Flash;
use crate::portal::error::PortalError;
use crate::portal::form::Form;
use crate::portal::page::{Chrome, Html, Section, safe_next, see_other};
use crate::portal::pages::dashboard::dollars;
use crate::portal::pages::{FieldErrors, account_id, confirmed};

#[derive(Template)]
#[template(path = "managed_account.html")]
struct ShowPage {
    chrome: Chrome,
    account: Row,
    has_password: bool,
    custom_pricing: bool,
    balance: String,
    available_credit: String,
    api_key_id: String,
    channel_available: i64,
    pool: i64,
    channel_value: String,
    errors: FieldErrors,
}

async fn show_page(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    channel_value: Option<String>,
    errors: FieldErrors,
) -> Result<Response, PortalError> {
    let (account, key_id) =
        accounts::managed_account(&state.db, &viewer.user, account_id(id)?).await?;
    let (balance, available_credit) = if account.rollup_billing {
        (String::new(), String::new())
    } else {
        let figures = billing::balance_of(&state.db, &account).await?;
        (
            dollars(figures.balance),
            dollars(figures.available_credit()),
        )
    };
    let channels = accounts::channel_allocation(&state.db, &viewer.user).await?;
    let others = channels.allocated.saturating_sub(account.channel_limit);
    let failed = !errors.is_empty();
    let page = ShowPage {
        chrome: Chrome::new(viewer, Section::ManagedAccounts, &account.organization_name),
        has_password: account.has_password,
        custom_pricing: account.managed_account_allow_custom_pricing,
        balance,
        available_credit,
        api_key_id: key_id.unwrap_or_default(),
        channel_available: channels.pool.saturating_sub(others).max(0),
        pool: channels.pool,
        channel_value: channel_value.unwrap_or_else(|| account.channel_limit.to_string()),
        errors,
        account: Row::from(&account),
    };
    let status = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(Html(page).with_status(status))
}

/// `GET /managed-accounts/{id}`.
pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PortalError> {
    if let Some(page) = outside_own_pages(&viewer) {
        return Ok(page);
    }
    show_page(&state, &viewer, &id, None, FieldErrors::default()).await
}

/// `POST /managed-accounts/{id}/disable`.
pub async fn disable(
    state: State<AppState>,
    viewer: Viewer,
    path: Path<String>,
    form: Form,
) -> Result<Response, PortalError> {
    set_enabled(state, viewer, path, form, false).await
}

/// `POST /managed-accounts/{id}/enable`.
pub async fn enable(
    state: State<AppState>,
    viewer: Viewer,
    path: Path<String>,
    form: Form,
) -> Result<Response, PortalError> {
    set_enabled(state, viewer, path, form, true).await
}

async fn set_enabled(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Form,
    enabled: bool,
) -> Result<Response, PortalError> {
    if let Some(page) = outside_own_pages(&viewer) {
        return Ok(page);
    }
    let target = account_id(&id)?;
    let back = safe_next(form.text("return_to"))
        .map_or_else(|| format!("/managed-accounts/{id}"), str::to_owned);
    let (account, _) = accounts::managed_account(&state.db, &viewer.user, target).await?;
    let verb = if enabled { "enable" } else { "disable" };
    let question = if enabled {
        format!(
            "Enable {}? Its keys and sign-in work again.",
            account.organization_name
        )
    } else {
        format!(
            "Disable {}? Its API keys and portal sessions are refused at once and it can start \
             no new calls or messages; usage already under way completes and is charged.",
            account.organization_name
        )
    };
    let action = format!("/managed-accounts/{id}/{verb}");
    if let Some(ask) = confirmed(
        &viewer,
        &form,
        Section::ManagedAccounts,
        question,
        &action,
        &back,
    ) {
        return Ok(ask);
    }
    let (account, _) =
        accounts::set_enabled(&state.db, &state.clock, &viewer.user, target, enabled).await?;
    let done = if enabled { "enabled" } else { "disabled" };
    Ok(see_other(
        &back,
        Some(Flash::success(format!(
            "{} is {done}.",
            account.organization_name
        ))),
    ))
}

/// `POST /managed-accounts/{id}/channel-limit`.
pub async fn channel_limit(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Form,
) -> Result<Response, PortalError> {
    if let Some(page) = outside_own_pages(&viewer) {
        return Ok(page);
    }
    let target = account_id(&id)?;
    let text = form.text("channel_limit").trim().to_owned();
    let mut errors = FieldErrors::default();
    match text.parse::<u32>() {
        Ok(limit) => {
            match accounts::set_channel_limit(&state.db, &state.clock, &viewer.user, target, limit)
                .await
            {
                Ok(account) => {
                    return Ok(see_other(
                        &format!("/managed-accounts/{id}"),
                        Some(Flash::success(format!(
                            "The channel limit of {} is {limit}.",
                            account.organization_name
                        ))),
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
    show_page(&state, &viewer, &id, Some(text), errors).await
}

/// `POST /managed-accounts/{id}/custom-pricing`.
pub async fn custom_pricing(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Form,
) -> Result<Response, PortalError> {
    if let Some(page) = outside_own_pages(&viewer) {
        return Ok(page);
    }
    let allow = form.checked("managed_account_allow_custom_pricing");
    let update = ManagedAccountUpdate {
        managed_account_allow_custom_pricing: Some(allow),
        ..ManagedAccountUpdate::default()
    };
    let (account, _) = accounts::update_managed_account(
        &state.db,
        &state.clock,
        &viewer.user,
        account_id(&id)?,
        update,
    )
    .await?;
    let text = if allow {
        "may now use a price list of its own (when the platform operator assigns one)"
    } else {
        "now uses your prices"
    };
    Ok(see_other(
        &format!("/managed-accounts/{id}"),
        Some(Flash::success(format!(
            "{} {text}.",
            account.organization_name
        ))),
    ))
}
