//! Field failure cases of LLM proxies that the other proxy tests do not
//! cover: SSE keep-alives against the idle timeout, long generations and
//! slow first bytes, request bodies the proxy must not rewrite, bodies at
//! the default size limit, and credentials in unusual places.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, RawResponse};
use common::upstream::{head, ok_json, respond, sleep_ms, write, MockUpstream, Step};
use common::{client, count, json, Proxy, Setup, GOOGLE_KEY, MISTRAL_KEY, OPENAI_KEY, ORIGIN};
use keyport_core::proxy::OutcomeEnd;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SSE: &str = "text/event-stream; charset=utf-8";
const PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";
const COMMENT: &str = ": keepalive\n\n";
const MESSAGE_START: &str =
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\"}}\n\n";
const MESSAGE_STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn delta(i: usize) -> String {
    format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"tok{i}\"}}}}\n\n")
}

fn openai_chunk(i: usize) -> String {
    format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i}\"}}}}]}}\n\n")
}

/// Sends a POST with the token through the raw client and reads the whole
/// response, chunk by chunk with arrival times.
async fn raw_post(proxy: &Proxy, path: &str, body: &str) -> RawResponse {
    let head = format!(
        "POST {path} HTTP/1.1\nHost: {}\nx-api-key: {}\nContent-Type: application/json\nAccept: text/event-stream\nContent-Length: {}",
        proxy.addr,
        proxy.token,
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut bytes = head.replace('\n', "\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(body.as_bytes());
    stream.write_all(&bytes).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), raw::read_response(&mut stream))
        .await
        .expect("response did not end within 30 s")
}

/// Returns, for each upstream write, how long the client waited for the
/// bytes up to that write's end.
fn delivery_delays(response: &RawResponse, writes: &[Instant], pieces: &[String]) -> Vec<Duration> {
    let mut delays = Vec::new();
    let mut end = 0;
    for (written, piece) in writes.iter().zip(pieces) {
        end += piece.len();
        let mut received = 0;
        let (arrived, _) = response
            .chunks
            .iter()
            .find(|(_, chunk)| {
                received += chunk.len();
                received >= end
            })
            .unwrap();
        delays.push(arrived.saturating_duration_since(*written));
    }
    delays
}

#[tokio::test]
async fn keepalive_pings_and_comments_arrive_promptly() {
    // message_start, then only keep-alives (pings or comments) every
    // 700 ms, then the content. Gaps stay below the 3 s idle timeout.
    let pieces = |keepalive: &str| -> Vec<String> {
        let mut pieces = vec![MESSAGE_START.to_string()];
        pieces.extend(std::iter::repeat_n(keepalive.to_string(), 5));
        pieces.extend([delta(0), delta(1), MESSAGE_STOP.to_string()]);
        pieces
    };
    let upstream = MockUpstream::start(move |request| {
        let keepalive = if request.target.ends_with("comments") {
            COMMENT
        } else {
            PING
        };
        let mut steps = vec![head(200, &[("content-type", SSE)])];
        for piece in pieces(keepalive) {
            steps.push(write(piece));
            steps.push(sleep_ms(700));
        }
        steps.push(Step::Close);
        steps
    })
    .await;
    let mut setup = Setup::new(&upstream.base());
    setup.config.upstream_idle_timeout = Duration::from_secs(3);
    let proxy = setup.start().await;

    let pings = raw_post(&proxy, "/llm/anthropic/v1/messages?pings", "{}");
    let comments = raw_post(&proxy, "/llm/anthropic/v1/messages?comments", "{}");
    let (pings, comments) = tokio::join!(pings, comments);
    for (response, keepalive) in [(pings, PING), (comments, COMMENT)] {
        assert!(response.complete, "{keepalive:?}: stream cut");
        let expected = pieces(keepalive);
        assert_eq!(response.body_text(), expected.concat(), "{keepalive:?}");
        assert_eq!(count(&response.body_text(), keepalive), 5);

        let target = if keepalive == PING {
            "/v1/messages?pings"
        } else {
            "/v1/messages?comments"
        };
        let request = upstream
            .requests()
            .into_iter()
            .find(|request| request.target == target)
            .unwrap();
        let writes = request.write_times.lock().unwrap().clone();
        for (i, delay) in delivery_delays(&response, &writes, &expected)
            .into_iter()
            .enumerate()
        {
            assert!(
                delay <= Duration::from_millis(150),
                "{keepalive:?} piece {i} took {delay:?}"
            );
        }
    }
}

