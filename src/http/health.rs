//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorKind};

/// `{"status": "ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// Ready when the database answers.
#[utoipa::path(get, path = "/healthz", tag = "Health",
    responses((status = 200, body = Health),
        (status = 503, description = "The database does not answer", body = super::error::ErrorEnvelope)))]
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    sqlx::query("SELECT 1")
        .execute(&state.db.read)
        .await
        .map_err(|_| ApiError::new(ErrorKind::Unavailable, "The database does not answer."))?;
    Ok(Json(Health { status: "ok" }))
}

/// Alive when the process answers; touches nothing else (also the benchmarks' baseline).
#[utoipa::path(get, path = "/livez", tag = "Health", responses((status = 200, body = Health)))]
pub async fn livez() -> Json<Health> {
    Json(Health { status: "ok" })
}
