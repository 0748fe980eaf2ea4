//! "Log in as": a manager enters one of its managed accounts' portal, and returns.

use axum::extract::{Path, State};
use axum::response::Response;

use super::account_id;
use crate::clock::to_epoch_ms;
use crate::http::AppState;
use crate::portal::auth::Viewer;
use crate::portal::cookies::Flash;
use crate::portal::error::PortalError;
use crate::portal::page::see_other;
use crate::portal::sessions::{self, ACTING_LIFETIME_MS};

/// `POST /managed-accounts/{id}/act`: only from the manager's own pages; another manager's
/// account is not found.
pub async fn start(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PortalError> {
    if !viewer.manages() {
        return Err(PortalError::not_found());
    }
    let now_ms = to_epoch_ms(state.clock.now());
    let account = sessions::start_acting(
        &state.db,
        &viewer.token,
        &viewer.user,
        account_id(&id)?,
        now_ms,
    )
    .await?;
    tracing::info!(account.id = %viewer.user.id, managed.id = %account.id, "Manager {} is acting as managed account {}", viewer.user.id, account.id);
    Ok(see_other(
        "/dashboard",
        Some(Flash::success(format!(
            "You are now acting as {}, for at most {} minutes.",
            account.organization_name,
            ACTING_LIFETIME_MS / 60_000
        ))),
    ))
}

/// `POST /acting/stop`: back to the manager's own account.
pub async fn stop(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PortalError> {
    let now_ms = to_epoch_ms(state.clock.now());
    sessions::stop_acting(&state.db, &viewer.token, now_ms).await?;
    let location = if viewer.is_acting() {
        format!("/managed-accounts/{}", viewer.subject.id)
    } else {
        "/dashboard".to_owned()
    };
    Ok(see_other(
        &location,
        Some(Flash::success("You are back in your own account.")),
    ))
}
