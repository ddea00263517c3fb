//! Pod Security admission ("restricted" profile), as kube-apiserver enforces it per namespace
//! through the `pod-security.kubernetes.io/enforce` label, so that a pod spec a real cluster
//! would refuse is refused here too (on `POST pods` and when the controller makes a pod).

use serde_json::Value;

use crate::error::ApiError;
use crate::resources::NAMESPACES;
use crate::store::{ObjKey, Store};

pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// The Pod Security level enforced in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let names = [
            ("privileged", Self::Privileged),
            ("baseline", Self::Baseline),
            ("restricted", Self::Restricted),
        ];
        crate::config::parse_named(s, &names, "Pod Security level")
    }
}

/// The namespace's `enforce` label, else the cluster default (as an AdmissionConfiguration sets it).
pub fn level_of(store: &Store, ns: &str, default: Level) -> Level {
    store
        .get(&ObjKey::new(&NAMESPACES, "", ns))
        .and_then(|n| {
            n["metadata"]["labels"][ENFORCE_LABEL]
                .as_str()?
                .parse()
                .ok()
        })
        .unwrap_or(default)
}

/// Admits or refuses a pod as kube-apiserver's PodSecurity plugin does.
pub fn admit(pod: &Value, level: Level) -> Result<(), ApiError> {
    let problems = violations(&pod["spec"], level);
    if problems.is_empty() {
        return Ok(());
    }
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let label = match level {
        Level::Restricted => "restricted",
        _ => "baseline",
    };
    Err(ApiError::new(
        403,
        "Forbidden",
        format!(
            "pods \"{name}\" is forbidden: violates PodSecurity \"{label}:latest\": {}",
            problems.join(", ")
        ),
    ))
}

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

fn name(c: &Value) -> String {
    format!("\"{}\"", c["name"].as_str().unwrap_or(""))
}

/// Names the containers that fail `bad`, as the plugin's messages do.
fn which(all: &[&Value], bad: impl Fn(&Value) -> bool) -> Vec<String> {
    all.iter().filter(|c| bad(c)).map(|c| name(c)).collect()
}

fn noun(names: &[String]) -> String {
    let word = if names.len() == 1 {
        "container"
    } else {
        "containers"
    };
    format!("{word} {}", names.join(", "))
}

/// The checks of the Pod Security Standards the spec fails at `level` (empty = admitted).
pub fn violations(spec: &Value, level: Level) -> Vec<String> {
    if level == Level::Privileged {
        return Vec::new();
    }
    let all = containers(spec);
    let mut out = Vec::new();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[host] == Value::Bool(true) {
            out.push(format!("host namespaces ({host}=true)"));
        }
    }
    let privileged = which(&all, |c| {
        c["securityContext"]["privileged"] == Value::Bool(true)
    });
    if !privileged.is_empty() {
        out.push(format!(
            "privileged ({} must not set securityContext.privileged=true)",
            noun(&privileged)
        ));
    }
    let host_path: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v.get("hostPath").is_some())
        .map(name)
        .collect();
    if !host_path.is_empty() {
        out.push(format!(
            "hostPath volumes (volumes {})",
            host_path.join(", ")
        ));
    }
    let host_ports = which(&all, |c| {
        c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["hostPort"].as_u64().unwrap_or(0) != 0)
    });
    if !host_ports.is_empty() {
        out.push(format!("hostPort ({} uses hostPort)", noun(&host_ports)));
    }
    if level == Level::Restricted {
        restricted(spec, &all, &mut out);
    }
    out
}

fn restricted(spec: &Value, all: &[&Value], out: &mut Vec<String>) {
    const ALLOWED_VOLUMES: &[&str] = &[
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let bad_volumes: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| {
            v.as_object().is_some_and(|m| {
                !m.keys()
                    .any(|k| k != "name" && ALLOWED_VOLUMES.contains(&k.as_str()))
            })
        })
        .map(name)
        .collect();
    if !bad_volumes.is_empty() {
        out.push(format!(
            "restricted volume types (volumes {})",
            bad_volumes.join(", ")
        ));
    }
    let escalation = which(all, |c| {
        c["securityContext"]["allowPrivilegeEscalation"] != Value::Bool(false)
    });
    if !escalation.is_empty() {
        out.push(format!(
            "allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)",
            noun(&escalation)
        ));
    }
    let caps = which(all, |c| {
        let caps = &c["securityContext"]["capabilities"];
        let drops_all = caps["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        let adds_more = caps["add"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x != "NET_BIND_SERVICE"));
        !drops_all || adds_more
    });
    if !caps.is_empty() {
        out.push(format!(
            "unrestricted capabilities ({} must set securityContext.capabilities.drop=[\"ALL\"])",
            noun(&caps)
        ));
    }
    let pod_sc = &spec["securityContext"];
    let non_root = which(all, |c| {
        let own = &c["securityContext"]["runAsNonRoot"];
        own == &Value::Bool(false) || (own.is_null() && pod_sc["runAsNonRoot"] != Value::Bool(true))
    });
    if pod_sc["runAsNonRoot"] == Value::Bool(false) || !non_root.is_empty() {
        out.push(format!(
            "runAsNonRoot != true (pod or {} must set securityContext.runAsNonRoot=true)",
            noun(&non_root)
        ));
    }
    let root_uid = which(all, |c| c["securityContext"]["runAsUser"] == 0);
    if pod_sc["runAsUser"] == 0 || !root_uid.is_empty() {
        out.push("runAsUser=0 (pod and containers must not set runAsUser=0)".into());
    }
    let good_seccomp = |p: &Value| p["type"] == "RuntimeDefault" || p["type"] == "Localhost";
    let seccomp = which(all, |c| {
        let own = &c["securityContext"]["seccompProfile"];
        if own.is_null() {
            !good_seccomp(&pod_sc["seccompProfile"])
        } else {
            !good_seccomp(own)
        }
    });
    if !seccomp.is_empty() {
        out.push(format!(
            "seccompProfile (pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            noun(&seccomp)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn restricted_needs_every_hardening_field() {
        let bare = json!({"containers": [{"name": "c", "image": "x"}]});
        let v = violations(&bare, Level::Restricted);
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(violations(&bare, Level::Baseline).is_empty());
        let hard = json!({
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "x", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "v", "emptyDir": {}}],
        });
        assert!(violations(&hard, Level::Restricted).is_empty());
        let mut host = hard.clone();
        host["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}]);
        assert_eq!(violations(&host, Level::Restricted).len(), 2);
    }
}
