//! Byte tunnels to a session's SSH server (`docs/API.md`, "The tunnel"): HTTP CONNECT, and the WebSocket
//! fallback for networks whose proxies strip CONNECT.

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

use crate::api::{Client, Conn, api_error, parse_response};

/// Largest response head accepted before the tunnel starts.
const MAX_HEAD: usize = 64 * 1024;
/// Bytes buffered between a WebSocket tunnel and its byte-stream side; also the largest
/// message sent.
const WS_CHUNK: usize = 32 * 1024;

/// A byte stream to the session's SSH server over CONNECT, or over the WebSocket tunnel.
pub async fn open(client: &Client, id: Uuid) -> anyhow::Result<Conn> {
    if !client.websocket {
        return connect(client, id).await;
    }
    let ws = self::websocket(client, id).await?;
    let (ours, theirs) = tokio::io::duplex(WS_CHUNK);
    tokio::spawn(bridge(ws, theirs));
    Ok(Box::new(ours))
}

/// Moves bytes between `pipe` and binary messages. The end of the pipe's input becomes our
/// Close; the server's Close (or a dropped connection) becomes the end of the pipe's output.
async fn bridge(ws: WebSocketStream<Conn>, pipe: DuplexStream) {
    let (mut tx, mut rx) = ws.split();
    let (mut from_pipe, mut to_pipe) = tokio::io::split(pipe);
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; WS_CHUNK];
        loop {
            match from_pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.close().await;
    });
    while let Some(Ok(message)) = rx.next().await {
        match message {
            Message::Binary(data) if to_pipe.write_all(&data).await.is_err() => break,
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = to_pipe.shutdown().await;
    // The server has closed; nothing read from the pipe can reach it any more.
    up.abort();
}

/// Opens `CONNECT /v1/sessions/{id}/tunnel`; on success the stream carries SSH bytes.
pub async fn connect(client: &Client, id: Uuid) -> anyhow::Result<Conn> {
    let mut stream = client.dial().await?;
    let mut head = client.head(
        "CONNECT",
        &client.path(&format!("/v1/sessions/{id}/tunnel")),
    );
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .context("sending the tunnel request failed")?;
    // Byte by byte up to the blank line: the SSH server's banner follows at once and must
    // stay in the stream.
    let mut raw = Vec::with_capacity(64);
    while !raw.ends_with(b"\r\n\r\n") {
        if raw.len() > MAX_HEAD {
            bail!("the server's tunnel answer is too long");
        }
        let byte = stream
            .read_u8()
            .await
            .context("the server closed the connection before answering the tunnel request")?;
        raw.push(byte);
    }
    let response = parse_response(&raw)?;
    if response.status == 200 {
        return Ok(stream);
    }
    let len = response
        .headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_HEAD);
    let mut body = vec![0; len];
    // Best effort: the status alone still makes a useful message.
    let _ = stream.read_exact(&mut body).await;
    Err(api_error(response.status, &body)).context(format!("cannot open a tunnel to session {id}"))
}

/// Opens the WebSocket tunnel; binary messages carry SSH bytes.
pub async fn websocket(client: &Client, id: Uuid) -> anyhow::Result<WebSocketStream<Conn>> {
    let stream = client.dial().await?;
    let url = format!(
        "ws://{}{}",
        client.authority,
        client.path(&format!("/v1/sessions/{id}/tunnel"))
    );
    let mut request = url.into_client_request().context("bad WebSocket URL")?;
    if let Some(token) = &client.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token is not a valid header value")?;
        request.headers_mut().insert("authorization", value);
    }
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            Err(api_error(response.status().as_u16(), body))
                .context(format!("cannot open a WebSocket tunnel to session {id}"))
        }
        Err(err) => Err(err).context(format!("cannot open a WebSocket tunnel to session {id}")),
    }
}
