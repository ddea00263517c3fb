//! `pico exec`, `pico cp` and `pico run` over the HTTP API: they work for a session the
//! CLI holds no key for (made by another client), stream output and pass exit codes.

mod common;

use std::process::Stdio;

use common::{Server, User, assert_ran, raw_request, sha256, stderr, stdout};

/// A session made over plain HTTP, with a key the CLI never sees.
fn foreign_session(server: &Server) -> String {
    let (status, session) = raw_request(
        server.addr,
        "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n",
    );
    assert_eq!(status, 200, "{session}");
    session["sessionId"].as_str().expect("id").to_owned()
}

#[test]
fn exec_and_run_need_no_ssh_key() {
    let server = Server::start(&[]);
    let user = User::new(&server, None);
    let id = foreign_session(&server);
    let out = user.run(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_ran(&out, "out\n", 3);
    assert_eq!(stderr(&out), "err\n");
    assert!(
        !user.config_dir().join("id_ed25519").exists(),
        "no key was needed or made"
    );

    // stdin that is not a terminal is passed on.
    let mut child = user
        .pico(&["exec", &id, "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"piped\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_ran(&out, "PIPED\n", 0);

    let program = user.home.path().join("prog.py");
    std::fs::write(&program, "import sys\nprint('from python')\nsys.exit(4)\n").expect("write");
    let out = user.run(&["run", &id, program.to_str().expect("utf-8")]);
    assert_ran(&out, "from python\n", 4);
    let script = user.home.path().join("prog.sh");
    std::fs::write(&script, "echo \"bash ${BASH_VERSION%%.*}\" | cut -c1-4\n").expect("write");
    let out = user.run(&[
        "run",
        &id,
        "--lang",
        "bash",
        script.to_str().expect("utf-8"),
    ]);
    assert_ran(&out, "bash\n", 0);
    let bad = user.run(&[
        "run",
        &id,
        "--lang",
        "cobol",
        script.to_str().expect("utf-8"),
    ]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        stderr(&bad).contains("INVALID_LANGUAGE"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn cp_moves_single_files_both_ways_over_http() {
    let server = Server::start(&[]);
    let user = User::new(&server, None);
    let id = foreign_session(&server);
    let local = user.home.path().join("data.bin");
    common::random_file(&local, 3 * 1024 * 1024 + 17);
    let dest = format!("{id}:dir/data.bin");
    user.ok(&["cp", local.to_str().expect("utf-8"), &dest]);
    let back = user.home.path().join("back.bin");
    user.ok(&["cp", &dest, back.to_str().expect("utf-8")]);
    assert_eq!(sha256(&local), sha256(&back));
    let sum = user.ok(&["exec", &id, "--", "sha256sum dir/data.bin"]);
    assert!(sum.starts_with(&sha256(&local)), "{sum}");
    let missing = user.run(&["cp", &format!("{id}:nope"), back.to_str().expect("utf-8")]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(
        stderr(&missing).contains("nope: no such file or directory in the session"),
        "{}",
        stderr(&missing)
    );
    assert!(stdout(&missing).is_empty());
}
