//! Type-specific defaults on create and update, as kube-apiserver's strategies apply them.

use base64::Engine;
use serde_json::{Value, json};

use crate::resources::{self, ResourceDef};

/// What kube-apiserver's defaulting and the ServiceAccount admission add to a new pod's spec.
fn pod_defaults(spec: &mut Value) {
    let defaults = [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("securityContext", json!({})),
        ("serviceAccountName", json!("default")),
        ("enableServiceLinks", json!(true)),
    ];
    for (key, value) in defaults {
        if spec[key].is_null() {
            spec[key] = value;
        }
    }
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec[list].as_array_mut() else {
            continue;
        };
        for c in containers {
            if c["imagePullPolicy"].is_null() {
                let image = c["image"].as_str().unwrap_or("");
                c["imagePullPolicy"] = json!(crate::images::default_pull_policy(image));
            }
            if c["terminationMessagePath"].is_null() {
                c["terminationMessagePath"] = json!("/dev/termination-log");
            }
            if c["terminationMessagePolicy"].is_null() {
                c["terminationMessagePolicy"] = json!("File");
            }
            for port in c["ports"].as_array_mut().into_iter().flatten() {
                if port["protocol"].is_null() {
                    port["protocol"] = json!("TCP");
                }
            }
        }
    }
}

/// Type-specific defaults on create and update, as kube-apiserver's strategies apply them.
pub fn normalize(def: &ResourceDef, obj: &mut Value, creating: bool) {
    if def.key == resources::SECRETS.key {
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
            for (k, v) in sd {
                let s = v.as_str().unwrap_or("").as_bytes().to_vec();
                obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
            }
        }
        if obj["type"].is_null() {
            obj["type"] = json!("Opaque");
        }
    }
    if !creating {
        return;
    }
    match def.key {
        "pods" => {
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            pod_defaults(&mut obj["spec"]);
        }
        "services" => {
            if obj["spec"]["type"].is_null() {
                obj["spec"]["type"] = json!("ClusterIP");
            }
            if obj["spec"]["clusterIP"].is_null() {
                let n: u16 = rand::random();
                obj["spec"]["clusterIP"] = json!(format!("10.96.{}.{}", n >> 8, (n & 0xff).max(1)));
            }
            obj["status"] = json!({"loadBalancer": {}});
        }
        "namespaces" => obj["status"] = json!({"phase": "Active"}),
        _ if def.has_status => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
}
