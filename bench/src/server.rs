//! Starts the release `pico-apiserver` on 127.0.0.1:0 with a fresh state directory and
//! talks HTTP/1.1 and CONNECT to it.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use anyhow::{Context, bail};

use russh::keys::{Algorithm, PrivateKey, PublicKey};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, Command};

use crate::client::SessionInfo;

#[derive(Debug, Clone, Copy)]
pub struct Resources {
    pub fds: usize,
    pub agents: usize,
    pub state_entries: usize,
}

pub struct Server {
    child: Child,
    addr: String,
    state_dir: PathBuf,
    key: Arc<PrivateKey>,
}

impl Server {
    pub async fn start(bin_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(bin_dir, &[]).await
    }

    /// As [`Server::start`], with more flags (e.g. the Kubernetes runtime's).
    pub async fn start_with(bin_dir: &Path, extra: &[String]) -> anyhow::Result<Self> {
        let state_dir = std::env::temp_dir().join(format!("pico-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state_dir);
        // The server's own warnings go to a file, not between the benchmark's figures.
        let log_path = state_dir.with_extension("log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        eprintln!("server log: {}", log_path.display());
        let mut child = Command::new(bin_dir.join("pico-apiserver"))
            .args(["--port", "0", "--state-dir"])
            .arg(&state_dir)
            .arg("--agent-binary")
            .arg(bin_dir.join("pico-agent"))
            // The benchmarks open more tunnels and sessions than the defaults allow.
            .args([
                "--max-tunnels-per-session",
                "0",
                "--max-tunnels-per-user",
                "0",
                "--create-rate",
                "0",
                "--max-sessions-per-user",
                "0",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "start {}/pico-apiserver (run `make release`)",
                    bin_dir.display()
                )
            })?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?)
            .read_line(&mut line)
            .await?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .context("no listening line")?
            .to_owned();
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
        Ok(Self {
            child,
            addr,
            state_dir,
            key: Arc::new(key),
        })
    }

    async fn http(&self, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
        let mut stream = TcpStream::connect(&self.addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await?;
        let (head, body) = raw.split_once("\r\n\r\n").context("no HTTP head")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status")?;
        Ok((status, body.to_owned()))
    }

    /// The server's `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The client key every benchmark session trusts.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn key(&self) -> &Arc<PrivateKey> {
        &self.key
    }

    pub async fn create_session(&self) -> anyhow::Result<SessionInfo> {
        let public = self.key.public_key().to_openssh()?;
        let body = serde_json::json!({ "sshPublicKey": public }).to_string();
        let (status, text) = self.http("POST", "/v1/sessions", &body).await?;
        if status != 200 {
            bail!("create failed: {status} {text}");
        }
        let session: serde_json::Value = serde_json::from_str(&text)?;
        let host_key = session["ssh"]["hostKeys"][0].as_str().context("hostKeys")?;
        Ok(SessionInfo {
            id: session["sessionId"]
                .as_str()
                .context("sessionId")?
                .to_owned(),
            host_key: PublicKey::from_openssh(host_key)?,
            key: self.key.clone(),
        })
    }

    pub async fn delete_session(&self, id: &str) -> anyhow::Result<()> {
        let (status, text) = self
            .http("DELETE", &format!("/v1/sessions/{id}"), "")
            .await?;
        if status != 200 {
            bail!("delete failed: {status} {text}");
        }
        Ok(())
    }

    /// Opens a CONNECT tunnel and returns the stream positioned at the SSH banner.
    pub async fn tunnel(&self, id: &str) -> anyhow::Result<TcpStream> {
        let mut stream = TcpStream::connect(&self.addr).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "CONNECT /v1/sessions/{id}/tunnel HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(64);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await? == 0 {
                bail!("tunnel closed before the answer");
            }
            head.push(byte[0]);
        }
        if !head.starts_with(b"HTTP/1.1 200") {
            bail!("tunnel refused: {}", String::from_utf8_lossy(&head));
        }
        Ok(stream)
    }

    /// The agent's own socket: the baseline without the server in the path.
    pub async fn agent_socket(&self, id: &str) -> anyhow::Result<UnixStream> {
        Ok(
            UnixStream::connect(self.state_dir.join("sessions").join(id).join("agent.sock"))
                .await?,
        )
    }

    pub async fn list_sessions(&self) -> anyhow::Result<()> {
        let (status, text) = self.http("GET", "/v1/sessions?limit=100", "").await?;
        if status != 200 {
            bail!("list failed: {status} {text}");
        }
        Ok(())
    }

    /// What the server holds: open descriptors, agent processes, session directories.
    pub fn resources(&self) -> Option<Resources> {
        let pid = self.child.id()?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        let needle = self.state_dir.display().to_string();
        let agents = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .chars()
                    .all(|c| c.is_ascii_digit())
            })
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .filter(|c| c.contains(&needle) && !c.contains("pico-apiserver"))
            .count();
        let state_entries = std::fs::read_dir(self.state_dir.join("sessions"))
            .ok()?
            .count();
        Some(Resources {
            fds,
            agents,
            state_entries,
        })
    }

    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if let Ok(entries) = std::fs::read_dir(self.state_dir.join("sessions")) {
            for entry in entries.flatten() {
                if let Some(pid) = std::fs::read_to_string(entry.path().join("agent.pid"))
                    .ok()
                    .and_then(|p| p.trim().parse::<i32>().ok())
                {
                    // SAFETY: kill with a negative pid signals that process group only.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
