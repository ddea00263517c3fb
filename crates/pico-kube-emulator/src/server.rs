//! Starting and stopping the emulator: HTTP server, controller and kubelet under one token.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, App};
use crate::config::{self, EmulatorConfig, FailureKind, ImageFailure};
use crate::error::Error;
use crate::kubelet::{self, KubeletSettings, SharedSettings};
use crate::store::Store;

/// The emulator; see [`Emulator::start`].
pub struct Emulator;

/// A running emulator. Dropping it without [`EmulatorHandle::shutdown`] also stops it.
pub struct EmulatorHandle {
    addr: SocketAddr,
    token: Option<String>,
    store: Arc<Store>,
    settings: SharedSettings,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Emulator {
    /// Binds `config.bind` and starts serving.
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, Error> {
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: config.bind.to_string(),
                source,
            })?;
        Self::start_on(listener, config)
    }

    /// Serves on a listener the caller bound (`config.bind` is ignored).
    pub fn start_on(
        listener: TcpListener,
        config: EmulatorConfig,
    ) -> Result<EmulatorHandle, Error> {
        let served = crate::resources::Served::new(&config.sandbox_versions);
        let Some(owner_version) = served
            .versions(&crate::resources::SANDBOXES)
            .first()
            .copied()
        else {
            let msg = format!(
                "sandbox_versions {:?} names neither v1beta1 nor v1alpha1",
                config.sandbox_versions
            );
            return Err(Error::Config(msg));
        };
        let addr = listener.local_addr()?;
        let store = Arc::new(Store::new(config.watch_history));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let settings: SharedSettings = Arc::new(RwLock::new(KubeletSettings {
            start_delay: config.pod_start_delay,
            failures: config.image_failures.clone(),
            agent_binary: config
                .agent_binary
                .clone()
                .unwrap_or_else(config::default_agent_binary),
            loaded_images: config.loaded_images.clone(),
            pod_network_reachable: config.pod_network_reachable,
        }));
        let logs = kubelet::PodLogs::default();
        let app = Arc::new(App {
            logs: logs.clone(),
            store: store.clone(),
            token: config.token.clone(),
            server_address: addr.to_string(),
            bookmark_interval: config.bookmark_interval,
            shutdown: shutdown.clone(),
            served,
            pod_security: config.pod_security,
        });
        let router = api::router(app);
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let serve = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "emulator HTTP server failed");
            }
        });
        let owner_api_version = crate::resources::SANDBOXES.api_version(owner_version);
        tracker.spawn(crate::controller::run(
            store.clone(),
            shutdown.child_token(),
            owner_api_version,
            config.pod_security,
        ));
        let kubelet = kubelet::Kubelet {
            store: store.clone(),
            settings: settings.clone(),
            logs,
            shutdown: shutdown.child_token(),
            tracker: tracker.clone(),
            claims: crate::claims::Claims::new()?,
        };
        tracker.spawn(kubelet.run());
        tracing::info!(%addr, "kubernetes API emulator listening");
        Ok(EmulatorHandle {
            addr,
            token: config.token,
            store,
            settings,
            shutdown,
            tracker,
        })
    }
}

impl EmulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bearer token clients should send (any token works when none is configured).
    pub fn token(&self) -> &str {
        self.token.as_deref().unwrap_or("pico-kube-emulator")
    }

    /// A kubeconfig for kubectl and kube-rs: one cluster, one token user, namespace `default`.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url(), self.token())
    }

    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| Error::WriteKubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// Forgets the watch history: watches resuming from an older resourceVersion get 410 Gone.
    pub fn compact_history(&self) {
        self.store.compact();
    }

    /// Closes every open watch stream, as a dropped connection would.
    pub fn drop_watches(&self) {
        self.store.drop_watches();
    }

    /// The global resourceVersion counter.
    pub fn resource_version(&self) -> u64 {
        self.store.current_rv()
    }

    /// Applies to pods the kubelet starts from now on.
    pub fn set_pod_start_delay(&self, delay: Duration) {
        self.with_settings(|s| s.start_delay = delay);
    }

    /// Pods started from now on whose image contains `pattern` fail as `kind`.
    pub fn add_image_failure(&self, pattern: &str, kind: FailureKind) {
        self.with_settings(|s| s.failures.push(ImageFailure::new(pattern, kind)));
    }

    /// Evicts a pod as a kubelet under node pressure does: phase `Failed`, reason `Evicted`.
    /// False when there is no such pod.
    pub fn evict_pod(&self, namespace: &str, name: &str) -> bool {
        let key = crate::store::ObjKey::new(&crate::resources::PODS, namespace, name);
        self.store
            .update(&crate::resources::PODS, &key, false, |old| {
                let mut pod = old.clone();
                pod["status"]["phase"] = serde_json::json!("Failed");
                pod["status"]["reason"] = serde_json::json!("Evicted");
                pod["status"]["message"] =
                    serde_json::json!("The node was low on resource: memory.");
                for c in pod["status"]["conditions"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                        c["status"] = serde_json::json!("False");
                    }
                }
                Ok(pod)
            })
            .is_ok()
    }

    /// Puts an image on the node, as `kind load docker-image` does (for pods started from now on).
    pub fn load_image(&self, image: &str) {
        self.with_settings(|s| {
            s.loaded_images
                .get_or_insert_with(Vec::new)
                .push(image.into())
        });
    }

    fn with_settings(&self, f: impl FnOnce(&mut KubeletSettings)) {
        let mut guard = self.settings.write().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    /// Stops serving, ends watches and kills every agent process, then waits for all tasks.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn kubeconfig_yaml(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: pico-kube-emulator\n  cluster:\n    server: {server}\n\
         users:\n- name: pico-kube-emulator\n  user:\n    token: {token}\n\
         contexts:\n- name: pico-kube-emulator\n  context:\n    cluster: pico-kube-emulator\n    user: pico-kube-emulator\n    namespace: default\n\
         current-context: pico-kube-emulator\npreferences: {{}}\n"
    )
}
