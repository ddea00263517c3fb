//! Per-session memory and process limits of the local runtime (cgroups; root only): a
//! sandbox that forks or allocates without end is stopped at its limit, and it and the
//! server stay usable.

mod common;

use common::{Server, SshTarget, stderr, stdout};

#[test]
#[ignore = "needs root"]
fn a_sandbox_is_held_to_its_memory_and_process_limits() {
    assert!(
        common::is_root(),
        "needs root: run as root with --include-ignored"
    );
    let server = Server::start(&["--session-memory", "96M", "--session-pids", "40"]);
    let session = server.create(None, "");
    let ssh = SshTarget::new(&server, &session, None);

    // Far more processes than allowed: forks start failing at the limit (perl, because a
    // shell gives up entirely when it cannot fork).
    let forks = ssh.ssh(
        "perl -e 'my @kids; for (1..100) { my $p = fork; last unless defined $p; \
         if ($p == 0) { sleep 60; exit 0 } push @kids, $p } \
         print \"started=\", scalar(@kids), \"\\n\"; kill 9, @kids; waitpid($_, 0) for @kids'",
    );
    let text = stdout(&forks);
    let started: u32 = text
        .trim()
        .strip_prefix("started=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}\n{}", stderr(&forks)));
    assert!(
        started < 40,
        "{started} processes started in a sandbox limited to 40"
    );
    assert!(started >= 20, "only {started} processes started");

    // Allocating past the memory limit kills the allocating process, not the sandbox.
    let hog = ssh.ssh("perl -e '$x = \"a\" x (400 * 1024 * 1024); print length($x)'");
    assert_ne!(hog.status.code(), Some(0), "{}", stdout(&hog));
    assert!(
        !stdout(&hog).contains("419430400"),
        "allocated past the limit"
    );
    let after = ssh.ssh("echo still here");
    assert_eq!(stdout(&after), "still here\n", "{}", stderr(&after));
    assert_eq!(server.request("GET", "/health").send().status, 200);
}

/// Finding 14.4: `--session-disk` bounds everything a sandbox can write, home and scratch
/// directories together: past it writes fail with ENOSPC inside, the host's file holding
/// the disk stays within the size, and the files survive a restart of the server.
#[test]
#[ignore = "needs root"]
fn a_sandbox_is_held_to_its_disk_size() {
    let mut server = Server::start(&["--session-disk", "64M"]);
    let session = server.create(None, "");
    let ssh = SshTarget::new(&server, &session, None);
    let id = session["sessionId"].as_str().expect("id");
    let filled = ssh.ssh(
        "dd if=/dev/zero of=$HOME/big bs=1M count=40 2>/dev/null && echo home-ok; \
         for d in /tmp /var/tmp /run/lock; do \
           dd if=/dev/zero of=$d/big bs=1M count=40 2>&1 | grep -o 'No space left on device' | head -1; \
         done; echo kept > $HOME/keep.txt; df -m $HOME | tail -1",
    );
    let text = stdout(&filled);
    assert!(text.contains("home-ok"), "{text}\n{}", stderr(&filled));
    assert_eq!(
        text.matches("No space left on device").count(),
        3,
        "writes beyond 64M did not fail with ENOSPC:\n{text}"
    );
    let sessions = server.state_dir.join("sessions").join(id);
    let mut on_host = 0;
    for entry in walk(&sessions) {
        use std::os::unix::fs::MetadataExt;
        on_host += entry.blocks() * 512;
    }
    assert!(
        on_host <= 80 << 20,
        "the session takes {on_host} bytes on the host"
    );
    // The disk and its files outlive the server.
    let state_dir = server.state_dir.clone();
    server.kill9();
    common::kill_agents(&state_dir);
    let restarted = Server::start_in(&state_dir, &["--session-disk", "64M"]);
    let again = SshTarget::new(&restarted, &session, None);
    let kept = again.ssh("cat ~/keep.txt; ls /tmp | wc -l");
    assert_eq!(stdout(&kept), "kept\n0\n", "{}", stderr(&kept));
}

/// Metadata of every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::fs::Metadata> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            all.extend(walk(&entry.path()));
        }
        all.push(meta);
    }
    all
}

/// Finding 14.6: a sandbox's processes share `--session-cpus` (default 1) through the
/// CPU controller's quota, which the agent and all it starts are counted against.
#[test]
#[ignore = "needs root"]
fn a_sandbox_is_held_to_its_cpu_quota() {
    let server = Server::start(&["--session-cpus", "0.5"]);
    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id");
    let ssh = SshTarget::new(&server, &session, None);
    let started = ssh.ssh("sleep 300 >/dev/null 2>&1 & echo $!");
    assert!(started.status.success(), "{}", stderr(&started));
    let groups = std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
        .map(|e| e.path())
        .collect::<Vec<_>>();
    let (v2, v1) = (
        std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").is_file(),
        groups.iter().any(|p| p.ends_with("cpu")),
    );
    assert!(v2 || v1, "no cpu controller on this host");
    let found = find_dir(std::path::Path::new("/sys/fs/cgroup"), id, 4);
    let cpu_dir = found
        .iter()
        .find(|d| d.join("cpu.max").is_file() || d.join("cpu.cfs_quota_us").is_file())
        .unwrap_or_else(|| panic!("no cpu group of {id} in {found:?}"));
    let quota = if v2 {
        std::fs::read_to_string(cpu_dir.join("cpu.max")).expect("cpu.max")
    } else {
        let quota = std::fs::read_to_string(cpu_dir.join("cpu.cfs_quota_us")).expect("quota");
        let period = std::fs::read_to_string(cpu_dir.join("cpu.cfs_period_us")).expect("period");
        format!("{} {}", quota.trim(), period.trim())
    };
    assert_eq!(quota.trim(), "50000 100000", "cpu quota of {id}");
    let procs = std::fs::read_to_string(cpu_dir.join("cgroup.procs")).expect("procs");
    assert!(
        procs.lines().count() >= 3,
        "the sandbox's processes are not in its cpu group: {procs:?}"
    );
}

/// Directories named `name` under `dir`, at most `depth` levels down.
fn find_dir(dir: &std::path::Path, name: &str, depth: u32) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if entry.file_name().to_string_lossy() == name {
            found.push(path);
        } else if depth > 0 {
            found.extend(find_dir(&path, name, depth - 1));
        }
    }
    found
}

/// Finding 14.6: without `--max-sessions-per-user` a user holds only what fits the machine
/// (twice its memory over `--session-memory`): with sessions as large as the machine, two.
#[test]
fn the_default_session_quota_fits_the_machine() {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal");
    let memory = format!("{}K", kib);
    let server = Server::start(&["--session-memory", &memory, "--session-disk", "0"]);
    for _ in 0..2 {
        server.create(None, "");
    }
    server
        .request("POST", "/v1/sessions")
        .send()
        .assert_error(429, "QUOTA_EXCEEDED");
}
