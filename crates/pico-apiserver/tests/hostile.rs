//! Hostile clients: slow-loris, oversized heads, garbage bytes, and tunnel caps. The server
//! cuts them off and keeps serving everyone else.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

fn healthy(server: &Server) {
    assert_eq!(server.request("GET", "/health").send().status, 200);
}

#[test]
fn slow_loris_is_cut_off_by_the_header_timeout() {
    let server = Server::start(&["--header-read-timeout", "1"]);
    let mut slow = TcpStream::connect(server.addr).expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "slow client kept for {:?}",
        started.elapsed()
    );
    // An idle connection that never sends anything is cut off the same way.
    let mut idle = TcpStream::connect(server.addr).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let started = Instant::now();
    let _ = idle.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(10));
    healthy(&server);
}

#[test]
fn oversized_heads_and_garbage_are_refused() {
    let server = Server::start(&[]);
    let huge = "a".repeat(200 * 1024);
    let res = server
        .request("GET", "/health")
        .header("X-Big", &huge)
        .send();
    assert!(res.status == 431 || res.status == 400, "{}", res.head);
    let mut raw = TcpStream::connect(server.addr).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage.extend_from_slice(b"\r\n\r\n");
    let _ = raw.write_all(&garbage);
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/1.1 2"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    for request in [
        "CONNECT\r\n\r\n",
        "CONNECT  HTTP/1.1\r\n\r\n",
        "CONNECT :22 HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT /v1/sessions/%00/tunnel HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT /v1/sessions/../../etc HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut raw = TcpStream::connect(server.addr).expect("connect");
        raw.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        raw.write_all(request.as_bytes()).expect("write");
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer);
        assert!(
            !answer.starts_with(b"HTTP/1.1 2"),
            "{request:?} → {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    healthy(&server);
}

#[test]
fn tunnels_per_session_are_capped() {
    let server = Server::start(&["--max-tunnels-per-session", "2"]);
    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id");
    let open = || {
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            stream,
            "CONNECT /v1/sessions/{id}/tunnel HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        (stream, String::from_utf8_lossy(&head).into_owned())
    };
    let (first, head) = open();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_second, head) = open();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (mut third, head) = open();
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    let mut body = String::new();
    let _ = third.read_to_string(&mut body);
    assert!(body.contains("QUOTA_EXCEEDED"), "{body}");
    // Closing a tunnel frees its slot.
    first.shutdown(std::net::Shutdown::Both).expect("close");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_stream, head) = open();
        if head.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {head}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
