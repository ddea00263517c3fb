//! The local runtime: one isolated `pico-agent` process per session, no cluster needed.
//!
//! Layout under `<state-dir>/sessions/<id>/`: `host_key`, `authorized_keys`, `uid`,
//! `expires_at`, `agent.pid`, `agent.sock`, `agent.log`, `home/` and (as root, with
//! `--session-disk`) `disk.img`, mounted on `home/` inside the sandbox only. The agent reads
//! its keys and binds its socket, then enters fresh namespaces in which the whole state
//! directory is hidden. `<state-dir>/heartbeat` is touched while the server runs: an agent
//! whose session expired long ago with no live server ends itself (`sys::watchdog` of the
//! agent).

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Command;
use uuid::Uuid;

use super::cgroup::{Cgroups, Limits};
use super::disk;
use super::freezer::Freezer;
use super::heartbeat::{spawn_heartbeat, write_expiry};
use super::start_lock::StartLocks;
use super::uids::UidPool;
use super::{BoxedStream, Recovery, Runtime, RuntimeError, SandboxSpec};
use crate::store::SessionRecord;
use crate::sys;

#[path = "local_pause.rs"]
mod pause;

pub struct LocalConfig {
    pub state_dir: PathBuf,
    pub agent_binary: PathBuf,
    pub ready_timeout: Duration,
    /// Memory and process limits of each sandbox.
    pub limits: Limits,
    /// Each sandbox in a network namespace of its own.
    pub private_network: bool,
    /// Bytes of disk of each sandbox (0 = unlimited; applied as root).
    pub disk: u64,
    /// Where images come from (`None`: sessions with an image are refused).
    pub images: Option<super::local_image::ImageSettings>,
}

pub struct LocalRuntime {
    state_dir: PathBuf,
    sessions_dir: PathBuf,
    agent_binary: PathBuf,
    ready_timeout: Duration,
    as_root: bool,
    private_network: bool,
    limits: Limits,
    cgroups: Cgroups,
    /// How `pause` stops a sandbox (see `freezer.rs`).
    freezer: Freezer,
    uids: UidPool,
    /// `mkfs.ext4` and the image size, when sessions get a disk of their own.
    disk: Option<(PathBuf, u64)>,
    /// Serialises starts of the same session (create vs. a restart on connect) only.
    starting: StartLocks,
    images: Option<super::local_image::ImageSettings>,
}

