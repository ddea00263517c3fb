//! The built `pico` against the real server: a session's whole lifecycle, `exec`/`ssh` exit
//! codes, the interactive pty, config sources, and errors as one line.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{Server, User, assert_one_line_error, stderr, stdout, token};
use serde_json::Value;

#[test]
fn the_whole_lifecycle_through_pico() {
    let server = Server::start(&[]);
    let user = User::new(&server, None);

    let id = user
        .ok(&[
            "create",
            "--ttl",
            "600",
            "-m",
            "team=infra",
            "--metadata",
            "purpose=test",
        ])
        .trim()
        .to_owned();
    assert_eq!(id.len(), 36, "{id}");

    // The CLI made its own key pair, private, and pinned the session's host key.
    let key = user.config_dir().join("id_ed25519");
    let mode = std::fs::metadata(&key).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let known = std::fs::read_to_string(user.config_dir().join("known_hosts")).expect("pins");
    assert!(known.starts_with(&format!("{id} ssh-ed25519 ")), "{known}");

    let table = user.ok(&["list"]);
    let mut lines = table.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("ID") && h.contains("STATUS")),
        "{table}"
    );
    let row = lines.next().expect("a row");
    assert!(
        row.starts_with(&id) && row.contains("running") && row.contains("purpose=test"),
        "{table}"
    );

    let list: Value = serde_json::from_str(&user.ok(&["list", "--output", "json"])).expect("json");
    assert_eq!(list["total"], 1);
    assert_eq!(list["sessions"][0]["sessionId"], id.as_str());
    assert_eq!(list["sessions"][0]["metadata"]["team"], "infra");

    let shown = user.ok(&["get", &id]);
    assert!(shown.contains(&id) && shown.contains("running"), "{shown}");
    let before: Value = serde_json::from_str(&user.ok(&["get", &id, "-o", "json"])).expect("json");
    assert_eq!(before["ttl"], 600);

    // A unique prefix is enough.
    let extended: Value =
        serde_json::from_str(&user.ok(&["extend", &id[..8], "--ttl", "7200", "-o", "json"]))
            .expect("json");
    assert_eq!(extended["sessionId"], id.as_str());
    assert!(extended["expiresAt"].as_str() > before["expiresAt"].as_str());

    // exec: stdout and stderr apart, the exit code passed through.
    let output = user.run(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(stdout(&output), "out\n");
    assert_eq!(stderr(&output), "err\n");
    let output = user.run(&["exec", &id, "--", "true"]);
    assert_eq!(output.status.code(), Some(0));
    let output = user.run(&["exec", &id, "--", "kill -TERM $$"]);
    assert_eq!(output.status.code(), Some(128 + 15), "{}", stderr(&output));

    // ssh with a command: one command, stdin relayed, exit code passed through.
    let mut child = user
        .pico(&["ssh", &id, "--", "cat; exit 5"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pico ssh");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"piped input\n").expect("write");
    }
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(5));
    assert_eq!(stdout(&output), "piped input\n");

    let deleted = user.ok(&["delete", &id]);
    assert!(deleted.contains(&id), "{deleted}");
    let known = std::fs::read_to_string(user.config_dir().join("known_hosts")).expect("pins");
    assert!(
        !known.contains(&id),
        "the pin outlived the session: {known}"
    );
    let gone = assert_one_line_error(&user.run(&["get", &id]));
    assert!(gone.contains("SESSION_NOT_FOUND"), "{gone}");
    let list: Value = serde_json::from_str(&user.ok(&["list", "-o", "json"])).expect("json");
    assert_eq!(list["total"], 0);

    // --no-wait returns the server's answer without probing SSH; JSON carries every field.
    let created: Value = serde_json::from_str(&user.ok(&[
        "create",
        "--no-wait",
        "--idle-timeout",
        "120",
        "-o",
        "json",
    ]))
    .expect("json");
    assert_eq!(created["idleTimeout"], 120);
    assert!(
        created.get("sshPrivateKey").is_none(),
        "pico brings its own key"
    );
    let id = created["sessionId"].as_str().expect("id");
    user.ok(&["delete", id]);
}

