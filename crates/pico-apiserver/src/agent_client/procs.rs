//! Calls to the agent's `pico-processes` subsystem (the background-process table inside the
//! sandbox): one channel per call, a JSON request line out, a JSON answer line back, and for
//! `output` the NDJSON events after it.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{AgentConn, AgentError};

const SUBSYSTEM: &str = "pico-processes";
/// Longest answer line (a list of a full table stays far below).
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Why a process call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcCallError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The agent refused the request; `code` is one of the API's error codes.
    #[error("{message}")]
    Refused { code: String, message: String },
}

/// The rest of an `output` answer: NDJSON lines, as the agent writes them.
pub type ProcOutput = Box<dyn AsyncRead + Send + Unpin>;

impl AgentConn {
    /// Sends `request` (then `input` and EOF when given) and reads the answer line. With
    /// `keep_open` the channel stays open for the caller to read on (a follow ends when the
    /// returned reader is dropped).
    pub async fn procs_call(
        self: &Arc<Self>,
        request: &Value,
        input: Option<Bytes>,
        keep_open: bool,
    ) -> Result<(Value, ProcOutput), ProcCallError> {
        let channel = self
            .handle()
            .channel_open_session()
            .await
            .map_err(AgentError::from)?;
        channel
            .request_subsystem(true, SUBSYSTEM)
            .await
            .map_err(AgentError::from)?;
        let (reader, mut writer) = tokio::io::split(channel.into_stream());
        let mut line = serde_json::to_vec(request).unwrap_or_default();
        line.push(b'\n');
        let sent = async {
            writer.write_all(&line).await?;
            if let Some(input) = input {
                writer.write_all(&input).await?;
            }
            if !keep_open {
                writer.shutdown().await?;
            }
            writer.flush().await
        };
        sent.await.map_err(|e| unreachable(&e.to_string()))?;
        let mut reader = BufReader::new(reader);
        let mut answer = Vec::new();
        (&mut reader)
            .take(MAX_ANSWER)
            .read_until(b'\n', &mut answer)
            .await
            .map_err(|e| unreachable(&e.to_string()))?;
        if answer.is_empty() {
            // The agent refused the subsystem: too old, or the server's key is not marked.
            return Err(
                unreachable("the sandbox's agent does not serve background processes").into(),
            );
        }
        let mut value: Value = serde_json::from_slice(&answer)
            .map_err(|e| unreachable(&format!("bad answer from the agent: {e}")))?;
        if let Some(error) = value.get("error") {
            let text = |key: &str| {
                error
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            return Err(ProcCallError::Refused {
                code: text("code"),
                message: text("message"),
            });
        }
        // The writer half lives on inside the reader's shared stream until it is dropped.
        drop(writer);
        Ok((value["ok"].take(), Box::new(reader)))
    }
}

fn unreachable(message: &str) -> AgentError {
    AgentError::Unreachable(message.to_owned())
}
