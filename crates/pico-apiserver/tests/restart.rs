//! kill -9 the server with live sessions, start it again on the same state directory: the
//! sessions work (agent adopted, or restarted with its files). That a session whose TTL passed
//! while the server was down is dropped is the recovery logic, tested in-process on a paused
//! clock in `service.rs`.

mod common;

use std::time::Duration;

use common::{Server, SshTarget, stderr, stdout};

#[test]
fn sessions_survive_kill_9() {
    let mut server = Server::start(&[]);
    let state_dir = server.state_dir.clone();
    let one = server.create(None, "");
    let two = server.create(None, "");
    let ssh_one = SshTarget::new(&server, &one, None);
    let wrote = ssh_one.ssh("echo kept > ~/keep.txt");
    assert!(wrote.status.success(), "{}", stderr(&wrote));

    // A tunnel is open when the server dies: it ends, and new ones work after the restart.
    let mut open_tunnel = std::net::TcpStream::connect(server.addr).expect("connect");
    {
        use std::io::{Read, Write};
        let one_id = one["sessionId"].as_str().expect("id");
        write!(
            open_tunnel,
            "CONNECT /v1/sessions/{one_id}/tunnel HTTP/1.1\r\nHost: x\r\n\r\nSSH-2.0-test\r\n"
        )
        .expect("write");
        let mut head = [0u8; 39];
        open_tunnel.read_exact(&mut head).expect("answer");
        assert_eq!(&head, b"HTTP/1.1 200 Connection Established\r\n\r\n");
    }
    server.kill9();
    {
        use std::io::Read;
        open_tunnel
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut rest = Vec::new();
        let _ = open_tunnel.read_to_end(&mut rest);
    }
    // While the server is down, session two's agent dies too: it must be restarted.
    let two_id = two["sessionId"].as_str().expect("id");
    let two_pid =
        std::fs::read_to_string(state_dir.join("sessions").join(two_id).join("agent.pid"))
            .expect("pid");
    std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", two_pid.trim())])
        .status()
        .expect("kill");
    let restarted = Server::start_in(&state_dir, &[]);
    let list = restarted.request("GET", "/v1/sessions").send().json();
    assert_eq!(list["total"], 2, "{list}");

    for (session, command, expected) in [
        (&one, "cat ~/keep.txt", "kept\n"),
        (&two, "echo alive", "alive\n"),
    ] {
        let target = SshTarget::new(&restarted, session, None);
        let output = target.ssh(command);
        assert_eq!(stdout(&output), expected, "{}", stderr(&output));
    }
    assert!(restarted.logs().contains("sandbox adopted"));
    assert!(restarted.logs().contains("sandbox restarted"));
}
