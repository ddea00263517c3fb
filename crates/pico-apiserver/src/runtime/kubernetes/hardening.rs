//! What makes a sandbox pod fit to run untrusted code and pass the Pod Security "restricted"
//! profile: a fixed non-root uid (with `fsGroup`, so the key Secret and the volumes are
//! readable and writable by it), seccomp `RuntimeDefault`, no capabilities, no privilege
//! escalation, resource requests and limits, and a home directory the uid can write.

use serde_json::{Value, json};

/// The sandbox user's uid and gid, and what one sandbox may use (from the server's flags).
#[derive(Debug, Clone)]
pub struct Hardening {
    /// uid and gid of every process in the pod; 0 = the image's own `USER` (then the pod
    /// cannot pass "restricted": for images that must start as root).
    pub uid: u32,
    /// Memory request and limit in bytes (0 = none).
    pub memory: u64,
    /// CPU limit in Kubernetes notation (`2`, `500m`); `None` = none.
    pub cpu: Option<String>,
}

impl Default for Hardening {
    fn default() -> Self {
        Self {
            uid: 1000,
            memory: 0,
            cpu: None,
        }
    }
}

/// What a sandbox asks the scheduler for; the limits (`--session-cpus`, `--session-memory`)
/// cap bursts. Requests at the limits would let a small node hold only a few sandboxes.
const CPU_REQUEST: &str = "100m";
const MEMORY_REQUEST: u64 = 256 << 20;

fn container_context() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
    })
}

fn resources(h: &Hardening) -> Value {
    let mut requests = json!({"cpu": CPU_REQUEST});
    let mut limits = json!({});
    if h.memory > 0 {
        requests["memory"] = json!(h.memory.min(MEMORY_REQUEST).to_string());
        limits["memory"] = json!(h.memory.to_string());
    }
    if let Some(cpu) = &h.cpu {
        limits["cpu"] = json!(cpu);
    }
    json!({"requests": requests, "limits": limits})
}

/// Hardens a pod spec built by `manifest::sandbox` in place.
pub fn harden(pod_spec: &mut Value, h: &Hardening) {
    let mut pod_context = json!({"seccompProfile": {"type": "RuntimeDefault"}});
    if h.uid != 0 {
        pod_context["runAsNonRoot"] = json!(true);
        pod_context["runAsUser"] = json!(h.uid);
        pod_context["runAsGroup"] = json!(h.uid);
        // Secret files become group-readable by it, emptyDirs group-writable.
        pod_context["fsGroup"] = json!(h.uid);
    }
    pod_spec["securityContext"] = pod_context;
    for list in ["initContainers", "containers"] {
        // `get_mut`: indexing would add a null `initContainers` in image mode.
        let containers = pod_spec.get_mut(list).and_then(Value::as_array_mut);
        for c in containers.into_iter().flatten() {
            c["securityContext"] = container_context();
            c["resources"] = resources(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_is_locked_down_and_limited() {
        let mut spec = json!({"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]});
        let h = Hardening {
            uid: 1000,
            memory: 512 << 20,
            cpu: Some("2".into()),
        };
        harden(&mut spec, &h);
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(spec["securityContext"]["fsGroup"], 1000);
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        for c in [&spec["initContainers"][0], &spec["containers"][0]] {
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
            assert_eq!(c["resources"]["limits"]["memory"], "536870912");
            assert_eq!(c["resources"]["limits"]["cpu"], "2");
        }
        assert_eq!(
            spec["containers"][0]["resources"]["requests"]["memory"],
            (256u64 << 20).to_string()
        );
        let mut own = json!({"containers": [{"name": "c"}]});
        harden(&mut own, &Hardening { uid: 0, ..h });
        assert!(own["securityContext"]["runAsUser"].is_null());
        assert!(own.get("initContainers").is_none());
    }
}
