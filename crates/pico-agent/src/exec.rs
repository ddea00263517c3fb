//! Session commands: spawning one (pipes or a pty) and pumping its I/O, exit status and
//! hang-up through its SSH channel.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, Sig};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

use crate::config::Settings;
use crate::fdio::FdIo;
use crate::reaper::Reaper;
use crate::sys::{self, Identity, WinSize};

/// After the command exits, output still arriving this soon is forwarded; a pipe kept open
/// longer (by a background process that kept our stdout) no longer holds the channel open.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// Kernel buffer of the command's stdin/stdout/stderr pipes (Linux's default pipe-max-size).
const PIPE_SIZE: i32 = 1024 * 1024;
/// Client input held for a command that is not reading its stdin yet.
const INPUT_BACKLOG: usize = 16 * 1024 * 1024;
/// Bytes moved from a pipe or pty to the channel per read.
const PUMP_CHUNK: usize = 256 * 1024;

/// How long after a command's exit the rest of its process group is hung up.
const HANGUP_DELAY: Duration = Duration::from_millis(1000);

/// A `pty-req` as received.
#[derive(Clone, Debug)]
pub struct PtySpec {
    pub term: String,
    pub size: WinSize,
    pub modes: Vec<(u8, u32)>,
}

pub enum Program {
    /// The login shell (`shell` request).
    Shell,
    /// `/bin/sh -c` with the client's command line (`exec` request).
    Exec(Vec<u8>),
    /// This binary's sftp server (`subsystem sftp`).
    Sftp,
}

/// The handler's view of a running command: enough to signal, resize and hang it up.
#[derive(Default)]
pub struct ProcessCtl {
    pgid: AtomicI32,
    pty: Mutex<Option<FdIo>>,
    /// Set once the command has exited: then only the delayed hang-up in [`drive`] applies.
    exited: AtomicBool,
}

impl ProcessCtl {
    /// What a terminal hang-up does: SIGHUP (and SIGCONT, so stopped jobs see it) to the
    /// command's process group. `nohup`ed or `setsid`ed processes survive it.
    pub fn hangup(&self) {
        if !self.exited.load(Ordering::SeqCst) {
            self.hangup_group();
        }
    }

    fn hangup_group(&self) {
        let pgid = self.pgid.load(Ordering::SeqCst);
        sys::kill_group(pgid, libc::SIGHUP);
        sys::kill_group(pgid, libc::SIGCONT);
    }

    /// Delivers a client's `signal` request: with a pty to the terminal's foreground job (as
    /// typing ^C would), otherwise to the command's process group.
    pub fn signal(&self, signal: &Sig) -> bool {
        let Some(number) = signal_number(signal) else {
            return false;
        };
        let foreground = {
            let pty = self.pty.lock().unwrap_or_else(PoisonError::into_inner);
            pty.as_ref()
                .and_then(|master| sys::foreground_group(master.file()))
        };
        sys::kill_group(
            foreground.unwrap_or_else(|| self.pgid.load(Ordering::SeqCst)),
            number,
        );
        true
    }

    pub fn resize(&self, size: WinSize) -> bool {
        let pty = self.pty.lock().unwrap_or_else(PoisonError::into_inner);
        pty.as_ref()
            .is_some_and(|master| sys::resize_pty(master.file(), size).is_ok())
    }
}

/// The SSH name of a signal: russh's named variants print as they are sent.
fn sig_name(signal: &Sig) -> String {
    match signal {
        Sig::Custom(name) => name.clone(),
        named => format!("{named:?}"),
    }
}

fn signal_number(signal: &Sig) -> Option<i32> {
    pico_wire::signal::number(&sig_name(signal))
}

/// The `Sig` of signal `number`; a custom name goes on the wire exactly as a named variant.
fn signal_name(number: i32) -> Sig {
    Sig::Custom(
        pico_wire::signal::name(number).map_or_else(|| format!("SIG{number}"), str::to_owned),
    )
}

enum Io {
    Pipes {
        stdin: FdIo,
        stdout: FdIo,
        stderr: Option<FdIo>,
    },
    Pty {
        master: FdIo,
    },
}

/// A spawned command whose I/O is not yet attached to its channel.
pub struct Running {
    exit: oneshot::Receiver<ExitStatus>,
    io: Io,
}

