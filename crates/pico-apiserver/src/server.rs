//! The accept loop: one port for REST (HTTP/1.1 and h2c, h2 over TLS) and the tunnels.
//! Every connection takes a slot of the connection caps, must deliver its first request
//! within the header timeout, runs in one task tracker with a span of its own, and is
//! drained at shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::Instrument;

use crate::activity::Activity;
use crate::api::{self, AppState, request_id_from};
use crate::body_timeout::{BodyPace, PacedBody};
use crate::canned::{JsonCanned, http1_response};
use crate::conn::{ConnLimits, ConnSlot};
use crate::error::REQUEST_ID;
use crate::host_check::HostCheck;
use crate::tls::Tls;
use crate::tunnel::{self, Kind};
use crate::websocket;

/// Largest request head hyper buffers.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest pause between accept attempts while the process is out of descriptors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

pub struct ServeOptions {
    /// How long open requests and tunnels may finish after shutdown begins.
    pub grace: Duration,
    /// Cancelled when the grace is over: ends every tunnel (each session's `cancel` is a
    /// child) and every connection still open.
    pub tunnels_root: CancellationToken,
    /// Serve HTTPS with this instead of plain HTTP.
    pub tls: Option<Arc<Tls>>,
    /// From accept to its first parsed request, a connection (TLS handshake included) gets
    /// this long; later request heads too (slow-loris guard).
    pub header_read_timeout: Duration,
    pub body_pace: BodyPace,
    pub limits: Arc<ConnLimits>,
    /// With auth off: the `Host`/`Origin` check.
    pub host_check: Option<Arc<HostCheck>>,
}

/// Tasks hyper spawns (HTTP/2 streams) join the server's tracker too.
#[derive(Clone)]
struct TrackedExecutor(TaskTracker);

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

/// Serves until `shutdown` fires, then drains connections and tunnels for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    options: ServeOptions,
) {
    let tasks = TaskTracker::new();
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TrackedExecutor(tasks.clone()));
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        // The CONNECT answer must be exactly the status line and a blank line.
        .auto_date_header(false);
    builder.http2().timer(TokioTimer::new());
    let shared = Arc::new(Shared {
        router: api::router(state.clone()),
        state,
        builder,
        tasks: tasks.clone(),
        options,
    });
    if let Some(tls) = &shared.options.tls {
        tasks.spawn(tls.clone().watch(shutdown.clone()));
    }
    let mut backoff = Backoff::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    backoff.failed(&err).await;
                    continue;
                }
            },
        };
        backoff.succeeded();
        let slot = match shared.options.limits.acquire(peer.ip()) {
            Ok(slot) => Arc::new(slot),
            Err(err) => {
                tracing::info!(%peer, error = %err.message, "connection refused");
                // One small write to a fresh socket: the kernel takes it at once. TLS
                // clients cannot read it, but they see the close all the same.
                if shared.options.tls.is_none() {
                    let body = REQUEST_ID
                        .sync_scope(uuid::Uuid::new_v4().to_string(), || http1_response(&err));
                    let _ = stream.try_write(&body);
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = shared
            .clone()
            .connection(stream, peer, slot, graceful.watcher());
        let stop = shared.options.tunnels_root.clone();
        tasks.spawn(
            async move {
                tokio::select! {
                    () = connection => {}
                    () = stop.cancelled() => tracing::debug!("connection closed: shutdown"),
                }
            }
            .instrument(tracing::info_span!("conn", %peer)),
        );
    }
    drop(listener);
    let grace = shared.options.grace;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining requests and tunnels"
    );
    tasks.close();
    let drained = async {
        graceful.shutdown().await;
        tasks.wait().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::info!(
            open = tasks.len(),
            "grace period over; closing remaining tunnels"
        );
    }
    shared.options.tunnels_root.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
}

/// Backs off while `accept` fails (out of descriptors, typically) and says so once per
/// episode, instead of retrying and logging every few milliseconds.
#[derive(Default)]
struct Backoff {
    delay: Option<Duration>,
    failures: u64,
}

