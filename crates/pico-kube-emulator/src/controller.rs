//! The simulated agent-sandbox controller: a Pod per Sandbox, status from it, shutdownTime.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::pod_security::{self, Level};
use crate::resources::{PODS, SANDBOXES, SERVICES};
use crate::selector::Filter;
use crate::store::{DeleteOpts, ObjKey, Store, now_rfc3339};

pub const NAME_HASH_LABEL: &str = "agents.x-k8s.io/sandbox-name-hash";
const NODE_NAME: &str = "pico-kube-emulator";

/// What every reconcile needs besides the store.
struct Cx {
    /// The Sandbox version the pods' owner references name.
    ov: String,
    /// For namespaces without a Pod Security label.
    pod_security: Level,
}

/// FNV-1a 32-bit in hex, as the agent-sandbox controller labels its pods.
pub fn name_hash(name: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Reconciles on every Sandbox or Pod event, and on a short tick for `shutdownTime`.
/// `owner_api_version` is the Sandbox version the pods' owner references name.
pub async fn run(
    store: Arc<Store>,
    shutdown: CancellationToken,
    owner_api_version: String,
    pod_security: Level,
) {
    let cx = &Cx {
        ov: owner_api_version,
        pod_security,
    };
    let mut rx = store.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => reconcile_all(&store, cx),
            r = rx.recv() => match r {
                Ok(ev) if ev.key.res == SANDBOXES.key => reconcile(&store, &ev.key.ns, &ev.key.name, cx),
                Ok(ev) if ev.key.res == PODS.key => {
                    if let Some(owner) = sandbox_owner(&ev.object) {
                        reconcile(&store, &ev.key.ns, &owner, cx);
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => reconcile_all(&store, cx),
                Err(RecvError::Closed) => return,
            },
        }
    }
}

fn sandbox_owner(pod: &Value) -> Option<String> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == "Sandbox" && r["controller"] == json!(true))
        .and_then(|r| r["name"].as_str().map(str::to_string))
}

fn reconcile_all(store: &Store, cx: &Cx) {
    let (all, _) = store.list(SANDBOXES.key, None, &Filter::default());
    for sb in all {
        let (ns, name) = (
            sb["metadata"]["namespace"].as_str().unwrap_or(""),
            sb["metadata"]["name"].as_str().unwrap_or(""),
        );
        reconcile(store, ns, name, cx);
    }
}

fn expired(spec: &Value) -> bool {
    let fmt = time::format_description::well_known::Rfc3339;
    spec["shutdownTime"]
        .as_str()
        .and_then(|s| time::OffsetDateTime::parse(s, &fmt).ok())
        .is_some_and(|t| t <= time::OffsetDateTime::now_utc())
}

fn delete_if_present(
    store: &Store,
    def: &'static crate::resources::ResourceDef,
    ns: &str,
    name: &str,
) {
    let key = ObjKey::new(def, ns, name);
    if store.get(&key).is_some() {
        // Gone already is as good as deleted.
        let _ = store.delete(def, &key, &DeleteOpts::default(), false);
    }
}