impl LocalRuntime {
    pub fn new(config: LocalConfig) -> Result<Self, RuntimeError> {
        let sessions_dir = config.state_dir.join("sessions");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&sessions_dir)?;
        // The state dir holds every session's keys: only the server may enter it.
        std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o700))?;
        if !config.agent_binary.is_file() {
            return Err(RuntimeError::Unavailable(format!(
                "pico-agent binary not found at {} (build it with `cargo build --bin pico-agent` \
                 or pass --agent-binary)",
                config.agent_binary.display()
            )));
        }
        let as_root = sys::is_root();
        let cgroups = if as_root {
            Cgroups::detect(&config.state_dir)
        } else {
            Cgroups::Unavailable("the server is not root".into())
        };
        let wants_limits =
            config.limits.memory > 0 || config.limits.pids > 0 || config.limits.millicpus > 0;
        if let (Cgroups::Unavailable(why), true) = (&cgroups, wants_limits) {
            tracing::warn!(reason = %why, "per-session memory, process and CPU limits are not applied");
        }
        let disk = match (config.disk, as_root) {
            (0, _) => None,
            (size, true) => {
                let mkfs = disk::find_mkfs().ok_or_else(|| {
                    RuntimeError::Unavailable(
                        "--session-disk needs mkfs.ext4 (Debian package e2fsprogs); \
                         install it or pass --session-disk 0"
                            .into(),
                    )
                })?;
                Some((mkfs, size))
            }
            (_, false) => {
                tracing::warn!("per-session disk limits need the server to run as root");
                None
            }
        };
        spawn_heartbeat(config.state_dir.join("heartbeat"));
        let freezer = Freezer::detect(&cgroups, &config.state_dir);
        tracing::info!(
            freezer = freezer.name(),
            "local runtime pauses sandboxes with this"
        );
        Ok(Self {
            freezer,
            disk,
            uids: UidPool::new(config.state_dir.join("uid-next")),
            private_network: config.private_network,
            limits: config.limits,
            cgroups,
            state_dir: config.state_dir,
            sessions_dir,
            agent_binary: config.agent_binary,
            ready_timeout: config.ready_timeout,
            as_root,
            starting: StartLocks::default(),
            images: config.images,
        })
    }

    fn dir(&self, id: Uuid) -> PathBuf {
        self.sessions_dir.join(id.to_string())
    }

    fn allocate_uid(&self) -> Result<u32, RuntimeError> {
        self.uids
            .allocate()?
            .ok_or_else(|| RuntimeError::Create("no free sandbox uid".into()))
    }

    async fn read_uid(&self, dir: &Path) -> Option<u32> {
        let text = tokio::fs::read_to_string(dir.join("uid")).await.ok()?;
        text.trim().parse().ok()
    }

    /// Writes the session's files; the home directory belongs to the sandbox user.
    async fn prepare_dir(
        &self,
        dir: &Path,
        spec: &SandboxSpec<'_>,
        uid: Option<u32>,
    ) -> Result<(), RuntimeError> {
        std::fs::DirBuilder::new().mode(0o700).create(dir)?;
        write_private(&dir.join("host_key"), spec.host_private_key).await?;
        write_private(&dir.join("authorized_keys"), &spec.authorized_keys()).await?;
        write_private(&dir.join("username"), &spec.record.username).await?;
        let home = dir.join("home");
        std::fs::DirBuilder::new().mode(0o700).create(&home)?;
        write_expiry(dir, spec.record).await?;
        if let Some(uid) = uid {
            write_private(&dir.join("uid"), &uid.to_string()).await?;
            std::os::unix::fs::chown(&home, Some(uid), Some(uid))?;
        }
        if let Some((mkfs, size)) = &self.disk {
            // Sparse: refuse when the host could not hold even this one session's disk.
            let free = sys::available_bytes(dir)?;
            if free < *size {
                return Err(RuntimeError::Create(format!(
                    "the state directory's file system has {free} bytes free, less than one \
                     session's disk ({size})"
                )));
            }
            disk::make_image(mkfs, &dir.join(disk::IMAGE), *size).await?;
        }
        Ok(())
    }

    /// Starts the agent and waits for its `ready` line.
    async fn start_agent(&self, id: Uuid, username: &str) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        let socket = dir.join("agent.sock");
        match tokio::fs::remove_file(&socket).await {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(dir.join("agent.log"))?;
        let mut command = Command::new(&self.agent_binary);
        command
            .arg("serve")
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--host-key")
            .arg(dir.join("host_key"))
            .arg("--authorized-keys")
            .arg(dir.join("authorized_keys"))
            .arg("--username")
            .arg(username)
            .arg("--home")
            .arg(dir.join("home"))
            .arg("--isolate")
            .arg("--hide")
            .arg(&self.state_dir)
            .arg("--hostname")
            .arg(format!("pico-{}", &id.simple().to_string()[..8]));
        if self.private_network {
            command.arg("--private-network");
        }
        command.args(super::local_image::agent_args(&dir));
        if dir.join(disk::IMAGE).is_file() {
            command.arg("--disk").arg(dir.join(disk::IMAGE));
        }
        command
            .arg("--expires-file")
            .arg(dir.join("expires_at"))
            .arg("--heartbeat-file")
            .arg(self.state_dir.join("heartbeat"));
        if self.as_root {
            let uid = self
                .read_uid(&dir)
                .await
                .ok_or_else(|| RuntimeError::Create("session uid file missing".into()))?;
            command.arg("--uid").arg(uid.to_string());
            command.arg("--gid").arg(uid.to_string());
        }
        command
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            // Its own process group: ctrl-c on the server's terminal must not kill sandboxes,
            // and a whole group can be killed at delete.
            .process_group(0)
            .kill_on_drop(false);
        let mut procs = self
            .cgroups
            .create(id, self.limits)
            .map_err(|e| RuntimeError::Create(format!("cannot set the sandbox's limits: {e}")))?;
        procs.extend(
            self.freezer
                .procs(id)
                .map_err(|e| RuntimeError::Create(format!("cannot make the freezer group: {e}")))?,
        );
        sys::join_cgroups_before_exec(&mut command, &procs);
        let mut child = command
            .spawn()
            .map_err(|e| RuntimeError::Create(format!("cannot start pico-agent: {e}")))?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take();
        // Reap the agent whenever it exits, so no zombie is left behind.
        tokio::spawn(async move {
            let status = child.wait().await;
            tracing::debug!(session_id = %id, ?status, "agent exited");
        });
        write_private(&dir.join("agent.pid"), &pid.to_string()).await?;

        let ready = async {
            let Some(stdout) = stdout else { return false };
            let mut line = String::new();
            let mut reader = BufReader::new(stdout);
            reader.read_line(&mut line).await.is_ok() && line.trim() == "ready"
        };
        match tokio::time::timeout(self.ready_timeout, ready).await {
            Ok(true) => Ok(()),
            outcome => {
                kill_group(pid);
                let log_tail = tail(&dir.join("agent.log")).await;
                let why = if outcome.is_err() {
                    "did not become ready in time"
                } else {
                    "exited before it was ready"
                };
                tracing::warn!(session_id = %id, log = %log_tail, "agent {why}");
                let message = format!("pico-agent {why}: {log_tail}");
                Err(if outcome.is_err() {
                    RuntimeError::Timeout(message)
                } else {
                    RuntimeError::Create(message)
                })
            }
        }
    }

    /// The pid of the session's agent if it still runs (checked against its command line,
    /// since pids are reused).
    async fn live_agent_pid(&self, id: Uuid) -> Option<u32> {
        let pid: u32 = tokio::fs::read_to_string(self.dir(id).join("agent.pid"))
            .await
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = tokio::fs::read(format!("/proc/{pid}/cmdline")).await.ok()?;
        let needle = id.to_string();
        let matches = cmdline
            .split(|b| *b == 0)
            .any(|arg| String::from_utf8_lossy(arg).contains(&needle));
        matches.then_some(pid)
    }

    async fn stop_agent(&self, id: Uuid) {
        let Some(pid) = self.live_agent_pid(id).await else {
            return;
        };
        sys::kill(pid, sys::SIGTERM);
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.live_agent_pid(id).await.is_none() {
                return;
            }
        }
        kill_group(pid);
    }

    async fn remove_session_dir(&self, id: Uuid) -> Result<(), RuntimeError> {
        self.cgroups.remove(id).await;
        self.freezer.remove(id).await;
        let dir = self.dir(id);
        if let Some(uid) = self.read_uid(&dir).await {
            self.uids.release(uid);
        }
        match tokio::fs::remove_dir_all(&dir).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(RuntimeError::Delete(format!(
                "cannot remove {}: {e}",
                dir.display()
            ))),
            _ => Ok(()),
        }
    }

    async fn dial(&self, id: Uuid) -> std::io::Result<UnixStream> {
        UnixStream::connect(self.dir(id).join("agent.sock")).await
    }
}