/// Spawns `program` for a channel with the client's `env` requests and optional pty.
pub fn spawn(
    settings: &Settings,
    reaper: &Reaper,
    ctl: &ProcessCtl,
    program: &Program,
    client_env: &[(String, String)],
    pty: Option<&PtySpec>,
) -> io::Result<Running> {
    let mut cmd = match program {
        Program::Shell => {
            let mut cmd = Command::new(&settings.shell);
            cmd.arg("-l");
            cmd
        }
        Program::Exec(line) => {
            // Always POSIX sh, whatever the login shell: clients quote for sh.
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(OsStr::from_bytes(line));
            cmd
        }
        Program::Sftp => sftp_command(settings),
    };
    cmd.env_clear()
        .envs(settings.command_env())
        .envs(client_env.iter().cloned());
    let home: &Path = &settings.home;
    let start = settings.workdir.as_deref().filter(|dir| dir.is_dir());
    cmd.current_dir(start.unwrap_or(if home.is_dir() { home } else { Path::new("/") }));
    // The sftp server drops its own privileges, after exec, from the agent's binary.
    let identity = if matches!(program, Program::Sftp) {
        Identity::Inherit
    } else {
        settings.identity
    };
    let pty = pty.filter(|_| !matches!(program, Program::Sftp));
    let (child, exit, io) = match pty {
        Some(spec) => {
            let (master, slave) = sys::open_pty(spec.size, &spec.modes)?;
            cmd.env("TERM", &spec.term);
            let clone = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
            cmd.stdin(clone(&slave)?)
                .stdout(clone(&slave)?)
                .stderr(Stdio::from(slave));
            sys::prepare_command(&mut cmd, true, identity);
            let (child, exit) = reaper.spawn(&mut cmd)?;
            (
                child,
                exit,
                Io::Pty {
                    master: FdIo::pty_master(master)?,
                },
            )
        }
        None => {
            let sftp = matches!(program, Program::Sftp);
            // sftp's stderr carries its log, never protocol bytes: it goes to the agent's log.
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
            cmd.stderr(if sftp {
                Stdio::inherit()
            } else {
                Stdio::piped()
            });
            sys::prepare_command(&mut cmd, false, identity);
            let (mut child, exit) = reaper.spawn(&mut cmd)?;
            let take = |fd: Option<OwnedFd>| {
                let fd = fd.ok_or_else(|| io::Error::other("missing pipe"))?;
                sys::grow_pipe(&fd, PIPE_SIZE);
                FdIo::new(fd)
            };
            let stdin = take(child.stdin.take().map(OwnedFd::from))?;
            let stdout = take(child.stdout.take().map(OwnedFd::from))?;
            let stderr = child
                .stderr
                .take()
                .map(|fd| FdIo::new(OwnedFd::from(fd)))
                .transpose()?;
            (
                child,
                exit,
                Io::Pipes {
                    stdin,
                    stdout,
                    stderr,
                },
            )
        }
    };
    drop(cmd); // closes our copies of the pty slave
    ctl.pgid.store(
        i32::try_from(child.id()).map_err(io::Error::other)?,
        Ordering::SeqCst,
    );
    if let Io::Pty { master } = &io {
        *ctl.pty.lock().unwrap_or_else(PoisonError::into_inner) = Some(master.clone());
    }
    Ok(Running { exit, io })
}

fn sftp_command(settings: &Settings) -> Command {
    let fd = settings.exe.as_raw_fd();
    let mut cmd = Command::new(format!("/proc/self/fd/{fd}"));
    sys::keep_open_across_exec(&mut cmd, fd);
    cmd.arg("sftp-server").arg("--home").arg(&settings.home);
    match settings.identity {
        Identity::Inherit => {}
        Identity::Switch { uid, gid } => {
            cmd.args(["--uid", &uid.to_string(), "--gid", &gid.to_string()]);
        }
        Identity::NsRootNoCaps => {
            cmd.arg("--drop-caps");
        }
    }
    cmd
}

