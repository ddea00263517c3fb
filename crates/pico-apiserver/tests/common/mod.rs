//! Test harness: starts the real `pico-apiserver` binary on 127.0.0.1:0 and talks to it with
//! a raw HTTP/1.1 client (so tests control every byte) and with OpenSSH.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use pico_testkit::ServerProcess;
use serde_json::Value;

pub const SECRET: &str = "test-secret-0123456789";

pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pico-apiserver"))
        .parent()
        .expect("bin dir")
        .to_path_buf()
}

pub fn agent_binary() -> PathBuf {
    let path = bin_dir().join("pico-agent");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Server {
    /// The server process (`pico-testkit`); killed with its agents on drop.
    pub process: ServerProcess,
    pub addr: SocketAddr,
    pub state_dir: PathBuf,
    pub args: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
    pub log: PathBuf,
    /// With `PICO_TEST_RUNTIME=kubernetes`: the Kubernetes API emulator this server uses.
    pub emulator: Option<Child>,
}

/// Whether the black-box suite runs against the Kubernetes runtime
/// (`PICO_TEST_RUNTIME=kubernetes`, on the `pico-kube-emulator` binary) instead of local.
pub fn kubernetes_mode() -> bool {
    std::env::var("PICO_TEST_RUNTIME").is_ok_and(|v| v == "kubernetes")
}

pub fn emulator_binary() -> PathBuf {
    let path = bin_dir().join("pico-kube-emulator");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// Starts `pico-kube-emulator` writing a kubeconfig next to `state_dir`; returns the process
/// and the flags that point a server at it.
fn start_emulator(state_dir: &Path) -> (Child, Vec<String>) {
    let kubeconfig = state_dir.with_extension("kubeconfig");
    let mut child = Command::new(emulator_binary())
        .args(["--port", "0", "--write-kubeconfig"])
        .arg(&kubeconfig)
        .arg("--agent-binary")
        .arg(agent_binary())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pico-kube-emulator (cargo build --workspace --bins)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read listening line");
    assert!(line.starts_with("listening on"), "emulator: {line:?}");
    let args = [
        "--runtime",
        "kubernetes",
        "--ssh-port",
        "2222",
        "--kubeconfig",
    ]
    .into_iter()
    .map(String::from)
    .chain([kubeconfig.display().to_string()])
    .collect();
    (child, args)
}

impl Server {
    /// Starts a server with its own fresh state directory.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_under(&std::env::temp_dir(), extra)
    }

    /// Starts a server whose state directory is not under `/tmp` (which every sandbox
    /// replaces with its own), so that hiding the state directory itself is exercised.
    pub fn start_outside_tmp(extra: &[&str]) -> Self {
        Self::start_under(Path::new(env!("CARGO_TARGET_TMPDIR")), extra)
    }

    fn start_under(parent: &Path, extra: &[&str]) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("p")
            .tempdir_in(parent)
            .expect("tempdir");
        let state_dir = tmp.path().join("state");
        let mut server = Self::start_in(&state_dir, extra);
        server._tmp = Some(tmp);
        server
    }

    /// Starts a server on an existing state directory (restart tests).
    pub fn start_in(state_dir: &Path, extra: &[&str]) -> Self {
        let log = state_dir.with_extension("log");
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--reap-interval".into(),
            "1".into(),
        ];
        if !extra.contains(&"--agent-binary") {
            args.push("--agent-binary".into());
            args.push(agent_binary().display().to_string());
        }
        let mut emulator = None;
        if kubernetes_mode() && !extra.contains(&"--runtime") {
            std::fs::create_dir_all(state_dir.parent().expect("parent")).expect("state parent");
            let (child, kube_args) = start_emulator(state_dir);
            emulator = Some(child);
            args.extend(kube_args);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let process = ServerProcess::start(
            Path::new(env!("CARGO_BIN_EXE_pico-apiserver")),
            &args,
            state_dir,
            &log,
        );
        Self {
            addr: process.addr,
            process,
            state_dir: state_dir.to_path_buf(),
            args,
            _tmp: None,
            log,
            emulator,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        self.process.terminate()
    }

    pub fn request(&self, method: &str, path: &str) -> Req {
        Req {
            addr: self.addr,
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Creates a session and returns its JSON.
    pub fn create(&self, token: Option<&str>, body: &str) -> Value {
        let mut req = self.request("POST", "/v1/sessions").json(body);
        if let Some(token) = token {
            req = req.bearer(token);
        }
        let res = req.send();
        assert_eq!(res.status, 200, "create failed: {}", res.text());
        res.json()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        kill_agents(&self.state_dir);
        if let Some(mut emulator) = self.emulator.take() {
            // SIGTERM: the emulator stops the agents it started.
            let _ = Command::new("kill")
                .args(["-TERM", &emulator.id().to_string()])
                .status();
            let _ = emulator.wait();
        }
    }
}

pub use pico_testkit::kill_agents;

pub struct Req {
    addr: SocketAddr,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

pub struct Res {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Res {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// Asserts the documented error body and returns it.
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}\n{}", self.head, self.text());
        let body = self.json();
        assert_eq!(body["error"], code, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(
            body["requestId"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        let ts = body["timestamp"].as_str().expect("timestamp");
        assert!(ts.ends_with('Z') && ts.len() == 27, "timestamp {ts}");
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/json")
        );
        body
    }
}

impl Req {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub fn json(self, body: &str) -> Self {
        self.header("Content-Type", "application/json")
            .body(body.as_bytes())
    }

    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    pub fn send(self) -> Res {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.method, self.path, self.addr
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PATCH" | "PUT") {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("write head");
        // A server may answer (e.g. 413) before reading all of a large body.
        let _ = stream.write_all(&self.body);
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        parse_response(&raw)
    }
}

pub fn parse_response(raw: &[u8]) -> Res {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Res { status, head, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
}

/// An HS256 token for `sub` signed with `SECRET`, valid for an hour.
pub fn token(sub: &str) -> String {
    token_with(serde_json::json!({"sub": sub}))
}

pub fn token_with(mut claims: Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    if claims.get("exp").is_none() {
        claims["exp"] = (now + 3600).into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode token")
}

/// Files OpenSSH needs to reach one session: its private key and a known_hosts pinning the
/// host key from `hostKeys`.
pub struct SshTarget {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub id: String,
    pub token: Option<String>,
}

impl SshTarget {
    pub fn new(server: &Server, session: &Value, token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = session["sshPrivateKey"].as_str().expect("sshPrivateKey");
        write_mode(&dir.path().join("id"), key, 0o600);
        let host_key = session["ssh"]["hostKeys"][0].as_str().expect("host key");
        write_mode(
            &dir.path().join("known_hosts"),
            &format!("pico-session {host_key}\n"),
            0o600,
        );
        Self {
            dir,
            url: server.url(),
            id: session["sessionId"].as_str().expect("id").to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// `ssh` through the CONNECT tunnel, verifying the pinned host key.
    pub fn ssh(&self, command: &str) -> Output {
        self.ssh_command(command).output().expect("run ssh")
    }

    pub fn ssh_command(&self, command: &str) -> Command {
        let proxy = repo_root().join("tests/tools/connect-proxy.py");
        let proxy_command = format!(
            "python3 {} {} {} {}",
            proxy.display(),
            self.url,
            self.id,
            self.token.as_deref().unwrap_or("")
        );
        self.ssh_through(Command::new("ssh"), &proxy_command, command)
    }

    /// `ssh` (or `timeout … ssh`) to this session with its key and pinned host key, through
    /// `proxy_command`.
    pub fn ssh_through(&self, mut cmd: Command, proxy_command: &str, command: &str) -> Command {
        cmd.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-i")
        .arg(self.dir.path().join("id"))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            self.dir.path().join("known_hosts").display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "HostKeyAlias=pico-session",
        ])
        .args(["-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!("ProxyCommand={proxy_command}"))
        .arg("sandbox@pico-session")
        .arg(command)
        .stdin(Stdio::null());
        cmd
    }
}

pub fn write_mode(path: &Path, contents: &str, mode: u32) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(path)
        .expect("write file");
    file.write_all(contents.as_bytes()).expect("write");
}

/// An ed25519 key pair at `path` (and `path.pub`), made by OpenSSH's `ssh-keygen` as the
/// deployment docs say to make the agent client key.
pub fn ssh_keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "pico-apiserver",
            "-f",
        ])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{}", stderr(&out));
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether `raw` holds a whole response: a head and, with `Content-Length`, all its body.
pub fn parse_response_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    raw.len() >= split + 4 + length
}
