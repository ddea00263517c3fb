//! `pico mcp`: a Model Context Protocol server on stdin/stdout (the official `rmcp` SDK) whose
//! tools create and delete sessions, run commands and code, and read, write and list files,
//! each through the server's HTTP API with the CLI's own client (`api.rs`), so an agent
//! framework needs neither SSH nor a key.

use std::collections::BTreeMap;

use anyhow::Context;
use pico_wire::{CreateSessionRequest, exec::MAX_EXEC_TIMEOUT};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::{Client, api_error};
use crate::http_exec::query;

/// What a tool answers: text for the model, or an error message (`isError: true`).
type Answer = Result<String, String>;

/// The MCP server: the CLI's HTTP client and the tool table.
#[derive(Clone)]
pub struct PicoMcp {
    client: Client,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateArgs {
    /// Lifetime in seconds (default 3600).
    ttl: Option<u64>,
    /// Container image (default: the server's).
    image: Option<String>,
    /// Labels to keep with the session.
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SessionArgs {
    /// The session's id (or a unique prefix of it).
    session_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CommandArgs {
    /// The session's id (or a unique prefix of it).
    session_id: String,
    /// A shell command, run with `/bin/sh -c` in the sandbox user's home.
    command: String,
    /// Seconds before the command's whole process group is killed (1..=300, default 60).
    timeout: Option<u64>,
    /// Working directory (relative to the home directory unless absolute).
    cwd: Option<String>,
    /// Extra environment variables.
    env: Option<BTreeMap<String, String>>,
    /// Text sent to the command's stdin.
    stdin: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CodeArgs {
    /// The session's id (or a unique prefix of it).
    session_id: String,
    /// The program's source.
    code: String,
    /// `python` (the default), `javascript` or `bash`.
    language: Option<String>,
    /// Seconds before the program is killed (1..=300, default 60).
    timeout: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PathArgs {
    /// The session's id (or a unique prefix of it).
    session_id: String,
    /// A path in the sandbox, relative to the home directory unless absolute.
    path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// The session's id (or a unique prefix of it).
    session_id: String,
    /// A directory in the sandbox (default: the home directory).
    path: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteArgs {
    /// The session's id (or a unique prefix of it).
    session_id: String,
    /// A path in the sandbox; missing parent directories are made.
    path: String,
    /// The file's new content (text).
    content: String,
    /// Replace an existing file (default true).
    overwrite: Option<bool>,
}

/// Pretty JSON for a tool's answer.
fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// An error as one line for the model.
fn message(err: anyhow::Error) -> String {
    format!("{err:#}")
}

#[tool_router]
impl PicoMcp {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            tool_router: Self::tool_router(),
        }
    }

    async fn id(&self, text: &str) -> anyhow::Result<Uuid> {
        self.client.resolve(text).await
    }

    /// A JSON call under the session; the server's error body becomes the message.
    async fn session_call(
        &self,
        method: &str,
        id: &str,
        rest: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let id = self.id(id).await?;
        self.client
            .call(method, &format!("/v1/sessions/{id}{rest}"), body)
            .await
    }

    #[tool(
        description = "Create a sandbox session and return it (sessionId, status, \
                          expiresAt). Commands and files then refer to its sessionId."
    )]
    async fn create_session(&self, Parameters(args): Parameters<CreateArgs>) -> Answer {
        let metadata = args
            .metadata
            .map(|m| m.into_iter().map(|(k, v)| (k, Value::String(v))).collect());
        let request = CreateSessionRequest {
            ttl: args.ttl,
            image: args.image,
            metadata,
            ..Default::default()
        };
        let session = self.client.create(&request).await.map_err(message)?;
        let mut value = serde_json::to_value(&session).map_err(|e| e.to_string())?;
        // The SSH key is of no use to a model over MCP, and it would land in its transcript.
        if let Some(object) = value.as_object_mut() {
            object.remove("sshPrivateKey");
        }
        Ok(pretty(&value))
    }

    #[tool(description = "Delete a sandbox session and everything in it.")]
    async fn delete_session(&self, Parameters(args): Parameters<SessionArgs>) -> Answer {
        let id = self.id(&args.session_id).await.map_err(message)?;
        self.client.delete(id).await.map_err(message)?;
        Ok(format!("deleted {id}"))
    }

    #[tool(description = "List your sandbox sessions.")]
    async fn list_sessions(&self) -> Answer {
        let list = self
            .client
            .list(pico_wire::MAX_LIMIT, 0)
            .await
            .map_err(message)?;
        Ok(pretty(
            &serde_json::to_value(&list).map_err(|e| e.to_string())?,
        ))
    }

    #[tool(description = "Run a shell command in a session. Returns status \
                          (completed|failed|timeout), exitCode, stdout, stderr, durationMs.")]
    async fn run_command(&self, Parameters(args): Parameters<CommandArgs>) -> Answer {
        let mut body = json!({"command": args.command});
        if let Some(timeout) = args.timeout {
            body["timeout"] = timeout.min(MAX_EXEC_TIMEOUT).into();
        }
        if let Some(cwd) = args.cwd {
            body["cwd"] = cwd.into();
        }
        if let Some(env) = args.env {
            body["env"] = json!(env);
        }
        if let Some(stdin) = args.stdin {
            body["stdin"] = stdin.into();
        }
        let result = self
            .session_call("POST", &args.session_id, "/commands", Some(&body))
            .await
            .map_err(message)?;
        Ok(pretty(&result))
    }

    #[tool(
        description = "Run a program in a session with its interpreter (python3, node or \
                          bash). Returns status, exitCode, stdout, stderr, durationMs."
    )]
    async fn run_code(&self, Parameters(args): Parameters<CodeArgs>) -> Answer {
        let mut body = json!({
            "code": args.code,
            "language": args.language.unwrap_or_else(|| "python".into()),
        });
        if let Some(timeout) = args.timeout {
            body["timeout"] = timeout.min(MAX_EXEC_TIMEOUT).into();
        }
        let result = self
            .session_call("POST", &args.session_id, "/code", Some(&body))
            .await
            .map_err(message)?;
        Ok(pretty(&result))
    }

