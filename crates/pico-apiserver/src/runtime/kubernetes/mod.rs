//! The Kubernetes runtime: each session is one agent-sandbox `Sandbox` (plus a `Secret` with
//! its keys) in `--namespace`; the tunnel dials `podIP:--ssh-port`. The same object serves
//! as the session's record (see `records.rs`), so the cluster is the source of truth.

mod api;
mod connect;
mod hardening;
mod manifest;
mod ready;
mod records;
mod suspend;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::api::{ApiFail, call};
pub use self::connect::ConnectMode;
pub use self::hardening::Hardening;
pub use self::manifest::{AgentMode, PodSettings};
use self::manifest::{GROUP, KIND, PLURAL, SELECTOR, object_name};
use super::{BoxedStream, Cause, FailureKind, Recovery, Runtime, RuntimeError, SandboxSpec};
use crate::error::Report;
use crate::store::SessionRecord;

/// Bound of every single (non-watch) API call.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of the readiness check's API call (a kubelet's probe gives up after a second).
const READY_CHECK: Duration = Duration::from_millis(800);
/// How much earlier than `--create-timeout` the wait for readiness gives up.
const OWN_TIMEOUT_MARGIN: Duration = Duration::from_millis(300);
/// How long `delete` waits for the Sandbox to be gone before it returns anyway.
const DELETE_WAIT: Duration = Duration::from_secs(30);

/// Every (API group, resource, verb) this runtime calls; `k8s/rbac.yaml` grants exactly these
/// (a test holds them equal). Keep it in step with the calls below and in `records.rs`/`ready.rs`.
pub const RBAC_RULES: &[(&str, &str, &[&str])] = &[
    (
        GROUP,
        PLURAL,
        &["create", "delete", "list", "patch", "watch"],
    ),
    ("", "secrets", &["create", "delete"]),
    ("", "pods", &["get", "list", "watch"]),
    // A WebSocket port-forward is a GET; newer API servers also check `create`.
    ("", "pods/portforward", &["create", "get"]),
];

pub struct KubeSettings {
    /// Empty = in-cluster configuration (or whatever `kube` infers).
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub pod: PodSettings,
    pub create_timeout: Duration,
    /// How long `/readyz` stays ready after the API server last answered (see `ready`).
    pub ready_grace: Duration,
    /// How the tunnel reaches pods (`--kube-connect`).
    pub connect: ConnectMode,
}

pub struct KubernetesRuntime {
    client: Client,
    namespace: String,
    /// `v1beta1`, or `v1alpha1` when that is all the cluster serves.
    version: String,
    resource: ApiResource,
    sandboxes: Api<DynamicObject>,
    secrets: Api<Secret>,
    pods: Api<Pod>,
    pod: PodSettings,
    create_timeout: Duration,
    ready_grace: Duration,
    /// When the API server last answered a readiness check.
    last_ready: Mutex<Option<std::time::Instant>>,
    /// Every Sandbox this server manages, kept current by a watch.
    cache: reflector::Store<DynamicObject>,
    /// Bumped after every change the watch applied to `cache`.
    changed: watch::Receiver<u64>,
    /// Per session: when `lastActivityAt` was last written to the cluster, and newer
    /// activity held back until the next write is due.
    activity_written: Mutex<HashMap<Uuid, records::Activity>>,
    /// What the watch applied, for read-your-writes by resourceVersion equality.
    seen_versions: Arc<records::SeenVersions>,
    connector: connect::Connector,
}

async fn client_for(settings: &KubeSettings) -> Result<Client, RuntimeError> {
    let unavailable =
        |what: &str, e: Cause| RuntimeError::caused(FailureKind::Unavailable, what, e);
    let mut config = match &settings.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| unavailable(&format!("cannot read {}", path.display()), e.into()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| unavailable("bad kubeconfig", e.into()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| unavailable("no in-cluster configuration", e.into()))?,
    };
    config.connect_timeout = Some(API_TIMEOUT);
    Client::try_from(config).map_err(|e| unavailable("cannot build a Kubernetes client", e.into()))
}

