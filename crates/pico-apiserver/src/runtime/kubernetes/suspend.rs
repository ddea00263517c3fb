//! Pause and resume on Kubernetes: the Sandbox scaled to zero the way its version says
//! (`v1beta1`: `spec.operatingMode: Suspended`; `v1alpha1`: `spec.replicas: 0`). The
//! controller ends the pod and keeps the Sandbox and its volume claims, so the home directory
//! (on a `volumeClaimTemplates` claim) survives; processes and memory do not. Resume scales
//! it back and waits until the new pod is ready.

use std::sync::Mutex;

use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use uuid::Uuid;

use super::api::call;
use super::manifest::{self, object_name};
use super::{API_TIMEOUT, KubernetesRuntime, ready};
use crate::runtime::{FailureKind, RuntimeError};

/// The merge patch that scales a Sandbox of `version` to zero (`running` false) or back.
pub fn scale_patch(version: &str, running: bool) -> Value {
    if version == "v1alpha1" {
        json!({"spec": {"replicas": i32::from(running)}})
    } else {
        let mode = if running { "Running" } else { "Suspended" };
        json!({"spec": {"operatingMode": mode}})
    }
}

fn ready_now(sandbox: Option<&DynamicObject>) -> bool {
    let Some(value) = sandbox.and_then(|s| serde_json::to_value(s).ok()) else {
        return false;
    };
    manifest::condition(&value, "Ready").is_some_and(|c| c.status == "True")
        && manifest::pod_ip(&value).is_some()
}

impl KubernetesRuntime {
    async fn scale(&self, id: Uuid, running: bool) -> Result<(), RuntimeError> {
        let name = object_name(id);
        let kind = if running {
            FailureKind::Unreachable
        } else {
            FailureKind::Unavailable
        };
        call(self.sandboxes.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(scale_patch(&self.version, running)),
        ))
        .await
        .map_err(|e| RuntimeError::caused(kind, format!("scaling Sandbox {name}"), e))?;
        Ok(())
    }

    pub(super) async fn suspend(&self, id: Uuid) -> Result<(), RuntimeError> {
        self.scale(id, false).await?;
        // Until the controller has seen it, the Sandbox still says Ready with the old pod's
        // address: a resume right after must not take that for the new pod.
        let name = object_name(id);
        let not_ready = kube::runtime::wait::await_condition(
            self.sandboxes.clone(),
            &name,
            |o: Option<&DynamicObject>| !ready_now(o),
        );
        if tokio::time::timeout(API_TIMEOUT * 3, not_ready)
            .await
            .is_err()
        {
            tracing::warn!(session_id = %id, "the controller has not stopped the pod yet");
        }
        self.await_cache(id, |o| !ready_now(o)).await;
        Ok(())
    }

    pub(super) async fn unsuspend(&self, id: Uuid) -> Result<(), RuntimeError> {
        if ready_now(self.cached(id).as_deref()) {
            return Ok(());
        }
        self.scale(id, true).await?;
        let name = object_name(id);
        let trouble = Mutex::new(None);
        let wait = ready::wait_ready(&self.sandboxes, &self.pods, &name, &trouble);
        match tokio::time::timeout(self.create_timeout, wait).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(RuntimeError::Timeout(format!(
                    "Sandbox {name} was not ready again within {}s",
                    self.create_timeout.as_secs()
                )));
            }
        }
        // `connect` reads the pod's address from the cache.
        self.await_cache(id, ready_now).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::manifest::{AgentMode, PodSettings, record_from, record_patch, sandbox};
    use super::*;
    use crate::store::SessionRecord;

    fn paused_record() -> SessionRecord {
        serde_json::from_value(json!({
            "id": Uuid::new_v4(), "owner": "a", "status": "paused",
            "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T01:00:00Z",
            "last_activity_at": "2026-01-01T00:00:00Z", "metadata": {}, "image": null,
            "ttl": 3600, "idle_timeout": 60, "username": "sandbox",
            "host_public_key": "k", "authorized_key": "k",
            "idle_action": "pause", "paused_at": "2026-01-01T00:10:00Z",
        }))
        .expect("record")
    }

    fn pod(home_volume: Option<&str>) -> PodSettings {
        PodSettings {
            home_volume: home_volume.map(str::to_owned),
            agent_mode: AgentMode::Inject,
            agent_image: "pico:1".into(),
            default_image: "debian:stable-slim".into(),
            ssh_port: 2222,
            ssh_username: "sandbox".into(),
            runtime_class: None,
            agent_pull_policy: "IfNotPresent".into(),
            hardening: Default::default(),
            server_authorized_keys: Vec::new(),
        }
    }

    #[test]
    fn a_paused_record_round_trips_and_resuming_removes_paused_at() {
        let mut record = paused_record();
        let s = sandbox(&record, "v1beta1", &pod(None));
        assert_eq!(record_from(&s), Some(record.clone()));
        record.status = pico_wire::SessionStatus::Running;
        record.paused_at = None;
        let patch = record_patch(&record);
        let notes = &patch["metadata"]["annotations"];
        assert_eq!(notes["pico.dev/status"], "running");
        // `null` in a merge patch deletes the annotation.
        assert!(notes["pico.dev/paused-at"].is_null());
        assert!(
            notes
                .as_object()
                .is_some_and(|n| n.contains_key("pico.dev/paused-at"))
        );
    }

    #[test]
    fn the_home_lives_on_a_claim_when_asked() {
        let s = sandbox(&paused_record(), "v1beta1", &pod(Some("2Gi")));
        assert_eq!(
            s["spec"]["volumeClaimTemplates"][0],
            json!({"metadata": {"name": "pico-home"}, "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "2Gi"}}}})
        );
        let volumes = s["spec"]["podTemplate"]["spec"]["volumes"]
            .as_array()
            .expect("volumes");
        assert!(
            volumes.iter().all(|v| v["name"] != "pico-home"),
            "{volumes:?}"
        );
        let without = sandbox(&paused_record(), "v1beta1", &pod(None));
        assert!(without["spec"]["volumeClaimTemplates"].is_null());
    }

    #[test]
    fn each_version_scales_its_own_way() {
        assert_eq!(
            scale_patch("v1beta1", false),
            json!({"spec": {"operatingMode": "Suspended"}})
        );
        assert_eq!(
            scale_patch("v1beta1", true),
            json!({"spec": {"operatingMode": "Running"}})
        );
        assert_eq!(
            scale_patch("v1alpha1", false),
            json!({"spec": {"replicas": 0}})
        );
        assert_eq!(
            scale_patch("v1alpha1", true),
            json!({"spec": {"replicas": 1}})
        );
    }
}
