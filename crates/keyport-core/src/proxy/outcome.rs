//! Request outcomes, handed to an [`OutcomeSink`] once the response body
//! has ended, failed or been abandoned by the client.
//!
//! The default sink writes the one log line per request. A request-log
//! store can implement [`OutcomeSink`] and be passed to
//! [`super::ProxyState::with_outcome_sink`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{Method, StatusCode};

/// One finished request. It contains no header, query, body or credential.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    /// The `/llm/{provider}` route segment as sent; it may name no provider.
    pub provider: String,
    pub method: Method,
    /// Request path without the query, which can carry credentials.
    pub path: String,
    /// Name of the client token, when one was presented and valid.
    pub token_name: Option<Arc<str>>,
    /// The `x-keyport-key` label, when the client chose a key.
    pub key_label: Option<String>,
    /// Status sent to the client; None if the client left before one was.
    pub status: Option<StatusCode>,
    /// The proxy's error code, when the proxy responded with its own error.
    pub error_code: Option<&'static str>,
    /// Request body bytes read from the client.
    pub request_bytes: u64,
    /// Response body bytes received from the provider.
    pub response_bytes: u64,
    pub started_at: SystemTime,
    /// Time from the request's arrival to the response headers.
    pub headers_latency: Option<Duration>,
    /// Time from the request's arrival to the end of the response body.
    pub duration: Duration,
    pub end: OutcomeEnd,
}

/// End state of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeEnd {
    /// The provider's response was delivered whole.
    Completed,
    /// The proxy responded with an error of its own.
    Rejected,
    /// The client closed the connection first.
    ClientCancelled,
    /// The provider sent nothing for longer than the idle timeout.
    UpstreamIdleTimeout,
    /// The provider's response body broke off.
    UpstreamBodyFailed,
}

impl OutcomeEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeEnd::Completed => "completed",
            OutcomeEnd::Rejected => "rejected",
            OutcomeEnd::ClientCancelled => "client_cancelled",
            OutcomeEnd::UpstreamIdleTimeout => "upstream_idle_timeout",
            OutcomeEnd::UpstreamBodyFailed => "upstream_body_failed",
        }
    }
}

/// Receives every [`RequestOutcome`]. Called on the async runtime, so it
/// must hand slow work (such as database writes) to another task.
pub trait OutcomeSink: Send + Sync + 'static {
    fn record(&self, outcome: &RequestOutcome);
}

/// Writes one `tracing` line per request at info level.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl OutcomeSink for TracingSink {
    fn record(&self, outcome: &RequestOutcome) {
        tracing::info!(
            provider = %outcome.provider,
            method = %outcome.method,
            path = %outcome.path,
            status = outcome.status.map_or(0, |status| status.as_u16()),
            latency_ms = outcome.duration.as_millis() as u64,
            headers_ms = outcome.headers_latency.map(|latency| latency.as_millis() as u64),
            request_bytes = outcome.request_bytes,
            response_bytes = outcome.response_bytes,
            token = %outcome.token_name.as_deref().unwrap_or("-"),
            key_label = outcome.key_label.as_deref().map(tracing::field::display),
            error_code = outcome.error_code.map(tracing::field::display),
            end = %outcome.end.as_str(),
            "request"
        );
    }
}

/// Builds a request's outcome as it progresses and hands it to the sink
/// exactly once. Dropping it unfinished records the request as cancelled
/// by the client, which is what a dropped handler future or response body
/// means.
pub(crate) struct OutcomeRecorder {
    outcome: Option<RequestOutcome>,
    started: Instant,
    request_bytes: Arc<AtomicU64>,
    /// Content-Length of the response body, to tell a body that hyper
    /// stopped polling after its last byte from one the client abandoned.
    expected_response_bytes: Option<u64>,
    sink: Arc<dyn OutcomeSink>,
}

impl OutcomeRecorder {
    pub(crate) fn start(
        sink: Arc<dyn OutcomeSink>,
        provider: &str,
        method: &Method,
        path: &str,
    ) -> Self {
        Self {
            outcome: Some(RequestOutcome {
                provider: provider.to_string(),
                method: method.clone(),
                path: path.to_string(),
                token_name: None,
                key_label: None,
                status: None,
                error_code: None,
                request_bytes: 0,
                response_bytes: 0,
                started_at: SystemTime::now(),
                headers_latency: None,
                duration: Duration::ZERO,
                end: OutcomeEnd::ClientCancelled,
            }),
            started: Instant::now(),
            request_bytes: Arc::new(AtomicU64::new(0)),
            expected_response_bytes: None,
            sink,
        }
    }

    /// Counter the request body stream adds to.
    pub(crate) fn request_bytes(&self) -> Arc<AtomicU64> {
        self.request_bytes.clone()
    }

    /// Counts request bytes read outside the upstream body stream, such as
    /// the rest of a rejected request.
    pub(crate) fn add_request_bytes(&self, count: u64) {
        self.request_bytes.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn set_client(&mut self, token_name: Option<Arc<str>>, key_label: Option<String>) {
        if let Some(outcome) = &mut self.outcome {
            outcome.token_name = token_name;
            outcome.key_label = key_label;
        }
    }

    /// Notes the response status and the time to headers.
    pub(crate) fn set_response(&mut self, status: StatusCode, content_length: Option<u64>) {
        self.expected_response_bytes = content_length;
        let elapsed = self.started.elapsed();
        if let Some(outcome) = &mut self.outcome {
            outcome.status = Some(status);
            outcome.headers_latency = Some(elapsed);
        }
    }

    pub(crate) fn add_response_bytes(&mut self, count: u64) {
        if let Some(outcome) = &mut self.outcome {
            outcome.response_bytes += count;
        }
    }

    /// Records a proxy-made error response.
    pub(crate) fn reject(mut self, status: StatusCode, code: &'static str) {
        self.set_response(status, None);
        if let Some(outcome) = &mut self.outcome {
            outcome.error_code = Some(code);
        }
        self.finish(OutcomeEnd::Rejected);
    }

    pub(crate) fn finish(&mut self, end: OutcomeEnd) {
        let Some(mut outcome) = self.outcome.take() else {
            return;
        };
        outcome.end = end;
        outcome.duration = self.started.elapsed();
        outcome.request_bytes = self.request_bytes.load(Ordering::Relaxed);
        self.sink.record(&outcome);
    }

    /// Finishes a recorder that is being dropped before its end was known:
    /// a complete body that hyper stopped polling, or a client that left.
    pub(crate) fn finish_on_drop(&mut self) {
        let Some(outcome) = &self.outcome else {
            return;
        };
        let complete = self.expected_response_bytes == Some(outcome.response_bytes);
        self.finish(if complete {
            OutcomeEnd::Completed
        } else {
            OutcomeEnd::ClientCancelled
        });
    }
}

impl Drop for OutcomeRecorder {
    fn drop(&mut self) {
        self.finish_on_drop();
    }
}
