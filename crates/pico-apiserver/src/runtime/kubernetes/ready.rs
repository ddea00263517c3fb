//! Waiting for a new Sandbox by watch: ready when its `Ready` condition is true and it has a
//! pod IP; failed at once when the controller reports it cannot be (`ReconcilerError`,
//! `PodFailed`) or its pod reports a problem that will not fix itself. Transient problems
//! (an image pull that failed once) are waited out and named if the create times out.

use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;
use kube::api::DynamicObject;
use kube::runtime::wait::await_condition;

use super::manifest;
use super::{FailureKind, RuntimeError};

/// Container waiting reasons that will not fix themselves. `ErrImagePull` and
/// `ImagePullBackOff` are not among them: a registry blip or a rate limit passes, and the
/// kubelet keeps trying until the create timeout.
const FATAL_REASONS: &[&str] = &[
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// `Ready=False` reasons of the agent-sandbox controller after which the Sandbox never
/// becomes ready: it could not make the pod (e.g. admission refused it), or the pod ended.
const FAILED_REASONS: &[&str] = &["ReconcilerError", "PodFailed", "PodSucceeded"];

fn as_value(sandbox: Option<&DynamicObject>) -> Option<serde_json::Value> {
    serde_json::to_value(sandbox?).ok()
}

fn is_ready(sandbox: &serde_json::Value) -> bool {
    manifest::condition(sandbox, "Ready").is_some_and(|c| c.status == "True")
        && manifest::pod_ip(sandbox).is_some()
}

/// The controller's word that this Sandbox will not become ready.
pub fn sandbox_failure(sandbox: &serde_json::Value) -> Option<String> {
    let ready = manifest::condition(sandbox, "Ready")?;
    (ready.status == "False" && FAILED_REASONS.contains(&ready.reason.as_str()))
        .then(|| format!("{}: {}", ready.reason, ready.message))
}

fn container_problem(status: &ContainerStatus, fatal: bool) -> Option<String> {
    let waiting = status.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    let known = FATAL_REASONS.contains(&reason);
    let transient = matches!(reason, "ErrImagePull" | "ImagePullBackOff");
    if (fatal && !known) || (!fatal && !transient) {
        return None;
    }
    let message = waiting.message.as_deref().unwrap_or_default();
    Some(format!("container {}: {reason}: {message}", status.name))
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let inits = status.and_then(|s| s.init_container_statuses.as_ref());
    let apps = status.and_then(|s| s.container_statuses.as_ref());
    inits
        .into_iter()
        .flatten()
        .chain(apps.into_iter().flatten())
}

/// Why the pod will never become ready, if it says so.
pub fn pod_problem(pod: &Pod) -> Option<String> {
    if let Some(problem) = statuses(pod).find_map(|s| container_problem(s, true)) {
        return Some(problem);
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        // An evicted pod says why on the pod; an exited container on its own state.
        let exited = statuses(pod).find_map(|s| {
            let done = s.state.as_ref()?.terminated.as_ref()?;
            if done.exit_code == 0 {
                return None;
            }
            let why = done.message.clone().or_else(|| done.reason.clone())?;
            Some(format!("container {}: {why}", s.name))
        });
        let why = status
            .message
            .clone()
            .or_else(|| status.reason.clone())
            .or(exited)
            .unwrap_or_else(|| "no reason given".into());
        return Some(format!("pod failed: {why}"));
    }
    None
}

/// A problem the kubelet retries (an image pull), for the timeout's message.
fn pod_trouble(pod: &Pod) -> Option<String> {
    statuses(pod).find_map(|s| container_problem(s, false))
}

/// Returns when the Sandbox is ready; the caller bounds the wait. `trouble` holds the last
/// transient problem the pod reported, for the message of a timeout.
pub async fn wait_ready(
    sandboxes: &Api<DynamicObject>,
    pods: &Api<Pod>,
    name: &str,
    trouble: &Mutex<Option<String>>,
) -> Result<(), RuntimeError> {
    let settled = await_condition(sandboxes.clone(), name, |s: Option<&DynamicObject>| {
        as_value(s).is_some_and(|v| is_ready(&v) || sandbox_failure(&v).is_some())
    });
    let broken = await_condition(pods.clone(), name, |p: Option<&Pod>| {
        if let Some(t) = p.and_then(pod_trouble) {
            *trouble.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        }
        p.and_then(pod_problem).is_some()
    });
    tokio::select! {
        outcome = settled => match outcome {
            Ok(Some(sandbox)) => match as_value(Some(&sandbox)).and_then(|v| sandbox_failure(&v)) {
                None => Ok(()),
                Some(why) => {
                    // The controller says only "Pod failed"; the pod says why.
                    let pod = super::api::call(pods.get_opt(name)).await.ok().flatten();
                    let detail = pod.as_ref().and_then(pod_problem).map(|p| format!(" ({p})"));
                    Err(RuntimeError::SandboxFailed {
                        kind: FailureKind::Create,
                        why: format!("Sandbox {name}: {why}{}", detail.unwrap_or_default()),
                    })
                }
            },
            Ok(None) => Err(RuntimeError::Create(format!("Sandbox {name} was deleted while starting"))),
            Err(e) => Err(RuntimeError::caused(FailureKind::Create, format!("watching Sandbox {name}"), e)),
        },
        outcome = broken => match outcome {
            Ok(Some(pod)) => Err(RuntimeError::SandboxFailed {
                kind: FailureKind::Create,
                why: pod_problem(&pod).unwrap_or_else(|| "sandbox pod failed".into()),
            }),
            Ok(None) => Err(RuntimeError::Create(format!("pod {name} vanished while starting"))),
            Err(e) => Err(RuntimeError::caused(FailureKind::Create, format!("watching pod {name}"), e)),
        },
    }
}
