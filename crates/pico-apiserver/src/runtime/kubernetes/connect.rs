//! How the tunnel reaches a sandbox pod: straight to `podIP:--ssh-port` (in the cluster), or
//! through the API server's `pods/{name}/portforward` (a server outside the cluster, e.g. on
//! a laptop with `--kubeconfig`, cannot route to pod IPs). `auto` dials directly first and,
//! when the pod network turns out to be unreachable, uses port-forward from then on.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::net::TcpStream;

use super::{BoxedStream, FailureKind, RuntimeError};

/// `--kube-connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConnectMode {
    /// Direct while the pod network answers; port-forward once it does not.
    Auto,
    /// Always `podIP:port` (the server runs in the cluster).
    Direct,
    /// Always through the API server's `pods/portforward`.
    Portforward,
}

/// How long `auto` waits for a direct dial before it tries port-forward: an unroutable pod
/// network usually drops packets rather than refusing them.
const DIRECT_PROBE: Duration = Duration::from_secs(2);
/// Bound of a direct dial otherwise, and of opening a port-forward.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

const UNKNOWN: u8 = 0;
const DIRECT: u8 = 1;
const FORWARD: u8 = 2;

/// The mode, and what `auto` has learnt about the pod network.
pub struct Connector {
    mode: ConnectMode,
    learnt: AtomicU8,
}

impl Connector {
    pub fn new(mode: ConnectMode) -> Self {
        Self {
            mode,
            learnt: AtomicU8::new(UNKNOWN),
        }
    }

    pub fn mode(&self) -> ConnectMode {
        self.mode
    }

    /// Opens a byte stream to `port` of pod `name`, whose status reports `ip` (if it does).
    pub async fn dial(
        &self,
        pods: &Api<Pod>,
        name: &str,
        ip: Option<String>,
        port: u16,
    ) -> Result<BoxedStream, RuntimeError> {
        let learnt = self.learnt.load(Ordering::Relaxed);
        let direct_first = match self.mode {
            ConnectMode::Direct => true,
            ConnectMode::Portforward => false,
            ConnectMode::Auto => learnt != FORWARD,
        };
        if !direct_first {
            return forward(pods, name, port).await;
        }
        let ip = ip.ok_or_else(|| RuntimeError::Unreachable("sandbox pod has no IP".into()))?;
        let addr = format!("{ip}:{port}");
        let probing = self.mode == ConnectMode::Auto && learnt == UNKNOWN;
        let bound = if probing { DIRECT_PROBE } else { DIAL_TIMEOUT };
        let failure = match tokio::time::timeout(bound, TcpStream::connect(&addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                if probing {
                    self.learnt.store(DIRECT, Ordering::Relaxed);
                }
                return Ok(Box::pin(stream));
            }
            Ok(Err(e)) => RuntimeError::caused(FailureKind::Unreachable, addr.clone(), e),
            Err(_) => RuntimeError::Unreachable(format!("{addr}: connect timed out")),
        };
        if !probing {
            return Err(failure);
        }
        // The pod is ready (the caller checked), so a failed dial says the network is the
        // problem; port-forward working proves it, and is used from now on.
        let stream = forward(pods, name, port).await.inspect_err(|_| {
            tracing::warn!(error = %failure, "direct dial to the pod failed too");
        })?;
        tracing::info!(error = %failure, "pod network unreachable; sandboxes are reached through pods/portforward from now on");
        self.learnt.store(FORWARD, Ordering::Relaxed);
        Ok(stream)
    }
}

/// One port-forward stream to `port` of pod `name`; its WebSocket lives as long as the stream.
async fn forward(pods: &Api<Pod>, name: &str, port: u16) -> Result<BoxedStream, RuntimeError> {
    let open = tokio::time::timeout(DIAL_TIMEOUT, pods.portforward(name, &[port]))
        .await
        .map_err(|_| RuntimeError::Unreachable(format!("port-forward to pod {name} timed out")))?;
    let mut forwarder = open.map_err(|e| {
        RuntimeError::caused(
            FailureKind::Unreachable,
            format!("port-forward to pod {name}"),
            e,
        )
    })?;
    let stream = forwarder.take_stream(port).ok_or_else(|| {
        RuntimeError::Unreachable(format!("port-forward to pod {name} gave no stream"))
    })?;
    let errors = forwarder.take_error(port);
    let pod = name.to_owned();
    tokio::spawn(async move {
        if let Some(errors) = errors
            && let Some(message) = errors.await
        {
            tracing::warn!(%pod, %message, "port-forward error from the kubelet");
        }
        if let Err(e) = forwarder.join().await {
            tracing::debug!(%pod, error = %e, "port-forward ended");
        }
    });
    Ok(Box::pin(stream))
}
