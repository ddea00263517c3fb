//! Listening (TCP or Unix socket) and running one russh session per accepted connection.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use russh::server::Config;
use russh::{MethodKind, MethodSet, SshId};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use crate::config::Settings;
use crate::handler::SshHandler;
use crate::proc_table::ProcTable;
use crate::reaper::Reaper;
use crate::session::Connection;

/// A bound listener, created before any namespace or runtime exists.
pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

impl Listener {
    /// Binds `unix:/path` or `HOST:PORT`. A stale socket file at the path is replaced.
    pub fn bind(spec: &str) -> anyhow::Result<Self> {
        if let Some(path) = spec.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if std::fs::symlink_metadata(&path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing stale socket {}", path.display()))?;
            }
            let listener = std::os::unix::net::UnixListener::bind(&path)
                .with_context(|| format!("binding --listen unix:{}", path.display()))?;
            Ok(Listener::Unix(listener, path))
        } else {
            let listener = std::net::TcpListener::bind(spec)
                .with_context(|| format!("binding --listen {spec}"))?;
            Ok(Listener::Tcp(listener))
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp".to_owned(), |a| a.to_string()),
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    pub fn socket_path(&self) -> Option<PathBuf> {
        match self {
            Listener::Tcp(_) => None,
            Listener::Unix(_, path) => Some(path.clone()),
        }
    }
}

pub fn russh_config(settings: &Settings) -> Config {
    Config {
        server_id: SshId::Standard(
            format!("SSH-2.0-pico-agent_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        // Every rejection takes this long, whatever the reason, so timing reveals nothing;
        // the initial "none" probe of OpenSSH clients is answered at once.
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![settings.host_key.clone()],
        max_auth_attempts: 6,
        inactivity_timeout: settings.idle_timeout,
        // Without an idle timeout, keepalives find dead peers; with one, they would keep idle
        // connections alive forever (russh counts their replies as activity).
        keepalive_interval: settings
            .idle_timeout
            .is_none()
            .then(|| Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 256,
        ..Config::default()
    }
}

fn start<S>(
    config: &Arc<Config>,
    settings: &Arc<Settings>,
    reaper: &Arc<Reaper>,
    procs: &Arc<ProcTable>,
    stream: S,
    peer: String,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler = SshHandler::new(Connection::new(
        settings.clone(),
        reaper.clone(),
        procs.clone(),
        peer.clone(),
    ));
    let config = config.clone();
    let span = tracing::info_span!("connection", %peer);
    tokio::spawn(
        async move {
            tracing::debug!("connection accepted");
            match russh::server::run_stream(config, stream, handler).await {
                Ok(session) => {
                    if let Err(err) = session.await {
                        tracing::info!(error = %err, "connection ended with an error");
                    }
                }
                Err(err) => tracing::info!(error = %err, "ssh handshake failed"),
            }
        }
        .instrument(span),
    );
}

/// Accepts connections until `shutdown` completes.
pub async fn serve(
    listener: Listener,
    settings: Arc<Settings>,
    reaper: Arc<Reaper>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let config = Arc::new(russh_config(&settings));
    // One table for the agent's life: background processes outlive their connections.
    let procs = Arc::new(ProcTable::new(settings.clone(), reaper.clone()));
    tokio::pin!(shutdown);
    match listener {
        Listener::Tcp(std_listener) => {
            std_listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(std_listener)?;
            loop {
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    accepted = listener.accept() => match accepted {
                        Ok((stream, addr)) => {
                            let _ = stream.set_nodelay(true);
                            start(&config, &settings, &reaper, &procs, stream, addr.to_string());
                        }
                        Err(err) => accept_failed(err).await,
                    },
                }
            }
        }
        Listener::Unix(std_listener, path) => {
            std_listener.set_nonblocking(true)?;
            let listener = tokio::net::UnixListener::from_std(std_listener)?;
            let peer = format!("unix:{}", path.display());
            loop {
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => start(&config, &settings, &reaper, &procs, stream, peer.clone()),
                        Err(err) => accept_failed(err).await,
                    },
                }
            }
        }
    }
}

/// Accept errors (EMFILE and the like) are transient: log, back off briefly, go on.
async fn accept_failed(err: std::io::Error) {
    tracing::warn!(error = %err, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
