//! Issue 12.5 at the agent: an isolated agent ends its sandbox once it has lost its purpose,
//! when its socket goes, or when its session expired `--orphan-grace` ago while no server
//! touched the heartbeat file; a fresh heartbeat keeps an expired sandbox for its server.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Agent, Options, eventually, processes_matching};

const GRACE: u64 = 3;

fn isolated(extra: &[String]) -> Agent {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["--isolate".to_owned()];
    args.extend(extra.iter().cloned());
    Agent::start_with(Options {
        extra: args,
        unix: true,
        dir: Some(dir),
        ..Options::default()
    })
}

fn running(agent: &Agent) -> bool {
    !processes_matching(&agent.dir.path().display().to_string()).is_empty()
}

/// The session expires now (the grace still lets the agent start), written where the agent
/// reads it; with a heartbeat file touched now when `heartbeat`.
fn expiring_args(dir: &std::path::Path, heartbeat: bool) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expires = dir.join("expires_at");
    std::fs::write(&expires, now.to_string()).expect("expires");
    let beat = dir.join("heartbeat");
    if heartbeat {
        std::fs::write(&beat, "").expect("heartbeat");
    }
    vec![
        "--expires-file".into(),
        expires.display().to_string(),
        "--heartbeat-file".into(),
        beat.display().to_string(),
        "--orphan-grace".into(),
        GRACE.to_string(),
    ]
}

#[test]
fn an_agent_whose_socket_is_removed_ends_its_sandbox() {
    let agent = isolated(&[]);
    assert!(running(&agent));
    std::fs::remove_file(agent.socket.as_ref().expect("socket")).expect("remove socket");
    eventually("the agent to exit", Duration::from_secs(20), || {
        !running(&agent)
    });
}

#[test]
fn an_expired_agent_without_a_server_ends_and_one_with_a_heartbeat_stays() {
    let shared = tempfile::tempdir().expect("tempdir");
    let orphan_dir = shared.path().join("orphan");
    let adopted_dir = shared.path().join("adopted");
    for dir in [&orphan_dir, &adopted_dir] {
        std::fs::create_dir(dir).expect("dir");
    }
    let orphan = isolated(&expiring_args(&orphan_dir, false));
    let adopted = isolated(&expiring_args(&adopted_dir, true));
    // The server of `adopted` lives: it keeps touching the heartbeat.
    let beat = std::fs::File::options()
        .write(true)
        .open(adopted_dir.join("heartbeat"))
        .expect("heartbeat");
    eventually("the orphan to exit", Duration::from_secs(20), || {
        beat.set_modified(SystemTime::now()).expect("touch");
        !running(&orphan)
    });
    // Past the grace for certain, still beating.
    for _ in 0..(GRACE * 4) {
        beat.set_modified(SystemTime::now()).expect("touch");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        running(&adopted),
        "an expired agent whose server is alive exited"
    );
}
