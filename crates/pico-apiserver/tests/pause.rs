//! Pause and resume, black-box (also run on the Kubernetes emulator by `make test-kube`,
//! except the two tests that look at a local sandbox's processes from the host).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{SECRET, Server, SshTarget, stderr, stdout, token};
use serde_json::{Value, json};

fn id_of(session: &Value) -> String {
    session["sessionId"].as_str().expect("id").to_owned()
}

fn post(server: &Server, path: &str) -> Value {
    let res = server.request("POST", path).send();
    assert_eq!(res.status, 200, "{path}: {}", res.text());
    res.json()
}

fn status(server: &Server, id: &str) -> String {
    let session = server
        .request("GET", &format!("/v1/sessions/{id}"))
        .send()
        .json();
    session["status"].as_str().unwrap_or("").to_owned()
}

fn exec(server: &Server, id: &str, command: &str) -> Value {
    let res = server
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .json(&json!({ "command": command }).to_string())
        .send();
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

/// Waits (bounded) until `check` holds, polling.
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The loop that counts in `~/count`, started so that it outlives the exec call.
const COUNTER: &str = "printf 'i=0\\nwhile :; do i=$((i+1)); echo $i > ~/count.tmp; \
    mv ~/count.tmp ~/count; sleep 0.1; done\\n' > ~/counter.sh && \
    setsid sh ~/counter.sh >/dev/null 2>&1 </dev/null & echo started";

/// Where a local sandbox's `~/count` is seen from the host without entering (or waking) the
/// sandbox: through the counting process's own root.
fn count_file(server: &Server, id: &str) -> PathBuf {
    let agent: u32 =
        std::fs::read_to_string(server.state_dir.join(format!("sessions/{id}/agent.pid")))
            .expect("agent.pid")
            .trim()
            .parse()
            .expect("pid");
    let mut found = None;
    wait_for("the counting process", Duration::from_secs(20), || {
        found = processes_below(agent).into_iter().find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("counter.sh"))
        });
        found.is_some()
    });
    let pid = found.expect("counter pid");
    PathBuf::from(format!("/proc/{pid}/root/home/sandbox/count"))
}

fn processes_below(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat[stat.rfind(')').unwrap_or(0) + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.push((pid, ppid));
        }
    }
    let mut all = vec![root];
    let mut next = 0;
    while next < all.len() {
        let parent = all[next];
        all.extend(
            parent_of
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        next += 1;
    }
    all
}

fn read_count(path: &PathBuf) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_paused_sandbox_stops_and_continues_where_it_was() {
    let server = Server::start(&[]);
    let session = server.create(None, "");
    let id = id_of(&session);
    assert_eq!(exec(&server, &id, COUNTER)["stdout"], "started\n");
    let count = count_file(&server, &id);
    wait_for("the loop to count", Duration::from_secs(20), || {
        read_count(&count) >= 3
    });

    let paused = post(&server, &format!("/v1/sessions/{id}/pause"));
    assert_eq!(paused["status"], "paused", "{paused}");
    assert!(paused["pausedAt"].is_string(), "{paused}");
    let at_pause = read_count(&count);
    // The loop would count ten times in this second; frozen, it does not count at all.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        read_count(&count),
        at_pause,
        "the loop counted while paused"
    );
    // Pausing again is a no-op that answers with the session.
    assert_eq!(
        post(&server, &format!("/v1/sessions/{id}/pause"))["status"],
        "paused"
    );
    assert_eq!(status(&server, &id), "paused");

    let resumed = post(&server, &format!("/v1/sessions/{id}/resume"));
    assert_eq!(resumed["status"], "running", "{resumed}");
    assert!(resumed["pausedAt"].is_null(), "{resumed}");
    wait_for("the loop to count again", Duration::from_secs(20), || {
        read_count(&count) > at_pause
    });
    // The same process continues its count: a restarted loop would begin again at 1.
    assert!(read_count(&count) > at_pause);
    assert_eq!(
        post(&server, &format!("/v1/sessions/{id}/resume"))["status"],
        "running"
    );
}

