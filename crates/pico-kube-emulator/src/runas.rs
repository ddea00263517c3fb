//! What a kubelet and the container runtime enforce from a pod's security context when a
//! container starts: `runAsNonRoot` against the image's user (every emulated image runs as
//! root unless `runAsUser` says otherwise), ports below 1024 for a non-root process, and who
//! may read a Secret volume's files (owner root, group `fsGroup` with `0440` added when set).

use serde_json::Value;

fn field<'a>(pod: &'a Value, c: &'a Value, key: &str) -> &'a Value {
    let own = &c["securityContext"][key];
    if own.is_null() {
        &pod["spec"]["securityContext"][key]
    } else {
        own
    }
}

/// The uid the container runs as; `None` = the image's user, root for every emulated image.
fn uid(pod: &Value, c: &Value) -> Option<i64> {
    field(pod, c, "runAsUser").as_i64()
}

/// `CreateContainerConfigError` message when the kubelet refuses to start the container.
pub fn config_problem(pod: &Value, c: &Value) -> Option<String> {
    if field(pod, c, "runAsNonRoot") != &Value::Bool(true) {
        return None;
    }
    let (ns, name) = (
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or(""),
    );
    let cname = c["name"].as_str().unwrap_or("");
    match uid(pod, c) {
        None => Some(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{name}_{ns}\", container: {cname})"
        )),
        Some(0) => Some("container's runAsUser breaks non-root policy".to_string()),
        Some(_) => None,
    }
}

fn may_bind_low_ports(pod: &Value, c: &Value) -> bool {
    let adds = c["securityContext"]["capabilities"]["add"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "NET_BIND_SERVICE"));
    let sysctl = pod["spec"]["securityContext"]["sysctls"]
        .as_array()
        .is_some_and(|s| {
            s.iter().any(|x| {
                x["name"] == "net.ipv4.ip_unprivileged_port_start"
                    && x["value"].as_str().and_then(|v| v.parse::<u32>().ok()) == Some(0)
            })
        });
    adds || sysctl
}

/// Why the agent would exit at once when run as the pod says (a crash, then back-off).
pub fn run_problem(pod: &Value, c: &Value, port: u16) -> Option<String> {
    let uid = uid(pod, c).unwrap_or(0);
    if uid == 0 {
        return None;
    }
    if port < 1024 && !may_bind_low_ports(pod, c) {
        return Some(format!(
            "listen 0.0.0.0:{port}: Permission denied (uid {uid} may not bind ports below 1024)"
        ));
    }
    let gid = field(pod, c, "runAsGroup").as_i64().unwrap_or(0);
    let fs_group = pod["spec"]["securityContext"]["fsGroup"].as_i64();
    let supplemental: Vec<i64> = pod["spec"]["securityContext"]["supplementalGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .chain(fs_group)
        .collect();
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let Some(vol) = volumes.iter().find(|v| v["name"] == m["name"]) else {
            continue;
        };
        let secret = &vol["secret"];
        if secret.is_null() {
            continue;
        }
        let mut mode = secret["defaultMode"].as_u64().unwrap_or(0o644);
        let file_group = match fs_group {
            Some(g) => {
                mode |= 0o440;
                g
            }
            None => 0,
        };
        let in_group = gid == file_group || supplemental.contains(&file_group);
        let readable = mode & 0o004 != 0 || (in_group && mode & 0o040 != 0);
        if !readable {
            return Some(format!(
                "open {}: Permission denied (mode {mode:04o}, owner 0:{file_group}; uid {uid} gid {gid})",
                m["mountPath"].as_str().unwrap_or("")
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn non_root_needs_a_uid_a_high_port_and_fs_group() {
        let c = json!({"name": "c", "volumeMounts": [{"name": "k", "mountPath": "/etc/pico"}]});
        let pod = |sc: Value| {
            json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"securityContext": sc,
                "volumes": [{"name": "k", "secret": {"secretName": "s", "defaultMode": 0o400}}]}})
        };
        assert!(config_problem(&pod(json!({"runAsNonRoot": true})), &c).is_some());
        assert!(
            config_problem(&pod(json!({"runAsNonRoot": true, "runAsUser": 1000})), &c).is_none()
        );
        assert!(run_problem(&pod(json!({})), &c, 22).is_none());
        assert!(run_problem(&pod(json!({"runAsUser": 1000, "fsGroup": 1000})), &c, 22).is_some());
        assert!(run_problem(&pod(json!({"runAsUser": 1000})), &c, 2222).is_some());
        assert!(run_problem(&pod(json!({"runAsUser": 1000, "fsGroup": 1000})), &c, 2222).is_none());
    }
}
