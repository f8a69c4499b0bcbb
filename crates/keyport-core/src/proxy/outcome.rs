//! Request outcomes, handed to an [`OutcomeSink`] once the response body
//! has ended, failed or been abandoned by the client.
//!
//! The default sink writes the one log line per request. A request-log
//! store can implement [`OutcomeSink`] and be passed to
//! [`super::ProxyState::with_outcome_sink`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode};

use super::activity::{InFlight, ProxyActivity};
use crate::requestlog::{
    inspect_request, CapturedBody, Usage, UsageFormat, UsageTap, REQUEST_INSPECT_LIMIT,
};
use crate::secret::{ExposeSecret, SecretString};

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
    /// The request's `Origin` header, for browser clients.
    pub origin: Option<String>,
    /// The model named in the request body or, for Gemini, in the path.
    pub model: Option<String>,
    /// Whether the response was a stream: Server-Sent Events, a request
    /// with `"stream": true`, or Gemini's `:streamGenerateContent`.
    pub streamed: bool,
    /// Token usage read from the response body as it passed to the
    /// client; None when no upstream response body was read.
    pub usage: Option<Usage>,
    /// The provider's id for the request (`x-request-id` or `request-id`).
    pub upstream_request_id: Option<String>,
    /// Redacted start of the request body, only with body capture on.
    pub request_body: Option<CapturedBody>,
    /// Redacted start of the response body, only with body capture on.
    pub response_body: Option<CapturedBody>,
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

    /// Bytes of each body to keep in [`RequestOutcome::request_body`] and
    /// [`RequestOutcome::response_body`]; None keeps no bodies.
    fn body_capture_limit(&self) -> Option<usize> {
        None
    }
}

/// Writes one `tracing` line per request at info level.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl OutcomeSink for TracingSink {
    fn record(&self, outcome: &RequestOutcome) {
        request_line!(tracing::Level::INFO, outcome);
    }
}

impl TracingSink {
    /// Writes the request line at debug level, for sinks that store the
    /// same facts elsewhere. tracing-subscriber's formatter escapes the
    /// line character by character, about 15,000 instructions per request.
    pub fn record_debug(outcome: &RequestOutcome) {
        request_line!(tracing::Level::DEBUG, outcome);
    }
}

/// Emits the request line at `$level`, which `tracing` needs as a constant.
macro_rules! request_line {
    ($level:expr, $outcome:expr) => {{
        let outcome: &RequestOutcome = $outcome;
        tracing::event!(
            $level,
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
    }};
}
use request_line;

/// Builds a request's outcome as it progresses and hands it to the sink
/// once, unless [`OutcomeRecorder::discard`] drops it. Dropping it unfinished records the request as cancelled
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
    /// First bytes of the request body, for the model name and body capture.
    request_prefix: Arc<RequestPrefix>,
    usage_format: UsageFormat,
    /// Reads usage from the response body; created with the response headers.
    tap: Option<UsageTap>,
    /// The injected key, kept only while body capture is on, so captured
    /// bodies that echo it (an upstream quoting its request URL, say) can
    /// be cleaned even where its shape defeats the pattern-based redaction.
    captured_secret: Option<SecretString>,
    /// Counts the request as open until the recorder is dropped, which is
    /// after the response body has ended.
    in_flight: InFlight,
}

/// The first bytes of a request body, copied as the body streams upstream.
pub(crate) struct RequestPrefix {
    bytes: Mutex<Vec<u8>>,
    limit: usize,
}

impl RequestPrefix {
    fn new(limit: usize) -> Self {
        Self {
            bytes: Mutex::new(Vec::new()),
            limit,
        }
    }

