//! The CLI's own SSH client (russh) over a session's tunnel: host key checked against the
//! session's `hostKeys`, then one command, an interactive shell, or the sftp subsystem.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use pico_wire::Session;
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::Client;
use crate::{term, tunnel};

/// Exit code when the remote command died of a signal and no number was given.
const SIGNALLED: i32 = 255;

/// Accepts exactly the host keys the server announced for the session.
pub struct Verifier {
    expected: Vec<PublicKey>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.expected.iter().any(|k| k.key_data() == key.key_data())
            }
            PublicKeyOrCertificate::Certificate(_) => false,
        })
    }
}

pub struct Connection {
    handle: Handle<Verifier>,
}

/// Opens a tunnel to `session`, verifies its host key and logs in with `key`.
pub async fn connect(
    client: &Client,
    session: &Session,
    key: PrivateKey,
) -> anyhow::Result<Connection> {
    let expected: Vec<PublicKey> = session
        .ssh
        .host_keys
        .iter()
        .filter_map(|k| PublicKey::from_openssh(k).ok())
        .collect();
    if expected.is_empty() {
        bail!(
            "the server announced no usable host key for session {}",
            session.session_id
        );
    }
    let stream = tunnel::open(client, session.session_id).await?;
    let config = client::Config {
        // A shell may sit idle for hours; keepalives notice a dead tunnel instead.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        ..Default::default()
    };
    let verifier = Verifier { expected };
    let mut handle = client::connect_stream(Arc::new(config), stream, verifier)
        .await
        .map_err(|err| match err {
            russh::Error::UnknownKey => anyhow::anyhow!(
                "the SSH host key of session {} does not match the one the server announced",
                session.session_id
            ),
            other => anyhow::Error::new(other).context("SSH handshake failed"),
        })?;
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let auth = handle
        .authenticate_publickey(
            session.ssh.username.clone(),
            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
        )
        .await
        .context("SSH authentication failed")?;
    if !auth.success() {
        bail!(
            "session {} did not accept pico's key (was it created with another key?)",
            session.session_id
        );
    }
    Ok(Connection { handle })
}

/// Joins argv into one command line: a single argument is passed as is (it may be a shell
/// snippet), several are quoted so that `-- sh -c 'exit 3'` means what it says.
pub fn command_line(args: &[String]) -> String {
    if let [one] = args {
        return one.clone();
    }
    args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

pub fn quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if safe {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

impl Connection {
    pub async fn sftp(&self) -> anyhow::Result<russh_sftp::client::SftpSession> {
        let channel = self.handle.channel_open_session().await?;
        channel.request_subsystem(true, "sftp").await?;
        russh_sftp::client::SftpSession::new(channel.into_stream())
            .await
            .context("cannot start SFTP")
    }

    /// Runs `command` (a shell when `None`) and relays stdio; returns the exit code.
    pub async fn run(&self, command: Option<&str>, pty: bool) -> anyhow::Result<i32> {
        let mut channel = self.handle.channel_open_session().await?;
        let _raw = if pty {
            let (cols, rows) = term::size();
            let term_name = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
            channel
                .request_pty(true, &term_name, cols, rows, 0, 0, &[])
                .await?;
            // `-t` with piped input asks for a remote pty without a local terminal to set.
            term::stdin_is_tty()
                .then(term::RawMode::enable)
                .transpose()
                .context("cannot put the terminal in raw mode")?
        } else {
            None
        };
        match command {
            Some(command) => channel.exec(true, command).await?,
            None => channel.request_shell(true).await?,
        }
        let writer = channel.make_writer();
        let mut stdin_task = tokio::spawn(pump_stdin(writer));
        let mut winch =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
                .ok()
                .filter(|_| pty);
        let mut stdout = tokio::io::stdout();
        let mut stderr = tokio::io::stderr();
        let mut code = None;
        let mut stdin_done = false;
        loop {
            tokio::select! {
                message = channel.wait() => match message {
                    Some(ChannelMsg::Data { data }) => {
                        stdout.write_all(&data).await?;
                        stdout.flush().await?;
                    }
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        stderr.write_all(&data).await?;
                        stderr.flush().await?;
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        code = Some(i32::try_from(exit_status).unwrap_or(SIGNALLED));
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        code.get_or_insert(signal_code(&signal_name));
                    }
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                },
                result = &mut stdin_task, if !stdin_done => {
                    stdin_done = true;
                    if let Ok(Ok(())) = result {
                        let _ = channel.eof().await;
                    }
                }
                Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => None } } => {
                    let (cols, rows) = term::size();
                    let _ = channel.window_change(cols, rows, 0, 0).await;
                }
            }
        }
        stdin_task.abort();
        drop(_raw);
        code.context("the session closed the command without an exit status")
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
}

async fn pump_stdin(mut writer: impl tokio::io::AsyncWrite + Unpin) -> std::io::Result<()> {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stdin.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        writer.write_all(&buf[..n]).await?;
        writer.flush().await?;
    }
}

/// The shell's convention for a command killed by a signal: 128 + its number.
fn signal_code(name: &russh::Sig) -> i32 {
    use russh::Sig;
    128 + match name {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::USR1 => 10,
        _ => return SIGNALLED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(command_line(&args(&["ls -l | wc"])), "ls -l | wc");
        assert_eq!(
            command_line(&args(&["sh", "-c", "exit 3"])),
            "sh -c 'exit 3'"
        );
        assert_eq!(
            command_line(&args(&["echo", "it's", ""])),
            r"echo 'it'\''s' ''"
        );
    }
}
