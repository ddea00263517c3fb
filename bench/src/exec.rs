//! `exec` and `files`: commands and files over HTTP (`/commands`, `/files`) against the
//! same work done over SSH in the same run: a fresh SSH connection per command (what an SDK
//! without the HTTP API pays), OpenSSH `ssh` and `sftp` through the tunnel.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use russh::keys::ssh_key::LineEnding;
use tokio::process::Command;

use crate::client::{SessionInfo, Ssh, percentile};
use crate::http::Http;
use crate::server::Server;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn summary(took: &mut [Duration]) -> String {
    took.sort();
    format!(
        "p50 {:.2} ms   p99 {:.2} ms   (n={})",
        ms(percentile(took, 50)),
        ms(percentile(took, 99)),
        took.len()
    )
}

/// `ssh`/`sftp` options that reach `session` through the server's CONNECT proxy.
pub struct OpenSsh {
    dir: PathBuf,
    args: Vec<String>,
    target: String,
}

impl OpenSsh {
    pub fn new(server: &Server, session: &SessionInfo) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("pico-bench-ssh-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let key = dir.join("key");
        std::fs::write(&key, server.key().to_openssh(LineEnding::LF)?.as_bytes())?;
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let known = dir.join("known_hosts");
        std::fs::write(
            &known,
            format!("{} {}\n", session.id, session.host_key.to_openssh()?),
        )?;
        let args = [
            "-F",
            "/dev/null",
            "-o",
            &format!(
                "ProxyCommand=ncat --proxy {} --proxy-type http %h %p",
                server.addr()
            ),
            "-o",
            &format!("UserKnownHostsFile={}", known.display()),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            &key.display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        Ok(Self {
            dir,
            args,
            target: format!("sandbox@{}", session.id),
        })
    }

    /// Runs `command` over `ssh`, its output to /dev/null.
    pub async fn ssh(&self, command: &str) -> anyhow::Result<()> {
        let status = Command::new("ssh")
            .args(&self.args)
            .arg(&self.target)
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "ssh failed: {status}");
        Ok(())
    }

    async fn sftp(&self, batch: &str) -> anyhow::Result<Duration> {
        let file = self.dir.join("batch");
        std::fs::write(&file, batch)?;
        let started = Instant::now();
        let status = Command::new("sftp")
            .args(&self.args)
            .arg("-q")
            .arg("-b")
            .arg(&file)
            .arg(&self.target)
            .stdout(Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "sftp failed: {status}");
        Ok(started.elapsed())
    }
}

impl Drop for OpenSsh {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn exec(server: &Server, calls: usize, clients: usize) -> anyhow::Result<()> {
    let session = server.create_session().await?;
    let path = Arc::new(format!("/v1/sessions/{}/commands", session.id));
    let body = r#"{"command":"true"}"#;
    let mut http = Http::connect(server.addr()).await?;
    // The first call opens the server's connection to the agent; later ones reuse it.
    for _ in 0..20 {
        http.call("POST", &path, body).await?;
    }
    let mut took = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let (status, text) = http.call("POST", &path, body).await?;
        took.push(started.elapsed());
        anyhow::ensure!(
            status == 200 && text.contains("\"completed\""),
            "{status} {text}"
        );
    }
    println!("POST /commands {{\"command\":\"true\"}} on a warm session, one keep-alive client:");
    println!(
        "  {}   (goal p50 <= 3 ms, p99 <= 10 ms)",
        summary(&mut took)
    );