    #[tool(description = "Read a text file from a session.")]
    async fn read_file(&self, Parameters(args): Parameters<PathArgs>) -> Answer {
        self.read(&args.session_id, &args.path)
            .await
            .map_err(message)
    }

    #[tool(
        description = "Write a text file in a session (parent directories are made). \
                          Returns the file's name, path, size and permissions."
    )]
    async fn write_file(&self, Parameters(args): Parameters<WriteArgs>) -> Answer {
        self.write(args).await.map_err(message)
    }

    #[tool(
        description = "List a directory in a session: name, type, size, permissions and \
                          modification time of each entry."
    )]
    async fn list_files(&self, Parameters(args): Parameters<ListArgs>) -> Answer {
        let path = args.path.unwrap_or_else(|| ".".into());
        let rest = format!("/files?path={}", query(&path));
        let listing = self
            .session_call("GET", &args.session_id, &rest, None)
            .await
            .map_err(message)?;
        Ok(pretty(&listing))
    }

    #[tool(description = "Delete a file (or, with recursive, a directory) in a session.")]
    async fn delete_file(&self, Parameters(args): Parameters<PathArgs>) -> Answer {
        let rest = format!("/files?path={}&recursive=true", query(&args.path));
        self.session_call("DELETE", &args.session_id, &rest, None)
            .await
            .map_err(message)?;
        Ok(format!("deleted {}", args.path))
    }
}

impl PicoMcp {
    async fn read(&self, session: &str, path: &str) -> anyhow::Result<String> {
        let id = self.id(session).await?;
        let target = format!("/v1/sessions/{id}/files?path={}", query(path));
        let response = self.client.send("GET", &target, None).await?;
        if !(200..300).contains(&response.status) {
            return Err(api_error(response.status, &response.body));
        }
        let listing = response
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/json"));
        anyhow::ensure!(!listing, "{path} is a directory: use list_files");
        String::from_utf8(response.body).map_err(|e| {
            anyhow::anyhow!(
                "{path} is not text ({} bytes); copy it with `pico cp`",
                e.as_bytes().len()
            )
        })
    }

    async fn write(&self, args: WriteArgs) -> anyhow::Result<String> {
        let id = self.id(&args.session_id).await?;
        let target = format!(
            "/v1/sessions/{id}/files?path={}&overwrite={}",
            query(&args.path),
            args.overwrite.unwrap_or(true)
        );
        let response = self
            .client
            .send_as(
                "POST",
                &target,
                "application/octet-stream",
                Some(args.content.into_bytes()),
            )
            .await?;
        if !(200..300).contains(&response.status) {
            return Err(api_error(response.status, &response.body));
        }
        let info: Value =
            serde_json::from_slice(&response.body).context("unexpected answer from the server")?;
        Ok(pretty(&info))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PicoMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pico", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Sandbox sessions of a pico server: create_session, then run_command, \
                 run_code, read_file, write_file, list_files with its sessionId; \
                 delete_session when done.",
            )
    }
}

/// Serves MCP on stdin/stdout until the client closes its end.
pub async fn serve(client: Client) -> anyhow::Result<()> {
    let running = PicoMcp::new(client)
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP client did not complete the handshake")?;
    running.waiting().await.context("the MCP server failed")?;
    Ok(())
}