#[test]
fn files_survive_a_pause_and_calls_resume_it_first() {
    let server = Server::start(&[]);
    let session = server.create(None, "");
    let id = id_of(&session);
    exec(&server, &id, "echo kept > ~/kept.txt");

    assert_eq!(
        post(&server, &format!("/v1/sessions/{id}/pause"))["status"],
        "paused"
    );
    let metrics = server.request("GET", "/metrics").send().text();
    assert!(
        metrics.contains("pico_sessions{status=\"paused\"} 1"),
        "{metrics}"
    );
    // An exec call resumes the session and then runs.
    let result = exec(&server, &id, "cat ~/kept.txt");
    assert_eq!(result["stdout"], "kept\n", "{result}");
    assert_eq!(status(&server, &id), "running");

    // So does a tunnel: ssh to a paused session just works.
    post(&server, &format!("/v1/sessions/{id}/pause"));
    let target = SshTarget::new(&server, &session, None);
    let output = target.ssh("cat ~/kept.txt");
    assert_eq!(stdout(&output), "kept\n", "{}", stderr(&output));
    assert_eq!(status(&server, &id), "running");

    // And a file call.
    post(&server, &format!("/v1/sessions/{id}/pause"));
    let file = server
        .request("GET", &format!("/v1/sessions/{id}/files?path=kept.txt"))
        .send();
    assert_eq!((file.status, file.text()), (200, "kept\n".to_owned()));
    assert_eq!(status(&server, &id), "running");
}

#[test]
fn idle_action_pause_pauses_an_idle_session_and_ssh_wakes_it() {
    let server = Server::start(&[]);
    let session = server.create(None, r#"{"idleTimeout": 1, "idleAction": "pause"}"#);
    assert_eq!(session["idleAction"], "pause", "{session}");
    let id = id_of(&session);
    // The Kubernetes runtime never judges idleness on less than its activity lag (~70 s).
    wait_for("the idle pause", Duration::from_secs(150), || {
        status(&server, &id) == "paused"
    });
    let target = SshTarget::new(&server, &session, None);
    let output = target.ssh("echo awake");
    assert_eq!(stdout(&output), "awake\n", "{}", stderr(&output));
    assert_eq!(status(&server, &id), "running");
}

#[test]
fn pause_and_resume_belong_to_the_owner_and_refuse_nothing_else() {
    let server = Server::start(&["--jwt-secret", SECRET]);
    let alice = token("alice");
    let session = server.create(Some(&alice), "");
    let id = id_of(&session);
    for action in ["pause", "resume"] {
        for prefix in ["/v1/sessions", "/sessions"] {
            let path = format!("{prefix}/{id}/{action}");
            server
                .request("POST", &path)
                .bearer(&token("mallory"))
                .send()
                .assert_error(404, "SESSION_NOT_FOUND");
            let unknown = format!("{prefix}/{}/{action}", uuid::Uuid::new_v4());
            server
                .request("POST", &unknown)
                .bearer(&alice)
                .send()
                .assert_error(404, "SESSION_NOT_FOUND");
            server
                .request("POST", &path)
                .send()
                .assert_error(401, "UNAUTHORIZED");
        }
    }
    // Resuming a running session is a no-op; the short path works like the long one.
    let res = server
        .request("POST", &format!("/sessions/{id}/resume"))
        .bearer(&alice)
        .send();
    assert_eq!(
        (res.status, res.json()["status"].clone()),
        (200, json!("running"))
    );
    let res = server
        .request("POST", &format!("/sessions/{id}/pause"))
        .bearer(&alice)
        .send();
    assert_eq!(
        (res.status, res.json()["status"].clone()),
        (200, json!("paused"))
    );
}

#[test]
fn a_paused_session_stays_paused_across_a_restart() {
    let mut server = Server::start(&[]);
    let state_dir = server.state_dir.clone();
    let session = server.create(None, "");
    let id = id_of(&session);
    exec(&server, &id, COUNTER);
    let count = count_file(&server, &id);
    wait_for("the loop to count", Duration::from_secs(20), || {
        read_count(&count) >= 3
    });
    post(&server, &format!("/v1/sessions/{id}/pause"));
    let at_pause = read_count(&count);
    server.kill9();

    let restarted = Server::start_in(&state_dir, &[]);
    assert_eq!(status(&restarted, &id), "paused");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        read_count(&count),
        at_pause,
        "the loop counted after the restart"
    );
    let target = SshTarget::new(&restarted, &session, None);
    let output = target.ssh("echo back");
    assert_eq!(stdout(&output), "back\n", "{}", stderr(&output));
    wait_for("the loop to count again", Duration::from_secs(20), || {
        read_count(&count) > at_pause
    });
    assert_eq!(status(&restarted, &id), "running");
}