/// `v1beta1` when served, else `v1alpha1`.
async fn sandbox_version(client: &Client) -> Result<String, RuntimeError> {
    let groups = call(client.list_api_groups())
        .await
        .map_err(|e| RuntimeError::caused(FailureKind::Unavailable, "API discovery failed", e))?;
    let group = groups
        .groups
        .iter()
        .find(|g| g.name == GROUP)
        .ok_or_else(|| {
            RuntimeError::Unavailable(format!(
                "the cluster does not serve {GROUP}: install agent-sandbox (its Sandbox CRD) first"
            ))
        })?;
    let served: Vec<&str> = group.versions.iter().map(|v| v.version.as_str()).collect();
    ["v1beta1", "v1alpha1"]
        .into_iter()
        .find(|v| served.contains(v))
        .map(str::to_owned)
        .ok_or_else(|| {
            RuntimeError::Unavailable(format!(
                "{GROUP} serves {served:?}, none of v1beta1, v1alpha1"
            ))
        })
}

impl KubernetesRuntime {
    /// Connects, discovers the Sandbox version, and starts the watch that feeds the cache;
    /// returns once the cache holds every existing Sandbox. The watch stops with `shutdown`.
    pub async fn start(
        settings: KubeSettings,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, RuntimeError> {
        let client = client_for(&settings).await?;
        let version = sandbox_version(&client).await?;
        let gvk = GroupVersionKind::gvk(GROUP, &version, KIND);
        let resource = ApiResource::from_gvk_with_plural(&gvk, PLURAL);
        let ns = settings.namespace.as_str();
        let sandboxes: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        let writer = reflector::store::Writer::new(resource.clone());
        let cache = writer.as_reader();
        let (bump, changed) = watch::channel(0u64);
        let seen_versions = Arc::new(records::SeenVersions::default());
        let seen = seen_versions.clone();
        let stream = reflector::reflector(
            writer,
            watcher::watcher(
                sandboxes.clone(),
                watcher::Config::default().labels(SELECTOR),
            ),
        )
        .default_backoff();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    event = stream.next() => match event {
                        Some(Ok(event)) => {
                            if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = &event
                                && let Some(rv) = &o.metadata.resource_version
                            {
                                seen.record(rv);
                            }
                            bump.send_modify(|n| *n = n.wrapping_add(1));
                        }
                        Some(Err(err)) => tracing::warn!(error = %err, "Sandbox watch failed; retrying"),
                        None => break,
                    },
                }
            }
        });
        tokio::time::timeout(API_TIMEOUT * 3, cache.wait_until_ready())
            .await
            .map_err(|_| RuntimeError::Unavailable("listing Sandboxes timed out".into()))?
            .map_err(|e| {
                RuntimeError::caused(FailureKind::Unavailable, "Sandbox watch ended", e)
            })?;
        tracing::info!(namespace = ns, version = %version, sandboxes = cache.state().len(), "kubernetes runtime ready");
        Ok(Arc::new(Self {
            secrets: Api::namespaced(client.clone(), ns),
            pods: Api::namespaced(client.clone(), ns),
            client,
            namespace: settings.namespace,
            version,
            resource,
            sandboxes,
            pod: settings.pod,
            create_timeout: settings.create_timeout,
            ready_grace: settings.ready_grace,
            last_ready: Mutex::new(Some(std::time::Instant::now())),
            cache,
            changed,
            activity_written: Mutex::default(),
            seen_versions,
            connector: connect::Connector::new(settings.connect),
        }))
    }

    fn cached(&self, id: Uuid) -> Option<Arc<DynamicObject>> {
        let key =
            ObjectRef::new_with(&object_name(id), self.resource.clone()).within(&self.namespace);
        self.cache.get(&key)
    }

    /// Waits (bounded) until the cache shows `name` as `want` says: read-your-writes for
    /// the replica that made the change.
    async fn await_cache(&self, id: Uuid, want: impl Fn(Option<&DynamicObject>) -> bool) {
        let mut changed = self.changed.clone();
        let wait = async {
            while !want(self.cached(id).as_deref()) {
                if changed.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(API_TIMEOUT, wait).await.is_err() {
            tracing::warn!(session_id = %id, "the Sandbox watch is behind");
        }
    }

    async fn delete_sandbox(&self, name: &str) -> Result<(), ApiFail> {
        match call(self.sandboxes.delete(name, &DeleteParams::background())).await {
            Ok(_) | Err(ApiFail::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create_objects(&self, spec: &SandboxSpec<'_>) -> Result<(), RuntimeError> {
        let record = spec.record;
        let manifest = manifest::sandbox(record, &self.version, &self.pod);
        let sandbox: DynamicObject = serde_json::from_value(manifest)
            .map_err(|e| RuntimeError::caused(FailureKind::Create, "Sandbox manifest", e))?;
        let made = call(self.sandboxes.create(&PostParams::default(), &sandbox))
            .await
            .map_err(|e| RuntimeError::caused(FailureKind::Create, "creating the Sandbox", e))?;
        let uid = made.metadata.uid.unwrap_or_default();
        let secret: Secret = serde_json::from_value(manifest::secret(
            record,
            spec.host_private_key,
            &self.version,
            &uid,
            &self.pod,
        ))
        .map_err(|e| RuntimeError::caused(FailureKind::Create, "Secret manifest", e))?;
        call(self.secrets.create(&PostParams::default(), &secret))
            .await
            .map_err(|e| RuntimeError::caused(FailureKind::Create, "creating the Secret", e))?;
        Ok(())
    }

    /// A Sandbox whose pod was evicted or is being recreated says `Ready=False`: its old
    /// pod IP may already belong to another pod.
    fn still_ready(&self, id: Uuid) -> Result<(), RuntimeError> {
        let Some(sandbox) = self.cached(id).and_then(|o| serde_json::to_value(&*o).ok()) else {
            return Ok(());
        };
        match manifest::condition(&sandbox, "Ready") {
            Some(c) if c.status == "False" => Err(RuntimeError::Unreachable(format!(
                "the sandbox pod is not ready ({}: {})",
                c.reason, c.message
            ))),
            _ => Ok(()),
        }
    }

    async fn pod_ip(&self, id: Uuid) -> Result<String, RuntimeError> {
        let from_cache = self
            .cached(id)
            .and_then(|o| serde_json::to_value(&*o).ok())
            .and_then(|v| manifest::pod_ip(&v));
        if let Some(ip) = from_cache {
            return Ok(ip);
        }
        let pod = call(self.pods.get(&object_name(id)))
            .await
            .map_err(|e| RuntimeError::caused(FailureKind::Unreachable, "sandbox pod", e))?;
        pod.status
            .and_then(|s| s.pod_ip)
            .ok_or_else(|| RuntimeError::Unreachable("sandbox pod has no IP".into()))
    }
}

#[async_trait::async_trait]
impl Runtime for KubernetesRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    /// Ready while the API server answers, and for `ready_grace` after it last did: every
    /// replica asks the same API server, so a short blip must not take them all out of the
    /// Service at once (sessions and tunnels to running pods still work meanwhile). The check
    /// itself is bounded below the readiness probe's timeout.
    async fn ready(&self) -> Result<(), RuntimeError> {
        let answer = tokio::time::timeout(READY_CHECK, self.client.apiserver_version()).await;
        let err = match answer {
            Ok(Ok(_)) => {
                *self.last_ready.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::time::Instant::now());
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {}ms", READY_CHECK.as_millis()),
        };
        let last = *self.last_ready.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < self.ready_grace) {
            tracing::warn!(error = %err, "Kubernetes API did not answer; still ready within the grace period");
            return Ok(());
        }
        Err(RuntimeError::Unavailable(format!("Kubernetes API: {err}")))
    }

    async fn create(&self, spec: SandboxSpec<'_>) -> Result<(), RuntimeError> {
        let id = spec.record.id;
        let name = object_name(id);
        let trouble = Mutex::new(None);
        let outcome = match self.create_objects(&spec).await {
            Ok(()) => {
                let wait = ready::wait_ready(&self.sandboxes, &self.pods, &name, &trouble);
                // Ends a moment before the service's own bound on the create, so that the
                // client's message is this one, naming what the pod last reported.
                let bound = self.create_timeout.saturating_sub(OWN_TIMEOUT_MARGIN);
                match tokio::time::timeout(bound, wait).await {
                    Ok(result) => result,
                    Err(_) => {
                        let last = trouble.lock().unwrap_or_else(|e| e.into_inner()).take();
                        let waited = format!(
                            "Sandbox {name} was not ready within {}s",
                            self.create_timeout.as_secs()
                        );
                        // What the pod last reported (e.g. ErrImagePull) is about the
                        // client's request, so the client sees it.
                        Err(match last {
                            Some(t) => RuntimeError::SandboxFailed {
                                kind: FailureKind::Timeout,
                                why: format!("{waited}; last problem: {t}"),
                            },
                            None => RuntimeError::Timeout(waited),
                        })
                    }
                }
            }
            Err(err) => Err(err),
        };
        if let Err(err) = &outcome {
            tracing::warn!(session_id = %id, error = %Report(err), "sandbox create failed; removing it");
            if let Err(e) = self.delete_sandbox(&name).await {
                tracing::warn!(session_id = %id, error = %e, "cannot remove the failed Sandbox");
            }
        }
        outcome
    }

    async fn delete(&self, id: Uuid) -> Result<(), RuntimeError> {
        let name = object_name(id);
        self.delete_sandbox(&name).await.map_err(|e| {
            RuntimeError::caused(FailureKind::Delete, format!("deleting Sandbox {name}"), e)
        })?;
        // Normally garbage-collected with the Sandbox; this covers a Secret whose owner
        // reference never got written.
        match call(self.secrets.delete(&name, &DeleteParams::background())).await {
            Ok(_) | Err(ApiFail::NotFound) => {}
            Err(e) => tracing::warn!(session_id = %id, error = %e, "cannot delete Secret"),
        }
        let gone = kube::runtime::wait::await_condition(
            self.sandboxes.clone(),
            &name,
            |o: Option<&DynamicObject>| o.is_none(),
        );
        match tokio::time::timeout(DELETE_WAIT, gone).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(session_id = %id, error = %e, "cannot watch the Sandbox go")
            }
            Err(_) => {
                tracing::warn!(session_id = %id, "Sandbox still exists; leaving it to the cluster")
            }
        }
        self.await_cache(id, |o| o.is_none()).await;
        self.activity_written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        Ok(())
    }

    async fn connect(&self, id: Uuid) -> Result<BoxedStream, RuntimeError> {
        self.still_ready(id)?;
        let ip = match self.connector.mode() {
            ConnectMode::Portforward => None,
            ConnectMode::Direct => Some(self.pod_ip(id).await?),
            ConnectMode::Auto => self.pod_ip(id).await.ok(),
        };
        self.connector
            .dial(&self.pods, &object_name(id), ip, self.pod.ssh_port)
            .await
    }

    async fn recover(&self, record: &SessionRecord) -> Result<Recovery, RuntimeError> {
        // The pod belongs to the cluster's controller; there is nothing to restart here.
        match self.cached(record.id) {
            Some(_) => Ok(Recovery::Adopted),
            None => Err(RuntimeError::Unavailable("the Sandbox is gone".into())),
        }
    }

    async fn pause(&self, id: Uuid) -> Result<(), RuntimeError> {
        self.suspend(id).await
    }

    async fn resume(&self, id: Uuid) -> Result<(), RuntimeError> {
        self.unsuspend(id).await
    }

    async fn remove_orphans(&self, _known: &[Uuid]) -> Result<usize, RuntimeError> {
        // Every Sandbox is its own record, so none lacks one; Secrets go with their owner.
        Ok(0)
    }
}