#[tokio::test]
async fn idle_timeout_spares_silence_below_it() {
    let upstream = MockUpstream::start(|request| {
        let silence = if request.target.ends_with("short") {
            2_000
        } else {
            4_000
        };
        vec![
            head(200, &[("content-type", SSE)]),
            write(MESSAGE_START),
            sleep_ms(silence),
            write(delta(0)),
            write(MESSAGE_STOP),
            Step::Close,
        ]
    })
    .await;
    let mut setup = Setup::new(&upstream.base());
    setup.config.upstream_idle_timeout = Duration::from_secs(3);
    let proxy = setup.start().await;

    let short = raw_post(&proxy, "/llm/anthropic/v1/messages?short", "{}");
    let long = raw_post(&proxy, "/llm/anthropic/v1/messages?long", "{}");
    let (short, long) = tokio::join!(short, long);

    assert!(short.complete, "a 2 s silence ended the stream");
    assert_eq!(
        short.body_text(),
        format!("{MESSAGE_START}{}{MESSAGE_STOP}", delta(0))
    );
    assert!(!long.complete, "a 4 s silence did not end the stream");
    assert_eq!(long.body_text(), MESSAGE_START);

    let outcomes = proxy.sink.wait_for(2).await;
    let ends: Vec<(String, OutcomeEnd)> = outcomes
        .iter()
        .map(|outcome| (outcome.path.clone(), outcome.end))
        .collect();
    assert_eq!(
        ends.iter()
            .filter(|(_, end)| *end == OutcomeEnd::Completed)
            .count(),
        1,
        "{ends:?}"
    );
    assert_eq!(
        ends.iter()
            .filter(|(_, end)| *end == OutcomeEnd::UpstreamIdleTimeout)
            .count(),
        1,
        "{ends:?}"
    );
}

