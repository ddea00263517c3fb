//! From inside session A, session B's home and processes and the server's state directory
//! are invisible or unreadable.

mod common;

use common::{Server, SshTarget, stderr, stdout};

#[test]
fn sessions_cannot_see_each_other_or_the_server() {
    // Without a disk image, so that B's home is a plain directory A could try to reach.
    let server = Server::start_outside_tmp(&["--session-disk", "0"]);
    let a = server.create(None, "");
    let b = server.create(None, "");
    let (ssh_a, ssh_b) = (
        SshTarget::new(&server, &a, None),
        SshTarget::new(&server, &b, None),
    );
    let b_id = b["sessionId"].as_str().expect("id");
    let state = server.state_dir.display().to_string();
    let b_home = server.state_dir.join("sessions").join(b_id).join("home");

    let wrote = ssh_b.ssh("echo b-secret > ~/secret.txt && echo b-tmp > /tmp/b-marker && pwd");
    assert!(wrote.status.success(), "{}", stderr(&wrote));
    assert!(
        b_home.join("secret.txt").is_file(),
        "B's file is not in B's home"
    );

    let script = format!(
        r#"
        echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
        echo "procs=$(ls /proc | grep -c '^[0-9]')"
        echo "state=$(ls -A {state} 2>/dev/null | wc -l)"
        cat {b_home}/secret.txt 2>/dev/null && echo "read-b-home"
        cat {state}/pico.redb >/dev/null 2>&1 && echo "read-store"
        ls /tmp/b-marker 2>/dev/null && echo "saw-b-tmp"
        echo "homes=$(ls /home)"
        echo "whoami=$(id -u)"
        echo "name=$(whoami) $(id -gn)"
        "#,
        b_home = b_home.display(),
    );
    // A separate command, whose own text does not name B's home: `[x]yz` matches "xyz" but
    // not the searching grep's command line.
    let procs = format!(
        r#"echo "b_procs=$(grep -l '[{}]{}' /proc/[0-9]*/cmdline 2>/dev/null | wc -l)"
           echo "server_procs=$(grep -l '[p]ico-apiserver' /proc/[0-9]*/cmdline 2>/dev/null | wc -l)""#,
        &b_id[..1],
        &b_id[1..]
    );
    let mut text = String::new();
    for command in [&script, &procs] {
        let output = ssh_a.ssh(command);
        assert!(output.status.success(), "{}", stderr(&output));
        text.push_str(&stdout(&output));
    }
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .trim()
            .to_owned()
    };
    assert!(value("pid1").contains("pico-agent"), "{text}");
    let procs: u32 = value("procs").parse().expect("count");
    assert!(procs < 20, "A sees {procs} processes:\n{text}");
    assert_eq!(value("b_procs"), "0", "A sees B's processes");
    assert_eq!(value("server_procs"), "0", "A sees the server");
    assert_eq!(value("state"), "0", "A sees the state directory");
    assert!(!text.contains("read-b-home"), "A read B's home");
    assert!(!text.contains("read-store"), "A read the session store");
    assert!(!text.contains("saw-b-tmp"), "A sees B's /tmp");
    assert_eq!(value("homes"), "sandbox");
    if common::is_root() {
        assert_ne!(value("whoami"), "0", "sandbox commands run as host root");
        assert_eq!(
            value("name"),
            "sandbox sandbox",
            "the sandbox user has no name"
        );
    }
}

/// With several users (auth on), each sandbox has a network of its own: a service on one
/// sandbox's loopback is reachable there and nowhere else, and the server's port is not
/// reachable from inside at all.
#[test]
fn sandboxes_of_an_authenticated_server_have_their_own_network() {
    let server = Server::start(&["--jwt-secret", common::SECRET]);
    let (alice, bob) = (common::token("alice"), common::token("bob"));
    let a = server.create(Some(&alice), "");
    let b = server.create(Some(&bob), "");
    let (ssh_a, ssh_b) = (
        SshTarget::new(&server, &a, Some(&alice)),
        SshTarget::new(&server, &b, Some(&bob)),
    );
    let serve = ssh_a.ssh(
        "nohup python3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1 & \
         for i in $(seq 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8765), 1)' 2>/dev/null && break; sleep 0.1; done; echo up",
    );
    assert_eq!(stdout(&serve), "up\n", "{}", stderr(&serve));
    let probe = |port: u16| {
        format!(
            "python3 -c 'import socket\ntry:\n  socket.create_connection((\"127.0.0.1\", {port}), 2); print(\"open\")\nexcept OSError: print(\"closed\")'"
        )
    };
    assert_eq!(
        stdout(&ssh_a.ssh(&probe(8765))),
        "open\n",
        "A cannot reach its own service"
    );
    assert_eq!(
        stdout(&ssh_b.ssh(&probe(8765))),
        "closed\n",
        "B reaches A's service"
    );
    let api = server.addr.port();
    assert_eq!(
        stdout(&ssh_b.ssh(&probe(api))),
        "closed\n",
        "a sandbox reaches the API server"
    );
}
