//! The simulated kubelet: "runs" each Pod, starting `pico-agent` containers as local processes.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::{self, VolumeError};
use crate::config::{FailureKind, ImageFailure};
use crate::resources::{PODS, SECRETS};
use crate::selector::Filter;
use crate::status::{self, ContainerState};
use crate::store::{EventType, ObjKey, Store};

/// Settings tests may change while the emulator runs.
#[derive(Debug, Clone)]
pub struct KubeletSettings {
    pub start_delay: Duration,
    pub failures: Vec<ImageFailure>,
    pub agent_binary: PathBuf,
}

pub type SharedSettings = Arc<RwLock<KubeletSettings>>;

/// Hands out pod IPs 127.R.x.y: R is random per process so that emulators in concurrent
/// processes rarely meet, and the counter is process-wide so emulators in one process never do.
fn next_ip() -> Ipv4Addr {
    static BASE: OnceLock<u8> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = *BASE.get_or_init(|| rand::random::<u8>() % 250 + 1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % (254 * 254);
    let (hi, lo) = (n / 254 + 1, n % 254 + 1);
    Ipv4Addr::new(127, base, u8::try_from(hi).unwrap_or(1), u8::try_from(lo).unwrap_or(1))
}

/// Watches pods: a runner per pod uid, cancelled when the pod goes away.
pub async fn run(store: Arc<Store>, settings: SharedSettings, shutdown: CancellationToken, tracker: TaskTracker) {
    let mut rx = store.subscribe();
    let mut runners: HashMap<String, CancellationToken> = HashMap::new();
    let mut resync = true;
    loop {
        if resync {
            resync = false;
            let (pods, _) = store.list(PODS.key, None, &Filter::default());
            let live: Vec<String> = pods.iter().filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_string)).collect();
            runners.retain(|uid, t| {
                let keep = live.contains(uid);
                if !keep {
                    t.cancel();
                }
                keep
            });
            for p in pods {
                start(&store, &settings, &shutdown, &tracker, &mut runners, &p);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = rx.recv() => match r {
                Ok(ev) if ev.key.res == PODS.key => match ev.kind {
                    EventType::Added => start(&store, &settings, &shutdown, &tracker, &mut runners, &ev.object),
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

fn start(
    store: &Arc<Store>,
    settings: &SharedSettings,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    runners: &mut HashMap<String, CancellationToken>,
    pod: &Value,
) {
    let Some(uid) = pod["metadata"]["uid"].as_str() else { return };
    if runners.contains_key(uid) {
        return;
    }
    let token = shutdown.child_token();
    runners.insert(uid.to_string(), token.clone());
    let s = settings.read().map(|s| s.clone()).unwrap_or_else(|e| e.into_inner().clone());
    let runner = PodRunner {
        store: store.clone(),
        key: ObjKey::new(&PODS, pod["metadata"]["namespace"].as_str().unwrap_or(""), pod["metadata"]["name"].as_str().unwrap_or("")),
        uid: uid.to_string(),
        pod: pod.clone(),
        settings: s,
        token,
    };
    tracker.spawn(runner.run());
}

struct PodRunner {
    store: Arc<Store>,
    key: ObjKey,
    uid: String,
    pod: Value,
    settings: KubeletSettings,
    token: CancellationToken,
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
        self.set_status(|s| *s = status::pod_status(&pod, phase, ip, ready, state));
    }

    /// Sleeps unless the pod goes away first; false when it did.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.token.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    fn failure(&self) -> Option<(FailureKind, String)> {
        let containers = self.pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
        containers.iter().find_map(|c| {
            let image = c["image"].as_str().unwrap_or("");
            self.settings.failures.iter().find(|f| image.contains(&f.pattern)).map(|f| (f.kind, image.to_string()))
        })
    }

    async fn run(self) {
        let creating = ContainerState::Waiting("ContainerCreating", String::new());
        self.set("Pending", None, false, &creating);
        if !self.pause(self.settings.start_delay).await {
            return;
        }
        let ip = next_ip();
        match self.failure() {
            Some((FailureKind::PullError, image)) => {
                let msg = format!("failed to pull image \"{image}\": emulated pull failure");
                self.set("Pending", None, false, &ContainerState::Waiting("ErrImagePull", msg.clone()));
                if self.pause(Duration::from_secs(1)).await {
                    let msg = format!("Back-off pulling image \"{image}\"");
                    self.set("Pending", None, false, &ContainerState::Waiting("ImagePullBackOff", msg));
                }
            }
            Some((FailureKind::Crash, _)) => {
                let msg = "back-off restarting failed container (emulated crash, exit code 1)".to_string();
                self.set("Running", Some(ip), false, &ContainerState::CrashLoop(msg));
            }
            Some((FailureKind::NeverReady, _)) => self.set("Running", Some(ip), false, &ContainerState::Running),
            None if agent::agent_container(&self.pod).is_some() => self.run_agent(ip).await,
            None => self.set("Running", Some(ip), true, &ContainerState::Running),
        }
        self.token.cancelled().await;
    }

    async fn run_agent(&self, ip: Ipv4Addr) {
        let Some(container) = agent::agent_container(&self.pod) else { return };
        let mut rx = self.store.subscribe();
        let vols = loop {
            match agent::prepare_volumes(&self.store, &self.key.ns, &self.pod, container) {
                Ok(v) => break v,
                Err(VolumeError::MissingSecret(name)) => {
                    let msg = format!("MountVolume.SetUp failed: secret \"{name}\" not found");
                    self.set("Pending", None, false, &ContainerState::Waiting("ContainerCreating", msg));
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
                    self.set("Failed", None, false, &ContainerState::Terminated(128, "ContainerCannotRun", msg));
                    return;
                }
            }
        };
        drop(rx);
        let cmd = agent::agent_command(container, &vols, ip);
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
                self.set("Failed", None, false, &ContainerState::Terminated(128, "StartError", msg));
                return;
            }
        };
        self.set("Running", Some(ip), false, &ContainerState::Running);
        let pod_name = self.key.name.clone();
        if let Some(err) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    tracing::info!(pod = %pod_name, "pico-agent: {l}");
                }
            });
        }
        let mut stdout = child.stdout.take().map(|o| BufReader::new(o).lines());
        let status = loop {
            tokio::select! {
                _ = self.token.cancelled() => {
                    let _ = child.kill().await;
                    return;
                }
                line = async { match stdout.as_mut() { Some(l) => l.next_line().await, None => std::future::pending().await } } => match line {
                    Ok(Some(l)) if l.trim() == "ready" => self.set("Running", Some(ip), true, &ContainerState::Running),
                    Ok(Some(_)) => {}
                    // Stdout closed; the exit status comes from wait().
                    _ => stdout = None,
                },
                s = child.wait() => break s,
            }
        };
        let code = status.ok().and_then(|s| s.code()).unwrap_or(137);
        let reason = if code == 0 { "Completed" } else { "Error" };
        let phase = if code == 0 { "Succeeded" } else { "Failed" };
        let msg = format!("pico-agent exited with code {code}");
        self.set(phase, Some(ip), false, &ContainerState::Terminated(code, reason, msg));
    }
}
