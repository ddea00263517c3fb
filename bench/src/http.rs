//! A minimal keep-alive HTTP/1.1 client for the exec, file and process benchmarks: one
//! connection reused for every call, as an SDK's session would, so the figures show the server.

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
        let (status, length, _) = self.response_head().await?;
        Ok((status, length.context("no Content-Length")?))
    }

    /// Reads a response head; returns the status, the body's length if given, and whether
    /// the body is chunked.
    async fn response_head(&mut self) -> anyhow::Result<(u16, Option<u64>, bool)> {
        let mut status = 0;
        let mut length = None;
        let mut chunked = false;
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
            } else if let Some((name, value)) = text.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.trim().eq_ignore_ascii_case("chunked");
                }
            }
        }
        Ok((status, length, chunked))
    }

    /// Sends a GET whose answer is a stream (chunked); fails unless it answers 200 so.
    pub async fn get_chunked(&mut self, path: &str) -> anyhow::Result<()> {
        self.head("GET", path, "", 0).await?;
        let (status, length, chunked) = self.response_head().await?;
        if status != 200 || !chunked {
            let mut buf = vec![0; usize::try_from(length.unwrap_or(0))?];
            self.conn.read_exact(&mut buf).await?;
            bail!(
                "GET {path} answered {status} (chunked: {chunked}): {}",
                String::from_utf8_lossy(&buf)
            );
        }
        Ok(())
    }

    /// Appends the next chunk of a chunked answer to `buf`; `false` at the answer's end.
    pub async fn chunk(&mut self, buf: &mut Vec<u8>) -> anyhow::Result<bool> {
        let mut line = String::new();
        self.conn.read_line(&mut line).await?;
        let size_text = line.trim_end().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {line:?}"))?;
        if size == 0 {
            // No trailers are sent: the empty line ends the answer.
            line.clear();
            self.conn.read_line(&mut line).await?;
            return Ok(false);
        }
        let start = buf.len();
        buf.resize(start + size, 0);
        self.conn.read_exact(&mut buf[start..]).await?;
        let mut crlf = [0u8; 2];
        self.conn.read_exact(&mut crlf).await?;
        anyhow::ensure!(&crlf == b"\r\n", "chunk not followed by CRLF");
        Ok(true)
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
