//! `pico-apiserver`: parses flags, sets up logging and signals, and runs the server.

mod tls_cert;

use std::io::IsTerminal;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use pico_apiserver::config::{Command, Config, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() {
    let config = Config::parse();
    init_logging(config.log_format);
    if let Err(err) = run(config) {
        // One clear line, no backtrace.
        eprintln!("pico-apiserver: {err:#}");
        std::process::exit(1);
    }
}

fn run(mut config: Config) -> anyhow::Result<()> {
    // Before anything asks whether auth is on (the bind address, `token`).
    config.load_secret_file().map_err(anyhow::Error::msg)?;
    match &config.command {
        Some(Command::Openapi) => {
            let yaml = pico_apiserver::api::openapi::document()
                .to_yaml()
                .context("cannot render the OpenAPI document")?;
            print!("{yaml}");
            return Ok(());
        }
        Some(Command::Token { sub, ttl, scope }) => {
            let ttl = pico_apiserver::auth::parse_duration(ttl).map_err(anyhow::Error::msg)?;
            let token = pico_apiserver::auth::mint_hs256(
                &config.jwt_secret,
                sub,
                ttl,
                scope.as_deref(),
                config.jwt_issuer.as_deref(),
                config.jwt_audience.as_deref(),
            )?;
            println!("{token}");
            return Ok(());
        }
        Some(Command::TlsCert {
            hosts,
            cert,
            key,
            days,
        }) => return tls_cert::write(hosts, cert, key, *days),
        None => {}
    }
    config.validate().map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let addr = SocketAddr::new(config.bind_addr(), config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        pico_apiserver::run(config, listener, shutdown, || {
            tracing::info!(%local, "listening");
            // Tests and scripts read the bound port from this line, printed once sessions
            // from before a restart are recovered and requests are served.
            println!("listening on {local}");
        })
        .await?;
        anyhow::Ok(())
    })
}

async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: escape codes garble log files and pipes.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
