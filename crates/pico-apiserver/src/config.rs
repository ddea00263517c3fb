//! Command-line flags of `pico-apiserver` (DESIGN.md §2), each also read from `PICO_<FLAG>`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "pico-apiserver",
    version,
    about = "pico sandbox session server"
)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Listen port (0 = any free port; the bound address is logged and printed).
    #[arg(long, env = "PICO_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Listen address; default 127.0.0.1 while auth is disabled, else 0.0.0.0.
    #[arg(long, env = "PICO_BIND")]
    pub bind: Option<IpAddr>,

    /// Kubeconfig path; empty = in-cluster config when running in a pod.
    #[arg(long, env = "PICO_KUBECONFIG", default_value = "")]
    pub kubeconfig: String,

    /// Namespace for Sandboxes.
    #[arg(long, env = "PICO_NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// SSH user in sandboxes.
    #[arg(long, env = "PICO_SSH_USERNAME", default_value = "sandbox")]
    pub ssh_username: String,

    /// SSH port of sandbox pods.
    #[arg(long, env = "PICO_SSH_PORT", default_value_t = 22)]
    pub ssh_port: u16,

    /// Serve HTTPS (rustls).
    #[arg(long, env = "PICO_ENABLE_TLS", default_value_t = false)]
    pub enable_tls: bool,

    /// TLS certificate chain (PEM).
    #[arg(long, env = "PICO_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "PICO_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// HS256 secret for JWT bearer tokens; empty and no public key = auth disabled.
    #[arg(
        long,
        env = "PICO_JWT_SECRET",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    pub jwt_secret: String,

    /// PEM public key for RS256/ES256/EdDSA tokens.
    #[arg(long, env = "PICO_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Required `iss` claim.
    #[arg(long, env = "PICO_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim.
    #[arg(long, env = "PICO_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,

    /// Which sandbox runtime to use.
    #[arg(long, env = "PICO_RUNTIME", value_enum, default_value_t = RuntimeKind::Auto)]
    pub runtime: RuntimeKind,

    /// Directory of the local runtime: session store, keys and home directories.
    #[arg(long, env = "PICO_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// The `pico-agent` binary the local runtime starts (default: next to this binary).
    #[arg(long, env = "PICO_AGENT_BINARY")]
    pub agent_binary: Option<PathBuf>,

    /// Largest TTL a client may ask for, in seconds (at most 28800).
    #[arg(long, env = "PICO_MAX_TTL", default_value_t = pico_wire::MAX_TTL)]
    pub max_ttl: u64,

    /// Live sessions one user may hold (0 = unlimited).
    #[arg(long, env = "PICO_MAX_SESSIONS_PER_USER", default_value_t = 0)]
    pub max_sessions_per_user: u32,

    /// Network of local sandboxes: `isolated` (own namespace, loopback only: sandboxes reach
    /// neither each other's services nor the host's) or `host` (the host's network).
    /// Default: isolated when auth is on (several users), host when it is off.
    #[arg(long, env = "PICO_SESSION_NETWORK", value_enum)]
    pub session_network: Option<SessionNetwork>,

    /// Memory of one local sandbox, all its processes together (e.g. 512M, 4G; 0 = no limit).
    #[arg(long, env = "PICO_SESSION_MEMORY", default_value = "4G")]
    pub session_memory: String,

    /// Processes (and threads) in one local sandbox (0 = no limit).
    #[arg(long, env = "PICO_SESSION_PIDS", default_value_t = 1024)]
    pub session_pids: u64,

    /// Open tunnels one session may have at once (0 = unlimited).
    #[arg(long, env = "PICO_MAX_TUNNELS_PER_SESSION", default_value_t = 256)]
    pub max_tunnels_per_session: u32,

    /// Open tunnels one user may have at once, over all their sessions (0 = unlimited).
    #[arg(long, env = "PICO_MAX_TUNNELS_PER_USER", default_value_t = 1024)]
    pub max_tunnels_per_user: u32,

    /// Session creates one user may make per minute (0 = unlimited).
    #[arg(long, env = "PICO_CREATE_RATE", default_value_t = 60)]
    pub create_rate: u32,

    /// Image holding the static pico-agent (Kubernetes init container).
    #[arg(long, env = "PICO_AGENT_IMAGE", default_value = "pico:latest")]
    pub agent_image: String,

    /// How sandboxes get their SSH server: `inject` the static pico-agent (any image works)
    /// or `image` (the image runs its own sshd; public key in env SSH_PUBLIC_KEY).
    #[arg(long, env = "PICO_AGENT_MODE", value_enum, default_value_t = AgentMode::Inject)]
    pub agent_mode: AgentMode,

    /// Image of sessions that name none (Kubernetes runtime; any Linux image works).
    #[arg(long, env = "PICO_DEFAULT_IMAGE", default_value = "debian:stable-slim")]
    pub default_image: String,

    /// runtimeClassName of sandbox pods (e.g. gvisor, kata).
    #[arg(long, env = "PICO_RUNTIME_CLASS")]
    pub runtime_class: Option<String>,

    /// Log format.
    #[arg(long, env = "PICO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long a create may wait for its sandbox, in seconds.
    #[arg(long, env = "PICO_CREATE_TIMEOUT", default_value_t = 60)]
    pub create_timeout: u64,

    /// How long open tunnels may drain at shutdown, in seconds.
    #[arg(long, env = "PICO_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,

    /// Seconds a client has to send a request's headers (slow-loris guard).
    #[arg(long, env = "PICO_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout: u64,

    /// Largest file `POST …/files` accepts (e.g. 512M, 10G; 0 = no limit).
    #[arg(long, env = "PICO_MAX_UPLOAD_SIZE", default_value = "10G")]
    pub max_upload_size: String,

    /// Private key (OpenSSH) the server logs in to sandboxes with for exec and files over
    /// HTTP; made on first start when missing (default: `<state-dir>/agent-client-key`).
    /// Replicas of one deployment must share it (mount it from a Secret).
    #[arg(long, env = "PICO_AGENT_CLIENT_KEY")]
    pub agent_client_key: Option<PathBuf>,

    /// How often the reaper looks for expired and idle sessions, in seconds.
    #[arg(long, env = "PICO_REAP_INTERVAL", default_value_t = 5)]
    pub reap_interval: u64,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the OpenAPI document (YAML) that the server serves at /openapi.json.
    Openapi,
    /// Print an HS256 token signed with --jwt-secret, for development.
    Token {
        /// The user (`sub` claim).
        #[arg(long)]
        sub: String,
        /// Lifetime, e.g. 3600, 90s, 30m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Space-separated scopes, e.g. "sessions:admin".
        #[arg(long)]
        scope: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    Auto,
    Local,
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentMode {
    Inject,
    Image,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SessionNetwork {
    Isolated,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    pub fn auth_enabled(&self) -> bool {
        !self.jwt_secret.is_empty() || self.jwt_public_key.is_some()
    }

    /// Sandboxes of different users must not reach each other's services, so a server
    /// with auth isolates their networks unless told otherwise.
    pub fn session_network(&self) -> SessionNetwork {
        self.session_network.unwrap_or(if self.auth_enabled() {
            SessionNetwork::Isolated
        } else {
            SessionNetwork::Host
        })
    }

    pub fn bind_addr(&self) -> IpAddr {
        self.bind.unwrap_or(if self.auth_enabled() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([127, 0, 0, 1])
        })
    }

    /// `auto` picks Kubernetes when a kubeconfig is given or we run inside a pod.
    pub fn effective_runtime(&self) -> RuntimeKind {
        match self.runtime {
            RuntimeKind::Auto
                if !self.kubeconfig.is_empty()
                    || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() =>
            {
                RuntimeKind::Kubernetes
            }
            RuntimeKind::Auto => RuntimeKind::Local,
            other => other,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
            return PathBuf::from(dir).join("pico");
        }
        match std::env::var_os("HOME") {
            Some(home) if !is_root() => PathBuf::from(home).join(".local/state/pico"),
            _ => PathBuf::from("/var/lib/pico"),
        }
    }

    pub fn create_timeout(&self) -> Duration {
        Duration::from_secs(self.create_timeout)
    }

    /// Rejects combinations that would otherwise be silently ignored.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_ttl < pico_wire::MIN_TTL || self.max_ttl > pico_wire::MAX_TTL {
            return Err(format!(
                "--max-ttl must be between {} and {} seconds",
                pico_wire::MIN_TTL,
                pico_wire::MAX_TTL
            ));
        }
        if self.enable_tls && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err("--enable-tls needs --tls-cert and --tls-key (PEM files)".into());
        }
        if !self.enable_tls && (self.tls_cert.is_some() || self.tls_key.is_some()) {
            return Err("--tls-cert/--tls-key are given but --enable-tls is not".into());
        }
        if self.effective_runtime() == RuntimeKind::Kubernetes
            && (self.agent_image.is_empty() || self.default_image.is_empty())
        {
            return Err("--agent-image and --default-image must not be empty".into());
        }
        if self.ssh_username.is_empty()
            || !self
                .ssh_username
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err("--ssh-username must be a non-empty name of [A-Za-z0-9_-]".into());
        }
        Ok(())
    }
}

pub use crate::sys::is_root;
