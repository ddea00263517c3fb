//! Pure builders: the Sandbox and Secret of a session, and the session record read back from
//! a Sandbox's labels and annotations. No I/O here; unit-tested as data.

use pico_wire::{IdleAction, SessionStatus};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::hardening::{self, Hardening};
use crate::store::SessionRecord;

pub const GROUP: &str = "agents.x-k8s.io";
pub const KIND: &str = "Sandbox";
pub const PLURAL: &str = "sandboxes";

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "pico-apiserver";
/// Selects every object this server manages.
pub const SELECTOR: &str = "app.kubernetes.io/managed-by=pico-apiserver";
pub const SESSION_LABEL: &str = "pico.dev/session-id";
pub const OWNER_HASH_LABEL: &str = "pico.dev/owner-hash";

const A_OWNER: &str = "pico.dev/owner";
const A_METADATA: &str = "pico.dev/metadata";
const A_CREATED: &str = "pico.dev/created-at";
const A_EXPIRES: &str = "pico.dev/expires-at";
pub const A_ACTIVITY: &str = "pico.dev/last-activity-at";
const A_TTL: &str = "pico.dev/ttl";
const A_IDLE: &str = "pico.dev/idle-timeout";
const A_IMAGE: &str = "pico.dev/image";
const A_USERNAME: &str = "pico.dev/username";
const A_HOST_KEY: &str = "pico.dev/host-public-key";
const A_AUTHORIZED: &str = "pico.dev/authorized-key";
const A_STATUS: &str = "pico.dev/status";
const A_IDLE_ACTION: &str = "pico.dev/idle-action";
const A_PAUSED: &str = "pico.dev/paused-at";

/// Where the keys and the agent appear inside the sandbox container.
pub const AGENT_DIR: &str = "/pico";
pub const KEYS_DIR: &str = "/etc/pico";
/// The static agent inside the `--agent-image` (see the Dockerfile).
pub const AGENT_IN_IMAGE: &str = "/usr/local/bin/pico-agent";

/// How a sandbox gets its SSH server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentMode {
    /// An init container copies the static `pico-agent` into the pod; any image works.
    Inject,
    /// The image runs its own sshd on `--ssh-port`, reading the session's public key from
    /// the env `SSH_PUBLIC_KEY` (and, if it wants, the host key from `/etc/pico/host_key`).
    Image,
}

/// What every session's pod shares, from the server's flags.
#[derive(Debug, Clone)]
pub struct PodSettings {
    pub agent_mode: AgentMode,
    pub agent_image: String,
    /// Used when the session names no image.
    pub default_image: String,
    pub ssh_port: u16,
    pub ssh_username: String,
    pub runtime_class: Option<String>,
    /// Storage request of the home volume claim; `None` = an emptyDir home.
    pub home_volume: Option<String>,
    /// `imagePullPolicy` of the agent's init container (`IfNotPresent`: an image loaded into
    /// the node, as `kind load` does, is used without a registry).
    pub agent_pull_policy: String,
    pub hardening: Hardening,
    /// Public keys (OpenSSH lines) every sandbox's agent trusts besides the session's own,
    /// e.g. a key the server itself holds; written to the Secret's `authorized_keys`.
    pub server_authorized_keys: Vec<String>,
}

/// The agent's `authorized_keys`: the session's key, then the server's.
fn authorized_keys(record: &SessionRecord, pod: &PodSettings) -> String {
    std::iter::once(record.authorized_key.as_str())
        .chain(pod.server_authorized_keys.iter().map(String::as_str))
        .fold(String::new(), |mut all, key| {
            all.push_str(key.trim_end());
            all.push('\n');
            all
        })
}

/// `pico-<uuid>`: the name of the Sandbox, its pod and its Secret.
pub fn object_name(id: Uuid) -> String {
    format!("pico-{id}")
}

