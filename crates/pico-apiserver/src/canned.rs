//! hyper answers a request it cannot parse (400, 414, 431) by itself, with an empty body.
//! This I/O wrapper recognises those canned answers as hyper writes them and sends the API's
//! JSON error body instead, so that every error has one. It also writes the refusals the
//! accept loop sends before hyper ever sees a connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pico_wire::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ApiError;

/// How hyper's canned error answers end (`auto_date_header(false)` keeps `date` out).
const CANNED_TAIL: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// The whole HTTP/1.1 response for `err`, closing the connection.
pub fn http1_response(err: &ApiError) -> Vec<u8> {
    let body = serde_json::to_vec(&err.body()).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n",
        err.status.as_u16(),
        err.status.canonical_reason().unwrap_or("Error"),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The error of a canned answer hyper is about to write, if `buf` is one.
fn canned_error(buf: &[u8]) -> Option<ApiError> {
    if buf.len() > 96 || !buf.starts_with(b"HTTP/1.1 4") || !buf.ends_with(CANNED_TAIL) {
        return None;
    }
    let status_line = &buf[..buf.len() - CANNED_TAIL.len()];
    if status_line.contains(&b'\n') {
        return None;
    }
    let (code, message) = match &buf[9..12] {
        b"400" => (ErrorCode::InvalidRequest, "malformed HTTP request"),
        b"414" => (ErrorCode::UriTooLong, "request target too long"),
        b"431" => (
            ErrorCode::HeadersTooLarge,
            "request head too large (at most 64 KiB)",
        ),
        _ => return None,
    };
    Some(ApiError::new(code, message))
}

pub struct JsonCanned<IO> {
    inner: IO,
    /// A replacement answer still to be written: `pending[pos..]`.
    pending: Vec<u8>,
    pos: usize,
}

impl<IO> JsonCanned<IO> {
    pub fn new(inner: IO) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            pos: 0,
        }
    }
}

impl<IO: AsyncWrite + Unpin> JsonCanned<IO> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pos < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
        }
        self.pending = Vec::new();
        self.pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for JsonCanned<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for JsonCanned<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(err) = canned_error(buf) {
            tracing::debug!(status = err.status.as_u16(), "unparsable request");
            self.pending = http1_response(&err);
            // hyper flushes next; the replacement goes out then.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    /// Vectored writes pass through (hyper queues bodies instead of copying them), except
    /// a lone small buffer, which is all a canned answer is.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && only.len() <= 96
        {
            return self.poll_write(cx, only);
        }
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_answers_are_replaced() {
        let canned = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            canned_error(canned).map(|e| e.code),
            Some(ErrorCode::HeadersTooLarge)
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(canned_error(ours).is_none());
        assert!(canned_error(b"SSH-2.0-pico\r\n").is_none());
    }
}