#[async_trait::async_trait]
impl Runtime for LocalRuntime {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn ready(&self) -> Result<(), RuntimeError> {
        tokio::fs::metadata(&self.sessions_dir)
            .await
            .map(|_| ())
            .map_err(|e| RuntimeError::Unavailable(format!("state directory: {e}")))
    }

    async fn create(&self, spec: SandboxSpec<'_>) -> Result<(), RuntimeError> {
        let id = spec.record.id;
        let _guard = self.starting.lock(id).await;
        let uid = if self.as_root {
            Some(self.allocate_uid()?)
        } else {
            None
        };
        let dir = self.dir(id);
        let started = async {
            self.prepare_dir(&dir, &spec, uid).await?;
            if let Some(image) = &spec.record.image {
                super::local_image::prepare(self.images.as_ref(), image, &dir).await?;
            }
            self.start_agent(id, &spec.record.username).await
        }
        .await;
        if let Err(err) = started {
            self.stop_agent(id).await;
            if let Err(cleanup) = self.remove_session_dir(id).await {
                tracing::warn!(session_id = %id, error = %cleanup, "cleanup after failed create");
            }
            if let Some(uid) = uid {
                self.uids.release(uid);
            }
            return Err(err);
        }
        if let (Some(images), Some(_)) = (&self.images, &spec.record.image) {
            super::local_image::evict(images, &self.sessions_dir).await;
        }
        Ok(())
    }

