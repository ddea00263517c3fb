//! The sandbox runtime trait; the REST and tunnel code do not know which runtime runs.

pub mod cgroup;
pub mod kubernetes;
pub mod local;

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use uuid::Uuid;

use crate::store::SessionRecord;

/// A byte stream to a sandbox's SSH server.
pub trait SandboxStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> SandboxStream for T {}

pub type BoxedStream = Pin<Box<dyn SandboxStream>>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("sandbox could not be created: {0}")]
    Create(String),
    #[error("sandbox was not ready in time: {0}")]
    Timeout(String),
    #[error("sandbox could not be deleted: {0}")]
    Delete(String),
    #[error("sandbox is unreachable: {0}")]
    Unreachable(String),
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    #[error("runtime I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("runtime store: {0}")]
    Store(String),
}

/// What a runtime needs to start one sandbox.
pub struct SandboxSpec<'a> {
    pub record: &'a SessionRecord,
    /// The host key in OpenSSH private-key form; never logged.
    pub host_private_key: &'a str,
    /// The server's own client key (exec and files over HTTP), trusted besides the user's.
    pub server_public_key: Option<&'a str>,
}

impl SandboxSpec<'_> {
    /// The sandbox's `authorized_keys` file: the user's key, then the server's.
    pub fn authorized_keys(&self) -> String {
        let mut keys = format!("{}\n", self.record.authorized_key);
        if let Some(server) = self.server_public_key {
            keys.push_str(server);
            keys.push('\n');
        }
        keys
    }
}

/// Whether a sandbox that existed before a restart still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Running and reachable as before.
    Adopted,
    /// Was gone; started again with its files and keys.
    Restarted,
}

#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Whether the backend answers (for `/readyz`).
    async fn ready(&self) -> Result<(), RuntimeError>;

    /// Starts the sandbox and returns once its SSH server accepts connections.
    async fn create(&self, spec: SandboxSpec<'_>) -> Result<(), RuntimeError>;

    /// Stops the sandbox and removes everything it had; deleting a missing one succeeds.
    async fn delete(&self, id: Uuid) -> Result<(), RuntimeError>;

    /// Opens a byte stream to the sandbox's SSH server.
    async fn connect(&self, id: Uuid) -> Result<BoxedStream, RuntimeError>;

    /// After a server restart: makes a recorded sandbox usable again.
    async fn recover(&self, record: &SessionRecord) -> Result<Recovery, RuntimeError>;

    /// After a restart: removes sandboxes that no record knows (e.g. a create cut short).
    async fn remove_orphans(&self, known: &[Uuid]) -> Result<usize, RuntimeError>;
}
