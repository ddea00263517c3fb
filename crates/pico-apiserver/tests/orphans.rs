//! Issue 12.5: an agent never outlives its purpose. When its server is gone for good (kill -9,
//! then its state directory removed), the agent exits and takes the sandbox's processes
//! with it; while the server is merely down, the agent stays for the next one to adopt.

mod common;

use std::time::{Duration, Instant};

use common::{Server, SshTarget, stderr, stdout};

/// Pids whose command line contains `needle`.
fn processes_matching(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn agents_exit_when_their_state_directory_is_removed() {
    let mut server = Server::start(&[]);
    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id").to_owned();
    let ssh = SshTarget::new(&server, &session, None);
    // A process of the sandbox that would run for ten minutes, marked so it can be found.
    let marker = format!("pico-orphan-{}", &id[..8]);
    let started = ssh.ssh(&format!(
        "nohup python3 -c 'import time; time.sleep(600)' {marker} >/dev/null 2>&1 & echo started"
    ));
    assert_eq!(stdout(&started), "started\n", "{}", stderr(&started));
    wait_until("the marked process", Duration::from_secs(10), || {
        !processes_matching(&marker).is_empty()
    });
    server.kill9();
    // Only killed: the agent waits for a server to adopt it.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !processes_matching(&id).is_empty(),
        "the agent exited while its server was only down"
    );
    std::fs::remove_dir_all(&server.state_dir).expect("remove the state directory");
    wait_until(
        "the agent and its processes to exit",
        Duration::from_secs(30),
        || processes_matching(&id).is_empty() && processes_matching(&marker).is_empty(),
    );
}