/// A label-safe hash of the owner (SHA-256, first 32 hex digits), so a user's sessions can
/// be selected without putting the user's name in a label.
pub fn owner_hash(owner: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, owner.as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn rfc3339(t: OffsetDateTime) -> String {
    pico_wire::timestamp::format(t)
}

/// Kubernetes times have whole seconds; round up so the cluster never ends a session early.
pub fn shutdown_time(expires_at: OffsetDateTime) -> String {
    let whole = expires_at.replace_nanosecond(0).unwrap_or(expires_at);
    let up = if whole < expires_at {
        whole + time::Duration::SECOND
    } else {
        whole
    };
    up.format(&Rfc3339).unwrap_or_default()
}

fn status_name(status: SessionStatus) -> &'static str {
    crate::service::status_name(status)
}

fn idle_action_name(action: IdleAction) -> &'static str {
    match action {
        IdleAction::Delete => "delete",
        IdleAction::Pause => "pause",
    }
}

fn labels(record: &SessionRecord) -> Value {
    json!({
        MANAGED_BY: MANAGER,
        SESSION_LABEL: record.id.to_string(),
        OWNER_HASH_LABEL: owner_hash(&record.owner),
    })
}

/// The annotations that hold the part of a record a patch may change.
pub fn mutable_annotations(record: &SessionRecord) -> Value {
    json!({
        A_EXPIRES: rfc3339(record.expires_at),
        A_ACTIVITY: rfc3339(record.last_activity_at),
        A_TTL: record.ttl.to_string(),
        A_STATUS: status_name(record.status),
        // `null` removes the annotation in a merge patch.
        A_PAUSED: record.paused_at.map(rfc3339),
    })
}

fn annotations(record: &SessionRecord) -> Value {
    let mut all = json!({
        A_OWNER: record.owner,
        A_METADATA: Value::Object(record.metadata.clone()).to_string(),
        A_CREATED: rfc3339(record.created_at),
        A_IDLE: record.idle_timeout.to_string(),
        A_IDLE_ACTION: idle_action_name(record.idle_action),
        A_USERNAME: record.username,
        A_HOST_KEY: record.host_public_key,
        A_AUTHORIZED: record.authorized_key,
    });
    if let Some(image) = &record.image {
        all[A_IMAGE] = json!(image);
    }
    if let (Some(all), Value::Object(more)) = (all.as_object_mut(), mutable_annotations(record)) {
        // A create has nothing to remove: no `null`s in a new object's annotations.
        all.extend(more.into_iter().filter(|(_, v)| !v.is_null()));
    }
    all
}

/// The merge patch for a changed record: annotations and `spec.shutdownTime`.
pub fn record_patch(record: &SessionRecord) -> Value {
    let mut notes = mutable_annotations(record);
    // `pending` of a Sandbox that exists is read from its `Ready=False` (a pod restarting),
    // never written back: the annotation keeps saying the create finished.
    if record.status == SessionStatus::Pending
        && let Some(map) = notes.as_object_mut()
    {
        map.remove(A_STATUS);
    }
    json!({
        "metadata": {"annotations": notes},
        "spec": {"shutdownTime": shutdown_time(record.expires_at)},
    })
}

