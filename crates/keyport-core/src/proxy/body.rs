//! Request and response bodies, streamed chunk by chunk and never
//! collected whole.
//!
//! The request body is counted against `max_request_body_bytes` while it
//! streams upstream. The response body is checked against the idle timeout
//! between chunks and feeds the request's outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use super::outcome::{OutcomeEnd, OutcomeRecorder, RequestPrefix};

/// Maximum bytes read and discarded from a request the proxy rejects, and
/// maximum time spent on it. Reading the rest of the body lets the client
/// receive the error: closing a socket with unread input makes the kernel
/// send a reset that can destroy the response in flight.
const DRAIN_MAX_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_MAX_TIME: Duration = Duration::from_secs(2);

/// Reason the request body stream stopped early. The handler reads it after
/// a failed upstream call to tell a proxy-side rejection from a network error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFault {
    TooLarge,
    ClientFailed,
}

/// Error that ends the request body stream; reqwest then aborts the
/// upstream request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestBodyError {
    #[error("request body exceeds the proxy limit")]
    TooLarge,
    #[error("reading the request body from the client failed")]
    Client(#[source] axum::Error),
}

/// Reads and discards what is left of a request body, within the drain
/// limits, and returns the number of bytes read. The first bytes go to
/// `prefix` when there is one, so a rejected request's log row still names
/// its model.
pub(crate) async fn drain(body: Body, prefix: Option<&RequestPrefix>) -> u64 {
    drain_stream(&mut body.into_data_stream(), prefix).await
}

async fn drain_stream(stream: &mut BodyDataStream, prefix: Option<&RequestPrefix>) -> u64 {
    let deadline = Instant::now() + DRAIN_MAX_TIME;
    let mut drained = 0u64;
    while drained <= DRAIN_MAX_BYTES {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                if let Some(prefix) = prefix {
                    prefix.push(&chunk);
                }
                drained += chunk.len() as u64;
            }
            Ok(Some(Err(_)) | None) | Err(_) => break,
        }
    }
    drained
}

/// Wraps the client's body for reqwest, enforcing `limit`. Returns None
/// for a request without a body, so none is sent upstream either.
pub(crate) fn limited_request_body(
    body: Body,
    limit: u64,
    counter: Arc<AtomicU64>,
    prefix: Arc<RequestPrefix>,
    fault: Arc<OnceLock<BodyFault>>,
) -> Option<reqwest::Body> {
    if http_body::Body::is_end_stream(&body) {
        return None;
    }
    struct State {
        inner: BodyDataStream,
        seen: u64,
        done: bool,
    }
    let state = State {
        inner: body.into_data_stream(),
        seen: 0,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, move |mut state| {
        let counter = counter.clone();
        let prefix = prefix.clone();
        let fault = fault.clone();
        async move {
            if state.done {
                return None;
            }
            match state.inner.next().await {
                None => None,
                Some(Ok(chunk)) => {
                    state.seen += chunk.len() as u64;
                    counter.store(state.seen, Ordering::Relaxed);
                    prefix.push(&chunk);
                    if state.seen > limit {
                        let _ = fault.set(BodyFault::TooLarge);
                        state.done = true;
                        let drained = drain_stream(&mut state.inner, None).await;
                        counter.fetch_add(drained, Ordering::Relaxed);
                        return Some((Err(RequestBodyError::TooLarge), state));
                    }
                    Some((Ok(chunk), state))
                }
                Some(Err(error)) => {
                    let _ = fault.set(BodyFault::ClientFailed);
                    state.done = true;
                    Some((Err(RequestBodyError::Client(error)), state))
                }
            }
        }
    });
    Some(reqwest::Body::wrap_stream(stream))
}

/// Error that ends the client's response early. hyper then closes the
/// connection without the final chunk, so the client sees truncation.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResponseBodyError {
    #[error("upstream idle timeout")]
    IdleTimeout,
    #[error("upstream response body failed")]
    Upstream,
}

/// The provider's response body on its way to the client. Each upstream
/// chunk is passed on as it arrives, unchanged.
pub(crate) struct ResponseStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    recorder: OutcomeRecorder,
    done: bool,
    /// The request's span: hyper polls the body after the handler has
    /// returned, outside it.
    span: tracing::Span,
}

impl ResponseStream {
    pub(crate) fn new(
        response: reqwest::Response,
        idle_timeout: Duration,
        recorder: OutcomeRecorder,
    ) -> Self {
        Self {
            inner: Box::pin(response.bytes_stream()),
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            recorder,
            done: false,
            span: tracing::Span::current(),
        }
    }

    fn fail(
        &mut self,
        end: OutcomeEnd,
        error: ResponseBodyError,
    ) -> Poll<Option<<Self as Stream>::Item>> {
        self.done = true;
        self.recorder.finish(end);
        Poll::Ready(Some(Err(error)))
    }
}

impl Stream for ResponseStream {
    type Item = Result<Bytes, ResponseBodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        // Entering the span clones it and looks it up in the subscriber's
        // registry, about 1,700 instructions per chunk. Only the paths that
        // log or end the request enter it, not every chunk.
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.recorder.observe_response_chunk(&chunk);
                let deadline = Instant::now() + this.idle_timeout;
                this.idle.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => {
                let _entered = this.span.clone().entered();
                let error = error.without_url();
                tracing::warn!(%error, "upstream response body failed; ending the client response");
                this.fail(OutcomeEnd::UpstreamBodyFailed, ResponseBodyError::Upstream)
            }
            Poll::Ready(None) => {
                let _entered = this.span.clone().entered();
                this.done = true;
                this.recorder.finish(OutcomeEnd::Completed);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let _entered = this.span.clone().entered();
                tracing::warn!(
                    idle_timeout_secs = this.idle_timeout.as_secs(),
                    "upstream idle timeout; ending the client response"
                );
                this.fail(
                    OutcomeEnd::UpstreamIdleTimeout,
                    ResponseBodyError::IdleTimeout,
                )
            }
        }
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        // The recorder logs a cancelled request when it drops; do that
        // inside the request's span too.
        let _entered = self.span.clone().entered();
        self.recorder.finish_on_drop();
    }
}

/// Converts the response stream into an axum body.
pub(crate) fn response_body(stream: ResponseStream) -> Body {
    Body::from_stream(stream)
}
