//! Issue 14's sandbox findings, each reproduced from inside real sandboxes of a root server:
//! nothing a tenant writes reaches the next one (1), no unix socket path leads out of a
//! sandbox (3), no other session's id is visible (7), and the sandbox holds no privilege (9).

mod common;

use common::{Server, SshTarget, stderr, stdout};

/// Every directory a sandbox can write to, as one shell snippet printing them.
const WRITABLE_DIRS: &str = "find / \\( -path /proc -o -path /sys -o -path /dev/pts \\) -prune \
     -o -type d -writable -print 2>/dev/null";

fn run(target: &SshTarget, command: &str) -> String {
    let output = target.ssh(command);
    assert!(
        output.status.success(),
        "{command}\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Finding 1: a new session never sees what a deleted one left (files in any writable
/// directory, its uid, its keyring), and a sandbox cannot use the kernel keyrings at all.
#[test]
#[ignore = "needs root"]
fn nothing_of_a_deleted_session_reaches_the_next_one() {
    let server = Server::start(&[]);
    let a = server.create(None, "");
    let ssh_a = SshTarget::new(&server, &a, None);
    let a_id = a["sessionId"].as_str().expect("id");
    let marker = format!("pico-left-by-{}", &a_id[..8]);
    // A leaves a private marker in every directory it can write to.
    let planted = run(
        &ssh_a,
        &format!(
            "n=0; for d in $({WRITABLE_DIRS}); do \
               (umask 077; echo secret > \"$d/{marker}\") 2>/dev/null && n=$((n+1)); done; \
             echo planted=$n uid=$(id -u)"
        ),
    );
    assert!(planted.contains("planted="), "{planted}");
    // The kernel keyrings are per uid and outlive every process: A may not use them.
    let keyring = run(
        &ssh_a,
        r#"python3 -c 'import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
r = libc.syscall(248, b"user", b"pico", b"secret", 6, -4)
print("add_key", "ok" if r >= 0 else os.strerror(ctypes.get_errno()))'"#,
    );
    assert!(
        !keyring.contains("add_key ok"),
        "a sandbox can store a key in its uid's keyring: {keyring}"
    );
    let deleted = server
        .request("DELETE", &format!("/v1/sessions/{a_id}"))
        .send();
    assert_eq!(deleted.status, 200, "{}", deleted.text());

    let b = server.create(None, "");
    let ssh_b = SshTarget::new(&server, &b, None);
    let seen = run(
        &ssh_b,
        &format!(
            "find / \\( -path /proc -o -path /sys \\) -prune -o -name {marker} -print \
             2>/dev/null; echo uid=$(id -u)"
        ),
    );
    let uid_of = |text: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("uid="))
            .map(str::to_owned)
    };
    assert_ne!(
        uid_of(&planted),
        uid_of(&seen),
        "the next session got the deleted one's uid"
    );
    assert!(
        !seen.contains(&marker),
        "the next session sees what the deleted one left: {seen}"
    );
    // Nothing on the host outside the session's own directory holds A's markers either.
    let host = std::process::Command::new("find")
        .args(["/var/tmp", "/run", "/dev/shm", "-name", &marker])
        .output()
        .expect("find");
    assert_eq!(stdout(&host), "", "A's files are left on the host");
}

/// Finding 3: sandbox B's unix socket (in any writable directory, or abstract) and a
/// world-writable socket of the host are unreachable from sandbox A.
#[test]
#[ignore = "needs root"]
fn no_unix_socket_leads_out_of_a_sandbox() {
    // World-writable host sockets: one under /run, one elsewhere (here /var/cache).
    let host_dirs: Vec<tempfile::TempDir> = ["/run", "/var/cache"]
        .into_iter()
        .map(|parent| {
            tempfile::Builder::new()
                .prefix("pico-sock")
                .tempdir_in(parent)
                .expect("tempdir")
        })
        .collect();
    let host_sockets: Vec<std::path::PathBuf> = host_dirs
        .iter()
        .map(|d| d.path().join("host.sock"))
        .collect();
    let _listeners: Vec<std::os::unix::net::UnixListener> = host_sockets
        .iter()
        .map(|path| std::os::unix::net::UnixListener::bind(path).expect("bind"))
        .collect();
    for path in host_dirs
        .iter()
        .map(|d| d.path())
        .chain(host_sockets.iter().map(|p| p.as_path()))
    {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod");
    }
    let server = Server::start(&["--jwt-secret", common::SECRET]);
    let (alice, bob) = (common::token("alice"), common::token("bob"));
    let a = server.create(Some(&alice), "");
    let b = server.create(Some(&bob), "");
    let ssh_a = SshTarget::new(&server, &a, Some(&alice));
    let ssh_b = SshTarget::new(&server, &b, Some(&bob));
    // B listens in every directory it can write to, and on an abstract name.
    let listener = r#"
import socket, subprocess, sys, time
dirs = subprocess.run(["sh", "-c", sys.argv[1]], capture_output=True, text=True).stdout.split()
socks = []
for d in dirs + ["\0pico-abstract"]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(d if d.startswith("\0") else d + "/pico-b.sock")
        s.listen()
        socks.append(s)
    except OSError:
        pass
open("/tmp/listening", "w").write(str(len(socks)))
time.sleep(600)
"#;
    let listening = run(
        &ssh_b,
        &format!(
            "nohup python3 -c '{listener}' \"{WRITABLE_DIRS}\" >/dev/null 2>&1 & \
             for i in $(seq 100); do [ -s /tmp/listening ] && break; sleep 0.1; done; \
             cat /tmp/listening"
        ),
    );
    assert!(
        listening.trim().parse::<u32>().unwrap_or(0) > 0,
        "{listening}"
    );
    let probe = format!(
        r#"python3 -c 'import socket, subprocess
paths = subprocess.run(["find", "/", "-name", "pico-b.sock"], capture_output=True, text=True).stdout.split()
for p in paths + ["\0pico-abstract", "{}", "{}"]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(p)
        print("reached", repr(p))
    except OSError:
        pass'"#,
        host_sockets[0].display(),
        host_sockets[1].display()
    );
    let reached = run(&ssh_a, &probe);
    assert_eq!(reached, "", "sandbox A reaches sockets outside itself");
}

