//! Deployment: the `k8s/` manifests against the emulator with real kubectl, the Role against
//! what the runtime calls, the Deployment's flags against the real binary, and the image.

mod common;
#[path = "common/kube.rs"]
mod kube_env;

use std::collections::BTreeSet;
use std::process::Command;

use common::repo_root;
use kube_env::Cluster;
use serde::Deserialize;
use serde_json::Value;

fn manifests() -> Vec<Value> {
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("k8s"))
        .expect("k8s/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read manifest");
        for doc in serde_norway::Deserializer::from_str(&text) {
            docs.push(
                Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
            );
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in k8s/"))
}

#[test]
fn kube_manifests_apply_with_server_dry_run() {
    let cluster = Cluster::start();
    let k8s = repo_root().join("k8s");
    let k8s = k8s.to_str().expect("utf-8 path");
    // The namespace exists for real first, as after a first `make k8s-deploy`.
    let ns = format!("{k8s}/00-namespace.yaml");
    let out = cluster.kubectl(&["apply", "-f", &ns]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = cluster.kubectl(&["apply", "--dry-run=server", "-f", k8s]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let applied = common::stdout(&out);
    for what in [
        "serviceaccount/pico-apiserver",
        "role.rbac.authorization.k8s.io/pico-apiserver",
        "rolebinding.rbac.authorization.k8s.io/pico-apiserver",
        "deployment.apps/pico-apiserver",
        "service/pico-apiserver",
    ] {
        assert!(applied.contains(what), "{what} missing from:\n{applied}");
    }
    // A dry run stores nothing.
    assert!(cluster.get("deployment", "pico-apiserver").is_none());
}

#[test]
fn kube_role_grants_exactly_what_the_runtime_uses() {
    let docs = manifests();
    let role = find(&docs, "Role");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .expect("list")
                .iter()
                .map(|s| s.as_str().expect("string").to_owned())
                .collect()
        };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    let used: BTreeSet<(String, String, String)> = pico_apiserver::runtime::kubernetes::RBAC_RULES
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs
                .iter()
                .map(|verb| (group.to_string(), resource.to_string(), verb.to_string()))
        })
        .collect();
    assert_eq!(granted, used);
    let binding = find(&docs, "RoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let deployment = find(&docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], binding["subjects"][0]["name"]);
}

#[test]
fn kube_deployment_flags_start_the_server_and_its_probes_answer() {
    let docs = manifests();
    let deployment = find(&docs, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    // The manifest's own flags, with the test's port, address and kubeconfig.
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg"))
        .filter(|a| !a.starts_with("--port") && !a.starts_with("--bind"))
        .collect();
    let cluster = Cluster::start();
    let mut extra = args.clone();
    let kubeconfig = cluster.kubeconfig.to_str().expect("utf-8 path");
    extra.extend(["--kubeconfig", kubeconfig, "--jwt-secret", common::SECRET]);
    let server = common::Server::start(&extra);
    for path in ["/health", "/readyz"] {
        let res = server.request("GET", path).send();
        assert_eq!(res.status, 200, "{path}: {}\n{}", res.text(), server.logs());
    }
}

fn buildah(args: &[&str]) -> std::process::Output {
    Command::new("buildah")
        .args(args)
        .env("STORAGE_DRIVER", "vfs")
        .output()
        .expect("run buildah")
}

#[test]
fn kube_image_holds_both_static_binaries() {
    let root = repo_root();
    let bins = root.join("target/x86_64-unknown-linux-gnu/release");
    let have_bins = ["pico-apiserver", "pico-agent"]
        .iter()
        .all(|b| bins.join(b).is_file());
    let have_buildah = Command::new("buildah").arg("--version").output().is_ok();
    if !have_bins || !have_buildah {
        eprintln!(
            "SKIPPED kube_image_holds_both_static_binaries: needs `make static` binaries \
             (present: {have_bins}) and buildah (present: {have_buildah}); `make image` builds both"
        );
        return;
    }
    let image = format!("localhost/pico-test-{}:latest", std::process::id());
    let out = Command::new(root.join("scripts/build-image.sh"))
        .arg(&image)
        .output()
        .expect("build image");
    assert!(out.status.success(), "{}", common::stderr(&out));

    let out = buildah(&["inspect", "--type", "image", &image]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let info: Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    let config = &info["OCIv1"]["config"];
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/pico-apiserver"])
    );
    assert_eq!(config["User"], "65532:65532");

    let out = buildah(&["from", "--pull-never", &image]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let container = common::stdout(&out).trim().to_owned();
    let out = buildah(&["mount", &container]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let rootfs = std::path::PathBuf::from(common::stdout(&out).trim());
    let mut entries: Vec<String> = std::fs::read_dir(rootfs.join("usr/local/bin"))
        .expect("usr/local/bin")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["pico-agent", "pico-apiserver"]);
    for bin in entries {
        let path = rootfs.join("usr/local/bin").join(&bin);
        let out = Command::new(&path).arg("--version").output().expect("run");
        assert!(out.status.success(), "{bin}: {}", common::stderr(&out));
        assert!(
            common::stdout(&out).starts_with(&bin),
            "{}",
            common::stdout(&out)
        );
        let file = Command::new("file").arg(&path).output().expect("file(1)");
        let kind = common::stdout(&file);
        assert!(
            kind.contains("statically linked") || kind.contains("static-pie"),
            "{kind}"
        );
    }
    let _ = buildah(&["umount", &container]);
    let _ = buildah(&["rm", &container]);
    let _ = buildah(&["rmi", &image]);
}
