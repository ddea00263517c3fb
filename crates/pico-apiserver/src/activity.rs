//! Whether a connection is idle: requests in flight (a response counts until its body is
//! sent or dropped) and since when none has been. hyper closes idle HTTP/1 keep-alive
//! connections itself, but keeps idle HTTP/2 ones forever.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// One connection's requests in flight and the time the last one ended.
pub struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Returns once the connection has had nothing in flight for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            tokio::time::sleep(limit).await;
            let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
            if self.in_flight.load(Ordering::Acquire) == 0 && since.elapsed() >= limit {
                return;
            }
        }
    }
}

/// One request in flight; dropped with its response body.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }
}

impl InFlight {
    /// `body`, holding this request in flight until it is sent or dropped.
    pub fn hold<B>(self, body: B) -> Held<B> {
        Held {
            inner: body,
            _in_flight: self,
        }
    }
}

/// A response body that keeps its request in flight; size and end pass through unchanged
/// (so `Content-Length` stays).
pub struct Held<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: HttpBody + Unpin> HttpBody for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
