//! pico-apiserver: REST API, auth, session service, CONNECT tunnel, TTL reaper and the
//! sandbox runtimes. `run` starts all of it on a listener the caller bound.

pub mod agent_client;
pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod ratelimit;
pub mod reaper;
pub mod records;
pub mod relay;
pub mod runtime;
pub mod server;
pub mod service;
mod service_view;
pub mod store;
mod sys;
pub mod tls;
pub mod tunnel;
pub mod websocket;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::auth::Authenticator;
use crate::config::{Config, RuntimeKind};
use crate::records::{LocalRecords, Records};
use crate::runtime::Runtime;
use crate::runtime::kubernetes::{AgentMode, KubeSettings, KubernetesRuntime, PodSettings};
use crate::runtime::local::{LocalConfig, LocalRuntime};
use crate::service::{SessionService, Settings};

/// Builds the service from `config`, recovers sessions from before a restart, calls
/// `on_ready`, and serves on `listener` until `shutdown` fires.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(),
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    let fd_limit = sys::raise_fd_limit();
    tracing::debug!(fd_limit, "open-file limit");
    let auth = Authenticator::new(
        &config.jwt_secret,
        config.jwt_public_key.as_deref(),
        config.jwt_issuer.as_deref(),
        config.jwt_audience.as_deref(),
    )?;
    if !auth.enabled() {
        tracing::warn!(
            "authentication is DISABLED (no --jwt-secret or --jwt-public-key): every caller is \
             user \"anonymous\"; keep the server on loopback"
        );
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) if config.enable_tls => {
            Some(Arc::new(tls::Tls::new(tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })?))
        }
        _ => None,
    };
    let watches = shutdown.child_token();
    let (records, runtime) = match config.effective_runtime() {
        RuntimeKind::Kubernetes => kubernetes(&config, watches.clone()).await?,
        _ => local(&config)?,
    };
    let agents = Arc::new(agent_client::AgentPool::new(client_key(&config)?));
    let max_upload_size =
        runtime::cgroup::parse_size(&config.max_upload_size).map_err(anyhow::Error::msg)?;
    let tunnels_root = CancellationToken::new();
    let service = Arc::new(SessionService::new(
        records,
        runtime,
        Settings {
            max_ttl: config.max_ttl,
            max_sessions_per_user: config.max_sessions_per_user,
            ssh_username: config.ssh_username.clone(),
            create_timeout: config.create_timeout(),
            max_tunnels_per_session: config.max_tunnels_per_session,
            max_tunnels_per_user: config.max_tunnels_per_user,
            server_public_key: Some(agents.public_key().to_owned()),
        },
        tunnels_root.clone(),
        Arc::default(),
    ));
    service
        .recover()
        .await
        .map_err(|e| anyhow::anyhow!("recovering sessions failed: {}", e.message))?;

    let reaper = tokio::spawn(reaper::run(
        service.clone(),
        Duration::from_secs(config.reap_interval.max(1)),
        shutdown.clone(),
    ));
    let state = AppState {
        service,
        auth: Arc::new(auth),
        create_limit: Arc::new(ratelimit::RateLimiter::new(config.create_rate)),
        agents,
        max_upload_size,
    };
    on_ready();
    server::serve(
        listener,
        state,
        shutdown,
        server::ServeOptions {
            grace: Duration::from_secs(config.shutdown_grace),
            tls,
            header_read_timeout: Duration::from_secs(config.header_read_timeout.max(1)),
        },
    )
    .await;
    tunnels_root.cancel();
    let _ = reaper.await;
    watches.cancel();
    Ok(())
}

type Backend = (Arc<dyn Records>, Arc<dyn Runtime>);

fn local(config: &Config) -> anyhow::Result<Backend> {
    let state_dir = config.state_dir();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
    let store = store::Store::open(&state_dir.join("pico.redb"))
        .with_context(|| format!("cannot open the session store in {}", state_dir.display()))?;
    let runtime = LocalRuntime::new(LocalConfig {
        state_dir: state_dir.clone(),
        agent_binary: agent_binary(config)?,
        ready_timeout: config.create_timeout(),
        private_network: config.session_network() == config::SessionNetwork::Isolated,
        limits: runtime::cgroup::Limits {
            memory: runtime::cgroup::parse_size(&config.session_memory)
                .map_err(anyhow::Error::msg)?,
            pids: config.session_pids,
        },
    })?;
    Ok((Arc::new(LocalRecords(Arc::new(store))), Arc::new(runtime)))
}

/// The cluster is both the runtime and the record store.
async fn kubernetes(config: &Config, watches: CancellationToken) -> anyhow::Result<Backend> {
    let settings = KubeSettings {
        kubeconfig: (!config.kubeconfig.is_empty()).then(|| PathBuf::from(&config.kubeconfig)),
        namespace: config.namespace.clone(),
        pod: PodSettings {
            agent_mode: match config.agent_mode {
                config::AgentMode::Inject => AgentMode::Inject,
                config::AgentMode::Image => AgentMode::Image,
            },
            agent_image: config.agent_image.clone(),
            default_image: config.default_image.clone(),
            ssh_port: config.ssh_port,
            ssh_username: config.ssh_username.clone(),
            runtime_class: config.runtime_class.clone(),
        },
        create_timeout: config.create_timeout(),
    };
    let runtime = KubernetesRuntime::start(settings, watches)
        .await
        .context("cannot start the kubernetes runtime")?;
    Ok((runtime.clone(), runtime))
}

/// The key the server logs in to agents with: kept in a file so that it outlives restarts;
/// without a writable place (a read-only pod), one for this process only.
fn client_key(config: &Config) -> anyhow::Result<agent_client::ClientKey> {
    let path = match &config.agent_client_key {
        Some(path) => {
            return agent_client::ClientKey::load_or_create(path).map_err(anyhow::Error::msg);
        }
        None => config.state_dir().join("agent-client-key"),
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    agent_client::ClientKey::load_or_create(&path).or_else(|why| {
        tracing::warn!(reason = %why, "no place to keep the agent client key; using one for this process only");
        agent_client::ClientKey::ephemeral().map_err(anyhow::Error::msg)
    })
}

fn agent_binary(config: &Config) -> anyhow::Result<PathBuf> {
    if let Some(path) = &config.agent_binary {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe().context("cannot find the server's own path")?;
    Ok(exe.with_file_name("pico-agent"))
}
