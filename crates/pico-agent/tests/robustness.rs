//! Authentication, hostile input, listeners, shutdown and the `install` subcommand.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{AGENT, Agent, Options, eventually, have, processes_matching, text};

#[test]
fn ed25519_ecdsa_and_rsa_keys_are_accepted() {
    let agent = Agent::start();
    for key in ["client", "client_ecdsa", "client_rsa"] {
        let out = agent
            .ssh_as("sandbox", &agent.path(key))
            .arg("echo ok")
            .stdin(Stdio::null())
            .output()
            .expect("ssh");
        assert_eq!(text(&out.stdout), "ok\n", "{key}: {}", text(&out.stderr));
    }
}

#[test]
fn wrong_key_and_unknown_user_are_rejected() {
    let agent = Agent::start();
    let out = agent
        .ssh_as("sandbox", &agent.path("stranger"))
        .arg("echo no")
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
    let out = agent
        .ssh_as("root", &agent.client_key)
        .arg("echo no")
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("Permission denied"));
    // Password authentication is not even offered.
    let out = agent
        .ssh()
        .args([
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
            "echo no",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("publickey"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(agent.exec("echo fine").stdout, b"fine\n");
}

#[test]
fn rejection_takes_constant_time() {
    let agent = Agent::start();
    let timed = |user: &str, key: &str| {
        let start = Instant::now();
        let out = agent
            .ssh_as(user, &agent.path(key))
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .expect("ssh");
        assert_eq!(out.status.code(), Some(255));
        start.elapsed()
    };
    let unknown_user = timed("nobody", "client");
    let unknown_key = timed("sandbox", "stranger");
    // Both are padded to the same rejection delay (300 ms), not answered at once.
    assert!(
        unknown_user >= Duration::from_millis(300) && unknown_key >= Duration::from_millis(300)
    );
}

#[test]
fn garbage_bytes_and_malformed_packets_do_not_hurt_the_agent() {
    let agent = Agent::start();
    let mut seed: u32 = 12345;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect()
    };
    for round in 0..20 {
        let mut stream = TcpStream::connect(("127.0.0.1", agent.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut payload = Vec::new();
        if round % 2 == 0 {
            // A valid version line, then a random binary packet stream.
            payload.extend_from_slice(b"SSH-2.0-fuzz\r\n");
        }
        payload.extend(noise(64 + round * 97));
        let _ = stream.write_all(&payload);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
    // An over-long packet length in the first binary packet.
    let mut stream = TcpStream::connect(("127.0.0.1", agent.port)).expect("connect");
    let _ = stream.write_all(b"SSH-2.0-fuzz\r\n\xff\xff\xff\xf0\x00\x00\x00\x00");
    drop(stream);
    assert_eq!(agent.exec("echo alive").stdout, b"alive\n");
}

#[test]
fn unix_socket_listener() {
    assert!(have("socat"), "socat is missing: run scripts/test-deps.sh");
    let agent = Agent::start_with(Options {
        unix: true,
        ..Options::default()
    });
    let socket = agent.socket.clone().expect("socket");
    assert!(socket.exists());
    let out = agent.exec("echo over-unix");
    assert_eq!(text(&out.stdout), "over-unix\n", "{}", text(&out.stderr));
    let out = agent.sftp_batch("mkdir viaunix\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(agent.home.join("viaunix").is_dir());
    drop(agent);
    assert!(!socket.exists(), "socket removed on shutdown");
}

#[test]
fn sigterm_stops_the_agent_and_its_commands() {
    let mut agent = Agent::start();
    let marker = format!("sleep {}", 400 + agent.port % 97);
    let mut child = agent
        .ssh()
        .arg(format!("echo started; {marker}"))
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("ssh");
    let mut buf = [0u8; 8];
    child
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut buf)
        .expect("started");
    let status = Command::new("kill")
        .arg(agent.pid().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    eventually(
        "the command to die with the agent",
        Duration::from_secs(10),
        || processes_matching(&marker).is_empty(),
    );
    let _ = child.wait();
    assert!(agent.log().contains("shutting down"));
    let _ = &mut agent;
}

#[test]
fn idle_connections_are_closed() {
    let agent = Agent::start_with(Options {
        extra: vec!["--idle-timeout".into(), "1".into()],
        ..Options::default()
    });
    let start = Instant::now();
    let out = agent
        .ssh()
        .arg("sleep 30")
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "closed by the idle timeout"
    );
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn install_copies_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("bin");
    let status = Command::new(AGENT)
        .arg("install")
        .arg(&target)
        .status()
        .expect("install");
    assert!(status.success());
    let out = Command::new(target.join("pico-agent"))
        .arg("--version")
        .output()
        .expect("run copy");
    assert!(text(&out.stdout).starts_with("pico-agent "));
}

#[test]
fn bad_command_lines_fail_with_a_message() {
    let out = Command::new(AGENT)
        .args([
            "serve",
            "--host-key",
            "/nonexistent",
            "--authorized-keys",
            "/nonexistent",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--host-key"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "no ready line on failure");
}
