//! `pico proxy`: relays stdin/stdout to a session's tunnel, for OpenSSH's `ProxyCommand`.

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::api::Client;
use crate::tunnel;

/// The session id in what OpenSSH passes as `%h` (an id, maybe with `:22`).
pub fn target(text: &str) -> &str {
    text.strip_suffix(":22").unwrap_or(text)
}

/// stdin → tunnel with half-close when stdin ends; done when the tunnel ends.
pub async fn run(client: &Client, id: Uuid) -> anyhow::Result<()> {
    let stream = tunnel::open(client, id).await?;
    let (mut down, mut up) = tokio::io::split(stream);
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

#[cfg(test)]
mod tests {
    #[test]
    fn targets() {
        assert_eq!(super::target("abc:22"), "abc");
        assert_eq!(super::target("abc"), "abc");
    }
}
