//! Stock OpenSSH reaching sessions: with the stanza from `pico ssh-config` (ssh, sftp, scp),
//! and through ncat and socat with the authority form of CONNECT.

mod common;

use std::path::Path;
use std::process::Output;

use common::{
    Server, User, assert_ran, random_file, sha256, ssh_config, ssh_tool, stderr, stdout, token,
};

#[test]
fn ssh_config_makes_plain_openssh_ssh_sftp_and_scp_work() {
    let server = Server::start(&[]);
    let user = User::new(&server, None);
    let id = user.create();
    let config = ssh_config(&user, &[]);
    let stanza = std::fs::read_to_string(&config).expect("read");
    assert!(
        stanza.contains("proxy %h") && stanza.contains("StrictHostKeyChecking yes"),
        "{stanza}"
    );

    let output = ssh_tool("ssh", &user, &config)
        .arg(format!("sandbox@{id}"))
        .arg("echo hello from $(id -u); echo err >&2; exit 4")
        .output()
        .expect("ssh");
    assert!(
        stdout(&output).starts_with("hello from "),
        "{}",
        stderr(&output)
    );
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(stderr(&output), "err\n");
    // The User line makes the user name optional.
    let output = ssh_tool("ssh", &user, &config)
        .arg(&id)
        .arg("true")
        .output()
        .expect("ssh");
    assert_ran(&output, "", 0);

    let work = tempfile::tempdir().expect("tmp");
    let file = work.path().join("up.bin");
    random_file(&file, 1024 * 1024 + 3);
    let output = ssh_tool("scp", &user, &config)
        .arg(&file)
        .arg(format!("sandbox@{id}:scp.bin"))
        .output()
        .expect("scp");
    assert!(output.status.success(), "scp: {}", stderr(&output));
    let down = work.path().join("down.bin");
    let output = ssh_tool("scp", &user, &config)
        .arg(format!("sandbox@{id}:scp.bin"))
        .arg(&down)
        .output()
        .expect("scp");
    assert!(output.status.success(), "scp: {}", stderr(&output));
    assert_eq!(sha256(&down), sha256(&file));

    let batch = work.path().join("batch");
    let via_sftp = work.path().join("via-sftp.bin");
    std::fs::write(
        &batch,
        format!(
            "put {} sftp.bin\nget sftp.bin {}\n",
            file.display(),
            via_sftp.display()
        ),
    )
    .expect("batch");
    let output = ssh_tool("sftp", &user, &config)
        .arg("-b")
        .arg(&batch)
        .arg(format!("sandbox@{id}"))
        .output()
        .expect("sftp");
    assert!(output.status.success(), "sftp: {}", stderr(&output));
    assert_eq!(sha256(&via_sftp), sha256(&file));

    // The host key is pinned: a different key for this session makes OpenSSH refuse.
    let other = user.create();
    let known = user.config_dir().join("known_hosts");
    let pins = std::fs::read_to_string(&known).expect("pins");
    let other_key = pins
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{other} ")))
        .expect("other pin")
        .to_owned();
    let forged: String = pins
        .lines()
        .map(|l| match l.strip_prefix(&format!("{id} ")) {
            Some(_) => format!("{id} {other_key}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&known, forged).expect("forge");
    // Bypass `pico proxy`'s own re-pinning to see OpenSSH check the file.
    let output = ssh_tool("ssh", &user, &config)
        .arg("-o")
        .arg(format!(
            "ProxyCommand=ncat --proxy {} --proxy-type http %h 22",
            server.addr
        ))
        .arg(&id)
        .arg("true")
        .output()
        .expect("ssh");
    assert_eq!(output.status.code(), Some(255), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("HOST IDENTIFICATION HAS CHANGED")
            || stderr(&output).contains("Host key verification failed"),
        "{}",
        stderr(&output)
    );
}

fn ssh_through(user: &User, config: &Path, proxy: &str, id: &str, command: &str) -> Output {
    ssh_tool("ssh", user, config)
        .arg("-o")
        .arg(format!("ProxyCommand={proxy}"))
        .arg(format!("sandbox@{id}"))
        .arg(command)
        .output()
        .expect("ssh")
}

#[test]
fn openssh_through_socat_with_the_authority_form_and_a_token() {
    let server = Server::start(&["--jwt-secret", common::SECRET]);
    let secret = token("carol");
    let user = User::new(&server, Some(&secret));
    let id = user.create();
    let config = ssh_config(&user, &[]);
    let port = server.addr.port();
    let socat = format!("socat - PROXY:127.0.0.1:%h:22,proxyport={port},proxyauth=user:{secret}");
    assert_ran(
        &ssh_through(&user, &config, &socat, &id, "echo via socat; exit 6"),
        "via socat\n",
        6,
    );

    // Without the token the proxy tool gets the server's 401, and OpenSSH fails.
    let socat = format!("socat - PROXY:127.0.0.1:%h:22,proxyport={port}");
    let output = ssh_through(&user, &config, &socat, &id, "true");
    assert_eq!(output.status.code(), Some(255), "{}", stdout(&output));
    let wrong = format!(
        "socat - PROXY:127.0.0.1:%h:22,proxyport={port},proxyauth=user:{}",
        token("eve")
    );
    let output = ssh_through(&user, &config, &wrong, &id, "true");
    assert_eq!(
        output.status.code(),
        Some(255),
        "another user's token: {}",
        stdout(&output)
    );
}

#[test]
fn openssh_through_ncat_with_the_authority_form() {
    // ncat sends Proxy-Authorization only after a 407 challenge, which the server gives to
    // a proxy-form CONNECT without credentials.
    let server = Server::start(&["--jwt-secret", common::SECRET]);
    let secret = token("dave");
    let user = User::new(&server, Some(&secret));
    let id = user.create();
    let config = ssh_config(&user, &[]);
    let ncat = format!(
        "ncat --proxy {} --proxy-type http --proxy-auth user:{secret} %h 22",
        server.addr
    );
    assert_ran(
        &ssh_through(&user, &config, &ncat, &id, "echo via ncat; exit 6"),
        "via ncat\n",
        6,
    );
    let ncat = format!(
        "ncat --proxy {} --proxy-type http --proxy-auth user:{secret} %h 2222",
        server.addr
    );
    let output = ssh_through(&user, &config, &ncat, &id, "true");
    assert_eq!(
        output.status.code(),
        Some(255),
        "port 2222 must be refused: {}",
        stdout(&output)
    );
}
