//! Kubernetes harness: the emulator in-process (its own tokio runtime), a kubeconfig for it,
//! real `kubectl`, and `pico-apiserver --runtime kubernetes` replicas pointed at it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pico_kube_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use serde_json::Value;

use crate::common::{Server, agent_binary};

/// The port the sandbox agents listen on (22 may be taken by the host's sshd).
pub const SSH_PORT: &str = "2222";

pub struct Cluster {
    pub emulator: Option<EmulatorHandle>,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl Cluster {
    /// As strict as a fresh kind cluster: only the images `make kind-load` and the tests'
    /// default session image are on the node (no registry), and every namespace enforces
    /// Pod Security "restricted".
    pub fn start() -> Self {
        Self::start_with(strict_config())
    }

    pub fn start_with(config: EmulatorConfig) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let config = EmulatorConfig {
            agent_binary: Some(agent_binary()),
            ..config
        };
        let emulator = runtime
            .block_on(Emulator::start(config))
            .expect("start emulator");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        emulator
            .write_kubeconfig(&kubeconfig)
            .expect("write kubeconfig");
        Self {
            emulator: Some(emulator),
            kubeconfig,
            dir,
            runtime,
        }
    }

    pub fn emulator(&self) -> &EmulatorHandle {
        self.emulator.as_ref().expect("emulator running")
    }

    /// Stops the emulated API server (for `/readyz`).
    pub fn stop(&mut self) {
        if let Some(emulator) = self.emulator.take() {
            self.runtime.block_on(emulator.shutdown());
        }
    }

    /// The flags a replica needs besides its own state directory.
    pub fn server_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--runtime",
            "kubernetes",
            "--kubeconfig",
            self.kubeconfig.to_str().expect("utf-8 path"),
            "--ssh-port",
            SSH_PORT,
        ];
        args.extend_from_slice(extra);
        args
    }

    /// A `pico-apiserver` replica on this cluster.
    pub fn server(&self, extra: &[&str]) -> Server {
        Server::start(&self.server_args(extra))
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// `kubectl get KIND NAME -o json`, or `None` when it does not exist.
    pub fn get(&self, kind: &str, name: &str) -> Option<Value> {
        let out = self.kubectl(&["get", kind, name, "-o", "json"]);
        if out.status.success() {
            return Some(serde_json::from_slice(&out.stdout).expect("kubectl JSON"));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "kubectl: {err}"
        );
        None
    }

    /// Names of the objects of `kind` (e.g. `sandboxes`).
    pub fn names(&self, kind: &str) -> Vec<String> {
        let out = self.kubectl(&["get", kind, "-o", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Value = serde_json::from_slice(&out.stdout).expect("kubectl JSON");
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits until `kind/name` is gone (garbage collection is asynchronous).
    pub fn wait_gone(&self, kind: &str, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.get(kind, name).is_some() {
            assert!(Instant::now() < deadline, "{kind}/{name} is still there");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The agent image `make image` tags and `make kind-load` loads: the server's default.
pub const AGENT_IMAGE: &str = concat!("pico:", env!("CARGO_PKG_VERSION"));

/// Images on the emulated node unless a test loads more.
pub const LOADED_IMAGES: &[&str] = &[AGENT_IMAGE, "debian:stable-slim"];

/// The emulator as strict as [`Cluster::start`] makes it.
pub fn strict_config() -> EmulatorConfig {
    EmulatorConfig {
        loaded_images: Some(LOADED_IMAGES.iter().map(|s| s.to_string()).collect()),
        pod_security: pico_kube_emulator::pod_security::Level::Restricted,
        ..EmulatorConfig::default()
    }
}

/// `pico-<session id>`: the name of a session's Sandbox, pod and Secret.
pub fn object_name(session: &Value) -> String {
    format!("pico-{}", session["sessionId"].as_str().expect("id"))
}
