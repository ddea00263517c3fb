//! The sandbox runtime trait; the REST and tunnel code do not know which runtime runs.

pub mod cgroup;
mod disk;
mod freezer;
mod heartbeat;
pub mod kubernetes;
pub mod local;
pub mod local_image;
mod start_lock;
mod uids;

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use uuid::Uuid;

use crate::store::SessionRecord;

/// A byte stream to a sandbox's SSH server.
pub trait SandboxStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> SandboxStream for T {}

pub type BoxedStream = Pin<Box<dyn SandboxStream>>;

/// The error that caused a runtime failure, kept for the server log.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure a runtime reports; it decides the client's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Create,
    Timeout,
    Delete,
    Unreachable,
    Unavailable,
    /// The session's image cannot be pulled.
    ImagePull,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Create => "sandbox could not be created",
            Self::Timeout => "sandbox was not ready in time",
            Self::Delete => "sandbox could not be deleted",
            Self::Unreachable => "sandbox is unreachable",
            Self::Unavailable => "runtime unavailable",
            Self::ImagePull => "image could not be pulled",
        })
    }
}

/// A runtime failure. Messages may name host paths and agent logs: they go to the server log
/// only, never to a client (`error.rs` gives clients a message by kind).
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
    /// The sandbox itself failed for a reason that is about what the client asked for (its
    /// image cannot be pulled, its pod crashes, the controller refused it); the only message
    /// a client sees in full, so it never names host paths.
    #[error("{kind}: {why}")]
    SandboxFailed { kind: FailureKind, why: String },
    /// A failure with the error that caused it (an API call, a system call).
    #[error("{kind}: {context}")]
    Failed {
        kind: FailureKind,
        context: String,
        #[source]
        source: Cause,
    },
    #[error("runtime I/O")]
    Io(#[from] std::io::Error),
    #[error("runtime store")]
    Store(#[from] crate::store::StoreError),
}

impl RuntimeError {
    pub fn caused(kind: FailureKind, context: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self::Failed {
            kind,
            context: context.into(),
            source: source.into(),
        }
    }

    /// `None` for the server's own failures (I/O, store), which are internal errors.
    pub fn kind(&self) -> Option<FailureKind> {
        match self {
            Self::Create(_) => Some(FailureKind::Create),
            Self::SandboxFailed { kind, .. } => Some(*kind),
            Self::Timeout(_) => Some(FailureKind::Timeout),
            Self::Delete(_) => Some(FailureKind::Delete),
            Self::Unreachable(_) => Some(FailureKind::Unreachable),
            Self::Unavailable(_) => Some(FailureKind::Unavailable),
            Self::Failed { kind, .. } => Some(*kind),
            Self::Io(_) | Self::Store(_) => None,
        }
    }
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

    /// Stops every process of the sandbox from using CPU, keeping its files (and, where the
    /// runtime can, its memory); pausing a paused sandbox succeeds.
    async fn pause(&self, id: Uuid) -> Result<(), RuntimeError> {
        let _ = id;
        Err(unsupported(self.name()))
    }

    /// Lets a paused sandbox continue; returns once its SSH server accepts connections.
    /// Resuming a running sandbox succeeds.
    async fn resume(&self, id: Uuid) -> Result<(), RuntimeError> {
        let _ = id;
        Err(unsupported(self.name()))
    }

    /// Bytes done and total of a first pull of `image` in flight (local runtime).
    fn image_progress(&self, _image: &str) -> Option<(u64, u64)> {
        None
    }

    /// The image cache (local runtime; a cluster keeps its own).
    async fn images(&self) -> Result<Vec<pico_wire::ImageInfo>, RuntimeError> {
        Ok(Vec::new())
    }
}

/// What a runtime without pause answers (the client sees why).
fn unsupported(runtime: &str) -> RuntimeError {
    RuntimeError::SandboxFailed {
        kind: FailureKind::Unavailable,
        why: format!("the {runtime} runtime cannot pause sessions"),
    }
}
