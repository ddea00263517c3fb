//! Starts the release `pico-apiserver` on 127.0.0.1:0 with a fresh state directory and
//! talks HTTP/1.1 and CONNECT to it.
#![allow(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use pico_testkit::ServerProcess;
use russh::keys::{Algorithm, PrivateKey, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::client::SessionInfo;

#[derive(Debug, Clone, Copy)]
pub struct Resources {
    pub fds: usize,
    pub agents: usize,
    pub state_entries: usize,
}

pub struct Server {
    process: ServerProcess,
    addr: String,
    key: Arc<PrivateKey>,
}

impl Server {
    pub async fn start(bin_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(bin_dir, &[]).await
    }

    /// As [`Server::start`], with more flags (e.g. the Kubernetes runtime's); started by the
    /// workspace's test kit, as the black-box tests start theirs.
    pub async fn start_with(bin_dir: &Path, extra: &[String]) -> anyhow::Result<Self> {
        let state_dir = std::env::temp_dir().join(format!("pico-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state_dir);
        // The server's own warnings go to a file, not between the benchmark's figures.
        let log_path = state_dir.with_extension("log");
        let _ = std::fs::remove_file(&log_path);
        eprintln!("server log: {}", log_path.display());
        let binary = bin_dir.join("pico-apiserver");
        anyhow::ensure!(
            binary.exists(),
            "{} is missing (run `make release`)",
            binary.display()
        );
        let mut args: Vec<String> = ["--port", "0", "--state-dir"].map(String::from).into();
        args.push(state_dir.display().to_string());
        args.push("--agent-binary".into());
        args.push(bin_dir.join("pico-agent").display().to_string());
        // The benchmarks open more tunnels and sessions than the defaults allow.
        for flag in [
            "--max-tunnels-per-session",
            "--max-tunnels-per-user",
            "--create-rate",
            "--max-sessions-per-user",
        ] {
            args.extend([flag.to_owned(), "0".to_owned()]);
        }
        args.extend_from_slice(extra);
        let process = tokio::task::spawn_blocking(move || {
            ServerProcess::start_logging(&binary, &args, &state_dir, &log_path, "warn")
        })
        .await
        .context("the server did not start")?;
        let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
        Ok(Self {
            addr: process.addr.to_string(),
            process,
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

    /// The server's state directory (the sessions' cgroups and agents are found from it).
    pub fn state_dir(&self) -> &Path {
        &self.process.state_dir
    }

    /// The client key every benchmark session trusts.
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
        Ok(UnixStream::connect(
            self.process
                .state_dir
                .join("sessions")
                .join(id)
                .join("agent.sock"),
        )
        .await?)
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
        let pid = self.process.child.as_ref()?.id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        let needle = self.process.state_dir.display().to_string();
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
        let state_entries = std::fs::read_dir(self.process.state_dir.join("sessions"))
            .ok()?
            .count();
        Some(Resources {
            fds,
            agents,
            state_entries,
        })
    }

    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.process.child.as_ref()?.id();
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
        // The process and its agents first: the state directory goes after them.
        self.process.kill9();
        pico_testkit::kill_agents(&self.process.state_dir);
        let _ = std::fs::remove_dir_all(&self.process.state_dir);
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
