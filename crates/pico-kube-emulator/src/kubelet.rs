//! The simulated kubelet: "runs" each Pod, starting `pico-agent` containers as local processes.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::{self, VolumeError};
use crate::claims::Claims;
use crate::config::{FailureKind, ImageFailure};
use crate::podnet::next_ip;
use crate::resources::{PODS, SANDBOXES, SECRETS};
use crate::selector::Filter;
use crate::status::{self, ContainerState};
use crate::store::{EventType, ObjKey, Store};

/// Settings tests may change while the emulator runs.
#[derive(Debug, Clone)]
pub struct KubeletSettings {
    pub start_delay: Duration,
    pub failures: Vec<ImageFailure>,
    pub agent_binary: PathBuf,
    /// Images on the node (`kind load`); `None`: every image is there and nothing is pulled.
    pub loaded_images: Option<Vec<String>>,
    /// False: pod statuses report IPs nobody can dial (see `podnet`); port-forward still works.
    pub pod_network_reachable: bool,
}

/// How long a `flaky-pull` image fails to pull before the pull works.
const FLAKY_PULL_FOR: Duration = Duration::from_millis(1500);

pub type SharedSettings = Arc<RwLock<KubeletSettings>>;

/// Container output by pod uid, for `kubectl logs`; the last [`LOG_LINES`] lines.
#[derive(Debug, Clone, Default)]
pub struct PodLogs(Arc<Mutex<HashMap<String, VecDeque<String>>>>);

const LOG_LINES: usize = 2000;

impl PodLogs {
    fn push(&self, uid: &str, line: String) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let buf = map.entry(uid.to_string()).or_default();
        if buf.len() == LOG_LINES {
            buf.pop_front();
        }
        buf.push_back(line);
    }

    fn forget(&self, uid: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
    }

    /// The pod's output, optionally only the last `tail` lines.
    pub fn read(&self, uid: &str, tail: Option<usize>) -> String {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(buf) = map.get(uid) else {
            return String::new();
        };
        let skip = tail.map_or(0, |t| buf.len().saturating_sub(t));
        buf.iter().skip(skip).fold(String::new(), |mut out, l| {
            out.push_str(l);
            out.push('\n');
            out
        })
    }
}

/// The kubelet: a runner per pod uid, cancelled when the pod goes away.
pub struct Kubelet {
    pub store: Arc<Store>,
    pub settings: SharedSettings,
    pub logs: PodLogs,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub claims: Claims,
}

impl Kubelet {
    pub async fn run(self) {
        let mut rx = self.store.subscribe();
        let mut runners: HashMap<String, CancellationToken> = HashMap::new();
        let mut resync = true;
        loop {
            if resync {
                resync = false;
                let (pods, _) = self.store.list(PODS.key, None, &Filter::default());
                let live: Vec<String> = pods
                    .iter()
                    .filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_string))
                    .collect();
                runners.retain(|uid, t| {
                    let keep = live.contains(uid);
                    if !keep {
                        t.cancel();
                    }
                    keep
                });
                for p in pods {
                    self.start(&mut runners, &p);
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                r = rx.recv() => match r {
                    Ok(ev) if ev.key.res == SANDBOXES.key && ev.kind == EventType::Deleted => {
                        self.claims.forget_sandbox(&ev.object);
                    }
                    Ok(ev) if ev.key.res == PODS.key => match ev.kind {
                        EventType::Added => self.start(&mut runners, &ev.object),
                        EventType::Deleted => {
                            if let Some(t) = ev.object["metadata"]["uid"].as_str().and_then(|u| runners.remove(u)) {
                                t.cancel();
                            }
                        }
                        EventType::Modified => {}
                    },
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => resync = true,
                    Err(RecvError::Closed) => break,
                },
            }
        }
        for t in runners.values() {
            t.cancel();
        }
    }

    fn start(&self, runners: &mut HashMap<String, CancellationToken>, pod: &Value) {
        let Some(uid) = pod["metadata"]["uid"].as_str() else {
            return;
        };
        if runners.contains_key(uid) {
            return;
        }
        let token = self.shutdown.child_token();
        runners.insert(uid.to_string(), token.clone());
        let settings = self
            .settings
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        let (ns, name) = (
            pod["metadata"]["namespace"].as_str().unwrap_or(""),
            pod["metadata"]["name"].as_str().unwrap_or(""),
        );
        let runner = PodRunner {
            store: self.store.clone(),
            key: ObjKey::new(&PODS, ns, name),
            uid: uid.to_string(),
            pod: pod.clone(),
            settings,
            logs: self.logs.clone(),
            token,
            claims: self.claims.clone(),
        };
        self.tracker.spawn(runner.run());
    }
}

struct PodRunner {
    store: Arc<Store>,
    key: ObjKey,
    uid: String,
    pod: Value,
    settings: KubeletSettings,
    logs: PodLogs,
    token: CancellationToken,
    claims: Claims,
}

