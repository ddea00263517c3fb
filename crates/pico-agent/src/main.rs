//! pico-agent: the SSH and SFTP server that runs inside every pico sandbox.

mod config;
mod exec;
mod fdio;
mod forward;
mod handler;
mod proc_protocol;
mod proc_ring;
mod proc_table;
mod reaper;
mod server;
mod session;
mod sftp;
mod sftp_main;
mod sys;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Cli, Command, ServeArgs, Settings};
use crate::reaper::Reaper;
use crate::server::Listener;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PICO_AGENT_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match &cli.command {
        Command::Serve(args) => serve(args),
        Command::Install { dir } => install(dir),
        Command::SftpServer(args) => sftp_main::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pico-agent: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn install(dir: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating this binary")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join("pico-agent");
    // Copy to a temporary name and rename, so a concurrent reader never sees half a binary.
    let partial = dir.join(".pico-agent.partial");
    std::fs::copy(&exe, &partial).with_context(|| format!("copying to {}", partial.display()))?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("installing {}", target.display()))?;
    Ok(())
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    // Everything that reads host files or binds happens before the namespaces exist.
    let mut settings = Settings::from_args(args)?;
    let listener = Listener::bind(&args.listen)?;
    let pid1 = if args.isolate {
        let home_dir = args.home.as_deref().unwrap_or(Path::new("/"));
        let home = std::fs::canonicalize(home_dir)
            .with_context(|| format!("--home {}", home_dir.display()))?;
        if !home.is_dir() {
            anyhow::bail!("--home {} is not a directory", home.display());
        }
        let spec = sys::IsolateSpec {
            home: &home,
            username: &args.username,
            hide: &args.hide,
            hostname: args.hostname.as_deref(),
            user_ns: sys::euid() != 0,
            private_network: args.private_network,
            account: args.uid.zip(args.gid),
            socket: listener.socket_path(),
            disk: args.disk.as_deref(),
            expires_file: args.expires_file.as_deref(),
            heartbeat_file: args.heartbeat_file.as_deref(),
            grace: std::time::Duration::from_secs(args.orphan_grace),
            image_root: args.image_root.as_deref(),
        };
        sys::isolate(&spec).context("setting up the sandbox namespaces")?;
        if args.image_root.is_some() {
            // The host's shell choice means nothing in the image's tree.
            settings.shell = config::shell_of(&args.username);
        }
        // Before any SSH byte is read: the agent becomes what its commands are.
        sys::drop_privileges(settings.identity).context("dropping privileges")?;
        settings.identity = sys::Identity::Inherit;
        true
    } else {
        false
    };
    // Built by hand, after any fork: a forked tokio runtime would be unusable.
    let runtime = if std::env::var_os("PICO_AGENT_ST").is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(listener, Arc::new(settings), pid1))
}

async fn run(listener: Listener, settings: Arc<Settings>, pid1: bool) -> anyhow::Result<()> {
    let reaper = Arc::new(Reaper::default());
    tokio::spawn(reaper.clone().run());
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    tracing::info!(listen = %listener.describe(), user = %settings.username, pid1, "pico-agent ready");
    let socket = listener.socket_path();
    {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(b"ready\n")?;
        stdout.flush()?;
    }
    sys::close_stdout()?;
    let shutdown = async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
    };
    server::serve(listener, settings, reaper.clone(), shutdown).await?;
    tracing::info!("shutting down");
    if pid1 {
        sys::kill_everything();
    } else {
        for pgid in reaper.running() {
            sys::kill_group(pgid, libc::SIGKILL);
        }
        if let Some(socket) = socket {
            let _ = std::fs::remove_file(socket);
        }
    }
    Ok(())
}
