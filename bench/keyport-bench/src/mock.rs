//! The mock provider: OpenAI chat completions, Anthropic messages and
//! Gemini generateContent, as JSON or as Server-Sent Events.
//!
//! Query parameters shape each response, so the same request works
//! directly, through the floor and through Keyport:
//!
//! | parameter | meaning | default |
//! | --- | --- | --- |
//! | `size` | JSON response body size in bytes | 600 |
//! | `events` | stream this many content events instead of JSON | 0 |
//! | `interval_us` | pause between events; event k leaves at start + k × interval | 0 |
//! | `event_bytes` | text per event | 24 |
//! | `burst` | events written together in one frame; groups are paced by `interval_us` | 1 |
//!
//! Every content event carries its send time (see [`SENT_MARKER`]). The
//! request body is read whole and discarded before the response starts,
//! as a provider does. JSON bodies are built once per size and cached.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::api::{Api, SENT_MARKER};

const DEFAULT_SIZE: usize = 600;
const DEFAULT_EVENT_BYTES: usize = 24;

/// Upper bounds that keep a mistyped parameter from tying up the machine.
const MAX_SIZE: usize = 64 * 1024 * 1024;
const MAX_EVENTS: u32 = 100_000;
const MAX_EVENT_BYTES: usize = 64 * 1024;
const MAX_BURST: u32 = 1_000;
const MAX_INTERVAL: Duration = Duration::from_secs(10);

/// Pause after a failed accept (such as running out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Fixed token counts in every usage block, so the proxy's usage reader
/// has something to find.
const PROMPT_TOKENS: u32 = 12;

type MockBody = UnsyncBoxBody<Bytes, Infallible>;

/// The response shape that a request's query parameters select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockParams {
    pub size: usize,
    pub events: u32,
    pub interval: Duration,
    pub event_bytes: usize,
    pub burst: u32,
}

impl Default for MockParams {
    fn default() -> Self {
        Self {
            size: DEFAULT_SIZE,
            events: 0,
            interval: Duration::ZERO,
            event_bytes: DEFAULT_EVENT_BYTES,
            burst: 1,
        }
    }
}

impl MockParams {
    /// Reads the parameters from a query string; unknown parameters, such
    /// as Gemini's `alt=sse`, are ignored.
    pub fn from_query(query: Option<&str>) -> Result<Self, String> {
        let mut params = Self::default();
        for pair in query.unwrap_or_default().split('&') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("query parameter {name}={value:?} is not a whole number"))
            };
            match name {
                "size" => params.size = bounded(number()?, MAX_SIZE as u64, name)? as usize,
                "events" => params.events = bounded(number()?, MAX_EVENTS.into(), name)? as u32,
                "interval_us" => {
                    let limit = MAX_INTERVAL.as_micros() as u64;
                    params.interval = Duration::from_micros(bounded(number()?, limit, name)?);
                }
                "burst" => params.burst = bounded(number()?, MAX_BURST.into(), name)?.max(1) as u32,
                "event_bytes" => {
                    params.event_bytes = bounded(number()?, MAX_EVENT_BYTES as u64, name)? as usize
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

fn bounded(value: u64, max: u64, name: &str) -> Result<u64, String> {
    if value > max {
        return Err(format!(
            "query parameter {name}={value} is above the maximum {max}"
        ));
    }
    Ok(value)
}

/// JSON bodies by API and size.
#[derive(Default)]
struct JsonCache {
    bodies: Mutex<HashMap<(Api, usize), Bytes>>,
}

impl JsonCache {
    fn get(&self, api: Api, size: usize) -> Bytes {
        let mut bodies = match self.bodies.lock() {
            Ok(bodies) => bodies,
            Err(poisoned) => poisoned.into_inner(),
        };
        bodies
            .entry((api, size))
            .or_insert_with(|| Bytes::from(json_body(api, size)))
            .clone()
    }
}

/// Serves the mock on `listener` until the process ends.
pub async fn serve(listener: TcpListener) {
    let cache = Arc::new(JsonCache::default());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        // Events leave as soon as they are written, as from a real provider.
        let _ = stream.set_nodelay(true);
        let cache = cache.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(cache.clone(), request));
            // A client that disconnects mid-response ends the connection
            // with an error; the benchmark's client counts those itself.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(
    cache: Arc<JsonCache>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    let Some(api) = Api::from_mock_path(request.uri().path()) else {
        return Ok(plain(StatusCode::NOT_FOUND, "unknown path"));
    };
    let params = match MockParams::from_query(request.uri().query()) {
        Ok(params) => params,
        Err(message) => return Ok(plain(StatusCode::BAD_REQUEST, &message)),
    };
    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return Ok(plain(StatusCode::BAD_REQUEST, "request body failed"));
        }
    }

    let response = if params.events > 0 {
        let content_type = "text/event-stream";
        let body = StreamBody::new(event_stream(api, params)).boxed_unsync();
        with_type(Response::new(body), content_type)
    } else {
        let body = Full::new(cache.get(api, params.size)).boxed_unsync();
        with_type(Response::new(body), "application/json")
    };
    Ok(response)
}

