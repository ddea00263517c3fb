//! `pico` against an `https://` server (`--enable-tls`): REST, its own SSH, and OpenSSH
//! through `pico proxy` over both tunnels, trusting a CA given with `--ca-cert`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Server, User, assert_one_line_error, stderr, stdout};

/// A self-signed leaf certificate for 127.0.0.1, made with the openssl tool.
fn self_signed(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=pico-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl failed");
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn https_servers_work_for_rest_ssh_and_both_tunnels() {
    let certs = tempfile::tempdir().expect("tmp");
    let (cert, key) = self_signed(certs.path());
    let server = Server::start(&["--enable-tls", "--tls-cert", &cert, "--tls-key", &key]);
    let mut user = User::new(&server, None);
    let port = server.addr.port();
    user.url = format!("https://127.0.0.1:{port}");

    // Not trusted yet: one clear line.
    let refused = assert_one_line_error(&user.run(&["list"]));
    assert!(refused.contains("certificate"), "{refused}");

    let with_ca = |args: &[&str]| {
        let mut all = vec!["--ca-cert", cert.as_str()];
        all.extend_from_slice(args);
        user.run(&all)
    };
    let created = with_ca(&["create"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let id = stdout(&created).trim().to_owned();
    let output = with_ca(&["exec", &id, "--", "echo over tls; exit 2"]);
    assert_eq!(
        (stdout(&output).as_str(), output.status.code()),
        ("over tls\n", Some(2))
    );

    // The stanza carries --ca-cert, so plain OpenSSH works through both tunnels.
    for extra in [&[][..], &["--websocket"][..]] {
        let mut args = vec!["ssh-config"];
        args.extend_from_slice(extra);
        let stanza = with_ca(&args);
        assert!(stanza.status.success(), "{}", stderr(&stanza));
        let config = user.home.path().join("ssh_config");
        std::fs::write(&config, &stanza.stdout).expect("write");
        let output = Command::new("ssh")
            .arg("-F")
            .arg(&config)
            .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"])
            .env("HOME", user.home.path())
            .env("XDG_CONFIG_HOME", user.home.path().join("xdg"))
            .env_remove("PICO_URL")
            .env_remove("PICO_CA_CERT")
            .env_remove("PICO_CONFIG")
            .env_remove("PICO_TOKEN")
            .arg(&id)
            .arg("echo ssh over tls")
            .stdin(Stdio::null())
            .output()
            .expect("ssh");
        assert_eq!(
            stdout(&output),
            "ssh over tls\n",
            "{extra:?}: {}",
            stderr(&output)
        );
    }
}