#[tokio::test]
async fn long_generations_and_slow_first_bytes_survive() {
    let upstream = MockUpstream::start(|request| {
        if request.target.ends_with("long") {
            // 12 events, one per second: the stream lasts far longer than
            // the idle timeout.
            let mut steps = vec![head(200, &[("content-type", SSE)]), write(openai_chunk(0))];
            for i in 1..12 {
                steps.push(sleep_ms(1_000));
                steps.push(write(openai_chunk(i)));
            }
            steps.push(write("data: [DONE]\n\n"));
            steps.push(Step::Close);
            steps
        } else if request.target.ends_with("silent") {
            vec![
                head(200, &[("content-type", SSE)]),
                write(openai_chunk(0)),
                sleep_ms(20_000),
            ]
        } else {
            // A reasoning model that thinks before its headers.
            let mut steps = vec![sleep_ms(4_000)];
            steps.extend(ok_json(r#"{"id":"r","choices":[]}"#));
            steps
        }
    })
    .await;
    let mut setup = Setup::new(&upstream.base());
    setup.config.upstream_idle_timeout = Duration::from_secs(3);
    setup.config.upstream_response_timeout = Duration::from_secs(10);
    let proxy = setup.start().await;
    let path = "/llm/openai/chat/completions";

    let (long_path, slow_path) = (format!("{path}?long"), format!("{path}?slow"));
    let started = Instant::now();
    let long = raw_post(&proxy, &long_path, "{\"stream\":true}");
    let silent = async {
        let response = raw_post(&proxy, &format!("{path}?silent"), "{\"stream\":true}").await;
        (response, Instant::now())
    };
    let slow = raw_post(&proxy, &slow_path, "{}");
    let (long, (silent, silent_ended), slow) = tokio::join!(long, silent, slow);

    assert!(long.complete, "the long stream was cut");
    let expected: String = (0..12).map(openai_chunk).collect::<String>() + "data: [DONE]\n\n";
    assert_eq!(long.body_text(), expected);
    assert!(started.elapsed() >= Duration::from_secs(11));

    assert!(!silent.complete, "a silent stream must end as truncated");
    assert_eq!(silent.body_text(), openai_chunk(0));
    let silence = silent_ended.duration_since(silent.chunks[0].0);
    assert!(silence >= Duration::from_millis(2_900), "{silence:?}");
    assert!(silence <= Duration::from_millis(4_000), "{silence:?}");

    assert_eq!(slow.status, 200);
    assert_eq!(slow.body_text(), r#"{"id":"r","choices":[]}"#);

    let outcomes = proxy.sink.wait_for(3).await;
    let silent_outcome = outcomes
        .iter()
        .find(|outcome| outcome.end == OutcomeEnd::UpstreamIdleTimeout)
        .expect("no idle timeout recorded");
    assert_eq!(silent_outcome.status.map(|s| s.as_u16()), Some(200));
    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| outcome.end == OutcomeEnd::Completed)
            .count(),
        2
    );
    assert_eq!(upstream.requests().len(), 3, "no retries");
}

#[tokio::test]
async fn stream_request_bodies_are_never_rewritten() {
    let usage = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":8,\"total_tokens\":20}}\n\n";
    let upstream = MockUpstream::start(move |request| {
        // Like OpenAI: the usage chunk only when the client asked for it.
        // Like Mistral: usage in every stream, unasked.
        let body = String::from_utf8_lossy(&request.body).into_owned();
        let asked = body.contains("\"include_usage\":true");
        let unasked = request.target.starts_with("/v1/chat/completions?mistral");
        let mut steps = vec![head(200, &[("content-type", SSE)]), write(openai_chunk(0))];
        if asked || unasked {
            steps.push(write(usage));
        }
        steps.push(write("data: [DONE]\n\n"));
        steps.push(Step::Close);
        steps
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;

    let body = r#"{"model":"gpt-x","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let response = raw_post(&proxy, "/llm/openai/chat/completions", body).await;
    let request = upstream.requests().pop().unwrap();
    assert_eq!(
        request.body,
        body.as_bytes(),
        "the request body was changed"
    );
    assert_eq!(
        response.body_text(),
        format!("{}data: [DONE]\n\n", openai_chunk(0)),
        "the response gained or lost chunks"
    );

    let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    let response = raw_post(&proxy, "/llm/openai/chat/completions", body).await;
    assert_eq!(upstream.requests().pop().unwrap().body, body.as_bytes());
    assert_eq!(count(&response.body_text(), "\"usage\""), 1);

    let body = r#"{"model":"mistral-small","stream":true}"#;
    let response = raw_post(&proxy, "/llm/mistral/v1/chat/completions?mistral", body).await;
    let request = upstream.requests().pop().unwrap();
    assert_eq!(request.body, body.as_bytes());
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {MISTRAL_KEY}").as_str())
    );
    assert_eq!(
        response.body_text(),
        format!("{}{usage}data: [DONE]\n\n", openai_chunk(0))
    );

    // The log records what the stream showed: unknown usage when the
    // provider sent none, never zero.
    let outcomes = proxy.sink.wait_for(3).await;
    let tokens = |i: usize| {
        let usage = outcomes[i].usage.as_ref().expect("no usage read");
        (usage.input_tokens, usage.output_tokens)
    };
    assert_eq!(tokens(0), (None, None));
    assert_eq!(tokens(1), (Some(12), Some(8)));
    assert_eq!(tokens(2), (Some(12), Some(8)));
    assert!(outcomes.iter().all(|outcome| outcome.streamed));
}

/// Builds a Gemini request of exactly `size` bytes with one inline image.
fn gemini_image(size: usize) -> Vec<u8> {
    let prefix =
        br#"{"contents":[{"role":"user","parts":[{"inlineData":{"mimeType":"image/png","data":""#;
    let suffix = br#""}}]}]}"#;
    let mut body = prefix.to_vec();
    body.extend(
        (0..size - prefix.len() - suffix.len())
            .map(|i| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i % 64]),
    );
    body.extend_from_slice(suffix);
    body
}

#[tokio::test]
async fn default_body_limit_passes_31_mib_and_rejects_40() {
    let upstream = MockUpstream::start(|_| ok_json(r#"{"candidates":[]}"#)).await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let url = proxy.url("/llm/google/v1beta/models/gemini-2.5-flash:generateContent");

    let body = gemini_image(31 * 1024 * 1024);
    let digest = Sha256::digest(&body);
    let response = http
        .post(&url)
        .header("x-goog-api-key", &proxy.token)
        .header("origin", ORIGIN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = upstream.single();
    assert_eq!(Sha256::digest(&request.body), digest, "body changed");
    assert_eq!(
        request.header("content-length"),
        Some((31 * 1024 * 1024).to_string().as_str())
    );
    assert_eq!(request.header("x-goog-api-key"), Some(GOOGLE_KEY));

    let response = http
        .post(&url)
        .header("x-goog-api-key", &proxy.token)
        .header("origin", ORIGIN)
        .body(gemini_image(40 * 1024 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["access-control-allow-origin"], ORIGIN);
    let error = json(response).await;
    assert_eq!(error["error"]["code"], 413);
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_request_body_mib"));
    assert_eq!(
        upstream.requests().len(),
        1,
        "the oversized body went upstream"
    );

    let outcomes = proxy.sink.wait_for(2).await;
    assert_eq!(outcomes[1].error_code, Some("request_too_large"));
    assert_eq!(outcomes[1].status.map(|s| s.as_u16()), Some(413));
    assert!(outcomes[1].path.ends_with(":generateContent"));
}

#[tokio::test]
async fn gemini_stream_query_survives_key_removal() {
    let events: Vec<String> = (0..3)
        .map(|i| format!("data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"t{i}\"}}],\"role\":\"model\"}}}}]}}\r\n\r\n"))
        .collect();
    let stream = events.concat();
    let upstream = MockUpstream::start(move |request| {
        if request.target.contains("alt=sse") {
            vec![
                head(200, &[("content-type", SSE)]),
                write(&stream),
                Step::Close,
            ]
        } else {
            ok_json("[{\"candidates\":[]}]")
        }
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let path = "/llm/google/v1beta/models/gemini-2.5-flash:streamGenerateContent";

    let head = format!(
        "POST {path}?alt=sse&key=AIzaCLIENT-PLACEHOLDER&foo=1%2B2 HTTP/1.1\nHost: {}\nx-goog-api-key: {}\nContent-Length: 2",
        proxy.addr, proxy.token
    );
    let response = raw::request(proxy.addr, &head, b"{}").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body_text(), events.concat());
    let request = upstream.single();
    assert_eq!(
        request.target,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&foo=1%2B2"
    );
    assert_eq!(count(&request.head_text(), GOOGLE_KEY), 1);
    assert!(!request.head_text().contains("PLACEHOLDER"));
}

#[tokio::test]
async fn websocket_credential_header_never_reaches_plain_routes() {
    let upstream = MockUpstream::start(|_| ok_json("{}")).await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let response = client()
        .post(proxy.url("/llm/openai/chat/completions"))
        .header(
            "sec-websocket-protocol",
            format!("openai-insecure-api-key.{}", proxy.token),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = upstream.single();
    assert!(!request.has_header("sec-websocket-protocol"));
    assert_eq!(count(&request.head_text(), &proxy.token), 0);
    assert_eq!(count(&request.head_text(), OPENAI_KEY), 1);
}

#[tokio::test]
async fn expect_continue_uploads_are_served() {
    let upstream = MockUpstream::start(|_| ok_json(r#"{"ok":true}"#)).await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let body = vec![b'x'; 2 * 1024 * 1024];
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST /llm/openai/files HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        proxy.addr,
        proxy.token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();

    // Like curl: wait for the interim response before sending the body.
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut interim))
        .await
        .expect("no 100 Continue within 2 s")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(&body).await.unwrap();
    let response = raw::read_response(&mut stream).await;
    assert_eq!(response.status, 200);
    let request = upstream.single();
    assert!(!request.has_header("expect"));
    assert_eq!(request.body.len(), body.len());
}

#[tokio::test]
async fn aborted_call_after_upstream_500_is_sent_once() {
    let upstream = MockUpstream::start(|_| {
        let mut steps = vec![sleep_ms(2_000)];
        steps.extend(respond(
            500,
            "application/json",
            br#"{"error":{"message":"boom"}}"#,
            &[],
        ));
        steps
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let call = client()
        .post(proxy.url("/llm/openai/chat/completions"))
        .bearer_auth(&proxy.token)
        .body("{}")
        .send();
    let aborted = tokio::time::timeout(Duration::from_secs(1), call).await;
    assert!(aborted.is_err(), "the call finished before the abort");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(upstream.requests().len(), 1);
    let outcomes = proxy.sink.wait_for(1).await;
    assert_eq!(outcomes[0].end, OutcomeEnd::ClientCancelled);
}
