//! Byte tunnels to a session's SSH server (DESIGN.md §4): HTTP CONNECT, and the WebSocket
//! fallback for networks whose proxies strip CONNECT.

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use uuid::Uuid;

use crate::api::{Client, api_error, parse_response};

/// Largest response head accepted before the tunnel starts.
const MAX_HEAD: usize = 64 * 1024;

/// Opens `CONNECT /v1/sessions/{id}/tunnel`; on success the stream carries SSH bytes.
pub async fn connect(client: &Client, id: Uuid) -> anyhow::Result<TcpStream> {
    let mut stream = client.dial().await?;
    let mut head = client.head("CONNECT", &client.path(&format!("/v1/sessions/{id}/tunnel")));
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
        let byte = stream.read_u8().await.context(
            "the server closed the connection before answering the tunnel request",
        )?;
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
pub async fn websocket(client: &Client, id: Uuid) -> anyhow::Result<WebSocketStream<TcpStream>> {
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
