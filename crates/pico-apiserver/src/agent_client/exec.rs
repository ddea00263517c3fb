//! One command on a channel of the session's connection: stdin in, stdout/stderr out as they
//! come, the exit last. The deadline, a caller that goes away, or a dropped [`Execution`]
//! kill the command's whole process group (the agent's `signal` request).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pico_wire::{CommandStatus, ExitEvent};
use russh::{ChannelMsg, Sig};
use tokio::sync::mpsc;

use super::{AgentConn, AgentError};

/// Output chunks held between the channel and a slow reader.
const QUEUE: usize = 32;
/// After the kill at the deadline, how long the channel may take to close on its own.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Exit code of a command the agent could not start (as a shell's "command not found").
const NOT_STARTED: i32 = 127;

pub struct ExecSpec {
    /// Run by the agent under `/bin/sh -c`.
    pub command_line: String,
    pub stdin: Option<Bytes>,
    pub timeout: Duration,
}

#[derive(Debug)]
pub enum ExecOutput {
    Stdout(Bytes),
    Stderr(Bytes),
    Exit(ExitEvent),
}

/// A running command's output; dropping it kills the command.
pub struct Execution {
    rx: mpsc::Receiver<ExecOutput>,
}

impl Execution {
    /// The next output, or `None` after the exit event.
    pub async fn next(&mut self) -> Option<ExecOutput> {
        self.rx.recv().await
    }
}

impl AgentConn {
    /// Starts `spec` on a new channel; output flows through the returned [`Execution`].
    pub async fn exec(self: &Arc<Self>, spec: ExecSpec) -> Result<Execution, AgentError> {
        let channel = self.handle.channel_open_session().await?;
        channel.exec(true, spec.command_line.into_bytes()).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(drive(channel, spec.stdin, spec.timeout, tx));
        Ok(Execution { rx })
    }
}

/// The command's deadline, and whether its kill has been sent.
struct Deadline {
    at: tokio::time::Instant,
    fired: bool,
}

async fn drive(
    channel: russh::Channel<russh::client::Msg>,
    stdin: Option<Bytes>,
    timeout: Duration,
    tx: mpsc::Sender<ExecOutput>,
) {
    let started = Instant::now();
    let (mut read, write) = channel.split();
    let write = Arc::new(write);
    let feeder = {
        let write = write.clone();
        tokio::spawn(async move {
            if let Some(data) = stdin {
                let _ = write.data(&data[..]).await;
            }
            let _ = write.eof().await;
        })
    };
    let mut deadline = Deadline {
        at: tokio::time::Instant::now() + timeout,
        fired: false,
    };
    let mut code: Option<i32> = None;
    let mut refused = false;
    loop {
        let grace = deadline.at + KILL_GRACE;
        let msg = tokio::select! {
            msg = read.wait() => msg,
            () = tokio::time::sleep_until(deadline.at), if !deadline.fired => {
                deadline.fired = true;
                let _ = write.signal(Sig::KILL).await;
                continue;
            }
            // Something outside the group still holds the output open: give up on it.
            () = tokio::time::sleep_until(grace), if deadline.fired => break,
            () = tx.closed() => {
                let _ = write.signal(Sig::KILL).await;
                let _ = write.close().await;
                feeder.abort();
                return;
            }
        };
        let out = match msg {
            Some(ChannelMsg::Data { data }) => ExecOutput::Stdout(data),
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => ExecOutput::Stderr(data),
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                code = Some(i32::try_from(exit_status).unwrap_or(255));
                continue;
            }
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                code = Some(128 + signal_number(&signal_name));
                continue;
            }
            Some(ChannelMsg::Failure) => {
                refused = true;
                continue;
            }
            Some(ChannelMsg::Close) | None => break,
            Some(_) => continue,
        };
        if !send(&tx, out, &mut deadline, &write).await {
            let _ = write.close().await;
            feeder.abort();
            return;
        }
    }
    feeder.abort();
    let _ = write.close().await;
    if refused && code.is_none() {
        let message = Bytes::from_static(b"the sandbox could not start the command\n");
        let _ = tx.send(ExecOutput::Stderr(message)).await;
        code = Some(NOT_STARTED);
    }
    let status = match code {
        _ if deadline.fired => CommandStatus::Timeout,
        Some(0) => CommandStatus::Completed,
        _ => CommandStatus::Failed,
    };
    let exit = ExitEvent {
        status,
        exit_code: if deadline.fired { None } else { code },
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let _ = tx.send(ExecOutput::Exit(exit)).await;
}

/// Hands `out` to the reader; the deadline still kills while a slow reader holds us up.
/// False when the reader is gone (the command has then been killed).
async fn send(
    tx: &mpsc::Sender<ExecOutput>,
    out: ExecOutput,
    deadline: &mut Deadline,
    write: &russh::ChannelWriteHalf<russh::client::Msg>,
) -> bool {
    let sending = tx.send(out);
    tokio::pin!(sending);
    loop {
        tokio::select! {
            sent = &mut sending => {
                if sent.is_err() {
                    let _ = write.signal(Sig::KILL).await;
                    return false;
                }
                return true;
            }
            () = tokio::time::sleep_until(deadline.at), if !deadline.fired => {
                deadline.fired = true;
                let _ = write.signal(Sig::KILL).await;
            }
        }
    }
}

/// Linux signal numbers, for the `128 + n` exit code of a command killed by a signal.
fn signal_number(signal: &Sig) -> i32 {
    let name = match signal {
        Sig::Custom(name) => name.clone(),
        // russh's named variants print as they are sent.
        named => format!("{named:?}"),
    };
    pico_wire::signal::number(&name).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_linux_numbers() {
        assert_eq!(signal_number(&Sig::KILL), 9);
        assert_eq!(signal_number(&Sig::TERM), 15);
        assert_eq!(signal_number(&Sig::Custom("USR2".into())), 12);
    }
}
