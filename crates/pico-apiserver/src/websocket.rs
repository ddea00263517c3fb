//! The WebSocket fallback of the tunnel (DESIGN.md §4, issue 5), for networks whose proxies
//! strip CONNECT: `GET /v1/sessions/{id}/tunnel` with `Upgrade: websocket`. The same auth,
//! ownership and readiness checks and the same dial of the sandbox happen before the `101`;
//! then binary frames carry the SSH bytes both ways.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::api::{AppState, request_id_from};
use crate::error::ApiError;
use crate::metrics::{Metrics, OpenTunnel};
use crate::service::LiveSession;
use crate::tunnel;

const PREFIX: &str = "/v1/sessions/";
const SUFFIX: &str = "/tunnel";
/// Largest chunk read from the sandbox per frame: SSH packets are at most 35 000 bytes, so
/// one frame usually carries whole packets without copying them twice.
const FRAME_BYTES: usize = 32 * 1024;
/// How long a client may take to answer our Close once the sandbox side has ended.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Whether `request` asks for the WebSocket tunnel (anything else goes to the router).
pub fn is_websocket<B>(request: &Request<B>) -> bool {
    let path = request.uri().path();
    request.method() == Method::GET
        && path.starts_with(PREFIX)
        && path.ends_with(SUFFIX)
        && has_token(request.headers(), &UPGRADE, "websocket")
}

/// Whether a comma-separated header (`Connection`, `Upgrade`) lists `token`.
fn has_token(headers: &HeaderMap, name: &axum::http::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

pub async fn handle<B: Send + 'static>(
    state: AppState,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    request: Request<B>,
) -> Response<Body> {
    let request_id = request_id_from(request.headers());
    tunnel::answer(
        request_id,
        "websocket",
        open(&state, tasks, shutdown, request),
    )
    .await
}

fn session_id(request: &Request<impl Sized>) -> Result<Uuid, ApiError> {
    if request.uri().query().is_some() {
        // Tokens never travel in query strings (they would land in proxy logs).
        return Err(ApiError::invalid_request(
            "the tunnel takes no query string",
        ));
    }
    let path = request.uri().path();
    let id = path
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .ok_or_else(ApiError::session_not_found)?;
    Uuid::parse_str(id).map_err(|_| ApiError::session_not_found())
}

/// The `Sec-WebSocket-Accept` value for a valid RFC 6455 opening handshake.
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(ApiError::invalid_request(
            "a WebSocket handshake needs `Connection: Upgrade`",
        ));
    }
    if headers
        .get("sec-websocket-version")
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(ApiError::invalid_request(
            "only WebSocket version 13 is supported",
        ));
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::invalid_request("missing Sec-WebSocket-Key"))?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| ApiError::internal("cannot encode Sec-WebSocket-Accept"))
}

async fn open<B: Send + 'static>(
    state: &AppState,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    mut request: Request<B>,
) -> Result<Response<Body>, ApiError> {
    let id = session_id(&request)?;
    let accept = accept_key(request.headers())?;
    let caller = state.authenticate(request.headers())?;
    let (live, backend) = state.service.open_tunnel(&caller, id).await?;
    let upgrade = hyper::upgrade::on(&mut request);
    let metrics = state.service.metrics.clone();
    tasks.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(session_id = %id, error = %err, "websocket upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        relay(ws, backend, live, metrics, shutdown, id).await;
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

async fn relay<C, S>(
    ws: WebSocketStream<C>,
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
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut from_sandbox, mut to_sandbox) = tokio::io::split(backend);
    let count = |n: usize| {
        // An atomic add per chunk: activity is flushed to the store by the reaper.
        live.bytes_relayed.fetch_add(n as u64, Ordering::Relaxed);
        metrics.bytes_relayed.fetch_add(n as u64, Ordering::Relaxed);
    };
    let up = async {
        while let Some(message) = ws_rx.next().await {
            match message {
                Ok(Message::Binary(data)) => {
                    to_sandbox.write_all(&data).await?;
                    count(data.len());
                }
                // The client's Close is its end of input; the sandbox sees it as EOF.
                Ok(Message::Close(_)) => break,
                Ok(Message::Text(_)) => {
                    return Err(std::io::Error::other("text frames are not tunnelled"));
                }
                // Pings are answered by tungstenite itself.
                Ok(_) => {}
                Err(err) => return Err(std::io::Error::other(err)),
            }
        }
        to_sandbox.shutdown().await
    };
    let down = async {
        let mut buf = vec![0u8; FRAME_BYTES];
        loop {
            let n = from_sandbox.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            count(n);
            ws_tx
                .send(Message::binary(buf[..n].to_vec()))
                .await
                .map_err(std::io::Error::other)?;
        }
        ws_tx.close().await.map_err(std::io::Error::other)
    };
    let both = async {
        tokio::pin!(up);
        tokio::select! {
            // tungstenite answers the client's Close at once, after which no data frame may
            // follow (WebSocket has no half-close), so the tunnel ends here.
            result = &mut up => result.err(),
            result = down => {
                // The sandbox is done and our Close is sent; let the client's reply (and any
                // last bytes) arrive, but do not wait on a client that never answers.
                let _ = tokio::time::timeout(CLOSE_GRACE, &mut up).await;
                result.err()
            }
        }
    };
    tracing::debug!(session_id = %id, "websocket tunnel open");
    tokio::select! {
        error = both => tracing::debug!(session_id = %id, error = ?error, "websocket tunnel closed"),
        _ = live.cancel.cancelled() => tracing::debug!(session_id = %id, "websocket tunnel ended: session gone"),
        _ = shutdown.cancelled() => tracing::debug!(session_id = %id, "websocket tunnel ended: server shutdown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, upgrade: &str) -> Request<()> {
        Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(UPGRADE, upgrade)
            .body(())
            .expect("request")
    }

    #[test]
    fn only_websocket_upgrades_of_the_tunnel_path_are_taken() {
        let id = Uuid::new_v4();
        assert!(is_websocket(&get(
            &format!("/v1/sessions/{id}/tunnel"),
            "websocket"
        )));
        assert!(is_websocket(&get(
            &format!("/v1/sessions/{id}/tunnel"),
            "WebSocket"
        )));
        assert!(!is_websocket(&get(
            &format!("/v1/sessions/{id}/tunnel"),
            "h2c"
        )));
        assert!(!is_websocket(&get(
            &format!("/v1/sessions/{id}"),
            "websocket"
        )));
    }

    #[test]
    fn ids_and_query_strings() {
        let id = Uuid::new_v4();
        let ok = get(&format!("/v1/sessions/{id}/tunnel"), "websocket");
        assert_eq!(session_id(&ok).map_err(|e| e.status), Ok(id));
        let bad = get("/v1/sessions/nope/tunnel", "websocket");
        assert_eq!(
            session_id(&bad).map_err(|e| e.status),
            Err(StatusCode::NOT_FOUND)
        );
        let query = get(&format!("/v1/sessions/{id}/tunnel?token=x"), "websocket");
        assert_eq!(
            session_id(&query).map_err(|e| e.status),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn accept_key_follows_rfc_6455() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
        headers.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        // The example of RFC 6455 §1.3.
        assert_eq!(
            accept_key(&headers).ok(),
            Some(HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
        );
        headers.remove(SEC_WEBSOCKET_KEY);
        assert!(accept_key(&headers).is_err());
    }
}
