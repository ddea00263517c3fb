//! `pico-kube-emulator`: runs the emulated Kubernetes API until killed.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pico_kube_emulator::{
    Emulator, EmulatorConfig, ImageFailure, parse_duration, parse_image_failure,
};

/// An emulated Kubernetes API server (Sandbox, Pod, Secret, Service) for tests.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Port to listen on (0 = any free port); the bound address is printed on stdout first.
    #[arg(long, env = "PICO_EMULATOR_PORT", default_value_t = 0)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "PICO_EMULATOR_BIND", default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Write a kubeconfig for this emulator to PATH.
    #[arg(long, env = "PICO_EMULATOR_WRITE_KUBECONFIG")]
    write_kubeconfig: Option<PathBuf>,
    /// The pico-agent binary to run for sandbox containers (default: next to this executable).
    #[arg(long, env = "PICO_EMULATOR_AGENT_BINARY")]
    agent_binary: Option<PathBuf>,
    /// How long pods take to start: milliseconds, or e.g. 500ms, 2s.
    #[arg(long, env = "PICO_EMULATOR_POD_START_DELAY", default_value = "50ms", value_parser = parse_duration)]
    pod_start_delay: Duration,
    /// Sandbox versions to serve, comma-separated (e.g. only v1alpha1, like an older agent-sandbox).
    #[arg(
        long,
        env = "PICO_EMULATOR_SANDBOX_VERSIONS",
        value_delimiter = ',',
        default_value = "v1beta1,v1alpha1"
    )]
    sandbox_versions: Vec<String>,
    /// Pods whose image contains PATTERN fail: PATTERN=pull|crash|never-ready (repeatable;
    /// fail-pull, crash and never-ready are built in).
    #[arg(long, env = "PICO_EMULATOR_IMAGE_FAILURE", value_delimiter = ',', value_parser = parse_image_failure)]
    image_failure: Vec<ImageFailure>,
    /// Images on the emulated node, as `kind load docker-image` puts them there (repeatable or
    /// comma-separated). When given, a container whose image must be pulled (policy `Always`,
    /// which `:latest` gets by default, or `IfNotPresent` for an image not listed) fails with
    /// `ErrImagePull`: the emulated node has no registry. Default: every image is present.
    #[arg(long, env = "PICO_EMULATOR_LOADED_IMAGE", value_delimiter = ',')]
    loaded_image: Option<Vec<String>>,
    /// Pod Security level enforced in namespaces without a `pod-security.kubernetes.io/enforce`
    /// label: privileged, baseline or restricted.
    #[arg(long, env = "PICO_EMULATOR_POD_SECURITY", default_value = "privileged")]
    pod_security: pico_kube_emulator::pod_security::Level,
    /// Pod statuses report IPs that cannot be dialled (a cluster's pod network seen from a
    /// laptop); pods are reachable only through `kubectl port-forward` / `pods/portforward`.
    #[arg(long, env = "PICO_EMULATOR_UNREACHABLE_POD_NETWORK")]
    unreachable_pod_network: bool,
    /// Require this bearer token on every request.
    #[arg(long, env = "PICO_EMULATOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = Args::parse();
    if let Some(agent) = &args.agent_binary {
        anyhow::ensure!(
            agent.is_file(),
            "--agent-binary {} does not exist",
            agent.display()
        );
        // The kubelet starts it from each pod's own working directory.
        args.agent_binary = Some(
            std::fs::canonicalize(agent)
                .with_context(|| format!("--agent-binary {}", agent.display()))?,
        );
    }
    let mut config = EmulatorConfig {
        bind: SocketAddr::new(args.bind, args.port),
        token: args.token,
        agent_binary: args.agent_binary,
        pod_start_delay: args.pod_start_delay,
        sandbox_versions: args.sandbox_versions,
        loaded_images: args.loaded_image,
        pod_security: args.pod_security,
        pod_network_reachable: !args.unreachable_pod_network,
        ..EmulatorConfig::default()
    };
    config.image_failures.extend(args.image_failure);
    let handle = Emulator::start(config)
        .await
        .context("starting the emulator")?;
    if let Some(path) = &args.write_kubeconfig {
        handle
            .write_kubeconfig(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut out = std::io::stdout();
    writeln!(out, "listening on {}", handle.addr())?;
    out.flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    handle.shutdown().await;
    Ok(())
}
