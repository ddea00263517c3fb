//! `ApiError`: the one place that maps a failure to an HTTP status and the JSON error body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pico_wire::{ErrorBody, ErrorCode};
use serde_json::Value;
use time::OffsetDateTime;

use crate::runtime::{FailureKind, RuntimeError};

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
    /// The request id already named in the server log for this error, if any.
    request_id: Option<String>,
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
            request_id: None,
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
            request_id: self.request_id.clone().unwrap_or_else(current_request_id),
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
    /// The client gets the kind of failure and the request id; the details (host paths, the
    /// agent's log, the causes) go to the server log under that id.
    fn from(err: RuntimeError) -> Self {
        let request_id = current_request_id();
        tracing::warn!(request_id = %request_id, error = %Report(&err), "runtime error");
        let (code, what) = match err.kind() {
            Some(FailureKind::Timeout) => (
                ErrorCode::SandboxTimeout,
                "the sandbox was not ready in time",
            ),
            Some(FailureKind::Create) => (
                ErrorCode::SandboxCreateFailed,
                "the sandbox could not be created",
            ),
            Some(FailureKind::Delete) => (
                ErrorCode::SandboxDeleteFailed,
                "the sandbox could not be deleted",
            ),
            Some(FailureKind::Unreachable) => {
                (ErrorCode::SandboxUnreachable, "the sandbox is unreachable")
            }
            Some(FailureKind::Unavailable) => {
                (ErrorCode::Unavailable, "the sandbox runtime is unavailable")
            }
            Some(FailureKind::ImagePull) => {
                (ErrorCode::ImagePullFailed, "the image could not be pulled")
            }
            None => (ErrorCode::InternalError, "internal error"),
        };
        let message = match &err {
            RuntimeError::SandboxFailed { why, .. } => format!("{what}: {why}"),
            _ => format!("{what} (the server log has the details under requestId {request_id})"),
        };
        Self {
            request_id: Some(request_id),
            ..Self::new(code, message)
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        let request_id = current_request_id();
        tracing::error!(request_id = %request_id, error = %Report(&err), "session store error");
        Self {
            request_id: Some(request_id),
            ..Self::internal("session store error")
        }
    }
}

/// Shows an error with its causes, `outer: inner: innermost`, for the server log.
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runtime_failures_reach_the_client_without_their_details() {
        let err = RuntimeError::Create(
            "pico-agent exited before it was ready: /var/lib/pico/sessions/x/agent.log".into(),
        );
        let api = REQUEST_ID
            .scope("req-1".into(), async { ApiError::from(err) })
            .await;
        assert_eq!(api.code, ErrorCode::SandboxCreateFailed);
        assert!(!api.message.contains("/var/lib"), "{}", api.message);
        assert!(api.message.contains("req-1"), "{}", api.message);
        assert_eq!(api.body().request_id, "req-1");
    }

    #[test]
    fn report_shows_the_causes() {
        let io = std::io::Error::other("disk on fire");
        let err = RuntimeError::caused(FailureKind::Delete, "removing files", io);
        assert_eq!(
            Report(&err).to_string(),
            "sandbox could not be deleted: removing files: disk on fire"
        );
    }
}
