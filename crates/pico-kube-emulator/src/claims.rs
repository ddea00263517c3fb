//! PersistentVolumeClaims of Sandboxes (`volumeClaimTemplates`), simulated: the controller
//! names a claim `<template>-<sandbox>` and gives the pod a volume of the template's name
//! for it, as agent-sandbox does; the kubelet keeps each claim's data in a directory that
//! outlives the pod (a suspended Sandbox keeps its files) and goes with the Sandbox.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tempfile::TempDir;

/// Where claims keep their data; removed with the emulator.
#[derive(Debug, Clone)]
pub struct Claims(Arc<TempDir>);

impl Claims {
    pub fn new() -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("pico-kube-emu-claims-")
            .tempdir()?;
        Ok(Self(Arc::new(dir)))
    }

    /// The data directory of claim `name` in `ns`, made on first use.
    pub fn dir(&self, ns: &str, name: &str) -> std::io::Result<PathBuf> {
        let dir = self.0.path().join(ns).join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Drops the claims of a deleted Sandbox (the cluster's garbage collector does this to
    /// claims owned by it).
    pub fn forget_sandbox(&self, sandbox: &Value) {
        let ns = sandbox["metadata"]["namespace"].as_str().unwrap_or("");
        let name = sandbox["metadata"]["name"].as_str().unwrap_or("");
        for claim in claim_names(sandbox, name) {
            let _ = std::fs::remove_dir_all(self.0.path().join(ns).join(claim));
        }
    }
}

fn claim_names(sandbox: &Value, name: &str) -> Vec<String> {
    sandbox["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["metadata"]["name"].as_str())
        .map(|t| format!("{t}-{name}"))
        .collect()
}

/// Adds the claims' volumes to a pod spec, replacing volumes of the same names.
pub fn add_claim_volumes(pod_spec: &mut Value, sandbox: &Value, name: &str) {
    let templates: Vec<String> = sandbox["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    if templates.is_empty() {
        return;
    }
    if !pod_spec["volumes"].is_array() {
        pod_spec["volumes"] = json!([]);
    }
    if let Some(volumes) = pod_spec["volumes"].as_array_mut() {
        volumes.retain(|v| !templates.iter().any(|t| v["name"] == t.as_str()));
        for t in templates {
            volumes.push(json!({
                "name": t,
                "persistentVolumeClaim": {"claimName": format!("{t}-{name}")},
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_become_pod_volumes_and_outlive_pods() {
        let sandbox = json!({
            "metadata": {"name": "sb", "namespace": "ns"},
            "spec": {"volumeClaimTemplates": [{"metadata": {"name": "home"}, "spec": {}}]},
        });
        let mut spec = json!({"volumes": [{"name": "home", "emptyDir": {}}]});
        add_claim_volumes(&mut spec, &sandbox, "sb");
        assert_eq!(
            spec["volumes"],
            json!([{"name": "home", "persistentVolumeClaim": {"claimName": "home-sb"}}])
        );
        let claims = Claims::new().expect("claims");
        let dir = claims.dir("ns", "home-sb").expect("dir");
        std::fs::write(dir.join("f"), "kept").expect("write");
        assert_eq!(claims.dir("ns", "home-sb").expect("again"), dir);
        assert!(dir.join("f").is_file());
        claims.forget_sandbox(&sandbox);
        assert!(!dir.exists());
    }
}
