//! `kube-latency`: create-to-first-command on the local runtime (the baseline), then on the
//! Kubernetes runtime against `pico-kube-emulator`, whose kubelet waits `--pod-start-delay`
//! before it starts a pod's `pico-agent`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client::percentile;
use crate::server::Server;

/// Starts the emulator; returns it (killed on drop) and its kubeconfig's path.
async fn emulator(
    bin_dir: &Path,
    dir: &Path,
    pod_start_delay: u64,
) -> anyhow::Result<(Child, String)> {
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(bin_dir.join("pico-kube-emulator"))
        .args(["--port", "0", "--pod-start-delay"])
        .arg(format!("{pod_start_delay}ms"))
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .arg("--agent-binary")
        .arg(bin_dir.join("pico-agent"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("start pico-kube-emulator")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?)
        .read_line(&mut line)
        .await?;
    anyhow::ensure!(line.starts_with("listening on"), "emulator: {line:?}");
    Ok((child, kubeconfig.display().to_string()))
}

pub async fn latency(bin_dir: &Path, sessions: usize, pod_start_delay: u64) -> anyhow::Result<()> {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let report = |name: &str, took: &[Duration]| {
        println!(
            "  {name:<28} p50 {:7.1} ms   p99 {:7.1} ms   min {:7.1} ms",
            ms(percentile(took, 50)),
            ms(percentile(took, 99)),
            ms(took[0]),
        );
    };
    println!(
        "create-to-first-command over {sessions} sessions (emulated pod start delay {pod_start_delay} ms):"
    );
    let local = {
        let server = Server::start(bin_dir).await?;
        crate::create_to_first_command(&server, sessions).await?
    };
    report("local runtime", &local);
    let dir = tempfile_dir()?;
    let (_emulator, kubeconfig) = emulator(bin_dir, &dir, pod_start_delay).await?;
    let args: Vec<String> = [
        "--runtime",
        "kubernetes",
        "--kubeconfig",
        &kubeconfig,
        "--create-timeout",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = Server::start_with(bin_dir, &args).await?;
    let cold = crate::create_to_first_command(&server, sessions).await?;
    report("kubernetes, cold Sandbox", &cold);
    println!(
        "  cold Sandbox adds {:.1} ms at p50 over the local runtime",
        ms(percentile(&cold, 50)) - ms(percentile(&local, 50))
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("pico-bench-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