fn with_type(mut response: Response<MockBody>, content_type: &'static str) -> Response<MockBody> {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert("x-request-id", http::HeaderValue::from_static("req_bench"));
    response
}

fn plain(status: StatusCode, message: &str) -> Response<MockBody> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_string())).boxed_unsync());
    *response.status_mut() = status;
    response
}

/// Frames of a Server-Sent Events response: an opening for Anthropic
/// before the first event, the paced content events, and the closing
/// usage events (Gemini's last content event is its closing).
fn event_stream(
    api: Api,
    params: MockParams,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    let state = EventState {
        api,
        params,
        text: filler(params.event_bytes),
        next: 0,
        start: Instant::now(),
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let frame = state.next_frame().await?;
        Some((Ok(Frame::data(frame)), state))
    })
}

struct EventState {
    api: Api,
    params: MockParams,
    text: String,
    next: u32,
    start: Instant,
}

impl EventState {
    async fn next_frame(&mut self) -> Option<Bytes> {
        let events = self.params.events;
        if self.next > events {
            return None;
        }
        let index = self.next;
        self.next += 1;
        if index == events {
            return closing(self.api, events).map(Bytes::from);
        }

        // Deadlines count from the start, so a late event does not delay
        // the ones after it. A burst of events shares one deadline and one
        // frame, which hyper sends in one write.
        let burst = self.params.burst.max(1);
        let group = index / burst;
        if group > 0 && !self.params.interval.is_zero() {
            tokio::time::sleep_until(self.start + self.params.interval * group).await;
        }
        let mut frame = String::new();
        if index == 0 {
            frame.push_str(opening(self.api));
        }
        let group_end = ((group + 1) * burst).min(events);
        let sent_us = now_micros();
        for event in index..group_end {
            let last = event + 1 == events;
            frame.push_str(&content_event(self.api, &self.text, event, last, sent_us));
        }
        self.next = group_end;
        Some(Bytes::from(frame))
    }
}

/// Microseconds since the Unix epoch on the realtime clock, which every
/// process on the machine shares.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

fn marker() -> &'static str {
    // The marker is ASCII, so this never falls back.
    std::str::from_utf8(SENT_MARKER).unwrap_or("\"bench_sent_us\":")
}

fn opening(api: Api) -> &'static str {
    match api {
        Api::Anthropic => concat!(
            "event: message_start\n",
            r#"data: {"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#,
            "\n\n",
            "event: content_block_start\n",
            r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            "\n\n",
        ),
        Api::OpenAi | Api::Gemini => "",
    }
}

fn content_event(api: Api, text: &str, index: u32, last: bool, sent_us: u64) -> String {
    let marker = marker();
    match api {
        Api::OpenAi => format!(
            r#"data: {{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1733300000,"model":"gpt-4o-mini","choices":[{{"index":0,"delta":{{"content":"{text}"}},"finish_reason":null}}],{marker}{sent_us}}}"#
        ) + "\n\n",
        Api::Anthropic => format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}},{marker}{sent_us}}}\n\n"
        ),
        // Gemini separates events with CRLF pairs, and its last chunk
        // carries the finish reason and the final usage.
        Api::Gemini => {
            let finish = if last { r#","finishReason":"STOP""# } else { "" };
            let output = index + 1;
            let total = PROMPT_TOKENS + output;
            format!(
                r#"data: {{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}}],"role":"model"}}{finish},"index":0}}],"usageMetadata":{{"promptTokenCount":{PROMPT_TOKENS},"candidatesTokenCount":{output},"totalTokenCount":{total}}},"modelVersion":"gemini-2.5-flash",{marker}{sent_us}}}"#
            ) + "\r\n\r\n"
        }
    }
}

