//! Type-specific defaults on create and update, as kube-apiserver's strategies apply them.

use base64::Engine;
use serde_json::{Value, json};

use crate::resources::{self, ResourceDef};

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
            if obj["spec"]["restartPolicy"].is_null() {
                obj["spec"]["restartPolicy"] = json!("Always");
            }
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
