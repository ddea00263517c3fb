//! What the local runtime tells its agents so that none outlives its purpose: each
//! session's expiry (`expires_at`, unix seconds, rewritten at create and at adoption) and
//! a heartbeat file the server touches while it runs. An agent whose session expired more
//! than its grace ago while the heartbeat is as old ends its sandbox.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::RuntimeError;
use super::local::write_private;
use crate::store::SessionRecord;

/// How often the server touches its heartbeat file; far below the agents' orphan grace.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// The session's expiry in unix seconds, for the agent's watchdog.
pub async fn write_expiry(dir: &Path, record: &SessionRecord) -> Result<(), RuntimeError> {
    write_private(
        &dir.join("expires_at"),
        &record.expires_at.unix_timestamp().to_string(),
    )
    .await
}

/// Touches `path` every `HEARTBEAT` while the server runs (outside a tokio runtime, e.g.
/// in a unit test, there is nothing to keep alive).
pub fn spawn_heartbeat(path: PathBuf) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let mut ticks = tokio::time::interval(HEARTBEAT);
        loop {
            ticks.tick().await;
            let touched = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .and_then(|file| file.set_modified(SystemTime::now()));
            if let Err(e) = touched {
                tracing::warn!(path = %path.display(), error = %e, "cannot touch the heartbeat file");
            }
        }
    });
}
