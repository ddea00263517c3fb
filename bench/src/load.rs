//! The load test: many concurrent tunnels moving data both ways with checks, while sessions
//! are created, listed and deleted around them; afterwards every resource is back to where
//! it started (server file descriptors, agent processes, state-directory entries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::client::{SessionInfo, Ssh, percentile};
use crate::server::Server;

pub struct LoadOptions {
    pub tunnels: usize,
    pub sessions: usize,
    pub mib: usize,
    pub churn: usize,
}

/// Deterministic, tunnel-specific bytes, so a mix-up between tunnels is caught.
fn payload(tunnel: usize, len: usize) -> Vec<u8> {
    let mut state = (tunnel as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub async fn run(server: Arc<Server>, options: LoadOptions) -> anyhow::Result<()> {
    let baseline = server.resources().context("baseline")?;
    let mut sessions = Vec::new();
    for _ in 0..options.sessions {
        sessions.push(Arc::new(server.create_session().await?));
    }
    let started = Instant::now();
    let mut tunnels = Vec::new();
    for i in 0..options.tunnels {
        let session: Arc<SessionInfo> = sessions[i % sessions.len()].clone();
        let server = server.clone();
        let len = options.mib * 1024 * 1024;
        tunnels.push(tokio::spawn(async move {
            let began = Instant::now();
            let data = payload(i, len);
            let stream = server.tunnel(&session.id).await?;
            let mut ssh = Ssh::connect(stream, &session).await?;
            let back = ssh.echo(data.clone()).await?;
            ensure!(
                back.len() == data.len(),
                "tunnel {i}: {} of {} bytes came back",
                back.len(),
                data.len()
            );
            ensure!(back == data, "tunnel {i}: the echoed bytes differ");
            Ok::<_, anyhow::Error>(began.elapsed())
        }));
    }
    let mut churn = Vec::new();
    for _ in 0..options.churn {
        let server = server.clone();
        churn.push(tokio::spawn(async move {
            let session = server.create_session().await?;
            server.list_sessions().await?;
            let mut ssh = Ssh::connect(server.tunnel(&session.id).await?, &session).await?;
            ensure!(
                ssh.exec_status("true").await? == 0,
                "exec in a churned session"
            );
            drop(ssh);
            server.delete_session(&session.id).await?;
            Ok::<_, anyhow::Error>(())
        }));
    }
    let mut took = Vec::new();
    for tunnel in tunnels {
        took.push(tunnel.await??);
    }
    for task in churn {
        task.await??;
    }
    let elapsed = started.elapsed();
    let peak_rss = server.rss_kib().unwrap_or(0);
    for session in &sessions {
        server.delete_session(&session.id).await?;
    }
    // Closed sockets and exited agents are reaped asynchronously; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let now = server.resources().context("after")?;
        if now.agents <= baseline.agents
            && now.state_entries <= baseline.state_entries
            && now.fds <= baseline.fds + 2
        {
            break now;
        }
        if Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    took.sort();
    let moved = (options.tunnels * options.mib * 2) as f64;
    println!(
        "load: {} tunnels over {} sessions, {} MiB each way per tunnel, {} create/list/tunnel/delete cycles alongside",
        options.tunnels, options.sessions, options.mib, options.churn
    );
    println!(
        "  all checks equal; {:.1} s; {:.1} MiB/s through the server; tunnel p50 {:.0} ms, p99 {:.0} ms; server RSS {} KiB at the end of the load",
        elapsed.as_secs_f64(),
        moved / elapsed.as_secs_f64(),
        percentile(&took, 50).as_secs_f64() * 1000.0,
        percentile(&took, 99).as_secs_f64() * 1000.0,
        peak_rss
    );
    println!("  before: {baseline:?}\n  after:  {after:?}");
    ensure!(
        after.agents <= baseline.agents,
        "agent processes leaked: {baseline:?} → {after:?}"
    );
    ensure!(
        after.state_entries <= baseline.state_entries,
        "state-directory entries leaked: {baseline:?} → {after:?}"
    );
    ensure!(
        after.fds <= baseline.fds + 2,
        "file descriptors leaked: {baseline:?} → {after:?}"
    );
    Ok(())
}
