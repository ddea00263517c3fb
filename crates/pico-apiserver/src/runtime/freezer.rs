//! Pausing a local sandbox. As root with cgroups, the kernel's freezer stops every process
//! of the sandbox at once, the agent's watchdog included (cgroup v2: `cgroup.freeze` of the
//! session's group; v1: a group of the `freezer` controller that the agent joins at start).
//! Without them (not root, no freezer) the agent's whole process tree gets `SIGSTOP`, and
//! `SIGCONT` on resume: the same for the processes, but a process that forks during the walk
//! needs another round, and a shell in the sandbox sees its stopped jobs as stopped.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use uuid::Uuid;

use super::cgroup::{Cgroups, ROOT, server_group};
use crate::sys;

/// How long a freeze may take to settle (the kernel waits for tasks to leave the kernel).
const SETTLE: Duration = Duration::from_secs(5);
const SETTLE_POLL: Duration = Duration::from_millis(2);
/// Rounds of the signal walk: processes forked while it runs are caught by the next one.
const SIGNAL_ROUNDS: usize = 20;

#[derive(Debug, Clone)]
pub enum Freezer {
    /// The parent of the sessions' v2 groups (made by `Cgroups`).
    V2(PathBuf),
    /// This server's group under the v1 `freezer` hierarchy.
    V1(PathBuf),
    /// `SIGSTOP`/`SIGCONT` of the agent's process tree.
    Signals,
}

impl Freezer {
    pub fn detect(cgroups: &Cgroups, state_dir: &Path) -> Self {
        match cgroups {
            Cgroups::V2(parent) => Self::V2(parent.clone()),
            Cgroups::V1 { .. } => {
                let dir = Path::new(ROOT)
                    .join("freezer")
                    .join(server_group(state_dir));
                match std::fs::create_dir_all(&dir) {
                    Ok(()) => Self::V1(dir),
                    Err(e) => {
                        tracing::warn!(error = %e, "no cgroup v1 freezer; pause stops processes with signals");
                        Self::Signals
                    }
                }
            }
            Cgroups::Unavailable(_) => Self::Signals,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::V2(_) => "cgroup v2 freezer",
            Self::V1(_) => "cgroup v1 freezer",
            Self::Signals => "SIGSTOP/SIGCONT",
        }
    }

    /// The `cgroup.procs` file the agent joins at start, when the freezer needs one of its
    /// own (v1; the v2 group is the limits' group).
    pub fn procs(&self, id: Uuid) -> io::Result<Option<PathBuf>> {
        match self {
            Self::V1(parent) => {
                let dir = parent.join(id.to_string());
                std::fs::create_dir_all(&dir)?;
                Ok(Some(dir.join("cgroup.procs")))
            }
            Self::V2(_) | Self::Signals => Ok(None),
        }
    }

    /// The session's freezer group, if the agent is in one (a sandbox started before its
    /// server had a freezer is not).
    fn group(&self, id: Uuid) -> Option<PathBuf> {
        let dir = match self {
            Self::V2(parent) | Self::V1(parent) => parent.join(id.to_string()),
            Self::Signals => return None,
        };
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
        (!procs.trim().is_empty()).then_some(dir)
    }

    /// Stops every process of the sandbox whose agent is `agent_pid`.
    pub async fn freeze(&self, id: Uuid, agent_pid: u32) -> io::Result<()> {
        match (self, self.group(id)) {
            (Self::V2(_), Some(dir)) => {
                std::fs::write(dir.join("cgroup.freeze"), "1")?;
                settle(|| {
                    let events = std::fs::read_to_string(dir.join("cgroup.events"))?;
                    Ok(events.lines().any(|l| l.trim() == "frozen 1"))
                })
                .await
            }
            (Self::V1(_), Some(dir)) => {
                let state = dir.join("freezer.state");
                settle(|| {
                    // v1 may stay FREEZING while a task is busy in the kernel; writing
                    // FROZEN again retries.
                    std::fs::write(&state, "FROZEN")?;
                    Ok(std::fs::read_to_string(&state)?.trim() == "FROZEN")
                })
                .await
            }
            _ => signal_tree(agent_pid, sys::SIGSTOP),
        }
    }

    /// Lets the sandbox's processes continue; thawing a running sandbox is harmless.
    pub async fn thaw(&self, id: Uuid, agent_pid: Option<u32>) -> io::Result<()> {
        match (self, self.group(id)) {
            (Self::V2(_), Some(dir)) => std::fs::write(dir.join("cgroup.freeze"), "0"),
            (Self::V1(_), Some(dir)) => std::fs::write(dir.join("freezer.state"), "THAWED"),
            _ => match agent_pid {
                Some(pid) => signal_tree(pid, sys::SIGCONT),
                None => Ok(()),
            },
        }
    }

    /// Removes the session's own freezer group (v1) once its processes are gone.
    pub async fn remove(&self, id: Uuid) {
        if let Self::V1(parent) = self {
            let dir = parent.join(id.to_string());
            for _ in 0..50 {
                match std::fs::remove_dir(&dir) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Polls `done` until it says yes, bounded by `SETTLE`.
async fn settle(mut done: impl FnMut() -> io::Result<bool>) -> io::Result<()> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if done()? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the sandbox's processes did not freeze in time",
            ));
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Sends `signal` to `root` and all its descendants, walking again until a walk finds no
/// process it has not signalled yet.
fn signal_tree(root: u32, signal: i32) -> io::Result<()> {
    if !sys::kill(root, 0) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the sandbox's agent (pid {root}) is not running"),
        ));
    }
    let mut done = HashSet::new();
    for _ in 0..SIGNAL_ROUNDS {
        let fresh: Vec<u32> = descendants(root)?
            .into_iter()
            .filter(|pid| !done.contains(pid))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        for pid in fresh {
            sys::kill(pid, signal);
            done.insert(pid);
        }
    }
    Ok(())
}

/// `root` and every process below it, from the parent links in `/proc/*/stat`.
fn descendants(root: u32) -> io::Result<Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(ppid) = parent_of(&stat) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut all = vec![root];
    let mut next = 0;
    while next < all.len() {
        if let Some(kids) = children.get(&all[next]) {
            all.extend(kids);
        }
        next += 1;
    }
    Ok(all)
}

/// The parent pid from a `/proc/<pid>/stat` line: `pid (comm) state ppid …`, where `comm`
/// may hold spaces and parentheses (hence the last `)`).
fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_survives_odd_command_names() {
        assert_eq!(parent_of("42 (sh) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of("42 (a) b) (c) R 9 1 1"), Some(9));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn the_tree_of_this_process_holds_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let tree = descendants(std::process::id()).expect("walk");
        assert!(tree.contains(&child.id()), "{tree:?}");
        let _ = child.kill();
        let _ = child.wait();
    }
}
