//! `pico-bench`: measures pico-apiserver against a baseline taken in the same run.
//!
//! - `tunnel`: SSH throughput through the CONNECT tunnel vs straight to the agent's socket.
//! - `latency`: create-to-first-command time over N sessions (HTTP create, CONNECT, SSH
//!   handshake, `exec true`), p50/p99.
//! - `idle-tunnels`: server memory with N idle open tunnels, per tunnel.
//! - `creates`: N creates sent at once, p50/p99 of each one's time to its answer.
//! - `exec`, `files`: commands and files over HTTP vs SSH, `ssh` and `sftp`.
//! - `pause`: pause/resume latency vs a `GET`, and CPU of N busy sessions running vs paused.
//! - `processes`: background start-to-first-output latency and `output?follow=true`
//!   throughput of `yes` vs OpenSSH `ssh`.

mod client;
mod creates;
mod exec;
mod http;
mod kube;
mod load;
mod pause;
mod processes;
mod server;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::client::{Ssh, percentile};
use crate::server::Server;

#[derive(Parser)]
struct Args {
    /// Directory holding the release `pico-apiserver` and `pico-agent`.
    #[arg(long, default_value = "target/release")]
    bin_dir: std::path::PathBuf,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Tunnel vs direct SSH throughput.
    Tunnel {
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Create-to-first-command latency.
    Latency {
        #[arg(long, default_value_t = 100)]
        sessions: usize,
    },
    /// Create-to-first-command on the local runtime, then on the Kubernetes runtime against
    /// `pico-kube-emulator` with a simulated pod start delay.
    KubeLatency {
        #[arg(long, default_value_t = 50)]
        sessions: usize,
        /// The emulated kubelet's pod start delay, in milliseconds.
        #[arg(long, default_value_t = 50)]
        pod_start_delay: u64,
    },
    /// N session creates at once, p50/p99.
    Creates {
        #[arg(long, default_value_t = 100)]
        sessions: usize,
    },
    /// Server memory per idle open tunnel.
    IdleTunnels {
        #[arg(long, default_value_t = 1000)]
        tunnels: usize,
    },
    /// `POST /commands` latency and rate vs a fresh SSH connection and OpenSSH `ssh`.
    Exec {
        #[arg(long, default_value_t = 1000)]
        calls: usize,
        #[arg(long, default_value_t = 16)]
        clients: usize,
    },
    /// Upload and download over HTTP vs OpenSSH `sftp` through the tunnel.
    Files {
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        #[arg(long, default_value_t = 2)]
        rounds: u32,
    },
    /// Pause and resume latency, and CPU of busy sessions while paused.
    Pause {
        #[arg(long, default_value_t = 100)]
        rounds: usize,
        #[arg(long, default_value_t = 100)]
        sessions: usize,
    },
    /// Background start-to-first-output latency and follow throughput of `yes` vs OpenSSH
    /// `ssh` through the tunnel.
    Processes {
        #[arg(long, default_value_t = 100)]
        starts: usize,
        /// Stop following `yes` after this many MiB of its stdout...
        #[arg(long, default_value_t = 256)]
        mib: u64,
        /// ...or after this many seconds.
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// Concurrent tunnels echoing data with checks, with creates and deletes racing them;
    /// fails if anything is corrupted, dropped or leaked.
    Load {
        #[arg(long, default_value_t = 1000)]
        tunnels: usize,
        #[arg(long, default_value_t = 50)]
        sessions: usize,
        #[arg(long, default_value_t = 1)]
        mib: usize,
        #[arg(long, default_value_t = 200)]
        churn: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    server::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if let What::KubeLatency {
            sessions,
            pod_start_delay,
        } = args.what
        {
            return kube::latency(&args.bin_dir, sessions, pod_start_delay).await;
        }
        let server = Server::start(&args.bin_dir).await?;
        if let What::Creates { sessions } = args.what {
            return creates::run(std::sync::Arc::new(server), sessions).await;
        }
        if let What::Load {
            tunnels,
            sessions,
            mib,
            churn,
        } = args.what
        {
            let options = load::LoadOptions {
                tunnels,
                sessions,
                mib,
                churn,
            };
            return load::run(std::sync::Arc::new(server), options).await;
        }
        match args.what {
            What::Tunnel { mib, rounds } => tunnel(&server, mib, rounds).await,
            What::Latency { sessions } => latency(&server, sessions).await,
            What::IdleTunnels { tunnels } => idle_tunnels(&server, tunnels).await,
            What::Exec { calls, clients } => exec::exec(&server, calls, clients).await,
            What::Files { mib, rounds } => exec::files(&server, mib, rounds).await,
            What::Pause { rounds, sessions } => {
                pause::latency(&server, rounds).await?;
                pause::cpu(&server, sessions).await
            }
            What::Processes { starts, mib, secs } => {
                processes::run(&server, starts, mib, secs).await
            }
            What::Load { .. } | What::KubeLatency { .. } | What::Creates { .. } => Ok(()),
        }
    })
}

async fn tunnel(server: &Server, mib: u64, rounds: u32) -> anyhow::Result<()> {
    let session = server.create_session().await?;
    let command = format!("head -c {} /dev/zero", mib * 1024 * 1024);
    let (mut via_tunnel, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (through_tunnel, results) in [(true, &mut via_tunnel), (false, &mut direct)] {
            let mut ssh = if through_tunnel {
                Ssh::connect(server.tunnel(&session.id).await?, &session).await?
            } else {
                Ssh::connect(server.agent_socket(&session.id).await?, &session).await?
            };
            let started = Instant::now();
            let bytes = ssh.exec_count(&command).await?;
            let secs = started.elapsed().as_secs_f64();
            anyhow::ensure!(bytes == mib * 1024 * 1024, "short read: {bytes} bytes");
            results.push(bytes as f64 / secs / (1024.0 * 1024.0));
        }
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (t, d) = (best(&via_tunnel), best(&direct));
    println!("tunnel throughput ({mib} MiB over SSH, best of {rounds}):");
    println!("  through CONNECT tunnel : {t:8.1} MiB/s   (all: {via_tunnel:.1?})");
    println!("  direct to agent socket : {d:8.1} MiB/s   (all: {direct:.1?})");
    println!("  ratio tunnel/direct    : {:.3}   (goal >= 0.9)", t / d);
    server.delete_session(&session.id).await
}

async fn latency(server: &Server, sessions: usize) -> anyhow::Result<()> {
    let took = create_to_first_command(server, sessions).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("create-to-first-command latency over {sessions} sessions:");
    println!(
        "  p50 {:.1} ms   p99 {:.1} ms   min {:.1} ms   max {:.1} ms   (goal p50 <= 50 ms)",
        ms(percentile(&took, 50)),
        ms(percentile(&took, 99)),
        ms(took[0]),
        ms(took[took.len() - 1])
    );
    Ok(())
}

/// Sorted create-to-first-command times of `sessions` sessions, deleted afterwards.
async fn create_to_first_command(
    server: &Server,
    sessions: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut took = Vec::with_capacity(sessions);
    let mut ids = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let started = Instant::now();
        let session = server.create_session().await?;
        let stream = server.tunnel(&session.id).await?;
        let mut ssh = Ssh::connect(stream, &session).await?;
        let status = ssh.exec_status("true").await?;
        took.push(started.elapsed());
        anyhow::ensure!(status == 0, "`true` exited with {status}");
        ids.push(session.id);
    }
    for id in &ids {
        server.delete_session(id).await?;
    }
    took.sort();
    Ok(took)
}

async fn idle_tunnels(server: &Server, count: usize) -> anyhow::Result<()> {
    let session = server.create_session().await?;
    // Warm up allocator pools and the runtime before the baseline.
    let mut warm = Vec::new();
    for _ in 0..20 {
        warm.push(server.tunnel(&session.id).await?);
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib().context("server RSS")?;
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        open.push(server.tunnel(&session.id).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib().context("server RSS")?;
    let per = (after.saturating_sub(before)) as f64 / count as f64;
    println!("server memory with {count} idle open tunnels:");
    println!(
        "  RSS before {before} KiB, after {after} KiB, per tunnel {per:.1} KiB   (goal <= 32 KiB)"
    );
    drop(open);
    server.delete_session(&session.id).await
}
