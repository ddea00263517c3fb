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
    // The agent client key comes from its Secret's volume; here from a file of the test's.
    let keys = tempfile::tempdir().expect("tempdir");
    let key_flag = secret_key_flag(keys.path());
    let args: Vec<&str> = args
        .into_iter()
        .map(|a| {
            if a.starts_with("--agent-client-key") {
                key_flag.as_str()
            } else {
                a
            }
        })
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

/// The Deployment's `--agent-client-key` flag, checked to name a file of the Secret
/// `pico-agent-client-key` mounted read-only, and rewritten to the same file name under
/// `dir`, where a key is made as k8s/README.md says (`ssh-keygen -t ed25519`).
fn secret_key_flag(dir: &std::path::Path) -> String {
    let docs = manifests();
    let pod = &find(&docs, "Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let path = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix("--agent-client-key="))
        .next()
        .expect("the Deployment passes --agent-client-key");
    let (mount, file) = path.rsplit_once('/').expect("an absolute path");
    let volume_mount = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == mount)
        .unwrap_or_else(|| panic!("nothing is mounted at {mount}"));
    assert_eq!(volume_mount["readOnly"], true);
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == volume_mount["name"])
        .expect("the mounted volume");
    assert_eq!(volume["secret"]["secretName"], "pico-agent-client-key");
    // Group-readable, and the group is the server's: it runs as a non-root user.
    assert_eq!(
        pod["securityContext"]["fsGroup"],
        pod["securityContext"]["runAsGroup"]
    );
    let key = dir.join(file);
    common::ssh_keygen(&key);
    format!("--agent-client-key={}", key.display())
}

#[test]
fn kube_replicas_share_the_agent_client_key_from_its_secret() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key_flag = secret_key_flag(keys.path());
    let cluster = Cluster::start();
    let args = ["--jwt-secret", common::SECRET, key_flag.as_str()];
    let (a, b) = (cluster.server(&args), cluster.server(&args));
    let alice = common::token("alice");
    let session = a.create(Some(&alice), "{}");
    let id = session["sessionId"].as_str().expect("id");
    // B logs in to the sandbox that A made: with its own key the agent would refuse it.
    let res = b
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .bearer(&alice)
        .json(r#"{"command": "echo via-b"}"#)
        .send();
    assert_eq!(res.status, 200, "{}\n{}", res.text(), b.logs());
    let result = res.json();
    assert_eq!(
        (&result["status"], &result["stdout"]),
        (&"completed".into(), &"via-b\n".into()),
        "{result}"
    );
}

fn buildah(args: &[&str]) -> std::process::Output {
    Command::new("buildah")
        .args(args)
        .env("STORAGE_DRIVER", "vfs")
        .output()
        .expect("run buildah")
}

#[test]
#[ignore = "needs `make image-bins` and buildah (make test runs it)"]
fn kube_image_holds_both_static_binaries() {
    let root = repo_root();
    let bins = root.join("target/image");
    let have_bins = ["pico-apiserver", "pico-agent"]
        .iter()
        .all(|b| bins.join(b).is_file());
    let have_buildah = Command::new("buildah").arg("--version").output().is_ok();
    assert!(
        have_bins && have_buildah,
        "needs the binaries of `make image-bins` (present: {have_bins}) and buildah (present: \
         {have_buildah}); `make image-bins` and scripts/test-deps.sh provide them"
    );
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
    // What the sandbox pods' init container runs: the agent copies itself into the emptyDir.
    let pod_dir = tempfile::tempdir().expect("tempdir");
    let agent = rootfs.join("usr/local/bin/pico-agent");
    let out = Command::new(&agent)
        .arg("install")
        .arg(pod_dir.path())
        .output()
        .expect("run install");
    assert!(out.status.success(), "install: {}", common::stderr(&out));
    let installed = pod_dir.path().join("pico-agent");
    let out = Command::new(&installed)
        .arg("--version")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let _ = buildah(&["umount", &container]);
    let _ = buildah(&["rm", &container]);
    let _ = buildah(&["rmi", &image]);
}

