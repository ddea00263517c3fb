//! The accept loop: one port for REST (HTTP/1.1 and h2c) and CONNECT tunnels, with header
//! timeouts and a graceful drain at shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::api::{self, AppState};
use crate::tls::Tls;
use crate::{tunnel, websocket};

/// Largest request head hyper buffers.
const MAX_HEAD_BYTES: usize = 64 * 1024;

pub struct ServeOptions {
    /// How long open requests and tunnels may finish after shutdown begins.
    pub grace: Duration,
    /// Serve HTTPS with this instead of plain HTTP.
    pub tls: Option<Arc<Tls>>,
    /// A client gets this long to send a request's headers (slow-loris guard); also bounds
    /// the TLS handshake.
    pub header_read_timeout: Duration,
}

/// Serves until `shutdown` fires, then drains connections and tunnels for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    options: ServeOptions,
) {
    let router = api::router(state.clone());
    let tunnels = TaskTracker::new();
    let tunnel_stop = CancellationToken::new();
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        // The CONNECT answer must be exactly the status line and a blank line.
        .auto_date_header(false);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    if let Some(tls) = &options.tls {
        tokio::spawn(tls.clone().watch(shutdown.clone()));
    }

    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            router: router.clone(),
            state: state.clone(),
            tunnels: tunnels.clone(),
            tunnel_stop: tunnel_stop.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
        };
        match &options.tls {
            None => {
                let first_byte_timeout = options.header_read_timeout;
                tokio::spawn(async move {
                    // hyper's header timeout starts with the first byte; a client that
                    // connects and never speaks is cut off here.
                    let mut byte = [0u8; 1];
                    match tokio::time::timeout(first_byte_timeout, stream.peek(&mut byte)).await {
                        Ok(Ok(n)) if n > 0 => connection.serve(stream, peer).await,
                        _ => tracing::debug!(%peer, "connection closed before a request"),
                    }
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor.clone();
                let handshake_timeout = options.header_read_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection.serve(stream, peer).await,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!(
        grace_secs = options.grace.as_secs(),
        "shutting down: draining requests and tunnels"
    );
    tunnels.close();
    let drained = async {
        graceful.shutdown().await;
        tunnels.wait().await;
    };
    if tokio::time::timeout(options.grace, drained).await.is_err() {
        tracing::info!(
            open = tunnels.len(),
            "grace period over; closing remaining tunnels"
        );
        tunnel_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), tunnels.wait()).await;
    }
}

/// What one accepted connection needs.
struct Connection {
    router: Router,
    state: AppState,
    tunnels: TaskTracker,
    tunnel_stop: CancellationToken,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
}

impl Connection {
    async fn serve<I>(self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            router,
            state,
            tunnels,
            tunnel_stop,
            builder,
            watcher,
        } = self;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let router = router.clone();
            let state = state.clone();
            let tunnels = tunnels.clone();
            let tunnel_stop = tunnel_stop.clone();
            async move {
                if tunnel::is_connect(&request) {
                    return Ok::<_, Infallible>(
                        tunnel::handle(state, tunnels, tunnel_stop, request).await,
                    );
                }
                if websocket::is_websocket(&request) {
                    return Ok(websocket::handle(state, tunnels, tunnel_stop, request).await);
                }
                router.oneshot(request.map(Body::new)).await
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        if let Err(err) = watcher.watch(connection).await {
            tracing::debug!(%peer, error = %err, "connection ended with an error");
        }
    }
}