/// Copies command output to the channel until EOF, or until the command has exited and the
/// output has been quiet for [`DRAIN_GRACE`].
pub(crate) async fn pump(
    mut from: FdIo,
    mut to: impl AsyncWrite + Unpin,
    mut exited: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; PUMP_CHUNK];
    let mut done = *exited.borrow();
    loop {
        let read = if done {
            match tokio::time::timeout(DRAIN_GRACE, from.read(&mut buf)).await {
                Ok(read) => read,
                Err(_quiet) => break,
            }
        } else {
            tokio::select! {
                read = from.read(&mut buf) => read,
                _ = exited.changed() => { done = true; continue; }
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.flush().await;
}

/// Forwards channel data to the command's stdin (EOF closes it) until the channel closes.
///
/// Input is queued here (up to [`INPUT_BACKLOG`]) rather than written inline: russh delivers
/// every channel's data from the connection's single loop, so a command that does not read
/// its stdin must not stall that loop, and with it the command's own output.
async fn feed(
    mut rx: russh::ChannelReadHalf,
    mut stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    close_on_eof: bool,
) {
    let mut queue: VecDeque<Bytes> = VecDeque::new();
    let mut queued = 0usize;
    let mut eof = false;
    loop {
        if eof && close_on_eof && queue.is_empty() {
            stdin = None;
        }
        let chunk = queue.front().cloned().filter(|_| stdin.is_some());
        tokio::select! {
            msg = rx.wait(), if queued < INPUT_BACKLOG => match msg {
                Some(ChannelMsg::Data { data }) if stdin.is_some() => {
                    queued += data.len();
                    queue.push_back(data);
                }
                Some(ChannelMsg::Eof) => eof = true,
                Some(ChannelMsg::Close) | None => return,
                Some(_) => {}
            },
            written = write_some(&mut stdin, chunk.as_deref().unwrap_or_default()), if chunk.is_some() => {
                match written {
                    Ok(n) => {
                        queued -= n;
                        if let Some(front) = queue.front_mut() {
                            let _ = front.split_to(n);
                            if front.is_empty() {
                                queue.pop_front();
                            }
                        }
                    }
                    Err(_) => {
                        // The command closed its stdin: discard further input, like sshd.
                        stdin = None;
                        queue.clear();
                        queued = 0;
                    }
                }
            }
        }
    }
}

async fn write_some(
    stdin: &mut Option<Box<dyn AsyncWrite + Send + Unpin>>,
    data: &[u8],
) -> io::Result<usize> {
    match stdin {
        Some(writer) => match writer.write(data).await? {
            0 => Err(io::ErrorKind::WriteZero.into()),
            n => Ok(n),
        },
        None => Err(io::ErrorKind::BrokenPipe.into()),
    }
}

/// Drives a spawned command to the end: output to the channel, channel data to stdin, then
/// exit-status or exit-signal, EOF and close; the process group is hung up when the channel
/// or the connection goes away, or when the command is done.
pub async fn drive(channel: Channel<Msg>, handle: Handle, running: Running, ctl: Arc<ProcessCtl>) {
    let id = channel.id();
    let (rx, tx) = channel.split();
    let (exited_tx, exited_rx) = watch::channel(false);
    let mut pumps = Vec::new();
    let (stdin, close_on_eof): (Box<dyn AsyncWrite + Send + Unpin>, bool) = match running.io {
        Io::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            pumps.push(tokio::spawn(pump(
                stdout,
                tx.make_writer(),
                exited_rx.clone(),
            )));
            if let Some(stderr) = stderr {
                pumps.push(tokio::spawn(pump(
                    stderr,
                    tx.make_writer_ext(Some(1)),
                    exited_rx.clone(),
                )));
            }
            (Box::new(stdin), true)
        }
        // A pty cannot be half-closed: client EOF is ignored, as sshd does.
        Io::Pty { master } => {
            pumps.push(tokio::spawn(pump(
                master.clone(),
                tx.make_writer(),
                exited_rx.clone(),
            )));
            (Box::new(master), false)
        }
    };
    let feeder_ctl = ctl.clone();
    let feeder = tokio::spawn(async move {
        feed(rx, Some(stdin), close_on_eof).await;
        // The client closed the channel or the connection dropped: hang up like a terminal.
        feeder_ctl.hangup();
    });
    let status = running.exit.await;
    ctl.exited.store(true, Ordering::SeqCst);
    let _ = exited_tx.send(true);
    for pump in pumps {
        let _ = pump.await;
    }
    if let Ok(status) = status {
        if let Some(code) = status.code() {
            let _ = handle
                .exit_status_request(id, u32::try_from(code).unwrap_or(255))
                .await;
        } else if let Some(signal) = status.signal() {
            let sig = signal_name(signal);
            let _ = handle
                .exit_signal_request(id, sig, status.core_dumped(), String::new(), String::new())
                .await;
        }
    }
    let _ = tx.eof().await;
    let _ = tx.close().await;
    *ctl.pty.lock().unwrap_or_else(PoisonError::into_inner) = None;
    feeder.abort();
    // Background jobs left in the group are hung up, but only after a moment: a job the shell
    // just forked may not have reached `nohup`'s signal(SIGHUP, SIG_IGN) yet.
    tokio::time::sleep(HANGUP_DELAY).await;
    ctl.hangup_group();
}

/// Reads everything a reader yields (used by tests of the pump logic).
#[cfg(test)]
async fn read_all(mut r: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = r.read_to_end(&mut out).await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_round_trip() {
        assert_eq!(signal_number(&Sig::TERM), Some(libc::SIGTERM));
        assert_eq!(
            signal_number(&Sig::Custom("USR2".into())),
            Some(libc::SIGUSR2)
        );
        assert_eq!(signal_number(&Sig::Custom("NOPE".into())), None);
        assert_eq!(sig_name(&signal_name(libc::SIGKILL)), "KILL");
        assert_eq!(sig_name(&signal_name(libc::SIGUSR2)), "USR2");
    }

    #[tokio::test]
    async fn pump_stops_after_exit_when_output_stays_quiet() {
        let (r, w) = std::io::pipe().expect("pipe");
        let reader = FdIo::new(OwnedFd::from(r)).expect("fdio");
        let mut writer = std::fs::File::from(OwnedFd::from(w));
        std::io::Write::write_all(&mut writer, b"hello").expect("write");
        let (tx, rx) = watch::channel(false);
        let (out_w, out_r) = tokio::io::duplex(1024);
        let task = tokio::spawn(pump(reader, out_w, rx));
        tx.send(true).expect("send");
        // `writer` stays open, as a background process would keep it: the pump must still end.
        task.await.expect("pump");
        assert_eq!(read_all(out_r).await, b"hello");
        drop(writer);
    }
}
