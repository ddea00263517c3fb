//! Faults: the server killed in the middle of a create, a state directory that cannot be
//! made, and a disk that fills up. Each ends in a clear error or a clean state, never in
//! corruption or orphans.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, SshTarget, stdout};

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn agents_of(state_dir: &Path) -> usize {
    let needle = state_dir.display().to_string();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .chars()
                        .all(|c| c.is_ascii_digit())
                })
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .map(|cmd| String::from_utf8_lossy(&cmd).into_owned())
                // Sandboxes name the state directory; the server itself does not count.
                .filter(|cmd| cmd.contains(&needle) && !cmd.contains("pico-apiserver"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn kill_9_in_the_middle_of_a_create_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = dir.path().join("slow-agent");
    common::write_mode(
        &slow,
        &format!(
            "#!/bin/sh\nsleep 3\nexec {} \"$@\"\n",
            common::agent_binary().display()
        ),
        0o755,
    );
    let slow_arg = slow.display().to_string();
    let mut server = Server::start(&["--agent-binary", &slow_arg]);
    let state_dir = server.state_dir.clone();
    let addr = server.addr;
    let creating = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        use std::io::{Read, Write};
        let _ = stream.write_all(
            b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
        );
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    });
    // The sandbox is being started: its directory and (slow) agent exist.
    wait_for("the half-made sandbox", || {
        std::fs::read_dir(state_dir.join("sessions"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
            && agents_of(&state_dir) > 0
    });
    server.kill9();
    let _ = creating.join();

    let restarted = Server::start_in(&state_dir, &[]);
    let list = restarted.request("GET", "/v1/sessions").send().json();
    assert_eq!(list["total"], 0, "a half-made session survived: {list}");
    let left = std::fs::read_dir(state_dir.join("sessions"))
        .expect("dir")
        .count();
    assert_eq!(left, 0, "a half-made sandbox's files survived");
    wait_for("the orphan agent to be gone", || agents_of(&state_dir) == 0);
    // And the server works as before.
    let session = restarted.create(None, "");
    let output = SshTarget::new(&restarted, &session, None).ssh("echo fine");
    assert_eq!(stdout(&output), "fine\n");
}

#[test]
fn a_state_directory_that_cannot_be_made_is_a_clear_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pico-apiserver"))
        .args([
            "--port",
            "0",
            "--state-dir",
            "/proc/pico-cannot-exist/state",
        ])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot create state directory"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
#[ignore = "needs root"]
fn a_full_disk_fails_creates_cleanly_and_recovers() {
    assert!(
        common::is_root(),
        "needs root: run as root with --include-ignored"
    );
    let dir = tempfile::Builder::new()
        .prefix("p")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(dir.path())
        .status()
        .expect("mount");
    assert!(mounted.success());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .status();
        }
    }
    let _unmount = Unmount(dir.path());
    let state_dir = dir.path().join("state");
    // Homes as plain directories on the small disk (a session disk image would stop the
    // filling sandbox at its own size, see limits.rs).
    let server = Server::start_in(&state_dir, &["--session-disk", "0"]);
    let first = server.request("POST", "/v1/sessions").send();
    assert_eq!(first.status, 200, "{}\n{}", first.text(), server.logs());
    let session = first.json();
    // Fill the disk from inside the sandbox's home, which lives on it.
    let target = SshTarget::new(&server, &session, None);
    let _ = target.ssh("head -c 32M /dev/zero > ~/fill; true");
    let refused = server.request("POST", "/v1/sessions").send();
    assert!(
        refused.status >= 500,
        "create on a full disk: {} {}",
        refused.status,
        refused.text()
    );
    let body = refused.json();
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
    // The existing session is intact and can free the space; then creates work again.
    let freed = target.ssh("rm ~/fill && echo freed");
    assert_eq!(stdout(&freed), "freed\n");
    let list = server.request("GET", "/v1/sessions").send().json();
    assert_eq!(list["total"], 1, "{list}");
    let again = server.request("POST", "/v1/sessions").send();
    assert_eq!(again.status, 200, "{}\n{}", again.text(), server.logs());
    let again = again.json();
    assert_eq!(again["status"], "running");
}

#[test]
fn a_sandbox_that_cannot_be_recovered_is_failed_not_ready() {
    let mut server = Server::start(&[]);
    let state_dir = server.state_dir.clone();
    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id").to_owned();
    server.kill9();
    // Its agent dies and its host key is lost while the server is down.
    let dir = state_dir.join("sessions").join(&id);
    let pid = std::fs::read_to_string(dir.join("agent.pid")).expect("pid");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", pid.trim())])
        .status();
    std::fs::remove_file(dir.join("host_key")).expect("rm host key");

    let restarted = Server::start_in(&state_dir, &[]);
    let got = restarted
        .request("GET", &format!("/v1/sessions/{id}"))
        .send()
        .json();
    assert_eq!(got["status"], "failed", "{got}");
    let mut tunnel = std::net::TcpStream::connect(restarted.addr).expect("connect");
    use std::io::{Read, Write};
    write!(
        tunnel,
        "CONNECT /v1/sessions/{id}/tunnel HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    let _ = tunnel.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("SESSION_NOT_READY"), "{answer}");
    // A failed session can still be deleted.
    let deleted = restarted
        .request("DELETE", &format!("/v1/sessions/{id}"))
        .send();
    assert_eq!(deleted.status, 200, "{}", deleted.text());
}

#[test]
#[ignore = "needs root"]
fn a_delete_that_fails_is_reported_and_retried() {
    // chattr +i (the failure this test makes) needs CAP_LINUX_IMMUTABLE.
    assert!(
        common::is_root(),
        "needs root: run as root with --include-ignored"
    );
    let server = Server::start(&[]);
    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id").to_owned();
    let pinned = server
        .state_dir
        .join("sessions")
        .join(&id)
        .join("home/pinned");
    std::fs::write(&pinned, "x").expect("write");
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(&pinned)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(
        chattr("+i"),
        "chattr +i failed: the target directory's filesystem has no immutable files"
    );
    // An immutable file makes removing the sandbox's files fail.
    let refused = server
        .request("DELETE", &format!("/v1/sessions/{id}"))
        .send();
    let _ = chattr("-i");
    refused.assert_error(500, "SANDBOX_DELETE_FAILED");
    // The reaper retries; once the file can go, the session is gone.
    wait_for("the reaper's retry", || {
        server
            .request("GET", &format!("/v1/sessions/{id}"))
            .send()
            .status
            == 404
    });
    assert!(!server.state_dir.join("sessions").join(&id).exists());
}
