//! A minimal keep-alive HTTP/1.1 client for the exec and file benchmarks: one connection
//! reused for every call, as an SDK's session would, so the figures show the server.

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Http {
    conn: BufReader<TcpStream>,
    host: String,
}

impl Http {
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            conn: BufReader::with_capacity(256 * 1024, stream),
            host: addr.to_owned(),
        })
    }

    async fn head(
        &mut self,
        method: &str,
        path: &str,
        extra: &str,
        len: u64,
    ) -> anyhow::Result<()> {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{extra}Content-Length: {len}\r\n\r\n",
            self.host
        );
        self.conn.get_mut().write_all(request.as_bytes()).await?;
        Ok(())
    }

    /// Reads a response head; returns the status and the body's length.
    async fn response(&mut self) -> anyhow::Result<(u16, u64)> {
        let mut status = 0;
        let mut length = None;
        let mut line = String::new();
        loop {
            line.clear();
            if self.conn.read_line(&mut line).await? == 0 {
                bail!("connection closed mid-response");
            }
            let text = line.trim_end();
            if text.is_empty() {
                break;
            }
            if status == 0 {
                status = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .context("no status")?;
            } else if let Some((name, value)) = text.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().ok();
            }
        }
        Ok((status, length.context("no Content-Length")?))
    }

    /// A small request and its whole (small) answer.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> anyhow::Result<(u16, String)> {
        self.head(
            method,
            path,
            "Content-Type: application/json\r\n",
            body.len() as u64,
        )
        .await?;
        self.conn.get_mut().write_all(body.as_bytes()).await?;
        let (status, len) = self.response().await?;
        let mut buf = vec![0; usize::try_from(len)?];
        self.conn.read_exact(&mut buf).await?;
        Ok((status, String::from_utf8_lossy(&buf).into_owned()))
    }

    /// Streams `len` bytes of `source` as the body.
    pub async fn upload(
        &mut self,
        path: &str,
        mut source: impl AsyncRead + Unpin,
        len: u64,
    ) -> anyhow::Result<u16> {
        self.head(
            "POST",
            path,
            "Content-Type: application/octet-stream\r\n",
            len,
        )
        .await?;
        let copied = tokio::io::copy(&mut source, self.conn.get_mut()).await?;
        anyhow::ensure!(copied == len, "sent {copied} of {len} bytes");
        let (status, len) = self.response().await?;
        let mut buf = vec![0; usize::try_from(len)?];
        self.conn.read_exact(&mut buf).await?;
        Ok(status)
    }

    /// Streams the answer's body into `sink`; returns the bytes received.
    pub async fn download(
        &mut self,
        path: &str,
        mut sink: impl tokio::io::AsyncWrite + Unpin,
    ) -> anyhow::Result<u64> {
        self.head("GET", path, "", 0).await?;
        let (status, len) = self.response().await?;
        anyhow::ensure!(status == 200, "download answered {status}");
        let copied = tokio::io::copy(&mut (&mut self.conn).take(len), &mut sink).await?;
        sink.flush().await?;
        Ok(copied)
    }
}
