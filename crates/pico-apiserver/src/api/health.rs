//! Liveness, readiness and metrics endpoints (no auth).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use pico_wire::{ErrorCode, HealthResponse};

use super::AppState;
use crate::error::ApiError;

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The server is up", body = HealthResponse)))]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "healthy".into(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The runtime backend answers", body = HealthResponse),
        (status = 503, description = "The runtime backend does not answer", body = pico_wire::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<HealthResponse>, ApiError> {
    let runtime = state.service.runtime();
    match runtime.ready().await {
        Ok(()) => Ok(Json(HealthResponse {
            status: "ready".into(),
        })),
        Err(err) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("{} runtime not ready: {err}", runtime.name()),
        )),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let counts = state.service.count_by_status();
    let mut by_status: Vec<(&str, u64)> = ["pending", "running", "paused", "failed", "terminating"]
        .iter()
        .map(|s| (*s, counts.get(s).copied().unwrap_or(0)))
        .collect();
    by_status.sort();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.service.metrics.render(&by_status),
    )
}