/// (group, resource, verb) of one logged emulator request; `None` for discovery.
fn rbac_of(method: &str, uri: &str) -> Option<(String, String, String)> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let sub;
    let (resource, name) = match rest {
        ["namespaces", _ns, resource] => (*resource, None),
        ["namespaces", _ns, resource, name, subresource] if *subresource != "status" => {
            sub = format!("{resource}/{subresource}");
            (sub.as_str(), Some(*name))
        }
        ["namespaces", _ns, resource, name, ..] => (*resource, Some(*name)),
        _ => return None,
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name) {
        ("GET", _) if watch => "watch",
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", None) => "deletecollection",
        ("DELETE", Some(_)) => "delete",
        _ => return None,
    };
    Some((group.into(), resource.into(), verb.into()))
}

#[test]
fn kube_runtime_calls_only_what_the_role_grants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let log = dir.path().join("emulator.log");
    let mut emulator = Command::new(common::emulator_binary())
        .args(["--port", "0", "--write-kubeconfig"])
        .arg(&kubeconfig)
        .arg("--agent-binary")
        .arg(common::agent_binary())
        .env("RUST_LOG", "pico_kube_emulator::api=debug")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start pico-kube-emulator");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(emulator.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("listening line");
    let kc = kubeconfig.to_str().expect("utf-8 path");
    {
        let server = common::Server::start(&[
            "--runtime",
            "kubernetes",
            "--kubeconfig",
            kc,
            "--ssh-port",
            kube_env::SSH_PORT,
            "--create-timeout",
            "2",
            "--kube-connect",
            "portforward",
        ]);
        // Everything the runtime does: create, tunnel, extend, delete, failures, a timeout.
        let session = server.create(None, "");
        let id = session["sessionId"].as_str().expect("id");
        let ssh = common::SshTarget::new(&server, &session, None);
        assert!(ssh.ssh("true").status.success());
        let path = format!("/v1/sessions/{id}");
        assert_eq!(
            server
                .request("PATCH", &path)
                .json(r#"{"ttl": 900}"#)
                .send()
                .status,
            200
        );
        assert_eq!(server.request("DELETE", &path).send().status, 200);
        for image in ["example.com/fail-pull:1", "example.com/never-ready:1"] {
            let body = format!(r#"{{"image": "{image}"}}"#);
            let res = server.request("POST", "/v1/sessions").json(&body).send();
            assert!(res.status >= 500, "{image}: {}", res.text());
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &emulator.id().to_string()])
        .status();
    let _ = emulator.wait();

    let text = std::fs::read_to_string(&log).expect("emulator log");
    let strip = |s: &str| {
        // Tolerates ANSI colours, should the emulator still print them.
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let mut used = BTreeSet::new();
    for line in text.lines().map(strip).filter(|l| l.contains(" request ")) {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned))
        };
        if let (Some(method), Some(uri)) = (field("method"), field("uri"))
            && let Some(rule) = rbac_of(&method, &uri)
        {
            used.insert(rule);
        }
    }
    assert!(used.len() >= 5, "too few requests seen in the log:\n{text}");
    let granted: BTreeSet<(String, String, String)> =
        pico_apiserver::runtime::kubernetes::RBAC_RULES
            .iter()
            .flat_map(|(g, r, verbs)| {
                verbs
                    .iter()
                    .map(|v| (g.to_string(), r.to_string(), v.to_string()))
            })
            .collect();
    let beyond: Vec<_> = used.difference(&granted).collect();
    assert!(
        beyond.is_empty(),
        "calls the Role does not grant: {beyond:?}"
    );
    // Granted but not seen: the fallback read of the pod's IP (the tunnel went through
    // port-forward), and port-forward's POST form (kube-rs opens the WebSocket with GET).
    let unseen: Vec<_> = granted.difference(&used).collect();
    let rule = |r: &str, v: &str| ("".to_string(), r.to_string(), v.to_string());
    assert_eq!(
        unseen,
        [&rule("pods", "get"), &rule("pods/portforward", "create")],
        "granted but never used"
    );
}
