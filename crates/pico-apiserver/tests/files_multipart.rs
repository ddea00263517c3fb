//! `POST …/files` with `multipart/form-data` (the original API's upload form, field `file`),
//! sent by real curl (`-F file=@…`): streamed into the sandbox, the same limits as a raw body
//! (413 over `--max-upload-size` with nothing half-written, 409 `FILE_EXISTS`).

mod common;

use std::process::Command;

use common::Server;
use serde_json::{Value, json};

/// `curl -F` against `…/files?QUERY`: (HTTP status, body).
fn curl_form(
    server: &Server,
    id: &str,
    query: &str,
    forms: &[&str],
    extra: &[&str],
) -> (u16, Value) {
    let url = format!("{}/v1/sessions/{id}/files?{query}", server.url());
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}"]);
    for form in forms {
        cmd.args(["-F", form]);
    }
    let out = cmd.args(extra).arg(&url).output().expect("curl");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = common::stdout(&out);
    let (body, status) = text.rsplit_once('\n').expect("status line");
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status.parse().expect("status"), body)
}

fn run(server: &Server, id: &str, command: &str) -> Value {
    let res = server
        .request("POST", &format!("/v1/sessions/{id}/commands"))
        .json(&json!({"command": command}).to_string())
        .send();
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

#[test]
fn multipart_uploads_stream_the_file_part_with_the_same_limits() {
    let server = Server::start(&["--max-upload-size", "1M"]);
    let id = server.create(None, "{}")["sessionId"]
        .as_str()
        .expect("id")
        .to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..700_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let local = dir.path().join("data.bin");
    std::fs::write(&local, &data).expect("write");
    let file = format!("file=@{}", local.display());

    // Other parts before the file are skipped; the file lands with its bytes intact.
    let (status, info) = curl_form(
        &server,
        &id,
        "path=up/data.bin",
        &["note=hello", &file],
        &[],
    );
    assert_eq!(status, 201, "{info}");
    assert_eq!(
        (&info["name"], &info["size"]),
        (&json!("data.bin"), &json!(700_000))
    );
    let down = server
        .request("GET", &format!("/v1/sessions/{id}/files?path=up/data.bin"))
        .send();
    assert_eq!(down.body, data);

    // overwrite=false on an existing file, then overwrite=true.
    let (status, err) = curl_form(&server, &id, "path=up/data.bin", &[&file], &[]);
    assert_eq!(
        (status, &err["error"]),
        (409, &json!("FILE_EXISTS")),
        "{err}"
    );
    let small = dir.path().join("small.txt");
    std::fs::write(&small, "new\n").expect("write");
    let small = format!("file=@{}", small.display());
    let (status, info) = curl_form(
        &server,
        &id,
        "path=up/data.bin&overwrite=true",
        &[&small],
        &[],
    );
    assert_eq!((status, &info["size"]), (201, &json!(4)), "{info}");

    // No part named file.
    let (status, err) = curl_form(&server, &id, "path=up/none.bin", &["other=@/dev/null"], &[]);
    assert_eq!(
        (status, &err["error"]),
        (400, &json!("INVALID_REQUEST")),
        "{err}"
    );

    // Over the limit: refused from Content-Length, and when streamed without one (chunked).
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 2 * 1024 * 1024]).expect("write");
    let big = format!("file=@{}", big.display());
    for extra in [&[][..], &["-H", "Transfer-Encoding: chunked"][..]] {
        let (status, err) = curl_form(&server, &id, "path=up/big.bin", &[&big], extra);
        assert_eq!(
            (status, &err["error"]),
            (413, &json!("PAYLOAD_TOO_LARGE")),
            "{extra:?}: {err}"
        );
    }
    let left = run(&server, &id, "ls -A up; cat up/data.bin");
    assert_eq!(
        left["stdout"], "data.bin\nnew\n",
        "nothing half-written: {left}"
    );
}
