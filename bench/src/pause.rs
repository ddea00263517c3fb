//! `pause`: pause and resume latency on the local runtime against a plain `GET` of the same
//! session (the API round trip with no runtime work), and the CPU that N sessions each
//! running a busy loop use while running and while paused.

use std::time::{Duration, Instant};

use crate::client::percentile;
use crate::http::Http;
use crate::server::Server;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn p50_p99(took: &mut [Duration]) -> (Duration, Duration) {
    took.sort();
    (percentile(took, 50), percentile(took, 99))
}

async fn call(http: &mut Http, method: &str, path: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (status, text) = http.call(method, path, "").await?;
    anyhow::ensure!(status == 200, "{method} {path}: {status} {text}");
    Ok(started.elapsed())
}

pub async fn latency(server: &Server, rounds: usize) -> anyhow::Result<()> {
    let session = server.create_session().await?;
    let base = format!("/v1/sessions/{}", session.id);
    let mut http = Http::connect(server.addr()).await?;
    let (mut get, mut pause, mut resume) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        get.push(call(&mut http, "GET", &base).await?);
        pause.push(call(&mut http, "POST", &format!("{base}/pause")).await?);
        resume.push(call(&mut http, "POST", &format!("{base}/resume")).await?);
    }
    let (g50, g99) = p50_p99(&mut get);
    println!("pause/resume of one idle session, {rounds} rounds, one keep-alive client:");
    println!(
        "  GET (baseline)  p50 {:.2} ms  p99 {:.2} ms",
        ms(g50),
        ms(g99)
    );
    for (name, took) in [("pause", &mut pause), ("resume", &mut resume)] {
        let (p50, p99) = p50_p99(took);
        println!(
            "  {name:<15} p50 {:.2} ms  p99 {:.2} ms  ({:.1}x / {:.1}x the GET)",
            ms(p50),
            ms(p99),
            p50.as_secs_f64() / g50.as_secs_f64(),
            p99.as_secs_f64() / g99.as_secs_f64()
        );
    }
    server.delete_session(&session.id).await
}

/// CPU seconds used so far by every process below the sessions' agents.
fn sandbox_cpu_seconds(server: &Server) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let agents: Vec<u32> = std::fs::read_dir(server.state_dir().join("sessions"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("agent.pid")).ok())
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 1..]
            .split_whitespace()
            .collect();
        let num = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // After the command: state(0) ppid(1) … utime(11) stime(12).
        procs.push((pid, u32::try_from(num(1)).unwrap_or(0), num(11) + num(12)));
    }
    let mut tree = agents;
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next];
        tree.extend(procs.iter().filter(|p| p.1 == parent).map(|p| p.0));
        next += 1;
    }
    procs
        .iter()
        .filter(|p| tree.contains(&p.0))
        .map(|p| p.2 as f64 / ticks)
        .sum()
}

async fn cpu_over(server: &Server, window: Duration) -> f64 {
    let before = sandbox_cpu_seconds(server);
    tokio::time::sleep(window).await;
    (sandbox_cpu_seconds(server) - before) / window.as_secs_f64()
}

pub async fn cpu(server: &Server, sessions: usize) -> anyhow::Result<()> {
    let mut http = Http::connect(server.addr()).await?;
    let mut ids = Vec::new();
    let busy =
        r#"{"command":"setsid sh -c 'while :; do :; done' >/dev/null 2>&1 </dev/null & echo ok"}"#;
    for _ in 0..sessions {
        let session = server.create_session().await?;
        let path = format!("/v1/sessions/{}/commands", session.id);
        let (status, text) = http.call("POST", &path, busy).await?;
        anyhow::ensure!(status == 200, "{status} {text}");
        ids.push(session.id);
    }
    let window = Duration::from_secs(5);
    let running = cpu_over(server, window).await;
    for id in &ids {
        call(&mut http, "POST", &format!("/v1/sessions/{id}/pause")).await?;
    }
    let paused = cpu_over(server, window).await;
    println!("{sessions} sessions each running a busy loop, CPU over {window:?}:");
    println!("  running  {running:.2} CPUs");
    println!(
        "  paused   {paused:.3} CPUs  ({:.4}x of running; goal ~0)",
        paused / running.max(f64::EPSILON)
    );
    for id in &ids {
        server.delete_session(id).await?;
    }
    Ok(())
}
