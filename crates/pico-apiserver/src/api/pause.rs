//! `POST /v1/sessions/{id}/pause` and `…/resume` (also under `/sessions/{id}/…`).

use axum::Json;
use axum::extract::{Path, State};
use pico_wire::{ErrorBody, Session};

use super::AppState;
use super::sessions::session_id;
use crate::auth::Caller;
use crate::error::ApiError;

#[utoipa::path(post, path = "/v1/sessions/{id}/pause", tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session, paused (also when it already was)", body = Session),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "INVALID_STATE: the session is pending, failed or terminating", body = ErrorBody),
        (status = 502, description = "SANDBOX_UNREACHABLE", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the runtime cannot pause", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(state.service.pause(&caller, session_id(&id)?).await?))
}

#[utoipa::path(post, path = "/v1/sessions/{id}/resume", tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session, running again (also when it already was)", body = Session),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "INVALID_STATE: the session is pending, failed or terminating", body = ErrorBody),
        (status = 502, description = "SANDBOX_UNREACHABLE", body = ErrorBody),
        (status = 504, description = "SANDBOX_TIMEOUT", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(state.service.resume(&caller, session_id(&id)?).await?))
}
