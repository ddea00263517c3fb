//! Command-line flags of `pico-apiserver` (the README's configuration table), each also read from `PICO_<FLAG>`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Sessions of `per_session` bytes that fit in `total` with memory limits overcommitted
/// twice (limits are ceilings; most sandboxes idle far below them), at least 1.
fn fits_in_memory(total: u64, per_session: u64) -> u32 {
    u32::try_from(total.saturating_mul(2) / per_session.max(1))
        .unwrap_or(u32::MAX)
        .max(1)
}

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

    /// SSH port of sandbox pods. Default: 2222 with `--agent-mode inject` (the agent runs
    /// as a non-root uid, which may not bind ports below 1024), 22 with `image`.
    #[arg(long, env = "PICO_SSH_PORT")]
    pub ssh_port: Option<u16>,

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

    /// Live sessions one user may hold (0 = unlimited). Default on the local runtime: what
    /// fits the machine, twice its memory over `--session-memory` (at least 1); on
    /// Kubernetes: unlimited (the cluster's quotas decide).
    #[arg(long, env = "PICO_MAX_SESSIONS_PER_USER")]
    pub max_sessions_per_user: Option<u32>,

    /// Network of local sandboxes: `isolated` (own namespace, loopback only: sandboxes reach
    /// neither each other's services nor the host's) or `host` (the host's network).
    /// Default: isolated when auth is on (several users), host when it is off.
    #[arg(long, env = "PICO_SESSION_NETWORK", value_enum)]
    pub session_network: Option<SessionNetwork>,

    /// OCI images of local sessions: a registry mirror used instead of Docker Hub
    /// (`https://mirror.example`), as dockerd's `registry-mirrors`.
    #[arg(long, env = "PICO_REGISTRY_MIRROR")]
    pub registry_mirror: Option<String>,

    /// A registry (`HOST:PORT`) spoken to over plain HTTP, e.g. a test registry on
    /// loopback (repeatable, or comma-separated).
    #[arg(long, env = "PICO_INSECURE_REGISTRY", value_delimiter = ',')]
    pub insecure_registry: Vec<String>,

    /// Docker `config.json` with registry credentials (`auths`). Default:
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, when it exists.
    #[arg(long, env = "PICO_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,

    /// Bytes of pulled images kept in `<state-dir>/images` (e.g. 20G; 0 = no limit): beyond
    /// it, images no session uses are removed, least recently pulled first.
    #[arg(long, env = "PICO_IMAGE_CACHE_SIZE", default_value = "20G")]
    pub image_cache_size: String,

    /// Memory of one local sandbox, all its processes together (e.g. 512M, 4G; 0 = no limit).
    #[arg(long, env = "PICO_SESSION_MEMORY", default_value = "4G")]
    pub session_memory: String,

    /// Processes (and threads) in one local sandbox (0 = no limit).
    #[arg(long, env = "PICO_SESSION_PIDS", default_value_t = 1024)]
    pub session_pids: u64,

    /// CPUs of one sandbox, all its processes together (e.g. 0.5, 2, 500m; 0 = no limit):
    /// the cgroup CPU quota of a local sandbox, the CPU limit of a Kubernetes sandbox pod.
    #[arg(long, env = "PICO_SESSION_CPUS", default_value = "1")]
    pub session_cpus: String,

    /// Disk of one local sandbox: its home and every directory it can write (`/tmp`,
    /// `/var/tmp`, `/run/lock`) live on one ext4 image of this size (e.g. 512M, 10G;
    /// 0 = no image, no limit). Needs root and mkfs.ext4.
    #[arg(long, env = "PICO_SESSION_DISK", default_value = "10G")]
    pub session_disk: String,

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
    #[arg(long, env = "PICO_AGENT_IMAGE", default_value = DEFAULT_AGENT_IMAGE)]
    pub agent_image: String,

    /// imagePullPolicy of the agent's init container: `IfNotPresent` uses an image loaded
    /// into the nodes (`make kind-load`) without a registry; `Always` pulls every time.
    #[arg(long, env = "PICO_AGENT_IMAGE_PULL_POLICY", value_enum, default_value_t = PullPolicy::IfNotPresent)]
    pub agent_image_pull_policy: PullPolicy,

    /// uid (and gid, fsGroup) of every process in a Kubernetes sandbox pod; 0 = the image's
    /// own USER, for images that must start as root (such pods fail Pod Security "restricted").
    #[arg(long, env = "PICO_SANDBOX_UID", default_value_t = 1000)]
    pub sandbox_uid: u32,

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

    /// Size of each sandbox's home volume (a PersistentVolumeClaim from the Sandbox's
    /// volumeClaimTemplates, so that files survive a pause); `0` = an emptyDir, lost on pause
    /// (Kubernetes runtime).
    #[arg(long, env = "PICO_HOME_VOLUME_SIZE", default_value = "1Gi")]
    pub home_volume_size: String,

    /// Log format.
    #[arg(long, env = "PICO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Kubernetes runtime: how the tunnel reaches sandbox pods. `direct` dials the pod IP (a
    /// server in the cluster), `portforward` goes through the API server's `pods/portforward`
    /// (a server outside it), `auto` dials directly and switches to port-forward for good
    /// when the pod network proves unreachable.
    #[arg(long, env = "PICO_KUBE_CONNECT", value_enum, default_value_t = crate::runtime::kubernetes::ConnectMode::Auto)]
    pub kube_connect: crate::runtime::kubernetes::ConnectMode,

    /// Kubernetes runtime: seconds `/readyz` stays 200 after the API server last answered,
    /// so a short API-server blip does not take every replica out of the Service (0 = none).
    #[arg(long, env = "PICO_READY_GRACE", default_value_t = 30)]
    pub ready_grace: u64,

    /// How long a create may wait for its sandbox, in seconds.
    #[arg(long, env = "PICO_CREATE_TIMEOUT", default_value_t = 60)]
    pub create_timeout: u64,

    /// How long open tunnels may drain at shutdown, in seconds.
    #[arg(long, env = "PICO_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,

    /// Seconds a client has to send a request's headers (slow-loris guard).
    #[arg(long, env = "PICO_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout: u64,

    /// Seconds a request body may stall between two pieces; also the grace before
    /// `--body-min-rate` applies. Beyond → `408 REQUEST_TIMEOUT`.
    #[arg(long, env = "PICO_BODY_READ_TIMEOUT", default_value_t = 30)]
    pub body_read_timeout: u64,

    /// Least average speed of a request body, in bytes per second of waiting for it,
    /// enforced once the server has waited `--body-read-timeout` in all (0 = no minimum).
    #[arg(long, env = "PICO_BODY_MIN_RATE", default_value_t = 1024)]
    pub body_min_rate: u64,

    /// Open client connections (tunnels included) at once; beyond → `503
    /// TOO_MANY_CONNECTIONS`. 0 = derived from the open-file limit (half of it, as a
    /// tunnel holds two descriptors).
    #[arg(long, env = "PICO_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Open client connections from one IP address at once (0 = no per-address cap).
    #[arg(long, env = "PICO_MAX_CONNECTIONS_PER_IP", default_value_t = 1024)]
    pub max_connections_per_ip: usize,

    /// With auth off, a `Host` name served besides loopback ones (repeatable).
    #[arg(
        long = "allowed-host",
        env = "PICO_ALLOWED_HOST",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// File holding the HS256 secret (trailing newline ignored); keeps the secret out of
    /// `ps` output, where `--jwt-secret` would show it.
    #[arg(long, env = "PICO_JWT_SECRET_FILE", global = true)]
    pub jwt_secret_file: Option<PathBuf>,
    /// Largest file `POST …/files` accepts (e.g. 512M, 10G; 0 = no limit).
    #[arg(long, env = "PICO_MAX_UPLOAD_SIZE", default_value = "10G")]
    pub max_upload_size: String,
    /// Background processes (`"background": true`) a session may hold, running or recently
    /// exited; at the cap the oldest exited one is forgotten, and with none a start is 429.
    #[arg(long, env = "PICO_MAX_PROCESSES_PER_SESSION",
        default_value_t = pico_wire::process::DEFAULT_MAX_PROCESSES,
        value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_processes_per_session: u16,

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
    /// Write a self-signed TLS certificate and key for --enable-tls (a first try; use a
    /// CA's certificate in production). Clients trust the certificate file itself:
    /// `pico --ca-cert`, `curl --cacert`, the SDK's `verify_ssl=`.
    TlsCert {
        /// A DNS name or IP address clients use to reach the server; repeatable.
        #[arg(long = "host", required = true, value_name = "NAME")]
        hosts: Vec<String>,
        /// Where to write the certificate (PEM).
        #[arg(long, default_value = "tls.crt")]
        cert: PathBuf,
        /// Where to write the private key (PEM, mode 0600).
        #[arg(long, default_value = "tls.key")]
        key: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
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

/// The agent image's `imagePullPolicy`, as Kubernetes spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    #[value(name = "Always")]
    Always,
    #[value(name = "Never")]
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IfNotPresent => "IfNotPresent",
            Self::Always => "Always",
            Self::Never => "Never",
        }
    }
}

