//! Runtime failures answer the client with a clean message and a `requestId`; host paths and
//! the agent's log stay in the server log, under that id.

mod common;

use common::Server;

#[test]
fn a_failed_create_keeps_host_paths_and_agent_logs_in_the_server_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = dir.path().join("agent");
    // Says something only the operator should read (its arguments name the state directory).
    common::write_mode(
        &agent,
        "#!/bin/sh\necho \"agent-secret-line $*\" >&2\nexit 1\n",
        0o755,
    );
    let agent = agent.display().to_string();
    let server = Server::start(&["--agent-binary", &agent]);
    let body = server
        .request("POST", "/v1/sessions")
        .send()
        .assert_error(500, "SANDBOX_CREATE_FAILED");
    let message = body["message"].as_str().expect("message");
    let request_id = body["requestId"].as_str().expect("requestId");
    let state_dir = server.state_dir.display().to_string();
    assert!(!message.contains("agent-secret-line"), "{message}");
    assert!(!message.contains(&state_dir), "{message}");
    assert!(message.contains(request_id), "{message}");
    let logs = server.logs();
    let logged = logs
        .lines()
        .find(|l| l.contains(request_id) && l.contains("runtime error"))
        .unwrap_or_else(|| panic!("no log line for {request_id}:\n{logs}"));
    assert!(logged.contains("agent-secret-line"), "{logged}");
}

#[test]
fn a_create_timeout_is_reported_by_the_runtime_with_the_agent_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = dir.path().join("agent");
    common::write_mode(
        &agent,
        "#!/bin/sh\necho still-starting >&2\nexec sleep 30\n",
        0o755,
    );
    let agent = agent.display().to_string();
    let server = Server::start(&["--agent-binary", &agent, "--create-timeout", "1"]);
    let body = server
        .request("POST", "/v1/sessions")
        .send()
        .assert_error(504, "SANDBOX_TIMEOUT");
    let request_id = body["requestId"].as_str().expect("requestId");
    assert!(
        !body["message"]
            .as_str()
            .expect("message")
            .contains("still-starting")
    );
    // One timer: the runtime's, whose message names what it waited for and the agent's log.
    let logs = server.logs();
    assert!(
        logs.lines().any(|l| l.contains(request_id)
            && l.contains("did not become ready in time")
            && l.contains("still-starting")),
        "{logs}"
    );
}
