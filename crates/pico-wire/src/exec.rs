//! Types of the exec, code and file endpoints of a session: `…/commands`, `…/code`,
//! `…/files` (docs/API.md, "Exec and files over HTTP").

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Default and bounds of `timeout` of a command or code run, in seconds.
pub const DEFAULT_EXEC_TIMEOUT: u64 = 60;
pub const MIN_EXEC_TIMEOUT: u64 = 1;
pub const MAX_EXEC_TIMEOUT: u64 = 300;

/// Body of `POST /v1/sessions/{id}/commands`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandRequest {
    /// Run by `/bin/sh -c` inside the sandbox, as the sandbox user (not blank, no NUL).
    #[schema(min_length = 1, pattern = "^[^\\u0000]*\\S[^\\u0000]*$")]
    pub command: String,
    /// Seconds until the command's whole process group is killed (1..=300, default 60).
    #[schema(minimum = 1, maximum = 300)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integer::option::deserialize"
    )]
    pub timeout: Option<u64>,
    /// Variables added to the command's environment.
    #[schema(schema_with = env_schema)]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory (relative to the home directory unless absolute); default: home.
    #[schema(min_length = 1, pattern = "^[^\\u0000]+$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Written to the command's standard input, which is then closed (for a background
    /// command: left open, see `…/processes/{pid}/stdin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Start in the background and answer `202 {"processId", "pid"}` at once; `timeout` is
    /// then ignored (DESIGN.md §13).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub background: bool,
}

/// `env`: shell variable names to strings without NUL.
fn env_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let string = |pattern: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Variables added to the command's environment."))
        .property_names(Some(string("^[A-Za-z_][A-Za-z0-9_]*$")))
        .additional_properties(Some(string("^[^\\u0000]*$")))
        .build()
}

/// Interpreters of `POST …/code`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Python,
    Javascript,
    Bash,
}

impl Language {
    /// The interpreter the sandbox runs the code with.
    pub fn interpreter(self) -> &'static str {
        match self {
            Self::Python => "python3",
            Self::Javascript => "node",
            Self::Bash => "bash",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "python" | "python3" => Some(Self::Python),
            "javascript" | "js" | "node" => Some(Self::Javascript),
            "bash" | "sh" => Some(Self::Bash),
            _ => None,
        }
    }
}

/// Body of `POST /v1/sessions/{id}/code`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeRequest {
    /// `python` (default), `javascript` or `bash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Language>)]
    pub language: Option<String>,
    /// The program (not blank).
    #[schema(min_length = 1, pattern = "\\S")]
    pub code: String,
    /// Seconds until the interpreter's whole process group is killed (1..=300, default 60).
    #[schema(minimum = 1, maximum = 300)]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::integer::option::deserialize"
    )]
    pub timeout: Option<u64>,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    /// Exit code 0.
    Completed,
    /// Another exit code, or killed by a signal (`exitCode` 128+n).
    Failed,
    /// Killed with its process group at the deadline; `exitCode` is null.
    Timeout,
}

/// The answer of a buffered `…/commands` or `…/code` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandResult {
    pub status: CommandStatus,
    pub exit_code: Option<i32>,
    /// Standard output; bytes that are not UTF-8 are replaced by U+FFFD.
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    /// Output went beyond the server's cap and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The last line of a streamed (`application/x-ndjson`) command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExitEvent {
    pub status: CommandStatus,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
}

/// One line of a streamed command: `{"stdout": …}`, `{"stderr": …}` or, last, `{"exit": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum StreamEvent {
    Stdout(String),
    Stderr(String),
    Exit(ExitEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    File,
    Directory,
    Symlink,
}

/// A file or directory inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub name: String,
    /// As asked for (relative to the home directory unless absolute).
    pub path: String,
    #[serde(rename = "type")]
    pub kind: FileType,
    pub size: u64,
    /// `rwxr-xr-x` form.
    pub permissions: String,
    /// RFC 3339 UTC.
    pub modified_at: String,
}

/// `GET …/files` on a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryListing {
    pub path: String,
    pub entries: Vec<FileInfo>,
}

/// Length of a UTF-8 sequence that is cut off at the end of `bytes` (0 when none), so an
/// event never splits a character that the next one completes.
pub fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 == 0x80 {
            continue;
        }
        let needed = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if needed > back { back } else { 0 };
    }
    0
}
