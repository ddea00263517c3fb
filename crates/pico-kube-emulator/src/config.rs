//! Emulator options, including the kubelet's start delay and scripted image failures.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How a pod whose image matches an [`ImageFailure`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The container waits with reason `ErrImagePull`, then `ImagePullBackOff`.
    PullError,
    /// The container exits 1 and waits with reason `CrashLoopBackOff`.
    Crash,
    /// The container runs but never becomes ready (a failing readiness probe).
    NeverReady,
    /// The pull fails with `ErrImagePull` for a moment, then works (a registry blip).
    FlakyPull,
}

impl std::str::FromStr for FailureKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let names = [
            ("pull", Self::PullError),
            ("flaky-pull", Self::FlakyPull),
            ("crash", Self::Crash),
            ("never-ready", Self::NeverReady),
        ];
        parse_named(s, &names, "failure kind")
    }
}

/// The value named `s` among `names`, or an error that lists the names (for flag values).
pub(crate) fn parse_named<T: Copy>(s: &str, names: &[(&str, T)], what: &str) -> Result<T, String> {
    names
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let choices: Vec<&str> = names.iter().map(|(name, _)| *name).collect();
            format!("unknown {what} {s:?}: use one of {}", choices.join(", "))
        })
}

/// Pods with a container image containing `pattern` fail as `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    pub pattern: String,
    pub kind: FailureKind,
}

impl ImageFailure {
    pub fn new(pattern: impl Into<String>, kind: FailureKind) -> Self {
        Self {
            pattern: pattern.into(),
            kind,
        }
    }
}

/// Options of [`crate::Emulator::start`]; `Default` suits tests.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// When set, every request but health checks needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The `pico-agent` to run for sandbox containers; `None`: the one next to this executable.
    pub agent_binary: Option<PathBuf>,
    /// How long the kubelet takes to "start" a pod.
    pub pod_start_delay: Duration,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// How many events watches can resume from; older resourceVersions get 410 Gone.
    pub watch_history: usize,
    /// Scripted image failures; by default images containing `fail-pull`, `crash` or
    /// `never-ready` fail that way.
    pub image_failures: Vec<ImageFailure>,
    /// Served Sandbox versions (`v1beta1`, `v1alpha1`); only `v1alpha1` emulates an older
    /// agent-sandbox release.
    pub sandbox_versions: Vec<String>,
    /// Images loaded into the node, as `kind load` does; `None` (the default): every image
    /// is there. With a list, a container whose image must be pulled (policy `Always`, or
    /// `IfNotPresent` for an image not in the list) fails with `ErrImagePull`: no registry.
    pub loaded_images: Option<Vec<String>>,
    /// Pod Security level for namespaces without a `pod-security.kubernetes.io/enforce` label.
    pub pod_security: crate::pod_security::Level,
    /// False: pod statuses report IPs that nobody can dial, as a cluster's pod network is
    /// from a laptop; only `pods/{name}/portforward` reaches the pods.
    pub pod_network_reachable: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            agent_binary: None,
            pod_start_delay: Duration::from_millis(50),
            bookmark_interval: Duration::from_secs(5),
            watch_history: 10_000,
            image_failures: vec![
                ImageFailure::new("fail-pull", FailureKind::PullError),
                ImageFailure::new("crash", FailureKind::Crash),
                ImageFailure::new("never-ready", FailureKind::NeverReady),
                ImageFailure::new("flaky-pull", FailureKind::FlakyPull),
            ],
            sandbox_versions: vec!["v1beta1".into(), "v1alpha1".into()],
            loaded_images: None,
            pod_security: crate::pod_security::Level::Privileged,
            pod_network_reachable: true,
        }
    }
}

/// Parses `PATTERN=KIND` (KIND: pull, crash, never-ready).
pub fn parse_image_failure(s: &str) -> Result<ImageFailure, String> {
    let (pattern, kind) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected PATTERN=KIND, got {s:?}"))?;
    if pattern.is_empty() {
        return Err("the image pattern is empty".into());
    }
    Ok(ImageFailure::new(pattern, kind.parse()?))
}

/// `pico-agent` beside the running executable (or beside its `deps/` folder under cargo test).
pub fn default_agent_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let beside = dir.join("pico-agent");
    if !beside.exists()
        && dir.ends_with("deps")
        && let Some(up) = dir.parent()
    {
        return up.join("pico-agent");
    }
    beside
}

/// Parses `250`, `250ms`, `2s`, `1m` (a bare number is milliseconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 2s, 1m"))?;
    match unit.trim() {
        "" | "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("invalid duration unit in {s:?}: use ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("3h").is_err());
        assert_eq!(
            parse_image_failure("bad=pull"),
            Ok(ImageFailure::new("bad", FailureKind::PullError))
        );
        assert!(parse_image_failure("bad=boom").is_err());
    }
}