/// The image `make image` builds: tagged with this version, so that `IfNotPresent` uses what
/// `make kind-load` loaded (`:latest` would make every kubelet pull).
pub const DEFAULT_AGENT_IMAGE: &str = concat!("pico:", env!("CARGO_PKG_VERSION"));

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
    /// Reads `--jwt-secret-file` into `jwt_secret` (once; both flags at once is an error).
    pub fn load_secret_file(&mut self) -> Result<(), String> {
        let Some(path) = self.jwt_secret_file.take() else {
            return Ok(());
        };
        if !self.jwt_secret.is_empty() {
            return Err("give either --jwt-secret or --jwt-secret-file, not both".into());
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read --jwt-secret-file {}: {e}", path.display()))?;
        let secret = text.trim_end_matches(['\n', '\r']);
        if secret.is_empty() {
            return Err(format!("--jwt-secret-file {} is empty", path.display()));
        }
        self.jwt_secret = secret.to_owned();
        Ok(())
    }

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

    /// `--max-sessions-per-user`, or the default that fits this machine (see the flag).
    pub fn sessions_per_user(&self) -> u32 {
        if let Some(limit) = self.max_sessions_per_user {
            return limit;
        }
        let memory = crate::runtime::cgroup::parse_size(&self.session_memory).unwrap_or(0);
        if self.effective_runtime() == RuntimeKind::Kubernetes || memory == 0 {
            return 0;
        }
        fits_in_memory(crate::sys::total_memory(), memory)
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

#[cfg(test)]
mod sessions_per_user_tests {
    use super::fits_in_memory;

    #[test]
    fn the_default_quota_fits_the_machine() {
        // The host of issue 14: 23 GiB and 4 GiB sessions took 60; now 11 fit.
        assert_eq!(fits_in_memory(23 << 30, 4 << 30), 11);
        assert_eq!(fits_in_memory(1 << 30, 4 << 30), 1);
    }
}
