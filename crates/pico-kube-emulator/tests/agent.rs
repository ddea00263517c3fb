//! A Sandbox whose container runs `pico-agent serve` gets a real agent on its pod IP.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::{is_ready, sandboxes, wait_for};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, LogParams, PostParams};
use pico_kube_emulator::{EmulatorConfig, default_agent_binary};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// The pico-agent binary: `PICO_AGENT_BINARY`, or the workspace's, built here when missing.
fn agent_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PICO_AGENT_BINARY") {
        return Some(PathBuf::from(p));
    }
    let bin = default_agent_binary();
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-p", "pico-agent"])
            .status();
        if !built.is_ok_and(|s| s.success()) {
            return None;
        }
    }
    bin.exists().then_some(bin)
}

fn keygen(dir: &Path, name: &str) -> (Vec<u8>, Vec<u8>) {
    let path = dir.join(name);
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status();
    assert!(
        ok.is_ok_and(|s| s.success()),
        "ssh-keygen failed (is openssh-client installed?)"
    );
    let private = std::fs::read(&path).expect("private key");
    let public = std::fs::read(path.with_extension("pub")).expect("public key");
    (private, public)
}

fn sandbox_with_agent(name: &str) -> DynamicObject {
    let mut obj = DynamicObject::new(name, &common::sandbox_resource("v1beta1"));
    obj.data = json!({"spec": {"podTemplate": {"spec": {
        "initContainers": [{
            "name": "install-agent", "image": "pico/agent:dev",
            "command": ["/pico-agent", "install", "/opt/pico"],
            "volumeMounts": [{"name": "agent-bin", "mountPath": "/opt/pico"}],
        }],
        "containers": [{
            "name": "sandbox", "image": "debian:stable",
            "command": ["/opt/pico/pico-agent"],
            "args": ["serve", "--listen", "0.0.0.0:2222",
                     "--host-key", "/etc/pico/ssh_host_ed25519_key",
                     "--authorized-keys", "/etc/pico/authorized_keys",
                     "--username", "sandbox", "--home", "/home/sandbox"],
            "ports": [{"containerPort": 2222, "name": "ssh"}],
            "volumeMounts": [
                {"name": "keys", "mountPath": "/etc/pico", "readOnly": true},
                {"name": "agent-bin", "mountPath": "/opt/pico"},
            ],
        }],
        "volumes": [
            {"name": "keys", "secret": {"secretName": format!("{name}-keys"), "defaultMode": 0o400}},
            {"name": "agent-bin", "emptyDir": {}},
        ],
    }}}});
    obj
}

