//! Black-box tests of background processes (`"background": true`, `…/processes`) against the
//! real server and agent binaries; also run on the Kubernetes runtime (`make test-kube`),
//! except the server restart (the emulator does not outlive the server in tests).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

fn session(server: &Server) -> String {
    let created = server.create(None, "{}");
    created["sessionId"].as_str().expect("id").to_owned()
}

fn start(server: &Server, id: &str, command: &str) -> Value {
    let res = server
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .json(&json!({"command": command, "background": true}).to_string())
        .send();
    assert_eq!(res.status, 202, "{}", res.text());
    let started = res.json();
    assert!(started["processId"].is_string(), "{started}");
    started
}

fn pid_of(started: &Value) -> i64 {
    started["pid"].as_i64().expect("pid")
}

fn info(server: &Server, id: &str, pid: i64) -> Value {
    let res = server
        .request("GET", &format!("/v1/sessions/{id}/processes/{pid}"))
        .send();
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

/// The NDJSON events of `…/output` with `query`.
fn events(server: &Server, id: &str, pid: i64, query: &str) -> Vec<Value> {
    let res = server
        .request(
            "GET",
            &format!("/v1/sessions/{id}/processes/{pid}/output?{query}"),
        )
        .send();
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    res.text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn stdout_of(events: &[Value]) -> String {
    events.iter().filter_map(|e| e["stdout"].as_str()).collect()
}

/// Polls the process until `done` holds for it (bounded: 600 polls, 60 s).
fn wait_for(server: &Server, id: &str, pid: i64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..600 {
        let now = info(server, id, pid);
        if done(&now) || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    info(server, id, pid)
}

fn signal(server: &Server, id: &str, pid: i64, name: &str) -> common::Res {
    server
        .request("POST", &format!("/v1/sessions/{id}/processes/{pid}/signal"))
        .json(&json!({"signal": name}).to_string())
        .send()
}

/// Reads a follow stream over HTTP/1.0 (no chunking) until at least `lines` complete NDJSON
/// lines came, then drops the connection; returns the complete lines.
fn read_part_then_drop(server: &Server, path: &str, lines: usize) -> Vec<Value> {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n",
        server.addr
    )
    .expect("request");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..100_000 {
        let n = stream.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let body = &raw[split + 4..];
        let complete = body.iter().filter(|b| **b == b'\n').count();
        if complete >= lines {
            let text = String::from_utf8_lossy(body);
            let cut = text.rfind('\n').expect("newline");
            return text[..cut]
                .lines()
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect();
        }
    }
    panic!("not enough output");
}

fn numbers(from: u32, to: u32) -> String {
    (from..=to).map(|i| format!("{i}\n")).collect()
}

#[test]
fn output_survives_disconnect_and_a_server_restart_and_resumes_from_an_offset() {
    let mut server = Server::start(&[]);
    let state_dir = server.state_dir.clone();
    let id = session(&server);
    let started = start(
        &server,
        &id,
        "for i in $(seq 1 100000); do echo $i; done; sleep 30",
    );
    let pid = pid_of(&started);
    let path = format!("/v1/sessions/{id}/processes/{pid}/output?follow=true");
    let part = read_part_then_drop(&server, &path, 2);
    let first = &part[0];
    assert_eq!(first["offset"], 0, "{first}");
    let offset = part
        .iter()
        .filter_map(|e| e["end"].as_u64())
        .next_back()
        .expect("an end offset");
    let all = numbers(1, 100_000);
    assert_eq!(stdout_of(&part), all[..offset as usize]);

    server.kill9();
    let server = Server::start_in(&state_dir, &[]);
    let total = all.len() as u64;
    let now = wait_for(&server, &id, pid, |p| p["stdoutBytes"] == total);
    assert_eq!(
        now["state"], "running",
        "survived the client and the server: {now}"
    );
    assert_eq!(now["processId"], started["processId"]);

    let rest = events(&server, &id, pid, &format!("offset={offset}"));
    assert!(rest.iter().all(|e| e.get("dropped").is_none()), "{rest:?}");
    assert_eq!(rest[0]["offset"], offset);
    assert_eq!(
        stdout_of(&rest),
        all[offset as usize..],
        "every later line once, in order"
    );
    assert!(
        rest.iter().all(|e| e.get("exit").is_none()),
        "still running"
    );

    // TERM ends it; a follow from the end sees only the exit, with 128+15.
    let res = signal(&server, &id, pid, "TERM");
    assert_eq!(res.status, 200, "{}", res.text());
    let end = events(&server, &id, pid, &format!("offset={total}&follow=true"));
    let exit = end.last().expect("exit event");
    assert_eq!(exit["exit"]["exitCode"], 143, "{end:?}");
    assert_eq!(exit["exit"]["status"], "failed");
    let listed = server
        .request("GET", &format!("/v1/sessions/{id}/processes"))
        .send()
        .json();
    let entry = &listed["processes"][0];
    assert_eq!(
        (entry["state"].clone(), entry["exitCode"].clone()),
        (json!("exited"), json!(143))
    );
    assert!(
        entry["startedAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{entry}"
    );
}

#[test]
fn stdin_reaches_the_process_and_close_ends_it() {
    let server = Server::start(&[]);
    let id = session(&server);
    let pid = pid_of(&start(&server, &id, "cat"));
    let stdin = |body: &[u8], query: &str| {
        server
            .request(
                "POST",
                &format!("/sessions/{id}/processes/{pid}/stdin{query}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
    };
    let res = stdin(b"hello\n", "");
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["written"], 6);
    assert_eq!(stdin(b"bye\n", "?close=true").status, 200);
    let out = events(&server, &id, pid, "follow=true");
    assert_eq!(stdout_of(&out), "hello\nbye\n");
    let exit = &out.last().expect("exit")["exit"];
    assert_eq!(
        (exit["status"].clone(), exit["exitCode"].clone()),
        (json!("completed"), json!(0))
    );
    stdin(b"late", "").assert_error(409, "PROCESS_EXITED");
    signal(&server, &id, pid, "TERM").assert_error(409, "PROCESS_EXITED");
}

#[test]
fn bad_input_has_its_error_codes() {
    let server = Server::start(&["--max-processes-per-session", "2"]);
    let id = session(&server);
    server
        .request("GET", &format!("/v1/sessions/{id}/processes/999999"))
        .send()
        .assert_error(404, "PROCESS_NOT_FOUND");
    server
        .request("GET", &format!("/v1/sessions/{id}/processes/nope/output"))
        .send()
        .assert_error(404, "PROCESS_NOT_FOUND");
    let one = pid_of(&start(&server, &id, "sleep 300"));
    signal(&server, &id, one, "NOPE").assert_error(400, "INVALID_SIGNAL");
    let _two = start(&server, &id, "sleep 300");
    server
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .json(r#"{"command": "sleep 1", "background": true}"#)
        .send()
        .assert_error(429, "TOO_MANY_PROCESSES");
    // An exited process makes room: the oldest exited entry is forgotten for a new one.
    assert_eq!(signal(&server, &id, one, "KILL").status, 200);
    let gone = wait_for(&server, &id, one, |p| p["state"] == "exited");
    assert_eq!(gone["exitCode"], 137);
    let three = pid_of(&start(&server, &id, "echo three"));
    server
        .request("GET", &format!("/v1/sessions/{id}/processes/{one}"))
        .send()
        .assert_error(404, "PROCESS_NOT_FOUND");
    let out = events(&server, &id, three, "follow=true");
    assert_eq!(stdout_of(&out), "three\n");
    // An offset beyond the end returns nothing without follow.
    let beyond = events(&server, &id, three, "offset=1000");
    assert!(
        beyond.iter().all(|e| e.get("stdout").is_none()),
        "{beyond:?}"
    );
}

#[test]
fn output_nobody_reads_stays_within_the_ring() {
    let server = Server::start(&[]);
    let id = session(&server);
    let pid = pid_of(&start(&server, &id, "yes"));
    // 64 MiB printed, far more than the 1 MiB the sandbox keeps.
    let now = wait_for(&server, &id, pid, |p| {
        p["stdoutBytes"].as_u64().unwrap_or(0) > 64 << 20
    });
    assert!(now["stdoutBytes"].as_u64().unwrap_or(0) > 64 << 20, "{now}");
    if !common::kubernetes_mode() {
        let rss = agent_rss_kib(&server.state_dir);
        assert!(
            rss < 64 * 1024,
            "the agent's memory stays bounded: {rss} KiB"
        );
    }
    // Stopped, so that what the ring holds stays put while it is read.
    assert_eq!(signal(&server, &id, pid, "KILL").status, 200);
    wait_for(&server, &id, pid, |p| p["state"] == "exited");
    let out = events(&server, &id, pid, "offset=0");
    let dropped = out[0]["dropped"].as_u64().expect("a dropped event first");
    assert!(dropped > 60 << 20, "{dropped}");
    let kept = stdout_of(&out);
    assert!(kept.len() <= 1 << 20, "{}", kept.len());
    assert!(kept.len() > 512 << 10, "{}", kept.len());
    assert!(kept.starts_with('y'));
    assert_eq!(out.last().expect("exit")["exit"]["exitCode"], 137);
}

/// Largest resident size among the agents of a server (by its state directory in their
/// command line), in KiB.
fn agent_rss_kib(state_dir: &std::path::Path) -> u64 {
    let needle = state_dir.display().to_string();
    let mut max = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let dir = entry.path();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !(cmdline.contains("pico-agent") && cmdline.contains(&needle)) {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        max = max.max(rss);
    }
    assert!(max > 0, "no agent found for {needle}");
    max
}
