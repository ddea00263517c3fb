//! `POST/GET/DELETE /v1/sessions/{id}/files?path=P`: uploads and downloads streamed through
//! the agent's SFTP subsystem (never the host's file system), `Range`, directory listings.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pico_wire::{DirectoryListing, ErrorBody, ErrorCode, FileInfo, FileType, MessageResponse};
use serde::Deserialize;

use super::AppState;
use super::range::{ByteRange, parse_range};
use super::responses::FileErrors;
use crate::agent_client::{AgentError, FileError, Sftp};
use crate::auth::Caller;
use crate::error::ApiError;

/// `path` (or the original API's `filePath`), `overwrite`, `recursive`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// Relative to the sandbox user's home unless absolute (no NUL).
    #[param(
        required = true,
        min_length = 1,
        max_length = 4096,
        pattern = "^(?:[^/\\u0000]{0,255}/)*[^/\\u0000]{0,255}$"
    )]
    path: Option<String>,
    /// The original API's name for `path` (accepted, not advertised).
    #[param(ignore)]
    file_path: Option<String>,
    /// Upload: replace an existing file (default false).
    overwrite: Option<bool>,
    /// Delete: a directory with everything in it (default false).
    recursive: Option<bool>,
}

impl FileQuery {
    fn path(&self) -> Result<&str, ApiError> {
        let path = self
            .path
            .as_deref()
            .or(self.file_path.as_deref())
            .ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidPath, "query parameter path is required")
            })?;
        if path.is_empty() || path.len() > 4096 {
            return Err(ApiError::new(
                ErrorCode::InvalidPath,
                "path must be 1 to 4096 bytes",
            ));
        }
        if path.contains('\0') {
            return Err(ApiError::new(
                ErrorCode::InvalidPath,
                "path must not contain NUL bytes",
            ));
        }
        if path.split('/').any(|name| name.len() > NAME_MAX) {
            return Err(ApiError::new(
                ErrorCode::InvalidPath,
                format!("a path component must be at most {NAME_MAX} bytes"),
            ));
        }
        Ok(path)
    }
}

// Only its schema is used (the body is streamed, never deserialised); the form holds one part
// (others are skipped unread, and may not even be parsed).
/// A `multipart/form-data` upload: the file is the part named `file`.
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Longest file name Linux file systems take.
const NAME_MAX: usize = 255;

type FileQueryResult = Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>;

fn query(query: FileQueryResult) -> Result<FileQuery, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::invalid_request(format!("bad query: {}", e.body_text())))
}

pub fn agent_error(err: AgentError) -> ApiError {
    tracing::warn!(error = %err, "agent connection failed");
    ApiError::new(ErrorCode::SandboxUnreachable, err.to_string())
}

fn file_error(err: FileError) -> ApiError {
    let code = match &err {
        FileError::NotFound(_) => ErrorCode::FileNotFound,
        FileError::Exists(_) => ErrorCode::FileExists,
        FileError::NotEmpty(_) => ErrorCode::DirectoryNotEmpty,
        FileError::Denied(_) => ErrorCode::Forbidden,
        // The path is well-formed but what is there does not allow it (not a directory, …).
        FileError::Refused(_) => ErrorCode::PathConflict,
        FileError::TooLarge(_) => ErrorCode::PayloadTooLarge,
        FileError::Body(_) => ErrorCode::InvalidRequest,
        FileError::Sftp(_) => ErrorCode::SandboxUnreachable,
    };
    ApiError::new(code, err.to_string())
}

