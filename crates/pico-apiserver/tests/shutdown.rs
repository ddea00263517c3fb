//! SIGTERM: the server stops accepting, lets open tunnels drain for `--shutdown-grace`, then
//! closes them and exits cleanly; sandboxes keep running for the next start.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

#[test]
fn sigterm_drains_tunnels_within_the_grace_period() {
    let mut server = Server::start(&["--shutdown-grace", "2"]);
    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id");
    let mut tunnel = TcpStream::connect(server.addr).expect("connect");
    write!(
        tunnel,
        "CONNECT /v1/sessions/{id}/tunnel HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .expect("write");
    let mut head = [0u8; 39];
    tunnel.read_exact(&mut head).expect("answer");
    assert_eq!(&head, b"HTTP/1.1 200 Connection Established\r\n\r\n");
    let mut banner = [0u8; 8];
    tunnel.read_exact(&mut banner).expect("banner");

    let pid = server.process.child.as_ref().expect("child").id();
    let started = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    // The tunnel is closed by the server once the grace period is over.
    tunnel
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = tunnel.read_to_end(&mut rest);
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(1500),
        "closed after {closed_after:?}"
    );
    let exited = server.terminate();
    assert!(exited, "server did not exit cleanly:\n{}", server.logs());
    assert!(TcpStream::connect(server.addr).is_err(), "still accepting");
    // The sandbox outlives the server, for the next start to adopt.
    let dir = server.state_dir.join("sessions").join(id);
    let pid = std::fs::read_to_string(dir.join("agent.pid")).expect("pid");
    assert!(std::path::Path::new(&format!("/proc/{}", pid.trim())).exists());
}
