//! The tunnel's byte relay: both directions at once, half-close forwarded, and a buffer only
//! while bytes are moving. tokio's `copy_bidirectional` keeps two buffers for a tunnel's
//! whole life; with thousands of idle tunnels that is most of the server's memory, and with
//! 8 KiB buffers it costs throughput. Here each direction borrows a 64 KiB buffer when its
//! source has data and gives it back as soon as the source would block with nothing left
//! to write.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const BUFFER_SIZE: usize = 64 * 1024;

/// One direction of the relay.
struct Pipe {
    buf: Option<Box<[u8]>>,
    /// Bytes of `buf` read but not yet written: `buf[pos..end]`.
    pos: usize,
    end: usize,
    read_done: bool,
    shut_down: bool,
    moved: u64,
}

impl Pipe {
    fn new() -> Self {
        Self {
            buf: None,
            pos: 0,
            end: 0,
            read_done: false,
            shut_down: false,
            moved: 0,
        }
    }

    /// Moves bytes from `src` to `dst` until `src` would block (buffer released) or ends
    /// (then `dst`'s write side is shut down).
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut src: Pin<&mut R>,
        mut dst: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            while self.pos < self.end {
                let buf = self.buf.as_deref().unwrap_or(&[]);
                let n = ready!(dst.as_mut().poll_write(cx, &buf[self.pos..self.end]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.moved += n as u64;
            }
            if self.read_done {
                if !self.shut_down {
                    ready!(dst.as_mut().poll_shutdown(cx))?;
                    self.shut_down = true;
                }
                return Poll::Ready(Ok(self.moved));
            }
            let buf = self
                .buf
                .get_or_insert_with(|| vec![0u8; BUFFER_SIZE].into_boxed_slice());
            let mut read_buf = ReadBuf::new(buf);
            match src.as_mut().poll_read(cx, &mut read_buf) {
                Poll::Ready(Ok(())) => {
                    let n = read_buf.filled().len();
                    (self.pos, self.end) = (0, n);
                    if n == 0 {
                        self.read_done = true;
                        self.buf = None;
                    }
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    // Nothing in flight: an idle direction holds no buffer. Flush so that
                    // buffered writers (TLS) do not sit on bytes while we wait.
                    self.buf = None;
                    (self.pos, self.end) = (0, 0);
                    ready!(dst.as_mut().poll_flush(cx))?;
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Relays between `a` and `b` until both directions have ended; returns the bytes moved
/// (a→b, b→a). An end of input on one side becomes a write shutdown on the other, so
/// half-closed connections keep working.
pub async fn relay<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (mut up, mut down) = (Pipe::new(), Pipe::new());
    let (mut up_done, mut down_done) = (None, None);
    poll_fn(|cx| {
        if up_done.is_none()
            && let Poll::Ready(result) = up.poll_copy(cx, Pin::new(&mut *a), Pin::new(&mut *b))
        {
            up_done = Some(result?);
        }
        if down_done.is_none()
            && let Poll::Ready(result) = down.poll_copy(cx, Pin::new(&mut *b), Pin::new(&mut *a))
        {
            down_done = Some(result?);
        }
        match (up_done, down_done) {
            (Some(u), Some(d)) => Poll::Ready(Ok((u, d))),
            _ => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn relays_both_ways_with_half_close() {
        let (mut client, mut near) = tokio::io::duplex(1024);
        let (mut far, mut server) = tokio::io::duplex(1024);
        let relay = tokio::spawn(async move { relay(&mut near, &mut far).await });
        let payload: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.expect("write");
            client.shutdown().await.expect("shutdown");
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.expect("read back");
            back
        });
        // The server sees all bytes and then EOF, and can still answer afterwards.
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, payload);
        server.write_all(b"after half-close").await.expect("answer");
        server.shutdown().await.expect("shutdown");
        assert_eq!(writer.await.expect("join"), b"after half-close");
        let (up, down) = relay.await.expect("join").expect("relay");
        assert_eq!((up, down), (300_000, 16));
    }
}