impl PodRunner {
    fn set_status(&self, f: impl FnOnce(&mut Value)) {
        let _ = self.store.update(&PODS, &self.key, false, |old| {
            if old["metadata"]["uid"].as_str() != Some(self.uid.as_str()) {
                return Err(crate::error::ApiError::conflict("", "pods", &self.key.name));
            }
            let mut n = old.clone();
            f(&mut n["status"]);
            Ok(n)
        });
    }

    fn set(&self, phase: &str, ip: Option<Ipv4Addr>, ready: bool, state: &ContainerState) {
        let pod = self.pod.clone();
        let ip = ip.map(|ip| crate::podnet::reported(ip, self.settings.pod_network_reachable));
        self.set_status(|s| *s = status::pod_status(&pod, phase, ip, ready, state));
    }

    /// Sleeps unless the pod goes away first; false when it did.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.token.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// The scripted failure of the pod's first failing image, and whether an init container has it.
    fn failure(&self) -> Option<(FailureKind, String, bool)> {
        ["initContainers", "containers"].iter().find_map(|list| {
            let containers = self.pod["spec"][*list]
                .as_array()
                .cloned()
                .unwrap_or_default();
            containers.iter().find_map(|c| {
                let image = c["image"].as_str().unwrap_or("");
                let f = self
                    .settings
                    .failures
                    .iter()
                    .find(|f| image.contains(&f.pattern))?;
                Some((f.kind, image.to_string(), *list == "initContainers"))
            })
        })
    }

    /// An init container fails: it carries the state, the app containers wait for it.
    fn set_init(&self, state: &ContainerState) {
        let pod = self.pod.clone();
        let waiting = ContainerState::Waiting("PodInitializing", String::new());
        self.set_status(|s| {
            *s = status::pod_status_with_init(&pod, "Pending", None, false, &waiting, Some(state))
        });
    }

    async fn fail(&self, kind: FailureKind, image: &str, init: bool, ip: Ipv4Addr) {
        let set = |state: ContainerState, phase: &str, ip: Option<Ipv4Addr>| {
            if init {
                self.set_init(&state)
            } else {
                self.set(phase, ip, false, &state)
            }
        };
        match kind {
            FailureKind::PullError => {
                let msg = format!("failed to pull image \"{image}\": emulated pull failure");
                set(
                    ContainerState::Waiting("ErrImagePull", msg),
                    "Pending",
                    None,
                );
                if self.pause(Duration::from_secs(1)).await {
                    let msg = format!("Back-off pulling image \"{image}\"");
                    set(
                        ContainerState::Waiting("ImagePullBackOff", msg),
                        "Pending",
                        None,
                    );
                }
            }
            FailureKind::Crash => {
                let msg = "back-off restarting failed container (emulated crash, exit code 1)"
                    .to_string();
                set(ContainerState::CrashLoop(msg), "Running", Some(ip));
            }
            FailureKind::NeverReady => set(ContainerState::Running, "Running", Some(ip)),
            // Handled in `run`: the pod starts after the blip.
            FailureKind::FlakyPull => {}
        }
    }

    async fn run(self) {
        let creating = ContainerState::Waiting("ContainerCreating", String::new());
        self.set("Pending", None, false, &creating);
        if !self.pause(self.settings.start_delay).await {
            return;
        }
        let ip = next_ip();
        if self.pull_images().await {
            match self.failure() {
                Some((FailureKind::FlakyPull, image, init)) => {
                    let msg =
                        format!("failed to pull image \"{image}\": emulated transient failure");
                    self.set_waiting(init, "ErrImagePull", msg);
                    if self.pause(FLAKY_PULL_FOR).await {
                        self.start_containers(ip).await;
                    }
                }
                Some((kind, image, init)) => self.fail(kind, &image, init, ip).await,
                None => self.start_containers(ip).await,
            }
        }
        self.token.cancelled().await;
        self.logs.forget(&self.uid);
    }

    fn set_waiting(&self, init: bool, reason: &'static str, msg: String) {
        let state = ContainerState::Waiting(reason, msg);
        if init {
            self.set_init(&state);
        } else {
            self.set("Pending", None, false, &state);
        }
    }

    /// Every container's image must be on the node, or pulled (and there is no registry): a
    /// pull failure alternates `ErrImagePull` and `ImagePullBackOff` until the pod goes.
    /// False when the pod never gets its images.
    async fn pull_images(&self) -> bool {
        let loaded = self.settings.loaded_images.as_deref();
        let problem = ["initContainers", "containers"].iter().find_map(|list| {
            let containers = self.pod["spec"][*list].as_array()?;
            containers
                .iter()
                // Scripted failures stand for their own pull (or crash) story.
                .filter(|c| {
                    let image = c["image"].as_str().unwrap_or("");
                    !self
                        .settings
                        .failures
                        .iter()
                        .any(|f| image.contains(&f.pattern))
                })
                .find_map(|c| crate::images::problem(loaded, c))
                .map(|p| (p, *list == "initContainers"))
        });
        let Some((problem, init)) = problem else {
            return true;
        };
        if problem.fatal {
            self.set_waiting(init, problem.reason, problem.message);
            return false;
        }
        for round in 0u32.. {
            let reason = if round % 2 == 0 {
                problem.reason
            } else {
                "ImagePullBackOff"
            };
            self.set_waiting(init, reason, problem.message.clone());
            if !self.pause(Duration::from_secs(1)).await {
                break;
            }
        }
        false
    }

