//! Request, response and error types of the pico REST API (`docs/API.md`), shared by the
//! server and its clients. Field names are camelCase on the wire.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

pub mod exec;
pub mod integer;
pub mod process;
pub mod signal;
pub mod timestamp;

pub use exec::{
    CodeRequest, CommandRequest, CommandResult, CommandStatus, DirectoryListing, ExitEvent,
    FileInfo, FileType, Language, StreamEvent,
};
pub use process::{
    ProcessInfo, ProcessList, ProcessState, SignalRequest, StartedProcess, StdinResult,
};

/// Default session lifetime in seconds.
pub const DEFAULT_TTL: u64 = 3600;
/// Smallest TTL a client may ask for, in seconds.
pub const MIN_TTL: u64 = 60;
/// Largest TTL a client may ask for, in seconds (`--max-ttl` may lower it).
pub const MAX_TTL: u64 = 28_800;
/// Default and bounds of `limit` when listing sessions.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

/// Body of `POST /v1/sessions`; every field is optional and an empty body means all defaults.
/// Unknown fields are refused (a misspelled `tll` would otherwise silently mean the default).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// Lifetime in seconds (60..=28800, default 3600).
    #[schema(minimum = 60, maximum = 28800)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integer::option::deserialize"
    )]
    pub ttl: Option<u64>,
    /// Container image (recorded by the local runtime, pulled by the Kubernetes runtime).
    #[schema(min_length = 1, max_length = 512, pattern = "^[!-~]+$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// OpenSSH public key allowed to log in (ed25519, ecdsa or rsa ≥ 2048 bits), as one
    /// `type base64 [comment]` line; when absent the server makes a key pair.
    #[schema(format = "ssh-public-key", min_length = 1, max_length = 16384)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
    /// Free-form labels of the caller, returned as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Seconds without tunnel traffic after which the session is deleted; 0 = never.
    #[schema(minimum = 0, maximum = 28800)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integer::option::deserialize"
    )]
    pub idle_timeout: Option<u64>,
    /// What the idle timeout does: `delete` the session (default) or `pause` it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_action: Option<IdleAction>,
}

/// What happens to a session that has been idle for its `idleTimeout`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdleAction {
    /// Deleted, with everything in it.
    #[default]
    Delete,
    /// Paused: its processes stop, its memory and files stay until the TTL ends it.
    Pause,
}

/// Body of `PATCH /v1/sessions/{id}`; unknown fields are refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtendSessionRequest {
    /// New lifetime counted from now, in seconds.
    #[schema(minimum = 60, maximum = 28800)]
    #[serde(deserialize_with = "integer::deserialize")]
    pub ttl: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Pending,
    Running,
    /// Every process of the sandbox is stopped; memory and files are kept (`POST …/resume`,
    /// or any tunnel, exec or file call, continues it).
    Paused,
    Failed,
    Terminating,
}

/// How to reach the session's SSH server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshInfo {
    pub username: String,
    /// The sandbox's SSH host keys in OpenSSH public-key form, for host-key verification.
    pub host_keys: Vec<String>,
    /// Path to `CONNECT` to for a byte tunnel to the SSH server.
    pub tunnel_path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub session_id: Uuid,
    pub status: SessionStatus,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub last_activity_at: OffsetDateTime,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    #[schema(nullable = true)]
    pub image: Option<String>,
    pub ttl: u64,
    pub idle_timeout: u64,
    pub idle_action: IdleAction,
    /// When the session was last paused; `null` unless `status` is `paused`.
    #[serde(default, with = "timestamp::option")]
    #[schema(value_type = Option<String>, format = DateTime, nullable = true)]
    pub paused_at: Option<OffsetDateTime>,
    pub ssh: SshInfo,
    /// While a `pending` session's image is pulled for the first time: bytes so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull: Option<ImagePull>,
    /// The server-made private key (OpenSSH format); present only in the create response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_private_key: Option<String>,
}

/// Progress of an image pull (compressed bytes of its layers; cached layers count as done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePull {
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// One image of the local runtime's cache (`GET /v1/images`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// The reference it was pulled as, normalised (`docker.io/library/python:3.11`).
    pub reference: String,
    /// The manifest digest.
    pub digest: String,
    /// Compressed bytes of its layers.
    pub size: u64,
    pub layers: u32,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub pulled_at: OffsetDateTime,
    /// Sessions that run on it now.
    pub sessions: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageList {
    pub images: Vec<ImageInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    pub sessions: Vec<Session>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageResponse {
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    pub status: String,
}

/// Machine-readable error codes of the error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidTtl,
    InvalidLimit,
    InvalidSshKey,
    Unauthorized,
    Forbidden,
    NotFound,
    SessionNotFound,
    SessionNotReady,
    SandboxCreateFailed,
    SandboxTimeout,
    SandboxDeleteFailed,
    SandboxUnreachable,
    QuotaExceeded,
    RateLimited,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    InternalError,
    Unavailable,
    /// A request body that stalled or trickled (`--body-read-timeout`, `--body-min-rate`).
    RequestTimeout,
    /// A request head over the server's limit.
    HeadersTooLarge,
    UriTooLong,
    /// The server's (or the client address's) connection cap is reached.
    TooManyConnections,
    InvalidTimeout,
    InvalidLanguage,
    InvalidPath,
    FileNotFound,
    FileExists,
    DirectoryNotEmpty,
    PathConflict,
    RangeNotSatisfiable,
    /// No background process with that pid (or it was forgotten after its exit).
    ProcessNotFound,
    /// The background process has exited (or closed its stdin).
    ProcessExited,
    InvalidSignal,
    /// The session's cap of background processes is reached.
    TooManyProcesses,
    /// The session's status does not allow the operation (e.g. pausing a pending session).
    InvalidState,
    /// The session's image cannot be pulled (unknown, access refused, digest mismatch,
    /// registry unreachable); the message says which.
    ImagePullFailed,
}

