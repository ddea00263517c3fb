//! Test harness: starts the real `pico-apiserver` on 127.0.0.1:0 and runs the built `pico`
//! binary against it with a private HOME and config directory.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pico_testkit::ServerProcess;
use serde_json::Value;

pub const SECRET: &str = "cli-test-secret-0123456789";

pub fn pico_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pico"))
}

/// The other binaries are built by `cargo build --workspace --bins` (as `make test` does).
fn sibling(name: &str) -> PathBuf {
    let path = pico_binary().with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

pub struct Server {
    /// The server process (`pico-testkit`); killed with its agents on drop.
    process: ServerProcess,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub state_dir: PathBuf,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pico-cli")
            .tempdir()
            .expect("tempdir");
        let state_dir = dir.path().join("state");
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--agent-binary".into(),
            sibling("pico-agent").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let process = ServerProcess::start(
            &sibling("pico-apiserver"),
            &args,
            &state_dir,
            &dir.path().join("server.log"),
        );
        Self {
            addr: process.addr,
            process,
            dir,
            state_dir,
        }
    }

    pub fn url(&self) -> String {
        self.process.url()
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }
}

/// A user of `pico`: a private HOME and XDG config dir, pointed at one server.
pub struct User {
    pub home: tempfile::TempDir,
    pub url: String,
    pub token: Option<String>,
}

impl User {
    pub fn new(server: &Server, token: Option<&str>) -> Self {
        Self {
            home: tempfile::Builder::new()
                .prefix("pico-home")
                .tempdir()
                .expect("home"),
            url: server.url(),
            token: token.map(str::to_owned),
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.home.path().join("xdg/pico")
    }

    /// `pico ARGS` with this user's environment (URL and token in the environment).
    pub fn pico(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(pico_binary());
        cmd.args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("xdg"))
            .env("PICO_URL", &self.url)
            .env_remove("PICO_CONFIG")
            .env_remove("PICO_CA_CERT")
            .env_remove("PICO_TOKEN")
            .stdin(Stdio::null());
        if let Some(token) = &self.token {
            cmd.env("PICO_TOKEN", token);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.pico(args).output().expect("run pico")
    }

    /// Runs `pico ARGS`, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "pico {args:?} failed ({:?}): {}",
            output.status.code(),
            stderr(&output)
        );
        stdout(&output)
    }

    /// Creates a session through `pico create` and returns its id.
    pub fn create(&self) -> String {
        self.ok(&["create", "--ttl", "600"]).trim().to_owned()
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts pico failed with one line on stderr, no panic, and returns that line.
pub fn assert_one_line_error(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure: {}",
        stdout(output)
    );
    let text = stderr(output);
    assert_eq!(text.lines().count(), 1, "not one line: {text:?}");
    assert!(text.starts_with("pico: "), "{text:?}");
    assert!(
        !text.contains("panicked") && !text.contains("internal error"),
        "{text:?}"
    );
    text
}

/// An HS256 token for `sub` signed with `SECRET`, valid for an hour.
pub fn token(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode token")
}

pub fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    stdout(&output)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned()
}

/// Random bytes from the kernel, so that a copy is checked on data that does not compress.
pub fn random_file(path: &Path, len: usize) {
    let mut data = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("urandom");
    std::fs::write(path, data).expect("write");
}

/// A raw HTTP/1.1 exchange: sends `head` (without the final blank line) and returns the
/// status and body of the answer.
pub fn raw_request(addr: SocketAddr, head: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
        .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .expect("write");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = serde_json::from_slice(&raw[split + 4..])
        .unwrap_or_else(|e| panic!("not JSON ({e}): {head}\n{}", String::from_utf8_lossy(&raw)));
    (status, body)
}

/// OpenSSH with only the given config file, never the user's own files.
pub fn ssh_tool(tool: &str, user: &User, config: &Path) -> Command {
    let mut cmd = Command::new(tool);
    cmd.arg("-F")
        .arg(config)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=30",
            "-o",
            "LogLevel=ERROR",
        ])
        .env("HOME", user.home.path())
        .env("XDG_CONFIG_HOME", user.home.path().join("xdg"))
        .env("PICO_URL", &user.url)
        .env_remove("PICO_CONFIG")
        .stdin(Stdio::null());
    match &user.token {
        Some(t) => cmd.env("PICO_TOKEN", t),
        None => cmd.env_remove("PICO_TOKEN"),
    };
    cmd
}

pub fn ssh_config(user: &User, extra: &[&str]) -> PathBuf {
    let mut args = vec!["ssh-config"];
    args.extend_from_slice(extra);
    let stanza = user.ok(&args);
    let path = user.home.path().join("ssh_config");
    std::fs::write(&path, stanza).expect("write config");
    path
}

pub fn assert_ran(output: &Output, expected: &str, code: i32) {
    assert_eq!(stdout(output), expected, "stderr: {}", stderr(output));
    assert_eq!(
        output.status.code(),
        Some(code),
        "stderr: {}",
        stderr(output)
    );
}
