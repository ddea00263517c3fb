//! The HTTP surface: router, request ids, JSON error bodies on every path, OpenAPI document.

mod body;
mod exec;
mod exec_output;
mod files;
mod health;
mod images;
pub mod openapi;
mod pause;
mod processes;
mod range;
mod responses;
mod sessions;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::agent_client::AgentPool;
use crate::auth::{Authenticator, Caller};
use crate::error::{ApiError, REQUEST_ID};
use crate::ratelimit::RateLimiter;
use crate::service::SessionService;

/// Largest request body accepted, as promised by the API.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub service: Arc<SessionService>,
    pub auth: Arc<Authenticator>,
    pub create_limit: Arc<RateLimiter>,
    /// The server's connections to sandbox agents (exec and files over HTTP).
    pub agents: Arc<AgentPool>,
    /// Largest upload in bytes (0 = no limit).
    pub max_upload_size: u64,
    /// Background processes a session may hold (`--max-processes-per-session`).
    pub max_processes: usize,
}

impl AppState {
    /// Who is calling, counting failures for `/metrics`.
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
        self.auth.authenticate(headers).inspect_err(|_| {
            self.service
                .metrics
                .auth_failures
                .fetch_add(1, Ordering::Relaxed);
        })
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        .route("/v1/sessions", get(sessions::list).post(sessions::create))
        .route("/v1/images", get(images::list))
        .route(
            "/v1/sessions/{id}",
            get(sessions::get)
                .patch(sessions::extend)
                .delete(sessions::delete),
        )
        .merge(exec_routes("/v1/sessions"))
        .merge(exec_routes("/sessions"))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(json_errors))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("internal error").into_response()
        }))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Exec and file routes under `prefix` (`/v1/sessions`, and `/sessions` for an `api_url`
/// without the `/v1`, as the original SDK builds its URLs).
fn exec_routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}/{{id}}/commands"), post(exec::commands))
        .route(&format!("{prefix}/{{id}}/code"), post(exec::code))
        .route(&format!("{prefix}/{{id}}/pause"), post(pause::pause))
        .route(&format!("{prefix}/{{id}}/resume"), post(pause::resume))
        .route(
            &format!("{prefix}/{{id}}/files"),
            get(files::download)
                .post(files::upload)
                .delete(files::delete),
        )
        .merge(processes::routes(prefix))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        pico_wire::ErrorCode::NotFound,
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        pico_wire::ErrorCode::MethodNotAllowed,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Gives every error response the JSON body, including ones made by layers below us.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        return ApiError::from_status(status).into_response();
    }
    response
}

/// Accepts a sane `X-Request-Id` or makes one; it lands in logs, error bodies and the response.
pub fn request_id_from(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

async fn request_id(request: Request, next: Next) -> Response {
    let id = request_id_from(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    tracing::info!(
        request_id = %id,
        %method,
        path = %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.authenticate(&parts.headers)
    }
}

/// The service, for handlers that need nothing else.
pub type Service = State<AppState>;