#[test]
fn interactive_ssh_gets_a_pty() {
    let server = Server::start(&[]);
    let user = User::new(&server, None);
    let id = user.create();

    // `script` gives pico a terminal, as a person's shell would.
    let pico = common::pico_binary();
    let output = user_command(&user, "script")
        .args(["-qec", &format!("{} ssh {id}", pico.display()), "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"echo \"on $(tty)\"; exit 7\n")?;
            drop(stdin);
            child.wait_with_output()
        })
        .expect("script");
    let text = stdout(&output);
    assert!(text.contains("on /dev/pts/"), "{text}");
    assert_eq!(output.status.code(), Some(7), "{text}");

    // `-t` asks for a pty even for one command.
    let output = user.run(&["ssh", "-t", &id, "--", "tty"]);
    assert!(
        stdout(&output).starts_with("/dev/pts/"),
        "{}",
        stdout(&output)
    );
}

/// A command with the user's environment (for tools that start `pico` themselves).
fn user_command(user: &User, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("HOME", user.home.path())
        .env("XDG_CONFIG_HOME", user.home.path().join("xdg"))
        .env("PICO_URL", &user.url)
        .env_remove("PICO_TOKEN")
        .env_remove("PICO_CONFIG");
    cmd
}

#[test]
fn url_and_token_from_the_config_file_flags_and_environment() {
    let server = Server::start(&["--jwt-secret", common::SECRET]);
    let user = User::new(&server, None);

    // No token at all: the server's 401 in one line.
    let refused = assert_one_line_error(&user.run(&["list"]));
    assert!(refused.contains("UNAUTHORIZED"), "{refused}");

    // The config file, at $XDG_CONFIG_HOME/pico/config.toml.
    std::fs::create_dir_all(user.config_dir()).expect("dir");
    let config = format!(
        "url = \"{}\"\ntoken = \"{}\"\n",
        server.url(),
        token("alice")
    );
    std::fs::write(user.config_dir().join("config.toml"), config).expect("config");
    let id = user
        .pico(&["create"])
        .env_remove("PICO_URL")
        .output()
        .expect("create");
    assert!(id.status.success(), "{}", stderr(&id));
    let id = stdout(&id).trim().to_owned();

    // PICO_CONFIG points elsewhere; flags beat the environment.
    let other = user.home.path().join("other.toml");
    std::fs::write(&other, "url = \"http://127.0.0.1:1\"\n").expect("config");
    let output = user
        .pico(&[
            "--url",
            &server.url(),
            "--token",
            &token("bob"),
            "list",
            "-o",
            "json",
        ])
        .env("PICO_CONFIG", &other)
        .output()
        .expect("list");
    let list: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(list["total"], 0, "bob sees none of alice's sessions");
    let output = user
        .pico(&["--token", &token("alice"), "list", "-o", "json"])
        .env("PICO_CONFIG", &other)
        .env_remove("PICO_URL")
        .output()
        .expect("list");
    let unreachable = assert_one_line_error(&output);
    assert!(unreachable.contains("127.0.0.1:1"), "{unreachable}");
    let output = user
        .pico(&["get", &id])
        .env_remove("PICO_URL")
        .output()
        .expect("get");
    assert!(output.status.success(), "{}", stderr(&output));

    // A broken config file is named in the error.
    std::fs::write(user.config_dir().join("config.toml"), "url = [").expect("config");
    let broken = assert_one_line_error(&user.run(&["list"]));
    assert!(broken.contains("config.toml"), "{broken}");
}

#[test]
fn errors_are_one_line_and_never_a_panic() {
    let server = Server::start(&[]);
    let user = User::new(&server, None);
    let missing = "00000000-0000-4000-8000-000000000000";
    for args in [
        vec!["get", missing],
        vec!["delete", missing],
        vec!["extend", missing, "--ttl", "600"],
        vec!["create", "--ttl", "5"],
        vec!["get", "not-an-id!"],
        vec!["cp", "a", "b"],
        vec!["--url", "ftp://example", "list"],
        vec!["--url", "http://127.0.0.1:1", "list"],
        vec!["proxy", missing],
        vec!["proxy", "--websocket", missing],
    ] {
        assert_one_line_error(&user.run(&args));
    }
    // ssh and exec keep 255 for pico's own failures, like OpenSSH.
    let output = user.run(&["exec", missing, "--", "true"]);
    assert_one_line_error(&output);
    assert_eq!(output.status.code(), Some(255));
    // Usage errors are clap's, with its exit code 2.
    assert_eq!(user.run(&["exec"]).status.code(), Some(2));
}

#[test]
fn shell_completions() {
    let server = Server::start(&[]);
    let user = User::new(&server, None);
    for (shell, marker) in [
        ("bash", "_pico()"),
        ("zsh", "#compdef pico"),
        ("fish", "complete -c pico"),
    ] {
        let text = user.ok(&["completions", shell]);
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(text.contains("ssh-config"), "{shell}");
    }
}
