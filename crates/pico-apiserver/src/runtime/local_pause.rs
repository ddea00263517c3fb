//! Pause and resume of a local sandbox: the freezer stops its processes where they are (their
//! memory and the session's files stay); resume thaws them, or starts the agent again on the
//! same files if it is gone (e.g. the host rebooted while the session was paused).

use uuid::Uuid;

use super::{LocalRuntime, read_username};
use crate::runtime::{FailureKind, RuntimeError};

impl LocalRuntime {
    pub(super) async fn pause_sandbox(&self, id: Uuid) -> Result<(), RuntimeError> {
        let _guard = self.starting.lock(id).await;
        // An agent that is gone uses no CPU; resume starts it again.
        let Some(pid) = self.live_agent_pid(id).await else {
            return Ok(());
        };
        self.freezer.freeze(id, pid).await.map_err(|e| {
            RuntimeError::caused(
                FailureKind::Unreachable,
                format!("freezing the sandbox ({})", self.freezer.name()),
                e,
            )
        })
    }

    pub(super) async fn resume_sandbox(&self, id: Uuid) -> Result<(), RuntimeError> {
        let _guard = self.starting.lock(id).await;
        let pid = self.live_agent_pid(id).await;
        self.freezer.thaw(id, pid).await.map_err(|e| {
            RuntimeError::caused(
                FailureKind::Unreachable,
                format!("thawing the sandbox ({})", self.freezer.name()),
                e,
            )
        })?;
        if pid.is_none() {
            if !self.dir(id).is_dir() {
                return Err(RuntimeError::Unreachable(format!(
                    "files of session {id} are gone"
                )));
            }
            tracing::warn!(session_id = %id, "agent of a paused session gone; starting it again");
            let username = read_username(&self.dir(id)).await;
            self.start_agent(id, &username).await?;
        }
        Ok(())
    }

    /// Before a delete: a frozen agent cannot act on SIGTERM.
    pub(super) async fn thaw_quietly(&self, id: Uuid) {
        let pid = self.live_agent_pid(id).await;
        if let Err(e) = self.freezer.thaw(id, pid).await {
            tracing::debug!(session_id = %id, error = %e, "thaw before delete");
        }
    }
}
