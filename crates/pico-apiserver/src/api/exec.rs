//! `POST /v1/sessions/{id}/commands` and `…/code`: a command or a snippet run inside the
//! sandbox over the server's shared agent connection, answered whole (capped) or streamed as
//! NDJSON lines.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use pico_wire::{
    CodeRequest, CommandRequest, CommandResult, ErrorBody, ErrorCode, ExitEvent, Language,
    StreamEvent,
};

use super::AppState;
use super::body::OptionalJson;
use super::exec_output::{Capped, Utf8Stream};
use super::responses::{BodyErrors, SandboxErrors};
use crate::agent_client::{ExecOutput, ExecSpec, Execution};
use crate::auth::Caller;
use crate::error::ApiError;

pub const NDJSON: &str = "application/x-ndjson";

fn check_timeout(timeout: Option<u64>) -> Result<Duration, ApiError> {
    let secs = timeout.unwrap_or(pico_wire::exec::DEFAULT_EXEC_TIMEOUT);
    let (min, max) = (
        pico_wire::exec::MIN_EXEC_TIMEOUT,
        pico_wire::exec::MAX_EXEC_TIMEOUT,
    );
    if !(min..=max).contains(&secs) {
        return Err(ApiError::new(
            ErrorCode::InvalidTimeout,
            format!("timeout must be between {min} and {max} seconds"),
        )
        .with_details(serde_json::json!({"min": min, "max": max, "got": secs})));
    }
    Ok(Duration::from_secs(secs))
}

/// Single-quoted for `/bin/sh`.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn no_nul(what: &str, text: &str) -> Result<(), ApiError> {
    if text.contains('\0') {
        return Err(ApiError::invalid_request(format!(
            "{what} must not contain NUL bytes"
        )));
    }
    Ok(())
}

/// The line the agent's `/bin/sh -c` runs: the command as given, or wrapped to set the
/// environment and working directory first.
pub(super) fn command_line(
    command: &str,
    env: &BTreeMap<String, String>,
    cwd: Option<&str>,
) -> Result<String, ApiError> {
    no_nul("command", command)?;
    if env.is_empty() && cwd.is_none() {
        return Ok(command.to_owned());
    }
    let mut line = String::new();
    for (name, value) in env {
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(ApiError::invalid_request(format!(
                "env: {name:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )));
        }
        no_nul("env values", value)?;
        line.push_str(&format!("{name}={}; export {name}; ", quote(value)));
    }
    if let Some(cwd) = cwd {
        if cwd.is_empty() {
            return Err(ApiError::invalid_request("cwd must not be empty"));
        }
        no_nul("cwd", cwd)?;
        line.push_str(&format!("cd -- {} || exit 1; ", quote(cwd)));
    }
    line.push_str(&format!("exec /bin/sh -c {}", quote(command)));
    Ok(line)
}

#[utoipa::path(post, path = "/v1/sessions/{id}/commands", tag = "exec",
    params(("id" = uuid::Uuid, Path, description = "Session id")),
    request_body = CommandRequest,
    responses(
        (status = 200, description = "The command's result; with `Accept: application/x-ndjson` \
            one StreamEvent per line as output happens, the exit last", body = CommandResult,
            content_type = "application/json"),
        (status = 202, description = "`background: true`: started; see `…/processes/{pid}`",
            body = pico_wire::StartedProcess),
        (status = 400, description = "INVALID_REQUEST or INVALID_TIMEOUT", body = ErrorBody),
        (status = 429, description = "TOO_MANY_PROCESSES (background)", body = ErrorBody),
        SandboxErrors, BodyErrors),
    security(("bearer" = [])))]
pub async fn commands(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<CommandRequest>,
) -> Result<Response, ApiError> {
    let body =
        body.ok_or_else(|| ApiError::invalid_request("body {\"command\": …} is required"))?;
    if body.command.trim().is_empty() {
        return Err(ApiError::invalid_request("command must not be empty"));
    }
    if body.background {
        return super::processes::start(&state, &caller, &id, body).await;
    }
    let timeout = check_timeout(body.timeout)?;
    let line = command_line(&body.command, &body.env, body.cwd.as_deref())?;
    let spec = ExecSpec {
        command_line: line,
        stdin: body.stdin.map(Bytes::from),
        timeout,
    };
    run(&state, &caller, &id, spec, wants_stream(&headers)).await
}

#[utoipa::path(post, path = "/v1/sessions/{id}/code", tag = "exec",
    params(("id" = uuid::Uuid, Path, description = "Session id")),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "The interpreter's result (exit 127 when the sandbox \
            lacks it); NDJSON lines with `Accept: application/x-ndjson`", body = CommandResult),
        (status = 400, description = "INVALID_REQUEST, INVALID_LANGUAGE or INVALID_TIMEOUT", body = ErrorBody),
        SandboxErrors, BodyErrors),
    security(("bearer" = [])))]