impl Backoff {
    async fn failed(&mut self, err: &std::io::Error) {
        self.failures += 1;
        let delay = match self.delay {
            None => {
                tracing::warn!(error = %err, "accept failed; backing off until it works again");
                Duration::from_millis(10)
            }
            Some(delay) => (delay * 2).min(MAX_ACCEPT_BACKOFF),
        };
        self.delay = Some(delay);
        tokio::time::sleep(delay).await;
    }

    fn succeeded(&mut self) {
        if self.delay.take().is_some() {
            tracing::info!(failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

/// What every connection shares.
struct Shared {
    router: Router,
    state: AppState,
    builder: auto::Builder<TrackedExecutor>,
    tasks: TaskTracker,
    options: ServeOptions,
}

impl Shared {
    /// One connection's life: TLS handshake, first request within the header timeout, then
    /// requests (and maybe a tunnel) until it closes.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        slot: Arc<ConnSlot>,
        watcher: Watcher,
    ) {
        let first_request = Arc::new(Notify::new());
        let activity = Activity::new();
        let deadline = tokio::time::Instant::now() + self.options.header_read_timeout;
        let serving = async {
            match &self.options.tls {
                None => {
                    self.serve(
                        stream,
                        slot,
                        first_request.clone(),
                        activity.clone(),
                        watcher,
                    )
                    .await
                }
                Some(tls) => match tls.acceptor.accept(stream).await {
                    Ok(stream) => {
                        self.serve(
                            stream,
                            slot,
                            first_request.clone(),
                            activity.clone(),
                            watcher,
                        )
                        .await
                    }
                    Err(err) => tracing::debug!(error = %err, "TLS handshake failed"),
                },
            }
        };
        // Until its first request is parsed a connection must keep moving: hyper's own
        // timer starts only with the first byte of HTTP/1 and not at all for an h2c
        // preface or a silent TLS client.
        let cut_off = async {
            if tokio::time::timeout_at(deadline, first_request.notified())
                .await
                .is_ok()
            {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = serving => {}
            () = cut_off => tracing::debug!(%peer, "connection closed: no request in time"),
            () = activity.idle_for(self.options.header_read_timeout) => {
                tracing::debug!(%peer, "connection closed: idle");
            }
        }
    }

    async fn serve<I>(
        self: &Arc<Self>,
        io: I,
        slot: Arc<ConnSlot>,
        first_request: Arc<Notify>,
        activity: Arc<Activity>,
        watcher: Watcher,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = self.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            first_request.notify_one();
            let in_flight = activity.begin();
            let shared = shared.clone();
            let slot = slot.clone();
            async move {
                let response = shared.route(request, slot).await;
                // Counted until the body is sent (or dropped).
                Ok::<_, Infallible>(response.map(|body| Body::new(in_flight.hold(body))))
            }
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(JsonCanned::new(io)), service)
            .into_owned();
        if let Err(err) = watcher.watch(connection).await {
            tracing::debug!(error = %err, "connection ended with an error");
        }
    }

    async fn route(
        &self,
        mut request: hyper::Request<Incoming>,
        slot: Arc<ConnSlot>,
    ) -> axum::response::Response {
        if let Some(check) = &self.options.host_check
            && let Err(err) = check.check(&request)
        {
            let id = request_id_from(request.headers());
            return REQUEST_ID.sync_scope(id, || err.into_response());
        }
        let state = self.state.clone();
        if tunnel::is_connect(&request) {
            request.extensions_mut().insert(slot);
            return tunnel::serve(state, self.tasks.clone(), request, Kind::Connect).await;
        }
        if websocket::is_websocket(&request) {
            request.extensions_mut().insert(slot);
            return tunnel::serve(state, self.tasks.clone(), request, Kind::WebSocket).await;
        }
        let pace = self.options.body_pace;
        let http1 = request.version() < hyper::Version::HTTP_2;
        let (parts, body) = request.into_parts();
        let body = PacedBody::new(body, pace);
        let end = body.end();
        let request = hyper::Request::from_parts(parts, Body::new(body));
        let mut response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        if http1 && !end.reached() {
            response.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}
