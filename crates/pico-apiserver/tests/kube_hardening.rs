//! What a first deployment on a real cluster meets, against the strict emulator (only loaded
//! images, no registry, Pod Security "restricted"): the agent image is used as loaded, sandbox
//! pods are hardened and admitted, and sessions follow what the controller reports.

mod common;
#[path = "common/kube.rs"]
mod kube_env;

use std::time::{Duration, Instant};

use common::SshTarget;
use kube_env::{AGENT_IMAGE, Cluster, object_name};
use pico_kube_emulator::pod_security::{Level, violations};
use serde_json::Value;

fn pod_of(cluster: &Cluster, session: &Value) -> Value {
    cluster
        .get("pods", &object_name(session))
        .expect("pod exists")
}

/// Point 1: the default agent image has a version tag and `IfNotPresent`, so the image that
/// `make kind-load` put on the node is used; `Always` would need a registry the node lacks.
#[test]
fn kube_agent_image_runs_as_loaded_without_a_registry() {
    let cluster = Cluster::start();
    let server = cluster.server(&[]);
    let session = server.create(None, "");
    assert_eq!(session["status"], "running", "{session}");
    let pod = pod_of(&cluster, &session);
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["image"], AGENT_IMAGE);
    assert_eq!(init["imagePullPolicy"], "IfNotPresent");
    // The API server defaulted the session image's policy from its tag.
    assert_eq!(
        pod["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );

    let always = cluster.server(&[
        "--agent-image-pull-policy",
        "Always",
        "--create-timeout",
        "3",
    ]);
    let res = always.request("POST", "/v1/sessions").send();
    let body = res.assert_error(504, "SANDBOX_TIMEOUT");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.contains("ErrImagePull") || message.contains("ImagePullBackOff"),
        "{message}"
    );
    assert!(
        cluster.names("sandboxes").len() == 1,
        "only the first session remains"
    );
}

/// Point 4: every sandbox pod passes Pod Security "restricted" (the emulator admits it like
/// kube-apiserver), runs as a fixed non-root uid with `fsGroup`, and has resource limits.
#[test]
fn kube_sandbox_pods_are_hardened_and_admitted_as_restricted() {
    let cluster = Cluster::start();
    let server = cluster.server(&["--session-memory", "512M", "--session-cpus", "500m"]);
    let session = server.create(None, "");
    let pod = pod_of(&cluster, &session);
    let spec = &pod["spec"];
    assert_eq!(violations(spec, Level::Restricted), Vec::<String>::new());
    let sc = &spec["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 1000);
    assert_eq!(sc["fsGroup"], 1000);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(spec["automountServiceAccountToken"], false);
    let sandbox = &spec["containers"][0];
    assert_eq!(
        sandbox["resources"]["limits"]["memory"],
        (512u64 << 20).to_string()
    );
    assert_eq!(sandbox["resources"]["limits"]["cpu"], "500m");
    // The agent listens on an unprivileged port, which the non-root uid may bind.
    assert_eq!(sandbox["ports"][0]["containerPort"], 2222);
    let ssh = SshTarget::new(&server, &session, None);
    let out = ssh.ssh("echo hardened");
    assert!(out.status.success(), "ssh: {}", common::stderr(&out));

    // A pod that would run as the image's (root) user is refused by admission; the
    // controller reports ReconcilerError and the create fails at once with its message.
    let root = cluster.server(&["--sandbox-uid", "0", "--create-timeout", "30"]);
    let res = root.request("POST", "/v1/sessions").send();
    let body = res.assert_error(500, "SANDBOX_CREATE_FAILED");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("violates PodSecurity"), "{message}");
}

