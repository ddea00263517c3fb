//! Background processes (DESIGN.md §13): `POST …/commands` with `"background": true` and
//! `…/processes[/{pid}[/output|/stdin|/signal]]`. The table and the retained output live in
//! the sandbox's agent (its `pico-processes` subsystem), so they survive a server restart.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pico_wire::{
    CommandRequest, ErrorBody, ErrorCode, ProcessInfo, ProcessList, ProcessState, SignalRequest,
    StartedProcess, StdinResult,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::body::OptionalJson;
use super::exec::NDJSON;
use crate::agent_client::{AgentConn, ProcCallError, ProcOutput};
use crate::auth::Caller;
use crate::error::ApiError;

pub fn routes(prefix: &str) -> axum::Router<AppState> {
    axum::Router::new()
        .route(&format!("{prefix}/{{id}}/processes"), get(list))
        .route(&format!("{prefix}/{{id}}/processes/{{pid}}"), get(one))
        .route(
            &format!("{prefix}/{{id}}/processes/{{pid}}/output"),
            get(output),
        )
        .route(
            &format!("{prefix}/{{id}}/processes/{{pid}}/stdin"),
            post(stdin),
        )
        .route(
            &format!("{prefix}/{{id}}/processes/{{pid}}/signal"),
            post(signal),
        )
}

fn call_error(err: ProcCallError) -> ApiError {
    match err {
        ProcCallError::Agent(err) => super::files::agent_error(err),
        ProcCallError::Refused { code, message } => {
            let code = match code.as_str() {
                "PROCESS_NOT_FOUND" => ErrorCode::ProcessNotFound,
                "PROCESS_EXITED" => ErrorCode::ProcessExited,
                "INVALID_SIGNAL" => ErrorCode::InvalidSignal,
                "TOO_MANY_PROCESSES" => ErrorCode::TooManyProcesses,
                "INVALID_REQUEST" => ErrorCode::InvalidRequest,
                _ => ErrorCode::InternalError,
            };
            ApiError::new(code, message)
        }
    }
}

async fn agent(state: &AppState, caller: &Caller, id: &str) -> Result<Arc<AgentConn>, ApiError> {
    let id = super::sessions::session_id(id)?;
    let live = state.service.ready_session(caller, id).await?;
    state
        .agents
        .connection(state.service.runtime(), &live)
        .await
        .map_err(super::files::agent_error)
}

async fn call(conn: &Arc<AgentConn>, request: Value) -> Result<Value, ApiError> {
    let (answer, _) = conn
        .procs_call(&request, None, false)
        .await
        .map_err(call_error)?;
    Ok(answer)
}

/// A pid as the path gives it; anything else names no process.
fn pid(text: &str) -> Result<i32, ApiError> {
    text.parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ProcessNotFound,
                format!("no background process {text:?}"),
            )
        })
}

fn parse<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::internal(format!("bad answer from the agent: {e}")))
}

/// The agent's description of a process, in the API's shape.
fn info(value: Value) -> Result<ProcessInfo, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        process_id: String,
        pid: i32,
        command: String,
        started_at_ms: u64,
        state: ProcessState,
        exit_code: Option<i32>,
        stdout_bytes: u64,
        stderr_bytes: u64,
    }
    let raw: Raw = parse(value)?;
    let nanos = i128::from(raw.started_at_ms) * 1_000_000;
    let started_at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    Ok(ProcessInfo {
        process_id: raw.process_id,
        pid: raw.pid,
        command: raw.command,
        started_at,
        state: raw.state,
        exit_code: raw.exit_code,
        stdout_bytes: raw.stdout_bytes,
        stderr_bytes: raw.stderr_bytes,
    })
}

