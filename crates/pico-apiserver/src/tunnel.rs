//! The CONNECT tunnel (DESIGN.md §4): auth, ownership and a dial of the sandbox happen before
//! the `200`; then bytes are relayed both ways, half-close included, until either side ends,
//! the session goes away or the server shuts down.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, Uri, header};
use axum::response::IntoResponse;
use hyper::ext::ReasonPhrase;
use hyper_util::rt::TokioIo;
use pico_wire::ErrorCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::api::{AppState, request_id_from};
use crate::error::{ApiError, REQUEST_ID};
use crate::metrics::{Metrics, OpenTunnel};
use crate::service::LiveSession;

/// The only port the authority form may name: the sandbox's SSH server.
const SSH_PORT: u16 = 22;

/// Where a CONNECT request wants to go.
pub fn parse_target(uri: &Uri) -> Result<Uuid, ApiError> {
    let refuse = || {
        ApiError::new(
            ErrorCode::Forbidden,
            "pico tunnels only to sessions: CONNECT /v1/sessions/{id}/tunnel or {id}:22",
        )
    };
    if uri.scheme().is_some() {
        return Err(refuse());
    }
    if let Some(authority) = uri.authority() {
        if authority.port_u16() != Some(SSH_PORT) || authority.as_str().contains('@') {
            return Err(refuse());
        }
        return Uuid::parse_str(authority.host()).map_err(|_| refuse());
    }
    let path = uri.path();
    let id = path
        .strip_prefix("/v1/sessions/")
        .map(|rest| rest.strip_suffix("/tunnel").unwrap_or(rest))
        .or_else(|| path.strip_prefix("/sessions/"))
        .ok_or_else(refuse)?;
    if uri.query().is_some() {
        // Tokens never travel in query strings, and nothing else is expected there.
        return Err(ApiError::invalid_request("CONNECT takes no query string"));
    }
    Uuid::parse_str(id).map_err(|_| ApiError::session_not_found())
}

pub fn is_connect<B>(request: &Request<B>) -> bool {
    request.method() == Method::CONNECT
}

pub async fn handle<B: Send + 'static>(
    state: AppState,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    request: Request<B>,
) -> Response<Body> {
    let request_id = request_id_from(request.headers());
    answer(request_id, "tunnel", open(&state, tasks, shutdown, request)).await
}

/// Runs a tunnel's opening under its request id; a refusal is logged and answered with the
/// JSON error body, and ends the connection (proxy clients expect that, and it leaves
/// nothing half-open). Shared by the CONNECT and WebSocket tunnels.
pub async fn answer(
    request_id: String,
    kind: &'static str,
    opening: impl Future<Output = Result<Response<Body>, ApiError>>,
) -> Response<Body> {
    REQUEST_ID
        .scope(request_id.clone(), async move {
            opening.await.unwrap_or_else(|err| {
                tracing::info!(request_id = %request_id, kind, status = err.status.as_u16(), error = %err.message, "tunnel refused");
                let mut response = err.into_response();
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            })
        })
        .await
}

async fn open<B: Send + 'static>(
    state: &AppState,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    mut request: Request<B>,
) -> Result<Response<Body>, ApiError> {
    let id = parse_target(request.uri())?;
    let caller = state
        .authenticate(request.headers())
        .map_err(|err| proxy_challenge(request.uri(), request.headers(), err))?;
    let (live, backend) = state.service.open_tunnel(&caller, id).await?;
    let upgrade = hyper::upgrade::on(&mut request);
    let metrics = state.service.metrics.clone();
    tasks.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(session_id = %id, error = %err, "tunnel upgrade failed");
                return;
            }
        };
        relay(TokioIo::new(upgraded), backend, live, metrics, shutdown, id).await;
    });
    let mut response = Response::new(Body::empty());
    response
        .extensions_mut()
        .insert(ReasonPhrase::from_static(b"Connection Established"));
    Ok(response)
}

async fn relay<C, S>(
    mut client: C,
    backend: S,
    live: Arc<LiveSession>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    id: Uuid,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _open = OpenTunnel::new(metrics.clone());
    let mut backend = Counted {
        inner: backend,
        live: live.clone(),
    };
    tracing::debug!(session_id = %id, "tunnel open");
    let relayed = async {
        client_speaks_first(&mut client, &mut backend).await?;
        crate::relay::relay(&mut client, &mut backend).await
    };
    tokio::select! {
        result = relayed => match result {
            Ok((up, down)) => {
                metrics.bytes_relayed.fetch_add(up + down, Ordering::Relaxed);
                tracing::debug!(session_id = %id, up, down, "tunnel closed");
            }
            Err(err) => tracing::debug!(session_id = %id, error = %err, "tunnel ended"),
        },
        _ = live.cancel.cancelled() => tracing::debug!(session_id = %id, "tunnel ended: session gone"),
        _ = shutdown.cancelled() => tracing::debug!(session_id = %id, "tunnel ended: server shutdown"),
    }
}