    let per_client = calls.div_ceil(clients);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (addr, path) = (server.addr().to_owned(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut http = Http::connect(&addr).await?;
            for _ in 0..per_client {
                let (status, _) = http.call("POST", &path, body).await?;
                anyhow::ensure!(status == 200, "status {status}");
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let rate = (per_client * clients) as f64 / started.elapsed().as_secs_f64();
    println!("  {clients} concurrent clients, one session: {rate:.0} calls/s   (goal >= 500)");

    let fresh_calls = (calls / 10).max(10);
    let mut fresh = Vec::with_capacity(fresh_calls);
    for _ in 0..fresh_calls {
        let started = Instant::now();
        let mut ssh = Ssh::connect(server.tunnel(&session.id).await?, &session).await?;
        anyhow::ensure!(ssh.exec_status("true").await? == 0);
        fresh.push(started.elapsed());
    }
    println!(
        "the same command over a fresh SSH connection through the tunnel (in-process russh, as an SDK's SSH client per call):"
    );
    let fresh_p50 = {
        let line = summary(&mut fresh);
        println!("  {line}");
        percentile(&fresh, 50)
    };
    let openssh = OpenSsh::new(server, &session)?;
    let mut stock = Vec::with_capacity(fresh_calls);
    for _ in 0..fresh_calls {
        let started = Instant::now();
        openssh.ssh("true").await?;
        stock.push(started.elapsed());
    }
    println!("the same command with OpenSSH `ssh` through the tunnel (ncat ProxyCommand):");
    println!("  {}", summary(&mut stock));
    let http_p50 = percentile(&took, 50);
    println!(
        "  p50 ratios: fresh SSH / HTTP = {:.1}x, OpenSSH / HTTP = {:.1}x",
        fresh_p50.as_secs_f64() / http_p50.as_secs_f64(),
        percentile(&stock, 50).as_secs_f64() / http_p50.as_secs_f64()
    );
    server.delete_session(&session.id).await
}

fn make_file(path: &Path, mib: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut block = vec![0u8; 1024 * 1024];
    rand::fill(&mut block[..]);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..mib {
        block[0] = i as u8;
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(())
}

pub async fn files(server: &Server, mib: u64, rounds: u32) -> anyhow::Result<()> {
    let session = server.create_session().await?;
    let openssh = OpenSsh::new(server, &session)?;
    let local = openssh.dir.join("data.bin");
    let back = openssh.dir.join("back.bin");
    make_file(&local, mib).context("making the test file")?;
    let bytes = mib * 1024 * 1024;
    let rate = |d: Duration| mib as f64 / d.as_secs_f64();
    let (mut http_up, mut http_down, mut sftp_up, mut sftp_down) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let files = format!("/v1/sessions/{}/files", session.id);
    for _ in 0..rounds {
        let mut http = Http::connect(server.addr()).await?;
        let source = tokio::fs::File::open(&local).await?;
        let started = Instant::now();
        let status = http
            .upload(
                &format!("{files}?path=up.bin&overwrite=true"),
                source,
                bytes,
            )
            .await?;
        http_up.push(rate(started.elapsed()));
        anyhow::ensure!(status == 201, "upload answered {status}");
        let sink = tokio::fs::File::create(&back).await?;
        let started = Instant::now();
        let got = http.download(&format!("{files}?path=up.bin"), sink).await?;
        http_down.push(rate(started.elapsed()));
        anyhow::ensure!(got == bytes, "downloaded {got} of {bytes} bytes");

        let put = openssh
            .sftp(&format!("put {} sftp.bin\n", local.display()))
            .await?;
        sftp_up.push(rate(put));
        let get = openssh
            .sftp(&format!("get sftp.bin {}\n", back.display()))
            .await?;
        sftp_down.push(rate(get));
        anyhow::ensure!(
            std::fs::metadata(&back)?.len() == bytes,
            "sftp get is short"
        );
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "{mib} MiB over HTTP (/files, one keep-alive client) vs OpenSSH `sftp` through the tunnel, best of {rounds}:"
    );
    println!(
        "  upload   HTTP {:7.1} MiB/s   sftp {:7.1} MiB/s   ratio {:.2}   (all HTTP {http_up:.0?}, sftp {sftp_up:.0?})",
        best(&http_up),
        best(&sftp_up),
        best(&http_up) / best(&sftp_up)
    );
    println!(
        "  download HTTP {:7.1} MiB/s   sftp {:7.1} MiB/s   ratio {:.2}   (all HTTP {http_down:.0?}, sftp {sftp_down:.0?})",
        best(&http_down),
        best(&sftp_down),
        best(&http_down) / best(&sftp_down)
    );
    println!(
        "  (goal: ratio >= 1.0; server RSS now {} KiB)",
        server.rss_kib().unwrap_or(0)
    );
    server.delete_session(&session.id).await
}
