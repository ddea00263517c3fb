//! kube-rs against the emulator with dynamic Sandbox objects: the simulated controller and kubelet.

mod common;

use common::{condition, is_ready, sandbox, sandboxes, wait_for, wait_gone};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use pico_kube_emulator::{FailureKind, NAME_HASH_LABEL, name_hash};
use serde_json::json;

fn reason(obj: &DynamicObject, kind: &str) -> Option<String> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["reason"]
        .as_str()
        .map(str::to_string)
}

fn in_secs(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

#[tokio::test]
async fn sandbox_gets_owned_pod_and_ready_status_in_both_versions() {
    let (emu, client) = common::start().await;
    let beta = sandboxes(&client, "v1beta1");
    let alpha = sandboxes(&client, "v1alpha1");
    beta.create(
        &PostParams::default(),
        &sandbox("v1beta1", "sb-1", "python:3.12-slim", json!({})),
    )
    .await
    .expect("create");
    let ready = wait_for(&beta, "sb-1", is_ready).await;
    assert_eq!(
        reason(&ready, "Ready").as_deref(),
        Some("DependenciesReady")
    );

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let selector = format!("{NAME_HASH_LABEL}={}", name_hash("sb-1"));
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("pods");
    assert_eq!(listed.items.len(), 1);
    let pod = &listed.items[0];
    assert_eq!(pod.metadata.name.as_deref(), Some("sb-1"));
    let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Sandbox", Some(true))
    );
    assert_eq!(Some(owner.uid.as_str()), ready.metadata.uid.as_deref());
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod ip");
    assert!(pod_ip.starts_with("127."), "{pod_ip}");
    assert_eq!(ready.data["status"]["podIPs"], json!([pod_ip]));
    assert_eq!(ready.data["status"]["selector"], json!(selector));

    // The same object through v1alpha1.
    let as_alpha = alpha.get("sb-1").await.expect("v1alpha1 get");
    assert_eq!(
        as_alpha.types.as_ref().map(|t| t.api_version.as_str()),
        Some("agents.x-k8s.io/v1alpha1")
    );
    assert_eq!(
        alpha
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );

    // Deleting the Sandbox garbage-collects its pod.
    beta.delete("sb-1", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&pods, "sb-1").await;
    emu.shutdown().await;
}

