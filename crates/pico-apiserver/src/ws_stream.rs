//! The WebSocket tunnel as a byte stream: RFC 6455 frames are read and written as they
//! come, so the tunnel's common relay moves WebSocket tunnels as well. Nothing waits for a
//! message to end: each frame's payload is unmasked straight into the relay's buffer, piece
//! by piece, so a tunnel holds no more memory than a CONNECT tunnel whatever the sizes of
//! the client's messages and frames. Only control frames (at most 125 bytes) are buffered.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Largest frame we send: the relay writes at most this much at once anyway.
const MAX_OUT_FRAME: usize = 64 * 1024;
/// How long a client may take to answer our Close before the tunnel ends without it.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

enum Reading {
    /// A frame header: `have` of the bytes in `buf`.
    Header { buf: [u8; 14], have: usize },
    /// `remaining` payload bytes of a data frame, unmasked with `mask` from `at`.
    Data {
        remaining: u64,
        mask: [u8; 4],
        at: usize,
    },
    /// A control frame's payload, gathered whole (at most 125 bytes).
    Control {
        opcode: u8,
        mask: [u8; 4],
        payload: Vec<u8>,
        len: usize,
    },
    /// The client's Close arrived (or the grace for it ran out): end of input.
    Done,
}

pub struct WsStream<IO> {
    io: IO,
    reading: Reading,
    /// Whether a fragmented data message is open (continuations expected).
    in_message: bool,
    /// Bytes to send before anything else: whole frames, `out[pos..]` still unsent.
    out: Vec<u8>,
    pos: usize,
    close_sent: bool,
    close_grace: Option<Pin<Box<Sleep>>>,
}

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<IO> WsStream<IO> {
    pub fn new(io: IO) -> Self {
        Self {
            io,
            reading: Reading::Header {
                buf: [0; 14],
                have: 0,
            },
            in_message: false,
            out: Vec::new(),
            pos: 0,
            close_sent: false,
            close_grace: None,
        }
    }

    /// Appends one unmasked server frame to the output.
    fn queue_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.out.push(0x80 | opcode);
        match payload.len() {
            n @ 0..=125 => self.out.push(n as u8),
            n @ 126..=0xffff => {
                self.out.push(126);
                self.out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.out.push(127);
                self.out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        self.out.extend_from_slice(payload);
    }

    fn queue_close(&mut self, payload: &[u8]) {
        if !self.close_sent {
            self.queue_frame(CLOSE, payload);
            self.close_sent = true;
            self.close_grace = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
        }
    }

    /// Takes a complete header; returns the next reading state.
    fn on_header(&mut self, h: &[u8]) -> io::Result<Reading> {
        let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0F);
        if h[0] & 0x70 != 0 {
            return Err(invalid("WebSocket extensions are not negotiated"));
        }
        let (len, at) = match h[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&h[at..at + 4]);
        match opcode {
            CONTINUATION | BINARY => {
                if (opcode == CONTINUATION) != self.in_message {
                    return Err(invalid("WebSocket fragments out of order"));
                }
                self.in_message = !fin;
                Ok(Reading::Data {
                    remaining: len,
                    mask,
                    at: 0,
                })
            }
            TEXT => Err(invalid("text frames are not tunnelled")),
            CLOSE | PING | PONG if fin && len <= 125 => Ok(Reading::Control {
                opcode,
                mask,
                payload: Vec::with_capacity(len as usize),
                len: len as usize,
            }),
            _ => Err(invalid("malformed WebSocket frame")),
        }
    }
}

/// Length of a frame header from its first two bytes.
fn header_len(second: u8) -> usize {
    4 + match second & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    }
}

fn unmask(data: &mut [u8], mask: [u8; 4], at: usize) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= mask[(at + i) % 4];
    }
}