/// A proxy-form CONNECT (`{id}:22`) without credentials gets `407` and a `Basic` challenge,
/// as proxy clients such as ncat only send `Proxy-Authorization` after one; the API's own
/// path forms keep answering `401`.
fn proxy_challenge(uri: &Uri, headers: &axum::http::HeaderMap, err: ApiError) -> ApiError {
    let has_credentials = headers.contains_key(header::AUTHORIZATION)
        || headers.contains_key(header::PROXY_AUTHORIZATION);
    if uri.authority().is_none() || has_credentials {
        return err;
    }
    err.proxy_auth_required()
}

/// How long the sandbox's first bytes wait for the client's.
const CLIENT_FIRST_WAIT: Duration = Duration::from_secs(1);

/// Holds the sandbox's bytes back until the client has sent something (or a second has
/// passed). SSH clients send their banner at once; clients written for the original server
/// read the CONNECT answer with one large `recv` and would swallow an SSH banner that
/// arrived with it. A client that waits for the server to speak first only loses the wait.
async fn client_speaks_first<C, S>(client: &mut C, backend: &mut S) -> std::io::Result<()>
where
    C: AsyncRead + Unpin,
    S: AsyncWrite + Unpin,
{
    let mut first = [0u8; 512];
    match tokio::time::timeout(CLIENT_FIRST_WAIT, client.read(&mut first)).await {
        Ok(Ok(0)) => backend.shutdown().await,
        Ok(Ok(n)) => backend.write_all(&first[..n]).await,
        Ok(Err(err)) => Err(err),
        Err(_) => Ok(()),
    }
}

/// Counts relayed bytes into the session's activity counter: an atomic add, no I/O.
struct Counted<S> {
    inner: S,
    live: Arc<LiveSession>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            self.live.bytes_relayed.fetch_add(read, Ordering::Relaxed);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.live
                .bytes_relayed
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn target(text: &str) -> Result<Uuid, StatusCode> {
        let uri: Uri = text.parse().map_err(|_| StatusCode::BAD_REQUEST)?;
        parse_target(&uri).map_err(|e| e.status)
    }

    #[test]
    fn path_and_authority_forms() {
        let id = Uuid::new_v4();
        assert_eq!(target(&format!("/v1/sessions/{id}/tunnel")), Ok(id));
        assert_eq!(target(&format!("/v1/sessions/{id}")), Ok(id));
        assert_eq!(target(&format!("/sessions/{id}")), Ok(id));
        assert_eq!(target(&format!("{id}:22")), Ok(id));
    }

    #[test]
    fn anything_else_is_refused_without_a_dial() {
        let id = Uuid::new_v4();
        assert_eq!(target("127.0.0.1:22"), Err(StatusCode::FORBIDDEN));
        assert_eq!(target("example.com:443"), Err(StatusCode::FORBIDDEN));
        assert_eq!(target(&format!("{id}:2222")), Err(StatusCode::FORBIDDEN));
        assert_eq!(
            target(&format!("http://{id}:22/")),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(target("/etc/passwd"), Err(StatusCode::FORBIDDEN));
        assert_eq!(
            target("/v1/sessions/not-a-uuid/tunnel"),
            Err(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            target(&format!("/v1/sessions/{id}/tunnel?token=x")),
            Err(StatusCode::BAD_REQUEST)
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a client writes as a CONNECT target, parsing never panics, and only a
        /// session id can come out of it.
        #[test]
        fn any_target_parses_or_is_refused(text in "\\PC{0,80}") {
            if let Ok(uri) = text.parse::<Uri>()
                && let Ok(id) = parse_target(&uri)
            {
                let id = id.to_string();
                prop_assert!(text.to_ascii_lowercase().contains(&id));
            }
        }

        #[test]
        fn authority_form_takes_only_port_22(port in 1u16..) {
            let id = Uuid::new_v4();
            let uri: Uri = format!("{id}:{port}").parse().expect("uri");
            prop_assert_eq!(parse_target(&uri).is_ok(), port == 22);
        }
    }
}
