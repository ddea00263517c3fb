//! With auth off, only loopback `Host` names (and `--allowed-host`) are served and
//! cross-origin browser requests and WebSocket upgrades are refused, so that a web page
//! (DNS rebinding, a WebSocket from a browser) cannot drive a developer's server.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Res, Server, parse_response};

/// A raw request with exactly the given `Host` (none when empty) and extra headers.
fn raw(server: &Server, request_line: &str, host: &str, extra: &[(&str, &str)]) -> Res {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("{request_line}\r\nConnection: close\r\n");
    if !host.is_empty() {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    // Up to the end of the head, then the body by its length (a CONNECT 200 has none).
    while !answer.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        answer.push(byte[0]);
    }
    if !answer.starts_with(b"HTTP/1.1 200 Connection") && !answer.starts_with(b"HTTP/1.1 101") {
        let _ = stream.read_to_end(&mut answer);
    }
    parse_response(&answer)
}

const WS_HEADERS: [(&str, &str); 4] = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

#[test]
fn without_auth_only_loopback_hosts_and_origins_are_served() {
    let server = Server::start(&["--allowed-host", "pico.internal"]);
    let port = server.addr.port();
    let get = "GET /health HTTP/1.1";
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".into(),
        format!("[::1]:{port}"),
        "127.1.2.3".into(),
        "pico.internal:8080".into(),
        "PICO.internal".into(),
    ] {
        assert_eq!(raw(&server, get, &host, &[]).status, 200, "{host}");
    }
    for host in [
        "evil.example",
        "evil.example:80",
        "localhost.evil.example",
        "10.0.0.1",
    ] {
        raw(&server, get, host, &[]).assert_error(403, "FORBIDDEN");
    }
    let local = format!("127.0.0.1:{port}");
    // Requests from pages on other sites carry their origin.
    for origin in [
        "http://evil.example",
        "null",
        "https://127.0.0.1.evil.example",
    ] {
        raw(&server, get, &local, &[("Origin", origin)]).assert_error(403, "FORBIDDEN");
    }
    let own = format!("http://localhost:{port}");
    assert_eq!(raw(&server, get, &local, &[("Origin", &own)]).status, 200);

    // The tunnel's forms keep working: the proxy form names the session as its host.
    let session = server.create(None, "");
    let id = session["sessionId"].as_str().expect("id");
    let connect = raw(
        &server,
        &format!("CONNECT {id}:22 HTTP/1.1"),
        &format!("{id}:22"),
        &[],
    );
    assert_eq!(connect.status, 200, "{}", connect.head);
    let path = format!("/v1/sessions/{id}/tunnel");
    let connect = raw(&server, &format!("CONNECT {path} HTTP/1.1"), &local, &[]);
    assert_eq!(connect.status, 200, "{}", connect.head);

    // A WebSocket from a page on another site is refused; one without an Origin (a
    // program, not a browser) or from our own origin is not.
    let ws = format!("GET {path} HTTP/1.1");
    let mut hostile = WS_HEADERS.to_vec();
    hostile.push(("Origin", "http://evil.example"));
    raw(&server, &ws, &local, &hostile).assert_error(403, "FORBIDDEN");
    assert_eq!(raw(&server, &ws, &local, &WS_HEADERS).status, 101);
    let mut own_origin = WS_HEADERS.to_vec();
    own_origin.push(("Origin", &own));
    assert_eq!(raw(&server, &ws, &local, &own_origin).status, 101);
}

#[test]
fn with_auth_any_host_is_served() {
    let server = Server::start(&["--jwt-secret", common::SECRET]);
    let res = raw(&server, "GET /health HTTP/1.1", "pico.example.com", &[]);
    assert_eq!(res.status, 200, "{}", res.head);
}
