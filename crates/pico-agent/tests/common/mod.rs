//! Test harness: keys made with ssh-keygen, the real `pico-agent` binary started on a free
//! loopback port (or a Unix socket) and awaited through its `ready` line, OpenSSH clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const AGENT: &str = env!("CARGO_BIN_EXE_pico-agent");

pub fn keygen(path: &Path, kind: &str) {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-C", "test", "-t", kind, "-f"])
        .arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    let status = cmd.status().expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen -t {kind} failed");
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub struct Agent {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    pub port: u16,
    pub socket: Option<PathBuf>,
    child: Child,
    stderr: PathBuf,
}

#[derive(Default)]
pub struct Options {
    pub extra: Vec<String>,
    pub unix: bool,
    /// Prepared paths the extra arguments may refer to.
    pub dir: Option<tempfile::TempDir>,
    /// A command the agent is started through (e.g. setpriv to drop root).
    pub wrapper: Option<Vec<String>>,
    /// Another pico-agent binary (e.g. the static build) instead of this crate's.
    pub binary: Option<PathBuf>,
}

impl Agent {
    pub fn start() -> Agent {
        Agent::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Agent {
        let dir = match opts.dir {
            Some(dir) => dir,
            None => tempfile::tempdir().expect("tempdir"),
        };
        let d = dir.path().to_path_buf();
        let home = d.join("home");
        std::fs::create_dir_all(&home).expect("home");
        for (name, kind) in [
            ("host", "ed25519"),
            ("client", "ed25519"),
            ("client_ecdsa", "ecdsa"),
            ("client_rsa", "rsa"),
            ("stranger", "ed25519"),
        ] {
            keygen(&d.join(name), kind);
        }
        let mut authorized = String::new();
        for name in ["client", "client_ecdsa", "client_rsa"] {
            authorized
                .push_str(&std::fs::read_to_string(d.join(format!("{name}.pub"))).expect("pub"));
        }
        std::fs::write(d.join("authorized_keys"), authorized).expect("authorized_keys");
        // Readable by an agent started unprivileged (see Options::wrapper).
        std::fs::set_permissions(
            d.join("host"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .expect("chmod");
        std::fs::write(
            d.join("env"),
            "SESSION_NAME=test-session\nGREETING=hello world\n",
        )
        .expect("env");
        let host_pub = std::fs::read_to_string(d.join("host.pub")).expect("host.pub");
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        for attempt in 0..5 {
            let (listen, port, socket) = if opts.unix {
                let path = d.join("agent.sock");
                // The port only appears on ssh's command line; ProxyCommand does the connecting.
                (format!("unix:{}", path.display()), 22, Some(path))
            } else {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("port")
                    .port();
                (format!("127.0.0.1:{port}"), port, None)
            };
            let known_hosts = d.join("known_hosts");
            let host_pattern = if opts.unix {
                "sandbox-host".to_owned()
            } else {
                format!("[127.0.0.1]:{port}")
            };
            std::fs::write(
                &known_hosts,
                format!("{host_pattern} {} {}\n", host_pub[0], host_pub[1]),
            )
            .expect("known_hosts");
            let stderr = d.join(format!("agent{attempt}.log"));
            let binary = opts.binary.clone().unwrap_or_else(|| PathBuf::from(AGENT));
            let mut command = match &opts.wrapper {
                Some(wrapper) => {
                    let mut cmd = Command::new(&wrapper[0]);
                    cmd.args(&wrapper[1..]).arg(&binary);
                    cmd
                }
                None => Command::new(&binary),
            };
            let mut child = command
                .arg("serve")
                .args(["--listen", &listen])
                .arg("--host-key")
                .arg(d.join("host"))
                .arg("--authorized-keys")
                .arg(d.join("authorized_keys"))
                .arg("--home")
                .arg(&home)
                .arg("--env-file")
                .arg(d.join("env"))
                .args(&opts.extra)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&stderr).expect("log"))
                .spawn()
                .expect("spawn pico-agent");
            let mut line = String::new();
            let stdout = child.stdout.take().expect("stdout");
            let mut reader = BufReader::new(stdout);
            let _ = reader.read_line(&mut line);
            if line == "ready\n" {
                let mut rest = String::new();
                // The agent closes stdout right after the line.
                reader.read_to_string(&mut rest).expect("stdout EOF");
                assert_eq!(rest, "", "nothing after ready");
                return Agent {
                    dir,
                    home,
                    client_key: d.join("client"),
                    known_hosts,
                    port,
                    socket,
                    child,
                    stderr,
                };
            }
            let _ = child.wait();
            let log = std::fs::read_to_string(&stderr).unwrap_or_default();
            assert!(
                log.contains("binding") && attempt < 4,
                "agent did not start: {log}"
            );
        }
        unreachable!("agent start retries exhausted")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Options shared by ssh, scp and sftp: no user config, strict host key checking.
    pub fn common_args(&self, key: &Path) -> Vec<String> {
        let mut args: Vec<String> = [
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("-o".into());
        args.push(format!("UserKnownHostsFile={}", self.known_hosts.display()));
        args.push("-i".into());
        args.push(key.display().to_string());
        if let Some(socket) = &self.socket {
            args.push("-o".into());
            args.push(format!(
                "ProxyCommand=socat - UNIX-CONNECT:{}",
                socket.display()
            ));
            args.push("-o".into());
            args.push("HostKeyAlias=sandbox-host".into());
        }
        args
    }

    pub fn target(&self, user: &str) -> String {
        format!("{user}@127.0.0.1")
    }

    pub fn ssh_as(&self, user: &str, key: &Path) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.common_args(key))
            .args(["-p", &self.port.to_string()])
            .arg(self.target(user));
        cmd
    }

    pub fn ssh(&self) -> Command {
        self.ssh_as("sandbox", &self.client_key)
    }

    pub fn exec(&self, command: &str) -> Output {
        self.ssh()
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("ssh runs")
    }

    pub fn scp(&self) -> Command {
        let mut cmd = Command::new("scp");
        cmd.args(self.common_args(&self.client_key))
            .args(["-P", &self.port.to_string()]);
        cmd
    }

    pub fn sftp_batch(&self, batch: &str) -> Output {
        let file = self.path("batch");
        std::fs::write(&file, batch).expect("batch file");
        Command::new("sftp")
            .args(self.common_args(&self.client_key))
            .args(["-P", &self.port.to_string(), "-b"])
            .arg(&file)
            .arg(self.target("sandbox"))
            .output()
            .expect("sftp runs")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGTERM, the documented way to stop the agent.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Processes whose command line contains `needle`.
pub fn processes_matching(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && !cmdline.contains("ssh ") {
            pids.push(pid);
        }
    }
    pids
}

/// Waits (bounded) until `cond` holds; for effects that happen asynchronously by design.
pub fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