    /// Copies as much of `chunk` as still fits under the limit.
    pub(crate) fn push(&self, chunk: &[u8]) {
        let mut bytes = match self.bytes.lock() {
            Ok(bytes) => bytes,
            Err(poisoned) => poisoned.into_inner(),
        };
        let room = self.limit.saturating_sub(bytes.len());
        if room > 0 {
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }

    fn take(&self) -> Vec<u8> {
        match self.bytes.lock() {
            Ok(mut bytes) => std::mem::take(&mut *bytes),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

impl OutcomeRecorder {
    pub(crate) fn start(
        sink: Arc<dyn OutcomeSink>,
        in_flight: InFlight,
        provider: &str,
        method: &Method,
        path: &str,
        usage_format: UsageFormat,
    ) -> Self {
        let prefix_limit = sink
            .body_capture_limit()
            .map_or(REQUEST_INSPECT_LIMIT, |limit| {
                limit.max(REQUEST_INSPECT_LIMIT)
            });
        Self {
            outcome: Some(RequestOutcome {
                provider: provider.to_string(),
                method: method.clone(),
                path: path.to_string(),
                token_name: None,
                key_label: None,
                origin: None,
                model: None,
                streamed: false,
                usage: None,
                upstream_request_id: None,
                request_body: None,
                response_body: None,
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
            request_prefix: Arc::new(RequestPrefix::new(prefix_limit)),
            usage_format,
            tap: None,
            captured_secret: None,
            in_flight,
        }
    }

    /// Makes sure `key` never appears in captured bodies.
    pub(crate) fn redact_in_bodies(&mut self, key: &SecretString) {
        if self.sink.body_capture_limit().is_some() {
            self.captured_secret = Some(key.clone());
        }
    }

    /// Copy of the request body's first bytes that the body stream fills.
    pub(crate) fn request_prefix(&self) -> Arc<RequestPrefix> {
        self.request_prefix.clone()
    }

    pub(crate) fn set_origin(&mut self, origin: Option<String>) {
        if let Some(outcome) = &mut self.outcome {
            outcome.origin = origin;
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

    /// Notes the upstream response's status, request id and time to
    /// headers, and starts reading usage from its body.
    pub(crate) fn set_upstream_response(&mut self, status: StatusCode, headers: &HeaderMap) {
        let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
        let content_type = header(CONTENT_TYPE);
        let content_length = header(CONTENT_LENGTH).and_then(|text| text.parse::<u64>().ok());
        let streamed = content_type.is_some_and(|value| value.starts_with("text/event-stream"));

        let capture_limit = self.sink.body_capture_limit();
        self.tap = Some(match capture_limit {
            Some(limit) => UsageTap::with_body_capture(
                self.usage_format,
                content_type,
                header(CONTENT_ENCODING),
                limit,
            ),
            None => UsageTap::new(self.usage_format, content_type, header(CONTENT_ENCODING)),
        });
        if let Some(outcome) = &mut self.outcome {
            outcome.streamed = streamed;
            outcome.upstream_request_id = header(http::HeaderName::from_static("x-request-id"))
                .or_else(|| header(http::HeaderName::from_static("request-id")))
                .map(str::to_string);
        }
        self.set_response(status, content_length);
    }

    /// Reads the usage of a WebSocket session from the provider's frames,
    /// for providers that speak the OpenAI Realtime API.
    pub(crate) fn read_websocket_usage(&mut self, upstream_headers: &HeaderMap) {
        if self.usage_format != UsageFormat::OpenAi {
            return;
        }
        // The extensions may come on several header lines.
        let extensions: Vec<&str> = upstream_headers
            .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let extensions = extensions.join(",");
        self.tap = Some(UsageTap::websocket(
            Some(extensions.as_str()).filter(|text| !text.is_empty()),
        ));
    }

    /// Notes the response status and the time to headers, without reading
    /// usage from the body.
    pub(crate) fn set_response(&mut self, status: StatusCode, content_length: Option<u64>) {
        self.in_flight.responded();
        self.expected_response_bytes = content_length;
        let elapsed = self.started.elapsed();
        if let Some(outcome) = &mut self.outcome {
            outcome.status = Some(status);
            outcome.headers_latency = Some(elapsed);
        }
    }

    /// Returns the proxy activity that this request stamps.
    pub(crate) fn activity(&self) -> Arc<ProxyActivity> {
        self.in_flight.activity()
    }

    /// Counts a response chunk, stamps the proxy's activity and passes a
    /// view of the chunk to the usage tap.
    pub(crate) fn observe_response_chunk(&mut self, chunk: &[u8]) {
        self.in_flight.progressed();
        if let Some(outcome) = &mut self.outcome {
            outcome.response_bytes += chunk.len() as u64;
        }
        if let Some(tap) = &mut self.tap {
            tap.push(chunk);
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
        self.add_body_facts(&mut outcome);
        self.sink.record(&outcome);
    }

    /// Fills in what the request and response bodies showed: model, stream
    /// flag, usage and, with body capture on, the redacted bodies.
    fn add_body_facts(&mut self, outcome: &mut RequestOutcome) {
        let prefix = self.request_prefix.take();
        let info = inspect_request(&outcome.path, &prefix);
        outcome.model = info.model;
        outcome.streamed |=
            info.stream == Some(true) || outcome.path.ends_with(":streamGenerateContent");

        let capture_limit = self.sink.body_capture_limit();
        if let Some(limit) = capture_limit {
            if !prefix.is_empty() {
                outcome.request_body = Some(CapturedBody::from_bytes(
                    &prefix,
                    limit,
                    outcome.request_bytes,
                ));
            }
        }
        if let Some(tap) = self.tap.take() {
            let (usage, response_body) = tap.finish_with_body();
            outcome.usage = Some(usage);
            outcome.response_body = response_body;
        }
        if let Some(secret) = self.captured_secret.take() {
            for body in [&mut outcome.request_body, &mut outcome.response_body] {
                if let Some(captured) = body.as_mut() {
                    *captured = captured.without_secret(secret.expose_secret());
                }
            }
        }
    }

    /// Replaces the sink with one built around it, such as a sink that also
    /// counts usage for a token's limits.
    pub(crate) fn wrap_sink(
        &mut self,
        wrap: impl FnOnce(Arc<dyn OutcomeSink>) -> Arc<dyn OutcomeSink>,
    ) {
        self.sink = wrap(self.sink.clone());
    }

    /// Drops the recorder without recording anything.
    pub(crate) fn discard(mut self) {
        self.outcome = None;
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
