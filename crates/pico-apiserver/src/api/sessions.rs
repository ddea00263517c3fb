//! `/v1/sessions` routes: create, list, get, extend, delete.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use pico_wire::{
    CreateSessionRequest, ErrorBody, ErrorCode, ExtendSessionRequest, MessageResponse, Session,
    SessionList,
};
use uuid::Uuid;

use super::AppState;
use super::body::OptionalJson;
use super::responses::{BodyErrors, SessionErrors};
use crate::auth::Caller;
use crate::error::ApiError;

pub(super) fn session_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::session_not_found())
}

#[utoipa::path(post, path = "/v1/sessions", tag = "sessions",
    request_body(content = Option<CreateSessionRequest>, description = "Optional; an empty body means all defaults"),
    responses(
        (status = 200, description = "The sandbox is running", body = Session),
        (status = 400, description = "INVALID_REQUEST, INVALID_TTL or INVALID_SSH_KEY", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody), BodyErrors,
        (status = 422, description = "IMAGE_PULL_FAILED: the image cannot be pulled; the message says why", body = ErrorBody),
        (status = 429, description = "QUOTA_EXCEEDED or RATE_LIMITED", body = ErrorBody),
        (status = 500, description = "SANDBOX_CREATE_FAILED", body = ErrorBody),
        (status = 504, description = "SANDBOX_TIMEOUT", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<CreateSessionRequest>,
) -> Response {
    let decision = state.create_limit.check(&caller.sub);
    let mut response = match &decision {
        Some(d) if !d.allowed => ApiError::new(
            ErrorCode::RateLimited,
            format!("too many creates: at most {} a minute", d.limit),
        )
        .with_details(serde_json::json!({"retryAfter": d.retry_after}))
        .into_response(),
        _ => state
            .service
            .create(&caller, body.unwrap_or_default())
            .await
            .map(Json)
            .into_response(),
    };
    if let Some(decision) = decision {
        decision.write_headers(response.headers_mut());
    }
    response
}

#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size (default 50)"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "Sessions to skip (default 0)")),
    responses(
        (status = 200, description = "The caller's sessions, oldest first", body = SessionList),
        (status = 400, description = "INVALID_LIMIT or INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<SessionList>, ApiError> {
    let (mut limit, mut offset) = (pico_wire::DEFAULT_LIMIT, 0u64);
    for pair in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=pico_wire::MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidLimit,
                            format!(
                                "limit must be an integer from 1 to {}",
                                pico_wire::MAX_LIMIT
                            ),
                        )
                    })?;
            }
            "offset" => {
                offset = value
                    .parse()
                    .ok()
                    .filter(|o| *o <= i64::MAX as u64)
                    .ok_or_else(|| {
                        ApiError::invalid_request("offset must be an integer from 0 to 2^63-1")
                    })?;
            }
            _ => {}
        }
    }
    Ok(Json(state.service.list(&caller, limit, offset)))
}

#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = Session), SessionErrors),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(state.service.get(&caller, session_id(&id)?)?))
}

#[utoipa::path(patch, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    request_body = ExtendSessionRequest,
    responses(
        (status = 200, description = "expiresAt is now + ttl", body = Session),
        (status = 400, description = "INVALID_REQUEST or INVALID_TTL", body = ErrorBody),
        SessionErrors),
    security(("bearer" = [])))]
pub async fn extend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ExtendSessionRequest>,
) -> Result<Json<Session>, ApiError> {
    let id = session_id(&id)?;
    let body =
        body.ok_or_else(|| ApiError::invalid_request("body {\"ttl\": seconds} is required"))?;
    Ok(Json(state.service.extend(&caller, id, body.ttl).await?))
}

#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 200, description = "Deleted", body = MessageResponse), SessionErrors,
        (status = 500, description = "SANDBOX_DELETE_FAILED", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MessageResponse>, ApiError> {
    state.service.delete(&caller, session_id(&id)?).await?;
    Ok(Json(MessageResponse {
        message: "Session deleted successfully".into(),
    }))
}
