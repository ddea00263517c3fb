//! pico-apiserver: REST API, auth, session service, CONNECT tunnel, TTL reaper and the
//! sandbox runtimes. `run` starts all of it on a listener the caller bound.

mod activity;
pub mod agent_client;
pub mod api;
pub mod auth;
pub mod body_timeout;
mod canned;
pub mod clock;
pub mod config;
pub mod conn;
pub mod error;
mod host_check;
pub mod images;
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
mod service_lifetime;
mod service_pause;
mod service_view;
pub mod start_error;
pub mod store;
mod sys;
pub mod tls;
pub mod tunnel;
pub mod websocket;
mod ws_stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::auth::Authenticator;
use crate::config::{Config, RuntimeKind};
use crate::records::{LocalRecords, Records};
use crate::runtime::Runtime;
use crate::runtime::kubernetes::{
    AgentMode, Hardening, KubeSettings, KubernetesRuntime, PodSettings,
};
use crate::runtime::local::{LocalConfig, LocalRuntime};
use crate::service::{SessionService, Settings};
use crate::start_error::StartError;

/// Builds the service from `config`, recovers sessions from before a restart, calls
/// `on_ready`, and serves on `listener` until `shutdown` fires.
pub async fn run(
    mut config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(),
) -> Result<(), StartError> {
    config.load_secret_file().map_err(StartError::Config)?;
    config.validate().map_err(StartError::Config)?;
    let fd_limit = sys::raise_fd_limit();
    if !config.jwt_secret.is_empty() && config.jwt_secret.len() < MIN_SECRET_BYTES {
        tracing::warn!(
            "--jwt-secret is shorter than {MIN_SECRET_BYTES} bytes: tokens signed with it can \
             be forged by brute force; use a random secret of at least {MIN_SECRET_BYTES} bytes"
        );
    }
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
    let agents = Arc::new(agent_client::AgentPool::new(client_key(&config)?));
    let (records, runtime) = match config.effective_runtime() {
        RuntimeKind::Kubernetes => {
            kubernetes(&config, agents.public_key(), watches.clone()).await?
        }
        _ => local(&config)?,
    };
    let max_upload_size =
        runtime::cgroup::parse_size(&config.max_upload_size).map_err(StartError::Config)?;
    let tunnels_root = CancellationToken::new();
    let service = Arc::new(SessionService::new(
        records,
        runtime,
        Settings {
            max_ttl: config.max_ttl,
            max_sessions_per_user: config.sessions_per_user(),
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
        .map_err(|e| StartError::Config(format!("recovering sessions failed: {}", e.message)))?;

    let reaper = tokio::spawn(reaper::run(
        service.clone(),
        Duration::from_secs(config.reap_interval.max(1)),
        shutdown.clone(),
    ));
    let limits = conn::ConnLimits::new(
        config.max_connections,
        config.max_connections_per_ip,
        fd_limit,
        service.metrics.clone(),
    );
    tracing::info!(
        fd_limit,
        max_connections = limits.max(),
        "open-file limit and connection cap"
    );
    let host_check =
        (!auth.enabled()).then(|| Arc::new(host_check::HostCheck::new(&config.allowed_hosts)));
    let state = AppState {
        service,
        auth: Arc::new(auth),
        create_limit: Arc::new(ratelimit::RateLimiter::new(config.create_rate)),
        agents,
        max_upload_size,
        max_processes: usize::from(config.max_processes_per_session),
    };
    on_ready();
    server::serve(
        listener,
        state,
        shutdown,
        server::ServeOptions {
            grace: Duration::from_secs(config.shutdown_grace),
            tunnels_root: tunnels_root.clone(),
            tls,
            header_read_timeout: Duration::from_secs(config.header_read_timeout.max(1)),
            body_pace: body_timeout::BodyPace {
                timeout: Duration::from_secs(config.body_read_timeout.max(1)),
                min_rate: config.body_min_rate,
            },
            limits,
            host_check,
        },
    )
    .await;
    tunnels_root.cancel();
    let _ = reaper.await;
    watches.cancel();
    Ok(())
}

/// HS256 secrets shorter than this are warned about (RFC 7518 §3.2 asks for the hash size).
const MIN_SECRET_BYTES: usize = 32;

type Backend = (Arc<dyn Records>, Arc<dyn Runtime>);

fn local(config: &Config) -> Result<Backend, StartError> {
    let state_dir = config.state_dir();
    std::fs::create_dir_all(&state_dir).map_err(StartError::io(format!(
        "cannot create state directory {}",
        state_dir.display()
    )))?;
    let store =
        store::Store::open(&state_dir.join("pico.redb")).map_err(|source| StartError::Store {
            context: format!("cannot open the session store in {}", state_dir.display()),
            source,
        })?;
    let runtime = LocalRuntime::new(LocalConfig {
        state_dir: state_dir.clone(),
        agent_binary: agent_binary(config)?,
        ready_timeout: config.create_timeout(),
        private_network: config.session_network() == config::SessionNetwork::Isolated,
        limits: runtime::cgroup::Limits {
            memory: runtime::cgroup::parse_size(&config.session_memory)
                .map_err(StartError::Config)?,
            pids: config.session_pids,
            millicpus: runtime::cgroup::parse_cpus(&config.session_cpus)
                .map_err(StartError::Config)?,
        },
        disk: runtime::cgroup::parse_size(&config.session_disk).map_err(StartError::Config)?,
        images: runtime::local_image::image_settings(config, &state_dir)?,
    })
    .map_err(|source| StartError::Runtime {
        context: "cannot start the local runtime".into(),
        source,
    })?;
    Ok((Arc::new(LocalRecords(Arc::new(store))), Arc::new(runtime)))
}

/// The cluster is both the runtime and the record store.
/// `server_key`: the server's own public key, which every sandbox's agent trusts (exec and
/// files over HTTP); the Kubernetes runtime writes it into each session's Secret.
async fn kubernetes(
    config: &Config,
    server_key: &str,
    watches: CancellationToken,
) -> Result<Backend, StartError> {
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
            ssh_port: config.ssh_port.unwrap_or(match config.agent_mode {
                config::AgentMode::Inject => 2222,
                config::AgentMode::Image => 22,
            }),
            ssh_username: config.ssh_username.clone(),
            runtime_class: config.runtime_class.clone(),
            home_volume: Some(config.home_volume_size.trim())
                .filter(|s| !s.is_empty() && *s != "0")
                .map(str::to_owned),
            agent_pull_policy: config.agent_image_pull_policy.as_str().to_owned(),
            hardening: Hardening {
                uid: config.sandbox_uid,
                memory: runtime::cgroup::parse_size(&config.session_memory)
                    .map_err(StartError::Config)?,
                cpu: match runtime::cgroup::parse_cpus(&config.session_cpus)
                    .map_err(StartError::Config)?
                {
                    0 => None,
                    millis => Some(format!("{millis}m")),
                },
            },
            server_authorized_keys: vec![server_key.to_owned()],
        },
        create_timeout: config.create_timeout(),
        ready_grace: Duration::from_secs(config.ready_grace),
        connect: config.kube_connect,
    };
    let runtime = KubernetesRuntime::start(settings, watches)
        .await
        .map_err(|source| StartError::Runtime {
            context: "cannot start the kubernetes runtime".into(),
            source,
        })?;
    Ok((runtime.clone(), runtime))
}

/// The key the server logs in to agents with: kept in a file so that it outlives restarts;
/// without a writable place (a read-only pod), one for this process only.
fn client_key(config: &Config) -> Result<agent_client::ClientKey, StartError> {
    let path = match &config.agent_client_key {
        Some(path) => {
            return agent_client::ClientKey::load_or_create(path).map_err(StartError::Config);
        }
        None => config.state_dir().join("agent-client-key"),
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    agent_client::ClientKey::load_or_create(&path).or_else(|why| {
        tracing::warn!(reason = %why, "no place to keep the agent client key; using one for this process only");
        agent_client::ClientKey::ephemeral().map_err(StartError::Config)
    })
}

fn agent_binary(config: &Config) -> Result<PathBuf, StartError> {
    if let Some(path) = &config.agent_binary {
        return Ok(path.clone());
    }
    let exe =
        std::env::current_exe().map_err(StartError::io("cannot find the server's own path"))?;
    Ok(exe.with_file_name("pico-agent"))
}
