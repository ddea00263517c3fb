//! The tunnels (docs/API.md, "The tunnel"): CONNECT and its WebSocket fallback share one path — auth,
//! ownership, readiness and a dial of the sandbox happen before the answer; then one relay
//! moves bytes both ways (half-close included for CONNECT) until either side ends, the
//! session goes away or the server's shutdown grace is over.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, Uri, header};
use axum::response::IntoResponse;
use hyper::ext::ReasonPhrase;
use hyper_util::rt::TokioIo;
use pico_wire::ErrorCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::api::{AppState, request_id_from};
use crate::conn::ConnSlot;
use crate::error::{ApiError, REQUEST_ID};
use crate::limits::TunnelStream;
use crate::service::LiveSession;
use crate::websocket;
use crate::ws_stream::WsStream;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connect,
    WebSocket,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::WebSocket => "websocket",
        }
    }
}

/// The one path of both tunnel kinds: parse, authorise, check ownership and readiness, dial
/// the sandbox, and only then answer (`200` or `101`) and relay in a tracked task. A refusal
/// is the JSON error body, logged under the request id, and ends the connection (proxy
/// clients expect that, and it leaves nothing half-open). The relay task joins `tasks`, so
/// shutdown waits for it; it ends when `live.cancel` fires, a child of the one tunnel root
/// the server cancels after its shutdown grace.
pub async fn serve<B: Send + 'static>(
    state: AppState,
    tasks: TaskTracker,
    request: Request<B>,
    kind: Kind,
) -> Response<Body> {
    let request_id = request_id_from(request.headers());
    REQUEST_ID
        .scope(request_id.clone(), async move {
            open(&state, tasks, request, kind)
                .await
                .unwrap_or_else(|err| {
                    tracing::info!(request_id = %request_id, kind = kind.name(), status = err.status.as_u16(), error = %err.message, "tunnel refused");
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
    mut request: Request<B>,
    kind: Kind,
) -> Result<Response<Body>, ApiError> {
    let (id, response) = match kind {
        Kind::Connect => (parse_target(request.uri())?, established()),
        Kind::WebSocket => websocket::handshake(&request)?,
    };
    let caller = state
        .authenticate(request.headers())
        .map_err(|err| match kind {
            Kind::Connect => proxy_challenge(request.uri(), request.headers(), err),
            Kind::WebSocket => err,
        })?;
    let (live, backend) = state.service.open_tunnel(&caller, id).await?;
    // The connection's slot in the connection cap stays taken while the tunnel lives.
    let slot = request.extensions_mut().remove::<Arc<ConnSlot>>();
    let upgrade = hyper::upgrade::on(&mut request);
    let span = tracing::info_span!(
        "tunnel",
        kind = kind.name(),
        session_id = %id,
        user = %caller.sub,
        up = tracing::field::Empty,
        down = tracing::field::Empty,
    );
    tasks.spawn(
        async move {
            let _slot = slot;
            let upgraded = match upgrade.await {
                Ok(upgraded) => TokioIo::new(upgraded),
                Err(err) => {
                    tracing::debug!(error = %err, "tunnel upgrade failed");
                    return;
                }
            };
            match kind {
                Kind::Connect => relay(upgraded, backend, live, true).await,
                Kind::WebSocket => relay(WsStream::new(upgraded), backend, live, false).await,
            }
        }
        .instrument(span),
    );
    Ok(response)
}

/// The CONNECT answer: exactly `HTTP/1.1 200 Connection Established` and a blank line.
fn established() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    response
        .extensions_mut()
        .insert(ReasonPhrase::from_static(b"Connection Established"));
    response
}

/// Relays until both sides are done, the session goes away or the server's grace is over
/// (both cancel `live.cancel`).
async fn relay<C>(
    mut client: C,
    mut backend: TunnelStream,
    live: Arc<LiveSession>,
    hold_first: bool,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    tracing::debug!("tunnel open");
    let relayed = async {
        if hold_first {
            client_speaks_first(&mut client, &mut backend).await?;
        }
        crate::relay::relay(&mut client, &mut backend).await
    };
    let ended = tokio::select! {
        result = relayed => match result {
            Ok(_) => "closed".to_owned(),
            Err(err) => format!("ended: {err}"),
        },
        _ = live.cancel.cancelled() => "ended: session gone or server shut down".to_owned(),
    };
    let (up, down) = backend.moved();
    let span = tracing::Span::current();
    span.record("up", up);
    span.record("down", down);
    tracing::debug!(up, down, "tunnel {ended}");
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
