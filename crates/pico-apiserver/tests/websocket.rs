//! The WebSocket tunnel relays frames as they come: an unfinished fragmented message is
//! neither buffered in the server (memory stays flat) nor held back from the sandbox.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, SshTarget, stderr, stdout};

/// Opens the WebSocket tunnel with a raw handshake; returns the stream after the `101`.
fn open(server: &Server, id: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "GET /v1/sessions/{id}/tunnel HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.addr
    )
    .expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A masked client frame header (mask key 0, so the payload goes unchanged).
fn frame_header(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
    match len {
        0..=125 => header.push(0x80 | len as u8),
        126..=0xffff => {
            header.push(0x80 | 126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(0x80 | 127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    header.extend_from_slice(&[0, 0, 0, 0]);
    header
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn unfinished_fragmented_messages_do_not_grow_server_memory() {
    const TUNNELS: usize = 8;
    const MESSAGE: usize = 56 << 20;
    const FRAME: usize = 1 << 20;
    let server = Server::start(&[]);
    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id");
    let pid = server.process.child.as_ref().expect("child").id();
    let before = rss_kib(pid);
    let payload = vec![b'x'; FRAME];
    let tunnels: Vec<TcpStream> = (0..TUNNELS)
        .map(|_| {
            let mut ws = open(&server, id);
            // The first fragment of a binary message, then continuations, never the last.
            for i in 0..MESSAGE / FRAME {
                let opcode = if i == 0 { 2 } else { 0 };
                if ws.write_all(&frame_header(false, opcode, FRAME)).is_err()
                    || ws.write_all(&payload).is_err()
                {
                    break;
                }
            }
            ws
        })
        .collect();
    let after = rss_kib(pid);
    drop(tunnels);
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("server RSS {before} KiB before, {after} KiB after {TUNNELS} unfinished messages");
    // The messages add up to 448 MiB; a relay of frames as they come holds none of it.
    assert!(
        grown_mib < 64,
        "server RSS grew by {grown_mib} MiB ({before} → {after} KiB)"
    );
}

#[test]
fn openssh_works_through_one_never_finished_fragmented_message() {
    let server = Server::start(&[]);
    let session = server.create(None, "");
    let target = SshTarget::new(&server, &session, None);
    let proxy = common::repo_root().join("tests/tools/ws-fragment-proxy.py");
    // `timeout`: a server that holds the message back leaves ssh waiting forever.
    let mut timeout = std::process::Command::new("timeout");
    timeout.args(["60", "ssh"]);
    let proxy_command = format!("python3 {} {} {}", proxy.display(), server.addr, target.id);
    let output = target
        .ssh_through(timeout, &proxy_command, "echo through-fragments")
        .output()
        .expect("ssh");
    assert_eq!(
        stdout(&output),
        "through-fragments\n",
        "stderr: {}",
        stderr(&output)
    );
    // One span per connection and tunnel: peer, kind, session, user, and the bytes moved.
    // The server logs the close once both sides are done, maybe just after ssh exits.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let closed = loop {
        let logs = strip_ansi(&server.logs());
        if let Some(line) = logs
            .lines()
            .find(|l| l.contains("tunnel closed") && l.contains("websocket"))
        {
            break line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no tunnel close logged:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for field in [
        "conn{peer=127.0.0.1:",
        "session_id=",
        "user=anonymous",
        "up=",
        "down=",
    ] {
        assert!(closed.contains(field), "{field} missing: {closed}");
    }
    assert!(closed.contains(&target.id), "{closed}");
}

/// The log without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `[...m`.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
