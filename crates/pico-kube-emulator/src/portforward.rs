//! `pods/{name}/portforward` over WebSocket with the `v4.channel.k8s.io` framing that
//! kube-rs speaks: every binary message starts with a channel byte; port *i* (in the order of
//! `?ports=`) uses channel `2i` for data and `2i+1` for errors, and the first message the
//! server sends on each channel is the port number (little-endian u16). The kubelet dials the
//! pod's real address, which works when the pod network is unreachable (`podnet`).

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Method, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::api::App;
use crate::error::ApiError;
use crate::resources::PODS;
use crate::store::ObjKey;

const PROTOCOL: &str = "v4.channel.k8s.io";
/// kube-apiserver accepts at most this many ports in one request.
const MAX_PORTS: usize = 128;

/// `(namespace, pod)` when `request` asks to port-forward to a pod.
pub fn target(request: &Request) -> Option<(String, String)> {
    let segs: Vec<&str> = request
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name, "portforward"] => {
            Some(((*ns).to_owned(), (*name).to_owned()))
        }
        _ => None,
    }
}

/// `?ports=22` or `?ports=80%2C443` or `?ports=80&ports=443`.
fn ports(query: Option<&str>) -> Result<Vec<u16>, ApiError> {
    let mut out = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let Some(value) = pair.strip_prefix("ports=") else {
            continue;
        };
        for part in value.replace("%2C", ",").replace("%2c", ",").split(',') {
            let port: u16 = part
                .trim()
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| ApiError::bad_request(format!("invalid port {part:?}")))?;
            out.push(port);
        }
    }
    if out.is_empty() || out.len() > MAX_PORTS {
        return Err(ApiError::bad_request(
            "port-forward needs 1 to 128 ports in ?ports=",
        ));
    }
    Ok(out)
}

fn offers_protocol(request: &Request) -> bool {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL)
}

/// Where the pod's containers listen, if it is running.
fn pod_address(app: &App, ns: &str, name: &str) -> Result<Ipv4Addr, ApiError> {
    let pod = app
        .store
        .get(&ObjKey::new(&PODS, ns, name))
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let status = &pod["status"];
    let ip = status["podIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .filter(|_| status["phase"] == "Running")
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to upgrade connection: pod {name} is not running"
            ))
        })?;
    Ok(crate::podnet::real(ip))
}

/// Answers the upgrade and relays in the background; errors before the upgrade are Status
/// responses, as kube-apiserver's are.
pub async fn serve(app: Arc<App>, mut request: Request, ns: &str, name: &str) -> Response {
    let checked = (|| {
        if request.method() != Method::GET && request.method() != Method::POST {
            return Err(ApiError::method_not_allowed(request.method().as_str()));
        }
        let ports = ports(request.uri().query())?;
        let ip = pod_address(&app, ns, name)?;
        let key = request
            .headers()
            .get(header::SEC_WEBSOCKET_KEY)
            .filter(|_| offers_protocol(&request))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "port-forward here needs a WebSocket upgrade offering {PROTOCOL} (SPDY is not emulated)"
                ))
            })?;
        Ok((ports, ip, derive_accept_key(key.as_bytes())))
    })();
    let (ports, ip, accept) = match checked {
        Ok(ok) => ok,
        Err(e) => return e.into_response(),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    let shutdown = app.shutdown.clone();
    let pod = name.to_owned();
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(e) => {
                tracing::debug!(error = %e, "port-forward upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = relay(ws, ip, &ports) => {}
        }
        tracing::debug!(%pod, "port-forward ended");
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(PROTOCOL),
    );
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bin = Vec::with_capacity(data.len() + 1);
    bin.push(channel);
    bin.extend_from_slice(data);
    Message::binary(bin)
}

/// Dials every port, then moves bytes until the client closes or every connection ended.
async fn relay<S>(ws: WebSocketStream<S>, ip: Ipv4Addr, ports: &[u16])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (to_client, mut outbox) = mpsc::channel::<Message>(64);
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::with_capacity(ports.len());
    for (i, port) in ports.iter().enumerate() {
        let data = u8::try_from(2 * i).unwrap_or(u8::MAX - 1);
        let hello = port.to_le_bytes();
        if sink.send(frame(data, &hello)).await.is_err()
            || sink.send(frame(data + 1, &hello)).await.is_err()
        {
            return;
        }
        match TcpStream::connect((ip, *port)).await {
            Ok(conn) => {
                let _ = conn.set_nodelay(true);
                let (mut read, write) = conn.into_split();
                writers.push(Some(write));
                let to_client = to_client.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n @ 1..) = read.read(&mut buf).await {
                        if to_client.send(frame(data, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => {
                // As the kubelet does: the error channel says why, the stream stays unusable.
                let msg = format!("error forwarding port {port} to pod: {e}");
                writers.push(None);
                let _ = to_client.send(frame(data + 1, msg.as_bytes())).await;
            }
        }
    }
    drop(to_client);
    loop {
        tokio::select! {
            out = outbox.recv() => match out {
                Some(msg) => if sink.send(msg).await.is_err() { break },
                // Every pod connection ended: closing tells the client there is no more.
                None => { let _ = sink.send(Message::Close(None)).await; break }
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(mut bytes))) if bytes.len() > 1 => {
                    let channel = Bytes::split_to(&mut bytes, 1)[0] as usize;
                    if channel.is_multiple_of(2)
                        && let Some(Some(w)) = writers.get_mut(channel / 2)
                        && w.write_all(&bytes).await.is_err()
                    {
                        writers[channel / 2] = None;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // The client is done writing: half-close every pod connection and keep
                    // sending what the pods still say.
                    for w in writers.iter_mut().filter_map(Option::take) {
                        let mut w = w;
                        let _ = w.shutdown().await;
                    }
                    while let Some(msg) = outbox.recv().await {
                        if sink.send(msg).await.is_err() { break }
                    }
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}