/// The Sandbox of a session (`version` is `v1beta1` or `v1alpha1`).
pub fn sandbox(record: &SessionRecord, version: &str, pod: &PodSettings) -> Value {
    let name = object_name(record.id);
    let image = record.image.as_deref().unwrap_or(&pod.default_image);
    let listen = format!("0.0.0.0:{}", pod.ssh_port);
    // Any image's own home may not be writable by the sandbox uid: an emptyDir is.
    let home = format!("/home/{}", pod.ssh_username);
    let mut pod_spec = json!({
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "restartPolicy": "Always",
        "initContainers": [{
            "name": "install-agent",
            "image": pod.agent_image,
            "imagePullPolicy": pod.agent_pull_policy,
            "command": [AGENT_IN_IMAGE, "install", AGENT_DIR],
            "volumeMounts": [{"name": "pico-agent", "mountPath": AGENT_DIR}],
        }],
        "containers": [{
            "name": "sandbox",
            "image": image,
            "command": [
                format!("{AGENT_DIR}/pico-agent"), "serve",
                "--listen", listen,
                "--host-key", format!("{KEYS_DIR}/host_key"),
                "--authorized-keys", format!("{KEYS_DIR}/authorized_keys"),
                "--username", pod.ssh_username,
                "--home", home,
            ],
            "ports": [{"name": "ssh", "containerPort": pod.ssh_port, "protocol": "TCP"}],
            "readinessProbe": {"tcpSocket": {"port": pod.ssh_port}, "periodSeconds": 2},
            "volumeMounts": [
                {"name": "pico-agent", "mountPath": AGENT_DIR, "readOnly": true},
                {"name": "pico-keys", "mountPath": KEYS_DIR, "readOnly": true},
                {"name": "pico-home", "mountPath": home},
            ],
        }],
        "volumes": [
            {"name": "pico-agent", "emptyDir": {}},
            {"name": "pico-home", "emptyDir": {}},
            {"name": "pico-keys", "secret": {"secretName": name, "defaultMode": 0o400}},
        ],
    });
    if pod.agent_mode == AgentMode::Image {
        own_sshd(&mut pod_spec, record);
    }
    if let Some(class) = &pod.runtime_class {
        pod_spec["runtimeClassName"] = json!(class);
    }
    hardening::harden(&mut pod_spec, &pod.hardening);
    let mut spec = json!({
        "shutdownTime": shutdown_time(record.expires_at),
        "podTemplate": {
            "metadata": {"labels": {MANAGED_BY: MANAGER, SESSION_LABEL: record.id.to_string()}},
            "spec": pod_spec,
        },
    });
    // Both versions have it (v1alpha1 too): without it an expired Sandbox stays behind.
    spec["shutdownPolicy"] = json!("Delete");
    if let (Some(size), AgentMode::Inject) = (&pod.home_volume, pod.agent_mode) {
        home_on_claim(&mut spec, size);
    }
    json!({
        "apiVersion": format!("{GROUP}/{version}"),
        "kind": KIND,
        "metadata": {"name": name, "labels": labels(record), "annotations": annotations(record)},
        "spec": spec,
    })
}

/// The home directory on a claim of the Sandbox (`volumeClaimTemplates`): the controller
/// makes the PersistentVolumeClaim `pico-home-<sandbox>` and a pod volume of the same name
/// as the template, so the files outlive the pod (a pause scales it to zero).
fn home_on_claim(spec: &mut Value, size: &str) {
    if let Some(volumes) = spec["podTemplate"]["spec"]["volumes"].as_array_mut() {
        volumes.retain(|v| v["name"] != "pico-home");
    }
    spec["volumeClaimTemplates"] = json!([{
        "metadata": {"name": "pico-home"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        },
    }]);
}

/// `image` mode: the image's own command, the public key in the environment, no agent.
fn own_sshd(pod_spec: &mut Value, record: &SessionRecord) {
    if let Some(spec) = pod_spec.as_object_mut() {
        spec.remove("initContainers");
    }
    let container = &mut pod_spec["containers"][0];
    if let Some(c) = container.as_object_mut() {
        c.remove("command");
    }
    container["env"] = json!([
        {"name": "SSH_PUBLIC_KEY", "value": record.authorized_key},
        {"name": "SSH_USERNAME", "value": record.username},
    ]);
    container["volumeMounts"] =
        json!([{"name": "pico-keys", "mountPath": KEYS_DIR, "readOnly": true}]);
    if let Some(volumes) = pod_spec["volumes"].as_array_mut() {
        volumes.retain(|v| v["name"] != "pico-agent" && v["name"] != "pico-home");
    }
}

/// The Secret with the sandbox's host key and the session's authorized key, owned by the
/// Sandbox (`sandbox_uid`) so that deleting the Sandbox removes it.
pub fn secret(
    record: &SessionRecord,
    host_private_key: &str,
    version: &str,
    sandbox_uid: &str,
    pod: &PodSettings,
) -> Value {
    let name = object_name(record.id);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "labels": labels(record),
            "ownerReferences": [{
                "apiVersion": format!("{GROUP}/{version}"),
                "kind": KIND,
                "name": name,
                "uid": sandbox_uid,
            }],
        },
        "stringData": {
            "host_key": host_private_key,
            "authorized_keys": authorized_keys(record, pod),
        },
    })
}