/// Finding 7: a sandbox sees its own cgroup only; no other session's id anywhere in
/// `/sys/fs/cgroup`, `/proc/*/cgroup` or the mount table.
#[test]
#[ignore = "needs root"]
fn a_sandbox_sees_no_other_sessions_id() {
    let server = Server::start(&[]);
    let a = server.create(None, "");
    let b = server.create(None, "");
    let ssh_a = SshTarget::new(&server, &a, None);
    let b_id = b["sessionId"].as_str().expect("id");
    let seen = run(
        &ssh_a,
        "find /sys/fs/cgroup 2>/dev/null; cat /proc/*/cgroup /proc/self/mountinfo 2>/dev/null",
    );
    assert!(!seen.contains(b_id), "A sees B's id:\n{seen}");
}

/// Finding 9: the agent holds no capability, no_new_privs is set and a seccomp filter is on,
/// for the agent (PID 1 of the sandbox) and every command; a host setuid binary gains nothing.
#[test]
#[ignore = "needs root"]
fn a_sandbox_holds_no_privilege() {
    // A setuid-root copy of `id` where the sandbox sees it (the host's /var/cache).
    let dir = tempfile::Builder::new()
        .prefix("pico-suid")
        .tempdir_in("/var/cache")
        .expect("tempdir");
    let suid = dir.path().join("id");
    std::fs::copy("/usr/bin/id", &suid).expect("copy id");
    for (path, mode) in [(dir.path(), 0o755), (suid.as_path(), 0o4755)] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .expect("chmod");
    }
    let server = Server::start(&[]);
    let a = server.create(None, "");
    let ssh_a = SshTarget::new(&server, &a, None);
    let status = run(
        &ssh_a,
        &format!(
            "for p in 1 self; do grep -E '^(Uid|CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/$p/status \
             | sed \"s/^/$p /\"; done; echo euid=$({} -u)",
            suid.display()
        ),
    );
    for who in ["1", "self"] {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{who} {name}:")))
                .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
                .unwrap_or_else(|| panic!("no {name} of {who} in {status}"))
        };
        assert_eq!(field("CapEff"), "0000000000000000", "{who}: {status}");
        assert_eq!(field("CapPrm"), "0000000000000000", "{who}: {status}");
        assert_eq!(field("NoNewPrivs"), "1", "{who}: {status}");
        assert_eq!(field("Seccomp"), "2", "{who}: {status}");
        assert_ne!(field("Uid"), "0", "{who} runs as root: {status}");
    }
    assert!(
        !status.contains("euid=0"),
        "a setuid binary gained root: {status}"
    );
    // What the filter refuses (bpf, userfaultfd, mount, unshare) fails with EPERM.
    let refused = run(
        &ssh_a,
        r#"python3 -c 'import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
calls = [("bpf", 321, (0, 0, 0)), ("userfaultfd", 323, (0,)),
         ("mount", 165, (b"none", b"/tmp", b"tmpfs", 0, 0)), ("unshare", 272, (0x10000000,)),
         ("keyctl", 250, (0, -4, 0))]
for name, nr, args in calls:
    r = libc.syscall(nr, *args)
    print(name, "ok" if r >= 0 else os.strerror(ctypes.get_errno()))'"#,
    );
    for line in refused.lines() {
        assert!(!line.ends_with(" ok"), "a sandbox may call {line}");
    }
}
