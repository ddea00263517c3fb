//! Creates of different sessions do not wait for each other: one create whose agent never
//! says `ready` holds up nothing but itself.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Server;

#[test]
fn a_stuck_create_does_not_hold_up_twenty_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("stuck");
    let agent = dir.path().join("agent");
    // The first agent started (claimed atomically by mkdir) hangs without saying ready; every
    // other one is the real agent.
    common::write_mode(
        &agent,
        &format!(
            "#!/bin/sh\nmkdir {} 2>/dev/null && exec sleep 600\nexec {} \"$@\"\n",
            marker.display(),
            common::agent_binary().display()
        ),
        0o755,
    );
    let agent = agent.display().to_string();
    // Long enough that the stuck create is still waiting when the others are done.
    // 21 sessions of one user: more than the default quota of a small machine.
    let server = Server::start(&[
        "--agent-binary",
        &agent,
        "--create-timeout",
        "300",
        "--max-sessions-per-user",
        "0",
    ]);

    let (stuck_done, stuck_answer) = mpsc::channel();
    let stuck = server.request("POST", "/v1/sessions");
    std::thread::spawn(move || {
        let _ = stuck_done.send(stuck.send().status);
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the stuck agent never started");
        std::thread::sleep(Duration::from_millis(20));
    }

    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let creates: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| server.request("POST", "/v1/sessions").send().status))
            .collect();
        creates
            .into_iter()
            .map(|c| c.join().expect("create thread"))
            .collect()
    });
    assert_eq!(statuses, vec![200; 20], "{}", server.logs());
    assert!(
        stuck_answer.try_recv().is_err(),
        "the stuck create answered before the others were done"
    );
    let list = server
        .request("GET", "/v1/sessions?limit=100")
        .send()
        .json();
    assert_eq!(list["total"], 21, "{list}");
}