fn time_of(notes: &Map<String, Value>, key: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(notes.get(key)?.as_str()?, &Rfc3339).ok()
}

fn number(notes: &Map<String, Value>, key: &str) -> Option<u64> {
    notes.get(key)?.as_str()?.parse().ok()
}

fn text(notes: &Map<String, Value>, key: &str) -> Option<String> {
    Some(notes.get(key)?.as_str()?.to_owned())
}

/// Whether pico finished creating this Sandbox's session (it wrote `running` once).
pub fn was_running(sandbox: &Value) -> bool {
    sandbox["metadata"]["annotations"][A_STATUS] == "running"
}

/// The session a Sandbox stands for, or `None` when it is not one of ours or is damaged.
pub fn record_from(sandbox: &Value) -> Option<SessionRecord> {
    let meta = &sandbox["metadata"];
    let id: Uuid = meta["labels"][SESSION_LABEL].as_str()?.parse().ok()?;
    let notes = meta["annotations"].as_object()?;
    let status = if !meta["deletionTimestamp"].is_null() {
        SessionStatus::Terminating
    } else {
        match notes.get(A_STATUS).and_then(Value::as_str) {
            Some("running") => SessionStatus::Running,
            Some("paused") => SessionStatus::Paused,
            Some("failed") => SessionStatus::Failed,
            Some("terminating") => SessionStatus::Terminating,
            _ => SessionStatus::Pending,
        }
    };
    // The controller's word that the pod is gone for good (evicted, failed, refused) beats
    // the status pico wrote: the session can no longer run. A running session whose pod is
    // being recreated (`Ready=False` for another reason) is pending until it is back.
    let status = match status {
        SessionStatus::Running | SessionStatus::Pending | SessionStatus::Paused
            if super::ready::sandbox_failure(sandbox).is_some() =>
        {
            SessionStatus::Failed
        }
        SessionStatus::Running
            if condition(sandbox, "Ready").is_some_and(|c| c.status == "False") =>
        {
            SessionStatus::Pending
        }
        other => other,
    };
    let metadata = match serde_json::from_str(&text(notes, A_METADATA)?) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    Some(SessionRecord {
        id,
        owner: text(notes, A_OWNER)?,
        status,
        created_at: time_of(notes, A_CREATED)?,
        expires_at: time_of(notes, A_EXPIRES)?,
        last_activity_at: time_of(notes, A_ACTIVITY)?,
        metadata,
        image: text(notes, A_IMAGE),
        ttl: number(notes, A_TTL)?,
        idle_timeout: number(notes, A_IDLE).unwrap_or(0),
        username: text(notes, A_USERNAME)?,
        host_public_key: text(notes, A_HOST_KEY)?,
        authorized_key: text(notes, A_AUTHORIZED)?,
        idle_action: match notes.get(A_IDLE_ACTION).and_then(Value::as_str) {
            Some("pause") => IdleAction::Pause,
            _ => IdleAction::Delete,
        },
        paused_at: time_of(notes, A_PAUSED),
    })
}

/// The first pod IP the Sandbox reports.
pub fn pod_ip(sandbox: &Value) -> Option<String> {
    let ips = sandbox["status"]["podIPs"].as_array()?;
    let first = ips.first()?;
    // The agent-sandbox API lists strings; a PodIP-like object is accepted too.
    first
        .as_str()
        .or_else(|| first["ip"].as_str())
        .map(str::to_owned)
}

/// One of the Sandbox's status conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// The Sandbox's condition of type `kind`.
pub fn condition(sandbox: &Value, kind: &str) -> Option<Condition> {
    let found = sandbox["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?;
    let text = |k: &str| found[k].as_str().unwrap_or_default().to_owned();
    Some(Condition {
        status: found["status"].as_str()?.to_owned(),
        reason: text("reason"),
        message: text("message"),
    })
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