impl ErrorCode {
    /// The HTTP status every response with this code carries; the server's only mapping.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest
            | Self::InvalidTtl
            | Self::InvalidLimit
            | Self::InvalidSshKey
            | Self::InvalidTimeout
            | Self::InvalidLanguage
            | Self::InvalidPath
            | Self::InvalidSignal => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound | Self::SessionNotFound | Self::FileNotFound | Self::ProcessNotFound => {
                404
            }
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::UriTooLong => 414,
            Self::HeadersTooLarge => 431,
            Self::FileExists
            | Self::DirectoryNotEmpty
            | Self::PathConflict
            | Self::ProcessExited
            | Self::InvalidState => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::RangeNotSatisfiable => 416,
            Self::ImagePullFailed => 422,
            Self::QuotaExceeded | Self::RateLimited | Self::TooManyProcesses => 429,
            Self::SandboxCreateFailed | Self::SandboxDeleteFailed | Self::InternalError => 500,
            Self::SandboxUnreachable => 502,
            Self::SessionNotReady | Self::Unavailable | Self::TooManyConnections => 503,
            Self::SandboxTimeout => 504,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::InvalidTtl => "INVALID_TTL",
            Self::InvalidLimit => "INVALID_LIMIT",
            Self::InvalidSshKey => "INVALID_SSH_KEY",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::SessionNotFound => "SESSION_NOT_FOUND",
            Self::SessionNotReady => "SESSION_NOT_READY",
            Self::SandboxCreateFailed => "SANDBOX_CREATE_FAILED",
            Self::SandboxTimeout => "SANDBOX_TIMEOUT",
            Self::SandboxDeleteFailed => "SANDBOX_DELETE_FAILED",
            Self::SandboxUnreachable => "SANDBOX_UNREACHABLE",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::RateLimited => "RATE_LIMITED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::InternalError => "INTERNAL_ERROR",
            Self::Unavailable => "UNAVAILABLE",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Self::UriTooLong => "URI_TOO_LONG",
            Self::TooManyConnections => "TOO_MANY_CONNECTIONS",
            Self::InvalidTimeout => "INVALID_TIMEOUT",
            Self::InvalidLanguage => "INVALID_LANGUAGE",
            Self::InvalidPath => "INVALID_PATH",
            Self::FileNotFound => "FILE_NOT_FOUND",
            Self::FileExists => "FILE_EXISTS",
            Self::DirectoryNotEmpty => "DIRECTORY_NOT_EMPTY",
            Self::PathConflict => "PATH_CONFLICT",
            Self::RangeNotSatisfiable => "RANGE_NOT_SATISFIABLE",
            Self::ProcessNotFound => "PROCESS_NOT_FOUND",
            Self::ProcessExited => "PROCESS_EXITED",
            Self::InvalidSignal => "INVALID_SIGNAL",
            Self::TooManyProcesses => "TOO_MANY_PROCESSES",
            Self::InvalidState => "INVALID_STATE",
            Self::ImagePullFailed => "IMAGE_PULL_FAILED",
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: OffsetDateTime,
    pub request_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_create_request_is_all_defaults() {
        let req: CreateSessionRequest = serde_json::from_str("{}").expect("parse");
        assert!(req.ttl.is_none() && req.ssh_public_key.is_none() && req.metadata.is_none());
    }

    #[test]
    fn error_codes_own_the_statuses_the_contract_gives_them() {
        for (code, status) in [
            (ErrorCode::InvalidTtl, 400),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::SessionNotFound, 404),
            (ErrorCode::PayloadTooLarge, 413),
            (ErrorCode::QuotaExceeded, 429),
            (ErrorCode::SandboxUnreachable, 502),
            (ErrorCode::SessionNotReady, 503),
            (ErrorCode::InvalidTimeout, 400),
            (ErrorCode::FileNotFound, 404),
            (ErrorCode::FileExists, 409),
        ] {
            assert_eq!(code.http_status(), status, "{}", code.as_str());
        }
    }

    #[test]
    fn error_code_serializes_like_as_str() {
        for code in [
            ErrorCode::InvalidLimit,
            ErrorCode::SessionNotFound,
            ErrorCode::QuotaExceeded,
        ] {
            let json = serde_json::to_value(code).expect("serialize");
            assert_eq!(json, Value::String(code.as_str().to_owned()));
        }
    }
}
