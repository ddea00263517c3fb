//! The cluster as the source of truth: two replicas share every session, and a replica
//! killed with SIGKILL and started again (without any local state) loses nothing.

mod common;
#[path = "common/kube.rs"]
mod kube_env;

use common::{SshTarget, stdout, token};
use kube_env::{Cluster, object_name};

const SECRET_ARGS: [&str; 2] = ["--jwt-secret", common::SECRET];

fn ssh_ok(ssh: &SshTarget, command: &str) -> String {
    let out = ssh.ssh(command);
    assert!(out.status.success(), "ssh: {}", common::stderr(&out));
    stdout(&out)
}

#[test]
fn kube_two_replicas_share_sessions() {
    let cluster = Cluster::start();
    let a = cluster.server(&SECRET_ARGS);
    let b = cluster.server(&SECRET_ARGS);
    let (alice, bob) = (token("alice"), token("bob"));

    let session = a.create(Some(&alice), r#"{"metadata": {"via": "a"}}"#);
    let id = session["sessionId"].as_str().expect("id");

    // B lists and gets it, for its owner only.
    let list = b
        .request("GET", "/v1/sessions")
        .bearer(&alice)
        .send()
        .json();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["sessions"][0]["sessionId"], id);
    assert_eq!(list["sessions"][0]["metadata"]["via"], "a");
    assert_eq!(list["sessions"][0]["status"], "running");
    let list = b.request("GET", "/v1/sessions").bearer(&bob).send().json();
    assert_eq!(list["total"], 0, "{list}");
    b.request("GET", &format!("/v1/sessions/{id}"))
        .bearer(&bob)
        .send()
        .assert_error(404, "SESSION_NOT_FOUND");

    // Tunnel through B.
    let through_b = SshTarget::new(&b, &session, Some(&alice));
    assert_eq!(ssh_ok(&through_b, "echo via-b"), "via-b\n");

    // Extend through B; A sees the new expiry.
    let extended = b
        .request("PATCH", &format!("/v1/sessions/{id}"))
        .bearer(&alice)
        .json(r#"{"ttl": 7200}"#)
        .send()
        .json();
    let seen_by_a = wait_for(|| {
        let got = a
            .request("GET", &format!("/v1/sessions/{id}"))
            .bearer(&alice)
            .send()
            .json();
        (got["expiresAt"] == extended["expiresAt"]).then_some(got)
    });
    assert_eq!(seen_by_a["ttl"], 7200);

    // Delete through B: gone for A too, and from the cluster.
    let res = b
        .request("DELETE", &format!("/v1/sessions/{id}"))
        .bearer(&alice)
        .send();
    assert_eq!(res.status, 200, "{}", res.text());
    wait_for(|| {
        let res = a
            .request("GET", &format!("/v1/sessions/{id}"))
            .bearer(&alice)
            .send();
        (res.status == 404).then_some(())
    });
    assert!(cluster.get("sandboxes", &object_name(&session)).is_none());
}

#[test]
fn kube_replica_killed_and_restarted_loses_nothing() {
    let cluster = Cluster::start();
    let mut a = cluster.server(&SECRET_ARGS);
    let alice = token("alice");
    let one = a.create(Some(&alice), r#"{"ttl": 900}"#);
    let two = a.create(Some(&alice), r#"{"ttl": 1200, "metadata": {"n": 2}}"#);
    let before = a
        .request("GET", "/v1/sessions")
        .bearer(&alice)
        .send()
        .json();
    assert_eq!(before["total"], 2);

    a.kill9();
    // A fresh state directory: nothing local survives, only the cluster.
    let a = cluster.server(&SECRET_ARGS);
    let after = a
        .request("GET", "/v1/sessions")
        .bearer(&alice)
        .send()
        .json();
    assert_eq!(after["sessions"], before["sessions"]);
    let ssh = SshTarget::new(&a, &two, Some(&alice));
    assert_eq!(ssh_ok(&ssh, "echo back"), "back\n");
    let ssh = SshTarget::new(&a, &one, Some(&alice));
    assert_eq!(ssh_ok(&ssh, "echo one"), "one\n");
}

/// Polls a replica for what another replica changed (the watch delivers it in milliseconds).
fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replicas did not converge"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn kube_create_cut_short_by_kill_9_is_cleaned_up_after_restart() {
    let cluster = Cluster::start();
    let args = ["--create-timeout", "3"];
    let mut a = cluster.server(&args);
    let url = a.addr;
    let create = std::thread::spawn(move || {
        // The server dies mid-request: no answer.
        let _ = std::net::TcpStream::connect(url).map(|mut s| {
            use std::io::Write;
            let body = r#"{"image": "example.com/never-ready:1"}"#;
            let _ = write!(
                s,
                "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
        });
    });
    let name = wait_for(|| cluster.names("sandboxes").into_iter().next());
    a.kill9();
    let _ = create.join();
    assert_eq!(cluster.names("sandboxes"), std::slice::from_ref(&name));

    // The restarted server keeps the pending session while a create could still be running,
    // then removes it.
    let a = cluster.server(&args);
    let list = a.request("GET", "/v1/sessions").send().json();
    assert_eq!(list["sessions"][0]["status"], "pending", "{list}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while cluster.get("sandboxes", &name).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "abandoned Sandbox never removed"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    cluster.wait_gone("secrets", &name);
    assert_eq!(a.request("GET", "/v1/sessions").send().json()["total"], 0);
}

#[test]
fn kube_replicas_resync_after_watches_break() {
    let cluster = Cluster::start();
    let a = cluster.server(&[]);
    let b = cluster.server(&[]);
    let first = a.create(None, "");
    wait_for(|| (b.request("GET", "/v1/sessions").send().json()["total"] == 1).then_some(()));

    // Every watch is cut and the history behind it compacted: the caches must relist (410).
    cluster.emulator().compact_history();
    cluster.emulator().drop_watches();
    let second = a.create(None, "");
    let first_id = first["sessionId"].as_str().expect("id");
    let res = a
        .request("DELETE", &format!("/v1/sessions/{first_id}"))
        .send();
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = wait_for(|| {
        let list = b.request("GET", "/v1/sessions").send().json();
        (list["total"] == 1 && list["sessions"][0]["sessionId"] == second["sessionId"])
            .then_some(list)
    });
    assert_eq!(seen["sessions"][0]["status"], "running");
    let ssh = SshTarget::new(&b, &second, None);
    assert_eq!(ssh_ok(&ssh, "echo resynced"), "resynced\n");
}
