//! Background processes of the sandbox (DESIGN.md §13): started for the API server, kept
//! running whatever happens to the connection that started them, with their output retained
//! in a [`Ring`] per stream, their stdin held open, and their exit remembered for
//! [`RETENTION`] before the entry is forgotten.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::config::Settings;
use crate::fdio::FdIo;
use crate::proc_ring::{RING_CAP, Ring};
use crate::reaper::Reaper;
use crate::sys;

/// How long an exited process stays listed (with its output) before it is forgotten.
pub const RETENTION: Duration = Duration::from_secs(600);
/// Upper bound of the table whatever the server asks, so the agent's memory stays bounded.
pub const HARD_CAP: usize = 1024;

/// Why a table operation failed; `code` is the API's error code.
#[derive(Debug)]
pub struct ProcError {
    pub code: &'static str,
    pub message: String,
}

impl ProcError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(pid: i32) -> Self {
        Self::new("PROCESS_NOT_FOUND", format!("no background process {pid}"))
    }

    pub fn exited(pid: i32) -> Self {
        Self::new("PROCESS_EXITED", format!("process {pid} has exited"))
    }
}

/// How the process ended.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    /// The exit code, or 128+n for a signal (as a shell reports it).
    pub code: i32,
    pub duration_ms: u64,
}

pub struct State {
    pub streams: [Ring; 2],
    pub exit: Option<Exit>,
    /// Exited and both output pipes drained: nothing more will come.
    pub finished: bool,
    exited_at: Option<Instant>,
}

pub struct Proc {
    pub id: String,
    pub pid: i32,
    pub command: String,
    pub started_ms: u64,
    state: Mutex<State>,
    /// Bumped on new output and on exit; followers wait on it.
    changed: watch::Sender<()>,
    /// The write end of the process's stdin while it is open.
    pub stdin: tokio::sync::Mutex<Option<FdIo>>,
}

impl Proc {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state());
        self.changed.send_replace(());
    }
}

pub struct ProcTable {
    settings: Arc<Settings>,
    reaper: Arc<Reaper>,
    procs: Mutex<Vec<Arc<Proc>>>,
}

impl ProcTable {
    pub fn new(settings: Arc<Settings>, reaper: Arc<Reaper>) -> Self {
        Self {
            settings,
            reaper,
            procs: Mutex::default(),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Vec<Arc<Proc>>> {
        let mut procs = self.procs.lock().unwrap_or_else(PoisonError::into_inner);
        procs.retain(|p| {
            p.state()
                .exited_at
                .is_none_or(|at| at.elapsed() < RETENTION)
        });
        procs
    }

    pub fn list(&self) -> Vec<Arc<Proc>> {
        self.entries().clone()
    }

    pub fn get(&self, pid: i32) -> Result<Arc<Proc>, ProcError> {
        self.entries()
            .iter()
            .find(|p| p.pid == pid)
            .cloned()
            .ok_or_else(|| ProcError::not_found(pid))
    }

    /// Starts `command` under `/bin/sh -c` in its own process group. At `max` entries the
    /// oldest exited one is forgotten to make room; with none, the start is refused.
    pub fn start(self: &Arc<Self>, command: &str, max: usize) -> Result<Arc<Proc>, ProcError> {
        let max = max.clamp(1, HARD_CAP);
        let mut procs = self.entries();
        if procs.len() >= max {
            match procs.iter().position(|p| p.state().exit.is_some()) {
                Some(oldest_exited) => {
                    procs.remove(oldest_exited);
                }
                None => {
                    return Err(ProcError::new(
                        "TOO_MANY_PROCESSES",
                        format!("{max} background processes are running; stop one first"),
                    ));
                }
            }
        }
        let proc = self
            .spawn(command)
            .map_err(|e| ProcError::new("INTERNAL_ERROR", format!("cannot start: {e}")))?;
        // A pid the kernel reused replaces the exited entry that held it.
        procs.retain(|p| p.pid != proc.pid);
        procs.push(proc.clone());
        Ok(proc)
    }

    fn spawn(&self, command: &str) -> io::Result<Arc<Proc>> {
        let settings = &self.settings;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(OsStr::from_bytes(command.as_bytes()));
        cmd.env_clear().envs(settings.command_env());
        let home: &Path = &settings.home;
        cmd.current_dir(if home.is_dir() { home } else { Path::new("/") });
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        sys::prepare_command(&mut cmd, false, settings.identity);
        let started = Instant::now();
        let (mut child, exit) = self.reaper.spawn(&mut cmd)?;
        let take = |fd: Option<OwnedFd>| {
            let fd = fd.ok_or_else(|| io::Error::other("missing pipe"))?;
            FdIo::new(fd)
        };
        let stdin = take(child.stdin.take().map(OwnedFd::from))?;
        let stdout = take(child.stdout.take().map(OwnedFd::from))?;
        let stderr = take(child.stderr.take().map(OwnedFd::from))?;
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let proc = Arc::new(Proc {
            id: format!("proc-{pid}-{started_ms:x}"),
            pid,
            command: command.to_owned(),
            started_ms,
            state: Mutex::new(State {
                streams: [Ring::new(RING_CAP), Ring::new(RING_CAP)],
                exit: None,
                finished: false,
                exited_at: None,
            }),
            changed: watch::Sender::new(()),
            stdin: tokio::sync::Mutex::new(Some(stdin)),
        });
        tokio::spawn(watch_process(proc.clone(), exit, stdout, stderr, started));
        Ok(proc)
    }
}

/// Fills the rings until the process has exited and its output is drained, then marks the
/// entry finished.
async fn watch_process(
    proc: Arc<Proc>,
    exit: tokio::sync::oneshot::Receiver<ExitStatus>,
    stdout: FdIo,
    stderr: FdIo,
    started: Instant,
) {
    let (exited_tx, exited_rx) = watch::channel(false);
    let pumps = [
        tokio::spawn(pump(proc.clone(), 0, stdout, exited_rx.clone())),
        tokio::spawn(pump(proc.clone(), 1, stderr, exited_rx)),
    ];
    let status = exit.await;
    let code = match status {
        Ok(status) => status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(255),
        Err(_) => 255,
    };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    proc.update(|st| {
        st.exit = Some(Exit { code, duration_ms });
        st.exited_at = Some(Instant::now());
    });
    let _ = exited_tx.send(true);
    for pump in pumps {
        let _ = pump.await;
    }
    // Nobody can write to an exited process: its stdin goes too.
    *proc.stdin.lock().await = None;
    proc.update(|st| st.finished = true);
}

/// One output stream of a process as a writer: what the shared pump copies lands in its ring.
struct RingWriter {
    proc: Arc<Proc>,
    stream: usize,
}

impl tokio::io::AsyncWrite for RingWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        self.proc.update(|st| st.streams[self.stream].push(buf));
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Copies one output pipe into its ring until EOF, or until the process has exited and the
/// pipe stayed quiet (the same pump as a foreground command's).
async fn pump(proc: Arc<Proc>, stream: usize, from: FdIo, exited: watch::Receiver<bool>) {
    crate::exec::pump(from, RingWriter { proc, stream }, exited).await;
}