pub async fn code(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<CodeRequest>,
) -> Result<Response, ApiError> {
    let body = body.ok_or_else(|| ApiError::invalid_request("body {\"code\": …} is required"))?;
    let language = match body.language.as_deref() {
        None => Language::Python,
        Some(name) => Language::parse(name).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidLanguage,
                format!("unknown language {name:?}: use python, javascript or bash"),
            )
        })?,
    };
    if body.code.trim().is_empty() {
        return Err(ApiError::invalid_request("code must not be empty"));
    }
    let timeout = check_timeout(body.timeout)?;
    // The program comes on stdin: no argument-length limit, no quoting.
    let line = match language {
        Language::Python => "python3 -",
        Language::Javascript => "node -",
        Language::Bash => "bash -s",
    };
    let spec = ExecSpec {
        command_line: line.to_owned(),
        stdin: Some(Bytes::from(body.code)),
        timeout,
    };
    run(&state, &caller, &id, spec, wants_stream(&headers)).await
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(NDJSON))
}

async fn run(
    state: &AppState,
    caller: &Caller,
    id: &str,
    spec: ExecSpec,
    stream: bool,
) -> Result<Response, ApiError> {
    let id = super::sessions::session_id(id)?;
    let live = state.service.ready_session(caller, id).await?;
    let conn = state
        .agents
        .connection(state.service.runtime(), &live)
        .await
        .map_err(super::files::agent_error)?;
    let execution = conn.exec(spec).await.map_err(super::files::agent_error)?;
    if stream {
        return Ok(streamed(execution));
    }
    Ok(Json(buffered(execution).await).into_response())
}

/// Collects the whole result; output past the cap is read and dropped, so the command runs
/// to its end and the server's memory stays bounded.
async fn buffered(mut execution: Execution) -> CommandResult {
    let mut stdout = Capped::default();
    let mut stderr = Capped::default();
    let mut exit = None;
    while let Some(out) = execution.next().await {
        match out {
            ExecOutput::Stdout(data) => stdout.push(&data),
            ExecOutput::Stderr(data) => stderr.push(&data),
            ExecOutput::Exit(event) => exit = Some(event),
        }
    }
    let exit = exit.unwrap_or(ExitEvent {
        status: pico_wire::CommandStatus::Failed,
        exit_code: None,
        duration_ms: 0,
    });
    let truncated = stdout.truncated || stderr.truncated;
    CommandResult {
        status: exit.status,
        exit_code: exit.exit_code,
        stdout: stdout.into_string(),
        stderr: stderr.into_string(),
        duration_ms: exit.duration_ms,
        truncated,
    }
}

fn line(event: &StreamEvent) -> Bytes {
    let mut json = serde_json::to_vec(event).unwrap_or_default();
    json.push(b'\n');
    Bytes::from(json)
}

/// One NDJSON line per output chunk as it comes; the response body owns the execution, so a
/// client that goes away drops it and the command is killed.
fn streamed(execution: Execution) -> Response {
    struct State {
        execution: Execution,
        stdout: Utf8Stream,
        stderr: Utf8Stream,
        done: bool,
    }
    let state = State {
        execution,
        stdout: Utf8Stream::default(),
        stderr: Utf8Stream::default(),
        done: false,
    };
    let lines = futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let event = match st.execution.next().await? {
                ExecOutput::Stdout(data) => st.stdout.push(&data).map(StreamEvent::Stdout),
                ExecOutput::Stderr(data) => st.stderr.push(&data).map(StreamEvent::Stderr),
                ExecOutput::Exit(exit) => {
                    st.done = true;
                    // Incomplete UTF-8 left at the end is flushed (replaced) before the exit.
                    let mut out = Vec::new();
                    if let Some(rest) = st.stdout.finish() {
                        out.extend_from_slice(&line(&StreamEvent::Stdout(rest)));
                    }
                    if let Some(rest) = st.stderr.finish() {
                        out.extend_from_slice(&line(&StreamEvent::Stderr(rest)));
                    }
                    out.extend_from_slice(&line(&StreamEvent::Exit(exit)));
                    return Some((Ok::<_, std::convert::Infallible>(Bytes::from(out)), st));
                }
            };
            if let Some(event) = event {
                return Some((Ok(line(&event)), st));
            }
        }
    });
    let mut response = Response::new(Body::from_stream(lines));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_commands_pass_unchanged_and_env_is_quoted() {
        let none = BTreeMap::new();
        assert_eq!(
            command_line("echo hi", &none, None).ok().as_deref(),
            Some("echo hi")
        );
        let env = BTreeMap::from([("A".to_owned(), "it's".to_owned())]);
        let line = command_line("echo $A", &env, Some("dir")).expect("line");
        assert_eq!(
            line,
            r"A='it'\''s'; export A; cd -- 'dir' || exit 1; exec /bin/sh -c 'echo $A'"
        );
        let bad = BTreeMap::from([("1A".to_owned(), String::new())]);
        assert!(command_line("true", &bad, None).is_err());
        assert!(command_line("a\0b", &none, None).is_err());
    }
}
