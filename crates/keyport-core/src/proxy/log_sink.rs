//! The [`OutcomeSink`] that writes each request to the SQLite request log,
//! and to the `tracing` log as [`TracingSink`] does.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::outcome::{OutcomeEnd, OutcomeSink, RequestOutcome, TracingSink};
use crate::requestlog::{ErrorKind, PriceTable, Recorder, RequestRecord, UsageNote};

/// Sends request outcomes to the request log. Recording never blocks: the
/// log's queue drops and counts rows when its writer falls behind. The
/// request line goes to `tracing` at debug level, because the log row
/// contains the same facts.
pub struct RequestLogSink {
    recorder: Recorder,
    prices: Arc<PriceTable>,
}

impl RequestLogSink {
    pub fn new(recorder: Recorder, prices: Arc<PriceTable>) -> Self {
        Self { recorder, prices }
    }
}

impl OutcomeSink for RequestLogSink {
    fn record(&self, outcome: &RequestOutcome) {
        TracingSink::record_debug(outcome);
        self.recorder.record(to_record(outcome, &self.prices));
    }

    fn body_capture_limit(&self) -> Option<usize> {
        self.recorder.body_capture_limit()
    }
}

/// Converts an outcome into a log row, pricing its usage.
pub fn to_record(outcome: &RequestOutcome, prices: &PriceTable) -> RequestRecord {
    let mut record = RequestRecord::new(
        DateTime::<Utc>::from(outcome.started_at),
        &outcome.provider,
        outcome.method.as_str(),
        &outcome.path,
    );
    record.token_name = outcome.token_name.as_deref().map(str::to_string);
    record.key_label = outcome.key_label.clone();
    record.origin = outcome.origin.clone();
    record.model = outcome.model.clone();
    record.streamed = outcome.streamed;
    record.status = outcome.status.map(|status| status.as_u16());
    record.latency_ms = millis(outcome.duration);
    record.ttfb_ms = outcome.headers_latency.map(millis);
    record.request_bytes = outcome.request_bytes;
    record.response_bytes = outcome.response_bytes;
    record.upstream_request_id = outcome.upstream_request_id.clone();
    record.request_body = outcome.request_body.clone();
    record.response_body = outcome.response_body.clone();
    if let Some(usage) = &outcome.usage {
        record.apply_usage(usage, prices);
    }
    record.error_kind = error_kind(outcome);
    record
}

/// Returns the log's error kind: the proxy's own error code, else how the
/// response ended when it did not end well.
fn error_kind(outcome: &RequestOutcome) -> Option<ErrorKind> {
    if let Some(code) = outcome.error_code {
        return Some(ErrorKind::new(code));
    }
    let incomplete = outcome
        .usage
        .as_ref()
        .is_some_and(|usage| usage.note == Some(UsageNote::ResponseIncomplete));
    match outcome.end {
        OutcomeEnd::Completed if outcome.streamed && incomplete => {
            Some(ErrorKind::INCOMPLETE_STREAM)
        }
        OutcomeEnd::Completed | OutcomeEnd::Rejected => None,
        OutcomeEnd::ClientCancelled => Some(ErrorKind::CLIENT_CANCELLED),
        OutcomeEnd::UpstreamIdleTimeout => Some(ErrorKind::UPSTREAM_IDLE_TIMEOUT),
        OutcomeEnd::UpstreamBodyFailed if outcome.streamed => Some(ErrorKind::INCOMPLETE_STREAM),
        OutcomeEnd::UpstreamBodyFailed => Some(ErrorKind::UPSTREAM_FAILED),
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
