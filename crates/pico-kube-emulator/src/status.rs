//! Pod status documents as a kubelet reports them (phase, conditions, container states).

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::store::now_rfc3339;

/// The state every container of the pod is reported in.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    Waiting(&'static str, String),
    Running,
    Terminated(i32, &'static str, String),
    /// Exited 1 and waits to be restarted: `CrashLoopBackOff`.
    CrashLoop(String),
}

impl ContainerState {
    fn json(&self, started_at: &Value) -> Value {
        match self {
            Self::Waiting(reason, msg) => json!({"waiting": {"reason": reason, "message": msg}}),
            Self::Running => json!({"running": {"startedAt": started_at}}),
            Self::Terminated(code, reason, msg) => json!({"terminated": {
                "exitCode": code, "reason": reason, "message": msg, "startedAt": started_at, "finishedAt": now_rfc3339(),
            }}),
            Self::CrashLoop(msg) => {
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": msg}})
            }
        }
    }
}

fn cond(kind: &str, ok: bool, now: &str) -> Value {
    json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastTransitionTime": now})
}

/// A whole `PodStatus`; `ready` is the readiness of all containers.
pub fn pod_status(
    pod: &Value,
    phase: &str,
    ip: Option<Ipv4Addr>,
    ready: bool,
    state: &ContainerState,
) -> Value {
    pod_status_with_init(pod, phase, ip, ready, state, None)
}

/// As [`pod_status`], with init containers in `init` (default: completed) instead.
pub fn pod_status_with_init(
    pod: &Value,
    phase: &str,
    ip: Option<Ipv4Addr>,
    ready: bool,
    state: &ContainerState,
    init: Option<&ContainerState>,
) -> Value {
    let now = now_rfc3339();
    let started = pod["metadata"]["creationTimestamp"].clone();
    let running = *state == ContainerState::Running;
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let mut cs = json!({
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": ready && running,
                "started": running,
                "restartCount": 0,
                "state": state.json(&started),
                "lastState": {},
            });
            if running {
                cs["containerID"] =
                    json!(format!("emulator://{}", c["name"].as_str().unwrap_or("")));
            }
            if let ContainerState::CrashLoop(_) = state {
                cs["restartCount"] = json!(1);
                cs["lastState"] =
                    ContainerState::Terminated(1, "Error", "emulated crash".into()).json(&started);
            }
            cs
        })
        .collect();
    let inits: Vec<Value> = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| match init {
            None => json!({
                "name": c["name"], "image": c["image"], "imageID": "", "ready": true, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started}},
            }),
            Some(st) => json!({
                "name": c["name"], "image": c["image"], "imageID": "", "ready": false,
                "restartCount": if matches!(st, ContainerState::CrashLoop(_)) { 1 } else { 0 },
                "state": st.json(&started),
            }),
        })
        .collect();
    let ok = ready && running;
    let mut s = json!({
        "phase": phase,
        "conditions": [
            cond("PodScheduled", true, &now),
            cond("Initialized", init.is_none(), &now),
            cond("ContainersReady", ok, &now),
            cond("Ready", ok, &now),
        ],
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "startTime": started,
        "containerStatuses": containers,
        "qosClass": "BestEffort",
    });
    if !inits.is_empty() {
        s["initContainerStatuses"] = json!(inits);
    }
    if let Some(ip) = ip {
        s["podIP"] = json!(ip.to_string());
        s["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
    s
}
