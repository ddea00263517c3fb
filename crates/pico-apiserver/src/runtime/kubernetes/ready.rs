//! Waiting for a new Sandbox by watch: ready when its `Ready` condition is true and it has a
//! pod IP; failed as soon as its pod reports an image-pull error, a crash loop or failure.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;
use kube::api::DynamicObject;
use kube::runtime::wait::await_condition;

use super::manifest;
use super::{FailureKind, RuntimeError};

/// Container waiting reasons that will not fix themselves.
const FATAL_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

fn is_ready(sandbox: Option<&DynamicObject>) -> bool {
    let Some(value) = sandbox.and_then(|s| serde_json::to_value(s).ok()) else {
        return false;
    };
    manifest::condition(&value, "Ready").is_some_and(|(status, _)| status == "True")
        && manifest::pod_ip(&value).is_some()
}

fn container_problem(status: &ContainerStatus) -> Option<String> {
    let state = status.state.as_ref()?;
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.as_deref()?;
        if FATAL_REASONS.contains(&reason) {
            let message = waiting.message.as_deref().unwrap_or_default();
            return Some(format!("container {}: {reason}: {message}", status.name));
        }
    }
    None
}

/// Why the pod will never become ready, if it says so.
pub fn pod_problem(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let containers = status.init_container_statuses.iter().flatten();
    if let Some(problem) = containers
        .chain(status.container_statuses.iter().flatten())
        .find_map(container_problem)
    {
        return Some(problem);
    }
    if status.phase.as_deref() == Some("Failed") {
        let why = status
            .message
            .clone()
            .or_else(|| status.reason.clone())
            .unwrap_or_else(|| "no reason given".into());
        return Some(format!("pod failed: {why}"));
    }
    None
}

/// Returns when the Sandbox is ready; the caller bounds the wait.
pub async fn wait_ready(
    sandboxes: &Api<DynamicObject>,
    pods: &Api<Pod>,
    name: &str,
) -> Result<(), RuntimeError> {
    let ready = await_condition(sandboxes.clone(), name, is_ready);
    let broken = await_condition(pods.clone(), name, |p: Option<&Pod>| {
        p.and_then(pod_problem).is_some()
    });
    tokio::select! {
        outcome = ready => match outcome {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(RuntimeError::Create(format!("Sandbox {name} was deleted while starting"))),
            Err(e) => Err(RuntimeError::caused(FailureKind::Create, format!("watching Sandbox {name}"), e)),
        },
        outcome = broken => match outcome {
            Ok(Some(pod)) => Err(RuntimeError::SandboxFailed(
                pod_problem(&pod).unwrap_or_else(|| "sandbox pod failed".into()),
            )),
            Ok(None) => Err(RuntimeError::Create(format!("pod {name} vanished while starting"))),
            Err(e) => Err(RuntimeError::caused(FailureKind::Create, format!("watching pod {name}"), e)),
        },
    }
}
