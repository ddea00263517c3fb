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