async fn sftp(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<std::sync::Arc<Sftp>, ApiError> {
    let id = super::sessions::session_id(id)?;
    let live = state.service.ready_session(caller, id).await?;
    let conn = state
        .agents
        .connection(state.service.runtime(), &live)
        .await
        .map_err(agent_error)?;
    conn.sftp().await.map_err(agent_error)
}

#[utoipa::path(post, path = "/v1/sessions/{id}/files", tag = "files",
    params(("id" = uuid::Uuid, Path, description = "Session id"), FileQuery),
    request_body(description = "The file's bytes, streamed (empty for an empty file): the \
        body itself, or the part named `file` of a multipart/form-data body",
        content((Option<Vec<u8>> = "application/octet-stream"), (UploadForm = "multipart/form-data"))),
    responses(
        (status = 201, description = "Written (parent directories made)", body = FileInfo),
        (status = 409, description = "FILE_EXISTS (overwrite=false) or PATH_CONFLICT", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE: over --max-upload-size; nothing is left behind", body = ErrorBody),
        FileErrors),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: FileQueryResult,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let path = q.path()?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let multipart = content_type
        .trim_start()
        .get(..10)
        .is_some_and(|e| e.eq_ignore_ascii_case("multipart/"));
    let max = state.max_upload_size;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A multipart body also carries its boundaries and part headers besides the file.
    let slack = if multipart { MULTIPART_SLACK } else { 0 };
    if max > 0 && declared.is_some_and(|len| len > max.saturating_add(slack)) {
        return Err(too_large(max));
    }
    let overwrite = q.overwrite.unwrap_or(false);
    let written = if multipart {
        let boundary = multer::parse_boundary(content_type)
            .map_err(|e| ApiError::invalid_request(format!("bad multipart Content-Type: {e}")))?;
        let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
        let file = file_field(&mut form).await?;
        let sftp = sftp(&state, &caller, &id).await?;
        sftp.upload(path, Box::pin(file), overwrite, max).await
    } else {
        let sftp = sftp(&state, &caller, &id).await?;
        sftp.upload(path, body.into_data_stream(), overwrite, max)
            .await
    };
    let info = written.map_err(|e| match e {
        FileError::TooLarge(_) => too_large(max),
        other => file_error(other),
    })?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// Room for a multipart body's framing beyond `--max-upload-size` in the early
/// `Content-Length` check; the file's own bytes are held to the limit exactly.
const MULTIPART_SLACK: u64 = 64 * 1024;

/// The part named `file` of a `multipart/form-data` body (the original API's field), ready to
/// stream; parts before it are skipped unread.
async fn file_field<'r>(form: &mut multer::Multipart<'r>) -> Result<multer::Field<'r>, ApiError> {
    loop {
        match form.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => return Ok(field),
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(ApiError::invalid_request(
                    "the multipart body has no part named file",
                ));
            }
            Err(e) => {
                return Err(ApiError::invalid_request(format!(
                    "bad multipart body: {e}"
                )));
            }
        }
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("uploads are limited to {max} bytes (--max-upload-size)"),
    )
    .with_details(serde_json::json!({"max": max}))
}

#[utoipa::path(get, path = "/v1/sessions/{id}/files", tag = "files",
    params(("id" = uuid::Uuid, Path, description = "Session id"), FileQuery,
        ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=0-1023")),
    responses(
        (status = 200, description = "The file's bytes, or for a directory its listing",
            content((Vec<u8> = "application/octet-stream"), (DirectoryListing = "application/json"))),
        (status = 206, description = "The requested range", body = Vec<u8>,
            content_type = "application/octet-stream"),
        (status = 409, description = "PATH_CONFLICT (e.g. a parent is a file)", body = ErrorBody),
        (status = 416, description = "RANGE_NOT_SATISFIABLE", body = ErrorBody),
        FileErrors),
    security(("bearer" = [])))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: FileQueryResult,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let path = q.path()?;
    let sftp = sftp(&state, &caller, &id).await?;
    let info = sftp.stat(path).await.map_err(file_error)?;
    if info.kind == FileType::Directory {
        let entries = sftp.list(path).await.map_err(file_error)?;
        return Ok(Json(DirectoryListing {
            path: path.to_owned(),
            entries,
        })
        .into_response());
    }
    let size = info.size;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(text) => parse_range(text, size),
        None => ByteRange::Whole,
    };
    let (status, start, len) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, size),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            let mut response = ApiError::new(
                ErrorCode::RangeNotSatisfiable,
                format!("the file has {size} bytes"),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    let stream = sftp.read(path, start, len).await.map_err(file_error)?;
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&info.name)) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `attachment; filename="…"` with an ASCII fallback and the exact name in `filename*`.
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[utoipa::path(delete, path = "/v1/sessions/{id}/files", tag = "files",
    params(("id" = uuid::Uuid, Path, description = "Session id"), FileQuery),
    responses(
        (status = 200, description = "Deleted", body = MessageResponse),
        (status = 409, description = "DIRECTORY_NOT_EMPTY (without recursive=true) or PATH_CONFLICT", body = ErrorBody),
        FileErrors),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: FileQueryResult,
) -> Result<Json<MessageResponse>, ApiError> {
    let q = query(q)?;
    let path = q.path()?;
    let sftp = sftp(&state, &caller, &id).await?;
    sftp.remove(path, q.recursive.unwrap_or(false))
        .await
        .map_err(file_error)?;
    Ok(Json(MessageResponse {
        message: format!("{path} deleted"),
    }))
}
