//! The WebSocket tunnel (`GET /v1/sessions/{id}/tunnel` with `Upgrade: websocket`): OpenSSH
//! through `pico proxy --websocket`, pico's own commands over it, its refusals, and its end
//! when the session goes away.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    Server, User, assert_ran, random_file, raw_request, sha256, ssh_config, ssh_tool, stderr,
    stdout, token,
};

#[test]
fn the_websocket_tunnel_passes_the_same_ssh_test() {
    let server = Server::start(&["--jwt-secret", common::SECRET]);
    let user = User::new(&server, Some(&token("dave")));
    let id = user.create();

    let config = ssh_config(&user, &["--websocket"]);
    assert!(
        std::fs::read_to_string(&config)
            .expect("read")
            .contains("proxy --websocket %h")
    );
    let output = ssh_tool("ssh", &user, &config)
        .arg(format!("sandbox@{id}"))
        .arg("echo hello; echo err >&2; exit 3")
        .output()
        .expect("ssh");
    assert_ran(&output, "hello\n", 3);
    assert_eq!(stderr(&output), "err\n");

    // The ProxyCommand spelled out, as a user would type it, moving a megabyte each way.
    let pico = common::pico_binary();
    let work = tempfile::tempdir().expect("tmp");
    let file = work.path().join("up.bin");
    random_file(&file, 1024 * 1024);
    let output = ssh_tool("ssh", &user, &config)
        .arg("-o")
        .arg(format!(
            "ProxyCommand={} proxy --websocket %h",
            pico.display()
        ))
        .arg(&id)
        .arg("cat > ws.bin && sha256sum ws.bin && cat ws.bin")
        .stdin(std::fs::File::open(&file).expect("open"))
        .output()
        .expect("ssh");
    assert!(output.status.success(), "{}", stderr(&output));
    let (digest, rest) = output.stdout.split_at(64);
    assert_eq!(String::from_utf8_lossy(digest), sha256(&file));
    assert_eq!(
        &rest[rest.len() - 1024 * 1024..],
        std::fs::read(&file).expect("read")
    );

    // pico's own SSH client can use it too: exec and cp with `--websocket`.
    let output = user.run(&["--websocket", "exec", &id, "--", "echo ws exec; exit 9"]);
    assert_eq!(
        (stdout(&output).as_str(), output.status.code()),
        ("ws exec\n", Some(9))
    );
    let back = work.path().join("back.bin");
    user.ok(&[
        "cp",
        "--websocket",
        &format!("{id}:ws.bin"),
        back.to_str().expect("path"),
    ]);
    assert_eq!(sha256(&back), sha256(&file));
}

fn upgrade_head(path: &str, auth: Option<&str>) -> String {
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: pico\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    if let Some(token) = auth {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head
}

#[test]
fn websocket_refusals_carry_the_json_error_body() {
    let server = Server::start(&["--jwt-secret", common::SECRET]);
    let owner = User::new(&server, Some(&token("erin")));
    let id = owner.create();
    let path = format!("/v1/sessions/{id}/tunnel");

    let (status, body) = raw_request(server.addr, &upgrade_head(&path, None));
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("UNAUTHORIZED")),
        "{body}"
    );
    assert!(
        body["requestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );

    // Another user's session is as missing as a missing one.
    let (status, body) = raw_request(server.addr, &upgrade_head(&path, Some(&token("mallory"))));
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("SESSION_NOT_FOUND")),
        "{body}"
    );
    let missing = "/v1/sessions/00000000-0000-4000-8000-000000000000/tunnel";
    let (status, body) = raw_request(server.addr, &upgrade_head(missing, Some(&token("erin"))));
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("SESSION_NOT_FOUND")),
        "{body}"
    );

    // A broken handshake is a 400, not a hang.
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: pico\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    );
    let (status, body) = raw_request(server.addr, &head);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{body}"
    );

    // `pico proxy --websocket` turns a refusal into one line.
    let stranger = User::new(&server, Some(&token("mallory")));
    let output = stranger.run(&["proxy", "--websocket", &id]);
    let line = common::assert_one_line_error(&output);
    assert!(line.contains("SESSION_NOT_FOUND"), "{line}");
}

#[test]
fn deleting_the_session_ends_its_websocket_tunnels() {
    let server = Server::start(&[]);
    let user = User::new(&server, None);
    let id = user.create();
    let config = ssh_config(&user, &["--websocket"]);
    let mut ssh = ssh_tool("ssh", &user, &config)
        .arg(&id)
        .arg("echo ready; exec sleep 600")
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssh");
    // The first line proves the tunnel is up; no sleeping for it.
    let mut line = String::new();
    BufReader::new(ssh.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "ready\n");

    let started = Instant::now();
    user.ok(&["delete", &id]);
    let status = ssh.wait().expect("wait");
    assert!(!status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the tunnel outlived its session by {:?}",
        started.elapsed()
    );
}
