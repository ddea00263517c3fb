//! `ApiError`: the one place that maps a failure to an HTTP status and the JSON error body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pico_wire::{ErrorBody, ErrorCode};
use serde_json::Value;
use time::OffsetDateTime;

use crate::runtime::RuntimeError;

tokio::task_local! {
    /// The id of the request being served, so every error body can carry it.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string())
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    /// An error whose HTTP status is the one its code owns (`ErrorCode::http_status`).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn session_not_found() -> Self {
        Self::new(ErrorCode::SessionNotFound, "Session not found")
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }

    /// The one status that is not its code's own: a proxy-form CONNECT without credentials
    /// is challenged with `407` (proxy clients only send credentials after one).
    pub fn proxy_auth_required(self) -> Self {
        Self {
            status: StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ..self
        }
    }

    /// A generic body for a status that no handler produced (e.g. from a middleware).
    pub fn from_status(status: StatusCode) -> Self {
        let code = match status {
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
            s if s.is_client_error() => ErrorCode::InvalidRequest,
            _ => ErrorCode::InternalError,
        };
        let message = status.canonical_reason().unwrap_or("Error");
        Self {
            status,
            ..Self::new(code, message)
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code,
            message: self.message.clone(),
            details: self.details.clone(),
            timestamp: OffsetDateTime::now_utc(),
            request_id: current_request_id(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pico\""),
            );
        }
        if self.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            headers.insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"pico\""),
            );
        }
        response
    }
}

impl From<RuntimeError> for ApiError {
    fn from(err: RuntimeError) -> Self {
        let message = err.to_string();
        let code = match err {
            RuntimeError::Timeout(_) => ErrorCode::SandboxTimeout,
            RuntimeError::Create(_) => ErrorCode::SandboxCreateFailed,
            RuntimeError::Delete(_) => ErrorCode::SandboxDeleteFailed,
            RuntimeError::Unreachable(_) => ErrorCode::SandboxUnreachable,
            RuntimeError::Unavailable(_) => ErrorCode::Unavailable,
            RuntimeError::Io(_) | RuntimeError::Store(_) => ErrorCode::InternalError,
        };
        tracing::warn!(error = %message, "runtime error");
        Self::new(code, message)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        tracing::error!(error = %err, "session store error");
        Self::internal("session store error")
    }
}
