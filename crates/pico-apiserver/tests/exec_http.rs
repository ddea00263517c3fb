//! Black-box tests of exec, code and files over HTTP (`…/commands`, `…/code`, `…/files`)
//! against the real server and agent binaries; also run on the Kubernetes runtime
//! (`PICO_TEST_RUNTIME=kubernetes`, `make test-kube`).

mod common;

use common::{SECRET, Server, token};
use serde_json::{Value, json};

fn session(server: &Server) -> String {
    let created = server.create(None, "{}");
    created["sessionId"].as_str().expect("id").to_owned()
}

fn run(server: &Server, id: &str, body: Value) -> common::Res {
    server
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .json(&body.to_string())
        .send()
}

fn ok(server: &Server, id: &str, body: Value) -> Value {
    let res = run(server, id, body);
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

#[test]
fn commands_report_output_exit_and_status() {
    let server = Server::start(&[]);
    let id = session(&server);
    let out = ok(
        &server,
        &id,
        json!({"command": "echo out; echo err >&2; pwd; whoami; exit 3"}),
    );
    assert_eq!(out["status"], "failed");
    assert_eq!(out["exitCode"], 3);
    assert_eq!(out["stderr"], "err\n");
    let stdout = out["stdout"].as_str().expect("stdout");
    assert!(stdout.starts_with("out\n"), "{stdout}");
    // The emulator's kubelet runs agents as its own user; the local runtime switches.
    if !common::kubernetes_mode() {
        assert!(
            stdout.contains("sandbox"),
            "runs as the sandbox user: {stdout}"
        );
    }
    assert!(out["durationMs"].is_u64());
    assert!(out.get("truncated").is_none());

    let done = ok(&server, &id, json!({"command": "true"}));
    assert_eq!(
        (done["status"].clone(), done["exitCode"].clone()),
        (json!("completed"), json!(0))
    );

    // env, cwd (made first), stdin.
    ok(&server, &id, json!({"command": "mkdir -p work/dir"}));
    let env = ok(
        &server,
        &id,
        json!({"command": "echo \"$GREETING\"; pwd; cat", "env": {"GREETING": "it's me"},
               "cwd": "work/dir", "stdin": "from stdin"}),
    );
    let stdout = env["stdout"].as_str().expect("stdout");
    assert!(stdout.starts_with("it's me\n"), "{stdout}");
    assert!(stdout.contains("/work/dir\n"), "{stdout}");
    assert!(stdout.ends_with("from stdin"), "{stdout}");

    // Killed by a signal: failed, 128+n.
    let killed = ok(&server, &id, json!({"command": "kill -TERM $$"}));
    assert_eq!(killed["status"], "failed");
    assert_eq!(killed["exitCode"], 143);

    // Binary output is never an error; it is replaced.
    let binary = ok(&server, &id, json!({"command": "printf 'a\\377b'"}));
    assert_eq!(binary["stdout"], "a\u{FFFD}b");

    // The same under /sessions/{id}/… (an api_url without /v1).
    let res = server
        .request("POST", &format!("/sessions/{id}/commands"))
        .json(r#"{"command":"echo short"}"#)
        .send();
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["stdout"], "short\n");
}

#[test]
fn big_output_is_cut_and_marked_truncated() {
    let server = Server::start(&[]);
    let id = session(&server);
    let out = ok(
        &server,
        &id,
        json!({"command": "head -c 50000000 /dev/zero | tr '\\0' x; echo done >&2"}),
    );
    assert_eq!(out["status"], "completed");
    assert_eq!(out["truncated"], true);
    assert_eq!(out["stderr"], "done\n");
    let len = out["stdout"].as_str().expect("stdout").len();
    assert!(len > 0 && len < 50_000_000, "{len}");
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let server = Server::start(&[]);
    let id = session(&server);
    let out = ok(
        &server,
        &id,
        json!({"command": "sleep 300 & sleep 301 & echo started; wait", "timeout": 1}),
    );
    assert_eq!(out["status"], "timeout");
    assert_eq!(out["exitCode"], Value::Null);
    assert_eq!(
        out["stdout"], "started\n",
        "output before the deadline is kept"
    );
    // Checked from a second call: nothing of the first one is left.
    let ps = ok(&server, &id, json!({"command": "ps -eo args"}));
    let procs = ps["stdout"].as_str().expect("ps");
    assert!(!procs.contains("sleep 30"), "left behind:\n{procs}");
}

#[test]
fn streaming_sends_lines_in_order_and_the_exit_last() {
    let server = Server::start(&[]);
    let id = session(&server);
    let res = server
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .header("Accept", "application/x-ndjson")
        .json(r#"{"command":"for i in 1 2 3; do echo o$i; sleep 0.1; echo e$i >&2; sleep 0.1; done; exit 4"}"#)
        .send();
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    let events: Vec<Value> = res
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let texts: Vec<String> = events
        .iter()
        .filter_map(|e| {
            e.get("stdout")
                .or_else(|| e.get("stderr"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(texts.concat(), "o1\ne1\no2\ne2\no3\ne3\n");
    let last = events.last().expect("events");
    assert_eq!(last["exit"]["status"], "failed");
    assert_eq!(last["exit"]["exitCode"], 4);
}

#[test]
fn code_runs_with_the_sandbox_interpreters() {
    let server = Server::start(&[]);
    let id = session(&server);
    let code = |body: Value| {
        let res = server
            .request("POST", &format!("/v1/sessions/{id}/code"))
            .json(&body.to_string())
            .send();
        assert_eq!(res.status, 200, "{}", res.text());
        res.json()
    };
    let py =
        code(json!({"code": "import sys\nprint(sum(range(10)))\nprint('e', file=sys.stderr)"}));
    assert_eq!(py["stdout"], "45\n");
    assert_eq!(py["stderr"], "e\n");
    assert_eq!(py["status"], "completed");
    let sh = code(json!({"language": "bash", "code": "echo ${BASH_VERSION:+bash}; exit 2"}));
    assert_eq!(
        (sh["stdout"].clone(), sh["exitCode"].clone()),
        (json!("bash\n"), json!(2))
    );
    let bad = server
        .request("POST", &format!("/v1/sessions/{id}/code"))
        .json(r#"{"language":"cobol","code":"x"}"#)
        .send();
    bad.assert_error(400, "INVALID_LANGUAGE");
    let empty = server
        .request("POST", &format!("/v1/sessions/{id}/code"))
        .json(r#"{"code":""}"#)
        .send();
    empty.assert_error(400, "INVALID_REQUEST");
}

#[test]
fn bad_exec_requests_are_refused_before_running() {
    let server = Server::start(&[]);
    let id = session(&server);
    run(&server, &id, json!({})).assert_error(400, "INVALID_REQUEST");
    run(&server, &id, json!({"command": ""})).assert_error(400, "INVALID_REQUEST");
    run(&server, &id, json!({"command": "true", "timeout": 0}))
        .assert_error(400, "INVALID_TIMEOUT");
    run(&server, &id, json!({"command": "true", "timeout": 301}))
        .assert_error(400, "INVALID_TIMEOUT");
    run(
        &server,
        &id,
        json!({"command": "true", "env": {"A B": "x"}}),
    )
    .assert_error(400, "INVALID_REQUEST");
    run(&server, &id, json!({"command": "a\u{0}b"})).assert_error(400, "INVALID_REQUEST");
    let missing = uuid::Uuid::new_v4();
    run(&server, &missing.to_string(), json!({"command": "true"}))
        .assert_error(404, "SESSION_NOT_FOUND");
    run(&server, "not-a-uuid", json!({"command": "true"})).assert_error(404, "SESSION_NOT_FOUND");
}

#[test]
fn another_users_session_is_not_found() {
    let server = Server::start(&["--jwt-secret", SECRET]);
    let (alice, bob) = (token("alice"), token("bob"));
    let id = server.create(Some(&alice), "{}")["sessionId"]
        .as_str()
        .expect("id")
        .to_owned();
    let as_bob = server
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .bearer(&bob)
        .json(r#"{"command":"true"}"#)
        .send();
    as_bob.assert_error(404, "SESSION_NOT_FOUND");
    let files = server
        .request("GET", &format!("/v1/sessions/{id}/files?path=."))
        .bearer(&bob)
        .send();
    files.assert_error(404, "SESSION_NOT_FOUND");
    let anonymous = server
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .json(r#"{"command":"true"}"#)
        .send();
    anonymous.assert_error(401, "UNAUTHORIZED");
    let as_alice = server
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .bearer(&alice)
        .json(r#"{"command":"echo mine"}"#)
        .send();
    assert_eq!(as_alice.json()["stdout"], "mine\n");
}

#[test]
fn files_upload_download_range_list_delete() {
    let server = Server::start(&["--max-upload-size", "1M"]);
    let id = session(&server);
    let files = |query: &str| format!("/v1/sessions/{id}/files?{query}");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let up = server
        .request("POST", &files("path=dir/sub/data.bin"))
        .header("Content-Type", "application/octet-stream")
        .body(&data)
        .send();
    assert_eq!(up.status, 201, "{}", up.text());
    let info = up.json();
    assert_eq!(info["name"], "data.bin");
    assert_eq!(info["type"], "file");
    assert_eq!(info["size"], 300_000);
    assert_eq!(info["permissions"], "rw-r--r--");

    // The file is the sandbox user's, seen from a command.
    let seen = ok(&server, &id, json!({"command": "wc -c < dir/sub/data.bin"}));
    assert_eq!(seen["stdout"], "300000\n");

    let down = server
        .request("GET", &files("path=dir/sub/data.bin"))
        .send();
    assert_eq!(down.status, 200);
    assert_eq!(down.body, data);
    assert_eq!(down.header("content-length").as_deref(), Some("300000"));
    assert!(
        down.header("content-disposition")
            .expect("disposition")
            .contains("filename=\"data.bin\"")
    );
    // The original API's parameter name.
    let orig = server
        .request("GET", &files("filePath=dir/sub/data.bin"))
        .send();
    assert_eq!(orig.body.len(), 300_000);

    let part = server
        .request("GET", &files("path=dir/sub/data.bin"))
        .header("Range", "bytes=1000-1009")
        .send();
    assert_eq!(part.status, 206);
    assert_eq!(part.body, data[1000..1010]);
    assert_eq!(
        part.header("content-range").as_deref(),
        Some("bytes 1000-1009/300000")
    );
    let past = server
        .request("GET", &files("path=dir/sub/data.bin"))
        .header("Range", "bytes=400000-")
        .send();
    past.assert_error(416, "RANGE_NOT_SATISFIABLE");

    // overwrite=false (the default) on an existing file; overwrite=true replaces it.
    server
        .request("POST", &files("path=dir/sub/data.bin"))
        .body(b"new")
        .send()
        .assert_error(409, "FILE_EXISTS");
    let replaced = server
        .request("POST", &files("path=dir/sub/data.bin&overwrite=true"))
        .body(b"new")
        .send();
    assert_eq!(replaced.status, 201, "{}", replaced.text());
    assert_eq!(
        server
            .request("GET", &files("path=dir/sub/data.bin"))
            .send()
            .body,
        b"new"
    );

    // Over --max-upload-size: 413 and nothing left behind, not even a temporary file.
    let big = vec![b'x'; 2 * 1024 * 1024];
    server
        .request("POST", &files("path=dir/big.bin"))
        .body(&big)
        .send()
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    let listing = server.request("GET", &files("path=dir")).send();
    assert_eq!(listing.status, 200);
    let listing = listing.json();
    assert_eq!(listing["path"], "dir");
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["sub"]);
    let leftovers = ok(&server, &id, json!({"command": "ls -A dir dir/sub"}));
    assert!(
        !leftovers["stdout"]
            .as_str()
            .expect("ls")
            .contains("pico-upload")
    );

    // Bad paths and missing files.
    server
        .request("GET", &files("path=a%00b"))
        .send()
        .assert_error(400, "INVALID_PATH");
    server
        .request("GET", &files(""))
        .send()
        .assert_error(400, "INVALID_PATH");
    server
        .request("GET", &files("path=nope"))
        .send()
        .assert_error(404, "FILE_NOT_FOUND");
    server
        .request("DELETE", &files("path=nope"))
        .send()
        .assert_error(404, "FILE_NOT_FOUND");

    // Delete: a non-empty directory needs recursive=true.
    server
        .request("DELETE", &files("path=dir"))
        .send()
        .assert_error(409, "DIRECTORY_NOT_EMPTY");
    let gone = server
        .request("DELETE", &files("path=dir&recursive=true"))
        .send();
    assert_eq!(gone.status, 200, "{}", gone.text());
    server
        .request("GET", &files("path=dir"))
        .send()
        .assert_error(404, "FILE_NOT_FOUND");
}

#[test]
fn paths_reach_only_what_the_sandbox_sees() {
    let server = Server::start_outside_tmp(&[]);
    let id = session(&server);
    // The server's state directory (keys of every session) is hidden inside the sandbox.
    let state = server.state_dir.join("pico.redb");
    let query = format!("/v1/sessions/{id}/files?path={}", state.display());
    server
        .request("GET", &query)
        .send()
        .assert_error(404, "FILE_NOT_FOUND");
    let escape = format!(
        "/v1/sessions/{id}/files?path=../../../../{}",
        state.display()
    );
    server
        .request("GET", &escape)
        .send()
        .assert_error(404, "FILE_NOT_FOUND");
}

#[test]
/// Local runtime only (skipped by `make test-kube`): the restart reuses the state directory.
fn exec_works_again_after_a_server_restart() {
    let mut server = Server::start(&[]);
    let id = session(&server);
    ok(&server, &id, json!({"command": "echo kept > note"}));
    let state_dir = server.state_dir.clone();
    server.kill9();
    // The recovered session still trusts the server's key, which was kept in the state dir.
    let restarted = Server::start_in(&state_dir, &[]);
    let out = ok(&restarted, &id, json!({"command": "cat note"}));
    assert_eq!(out["stdout"], "kept\n");
}

/// Sends one request on a keep-alive connection (only its head if `body` is `None`) and
/// returns the response head, lower-cased.
fn keep_alive_head(
    stream: &mut std::net::TcpStream,
    path: &str,
    length: usize,
    body: Option<&[u8]>,
) -> String {
    use std::io::{Read, Write};
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("write head");
    if let Some(body) = body {
        stream.write_all(body).expect("write body");
    }
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read head");
        assert_eq!(n, 1, "connection closed before a response head");
        raw.push(byte[0]);
    }
    String::from_utf8_lossy(&raw).to_ascii_lowercase()
}

#[test]
fn an_answer_sent_before_the_upload_was_read_closes_the_connection() {
    // Found by CI: the SDK's next request on its pooled connection failed with "Remote end
    // closed connection without response" after an early 409 on `overwrite=false`.
    let server = Server::start(&[]);
    let id = session(&server);
    let path = format!("/v1/sessions/{id}/files?path=kept.bin&overwrite=false");
    let mut stream = std::net::TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    // A body that was read to its end keeps the connection open for the next request.
    let created = keep_alive_head(&mut stream, &path, 5, Some(b"first"));
    assert!(created.starts_with("http/1.1 201"), "{created}");
    assert!(!created.contains("connection: close"), "{created}");
    let mut rest = vec![0u8; created_body_len(&created)];
    std::io::Read::read_exact(&mut stream, &mut rest).expect("body");
    // The refusal comes before the (large, never sent) body: the server says it will close.
    let refused = keep_alive_head(&mut stream, &path, 10_000_000, None);
    assert!(refused.starts_with("http/1.1 409"), "{refused}");
    assert!(refused.contains("connection: close"), "{refused}");
}

fn created_body_len(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length")
}