    async fn delete(&self, id: Uuid) -> Result<(), RuntimeError> {
        // A frozen agent would hold its SIGTERM until thawed: thaw first, then stop it.
        self.thaw_quietly(id).await;
        self.stop_agent(id).await;
        self.remove_session_dir(id).await
    }

    async fn connect(&self, id: Uuid) -> Result<BoxedStream, RuntimeError> {
        match self.dial(id).await {
            Ok(stream) => Ok(Box::pin(stream)),
            Err(first) => {
                // The agent died (crash, OOM, kill): start it again on the same files.
                if self.live_agent_pid(id).await.is_some() || !self.dir(id).is_dir() {
                    return Err(RuntimeError::Unreachable(first.to_string()));
                }
                tracing::warn!(session_id = %id, error = %first, "agent gone; restarting it");
                let _guard = self.starting.lock(id).await;
                if self.live_agent_pid(id).await.is_none() {
                    let username = read_username(&self.dir(id)).await;
                    self.start_agent(id, &username).await.map_err(|e| {
                        RuntimeError::Unreachable(format!("agent could not be restarted: {e}"))
                    })?;
                }
                let stream = self
                    .dial(id)
                    .await
                    .map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
                Ok(Box::pin(stream))
            }
        }
    }

    async fn recover(&self, record: &SessionRecord) -> Result<Recovery, RuntimeError> {
        let dir = self.dir(record.id);
        if !dir.join("host_key").is_file() {
            return Err(RuntimeError::Unavailable(format!(
                "files of session {} are gone",
                record.id
            )));
        }
        if self.as_root {
            let uid = self
                .read_uid(&dir)
                .await
                .ok_or_else(|| RuntimeError::Unavailable("session uid file missing".into()))?;
            self.uids.claim(uid);
        }
        // The expiry may have been extended since the agent learnt it.
        write_expiry(&dir, record).await?;
        if self.live_agent_pid(record.id).await.is_some() && self.dial(record.id).await.is_ok() {
            return Ok(Recovery::Adopted);
        }
        self.stop_agent(record.id).await;
        self.start_agent(record.id, &record.username).await?;
        Ok(Recovery::Restarted)
    }

    async fn pause(&self, id: Uuid) -> Result<(), RuntimeError> {
        self.pause_sandbox(id).await
    }

    async fn resume(&self, id: Uuid) -> Result<(), RuntimeError> {
        self.resume_sandbox(id).await
    }

    async fn remove_orphans(&self, known: &[Uuid]) -> Result<usize, RuntimeError> {
        let mut removed = 0;
        let mut entries = tokio::fs::read_dir(&self.sessions_dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| Uuid::parse_str(n).ok()) else {
                continue;
            };
            if known.contains(&id) {
                continue;
            }
            tracing::info!(session_id = %id, "removing orphaned sandbox");
            self.delete(id).await?;
            removed += 1;
        }
        // Groups of sandboxes whose directories are already gone (a crash mid-delete);
        // rmdir refuses groups that still have processes.
        for id in self.cgroups.session_ids() {
            if !known.contains(&id) && !self.dir(id).exists() {
                self.cgroups.remove_if_empty(id);
            }
        }
        Ok(removed)
    }

    fn image_progress(&self, image: &str) -> Option<(u64, u64)> {
        self.images.as_ref()?.store.progress(image)
    }

    async fn images(&self) -> Result<Vec<pico_wire::ImageInfo>, RuntimeError> {
        Ok(match &self.images {
            Some(images) => super::local_image::list(images, &self.sessions_dir),
            None => Vec::new(),
        })
    }
}

async fn read_username(dir: &Path) -> String {
    tokio::fs::read_to_string(dir.join("username"))
        .await
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "sandbox".into())
}

fn kill_group(pid: u32) {
    // The agent leads its own process group; with it go its namespace's processes.
    if let Ok(pid) = i32::try_from(pid) {
        sys::kill_group(pid, sys::SIGKILL);
    }
}

pub(super) async fn write_private(path: &Path, contents: &str) -> Result<(), RuntimeError> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .await?;
    file.write_all(contents.as_bytes()).await?;
    file.sync_all().await?;
    Ok(())
}

/// The last lines of the agent's log, for error messages.
async fn tail(path: &Path) -> String {
    let text = tokio::fs::read_to_string(path).await.unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}