/// Point 4: the deployment's own pods pass "restricted" too, and a NetworkPolicy shuts the
/// sandbox namespace to all but the pico server on the agent port.
#[test]
fn kube_deployment_manifests_pass_restricted_and_fence_sandboxes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&root).expect("k8s/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read");
            for doc in serde_norway::Deserializer::from_str(&text) {
                let v: Value = serde::Deserialize::deserialize(doc).expect("yaml");
                if !v.is_null() {
                    docs.push(v);
                }
            }
        }
    }
    let mut templates = 0;
    for doc in &docs {
        if let Some(spec) = doc["spec"]["template"]["spec"].as_object() {
            let spec = Value::Object(spec.clone());
            let name = &doc["metadata"]["name"];
            assert_eq!(
                violations(&spec, Level::Restricted),
                Vec::<String>::new(),
                "{name}"
            );
            templates += 1;
        }
    }
    assert!(templates >= 1);
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "NetworkPolicy" && d["metadata"]["namespace"] == "sandboxes")
        .expect("a NetworkPolicy for the sandbox namespace");
    let spec = &policy["spec"];
    assert_eq!(
        spec["podSelector"]["matchLabels"]["app.kubernetes.io/managed-by"],
        "pico-apiserver"
    );
    let from = &spec["ingress"][0];
    assert_eq!(from["ports"][0]["port"], 2222);
    assert_eq!(
        from["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "pico-apiserver"
    );
    let ns = docs
        .iter()
        .find(|d| d["kind"] == "Namespace" && d["metadata"]["name"] == "sandboxes")
        .expect("the sandboxes namespace");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

fn wait_status(server: &common::Server, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = server
            .request("GET", &format!("/v1/sessions/{id}"))
            .send()
            .json();
        if got["status"] == want {
            return got;
        }
        assert!(Instant::now() < deadline, "never {want}: {got}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Point 5: a pull that fails for a moment is retried, not fatal; an evicted pod (the
/// controller's `PodFailed`) makes the running session `failed`.
#[test]
fn kube_sessions_follow_the_controllers_conditions() {
    let cluster = Cluster::start();
    let server = cluster.server(&[]);
    let flaky = server.create(None, r#"{"image": "example.com/flaky-pull:1"}"#);
    assert_eq!(flaky["status"], "running", "{flaky}");

    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id");
    assert!(
        cluster
            .emulator()
            .evict_pod("default", &object_name(&session))
    );
    wait_status(&server, id, "failed");
    let ssh = SshTarget::new(&server, &session, None);
    let out = ssh.ssh("true");
    assert!(!out.status.success(), "a failed sandbox is not dialled");
}

/// Point 5: a pod deleted under a running session is recreated by the controller; while it
/// starts (`Ready=False`, not a failure) the session is `pending` and not dialled (nor taken
/// for an abandoned create, even when extended meanwhile), and then it is `running` again on
/// the new pod's IP with the same keys.
#[test]
fn kube_recreated_pod_serves_the_session_again() {
    let cluster = Cluster::start();
    // Short enough that an abandoned-create check would remove the session while it restarts.
    let server = cluster.server(&["--create-timeout", "2"]);
    let session = server.create(None, "");
    let name = object_name(&session);
    let id = session["sessionId"].as_str().expect("id");
    let ssh = SshTarget::new(&server, &session, None);
    assert!(ssh.ssh("true").status.success());

    cluster
        .emulator()
        .set_pod_start_delay(Duration::from_secs(12));
    let out = cluster.kubectl(&["delete", "pod", &name]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sandbox = cluster.get("sandboxes", &name).expect("Sandbox exists");
        let ready = sandbox["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned());
        if ready.is_some_and(|c| c["status"] == "False") {
            break;
        }
        assert!(Instant::now() < deadline, "Ready never went False");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = ssh.ssh("true");
    assert!(!out.status.success(), "dialled a pod that is not ready");
    let got = wait_status(&server, id, "pending");
    assert_eq!(
        got["sessionId"], id,
        "a restarting pod is no failure: {got}"
    );
    let res = server
        .request("PATCH", &format!("/v1/sessions/{id}"))
        .json(r#"{"ttl": 900}"#)
        .send();
    assert_eq!(res.status, 200, "{}", res.text());

    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = ssh.ssh("echo back");
        if out.status.success() {
            assert_eq!(common::stdout(&out).trim(), "back");
            break;
        }
        let got = server.request("GET", &format!("/v1/sessions/{id}")).send();
        assert_eq!(got.status, 200, "removed while restarting: {}", got.text());
        assert!(
            Instant::now() < deadline,
            "never served again: {}",
            common::stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
