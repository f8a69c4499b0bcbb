//! Streaming in both directions: SSE timing and bytes, compressed bodies,
//! large uploads and the body limit, idle and response timeouts, and
//! cancellation when the client goes away.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::raw::{self, RawResponse};
use common::upstream::{head, ok_json, respond, sleep_ms, write, MockUpstream, Step};
use common::{client, json, Setup, OPENAI_KEY};
use futures_util::StreamExt;
use keyport_core::proxy::OutcomeEnd;
use tokio::io::AsyncWriteExt;

const SSE: &str = "text/event-stream; charset=utf-8";

fn anthropic_events() -> Vec<String> {
    let mut events = vec![
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":9}}}\n\n".to_string(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_string(),
    ];
    for i in 0..3 {
        events.push(format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"tok{i}\"}}}}\n\n"));
    }
    events.push("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_string());
    events
}

fn openai_chunk(i: usize) -> String {
    format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i}\"}}}}]}}\n\n")
}

/// Scripts an SSE head, then each event in its own write with `gap_ms` between,
/// then FIN. No Content-Length: the body ends when the provider closes.
fn sse_script(events: &[String], gap_ms: u64) -> Vec<Step> {
    let mut steps = vec![head(200, &[("content-type", SSE)])];
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            steps.push(sleep_ms(gap_ms));
        }
        steps.push(write(event));
    }
    steps.push(Step::Close);
    steps
}

/// Sends a streaming POST through the raw client and returns the response.
async fn raw_post(proxy: &common::Proxy, path: &str, body: &str) -> RawResponse {
    let head = format!(
        "POST {path} HTTP/1.1\nHost: {}\nAuthorization: Bearer {}\nContent-Type: application/json\nAccept: text/event-stream\nContent-Length: {}",
        proxy.addr,
        proxy.token,
        body.len()
    );
    raw::request(proxy.addr, &head, body.as_bytes()).await
}