    /// The kubelet refuses a container whose security context cannot hold, else starts them.
    async fn start_containers(&self, ip: Ipv4Addr) {
        for list in ["initContainers", "containers"] {
            let containers = self.pod["spec"][list]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(msg) = containers
                .iter()
                .find_map(|c| crate::runas::config_problem(&self.pod, c))
            {
                self.set_waiting(list == "initContainers", "CreateContainerConfigError", msg);
                return;
            }
        }
        if agent::agent_container(&self.pod).is_some() {
            self.run_agent(ip).await;
        } else {
            self.set("Running", Some(ip), true, &ContainerState::Running);
        }
    }

    async fn run_agent(&self, mut ip: Ipv4Addr) {
        let Some(container) = agent::agent_container(&self.pod) else {
            return;
        };
        let mut rx = self.store.subscribe();
        let vols = loop {
            match agent::prepare_volumes(
                &self.store,
                &self.claims,
                &self.key.ns,
                &self.pod,
                container,
            ) {
                Ok(v) => break v,
                Err(VolumeError::MissingSecret(name)) => {
                    let msg = format!("MountVolume.SetUp failed: secret \"{name}\" not found");
                    self.set(
                        "Pending",
                        None,
                        false,
                        &ContainerState::Waiting("ContainerCreating", msg),
                    );
                    // Retry when a secret in this namespace changes.
                    loop {
                        tokio::select! {
                            _ = self.token.cancelled() => return,
                            r = rx.recv() => match r {
                                Ok(ev) if ev.key.res == SECRETS.key && ev.key.ns == self.key.ns => break,
                                Ok(_) => {}
                                Err(RecvError::Lagged(_)) => break,
                                Err(RecvError::Closed) => return,
                            },
                        }
                    }
                }
                Err(VolumeError::Io(e)) => {
                    let msg = format!("preparing volumes: {e}");
                    self.set(
                        "Failed",
                        None,
                        false,
                        &ContainerState::Terminated(128, "ContainerCannotRun", msg),
                    );
                    return;
                }
            }
        };
        drop(rx);
        let mut cmd = agent::agent_command(container, &vols, ip);
        // Another emulator process may have handed out the same address: probe for a free one.
        for _ in 0..32 {
            if std::net::TcpListener::bind((ip, cmd.port)).is_ok() {
                break;
            }
            ip = next_ip();
            cmd = agent::agent_command(container, &vols, ip);
        }
        if let Some(msg) = crate::runas::run_problem(&self.pod, container, cmd.port) {
            self.set("Running", Some(ip), false, &ContainerState::CrashLoop(msg));
            return;
        }
        tracing::info!(pod = %self.key.name, %ip, port = cmd.port, args = ?cmd.args, "starting pico-agent");
        let child = tokio::process::Command::new(&self.settings.agent_binary)
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&cmd.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("starting {}: {e}", self.settings.agent_binary.display());
                self.set(
                    "Failed",
                    None,
                    false,
                    &ContainerState::Terminated(128, "StartError", msg),
                );
                return;
            }
        };
        self.set("Running", Some(ip), false, &ContainerState::Running);
        let (pod_name, logs, uid) = (self.key.name.clone(), self.logs.clone(), self.uid.clone());
        let mut stderr_task = None;
        if let Some(err) = child.stderr.take() {
            stderr_task = Some(tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    tracing::debug!(pod = %pod_name, "pico-agent: {l}");
                    logs.push(&uid, l);
                }
            }));
        }
        let mut stdout = child.stdout.take().map(|o| BufReader::new(o).lines());
        let status = loop {
            tokio::select! {
                _ = self.token.cancelled() => {
                    let _ = child.kill().await;
                    return;
                }
                line = async { match stdout.as_mut() { Some(l) => l.next_line().await, None => std::future::pending().await } } => match line {
                    Ok(Some(l)) => {
                        if l.trim() == "ready" {
                            self.set("Running", Some(ip), true, &ContainerState::Running);
                        }
                        self.logs.push(&self.uid, l);
                    }
                    // Stdout closed; the exit status comes from wait().
                    _ => stdout = None,
                },
                s = child.wait() => break s,
            }
        };
        let code = status.ok().and_then(|s| s.code()).unwrap_or(137);
        let reason = if code == 0 { "Completed" } else { "Error" };
        let phase = if code == 0 { "Succeeded" } else { "Failed" };
        // The last thing the agent said is the most useful part of the message.
        if let Some(t) = stderr_task {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
        let last = self.logs.read(&self.uid, Some(1));
        let msg = format!("pico-agent exited with code {code}: {}", last.trim_end());
        self.set(
            phase,
            Some(ip),
            false,
            &ContainerState::Terminated(code, reason, msg),
        );
    }
}