#[tokio::test]
async fn pico_agent_sandbox_serves_ssh_on_its_pod_ip() {
    let agent = agent_binary()
        .expect("no pico-agent binary (cargo build -p pico-agent failed); set PICO_AGENT_BINARY");
    let config = EmulatorConfig {
        agent_binary: Some(agent),
        ..EmulatorConfig::default()
    };
    let (emu, client) = common::start_with(config).await;
    let beta = sandboxes(&client, "v1beta1");
    // The Sandbox comes first and its Secret after (it is owned by the Sandbox, so needs its
    // uid): the kubelet must wait for the Secret, as a real one does.
    let sb = beta
        .create(&PostParams::default(), &sandbox_with_agent("agent-1"))
        .await
        .expect("create sandbox");
    let tmp = tempfile::tempdir().expect("tmp");
    let (host_private, host_public) = keygen(tmp.path(), "host");
    let (_, user_public) = keygen(tmp.path(), "user");
    let user_key = tmp.path().join("user");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "agent-1-keys", "ownerReferences": [{
            "apiVersion": "agents.x-k8s.io/v1beta1", "kind": "Sandbox", "name": "agent-1",
            "uid": sb.metadata.uid, "controller": false,
        }]},
        "data": {"ssh_host_ed25519_key": b64(&host_private), "authorized_keys": b64(&user_public)},
    }))
    .expect("secret");
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");

    let ready = wait_for(&beta, "agent-1", is_ready).await;
    let ip = ready.data["status"]["podIPs"][0]
        .as_str()
        .expect("pod ip")
        .to_string();
    let mut conn = tokio::net::TcpStream::connect((ip.as_str(), 2222))
        .await
        .expect("connect to the agent");
    let mut banner = [0u8; 8];
    tokio::time::timeout(common::WAIT, conn.read_exact(&mut banner))
        .await
        .expect("banner in time")
        .expect("read banner");
    assert_eq!(&banner, b"SSH-2.0-");
    drop(conn);

    // The host key the agent presents is the one from the Secret.
    let scan = Command::new("ssh-keyscan")
        .args(["-p", "2222", "-t", "ed25519", &ip])
        .output();
    if let Ok(out) = scan {
        let host_key_b64 = String::from_utf8_lossy(&host_public)
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&host_key_b64),
            "ssh-keyscan shows the Secret's host key"
        );
    }

    // OpenSSH logs in with the key from the Secret's authorized_keys and runs a command.
    let ssh = tokio::process::Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "ConnectTimeout=10", "-p", "2222", "-i"])
        .arg(&user_key)
        .arg(format!("sandbox@{ip}"))
        .arg("echo emulated-$((40+2))")
        .output();
    let out = tokio::time::timeout(common::WAIT, ssh)
        .await
        .expect("ssh in time")
        .expect("run ssh");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "emulated-42",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The agent's output is the pod's log.
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let log = pods
        .logs("agent-1", &LogParams::default())
        .await
        .expect("logs");
    assert!(log.lines().any(|l| l == "ready"), "{log}");

    // Deleting the Sandbox stops the agent: pod, Secret and process are gone.
    beta.delete("agent-1", &DeleteParams::default())
        .await
        .expect("delete");
    common::wait_gone(&pods, "agent-1").await;
    assert!(
        secrets
            .get_opt("agent-1-keys")
            .await
            .expect("get")
            .is_none(),
        "secret garbage-collected"
    );
    emu.shutdown().await;
    let refused = tokio::net::TcpStream::connect((ip.as_str(), 2222)).await;
    assert!(refused.is_err(), "agent process was stopped");
}

#[tokio::test]
async fn failing_agent_fails_the_pod_with_its_last_words() {
    let agent = agent_binary()
        .expect("no pico-agent binary (cargo build -p pico-agent failed); set PICO_AGENT_BINARY");
    let config = EmulatorConfig {
        agent_binary: Some(agent),
        ..EmulatorConfig::default()
    };
    let (emu, client) = common::start_with(config).await;
    let beta = sandboxes(&client, "v1beta1");
    let mut obj = DynamicObject::new("broken", &common::sandbox_resource("v1beta1"));
    obj.data = json!({"spec": {"podTemplate": {"spec": {"containers": [{
        "name": "sandbox", "image": "debian:stable",
        "command": ["pico-agent", "serve", "--host-key", "/nonexistent/key", "--authorized-keys", "/nonexistent/ak"],
    }]}}}});
    beta.create(&PostParams::default(), &obj)
        .await
        .expect("create");
    let finished = wait_for(&beta, "broken", |o: Option<&DynamicObject>| {
        common::condition_is(o, "Finished", "True")
    })
    .await;
    // Ready says `PodFailed: Pod failed` as upstream; Finished carries the pod's last words.
    let conditions = finished.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = conditions.iter().find(|c| c["type"] == "Ready");
    assert_eq!(ready.map(|c| c["reason"].clone()), Some(json!("PodFailed")));
    let msg = conditions
        .iter()
        .find(|c| c["type"] == "Finished")
        .and_then(|c| c["message"].as_str())
        .unwrap_or("")
        .to_string();
    assert!(
        msg.contains("exited with code 1") && msg.contains("host-key"),
        "{msg}"
    );
    let pods: Api<Pod> = Api::default_namespaced(client);
    let pod = pods.get("broken").await.expect("pod");
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Failed"));
    emu.shutdown().await;
}