impl<IO: AsyncWrite + Unpin> WsStream<IO> {
    /// Sends what is queued.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
        }
        // An idle tunnel keeps no output buffer.
        if self.out.capacity() > 4096 {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        self.pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // Pongs and our Close go out even while only the client is talking.
            if let Poll::Ready(Err(err)) = this.poll_out(cx) {
                return Poll::Ready(Err(err));
            }
            if let Some(grace) = &mut this.close_grace
                && grace.as_mut().poll(cx).is_ready()
            {
                this.reading = Reading::Done;
            }
            match &mut this.reading {
                Reading::Done => return Poll::Ready(Ok(())),
                Reading::Header { buf: header, have } => {
                    if *have >= 2 && header[1] & 0x80 == 0 {
                        // Checked before the rest of the header, which would never come.
                        return Poll::Ready(Err(invalid("client frames must be masked")));
                    }
                    let need = if *have < 2 { 2 } else { header_len(header[1]) };
                    if *have < need {
                        let mut part = ReadBuf::new(&mut header[*have..need]);
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut part))?;
                        let n = part.filled().len();
                        if n == 0 {
                            // The client went away without a Close: end of input all the same.
                            this.reading = Reading::Done;
                            continue;
                        }
                        *have += n;
                        continue;
                    }
                    let header = *header;
                    this.reading = this.on_header(&header[..need])?;
                }
                Reading::Data {
                    remaining,
                    mask,
                    at,
                } => {
                    if *remaining == 0 {
                        this.reading = Reading::Header {
                            buf: [0; 14],
                            have: 0,
                        };
                        continue;
                    }
                    let want = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.remaining());
                    let dst = buf.initialize_unfilled_to(want);
                    let mut part = ReadBuf::new(dst);
                    ready!(Pin::new(&mut this.io).poll_read(cx, &mut part))?;
                    let n = part.filled().len();
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                    unmask(&mut dst[..n], *mask, *at);
                    *at = (*at + n) % 4;
                    *remaining -= n as u64;
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Reading::Control {
                    opcode,
                    mask,
                    payload,
                    len,
                } => {
                    if payload.len() < *len {
                        let mut chunk = [0u8; 125];
                        let mut part = ReadBuf::new(&mut chunk[..*len - payload.len()]);
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut part))?;
                        if part.filled().is_empty() {
                            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                        }
                        payload.extend_from_slice(part.filled());
                        continue;
                    }
                    let (opcode, mut payload, mask) = (*opcode, std::mem::take(payload), *mask);
                    unmask(&mut payload, mask, 0);
                    this.reading = Reading::Header {
                        buf: [0; 14],
                        have: 0,
                    };
                    match opcode {
                        PING if !this.close_sent => this.queue_frame(PONG, &payload),
                        CLOSE => {
                            // Echo the status code; the client's Close is its end of input.
                            this.queue_close(payload.get(..2).unwrap_or(&[]));
                            this.reading = Reading::Done;
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_out(cx))?;
        if this.close_sent {
            // WebSocket has no half-close: nothing may follow a Close.
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = buf.len().min(MAX_OUT_FRAME);
        this.queue_frame(BINARY, &buf[..n]);
        // The frame is ours now; what the socket does not take yet goes out on the next
        // write or flush.
        let _ = this.poll_out(cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_out(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// The sandbox side ended: send our Close (normal closure) and let the client answer.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.queue_close(&1000u16.to_be_bytes());
        ready!(self.poll_out(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        let mut body = payload.to_vec();
        unmask(&mut body, mask, 0);
        frame.extend_from_slice(&body);
        frame
    }

    #[tokio::test]
    async fn fragments_are_relayed_before_the_message_ends_and_pings_answered() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut ws = WsStream::new(server);
        let big: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        client
            .write_all(&masked(false, BINARY, b"SSH-2.0-"))
            .await
            .expect("w");
        client
            .write_all(&masked(true, PING, b"hi"))
            .await
            .expect("w");
        client
            .write_all(&masked(false, CONTINUATION, &big))
            .await
            .expect("w");
        let mut got = vec![0u8; 8 + big.len()];
        ws.read_exact(&mut got).await.expect("read");
        assert_eq!(&got[..8], b"SSH-2.0-");
        assert_eq!(&got[8..], &big[..]);
        // The Pong went out while we read.
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).await.expect("pong");
        assert_eq!(pong, [0x80 | PONG, 2, b'h', b'i']);
        // Our data goes out as binary frames; the client's Close ends the input.
        ws.write_all(b"back").await.expect("write");
        ws.flush().await.expect("flush");
        let mut frame = [0u8; 6];
        client.read_exact(&mut frame).await.expect("frame");
        assert_eq!(frame, [0x80 | BINARY, 4, b'b', b'a', b'c', b'k']);
        client
            .write_all(&masked(true, CLOSE, &1000u16.to_be_bytes()))
            .await
            .expect("w");
        let mut rest = Vec::new();
        assert_eq!(ws.read_to_end(&mut rest).await.expect("eof"), 0);
        let mut close = [0u8; 4];
        client.read_exact(&mut close).await.expect("close");
        assert_eq!(close, [0x80 | CLOSE, 2, 0x03, 0xE8]);
        assert!(ws.write_all(b"late").await.is_err(), "nothing after Close");
    }

    #[tokio::test]
    async fn unmasked_and_text_frames_are_refused() {
        for frame in [vec![0x82, 0x01, b'x'], masked(true, TEXT, b"hi")] {
            let (mut client, server) = tokio::io::duplex(1024);
            let mut ws = WsStream::new(server);
            client.write_all(&frame).await.expect("w");
            let mut buf = [0u8; 16];
            assert!(ws.read(&mut buf).await.is_err());
        }
    }
}