fn closing(api: Api, events: u32) -> Option<String> {
    let total = PROMPT_TOKENS + events;
    match api {
        Api::OpenAi => Some(format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1733300000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{PROMPT_TOKENS},\"completion_tokens\":{events},\"total_tokens\":{total}}}}}\n\ndata: [DONE]\n\n"
        )),
        Api::Anthropic => Some(format!(
            "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\nevent: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{events}}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        )),
        Api::Gemini => None,
    }
}

/// Builds a non-streamed completion whose text pads the body to `size`
/// bytes. The usage block comes last, where providers put it.
fn json_body(api: Api, size: usize) -> String {
    let (head, tail) = match api {
        Api::OpenAi => (
            r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1733300000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":""#,
            r#""},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":40,"total_tokens":52}}"#,
        ),
        Api::Anthropic => (
            r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":""#,
            r#""}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":40}}"#,
        ),
        Api::Gemini => (
            r#"{"candidates":[{"content":{"parts":[{"text":""#,
            r#""}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":40,"totalTokenCount":52},"modelVersion":"gemini-2.5-flash"}"#,
        ),
    };
    let text = filler(size.saturating_sub(head.len() + tail.len()));
    let mut body = String::with_capacity(size.max(head.len() + tail.len()));
    body.push_str(head);
    body.push_str(&text);
    body.push_str(tail);
    body
}

/// Plain words that need no JSON escaping, cut to `length` bytes.
fn filler(length: usize) -> String {
    const WORDS: &str = "lorem ipsum dolor sit amet consectetur adipiscing elit ";
    WORDS.chars().cycle().take(length).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_ignore_unknown_names() {
        let params = MockParams::from_query(Some(
            "alt=sse&events=5&interval_us=2000&event_bytes=7&size=9",
        ))
        .unwrap();
        assert_eq!(params.events, 5);
        assert_eq!(params.interval, Duration::from_millis(2));
        assert_eq!(params.event_bytes, 7);
        assert_eq!(params.size, 9);
        assert_eq!(MockParams::from_query(None).unwrap(), MockParams::default());
    }

    #[test]
    fn params_reject_bad_numbers() {
        assert!(MockParams::from_query(Some("events=x")).is_err());
        assert!(MockParams::from_query(Some("size=999999999999")).is_err());
    }

    #[test]
    fn json_bodies_have_the_requested_size_and_parse() {
        for api in Api::ALL {
            for size in [600, 1024 * 1024] {
                let body = json_body(api, size);
                assert_eq!(body.len(), size, "{api:?}");
                let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert!(parsed.is_object());
            }
        }
    }

    #[test]
    fn events_are_json_with_a_send_time() {
        for api in Api::ALL {
            let event = content_event(api, "hi", 0, true, 42);
            let data = event
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .unwrap();
            let parsed: serde_json::Value = serde_json::from_str(data).unwrap();
            assert_eq!(parsed["bench_sent_us"], 42, "{api:?}");
        }
    }

    #[tokio::test]
    async fn stream_sends_every_event_then_the_closing() {
        let params = MockParams {
            events: 3,
            ..MockParams::default()
        };
        let frames: Vec<Bytes> =
            futures_util::StreamExt::collect::<Vec<_>>(event_stream(Api::OpenAi, params))
                .await
                .into_iter()
                .map(|frame| frame.unwrap().into_data().unwrap())
                .collect();
        assert_eq!(frames.len(), 4);
        let text: String = frames
            .iter()
            .map(|frame| String::from_utf8_lossy(frame).into_owned())
            .collect();
        assert_eq!(text.matches("bench_sent_us").count(), 3);
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn burst_puts_events_in_one_frame() {
        let params = MockParams::from_query(Some("events=5&burst=2")).unwrap();
        let frames: Vec<Bytes> =
            futures_util::StreamExt::collect::<Vec<_>>(event_stream(Api::OpenAi, params))
                .await
                .into_iter()
                .map(|frame| frame.unwrap().into_data().unwrap())
                .collect();
        let events: Vec<usize> = frames
            .iter()
            .map(|frame| {
                String::from_utf8_lossy(frame)
                    .matches("bench_sent_us")
                    .count()
            })
            .collect();
        assert_eq!(events, [2, 2, 1, 0]);
    }
}
