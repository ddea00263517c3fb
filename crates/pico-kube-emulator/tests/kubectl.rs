//! Real `kubectl` against the `pico-kube-emulator` binary: apply, get, wait, watch, delete.

#[path = "common/kubectl.rs"]
mod harness;

use std::process::Stdio;

use harness::{Emu, README_SANDBOX, expect_line, lines_of, path, require_kubectl};
use pico_kube_emulator::name_hash;

#[test]
fn kubectl_apply_get_wait_and_delete_the_readme_sandbox() {
    require_kubectl();
    let emu = Emu::start(&[]);
    let alpha = emu.sandbox_file("v1alpha1", "my-sandbox");
    let beta = emu.sandbox_file("v1beta1", "beta-sandbox");
    assert!(
        emu.ok(&["apply", "-f", path(&alpha)])
            .contains("sandbox.agents.x-k8s.io/my-sandbox created")
    );
    assert!(emu.ok(&["apply", "-f", path(&beta)]).contains("created"));
    assert!(emu.ok(&["apply", "-f", path(&alpha)]).contains("unchanged"));

    let listed = emu.ok(&["get", "sandboxes"]);
    assert!(
        listed.contains("my-sandbox") && listed.contains("beta-sandbox"),
        "{listed}"
    );
    let waited = emu.ok(&[
        "wait",
        "--for=condition=Ready",
        "sandbox/my-sandbox",
        "--timeout=30s",
    ]);
    assert!(waited.contains("condition met"), "{waited}");
    emu.ok(&[
        "wait",
        "--for=condition=Ready",
        "sandboxes.v1beta1.agents.x-k8s.io/beta-sandbox",
        "--timeout=30s",
    ]);

    let selector = format!(
        "agents.x-k8s.io/sandbox-name-hash={}",
        name_hash("my-sandbox")
    );
    assert_eq!(
        emu.ok(&["get", "pods", "-l", &selector, "-o", "name"])
            .trim(),
        "pod/my-sandbox"
    );
    let set_based = format!(
        "agents.x-k8s.io/sandbox-name-hash in ({},{})",
        name_hash("my-sandbox"),
        name_hash("beta-sandbox")
    );
    assert_eq!(
        emu.ok(&["get", "pods", "-l", &set_based, "-o", "name"])
            .lines()
            .count(),
        2
    );
    assert_eq!(
        emu.ok(&[
            "get",
            "pods",
            "-l",
            "!agents.x-k8s.io/sandbox-name-hash",
            "-o",
            "name"
        ])
        .trim(),
        ""
    );
    let ip = emu.ok(&[
        "get",
        "sandbox",
        "my-sandbox",
        "-o",
        "jsonpath={.status.podIPs[0]}",
    ]);
    assert!(ip.starts_with("127."), "{ip}");
    let phase = emu.ok(&["get", "pod", "my-sandbox", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Running");
    let owner = emu.ok(&[
        "get",
        "pod",
        "my-sandbox",
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}",
    ]);
    assert_eq!(owner, "Sandbox");

    let deleted = emu.ok(&["delete", "sandbox", "my-sandbox"]);
    assert!(deleted.contains("deleted"), "{deleted}");
    let err = emu.fails(&["get", "sandbox", "my-sandbox"]);
    assert!(
        err.contains("NotFound") && err.contains("\"my-sandbox\" not found"),
        "{err}"
    );
    assert_eq!(
        emu.ok(&["get", "pods", "-o", "name"]).trim(),
        "pod/beta-sandbox",
        "pod garbage-collected"
    );
    emu.ok(&["delete", "-f", path(&beta)]);
    assert_eq!(emu.ok(&["get", "sandboxes", "-o", "name"]).trim(), "");
}

#[test]
fn kubectl_get_watch_sees_added_modified_deleted() {
    require_kubectl();
    let emu = Emu::start(&[]);
    emu.ok(&["apply", "-f", path(&emu.sandbox_file("v1alpha1", "first"))]);
    let mut watch = emu
        .cmd(&["get", "sandboxes", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let rx = lines_of(&mut watch);
    let has = |ev: &'static str, name: &'static str| {
        move |l: &str| l.starts_with(ev) && l.split_whitespace().nth(1) == Some(name)
    };
    expect_line(&rx, "ADDED first", has("ADDED", "first"));
    emu.ok(&["apply", "-f", path(&emu.sandbox_file("v1beta1", "second"))]);
    expect_line(&rx, "ADDED second", has("ADDED", "second"));
    // The controller's status update.
    expect_line(&rx, "MODIFIED second", has("MODIFIED", "second"));
    emu.ok(&["delete", "sandbox", "first"]);
    expect_line(&rx, "DELETED first", has("DELETED", "first"));
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn kubectl_patch_server_side_apply_dry_run_and_errors() {
    require_kubectl();
    // No --token here: kubectl does not send bearer tokens to plain-http servers (the
    // token check is covered by the kube-rs tests).
    let emu = Emu::start(&["--pod-start-delay", "10ms"]);
    let file = emu.sandbox_file("v1beta1", "p1");
    emu.ok(&["create", "-f", path(&file)]);
    let dup = emu.fails(&["create", "-f", path(&file)]);
    assert!(dup.contains("AlreadyExists"), "{dup}");

    emu.ok(&[
        "patch",
        "sandbox",
        "p1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"team":"a"}}}"#,
    ]);
    emu.ok(&[
        "patch",
        "sandbox",
        "p1",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/tier","value":"b"}]"#,
    ]);
    emu.ok(&["label", "sandbox", "p1", "extra=yes"]);
    assert_eq!(
        emu.ok(&[
            "get",
            "sandboxes",
            "-l",
            "team=a,tier in (b),extra",
            "-o",
            "name"
        ])
        .trim(),
        "sandbox.agents.x-k8s.io/p1"
    );
    let shut = emu.write("shut.yaml", "apiVersion: agents.x-k8s.io/v1beta1\nkind: Sandbox\nmetadata:\n  name: p1\nspec:\n  operatingMode: Suspended\n");
    emu.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        path(&shut),
    ]);
    assert_eq!(
        emu.ok(&[
            "get",
            "sandbox",
            "p1",
            "-o",
            "jsonpath={.spec.operatingMode}"
        ]),
        "Suspended"
    );
    assert_eq!(
        emu.ok(&[
            "get",
            "sandbox",
            "p1",
            "-o",
            "jsonpath={.spec.podTemplate.spec.containers[0].name}"
        ]),
        "my-container"
    );
    let dry = emu.sandbox_file("v1beta1", "dry");
    emu.ok(&["apply", "--dry-run=server", "-f", path(&dry)]);
    emu.ok(&["apply", "--dry-run=client", "-f", path(&dry)]);
    assert!(emu.fails(&["get", "sandbox", "dry"]).contains("NotFound"));

    // Built-in types through apply.
    let secret = emu.write(
        "s1.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s1\nstringData:\n  k: v\n",
    );
    assert!(
        emu.ok(&["apply", "-f", path(&secret)])
            .contains("secret/s1 created")
    );
    assert_eq!(
        emu.ok(&["get", "secret", "s1", "-o", "jsonpath={.data.k}"]),
        "dg=="
    );
    let changed = emu.write("s1.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s1\n  labels:\n    l: x\nstringData:\n  k: w\n");
    assert!(
        emu.ok(&["apply", "-f", path(&changed)])
            .contains("secret/s1 configured")
    );
    assert_eq!(
        emu.ok(&["get", "secret", "s1", "-o", "jsonpath={.data.k}"]),
        "dw=="
    );
    emu.ok(&["get", "namespaces", "default"]);

    // Imperative creates send protobuf bodies.
    emu.ok(&["create", "namespace", "pico"]);
    emu.ok(&[
        "create",
        "secret",
        "generic",
        "s2",
        "-n",
        "pico",
        "--from-literal=k=v",
    ]);
    assert_eq!(
        emu.ok(&[
            "get",
            "secret",
            "s2",
            "-n",
            "pico",
            "-o",
            "jsonpath={.data.k}"
        ]),
        "dg=="
    );
    emu.ok(&["create", "configmap", "c1", "--from-literal=a=b"]);
    assert_eq!(
        emu.ok(&["get", "configmap", "c1", "-o", "jsonpath={.data.a}"]),
        "b"
    );
    emu.ok(&["delete", "namespace", "pico"]);
    assert!(
        emu.fails(&["get", "secret", "s2", "-n", "pico"])
            .contains("NotFound"),
        "namespace contents deleted"
    );
}

#[test]
fn kubectl_get_pods_shows_status_columns_and_scripted_failures() {
    require_kubectl();
    let emu = Emu::start(&["--image-failure", "custom-bad=pull"]);
    let bad = README_SANDBOX
        .replace("VERSION", "v1beta1")
        .replace("NAME", "bad")
        .replace("python:3.12-slim", "registry.example/custom-bad:1");
    emu.ok(&["apply", "-f", path(&emu.write("bad.yaml", &bad))]);
    emu.ok(&["apply", "-f", path(&emu.sandbox_file("v1beta1", "good"))]);
    emu.ok(&[
        "wait",
        "--for=condition=Ready",
        "sandbox/good",
        "--timeout=30s",
    ]);
    let reason =
        "--for=jsonpath={.status.containerStatuses[0].state.waiting.reason}=ImagePullBackOff";
    emu.ok(&["wait", reason, "pod/bad", "--timeout=30s"]);
    let table = emu.ok(&["get", "pods"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );
    assert_eq!(
        &rows[1][..4],
        ["bad", "0/1", "ImagePullBackOff", "0"],
        "{table}"
    );
    assert_eq!(&rows[2][..4], ["good", "1/1", "Running", "0"], "{table}");
    let wide = emu.ok(&["get", "pod", "good", "-o", "wide"]);
    assert!(
        wide.contains("127.") && wide.contains("pico-kube-emulator"),
        "{wide}"
    );
    let not_ready = emu.ok(&[
        "get",
        "sandbox",
        "bad",
        "-o",
        "jsonpath={.status.conditions[0].message}",
    ]);
    assert!(
        not_ready.contains("ImagePullBackOff") || not_ready.contains("ErrImagePull"),
        "{not_ready}"
    );
}

/// The kinds a pico deployment uses (issue 8's `k8s/`) apply, client and server dry run too.
#[test]
fn kubectl_applies_deployment_manifests() {
    require_kubectl();
    let emu = Emu::start(&[]);
    let manifests = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/deployment-manifests.yaml"
    );
    assert!(
        emu.ok(&["apply", "--dry-run=client", "-f", manifests])
            .contains("deployment.apps/pico-apiserver created (dry run)")
    );
    assert!(
        emu.ok(&["apply", "--dry-run=server", "-f", manifests])
            .contains("role.rbac.authorization.k8s.io/pico-apiserver created (server dry run)")
    );
    assert!(
        emu.fails(&["get", "namespace", "pico"])
            .contains("NotFound")
    );
    emu.ok(&["apply", "-f", manifests]);
    assert!(
        emu.ok(&["apply", "-f", manifests])
            .contains("service/pico-apiserver unchanged")
    );
    let names = emu.ok(&[
        "get",
        "deploy,svc,sa,role,rolebinding",
        "-n",
        "pico",
        "-o",
        "name",
    ]);
    assert_eq!(names.lines().count(), 5, "{names}");
}
