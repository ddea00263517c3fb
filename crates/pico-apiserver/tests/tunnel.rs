//! End to end: create a session, open the CONNECT tunnel and speak SSH through it with
//! OpenSSH; plus the tunnel's refusals, its exact answer and half-close.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use common::{Server, SshTarget, stderr, stdout, token};

/// Sends a raw CONNECT and returns the stream with the answer's head.
fn connect(server: &Server, target: &str, auth: Option<(&str, &str)>) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((name, value)) = auth {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => answer.push(byte[0]),
            _ => break,
        }
    }
    (stream, String::from_utf8_lossy(&answer).into_owned())
}

fn read_rest(mut stream: TcpStream) -> String {
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    String::from_utf8_lossy(&rest).into_owned()
}

#[test]
fn openssh_runs_a_command_through_the_tunnel() {
    let server = Server::start(&[]);
    let session = server.create(None, "");
    let target = SshTarget::new(&server, &session, None);
    let output = target.ssh("echo hello; echo err >&2; exit 3");
    assert_eq!(stdout(&output), "hello\n", "stderr: {}", stderr(&output));
    assert_eq!(stderr(&output), "err\n");
    assert_eq!(output.status.code(), Some(3));

    // Relayed bytes count as activity (the logic is tested in-process in `service.rs`; this
    // proves the relay's count reaches the reaper, which runs every second here).
    let id = session["sessionId"].as_str().expect("id");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = server
            .request("GET", &format!("/v1/sessions/{id}"))
            .send()
            .json();
        if now["lastActivityAt"] != session["lastActivityAt"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "activity never recorded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A different pinned host key makes OpenSSH refuse the connection.
    let other = server.create(None, "");
    let wrong = SshTarget::new(&server, &other, None);
    std::fs::copy(
        wrong.dir.path().join("known_hosts"),
        target.dir.path().join("known_hosts"),
    )
    .expect("copy");
    let refused = target.ssh("true");
    assert_eq!(refused.status.code(), Some(255));
    assert!(
        stderr(&refused).contains("HOST IDENTIFICATION HAS CHANGED")
            || stderr(&refused).contains("Host key verification failed"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn connect_answer_is_exact_and_half_close_is_forwarded() {
    let server = Server::start(&[]);
    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id");
    for path in [
        format!("/v1/sessions/{id}/tunnel"),
        format!("/v1/sessions/{id}"),
        format!("/sessions/{id}"),
        format!("{id}:22"),
    ] {
        let (mut stream, head) = connect(&server, &path, None);
        assert_eq!(
            head, "HTTP/1.1 200 Connection Established\r\n\r\n",
            "{path}"
        );
        let mut banner = [0u8; 8];
        stream.read_exact(&mut banner).expect("banner");
        assert_eq!(&banner, b"SSH-2.0-");
        // Our write side ends; the agent sees EOF and closes, which reaches us.
        stream.shutdown(Shutdown::Write).expect("shutdown");
        read_rest(stream);
    }
}

#[test]
fn tunnel_refusals() {
    let server = Server::start(&["--jwt-secret", common::SECRET]);
    let alice = token("alice");
    let session = server.create(Some(&alice), "");
    let id = session["sessionId"].as_str().expect("id");
    let tunnel = format!("/v1/sessions/{id}/tunnel");
    let status = |head: &str| head.split_whitespace().nth(1).unwrap_or("").to_owned();

    let (stream, head) = connect(&server, &tunnel, None);
    assert_eq!(status(&head), "401");
    assert!(read_rest(stream).contains("UNAUTHORIZED"));
    // The proxy form without credentials gets a challenge that proxy clients (ncat) answer.
    let (stream, head) = connect(&server, &format!("{id}:22"), None);
    assert_eq!(status(&head), "407", "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("proxy-authenticate: basic"),
        "{head}"
    );
    assert!(read_rest(stream).contains("UNAUTHORIZED"));
    let bob = format!("Bearer {}", token("bob"));
    let (stream, head) = connect(&server, &tunnel, Some(("Proxy-Authorization", &bob)));
    assert_eq!(status(&head), "404");
    assert!(read_rest(stream).contains("SESSION_NOT_FOUND"));
    let missing = format!("/v1/sessions/{}/tunnel", uuid::Uuid::new_v4());
    let alice_auth = format!("Bearer {alice}");
    let (_, head) = connect(&server, &missing, Some(("Authorization", &alice_auth)));
    assert_eq!(status(&head), "404");

    // Never an open proxy: other hosts and ports are refused without any dial.
    let bystander = TcpListener::bind("127.0.0.1:0").expect("bind");
    bystander.set_nonblocking(true).expect("nonblocking");
    let port = bystander.local_addr().expect("addr").port();
    for target in [
        format!("127.0.0.1:{port}"),
        "example.com:443".into(),
        format!("{id}:2222"),
    ] {
        let (stream, head) = connect(&server, &target, Some(("Proxy-Authorization", &alice_auth)));
        assert_eq!(status(&head), "403", "{target}");
        assert!(read_rest(stream).contains("FORBIDDEN"));
    }
    assert!(
        bystander.accept().is_err(),
        "the server dialed the bystander"
    );

    // Alice's token in Proxy-Authorization opens her tunnel.
    let (mut stream, head) = connect(&server, &tunnel, Some(("Proxy-Authorization", &alice_auth)));
    assert_eq!(head, "HTTP/1.1 200 Connection Established\r\n\r\n");
    let mut banner = [0u8; 8];
    stream.read_exact(&mut banner).expect("banner");
    // Deleting the session ends its open tunnel.
    let deleted = server
        .request("DELETE", &format!("/v1/sessions/{id}"))
        .bearer(&alice)
        .send();
    assert_eq!(deleted.status, 200);
    read_rest(stream);
    let (_, head) = connect(&server, &tunnel, Some(("Authorization", &alice_auth)));
    assert_eq!(status(&head), "404");
}

#[test]
fn a_dead_agent_is_restarted_and_an_unstartable_one_is_unreachable() {
    let server = Server::start(&[]);
    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id");
    let target = SshTarget::new(&server, &session, None);
    let dir = server.state_dir.join("sessions").join(id);
    let pid = std::fs::read_to_string(dir.join("agent.pid")).expect("pid");
    let kill = |pid: &str| {
        let pid = pid.trim();
        std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status()
            .expect("kill");
        // Signals are asynchronous: wait until the server has reaped it and the sandbox's
        // PID 1, which holds the socket and may take longer to exit, no longer accepts.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::os::unix::net::UnixStream::connect(dir.join("agent.sock")).is_ok()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "agent {pid} did not die"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    kill(&pid);
    let output = target.ssh("echo back");
    assert_eq!(stdout(&output), "back\n", "{}", stderr(&output));

    // With its host key gone the agent cannot start again: 502.
    let pid = std::fs::read_to_string(dir.join("agent.pid")).expect("pid");
    kill(&pid);
    std::fs::remove_file(dir.join("host_key")).expect("rm host key");
    let (stream, head) = connect(&server, &format!("/v1/sessions/{id}/tunnel"), None);
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(read_rest(stream).contains("SANDBOX_UNREACHABLE"));
}