#[tokio::test]
async fn sse_events_reach_the_client_as_written() {
    let upstream = MockUpstream::start(|request| {
        let events = if request.target.starts_with("/v1/messages") {
            anthropic_events()
        } else {
            (0..5)
                .map(openai_chunk)
                .chain(["data: [DONE]\n\n".to_string()])
                .collect()
        };
        let mut steps = sse_script(&events, 150);
        // A pause between head and first event shows whether headers wait
        // for the body.
        steps.insert(1, sleep_ms(300));
        steps
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();

    let routes = [
        ("/llm/anthropic/v1/messages", "/v1/messages"),
        ("/llm/openai/chat/completions", "/v1/chat/completions"),
    ];
    let calls = routes.map(|(route, target)| {
        let http = http.clone();
        let url = proxy.url(route);
        let token = proxy.token.clone();
        async move {
            let response = http
                .post(url)
                .header("x-api-key", token)
                .header("accept", "text/event-stream")
                .body(r#"{"stream":true}"#)
                .send()
                .await
                .unwrap();
            let headers_at = Instant::now();
            let headers = response.headers().clone();
            let mut chunks = Vec::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                chunks.push((Instant::now(), chunk.unwrap()));
            }
            (target, headers_at, headers, chunks)
        }
    });
    for (target, headers_at, headers, chunks) in futures_util::future::join_all(calls).await {
        let request = upstream
            .requests()
            .into_iter()
            .find(|request| request.target == target)
            .unwrap();
        let writes = request.write_times.lock().unwrap().clone();
        assert_eq!(writes.len(), 6, "{target}");
        assert!(
            headers_at < writes[0],
            "{target}: headers waited for the body"
        );

        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        assert!(!headers.contains_key("content-length"));
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers["x-accel-buffering"], "no");

        let events: Vec<String> = if target == "/v1/messages" {
            anthropic_events()
        } else {
            (0..5)
                .map(openai_chunk)
                .chain(["data: [DONE]\n\n".to_string()])
                .collect()
        };
        let body: Vec<u8> = chunks
            .iter()
            .flat_map(|(_, chunk)| chunk.to_vec())
            .collect();
        assert_eq!(body, events.concat().as_bytes(), "{target}");

        // Event i has arrived once the client has all bytes up to its end.
        let mut arrivals = Vec::new();
        let mut end = 0;
        for event in &events {
            end += event.len();
            let mut received = 0;
            let (at, _) = chunks
                .iter()
                .find(|(_, chunk)| {
                    received += chunk.len();
                    received >= end
                })
                .unwrap();
            arrivals.push(*at);
        }
        for (i, (arrival, written)) in arrivals.iter().zip(&writes).enumerate() {
            let delay = arrival.duration_since(*written);
            assert!(
                delay <= Duration::from_millis(150),
                "{target} event {i}: {delay:?}"
            );
        }
        let spread = arrivals[5].duration_since(arrivals[0]);
        assert!(
            spread >= Duration::from_millis(700),
            "{target}: spread {spread:?}"
        );
    }
}

#[tokio::test]
async fn sse_frames_keep_event_boundaries() {
    let mut events: Vec<String> = (0..20).map(openai_chunk).collect();
    events.push("data: [DONE]\n\n".to_string());
    let whole = events.clone();
    let upstream = MockUpstream::start(move |request| {
        if request.target.ends_with("split") {
            // One event cut into three writes inside its JSON.
            let event = openai_chunk(7);
            let (a, rest) = event.split_at(10);
            let (b, c) = rest.split_at(25);
            vec![
                head(200, &[("content-type", SSE)]),
                write(openai_chunk(6)),
                write(a),
                sleep_ms(10),
                write(b),
                sleep_ms(10),
                write(c),
                write("data: [DONE]\n\n"),
                Step::Close,
            ]
        } else {
            sse_script(&whole, 30)
        }
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;

    let response = raw_post(&proxy, "/llm/openai/chat/completions", r#"{"stream":true}"#).await;
    assert!(response.complete);
    assert_eq!(response.body, events.concat().as_bytes());
    assert!(
        response.chunks.len() >= 15,
        "events were merged: {}",
        response.chunks.len()
    );
    for (_, frame) in &response.chunks {
        assert!(
            frame.ends_with(b"\n\n"),
            "frame cut mid-event: {:?}",
            String::from_utf8_lossy(frame)
        );
    }

    let response = raw_post(&proxy, "/llm/openai/chat/completions?split", "{}").await;
    assert!(response.complete);
    let expected = format!("{}{}data: [DONE]\n\n", openai_chunk(6), openai_chunk(7));
    assert_eq!(response.body_text(), expected);
}

#[tokio::test]
async fn done_is_forwarded_once_and_never_invented() {
    let upstream = MockUpstream::start(|request| {
        let mut events = vec![openai_chunk(0), openai_chunk(1)];
        if request.target.ends_with("complete") {
            events.push("data: [DONE]\n\n".to_string());
        }
        if request.target.ends_with("broken") {
            // Chunked framing that stops without its final chunk.
            return vec![
                head(
                    200,
                    &[("content-type", SSE), ("transfer-encoding", "chunked")],
                ),
                write(format!("{:x}\r\n{}\r\n", events[0].len(), events[0])),
                sleep_ms(50),
                Step::Close,
            ];
        }
        sse_script(&events, 20)
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let path = "/llm/openai/chat/completions";

    let response = raw_post(&proxy, &format!("{path}?complete"), "{}").await;
    assert!(response.complete, "no final chunk");
    assert_eq!(response.body_text().matches("data: [DONE]").count(), 1);

    let response = raw_post(&proxy, &format!("{path}?truncated"), "{}").await;
    assert!(response.complete);
    assert!(!response.body_text().contains("[DONE]"));
    assert_eq!(
        response.body_text(),
        format!("{}{}", openai_chunk(0), openai_chunk(1))
    );

    // A provider body that breaks off ends the client's body without the
    // final chunk, so the client sees the truncation too.
    let response = raw_post(&proxy, &format!("{path}?broken"), "{}").await;
    assert!(!response.complete, "truncation hidden from the client");
    assert!(!response.body_text().contains("[DONE]"));
    let outcomes = proxy.sink.wait_for(3).await;
    let ends: Vec<OutcomeEnd> = outcomes.iter().map(|outcome| outcome.end).collect();
    assert!(ends.contains(&OutcomeEnd::UpstreamBodyFailed), "{ends:?}");

    // Without `[DONE]` the log marks the call incomplete, even though the
    // provider closed its body cleanly. The calls ran one after another.
    let note = |i: usize| outcomes[i].usage.as_ref().and_then(|usage| usage.note);
    assert_eq!(note(0), None);
    assert_eq!(
        note(1),
        Some(keyport_core::requestlog::UsageNote::ResponseIncomplete)
    );
}

#[tokio::test]
async fn event_lines_and_line_endings_survive() {
    let names = [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ];
    let events = move |newline: &str| -> Vec<String> {
        names
            .iter()
            .map(|name| {
                format!("event: {name}{newline}data: {{\"type\":\"{name}\"}}{newline}{newline}")
            })
            .collect()
    };
    let upstream = MockUpstream::start(move |request| {
        let newline = if request.target.contains("crlf") {
            "\r\n"
        } else {
            "\n"
        };
        sse_script(&events(newline), 5)
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    for (path, newline) in [
        ("/llm/anthropic/v1/messages", "\n"),
        ("/llm/anthropic/v1/messages?crlf", "\r\n"),
        (
            "/llm/google/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&crlf",
            "\r\n",
        ),
    ] {
        let response = raw_post(&proxy, path, r#"{"stream":true}"#).await;
        assert!(response.complete, "{path}");
        assert_eq!(response.body_text(), events(newline).concat(), "{path}");
    }
}

#[tokio::test]
async fn json_error_to_stream_request_arrives_whole() {
    let error = r#"{"error":{"message":"bad key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    let upstream = MockUpstream::start(move |request| {
        if request.target.ends_with("event") {
            let event = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy\"}}\n\n";
            return vec![head(200, &[("content-type", SSE)]), write(event), Step::Close];
        }
        // The provider keeps the connection open after a complete response.
        let mut steps = respond(401, "application/json; charset=utf-8", error.as_bytes(), &[]);
        steps.push(sleep_ms(5_000));
        steps
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;

    // The error event first: the JSON case below leaves the pooled
    // upstream connection busy while the mock keeps it open.
    let response = raw_post(
        &proxy,
        "/llm/anthropic/v1/messages?event",
        r#"{"stream":true}"#,
    )
    .await;
    assert!(response.complete);
    assert!(response
        .body_text()
        .starts_with("event: error\ndata: {\"type\":\"error\""));

    let started = Instant::now();
    let response = raw_post(&proxy, "/llm/openai/chat/completions", r#"{"stream":true}"#).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status, 401);
    assert!(response.complete);
    assert_eq!(
        response.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(response.body_text(), error);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn completion_json() -> String {
    let filler = "lorem ipsum ".repeat(330);
    format!(
        r#"{{"id":"c","model":"gpt-x","choices":[{{"message":{{"content":"{filler}"}}}}],"usage":{{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}}}"#
    )
}

#[tokio::test]
async fn compressed_bodies_pass_through_unchanged() {
    // Stands in for brotli and zstd output: bytes labelled with a coding
    // the proxy cannot decode must pass as they are.
    let fake_brotli: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let brotli = fake_brotli.clone();
    let upstream = MockUpstream::start(move |request| {
        let plain = completion_json();
        let accepted = request.header("accept-encoding").unwrap_or("");
        if accepted.contains("gzip") {
            respond(
                200,
                "application/json",
                &gzip(plain.as_bytes()),
                &[("content-encoding", "gzip")],
            )
        } else if accepted.contains("br") {
            respond(
                200,
                "application/json",
                &brotli,
                &[("content-encoding", "br")],
            )
        } else if accepted.contains("zstd") {
            respond(
                200,
                "application/json",
                &brotli,
                &[("content-encoding", "zstd")],
            )
        } else {
            respond(200, "application/json", plain.as_bytes(), &[])
        }
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let plain = completion_json();
    assert!(plain.len() > 4000);

    for accept in [
        Some("gzip"),
        Some("identity"),
        None,
        Some("br"),
        Some("zstd"),
    ] {
        let mut head = format!(
            "POST /llm/openai/chat/completions HTTP/1.1\nHost: {}\nAuthorization: Bearer {}\nContent-Length: 2",
            proxy.addr, proxy.token
        );
        if let Some(accept) = accept {
            head.push_str(&format!("\nAccept-Encoding: {accept}"));
        }
        let response = raw::request(proxy.addr, &head, b"{}").await;
        assert_eq!(response.status, 200);
        let length: usize = response.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, response.body.len(), "{accept:?}");
        let request = upstream.requests().pop().unwrap();
        assert_eq!(
            request.header("accept-encoding"),
            accept,
            "accept-encoding changed"
        );

        match accept {
            Some("gzip") => {
                assert_eq!(response.header("content-encoding"), Some("gzip"));
                assert_eq!(response.body, gzip(plain.as_bytes()));
                let mut decoded = String::new();
                flate2::read::GzDecoder::new(&response.body[..])
                    .read_to_string(&mut decoded)
                    .unwrap();
                assert_eq!(decoded, plain);
            }
            Some(coding @ ("br" | "zstd")) => {
                assert_eq!(response.header("content-encoding"), Some(coding));
                assert_eq!(response.body, fake_brotli);
            }
            _ => {
                assert_eq!(response.header("content-encoding"), None);
                assert_eq!(response.body_text(), plain);
            }
        }
    }

    // The log reads usage through gzip, and marks bodies it cannot decode
    // instead of reading garbage or zero.
    let outcomes = proxy.sink.wait_for(5).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        let usage = outcome.usage.as_ref().expect("no usage read");
        if i < 3 {
            assert_eq!(usage.input_tokens, Some(9), "call {i}");
            assert_eq!(usage.output_tokens, Some(4), "call {i}");
            assert_eq!(usage.model.as_deref(), Some("gpt-x"), "call {i}");
        } else {
            assert_eq!(usage.input_tokens, None, "call {i}");
            assert_eq!(usage.output_tokens, None, "call {i}");
            assert!(usage.note.is_some(), "call {i}: {usage:?}");
        }
    }
}

#[tokio::test]
async fn large_bodies_arrive_byte_identical() {
    let upstream = MockUpstream::start(|_| ok_json(r#"{"ok":true}"#)).await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let image = |size: usize| -> Vec<u8> {
        let prefix = br#"{"messages":[{"content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,"#;
        let mut body = prefix.to_vec();
        body.extend(
            (0..size - prefix.len() - 4)
                .map(|i| b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/"[i % 44]),
        );
        body.extend_from_slice(br#""}}"#);
        body.push(b'}');
        body
    };

    for size in [2_000_000, 12 * 1024 * 1024] {
        let body = image(size);
        assert_eq!(body.len(), size);
        let response = http
            .post(proxy.url("/llm/openai/chat/completions"))
            .bearer_auth(&proxy.token)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{size}");
        let request = upstream.requests().pop().unwrap();
        assert_eq!(
            request.header("content-length"),
            Some(size.to_string().as_str())
        );
        assert!(request.body == body, "{size} B body changed");
    }

    // Without Content-Length the body streams upstream chunked.
    let body = image(2_200_000);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .chunks(64 * 1024)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let response = http
        .post(proxy.url("/llm/anthropic/v1/messages"))
        .header("x-api-key", &proxy.token)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = upstream.requests().pop().unwrap();
    assert!(request.chunked);
    assert!(request.body == body, "chunked body changed");
}

#[tokio::test]
async fn oversized_bodies_get_413_in_provider_shape() {
    let upstream = MockUpstream::start(|_| ok_json("{}")).await;
    let mut setup = Setup::new(&upstream.base());
    setup.config.max_request_body_bytes = 1024 * 1024;
    let proxy = setup.start().await;
    let http = client();
    let body = vec![b'a'; 2 * 1024 * 1024];

    // Declared length: rejected before any byte goes upstream.
    let response = http
        .post(proxy.url("/llm/openai/chat/completions"))
        .bearer_auth(&proxy.token)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let error = json(response).await;
    assert_eq!(error["error"]["code"], "request_too_large");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_request_body_mib"));

    // Streamed without a length: rejected once the count passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .chunks(64 * 1024)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let response = http
        .post(proxy.url("/llm/anthropic/v1/messages"))
        .header("x-api-key", &proxy.token)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let error = json(response).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "request_too_large");

    // Bodies at the limit still pass.
    let response = http
        .post(proxy.url("/llm/openai/chat/completions"))
        .bearer_auth(&proxy.token)
        .body(vec![b'a'; 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let outcomes = proxy.sink.wait_for(3).await;
    for outcome in &outcomes[..2] {
        assert_eq!(outcome.error_code, Some("request_too_large"));
        assert_eq!(outcome.status.map(|s| s.as_u16()), Some(413));
        assert!(
            outcome.request_bytes > 1024 * 1024,
            "{}",
            outcome.request_bytes
        );
    }
    assert_eq!(outcomes[0].path, "/llm/openai/chat/completions");
    // Only the request within the limit reached the provider whole.
    let whole: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|request| request.body.len() == 1024 * 1024)
        .collect();
    assert_eq!(whole.len(), 1);
}

#[tokio::test]
async fn multipart_upload_passes_unchanged() {
    let upstream = MockUpstream::start(|_| ok_json(r#"{"text":"ok"}"#)).await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let boundary = "----px33Boundary7MA4YWxk";
    let mut audio: Vec<u8> = (0..=255u8).cycle().take(1536 * 1024).collect();
    audio.extend_from_slice(b"\x00\xff\r\n--------otherBoundary\r\n");
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"v.ogg\"\r\nContent-Type: audio/ogg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&audio);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(4096).map(|chunk| Ok(chunk.to_vec())).collect();
    let bodies = [
        reqwest::Body::from(body.clone()),
        reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
    ];
    for upload in bodies {
        let response = client()
            .post(proxy.url("/llm/openai/audio/transcriptions"))
            .bearer_auth(&proxy.token)
            .header("content-type", &content_type)
            .body(upload)
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), r#"{"text":"ok"}"#);
        let request = upstream.requests().pop().unwrap();
        assert_eq!(request.header("content-type"), Some(content_type.as_str()));
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {OPENAI_KEY}").as_str())
        );
        assert!(request.body == body, "multipart body changed");
    }

    // A batch file upload, streamed without a length.
    let lines: String = (0..2000)
        .map(|i| {
            format!(
                "{{\"custom_id\":\"r{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\"}}\n"
            )
        })
        .collect();
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{lines}\r\n--{boundary}--\r\n"
    )
    .into_bytes();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(4096).map(|chunk| Ok(chunk.to_vec())).collect();
    let response = client()
        .post(proxy.url("/llm/openai/files"))
        .bearer_auth(&proxy.token)
        .header("content-type", &content_type)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = upstream.requests().pop().unwrap();
    assert_eq!(request.target, "/v1/files");
    assert!(request.chunked);
    assert!(request.body == body, "batch file changed");
}

#[tokio::test]
async fn idle_timeout_ends_only_silent_streams() {
    let upstream = MockUpstream::start(|request| {
        if request.target.ends_with("silent") {
            // One event, then silence with the socket open.
            vec![
                head(200, &[("content-type", SSE)]),
                write(openai_chunk(0)),
                sleep_ms(5_000),
            ]
        } else {
            let events: Vec<String> = (0..5).map(openai_chunk).collect();
            sse_script(&events, 600)
        }
    })
    .await;
    let mut setup = Setup::new(&upstream.base());
    setup.config.upstream_idle_timeout = Duration::from_secs(1);
    let proxy = setup.start().await;
    let path = "/llm/openai/chat/completions";

    // Gaps below the idle timeout never end a stream, however long it runs.
    let slow_path = format!("{path}?slow");
    let silent_path = format!("{path}?silent");
    let (slow, (response, ended)) = tokio::join!(raw_post(&proxy, &slow_path, "{}"), async {
        let response = raw_post(&proxy, &silent_path, "{}").await;
        (response, Instant::now())
    });
    assert!(slow.complete);
    assert_eq!(slow.chunks.len(), 5);

    assert!(!response.complete, "an idle stream must end as truncated");
    assert_eq!(response.body_text(), openai_chunk(0));
    let silence = ended.duration_since(response.chunks[0].0);
    assert!(silence >= Duration::from_millis(900), "{silence:?}");
    assert!(silence <= Duration::from_millis(2_000), "{silence:?}");

    let outcomes = proxy.sink.wait_for(2).await;
    let ends: Vec<OutcomeEnd> = outcomes.iter().map(|outcome| outcome.end).collect();
    assert!(ends.contains(&OutcomeEnd::UpstreamIdleTimeout), "{ends:?}");
    assert!(ends.contains(&OutcomeEnd::Completed), "{ends:?}");
}

/// Waits up to 3 s for the provider to see its connection closed.
async fn peer_close_delay(
    request: &common::upstream::Recorded,
    client_closed: Instant,
) -> Duration {
    for _ in 0..300 {
        if let Some(at) = request.peer_closed_at() {
            return at.saturating_duration_since(client_closed);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the upstream connection stayed open 3 s after the client left");
}

#[tokio::test]
async fn client_disconnect_cancels_streamed_call() {
    let upstream = MockUpstream::start(|_| {
        let events: Vec<String> = (0..40).map(openai_chunk).collect();
        sse_script(&events, 200)
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;

    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "POST /llm/openai/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: 2\r\n\r\n{{}}",
        proxy.addr, proxy.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !received.windows(4).any(|window| window == b"tok1") {
        let read = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer)
            .await
            .unwrap();
        assert!(read > 0);
        received.extend_from_slice(&buffer[..read]);
    }
    drop(stream);
    let closed = Instant::now();

    let request = upstream.single();
    let delay = peer_close_delay(&request, closed).await;
    assert!(delay <= Duration::from_secs(2), "{delay:?}");
    let outcomes = proxy.sink.wait_for(1).await;
    assert_eq!(outcomes[0].end, OutcomeEnd::ClientCancelled);
    assert_eq!(outcomes[0].status.map(|s| s.as_u16()), Some(200));
}

#[tokio::test]
async fn client_disconnect_cancels_waiting_call() {
    let upstream = MockUpstream::start(|_| {
        let mut steps = vec![sleep_ms(10_000)];
        steps.extend(ok_json("{}"));
        steps
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;

    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "POST /llm/openai/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: 2\r\n\r\n{{}}",
        proxy.addr, proxy.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let request = upstream.single();
    assert!(request.peer_closed_at().is_none());
    drop(stream);
    let closed = Instant::now();

    let delay = peer_close_delay(&request, closed).await;
    assert!(delay <= Duration::from_secs(2), "{delay:?}");
    let outcomes = proxy.sink.wait_for(1).await;
    assert_eq!(outcomes[0].end, OutcomeEnd::ClientCancelled);
    assert_eq!(outcomes[0].status, None);
}

#[tokio::test]
async fn upstream_500_is_not_retried() {
    let upstream = MockUpstream::start(|_| {
        let mut steps = vec![sleep_ms(300)];
        steps.extend(respond(
            500,
            "application/json",
            br#"{"error":{"message":"boom"}}"#,
            &[],
        ));
        steps.push(Step::Close);
        steps
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let response = client()
        .post(proxy.url("/llm/openai/chat/completions"))
        .bearer_auth(&proxy.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"error":{"message":"boom"}}"#
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn shutdown_cuts_open_streams_after_grace() {
    let upstream = MockUpstream::start(|_| {
        let events: Vec<String> = (0..100).map(openai_chunk).collect();
        sse_script(&events, 100)
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let addr = proxy.addr;

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /llm/openai/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: 2\r\n\r\n{{}}",
        proxy.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = [0u8; 4096];
    assert!(
        tokio::io::AsyncReadExt::read(&mut stream, &mut buffer)
            .await
            .unwrap()
            > 0
    );

    let started = Instant::now();
    proxy.stop().await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1_500),
        "open stream not given its grace: {elapsed:?}"
    );
    assert!(elapsed <= Duration::from_secs(3), "{elapsed:?}");

    // The stream has been cut and no new connection is accepted.
    let mut rest = Vec::new();
    // A reset instead of a clean close is fine; the stream must end.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest),
    )
    .await
    .expect("client connection still open after shutdown");
    assert!(!String::from_utf8_lossy(&rest).contains("tok99"));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