#[tokio::test]
async fn replicas_and_operating_mode_suspend_the_pod() {
    let (emu, client) = common::start().await;
    let alpha = sandboxes(&client, "v1alpha1");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    alpha
        .create(
            &PostParams::default(),
            &sandbox("v1alpha1", "zero", "busybox", json!({"replicas": 0})),
        )
        .await
        .expect("create");
    let s = wait_for(&alpha, "zero", |o: Option<&DynamicObject>| {
        o.is_some_and(|o| reason(o, "Ready").is_some())
    })
    .await;
    assert_eq!(reason(&s, "Ready").as_deref(), Some("SandboxSuspended"));
    assert_eq!(s.data["status"]["replicas"], json!(0));
    assert!(
        pods.get_opt("zero").await.expect("get").is_none(),
        "replicas 0 makes no pod"
    );
    alpha
        .patch(
            "zero",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scale up");
    wait_for(&alpha, "zero", is_ready).await;

    let beta = sandboxes(&client, "v1beta1");
    let suspend = json!({"spec": {"operatingMode": "Suspended"}});
    beta.patch("zero", &PatchParams::default(), &Patch::Merge(suspend))
        .await
        .expect("suspend");
    wait_gone(&pods, "zero").await;
    let s = wait_for(&beta, "zero", |o: Option<&DynamicObject>| {
        o.is_some_and(|o| condition(o, "Suspended").as_deref() == Some("True"))
    })
    .await;
    assert_eq!(s.metadata.generation, Some(3));
    emu.shutdown().await;
}

#[tokio::test]
async fn shutdown_time_deletes_or_retains() {
    let (emu, client) = common::start().await;
    let beta = sandboxes(&client, "v1beta1");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for (name, policy) in [("del", "Delete"), ("keep", "Retain")] {
        let spec = json!({"shutdownTime": in_secs(3600), "shutdownPolicy": policy});
        beta.create(
            &PostParams::default(),
            &sandbox("v1beta1", name, "busybox", spec),
        )
        .await
        .expect("create");
        wait_for(&beta, name, is_ready).await;
    }
    // Expire both: the TTL passing, without waiting for a clock.
    for name in ["del", "keep"] {
        let expire = json!({"spec": {"shutdownTime": in_secs(-1)}});
        beta.patch(name, &PatchParams::default(), &Patch::Merge(expire))
            .await
            .expect("expire");
    }
    wait_gone(&beta, "del").await;
    wait_gone(&pods, "del").await;
    let kept = wait_for(&beta, "keep", |o: Option<&DynamicObject>| {
        o.is_some_and(|o| reason(o, "Ready").as_deref() == Some("SandboxExpired"))
    })
    .await;
    assert_eq!(condition(&kept, "Ready").as_deref(), Some("False"));
    wait_gone(&pods, "keep").await;
    emu.shutdown().await;
}

fn waiting_reason(p: Option<&Pod>) -> Option<String> {
    let cs = p?
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .clone();
    cs.state?.waiting?.reason
}

#[tokio::test]
async fn image_failures_show_on_pod_and_sandbox() {
    let (emu, client) = common::start().await;
    emu.add_image_failure("scripted-bad", FailureKind::PullError);
    let beta = sandboxes(&client, "v1beta1");
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for (name, image) in [
        ("pull", "example.com/fail-pull:1"),
        ("crashy", "example.com/crash:1"),
        ("scripted", "scripted-bad"),
    ] {
        beta.create(
            &PostParams::default(),
            &sandbox("v1beta1", name, image, json!({})),
        )
        .await
        .expect("create");
    }
    let is = |want: &'static [&'static str]| {
        move |p: Option<&Pod>| waiting_reason(p).is_some_and(|r| want.contains(&r.as_str()))
    };
    wait_for(&pods, "pull", is(&["ErrImagePull", "ImagePullBackOff"])).await;
    wait_for(&pods, "scripted", is(&["ErrImagePull", "ImagePullBackOff"])).await;
    let crashed = wait_for(&pods, "crashy", is(&["CrashLoopBackOff"])).await;
    let cs = &crashed
        .status
        .expect("status")
        .container_statuses
        .expect("statuses")[0];
    assert_eq!(cs.restart_count, 1);
    beta.create(
        &PostParams::default(),
        &sandbox("v1beta1", "stuck", "x/never-ready:1", json!({})),
    )
    .await
    .expect("create");
    let stuck = wait_for(&pods, "stuck", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.pod_ip.clone()).is_some()
    })
    .await;
    let cs = &stuck
        .status
        .expect("status")
        .container_statuses
        .expect("statuses")[0];
    assert!(
        !cs.ready && cs.state.as_ref().is_some_and(|s| s.running.is_some()),
        "running but never ready"
    );
    // A failing init container (the agent image of pico's runtime) holds the pod in Init.
    let mut init_fail = sandbox("v1beta1", "initbad", "busybox", json!({}));
    init_fail.data["spec"]["podTemplate"]["spec"]["initContainers"] =
        json!([{"name": "install", "image": "x/fail-pull-agent:1"}]);
    beta.create(&PostParams::default(), &init_fail)
        .await
        .expect("create");
    let init_waiting = |p: Option<&Pod>| {
        p.and_then(|p| {
            p.status
                .as_ref()?
                .init_container_statuses
                .as_ref()?
                .first()?
                .state
                .as_ref()?
                .waiting
                .as_ref()?
                .reason
                .clone()
        })
        .is_some_and(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
    };
    let pod = wait_for(&pods, "initbad", init_waiting).await;
    assert_eq!(
        waiting_reason(Some(&pod)).as_deref(),
        Some("PodInitializing")
    );
    wait_for(&beta, "initbad", |o: Option<&DynamicObject>| {
        o.is_some_and(|o| {
            o.data["status"]["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("container install: "))
        })
    })
    .await;
    let sb = wait_for(&beta, "pull", |o: Option<&DynamicObject>| {
        o.is_some_and(|o| {
            o.data["status"]["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("ErrImagePull") || m.contains("ImagePullBackOff"))
        })
    })
    .await;
    assert_eq!(condition(&sb, "Ready").as_deref(), Some("False"));
    emu.shutdown().await;
}

#[tokio::test]
async fn status_subresource_is_separate() {
    let (emu, client) = common::start().await;
    let beta = sandboxes(&client, "v1beta1");
    emu.set_pod_start_delay(std::time::Duration::from_secs(3600));
    let mut obj = sandbox("v1beta1", "st", "busybox", json!({}));
    obj.data["status"] = json!({"serviceFQDN": "ignored"});
    let created = beta
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    assert!(
        created.data["status"]["serviceFQDN"].is_null(),
        "status is dropped on create"
    );
    let patched = beta
        .patch_status(
            "st",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"nodeName": "n1"}, "spec": {"operatingMode": "Suspended"}}),
            ),
        )
        .await
        .expect("patch status");
    assert_eq!(patched.data["status"]["nodeName"], json!("n1"));
    assert!(
        patched.data["spec"]["operatingMode"].is_null(),
        "spec is not changed through /status"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn discovery_can_serve_only_v1alpha1() {
    let config = pico_kube_emulator::EmulatorConfig {
        sandbox_versions: vec!["v1alpha1".into()],
        ..Default::default()
    };
    let (emu, client) = common::start_with(config).await;
    let group = kube::discovery::group(&client, "agents.x-k8s.io")
        .await
        .expect("discover group");
    assert_eq!(group.versions().collect::<Vec<_>>(), ["v1alpha1"]);
    assert_eq!(group.preferred_version_or_latest(), "v1alpha1");
    let beta = sandboxes(&client, "v1beta1");
    let err = common::api_error(
        beta.list(&ListParams::default())
            .await
            .expect_err("v1beta1 not served"),
    );
    assert_eq!(err.code, 404);
    let alpha = sandboxes(&client, "v1alpha1");
    alpha
        .create(
            &PostParams::default(),
            &sandbox("v1alpha1", "old", "busybox", json!({})),
        )
        .await
        .expect("create");
    wait_for(&alpha, "old", is_ready).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod = pods.get("old").await.expect("pod");
    assert_eq!(
        pod.metadata.owner_references.expect("owner")[0].api_version,
        "agents.x-k8s.io/v1alpha1"
    );

    let full = kube::discovery::Discovery::new(client)
        .run()
        .await
        .expect("full discovery");
    assert!(full.has_group("agents.x-k8s.io") && full.has_group(""));
    emu.shutdown().await;
}
