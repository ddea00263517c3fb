//! Request bodies must keep coming: no pause longer than `--body-read-timeout`, and once the
//! server has waited that long in all, at least `--body-min-rate` bytes per second of
//! waiting. Every request's body is wrapped by the accept loop, so every route (buffered
//! JSON and streamed uploads alike) gets it; only time spent waiting for the client counts,
//! so a handler that reads slowly (backpressure) never makes its client look slow.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::BoxError;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use pico_wire::ErrorCode;
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    pub timeout: Duration,
    /// Bytes per second of waiting; 0 = no minimum.
    pub min_rate: u64,
}

/// Why a body was cut off; found in the error chain by [`timeout_error`].
#[derive(Debug)]
pub struct BodyTooSlow(String);

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyTooSlow {}

/// The API error for a body read that failed because the body was too slow, if it was:
/// handlers that read bodies map their read errors through this.
pub fn timeout_error(err: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(slow) = err.downcast_ref::<BodyTooSlow>() {
            return Some(ApiError::new(ErrorCode::RequestTimeout, slow.0.clone()));
        }
        current = err.source();
    }
    None
}

pub struct PacedBody<B> {
    inner: B,
    pace: BodyPace,
    /// Since when we wait for the client, and the deadline of that wait.
    waiting: Option<(Instant, Pin<Box<Sleep>>)>,
    waited: Duration,
    received: u64,
    /// Set once the body has been read to its end (or failed): see [`BodyEnd`].
    ended: BodyEnd,
}

/// Whether a request's body was read to its end. A response sent before that (an early
/// 409 or 413 on an upload) must close an HTTP/1 connection: a keep-alive client would
/// otherwise reuse a socket that the server is about to close, and fail its next request.
#[derive(Debug, Clone, Default)]
pub struct BodyEnd(Arc<AtomicBool>);

impl BodyEnd {
    pub fn reached(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl<B: HttpBody> PacedBody<B> {
    pub fn new(inner: B, pace: BodyPace) -> Self {
        let ended = BodyEnd::default();
        if inner.is_end_stream() {
            ended.mark();
        }
        Self {
            inner,
            pace,
            waiting: None,
            waited: Duration::ZERO,
            received: 0,
            ended,
        }
    }

    /// A handle that says whether this body was read to its end.
    pub fn end(&self) -> BodyEnd {
        self.ended.clone()
    }
}

impl<B> PacedBody<B> {
    fn too_slow(&self) -> bool {
        self.pace.min_rate > 0
            && self.waited >= self.pace.timeout
            && (self.received as f64) < self.pace.min_rate as f64 * self.waited.as_secs_f64()
    }
}

impl<B> HttpBody for PacedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some((since, _)) = this.waiting.take() {
                    this.waited += since.elapsed();
                }
                if matches!(frame, None | Some(Err(_))) {
                    this.ended.mark();
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref))
                    && let Some(data) = data
                {
                    this.received += data.len() as u64;
                    if this.too_slow() {
                        return Poll::Ready(Some(Err(Box::new(BodyTooSlow(format!(
                            "request body too slow: {} bytes in {} s (at least {} bytes/s)",
                            this.received,
                            this.waited.as_secs(),
                            this.pace.min_rate
                        ))))));
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.pace.timeout;
                let (_, sleep) = this
                    .waiting
                    .get_or_insert_with(|| (Instant::now(), Box::pin(tokio::time::sleep(timeout))));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Box::new(BodyTooSlow(format!(
                        "request body stalled for {} s",
                        timeout.as_secs()
                    ))))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn pace() -> BodyPace {
        BodyPace {
            timeout: Duration::from_millis(200),
            min_rate: 100,
        }
    }

    /// A body that yields one byte per `gap`, `count` times.
    fn trickle(
        gap: Duration,
        count: usize,
    ) -> impl HttpBody<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let stream = futures::stream::unfold(0, move |i| async move {
            if i == count {
                return None;
            }
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            Some((Ok(Frame::data(Bytes::from_static(b"x"))), i + 1))
        });
        StreamBody::new(Box::pin(stream))
    }

    async fn outcome(
        body: impl HttpBody<Data = Bytes, Error = std::convert::Infallible> + Unpin,
    ) -> Option<ApiError> {
        match PacedBody::new(body, pace()).collect().await {
            Ok(_) => None,
            Err(err) => timeout_error(err.as_ref()),
        }
    }

    #[tokio::test]
    async fn a_stall_is_cut() {
        let err = outcome(trickle(Duration::from_millis(600), 1)).await;
        assert_eq!(err.map(|e| e.code), Some(ErrorCode::RequestTimeout));
    }

    #[tokio::test]
    async fn a_trickle_is_cut_once_the_grace_has_passed() {
        let err = outcome(trickle(Duration::from_millis(50), 100)).await;
        assert_eq!(err.map(|e| e.code), Some(ErrorCode::RequestTimeout));
    }

    #[tokio::test]
    async fn a_steady_body_passes() {
        assert!(outcome(trickle(Duration::ZERO, 2000)).await.is_none());
    }
}
