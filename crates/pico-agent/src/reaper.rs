//! The one place that waits for child processes: spawned commands get their exit status
//! through a oneshot, and every other child (orphans adopted as PID 1) is simply reaped.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, PoisonError};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

use crate::sys;

#[derive(Default)]
pub struct Reaper {
    /// pid (also the process group id: commands are session leaders) -> who wants its status.
    waiting: Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>,
}

impl Reaper {
    /// Spawns `cmd` and registers it. The lock is held across the spawn so that the SIGCHLD
    /// loop cannot reap the child before it is registered.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        waiting.insert(pid, tx);
        Ok((child, rx))
    }

    /// Process groups of the commands still running.
    pub fn running(&self) -> Vec<i32> {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    fn reap(&self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((pid, status)) = sys::reap_any() {
            if let Some(tx) = waiting.remove(&pid) {
                let _ = tx.send(ExitStatus::from_raw(status));
            }
        }
    }

    /// Reaps children on every SIGCHLD until the runtime stops.
    pub async fn run(self: std::sync::Arc<Self>) -> io::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        loop {
            self.reap();
            if sigchld.recv().await.is_none() {
                return Ok(());
            }
        }
    }
}
