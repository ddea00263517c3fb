//! The Kubernetes runtime end to end against the emulator: REST API → Sandbox and Secret seen
//! with real kubectl → SSH through the tunnel into the emulated pod → extend → delete.

mod common;
#[path = "common/kube.rs"]
mod kube_env;

use std::time::Duration;

use common::{SshTarget, stdout};
use kube_env::{Cluster, object_name};

/// `spec.shutdownTime` is `expiresAt` rounded up to whole seconds.
fn assert_shutdown_matches(shutdown: &str, session: &serde_json::Value) {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    };
    let expires = parse(session["expiresAt"].as_str().expect("expiresAt"));
    let shutdown = parse(shutdown);
    assert!(
        shutdown >= expires && shutdown - expires < time::Duration::SECOND,
        "shutdownTime {shutdown} vs expiresAt {expires}"
    );
}

#[test]
fn kube_session_lifecycle_with_kubectl_and_ssh() {
    let cluster = Cluster::start();
    let server = cluster.server(&[]);
    let session = server.create(None, r#"{"ttl": 600, "metadata": {"team": "ml"}}"#);
    assert_eq!(session["status"], "running", "{session}");
    let name = object_name(&session);
    let id = session["sessionId"].as_str().expect("id");

    let sandbox = cluster.get("sandboxes", &name).expect("Sandbox exists");
    let labels = &sandbox["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "pico-apiserver");
    assert_eq!(labels["pico.dev/session-id"], id);
    assert!(labels["pico.dev/owner-hash"].is_string());
    let notes = &sandbox["metadata"]["annotations"];
    assert_eq!(notes["pico.dev/owner"], "anonymous");
    assert_eq!(notes["pico.dev/metadata"], r#"{"team":"ml"}"#);
    assert_eq!(notes["pico.dev/expires-at"], session["expiresAt"]);
    assert_eq!(notes["pico.dev/status"], "running");
    let shutdown = sandbox["spec"]["shutdownTime"]
        .as_str()
        .expect("shutdownTime");
    assert_shutdown_matches(shutdown, &session);
    assert_eq!(sandbox["spec"]["shutdownPolicy"], "Delete");
    let pod_spec = &sandbox["spec"]["podTemplate"]["spec"];
    assert_eq!(pod_spec["containers"][0]["image"], "debian:stable-slim");

    let secret = cluster.get("secrets", &name).expect("Secret exists");
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Sandbox");
    assert_eq!(owner["uid"], sandbox["metadata"]["uid"]);
    assert!(secret["data"]["host_key"].is_string());
    assert!(cluster.get("pods", &name).is_some(), "pod exists");

    let ssh = SshTarget::new(&server, &session, None);
    let out = ssh.ssh("echo hello from $(hostname -s 2>/dev/null || echo pod)");
    assert!(out.status.success(), "ssh: {}", common::stderr(&out));
    assert!(stdout(&out).starts_with("hello from"), "{}", stdout(&out));

    // Extend: expiresAt and the cluster's shutdownTime both move.
    let res = server
        .request("PATCH", &format!("/v1/sessions/{id}"))
        .json(r#"{"ttl": 7200}"#)
        .send();
    assert_eq!(res.status, 200, "{}", res.text());
    let extended = res.json();
    let sandbox = cluster.get("sandboxes", &name).expect("Sandbox exists");
    let moved = sandbox["spec"]["shutdownTime"]
        .as_str()
        .expect("shutdownTime");
    assert_ne!(moved, shutdown);
    assert_shutdown_matches(moved, &extended);
    let got = server
        .request("GET", &format!("/v1/sessions/{id}"))
        .send()
        .json();
    assert_eq!(got["expiresAt"], extended["expiresAt"]);

    // Delete: the Sandbox, its pod and its Secret go.
    let res = server
        .request("DELETE", &format!("/v1/sessions/{id}"))
        .send();
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(cluster.get("sandboxes", &name).is_none());
    cluster.wait_gone("pods", &name);
    cluster.wait_gone("secrets", &name);
    server
        .request("GET", &format!("/v1/sessions/{id}"))
        .send()
        .assert_error(404, "SESSION_NOT_FOUND");
}

/// A crash fails the create at once; a pull that keeps failing is retried (it may be a
/// registry blip) until the create timeout, whose message names the pull error.
#[test]
fn kube_failed_pull_or_crash_is_create_failed_and_leaves_nothing() {
    let cluster = Cluster::start();
    let server = cluster.server(&["--create-timeout", "3"]);
    let bad_agent = cluster.server(&[
        "--agent-image",
        "example.com/fail-pull:agent",
        "--create-timeout",
        "3",
    ]);
    for (server, image, code, reasons) in [
        (
            &server,
            "example.com/fail-pull:1",
            (504, "SANDBOX_TIMEOUT"),
            ["ErrImagePull", "ImagePullBackOff"],
        ),
        (
            &server,
            "example.com/crash:1",
            (500, "SANDBOX_CREATE_FAILED"),
            ["CrashLoopBackOff", "pod failed"],
        ),
        (
            &bad_agent,
            "debian:stable-slim",
            (504, "SANDBOX_TIMEOUT"),
            ["ErrImagePull", "ImagePullBackOff"],
        ),
    ] {
        let res = server
            .request("POST", "/v1/sessions")
            .json(&format!(r#"{{"image": "{image}"}}"#))
            .send();
        let body = res.assert_error(code.0, code.1);
        let message = body["message"].as_str().expect("message");
        assert!(
            reasons.iter().any(|r| message.contains(r)),
            "{image}: {message}"
        );
        assert!(cluster.names("sandboxes").is_empty(), "{image}");
        assert!(cluster.names("secrets").is_empty(), "{image}");
        let list = server.request("GET", "/v1/sessions").send().json();
        assert_eq!(list["total"], 0);
    }
}

#[test]
fn kube_create_timeout_is_504_and_leaves_nothing() {
    let cluster = Cluster::start();
    let server = cluster.server(&["--create-timeout", "1"]);
    let res = server
        .request("POST", "/v1/sessions")
        .json(r#"{"image": "example.com/never-ready:1"}"#)
        .send();
    res.assert_error(504, "SANDBOX_TIMEOUT");
    assert!(cluster.names("sandboxes").is_empty());
    assert!(cluster.names("secrets").is_empty());
}

#[test]
fn kube_expiry_by_pico_and_by_the_cluster() {
    let cluster = Cluster::start();
    let server = cluster.server(&[]);
    let past = "2020-01-01T00:00:00Z";

    // The cluster's controller does not act (shutdownTime still ahead), pico's reaper does.
    let a = server.create(None, r#"{"ttl": 600}"#);
    let a_name = object_name(&a);
    let note = format!("pico.dev/expires-at={past}");
    let out = cluster.kubectl(&["annotate", "--overwrite", "sandbox", &a_name, &note]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    cluster.wait_gone("sandboxes", &a_name);
    cluster.wait_gone("secrets", &a_name);

    // The cluster ends a session whose shutdownTime passed; pico follows.
    let b = server.create(None, r#"{"ttl": 600}"#);
    let b_name = object_name(&b);
    let patch = format!(r#"{{"spec":{{"shutdownTime":"{past}"}}}}"#);
    let out = cluster.kubectl(&["patch", "sandbox", &b_name, "--type", "merge", "-p", &patch]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    cluster.wait_gone("sandboxes", &b_name);
    let b_id = b["sessionId"].as_str().expect("id");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = server
            .request("GET", &format!("/v1/sessions/{b_id}"))
            .send();
        if res.status == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", res.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        server.request("GET", "/v1/sessions").send().json()["total"],
        0
    );
}

/// Point 7: a replica stays ready through a short API-server outage (`--ready-grace`, 30 s by
/// default), so a blip does not take every replica out of the Service; past the grace
/// (0 here) it is not ready.
#[test]
fn kube_readyz_follows_the_api_server_with_a_grace_period() {
    let mut cluster = Cluster::start();
    let server = cluster.server(&["--ready-grace", "0"]);
    let tolerant = cluster.server(&[]);
    for s in [&server, &tolerant] {
        let res = s.request("GET", "/readyz").send();
        assert_eq!(res.status, 200, "{}", res.text());
    }
    cluster.stop();
    server
        .request("GET", "/readyz")
        .send()
        .assert_error(503, "UNAVAILABLE");
    let res = tolerant.request("GET", "/readyz").send();
    assert_eq!(res.status, 200, "within the grace period: {}", res.text());
}

#[test]
fn kube_v1alpha1_only_cluster_gets_v1alpha1_sandboxes() {
    let cluster = Cluster::start_with(pico_kube_emulator::EmulatorConfig {
        sandbox_versions: vec!["v1alpha1".into()],
        ..kube_env::strict_config()
    });
    cluster.emulator().load_image("python:3.12-slim");
    let server = cluster.server(&[]);
    let session = server.create(None, r#"{"image": "python:3.12-slim"}"#);
    let sandbox = cluster
        .get("sandboxes", &object_name(&session))
        .expect("Sandbox exists");
    assert_eq!(sandbox["apiVersion"], "agents.x-k8s.io/v1alpha1");
    // v1alpha1 has shutdownPolicy too: without it the cluster keeps an expired Sandbox.
    assert_eq!(sandbox["spec"]["shutdownPolicy"], "Delete");
    let image = &sandbox["spec"]["podTemplate"]["spec"]["containers"][0]["image"];
    assert_eq!(image, "python:3.12-slim");
    let ssh = SshTarget::new(&server, &session, None);
    let out = ssh.ssh("echo alpha");
    assert!(out.status.success(), "ssh: {}", common::stderr(&out));
}

#[test]
fn kube_activity_reaches_the_cluster_at_most_once_a_minute() {
    let cluster = Cluster::start();
    let server = cluster.server(&[]);
    let session = server.create(None, "");
    let name = object_name(&session);
    let activity = || {
        let sandbox = cluster.get("sandboxes", &name).expect("Sandbox exists");
        sandbox["metadata"]["annotations"]["pico.dev/last-activity-at"].clone()
    };
    let created = activity();
    assert_eq!(created, session["createdAt"]);
    let ssh = SshTarget::new(&server, &session, None);
    assert!(ssh.ssh("true").status.success());
    // The reaper (every second here) writes the first activity at once...
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while activity() == created {
        assert!(
            std::time::Instant::now() < deadline,
            "activity never written"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = activity();
    // ...and later activity within the minute stays in memory: once the server knows it
    // (a reaper pass saw it), the cluster still has the first (the schedule itself is tested
    // in-process in `runtime/kubernetes/records.rs`).
    assert!(ssh.ssh("true").status.success());
    let path = format!(
        "/v1/sessions/{}",
        session["sessionId"].as_str().expect("id")
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.request("GET", &path).send().json()["lastActivityAt"] == first {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never saw the newer activity"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(activity(), first);
}

#[test]
fn kube_image_mode_passes_the_public_key_to_the_image() {
    let cluster = Cluster::start();
    cluster.emulator().load_image("example.com/own-sshd:1");
    let server = cluster.server(&["--agent-mode", "image"]);
    let session = server.create(None, r#"{"image": "example.com/own-sshd:1"}"#);
    assert_eq!(session["status"], "running");
    let sandbox = cluster
        .get("sandboxes", &object_name(&session))
        .expect("Sandbox exists");
    let spec = &sandbox["spec"]["podTemplate"]["spec"];
    assert!(spec.get("initContainers").is_none(), "{spec}");
    let container = &spec["containers"][0];
    assert_eq!(container["image"], "example.com/own-sshd:1");
    assert!(container.get("command").is_none());
    assert_eq!(container["env"][0]["name"], "SSH_PUBLIC_KEY");
    let key = container["env"][0]["value"].as_str().expect("key");
    assert!(key.starts_with("ssh-ed25519 "), "{key}");
}

#[test]
fn kube_auto_runtime_follows_the_kubeconfig_flag() {
    let cluster = Cluster::start();
    let kubeconfig = cluster.kubeconfig.to_str().expect("utf-8 path");
    // No --runtime: `auto` picks Kubernetes because a kubeconfig is given.
    let server = common::Server::start(&["--kubeconfig", kubeconfig, "--ssh-port", "2222"]);
    let session = server.create(None, "");
    assert!(cluster.get("sandboxes", &object_name(&session)).is_some());
}
