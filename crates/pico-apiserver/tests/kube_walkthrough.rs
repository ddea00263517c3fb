//! The k8s/README.md walkthrough's commands against the emulator with real kubectl:
//! `make k8s-deploy` (scripts/k8s-deploy.sh) refuses to go on without the JWT Secret or the
//! agent client key Secret and says how to make each, then applies k8s/; a server started as
//! the README says (`--kubeconfig … --namespace=sandboxes`) runs sessions in the restricted
//! namespace.

mod common;
#[path = "common/kube.rs"]
mod kube_env;

use std::process::{Command, Output};

use common::{SshTarget, repo_root};
use kube_env::{AGENT_IMAGE, Cluster, object_name};

fn deploy(cluster: &Cluster) -> Output {
    Command::new(repo_root().join("scripts/k8s-deploy.sh"))
        .env("KUBECONFIG", &cluster.kubeconfig)
        // The emulator runs no Deployments: there is no rollout to wait for.
        .env("PICO_ROLLOUT_TIMEOUT", "0")
        .output()
        .expect("run scripts/k8s-deploy.sh")
}

#[test]
fn kube_deploy_script_needs_the_jwt_secret_then_applies_everything() {
    let cluster = Cluster::start();
    let out = deploy(&cluster);
    assert!(!out.status.success(), "deployed without the JWT Secret");
    let err = common::stderr(&out);
    assert!(
        err.contains("pico-jwt is missing")
            && err.contains("kubectl -n pico-apiserver create secret generic pico-jwt"),
        "{err}"
    );
    assert!(cluster.get("deployment", "pico-apiserver").is_none());

    // The README's command, with a fixed secret instead of `openssl rand`.
    let out = cluster.kubectl(&[
        "-n",
        "pico-apiserver",
        "create",
        "secret",
        "generic",
        "pico-jwt",
        "--from-literal=secret=walkthrough",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));

    // Then the agent client key that every replica shares, made as the README says.
    let out = deploy(&cluster);
    assert!(
        !out.status.success(),
        "deployed without the agent key Secret"
    );
    let err = common::stderr(&out);
    assert!(
        err.contains("pico-agent-client-key is missing") && err.contains("ssh-keygen"),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key");
    common::ssh_keygen(&key);
    let from_file = format!("--from-file=key={}", key.display());
    let out = cluster.kubectl(&[
        "-n",
        "pico-apiserver",
        "create",
        "secret",
        "generic",
        "pico-agent-client-key",
        &from_file,
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let out = deploy(&cluster);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let deployment = cluster.kubectl(&[
        "-n",
        "pico-apiserver",
        "get",
        "deployment",
        "pico-apiserver",
        "-o",
        "json",
    ]);
    assert!(
        deployment.status.success(),
        "{}",
        common::stderr(&deployment)
    );
    let deployment: serde_json::Value =
        serde_json::from_slice(&deployment.stdout).expect("kubectl JSON");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    // The image `make image` tags and `make kind-load` loads, used as loaded.
    assert_eq!(container["image"], AGENT_IMAGE);
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        args.contains(&format!("--agent-image={AGENT_IMAGE}").as_str()),
        "{args:?}"
    );
    assert!(args.contains(&"--namespace=sandboxes"), "{args:?}");
    let out = cluster.kubectl(&["-n", "sandboxes", "get", "networkpolicy", "pico-sandboxes"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn kube_server_from_a_kubeconfig_runs_sessions_in_the_sandboxes_namespace() {
    let cluster = Cluster::start();
    let ns = repo_root().join("k8s/00-namespace.yaml");
    let out = cluster.kubectl(&["apply", "-f", ns.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    // As the README: no --runtime (a kubeconfig picks Kubernetes), no --ssh-port (2222).
    let kubeconfig = format!("--kubeconfig={}", cluster.kubeconfig.display());
    let server = common::Server::start(&[&kubeconfig, "--namespace=sandboxes"]);
    let session = server.create(None, "");
    assert_eq!(session["status"], "running", "{session}");
    let name = object_name(&session);
    let out = cluster.kubectl(&["-n", "sandboxes", "get", "pod", &name]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let ssh = SshTarget::new(&server, &session, None);
    let out = ssh.ssh("echo from sandboxes");
    assert!(out.status.success(), "ssh: {}", common::stderr(&out));
}
