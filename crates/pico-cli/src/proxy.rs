//! `pico proxy`: relays stdin/stdout to a session's tunnel, for OpenSSH's `ProxyCommand`.

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::api::Client;
use crate::tunnel;

/// Stdin chunks become WebSocket messages of at most this size.
const CHUNK: usize = 32 * 1024;

/// The session id in what OpenSSH passes as `%h` (an id, maybe with `:22`).
pub fn target(text: &str) -> &str {
    text.strip_suffix(":22").unwrap_or(text)
}

/// CONNECT: stdin → tunnel with half-close when stdin ends; done when the tunnel ends.
pub async fn connect(client: &Client, id: Uuid) -> anyhow::Result<()> {
    let stream = tunnel::connect(client, id).await?;
    let (mut down, mut up) = stream.into_split();
    let upstream = async move {
        let mut stdin = tokio::io::stdin();
        let result = tokio::io::copy(&mut stdin, &mut up).await;
        // Forward the end of input even after an error, so the sandbox side finishes.
        let _ = up.shutdown().await;
        result
    };
    let downstream = async move {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut down, &mut stdout).await?;
        stdout.flush().await
    };
    tokio::pin!(upstream);
    tokio::pin!(downstream);
    let mut upstream_done = false;
    loop {
        tokio::select! {
            result = &mut upstream, if !upstream_done => {
                upstream_done = true;
                result.context("reading stdin failed")?;
            }
            result = &mut downstream => return result.context("the tunnel failed"),
        }
    }
}

/// WebSocket: binary messages both ways; a Close stands for the end of stdin.
pub async fn websocket(client: &Client, id: Uuid) -> anyhow::Result<()> {
    let ws = tunnel::websocket(client, id).await?;
    let (mut tx, mut rx) = ws.split();
    let upstream = async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = stdin.read(&mut buf).await.context("reading stdin failed")?;
            if n == 0 {
                break;
            }
            tx.send(Message::binary(buf[..n].to_vec()))
                .await
                .context("the tunnel failed")?;
        }
        let _ = tx.close().await;
        anyhow::Ok(())
    };
    let downstream = async move {
        let mut stdout = tokio::io::stdout();
        while let Some(message) = rx.next().await {
            match message.context("the tunnel failed")? {
                Message::Binary(data) => {
                    stdout.write_all(&data).await?;
                    stdout.flush().await?;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        anyhow::Ok(())
    };
    tokio::pin!(upstream);
    tokio::pin!(downstream);
    let mut upstream_done = false;
    loop {
        tokio::select! {
            result = &mut upstream, if !upstream_done => {
                upstream_done = true;
                result?;
            }
            result = &mut downstream => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn targets() {
        assert_eq!(super::target("abc:22"), "abc");
        assert_eq!(super::target("abc"), "abc");
    }
}
