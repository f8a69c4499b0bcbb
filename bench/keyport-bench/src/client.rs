//! The streaming client: opens Server-Sent Events streams, timestamps
//! every body chunk and every stamped event, and reports what it saw.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::api::SENT_MARKER;
use crate::error::BenchError;
use crate::mock::now_micros;

/// Time limit for one stream, so a stuck target cannot hang the run.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// One request, sent the same way by every worker.
#[derive(Debug, Clone)]
pub struct StreamCall {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl StreamCall {
    pub fn new(
        url: String,
        headers: &[(&'static str, String)],
        body: String,
    ) -> Result<Self, BenchError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|_| BenchError::Parse {
                what: "a header value",
                text: name.to_string(),
            })?;
            map.insert(HeaderName::from_static(name), value);
        }
        Ok(Self {
            url,
            headers: map,
            body: Bytes::from(body),
        })
    }
}

/// The measurements of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamSample {
    /// From sending the request to the first body chunk.
    pub ttfb: Option<Duration>,
    /// From sending the request to the end of the body.
    pub total: Duration,
    /// Per stamped event: arrival minus send time on the realtime clock,
    /// in microseconds.
    pub delays_us: Vec<i64>,
    pub first_event: Option<Instant>,
    pub last_event: Option<Instant>,
    pub events: usize,
    /// Body chunks received, one per read that returned data.
    pub chunks: usize,
    pub error: Option<String>,
}

impl StreamSample {
    /// Events per second between the first and the last stamped event.
    pub fn event_rate(&self) -> Option<f64> {
        let span = self.last_event?.duration_since(self.first_event?);
        (self.events > 1 && !span.is_zero()).then(|| (self.events - 1) as f64 / span.as_secs_f64())
    }
}

/// How long each worker keeps opening streams.
#[derive(Debug, Clone, Copy)]
pub enum Workload {
    /// This many streams per worker, one after the other.
    Count(usize),
    /// New streams until this much time has passed.
    For(Duration),
}

/// Streams from `workers` concurrent workers and returns every sample and
/// the wall time of the whole run.
pub async fn run(
    call: Arc<StreamCall>,
    workers: usize,
    workload: Workload,
) -> Result<(Vec<StreamSample>, Duration), BenchError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(workers)
        .timeout(STREAM_TIMEOUT)
        .build()
        .map_err(|error| BenchError::command("the streaming client", error.to_string()))?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let client = client.clone();
        let call = call.clone();
        tasks.spawn(async move {
            let mut samples = Vec::new();
            match workload {
                Workload::Count(count) => {
                    for _ in 0..count {
                        samples.push(stream_once(&client, &call).await);
                    }
                }
                Workload::For(duration) => {
                    while started.elapsed() < duration {
                        samples.push(stream_once(&client, &call).await);
                    }
                }
            }
            samples
        });
    }
    let mut samples = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let worker_samples = joined.map_err(|error| BenchError::Request {
            url: call.url.clone(),
            message: format!("a streaming worker failed: {error}"),
        })?;
        samples.extend(worker_samples);
    }
    Ok((samples, started.elapsed()))
}

async fn stream_once(client: &reqwest::Client, call: &StreamCall) -> StreamSample {
    let mut sample = StreamSample::default();
    let started = Instant::now();
    let request = client
        .post(&call.url)
        .headers(call.headers.clone())
        .body(call.body.clone());
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            sample.error = Some(error.without_url().to_string());
            return sample;
        }
    };
    if !response.status().is_success() {
        sample.error = Some(format!("status {}", response.status()));
        return sample;
    }

    let mut scanner = StampScanner::default();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                sample.error = Some(error.without_url().to_string());
                break;
            }
        };
        let arrived = Instant::now();
        let arrived_us = now_micros() as i64;
        sample.chunks += 1;
        sample.ttfb.get_or_insert_with(|| arrived - started);
        for sent_us in scanner.push(&chunk) {
            sample.delays_us.push(arrived_us - sent_us as i64);
            sample.first_event.get_or_insert(arrived);
            sample.last_event = Some(arrived);
            sample.events += 1;
        }
    }
    sample.total = started.elapsed();
    sample
}

/// Finds the send times of stamped events in a byte stream whose chunks
/// may split an event, or the marker itself, anywhere.
#[derive(Debug, Default)]
pub struct StampScanner {
    pending: Vec<u8>,
}

impl StampScanner {
    /// Adds a chunk and returns the send times of the stamps it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u64> {
        self.pending.extend_from_slice(chunk);
        let mut stamps = Vec::new();
        let mut position = 0;
        let mut keep_from = None;
        while let Some(found) = find(&self.pending[position..], SENT_MARKER) {
            let digits_start = position + found + SENT_MARKER.len();
            let digits = self.pending[digits_start..]
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .count();
            let digits_end = digits_start + digits;
            if digits_end == self.pending.len() {
                // The number may go on in the next chunk.
                keep_from = Some(position + found);
                break;
            }
            let text = std::str::from_utf8(&self.pending[digits_start..digits_end]).ok();
            if let Some(sent) = text.and_then(|text| text.parse().ok()) {
                stamps.push(sent);
            }
            position = digits_end;
        }
        // Keep a possible start of the marker at the end of the buffer.
        let keep_from = keep_from.unwrap_or_else(|| {
            let tail = SENT_MARKER.len() - 1;
            position.max(self.pending.len().saturating_sub(tail))
        });
        self.pending.drain(..keep_from);
        stamps
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_finds_stamps_in_one_chunk() {
        let mut scanner = StampScanner::default();
        let stamps =
            scanner.push(b"data: {\"bench_sent_us\":12}\n\ndata: {\"bench_sent_us\":34}\n\n");
        assert_eq!(stamps, [12, 34]);
    }

    #[test]
    fn scanner_joins_stamps_split_anywhere() {
        let text =
            b"data: {\"a\":1,\"bench_sent_us\":1234567}\n\ndata: {\"bench_sent_us\":89}\r\n\r\n";
        for split in 1..text.len() {
            let mut scanner = StampScanner::default();
            let mut stamps = scanner.push(&text[..split]);
            stamps.extend(scanner.push(&text[split..]));
            assert_eq!(stamps, [1234567, 89], "split at {split}");
        }
    }

    #[test]
    fn scanner_ignores_text_without_stamps() {
        let mut scanner = StampScanner::default();
        assert!(scanner.push(b"data: [DONE]\n\n").is_empty());
        assert!(scanner.pending.len() < SENT_MARKER.len());
    }

    #[test]
    fn event_rate_spans_first_to_last_event() {
        let start = Instant::now();
        let sample = StreamSample {
            first_event: Some(start),
            last_event: Some(start + Duration::from_secs(1)),
            events: 11,
            ..StreamSample::default()
        };
        let rate = sample.event_rate().unwrap();
        assert!((rate - 10.0).abs() < 1e-9);
    }
}