fn owner_ref(sb: &Value, ov: &str) -> Value {
    json!([{
        "apiVersion": ov,
        "kind": "Sandbox",
        "name": sb["metadata"]["name"],
        "uid": sb["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

fn pod_for(sb: &Value, name: &str, hash: &str, ov: &str) -> Value {
    let tmpl = &sb["spec"]["podTemplate"];
    let mut labels = tmpl["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[NAME_HASH_LABEL] = json!(hash);
    let mut spec = tmpl["spec"].clone();
    if spec["hostname"].is_null() {
        spec["hostname"] = json!(name);
    }
    spec["nodeName"] = json!(NODE_NAME);
    crate::claims::add_claim_volumes(&mut spec, sb, name);
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "ownerReferences": owner_ref(sb, ov)},
        "spec": spec,
    });
    if tmpl["metadata"]["annotations"].is_object() {
        pod["metadata"]["annotations"] = tmpl["metadata"]["annotations"].clone();
    }
    crate::defaults::normalize(&PODS, &mut pod, true);
    pod
}

fn ensure_service(store: &Store, sb: &Value, ns: &str, name: &str, hash: &str, ov: &str) {
    if store.get(&ObjKey::new(&SERVICES, ns, name)).is_some() {
        return;
    }
    let mut svc = json!({
        "metadata": {"name": name, "labels": {NAME_HASH_LABEL: hash}, "ownerReferences": owner_ref(sb, ov)},
        "spec": {"clusterIP": "None", "selector": {NAME_HASH_LABEL: hash}},
    });
    crate::defaults::normalize(&SERVICES, &mut svc, true);
    let _ = store.create(&SERVICES, ns, svc, false);
}

/// Sets a condition, keeping `lastTransitionTime` unless its status changes.
fn condition(
    old: &Value,
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: &Value,
) -> Value {
    let status = if status { "True" } else { "False" };
    let prev = old["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    let since = match prev {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(now_rfc3339()),
    };
    json!({"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": since, "observedGeneration": generation})
}

/// Why a pod is not ready, from its container statuses.
fn pod_problem(pod: &Value) -> String {
    let inits = pod["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let statuses = pod["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // A failing init container is the cause; the app containers just wait for it.
    for cs in inits.iter().chain(&statuses) {
        for state in ["waiting", "terminated"] {
            let s = &cs["state"][state];
            // A finished init container is no problem.
            if let Some(reason) = s["reason"].as_str().filter(|r| *r != "Completed") {
                let name = cs["name"].as_str().unwrap_or("");
                return match s["message"].as_str().filter(|m| !m.is_empty()) {
                    Some(m) => format!("container {name}: {reason}: {m}"),
                    None => format!("container {name}: {reason}"),
                };
            }
        }
    }
    format!(
        "Pod is {}",
        pod["status"]["phase"].as_str().unwrap_or("Pending")
    )
}

fn reconcile(store: &Store, ns: &str, name: &str, cx: &Cx) {
    let ov = cx.ov.as_str();
    let key = ObjKey::new(&SANDBOXES, ns, name);
    let Some(sb) = store.get(&key) else { return };
    let spec = &sb["spec"];
    let hash = name_hash(name);
    let generation = sb["metadata"]["generation"].clone();
    let old_status = sb["status"].clone();
    let mut status = json!({"selector": format!("{NAME_HASH_LABEL}={hash}"), "replicas": 0});
    let mut conditions = Vec::new();
    if expired(spec) {
        if spec["shutdownPolicy"] == "Delete" {
            let _ = store.delete(&SANDBOXES, &key, &DeleteOpts::default(), false);
            return;
        }
        delete_if_present(store, &PODS, ns, name);
        delete_if_present(store, &SERVICES, ns, name);
        conditions.push(condition(
            &old_status,
            "Ready",
            false,
            "SandboxExpired",
            "Sandbox has expired",
            &generation,
        ));
    } else if spec["replicas"] == json!(0) || spec["operatingMode"] == "Suspended" {
        delete_if_present(store, &PODS, ns, name);
        conditions.push(condition(
            &old_status,
            "Ready",
            false,
            "SandboxSuspended",
            "Sandbox is suspended",
            &generation,
        ));
        conditions.push(condition(
            &old_status,
            "Suspended",
            true,
            "PodTerminated",
            "Pod is terminated",
            &generation,
        ));
    } else {
        let pod_key = ObjKey::new(&PODS, ns, name);
        let mut refused = None;
        let pod = match store.get(&pod_key) {
            Some(p) => Some(p),
            None => {
                // The controller's create goes through admission like any other client's.
                let new_pod = pod_for(&sb, name, &hash, ov);
                let level = pod_security::level_of(store, ns, cx.pod_security);
                match pod_security::admit(&new_pod, level) {
                    Ok(()) => {
                        let _ = store.create(&PODS, ns, new_pod, false);
                    }
                    Err(e) => refused = Some(e.message),
                }
                store.get(&pod_key)
            }
        };
        if spec["service"] == json!(true) {
            ensure_service(store, &sb, ns, name, &hash, ov);
            status["service"] = json!(name);
            status["serviceFQDN"] = json!(format!("{name}.{ns}.svc.cluster.local"));
        }
        let pod = pod.map(|p| (*p).clone()).unwrap_or(Value::Null);
        let ready = pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        if let Some(why) = refused {
            // As upstream's computeReadyCondition reports an error from the reconcile.
            conditions.push(condition(
                &old_status,
                "Ready",
                false,
                "ReconcilerError",
                &format!("Error seen: {why}"),
                &generation,
            ));
        } else if phase == "Failed" || phase == "Succeeded" {
            let (reason, message) = if phase == "Failed" {
                ("PodFailed", "Pod failed")
            } else {
                ("PodSucceeded", "Pod completed successfully")
            };
            conditions.push(condition(
                &old_status,
                "Ready",
                false,
                reason,
                message,
                &generation,
            ));
        } else if ready {
            conditions.push(condition(
                &old_status,
                "Ready",
                true,
                "DependenciesReady",
                "Pod is Ready",
                &generation,
            ));
        } else {
            conditions.push(condition(
                &old_status,
                "Ready",
                false,
                "DependenciesNotReady",
                &pod_problem(&pod),
                &generation,
            ));
        }
        if phase == "Failed" || phase == "Succeeded" {
            let reason = if phase == "Failed" {
                "PodFailed"
            } else {
                "PodSucceeded"
            };
            conditions.push(condition(
                &old_status,
                "Finished",
                true,
                reason,
                &pod_problem(&pod),
                &generation,
            ));
        }
        let ips: Vec<Value> = pod["status"]["podIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["ip"].clone())
            .collect();
        if !ips.is_empty() {
            status["podIPs"] = json!(ips);
        }
        status["nodeName"] = json!(NODE_NAME);
        status["replicas"] = json!(1);
    }
    status["conditions"] = json!(conditions);
    if status != old_status {
        let _ = store.update(&SANDBOXES, &key, false, |old| {
            let mut n = old.clone();
            n["status"] = status;
            Ok(n)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_hash_matches_go_fnv32a() {
        assert_eq!(name_hash(""), "811c9dc5");
        assert_eq!(name_hash("a"), "e40c292c");
    }
}
