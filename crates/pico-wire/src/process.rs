//! Types of the background-process endpoints (DESIGN.md §13): `…/commands` with
//! `"background": true` and `…/processes`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Default of the server's `--max-processes-per-session`.
pub const DEFAULT_MAX_PROCESSES: u16 = 32;

/// `202` answer of a background `POST …/commands`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartedProcess {
    pub process_id: String,
    /// The process id inside the sandbox; the `{pid}` of the `…/processes/{pid}` paths.
    pub pid: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    Running,
    Exited,
}

/// One background process, running or exited (kept for a while after its exit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInfo {
    pub process_id: String,
    pub pid: i32,
    pub command: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub state: ProcessState,
    /// Exit code (128+n for a signal) once exited.
    pub exit_code: Option<i32>,
    /// Bytes written to stdout so far (the end offset of the stream).
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

/// `GET …/processes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProcessList {
    pub processes: Vec<ProcessInfo>,
}

/// Body of `POST …/processes/{pid}/signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignalRequest {
    /// `TERM`, `KILL`, `INT`, `HUP`, `QUIT`, `USR1`, `USR2`, … (also `SIGTERM`).
    #[schema(
        pattern = "^(SIG)?(ABRT|ALRM|FPE|HUP|ILL|INT|KILL|PIPE|QUIT|SEGV|TERM|USR1|USR2|BUS|SYS|TRAP|XCPU|XFSZ)$"
    )]
    pub signal: String,
}

/// Answer of `POST …/processes/{pid}/stdin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StdinResult {
    /// Bytes written to the process's stdin.
    pub written: u64,
}
