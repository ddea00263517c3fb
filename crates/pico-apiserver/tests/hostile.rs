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

/// Reads until the server closes; `true` when it did (EOF or reset), `false` when the read
/// timeout ran out first (the connection was still held open).
fn closed_by_server(stream: &mut TcpStream) -> (bool, Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return (true, got),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return (true, got),
            Err(_) => return (false, got),
        }
    }
}

/// `GET /health` with curl from another loopback source address.
fn health_from(server: &Server, source: &str) -> String {
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--interface", source])
        .arg(format!("{}/health", server.url()))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn connections_that_never_finish_a_request_are_closed_and_capped_per_address() {
    let server = Server::start(&[
        "--header-read-timeout",
        "2",
        "--max-connections-per-ip",
        "16",
    ]);
    // One byte of the h2c preface, then nothing: hyper alone waits for the rest forever.
    let mut held: Vec<TcpStream> = (0..24)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).expect("connect");
            stream.write_all(b"P").expect("write");
            stream
        })
        .collect();
    // While they are open, another address is served.
    assert!(
        health_from(&server, "127.0.0.2").contains("healthy"),
        "health while 24 connections hang"
    );
    let mut refused = 0;
    for stream in &mut held {
        let (closed, answer) = closed_by_server(stream);
        assert!(closed, "a connection that sent only `P` was kept open");
        let answer = String::from_utf8_lossy(&answer);
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains("TOO_MANY_CONNECTIONS"), "{answer}");
            refused += 1;
        }
    }
    assert_eq!(
        refused, 8,
        "connections beyond the per-address cap are refused"
    );
    healthy(&server);
}

#[test]
fn the_connection_cap_refuses_with_a_json_error() {
    let server = Server::start(&["--header-read-timeout", "5", "--max-connections", "4"]);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    let mut extra = TcpStream::connect(server.addr).expect("connect");
    let (closed, answer) = closed_by_server(&mut extra);
    assert!(closed);
    let res = common::parse_response(&answer);
    res.assert_error(503, "TOO_MANY_CONNECTIONS");
    // Closed connections free their slots; the refusal is counted.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    // The server notices each close on its own time: wait until only our request is open.
    let metrics = loop {
        let res = server.request("GET", "/metrics").send();
        if res.status == 200 && res.text().contains("pico_connections_open 1\n") {
            break res.text();
        }
        assert!(
            Instant::now() < deadline,
            "slots never freed: {} {}",
            res.head,
            res.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // At least the one above (retries of `/metrics` may have been refused too).
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pico_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("pico_connections_refused_total");
    assert!(refused >= 1, "{metrics}");
    assert!(metrics.contains("pico_connections_open 1\n"), "{metrics}");
}

#[test]
fn a_silent_tls_client_is_closed() {
    let certs = tempfile::tempdir().expect("tmp");
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let server = Server::start(&[
        "--enable-tls",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--header-read-timeout",
        "2",
    ]);
    // Completes the handshake, then says nothing (its stdin stays open and empty).
    let mut client = std::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(server.addr.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let deadline = Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if client.try_wait().expect("wait").is_some() {
            break true;
        }
        if Instant::now() > deadline {
            let _ = client.kill();
            let _ = client.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exited, "the server kept a silent TLS connection open");
    let mut stderr = String::new();
    let _ = client
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert!(
        !stderr.contains("connect:errno"),
        "never connected: {stderr}"
    );
}

#[test]
fn a_trickled_body_is_cut_with_a_json_error() {
    let server = Server::start(&["--body-read-timeout", "2"]);
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    write!(
        stream,
        "POST /v1/sessions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{",
        server.addr
    )
    .expect("write head");
    let mut writer = stream.try_clone().expect("clone");
    // One byte every 250 ms, for at most 50 s.
    let trickle = std::thread::spawn(move || {
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(250));
            if writer.write_all(b" ").is_err() {
                return;
            }
        }
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if common::parse_response_complete(&answer) {
            break;
        }
    }
    drop(stream);
    let _ = trickle.join();
    common::parse_response(&answer).assert_error(408, "REQUEST_TIMEOUT");
    healthy(&server);
}

#[test]
fn parse_errors_of_hyper_get_the_json_error_body() {
    let server = Server::start(&[]);
    let huge = "a".repeat(200 * 1024);
    let res = server
        .request("GET", "/health")
        .header("X-Big", &huge)
        .send();
    res.assert_error(431, "HEADERS_TOO_LARGE");
    for garbage in [
        "GARBAGE \u{1} HTTP/1.1\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ] {
        let mut raw = TcpStream::connect(server.addr).expect("connect");
        raw.write_all(garbage.as_bytes()).expect("write");
        let (_, answer) = closed_by_server(&mut raw);
        common::parse_response(&answer).assert_error(400, "INVALID_REQUEST");
    }
    healthy(&server);
}

#[test]
fn jwt_secrets_short_warn_and_from_a_file_work() {
    let mut short = Server::start(&["--jwt-secret", "short-secret"]);
    short.terminate();
    assert!(
        short.logs().contains("shorter than 32 bytes"),
        "{}",
        short.logs()
    );
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{}\n", common::SECRET)).expect("write secret");
    let server = Server::start(&["--jwt-secret-file", &file.display().to_string()]);
    let alice = common::token("alice");
    assert_eq!(
        server
            .request("GET", "/v1/sessions")
            .bearer(&alice)
            .send()
            .status,
        200
    );
    server
        .request("GET", "/v1/sessions")
        .send()
        .assert_error(401, "UNAUTHORIZED");
}

#[test]
fn accept_errors_back_off_instead_of_logging_every_50_ms() {
    let server = Server::start(&["--header-read-timeout", "3", "--max-connections", "1000"]);
    let pid = server
        .process
        .child
        .as_ref()
        .expect("child")
        .id()
        .to_string();
    // A tiny open-file limit, so that accept fails with EMFILE while clients wait.
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=40:40"])
        .status()
        .expect("prlimit");
    assert!(status.success());
    let held: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(server.addr).ok())
        .collect();
    // Long enough for many 50 ms retries; the idle clients are then cut by the timeout.
    std::thread::sleep(Duration::from_secs(3));
    drop(held);
    let warnings = server.logs().matches("accept failed").count();
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} accept warnings:\n{}",
        server.logs()
    );
}

#[test]
fn an_http2_connection_idle_after_a_request_is_closed() {
    let server = Server::start(&["--header-read-timeout", "2"]);
    let mut h2 = TcpStream::connect(server.addr).expect("connect");
    // The h2c preface, an empty SETTINGS frame, and one GET / (HPACK: :method GET,
    // :path /, :scheme http, :authority localhost) ending its stream.
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let block = [&[0x82, 0x84, 0x86, 0x41, 9][..], b"localhost"].concat();
    bytes.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x05, 0, 0, 0, 1]);
    bytes.extend_from_slice(&block);
    h2.write_all(&bytes).expect("write");
    // The answer comes, then nothing is asked: the server closes the idle connection.
    let (closed, answer) = closed_by_server(&mut h2);
    assert!(!answer.is_empty(), "no HTTP/2 answer");
    assert!(closed, "an idle HTTP/2 connection was kept open");
    healthy(&server);
}
