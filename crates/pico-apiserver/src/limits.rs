//! Caps on concurrent tunnels per session and per user; a slot is held by the tunnel's
//! backend stream (`TunnelStream`, which also counts its bytes) and freed when it drops,
//! however the tunnel ends.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use pico_wire::ErrorCode;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ApiError;
use crate::metrics::{Metrics, OpenTunnel};
use crate::runtime::BoxedStream;
use crate::service::LiveSession;

pub struct TunnelLimits {
    per_session: u32,
    per_user: u32,
    by_user: Arc<Mutex<HashMap<String, u32>>>,
}

impl TunnelLimits {
    /// A limit of 0 means unlimited.
    pub fn new(per_session: u32, per_user: u32) -> Self {
        Self {
            per_session,
            per_user,
            by_user: Arc::default(),
        }
    }

    /// Takes a slot for one more tunnel into a session of `owner`, or explains the 429.
    pub fn acquire(&self, session: &Arc<AtomicU32>, owner: &str) -> Result<TunnelSlot, ApiError> {
        let refuse = |scope: &str, limit: u32| {
            ApiError::new(
                ErrorCode::QuotaExceeded,
                format!("at most {limit} open tunnels per {scope}"),
            )
            .with_details(json!({"scope": scope, "limit": limit}))
        };
        let mut by_user = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
        let user_count = by_user.get(owner).copied().unwrap_or(0);
        if self.per_user > 0 && user_count >= self.per_user {
            return Err(refuse("user", self.per_user));
        }
        let taken = session.fetch_add(1, Ordering::AcqRel);
        if self.per_session > 0 && taken >= self.per_session {
            session.fetch_sub(1, Ordering::AcqRel);
            return Err(refuse("session", self.per_session));
        }
        by_user.insert(owner.to_owned(), user_count + 1);
        Ok(TunnelSlot {
            session: session.clone(),
            by_user: self.by_user.clone(),
            owner: owner.to_owned(),
        })
    }
}

pub struct TunnelSlot {
    session: Arc<AtomicU32>,
    by_user: Arc<Mutex<HashMap<String, u32>>>,
    owner: String,
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        self.session.fetch_sub(1, Ordering::AcqRel);
        let mut by_user = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = by_user.get_mut(&self.owner) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                by_user.remove(&self.owner);
            }
        }
    }
}

/// The sandbox side of every tunnel, and its one wrapper: holds the tunnel's slot and its
/// place in the open-tunnel gauge, and counts relayed bytes into the session's activity and
/// `/metrics` (atomic adds, no I/O) and per direction for the tunnel's span.
pub struct TunnelStream {
    stream: BoxedStream,
    _slot: TunnelSlot,
    _open: OpenTunnel,
    live: Arc<LiveSession>,
    metrics: Arc<Metrics>,
    /// Bytes written to the sandbox and read from it.
    up: u64,
    down: u64,
}

impl TunnelStream {
    pub fn new(
        stream: BoxedStream,
        slot: TunnelSlot,
        live: Arc<LiveSession>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            stream,
            _slot: slot,
            _open: OpenTunnel::new(metrics.clone()),
            live,
            metrics,
            up: 0,
            down: 0,
        }
    }

    /// Bytes moved so far: (to the sandbox, from it).
    pub fn moved(&self) -> (u64, u64) {
        (self.up, self.down)
    }

    fn count(&self, n: u64) {
        self.live.bytes_relayed.fetch_add(n, Ordering::Relaxed);
        self.metrics.bytes_relayed.fetch_add(n, Ordering::Relaxed);
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = self.stream.as_mut().poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            self.down += read;
            self.count(read);
        }
        poll
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = self.stream.as_mut().poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.up += n as u64;
            self.count(n as u64);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.as_mut().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn slots_are_capped_and_freed_on_drop() {
        let limits = TunnelLimits::new(2, 3);
        let (a, b) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let first = limits.acquire(&a, "alice").expect("1");
        let _second = limits.acquire(&a, "alice").expect("2");
        assert_eq!(
            limits.acquire(&a, "alice").err().map(|e| e.status),
            Some(StatusCode::TOO_MANY_REQUESTS)
        );
        let _third = limits.acquire(&b, "alice").expect("3");
        assert!(limits.acquire(&b, "alice").is_err(), "per-user cap");
        assert!(limits.acquire(&b, "bob").is_ok(), "bob has his own count");
        drop(first);
        assert!(limits.acquire(&b, "alice").is_ok());
        assert_eq!(a.load(Ordering::Relaxed), 1);
    }
}
