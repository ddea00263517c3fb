//! `pico`, the command-line client of pico sandbox sessions (`crates/pico-cli/README.md`):
//! dispatch, and errors as one line on stderr with a non-zero exit.

mod api;
mod cli;
mod commands;
mod config;
mod cp;
mod http_exec;
mod mcp;
mod procs;
mod proxy;
mod ssh;
mod ssh_config;
mod term;
mod tls;
mod tunnel;

use std::io::Write;

use anyhow::bail;
use clap::{CommandFactory, Parser};

use crate::api::Client;
use crate::cli::{Cli, Command};
use crate::config::Settings;
use crate::cp::Spec;

/// Exit code of `ssh`/`exec` when pico itself failed, as OpenSSH does: remote commands'
/// own codes stay distinguishable from it.
const SSH_FAILED: i32 = 255;
/// What a shell reports for a process killed by SIGPIPE.
const BROKEN_PIPE: i32 = 128 + 13;

fn main() {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        eprintln!("pico: internal error: {}", one_line(&message));
    }));
    let cli = Cli::parse();
    let is_ssh = matches!(cli.command, Command::Ssh { .. } | Command::Exec { .. });
    let code = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let result = runtime.block_on(run(cli));
            // Not a plain drop: that waits for a blocking read of stdin that may still be
            // parked in the runtime, holding the process until the user presses a key.
            runtime.shutdown_background();
            match result {
                Ok(code) => code,
                // Whoever read our output has gone (`pico list | head`): nobody to tell.
                Err(err) if is_broken_pipe(&err) => BROKEN_PIPE,
                Err(err) => {
                    eprintln!("pico: {}", one_line(&format!("{err:#}")));
                    if is_ssh { SSH_FAILED } else { 1 }
                }
            }
        }
        Err(err) => {
            eprintln!("pico: cannot start: {err}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "pico", &mut script);
        commands::emit(&String::from_utf8_lossy(&script))?;
        return Ok(0);
    }
    let settings = Settings::resolve(&cli.global)?;
    let mut client = Client::new(
        &settings.url,
        settings.token.clone(),
        settings.ca_cert.as_deref(),
    )?;
    client.websocket = cli.global.websocket;
    match cli.command {
        Command::Completions { .. } => {}
        Command::Create(args) => commands::create(&client, &settings, args).await?,
        Command::List {
            limit,
            offset,
            output,
        } => commands::list(&client, limit, offset, output).await?,
        Command::Images { output } => commands::images(&client, output).await?,
        Command::Get { id, output } => {
            let session = client.get(client.resolve(&id).await?).await?;
            settings.pin_host_keys(&session.session_id.to_string(), &session.ssh.host_keys)?;
            commands::print_session(&session, output)?;
        }
        Command::Delete { ids } => {
            for id in ids {
                let id = client.resolve(&id).await?;
                client.delete(id).await?;
                settings.pin_host_keys(&id.to_string(), &[])?;
                commands::emit(&format!("deleted {id}\n"))?;
            }
        }
        Command::Extend { id, ttl, output } => {
            let session = client.extend(client.resolve(&id).await?, ttl).await?;
            commands::print_session(&session, output)?;
        }
        Command::Pause { id, output } => {
            let id = client.resolve(&id).await?;
            let session = client.session_action(id, "pause").await?;
            commands::print_session(&session, output)?;
        }
        Command::Resume { id, output } => {
            let id = client.resolve(&id).await?;
            let session = client.session_action(id, "resume").await?;
            commands::print_session(&session, output)?;
        }
        Command::Ssh { id, tty, command } => {
            let command = (!command.is_empty()).then(|| ssh::command_line(&command));
            let pty = tty || (command.is_none() && term::stdin_is_tty());
            return remote(&client, &settings, &id, command.as_deref(), pty).await;
        }
        // Over the HTTP API: no SSH key needed, whoever made the session.
        Command::Exec {
            id,
            command,
            detach,
        } => {
            let command = ssh::command_line(&command);
            let id = client.resolve(&id).await?;
            if detach {
                procs::start(&client, id, &command).await?;
                return Ok(0);
            }
            return http_exec::exec(&client, id, &command).await;
        }
        Command::Ps { id, output } => {
            procs::list(&client, client.resolve(&id).await?, output).await?
        }
        Command::Logs {
            id,
            pid,
            follow,
            offset,
        } => {
            let id = client.resolve(&id).await?;
            return procs::logs(&client, id, pid, offset, follow).await;
        }
        Command::Kill { id, pid, signal } => {
            procs::kill(&client, client.resolve(&id).await?, pid, &signal).await?
        }
        Command::Run { id, lang, file } => {
            return http_exec::run_code(&client, client.resolve(&id).await?, &lang, &file).await;
        }
        Command::Cp {
            recursive,
            src,
            dst,
        } => match (recursive, Spec::parse(&src), Spec::parse(&dst)) {
            // Single files over the HTTP API; directories (-r) over SFTP.
            (false, Spec::Local(local), Spec::Remote { session, path }) => {
                let id = client.resolve(&session).await?;
                http_exec::upload(&client, id, &local, &path).await?
            }
            (false, Spec::Remote { session, path }, Spec::Local(local)) => {
                let id = client.resolve(&session).await?;
                http_exec::download(&client, id, &path, &local).await?
            }
            _ => {
                copy(
                    &client,
                    &settings,
                    Spec::parse(&src),
                    Spec::parse(&dst),
                    recursive,
                )
                .await?
            }
        },
        Command::Proxy { id } => {
            let id = client.resolve(proxy::target(&id)).await?;
            // Pin before the tunnel opens: OpenSSH reads known_hosts only after the banner.
            if let Ok(session) = client.get(id).await {
                settings.pin_host_keys(&id.to_string(), &session.ssh.host_keys)?;
            }
            proxy::run(&client, id).await?;
        }
        Command::SshConfig { install } => commands::ssh_config(&client, &settings, install).await?,
        Command::Mcp => mcp::serve(client).await?,
    }
    Ok(0)
}

async fn connect(
    client: &Client,
    settings: &Settings,
    id: &str,
) -> anyhow::Result<ssh::Connection> {
    let session = client.get(client.resolve(id).await?).await?;
    settings.pin_host_keys(&session.session_id.to_string(), &session.ssh.host_keys)?;
    ssh::connect(client, &session, settings.key()?).await
}

async fn remote(
    client: &Client,
    settings: &Settings,
    id: &str,
    command: Option<&str>,
    pty: bool,
) -> anyhow::Result<i32> {
    let connection = connect(client, settings, id).await?;
    let code = connection.run(command, pty).await?;
    connection.close().await;
    Ok(code)
}

async fn copy(
    client: &Client,
    settings: &Settings,
    src: Spec,
    dst: Spec,
    recursive: bool,
) -> anyhow::Result<()> {
    let (session, upload, local, remote) = match (src, dst) {
        (Spec::Local(local), Spec::Remote { session, path }) => (session, true, local, path),
        (Spec::Remote { session, path }, Spec::Local(local)) => (session, false, local, path),
        (Spec::Local(_), Spec::Local(_)) => bail!("one side of `pico cp` must be SESSION_ID:PATH"),
        (Spec::Remote { .. }, Spec::Remote { .. }) => {
            bail!("copying between two sessions is not supported; copy through a local file")
        }
    };
    let connection = connect(client, settings, &session).await?;
    let sftp = connection.sftp().await?;
    let result = if upload {
        cp::upload(&sftp, &local, &remote, recursive).await
    } else {
        cp::download(&sftp, &remote, &local, recursive).await
    };
    let _ = sftp.close().await;
    connection.close().await;
    result
}
