//! Issue 19 point 3: a server outside the cluster cannot route to pod IPs. The emulator's pod
//! network is made unreachable (pods report IPs nothing listens on), and the tunnel and the
//! HTTP exec still reach the sandbox through `pods/{name}/portforward`.

mod common;
#[path = "common/kube.rs"]
mod kube_env;

use common::{SshTarget, stdout};
use kube_env::{Cluster, object_name};
use pico_kube_emulator::EmulatorConfig;

fn unreachable_cluster() -> Cluster {
    Cluster::start_with(EmulatorConfig {
        pod_network_reachable: false,
        ..kube_env::strict_config()
    })
}

/// The pod IP the Sandbox reports, checked to be one that cannot be dialled.
fn dead_pod_ip(cluster: &Cluster, session: &serde_json::Value) -> String {
    let sandbox = cluster
        .get("sandboxes", &object_name(session))
        .expect("Sandbox");
    let ip = sandbox["status"]["podIPs"][0]
        .as_str()
        .or_else(|| sandbox["status"]["podIPs"][0]["ip"].as_str())
        .expect("pod IP")
        .to_owned();
    let dial = std::net::TcpStream::connect((ip.as_str(), 2222));
    assert!(dial.is_err(), "the pod network should be unreachable: {ip}");
    ip
}

fn exec(server: &common::Server, id: &str, command: &str) -> serde_json::Value {
    let body = serde_json::json!({ "command": command }).to_string();
    let res = server
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .json(&body)
        .send();
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

#[test]
fn kube_unreachable_pod_network_is_tunnelled_through_portforward() {
    let cluster = unreachable_cluster();
    // The default (`--kube-connect auto`) finds out by itself.
    let server = cluster.server(&[]);
    let session = server.create(None, "");
    assert_eq!(session["status"], "running", "{session}");
    let id = session["sessionId"].as_str().expect("id");
    dead_pod_ip(&cluster, &session);

    let ssh = SshTarget::new(&server, &session, None);
    let out = ssh.ssh("echo through the API server");
    assert!(
        out.status.success(),
        "ssh: {}\n{}",
        common::stderr(&out),
        server.logs()
    );
    assert_eq!(stdout(&out).trim(), "through the API server");
    let result = exec(&server, id, "echo exec; echo err >&2; exit 3");
    assert_eq!(result["exitCode"], 3, "{result}");
    assert_eq!(result["stdout"], "exec\n");
    assert_eq!(result["stderr"], "err\n");

    // A second session: auto has learnt, and bigger transfers survive the framing.
    let second = server.create(None, "");
    let ssh = SshTarget::new(&server, &second, None);
    let out = ssh.ssh("head -c 3000000 /dev/zero | tr '\\0' x | wc -c");
    assert!(out.status.success(), "ssh: {}", common::stderr(&out));
    assert_eq!(stdout(&out).trim(), "3000000");
    assert!(
        server.logs().contains("pods/portforward"),
        "the switch is logged"
    );
}

#[test]
fn kube_connect_modes_are_honoured() {
    let cluster = unreachable_cluster();
    let direct = cluster.server(&["--kube-connect", "direct"]);
    let session = direct.create(None, "");
    dead_pod_ip(&cluster, &session);
    let id = session["sessionId"].as_str().expect("id");
    let res = direct
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .json(r#"{"command": "true"}"#)
        .send();
    res.assert_error(502, "SANDBOX_UNREACHABLE");

    let forward = cluster.server(&["--kube-connect", "portforward"]);
    let session = forward.create(None, "");
    let id = session["sessionId"].as_str().expect("id");
    let result = exec(&forward, id, "echo ok");
    assert_eq!(result["stdout"], "ok\n", "{result}");
}