/// `POST …/commands` with `"background": true` (called by the commands handler).
pub async fn start(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: CommandRequest,
) -> Result<Response, ApiError> {
    let line = super::exec::command_line(&body.command, &body.env, body.cwd.as_deref())?;
    let conn = agent(state, caller, id).await?;
    let request = json!({"op": "start", "command": line, "max": state.max_processes});
    let started: StartedProcess = parse(call(&conn, request).await?)?;
    if let Some(input) = body.stdin.filter(|s| !s.is_empty()) {
        let request = json!({"op": "stdin", "pid": started.pid, "close": false});
        match conn
            .procs_call(&request, Some(Bytes::from(input)), false)
            .await
        {
            // It ended before reading: it started all the same, and its exit tells the rest.
            Err(ProcCallError::Refused { code, .. }) if code == "PROCESS_EXITED" => {}
            other => {
                other.map_err(call_error)?;
            }
        }
    }
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

#[utoipa::path(get, path = "/v1/sessions/{id}/processes", tag = "processes",
    params(("id" = uuid::Uuid, Path, description = "Session id")),
    responses(
        (status = 200, description = "Background processes, running and recently exited", body = ProcessList),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND", body = ErrorBody),
        (status = 502, description = "SANDBOX_UNREACHABLE", body = ErrorBody),
        (status = 503, description = "SESSION_NOT_READY", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ProcessList>, ApiError> {
    let conn = agent(&state, &caller, &id).await?;
    let answer = call(&conn, json!({"op": "list"})).await?;
    let processes = match answer {
        Value::Array(all) => all.into_iter().map(info).collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    Ok(Json(ProcessList { processes }))
}

#[utoipa::path(get, path = "/v1/sessions/{id}/processes/{pid}", tag = "processes",
    params(("id" = uuid::Uuid, Path, description = "Session id"),
        ("pid" = i32, Path, description = "Process id inside the sandbox")),
    responses(
        (status = 200, description = "The process", body = ProcessInfo),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND or PROCESS_NOT_FOUND", body = ErrorBody),
        (status = 502, description = "SANDBOX_UNREACHABLE", body = ErrorBody),
        (status = 503, description = "SESSION_NOT_READY", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pid_text)): Path<(String, String)>,
) -> Result<Json<ProcessInfo>, ApiError> {
    let pid = pid(&pid_text)?;
    let conn = agent(&state, &caller, &id).await?;
    Ok(Json(info(
        call(&conn, json!({"op": "get", "pid": pid})).await?,
    )?))
}

/// `offset`, `stderrOffset`, `follow`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// Byte offset in stdout to start from (default 0).
    #[param(minimum = 0)]
    offset: Option<u64>,
    /// Byte offset in stderr to start from (default 0).
    #[param(minimum = 0)]
    stderr_offset: Option<u64>,
    /// Keep streaming new output until the process is done (default false).
    follow: Option<bool>,
}

#[utoipa::path(get, path = "/v1/sessions/{id}/processes/{pid}/output", tag = "processes",
    params(("id" = uuid::Uuid, Path, description = "Session id"),
        ("pid" = i32, Path, description = "Process id inside the sandbox"), OutputQuery),
    responses(
        (status = 200, description = "NDJSON: `{\"stdout\"|\"stderr\": text, \"offset\", \"end\"}` \
            per chunk (byte offsets in that stream), `{\"dropped\": n, \"stream\", \"offset\"}` when \
            bytes asked for are no longer retained, `{\"exit\": …}` last once the process is done",
            body = String, content_type = "application/x-ndjson"),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND or PROCESS_NOT_FOUND", body = ErrorBody),
        (status = 502, description = "SANDBOX_UNREACHABLE", body = ErrorBody),
        (status = 503, description = "SESSION_NOT_READY", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn output(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pid_text)): Path<(String, String)>,
    query: Result<Query<OutputQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::invalid_request(format!("bad query: {}", e.body_text())))?;
    let pid = pid(&pid_text)?;
    let conn = agent(&state, &caller, &id).await?;
    let request = json!({"op": "output", "pid": pid, "offset": q.offset.unwrap_or(0),
        "stderrOffset": q.stderr_offset.unwrap_or(0), "follow": q.follow.unwrap_or(false)});
    // The channel stays open: dropping the body (the client went away) closes it and ends
    // the agent's follow.
    let (_, events): (Value, ProcOutput) = conn
        .procs_call(&request, None, true)
        .await
        .map_err(call_error)?;
    let mut response = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(events)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `close`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StdinQuery {
    /// Close the process's stdin after writing the body (default false).
    close: Option<bool>,
}

#[utoipa::path(post, path = "/v1/sessions/{id}/processes/{pid}/stdin", tag = "processes",
    params(("id" = uuid::Uuid, Path, description = "Session id"),
        ("pid" = i32, Path, description = "Process id inside the sandbox"), StdinQuery),
    request_body(content = Option<Vec<u8>>, content_type = "application/octet-stream",
        description = "Bytes for the process's stdin (may be empty, e.g. with close=true)"),
    responses(
        (status = 200, description = "Written", body = StdinResult),
        (status = 400, description = "INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND or PROCESS_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "PROCESS_EXITED: exited, or its stdin is closed", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorBody),
        (status = 502, description = "SANDBOX_UNREACHABLE", body = ErrorBody),
        (status = 503, description = "SESSION_NOT_READY", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stdin(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pid_text)): Path<(String, String)>,
    query: Result<Query<StdinQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Json<StdinResult>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::invalid_request(format!("bad query: {}", e.body_text())))?;
    let pid = pid(&pid_text)?;
    let conn = agent(&state, &caller, &id).await?;
    let request = json!({"op": "stdin", "pid": pid, "close": q.close.unwrap_or(false)});
    let (answer, _) = conn
        .procs_call(&request, Some(body), false)
        .await
        .map_err(call_error)?;
    Ok(Json(parse(answer)?))
}

#[utoipa::path(post, path = "/v1/sessions/{id}/processes/{pid}/signal", tag = "processes",
    params(("id" = uuid::Uuid, Path, description = "Session id"),
        ("pid" = i32, Path, description = "Process id inside the sandbox")),
    request_body = SignalRequest,
    responses(
        (status = 200, description = "Sent to the process's whole process group", body = SignalRequest),
        (status = 400, description = "INVALID_SIGNAL or INVALID_REQUEST", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED", body = ErrorBody),
        (status = 404, description = "SESSION_NOT_FOUND or PROCESS_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "PROCESS_EXITED", body = ErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE", body = ErrorBody),
        (status = 502, description = "SANDBOX_UNREACHABLE", body = ErrorBody),
        (status = 503, description = "SESSION_NOT_READY", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn signal(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, pid_text)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<SignalRequest>,
) -> Result<Json<SignalRequest>, ApiError> {
    let body = body.ok_or_else(|| ApiError::invalid_request("body {\"signal\": …} is required"))?;
    if body.signal.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidSignal,
            "signal must not be empty",
        ));
    }
    let pid = pid(&pid_text)?;
    let conn = agent(&state, &caller, &id).await?;
    call(
        &conn,
        json!({"op": "signal", "pid": pid, "signal": body.signal}),
    )
    .await?;
    Ok(Json(body))
}
