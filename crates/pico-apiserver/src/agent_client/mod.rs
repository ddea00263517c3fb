//! The server's own SSH connections to sandbox agents, for exec and files over HTTP: one
//! connection per live session, opened on first use, shared by concurrent calls (one channel
//! each) and closed when the session ends.

mod exec;
mod files;
mod key;
mod procs;

pub use exec::{ExecOutput, ExecSpec, Execution};
pub use files::{FileError, Sftp};
pub use key::ClientKey;
pub use procs::{ProcCallError, ProcOutput};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use uuid::Uuid;

use crate::runtime::Runtime;
use crate::service::LiveSession;

/// Bound of the SSH handshake and login to an agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection to an agent could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("sandbox is unreachable: {0}")]
    Unreachable(String),
    #[error("the sandbox's SSH host key does not match the session's")]
    HostKeyMismatch,
    #[error("the sandbox did not accept the server's key")]
    Refused,
    #[error("SSH: {0}")]
    Ssh(#[from] russh::Error),
}

/// Accepts exactly the session's recorded host key.
pub struct HostKeyCheck {
    expected: Option<PublicKey>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match (key, &self.expected) {
            (PublicKeyOrCertificate::PublicKey { key, .. }, Some(expected)) => {
                key.key_data() == expected.key_data()
            }
            _ => false,
        })
    }
}

/// One logged-in connection to a session's agent.
pub struct AgentConn {
    handle: Handle<HostKeyCheck>,
    /// The SFTP subsystem, started on the first file call and then shared.
    sftp: tokio::sync::Mutex<Option<Arc<Sftp>>>,
}

impl AgentConn {
    pub fn handle(&self) -> &Handle<HostKeyCheck> {
        &self.handle
    }

    fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// The connection's SFTP session, started once (again if the last one broke).
    pub async fn sftp(&self) -> Result<Arc<Sftp>, AgentError> {
        let mut slot = self.sftp.lock().await;
        if let Some(sftp) = slot.as_ref().filter(|s| !s.is_broken()) {
            return Ok(sftp.clone());
        }
        let channel = self.handle.channel_open_session().await?;
        channel.request_subsystem(true, "sftp").await?;
        let sftp = Arc::new(
            Sftp::start(channel)
                .await
                .map_err(|e| AgentError::Unreachable(format!("cannot start SFTP: {e}")))?,
        );
        *slot = Some(sftp.clone());
        Ok(sftp)
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<AgentConn>>>>;

/// The live connections, by session.
pub struct AgentPool {
    key: ClientKey,
    /// The authorized_keys line of the key: marked `pico-server`, which lets it (and no
    /// user key) reach the agent's background-process table.
    authorized_line: String,
    config: Arc<client::Config>,
    slots: Arc<Mutex<HashMap<Uuid, Slot>>>,
}

impl AgentPool {
    pub fn new(key: ClientKey) -> Self {
        let config = client::Config {
            // Idle connections stay: the next call must not pay a handshake.
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 4,
            window_size: 8 * 1024 * 1024,
            maximum_packet_size: 65_535,
            channel_buffer_size: 256,
            nodelay: true,
            // This hop is ours on both ends: AES-GCM runs in aws-lc on the CPU's AES
            // instructions, several times faster than russh's ChaCha20-Poly1305, which bounded
            // uploads and downloads over HTTP (docs/PERFORMANCE.md).
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(&[
                    russh::cipher::AES_256_GCM,
                    russh::cipher::CHACHA20_POLY1305,
                ]),
                ..Default::default()
            },
            ..Default::default()
        };
        Self {
            authorized_line: format!("pico-server {}", key.public_openssh()),
            key,
            config: Arc::new(config),
            slots: Arc::default(),
        }
    }

    /// The public half as an authorized_keys line, added to every sandbox's.
    pub fn public_key(&self) -> &str {
        &self.authorized_line
    }

    /// The session's connection, made now if there is none (or the last one died).
    pub async fn connection(
        &self,
        runtime: &Arc<dyn Runtime>,
        live: &Arc<LiveSession>,
    ) -> Result<Arc<AgentConn>, AgentError> {
        let record = live.record();
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(record.id).or_default().clone()
        };
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.dial(runtime, &record))
            .await
            .map_err(|_| AgentError::Unreachable("SSH login timed out".into()))??;
        let conn = Arc::new(conn);
        *guard = Some(conn.clone());
        drop(guard);
        self.close_with_session(live, record.id, &conn);
        Ok(conn)
    }

    async fn dial(
        &self,
        runtime: &Arc<dyn Runtime>,
        record: &crate::store::SessionRecord,
    ) -> Result<AgentConn, AgentError> {
        let stream = runtime
            .connect(record.id)
            .await
            .map_err(|e| AgentError::Unreachable(e.to_string()))?;
        let checker = HostKeyCheck {
            expected: PublicKey::from_openssh(&record.host_public_key).ok(),
        };
        let mut handle = client::connect_stream(self.config.clone(), stream, checker)
            .await
            .map_err(|e| match e {
                russh::Error::UnknownKey => AgentError::HostKeyMismatch,
                other => AgentError::Ssh(other),
            })?;
        let auth = handle
            .authenticate_publickey(
                record.username.clone(),
                PrivateKeyWithHashAlg::new(self.key.private(), None),
            )
            .await?;
        if !auth.success() {
            return Err(AgentError::Refused);
        }
        Ok(AgentConn {
            handle,
            sftp: tokio::sync::Mutex::new(None),
        })
    }

    /// Ends the connection when the session ends (delete, expiry, shutdown).
    fn close_with_session(&self, live: &Arc<LiveSession>, id: Uuid, conn: &Arc<AgentConn>) {
        let cancel = live.cancel.clone();
        let weak = Arc::downgrade(conn);
        let slots = Arc::downgrade(&self.slots);
        tokio::spawn(async move {
            cancel.cancelled().await;
            if let Some(slots) = slots.upgrade() {
                slots.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            }
            if let Some(conn) = weak.upgrade() {
                let _ = conn
                    .handle
                    .disconnect(russh::Disconnect::ByApplication, "session ended", "")
                    .await;
            }
        });
    }
}
