//! The proxy writing to the SQLite request log: tokens, cost and timing
//! read from real responses as they pass, for streamed, unstreamed,
//! compressed, truncated, cancelled and rejected calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::upstream::{head, respond, sleep_ms, write, MockUpstream, Step};
use common::{add_provider, client, providers_at, TestKeys, OPENAI_KEY};
use futures_util::StreamExt;
use keyport_core::config::ProxyConfig;
use keyport_core::providers::{AuthStyle, ProviderRegistry};
use keyport_core::proxy::{self, KeySlot, ProxyState, RequestLogSink};
use keyport_core::requestlog::{
    LogFilter, LogSettings, LoggedRequest, PageRequest, PriceTable, RequestLog,
};
use keyport_core::secret::ExposeSecret;
use keyport_core::tokens::{LiveTokens, TokenStore};
use tokio::sync::oneshot;

const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const STREAM_BODY: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
const COMPLETION: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#;

fn openai_stream(with_usage: bool, with_done: bool) -> Vec<String> {
    let mut events = vec![
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hel\"}}]}\n\n".to_string(),
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n".to_string(),
    ];
    if with_usage {
        events.push("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n".to_string());
    }
    if with_done {
        events.push("data: [DONE]\n\n".to_string());
    }
    events
}

fn sse_steps(events: &[String]) -> Vec<Step> {
    let mut steps = vec![head(
        200,
        &[
            ("content-type", "text/event-stream"),
            ("x-request-id", "req_stream"),
        ],
    )];
    for event in events {
        steps.push(write(event));
        steps.push(sleep_ms(5));
    }
    steps.push(Step::Close);
    steps
}

/// A proxy whose outcomes go to a real request log in a temp folder.
struct LoggedProxy {
    addr: SocketAddr,
    token: String,
    log: Option<RequestLog>,
    dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
}

impl LoggedProxy {
    async fn start(upstream: &str, settings: LogSettings) -> Self {
        Self::start_with(providers_at(upstream), TestKeys::canaries(&[]), settings).await
    }

    async fn start_with(
        providers: ProviderRegistry,
        keys: TestKeys,
        settings: LogSettings,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tokens_path = dir.path().join("tokens.json");
        let mut store = TokenStore::load(&tokens_path).unwrap();
        let token = store
            .create("test-client")
            .unwrap()
            .expose_secret()
            .to_string();
        let tokens = LiveTokens::load(&tokens_path).unwrap();
        let slot = KeySlot::new();
        slot.set(Arc::new(keys));

        let log = RequestLog::open(&dir.path().join("requests.sqlite3"), settings).unwrap();
        let sink = RequestLogSink::new(log.recorder(), Arc::new(PriceTable::shipped().unwrap()));
        let state = ProxyState::new(ProxyConfig::default(), providers, tokens, slot)
            .unwrap()
            .with_outcome_sink(Arc::new(sink));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(proxy::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            token,
            log: Some(log),
            dir: Some(dir),
            stop: Some(stop),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn chat(&self, path: &str, body: &str) -> reqwest::Response {
        client()
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    fn log(&self) -> &RequestLog {
        self.log.as_ref().unwrap()
    }

    /// Stops the proxy, closes the log (writing what is queued) and returns
    /// the data folder.
    fn close(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        drop(self.log.take());
        self.dir.take().unwrap()
    }

    /// Waits until the log contains `count` rows and returns them, oldest first.
    async fn rows(&self, count: usize) -> Vec<LoggedRequest> {
        for _ in 0..100 {
            self.log().flush().unwrap();
            let page = self
                .log()
                .query(&LogFilter::default(), PageRequest::first(100))
                .unwrap();
            if page.items.len() >= count {
                let mut items = page.items;
                items.reverse();
                return items;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        panic!("fewer than {count} log rows after 3 s");
    }
}

impl Drop for LoggedProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[tokio::test]
async fn unstreamed_call_logs_tokens_and_cost() {
    let upstream = MockUpstream::start(|_| {
        respond(
            200,
            "application/json",
            COMPLETION.as_bytes(),
            &[("x-request-id", "req_1")],
        )
    })
    .await;
    let proxy = LoggedProxy::start(&upstream.base(), LogSettings::default()).await;

    let response = proxy.chat("/llm/openai/chat/completions", CHAT_BODY).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), COMPLETION);

    let rows = proxy.rows(1).await;
    let record = &rows[0].record;
    assert_eq!(record.provider, "openai");
    assert_eq!(record.path.as_str(), "/llm/openai/chat/completions");
    assert_eq!(record.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(record.status, Some(200));
    assert!(!record.streamed);
    assert_eq!(record.input_tokens, Some(9));
    assert_eq!(record.output_tokens, Some(4));
    assert!(
        record.cost_usd.is_some_and(|cost| cost > 0.0),
        "{:?}",
        record.cost_usd
    );
    assert_eq!(record.token_name.as_deref(), Some("test-client"));
    assert_eq!(record.upstream_request_id.as_deref(), Some("req_1"));
    assert_eq!(record.request_bytes, CHAT_BODY.len() as u64);
    assert_eq!(record.response_bytes, COMPLETION.len() as u64);
    assert!(record.ttfb_ms.is_some());
    assert!(record.error_kind.is_none());
}

#[tokio::test]
async fn streamed_call_logs_same_usage_as_unstreamed() {
    let upstream = MockUpstream::start(|request| {
        if request
            .body
            .windows(13)
            .any(|window| window == b"\"stream\":true")
        {
            sse_steps(&openai_stream(true, true))
        } else {
            respond(200, "application/json", COMPLETION.as_bytes(), &[])
        }
    })
    .await;
    let proxy = LoggedProxy::start(&upstream.base(), LogSettings::default()).await;

    let plain = proxy.chat("/llm/openai/chat/completions", CHAT_BODY).await;
    assert_eq!(plain.status(), 200);
    plain.bytes().await.unwrap();
    let streamed = proxy
        .chat("/llm/openai/chat/completions", STREAM_BODY)
        .await;
    let text = streamed.text().await.unwrap();
    assert_eq!(text, openai_stream(true, true).concat());

    let rows = proxy.rows(2).await;
    let (plain, streamed) = (&rows[0].record, &rows[1].record);
    assert!(!plain.streamed);
    assert!(streamed.streamed);
    assert_eq!(streamed.input_tokens, plain.input_tokens);
    assert_eq!(streamed.output_tokens, plain.output_tokens);
    assert_eq!(streamed.cost_usd, plain.cost_usd);
    assert_eq!(streamed.upstream_request_id.as_deref(), Some("req_stream"));
    assert!(streamed.error_kind.is_none(), "{:?}", streamed.error_kind);
}

#[tokio::test]
async fn stream_without_usage_logs_unknown_not_zero() {
    let upstream = MockUpstream::start(|_| sse_steps(&openai_stream(false, true))).await;
    let proxy = LoggedProxy::start(&upstream.base(), LogSettings::default()).await;

    let body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
    proxy
        .chat("/llm/openai/chat/completions", body)
        .await
        .text()
        .await
        .unwrap();

    let record = &proxy.rows(1).await[0].record;
    assert!(record.streamed);
    assert_eq!(record.input_tokens, None);
    assert_eq!(record.output_tokens, None);
    assert_eq!(record.cost_usd, None);
}

#[tokio::test]
async fn gzip_response_passes_and_usage_read() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(COMPLETION.as_bytes()).unwrap();
    let compressed = encoder.finish().unwrap();
    let served = compressed.clone();
    let upstream = MockUpstream::start(move |_| {
        respond(
            200,
            "application/json",
            &served,
            &[("content-encoding", "gzip")],
        )
    })
    .await;
    let proxy = LoggedProxy::start(&upstream.base(), LogSettings::default()).await;

    let response = client()
        .post(proxy.url("/llm/openai/chat/completions"))
        .bearer_auth(&proxy.token)
        .header("accept-encoding", "gzip")
        .body(CHAT_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        compressed.as_slice()
    );

    let record = &proxy.rows(1).await[0].record;
    assert_eq!(record.input_tokens, Some(9));
    assert_eq!(record.output_tokens, Some(4));
    assert_eq!(record.response_bytes, compressed.len() as u64);
}

#[tokio::test]
async fn truncated_stream_is_logged_incomplete() {
    let upstream = MockUpstream::start(|_| sse_steps(&openai_stream(false, false))).await;
    let proxy = LoggedProxy::start(&upstream.base(), LogSettings::default()).await;

    let text = proxy
        .chat("/llm/openai/chat/completions", STREAM_BODY)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !text.contains("[DONE]"),
        "the proxy must not add a terminator"
    );

    let record = &proxy.rows(1).await[0].record;
    assert_eq!(record.status, Some(200));
    assert_eq!(
        record.error_kind.as_ref().map(|kind| kind.as_str()),
        Some("incomplete_stream")
    );
    assert_eq!(record.output_tokens, None);
}

#[tokio::test]
async fn anthropic_stream_logs_cumulative_usage() {
    let events = [
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude-3-5-haiku-20241022\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ]
    .map(str::to_string);
    let upstream = MockUpstream::start(move |_| sse_steps(&events)).await;
    let proxy = LoggedProxy::start(&upstream.base(), LogSettings::default()).await;

    let response = client()
        .post(proxy.url("/llm/anthropic/v1/messages"))
        .header("x-api-key", &proxy.token)
        .body(
            r#"{"model":"claude-3-5-haiku-20241022","stream":true,"max_tokens":64,"messages":[]}"#,
        )
        .send()
        .await
        .unwrap();
    response.text().await.unwrap();

    let record = &proxy.rows(1).await[0].record;
    assert_eq!(record.model.as_deref(), Some("claude-3-5-haiku-20241022"));
    assert_eq!(record.input_tokens, Some(25));
    assert_eq!(record.output_tokens, Some(15));
    assert!(record.streamed);
}

#[tokio::test]
async fn rejected_request_is_logged_with_its_code() {
    let upstream = MockUpstream::start(|_| respond(200, "application/json", b"{}", &[])).await;
    let proxy = LoggedProxy::start(&upstream.base(), LogSettings::default()).await;

    let response = client()
        .post(proxy.url("/llm/openai/chat/completions?key=AIzaCLIENT-CANARY"))
        .body(CHAT_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let record = &proxy.rows(1).await[0].record;
    assert_eq!(record.status, Some(401));
    assert_eq!(
        record.error_kind.as_ref().map(|kind| kind.as_str()),
        Some("token_invalid")
    );
    assert_eq!(record.path.as_str(), "/llm/openai/chat/completions");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn client_leaving_mid_stream_is_logged_cancelled() {
    let upstream = MockUpstream::start(|_| {
        let mut steps = vec![head(200, &[("content-type", "text/event-stream")])];
        for index in 0..100 {
            steps.push(write(format!("data: {{\"n\":{index}}}\n\n")));
            steps.push(sleep_ms(50));
        }
        steps
    })
    .await;
    let proxy = LoggedProxy::start(&upstream.base(), LogSettings::default()).await;

    let response = proxy
        .chat("/llm/openai/chat/completions", STREAM_BODY)
        .await;
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(stream);

    let record = &proxy.rows(1).await[0].record;
    assert_eq!(
        record.error_kind.as_ref().map(|kind| kind.as_str()),
        Some("client_cancelled")
    );
    assert!(record.streamed);
}

#[tokio::test]
async fn log_file_holds_no_keys_or_tokens() {
    let upstream =
        MockUpstream::start(|_| respond(200, "application/json", COMPLETION.as_bytes(), &[])).await;
    let settings = LogSettings {
        capture_bodies: true,
        ..LogSettings::default()
    };
    let proxy = LoggedProxy::start(&upstream.base(), settings).await;

    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"my key is {OPENAI_KEY}"}}]}}"#
    );
    proxy
        .chat("/llm/openai/chat/completions?key=AIzaCLIENT-CANARY7", &body)
        .await
        .text()
        .await
        .unwrap();
    let rows = proxy.rows(1).await;
    assert!(rows[0].record.request_body.is_some(), "body capture is on");

    let token = proxy.token.clone();
    let dir = proxy.close();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == "tokens.json" {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for canary in [OPENAI_KEY, token.as_str(), "AIzaCLIENT-CANARY7"] {
            let found = bytes
                .windows(canary.len())
                .any(|window| window == canary.as_bytes());
            assert!(!found, "{canary} found in {}", path.display());
        }
    }
}

#[tokio::test]
async fn captured_bodies_never_hold_the_injected_key() {
    // An upstream that quotes its request URL, key parameter included, in
    // its response, as some gateways do in error messages.
    let upstream = MockUpstream::start(|request| {
        let body = format!(
            r#"{{"error":{{"message":"bad request to {}"}}}}"#,
            request.target
        );
        respond(400, "application/json", body.as_bytes(), &[])
    })
    .await;
    let key = "qp-vault+CANARY/0005=";
    let mut providers = providers_at(&upstream.base());
    add_provider(
        &mut providers,
        "gateway",
        &upstream.base(),
        AuthStyle::Query("token".into()),
    );
    let keys = TestKeys::canaries(&[]).with("gateway", "default", key);
    let settings = LogSettings {
        capture_bodies: true,
        ..LogSettings::default()
    };
    let proxy = LoggedProxy::start_with(providers, keys, settings).await;

    let response = proxy.chat("/llm/gateway/v1/chat?alt=1", CHAT_BODY).await;
    assert_eq!(response.status(), 400);
    let echoed = response.text().await.unwrap();
    assert!(
        echoed.contains("CANARY"),
        "the mock must echo the key: {echoed}"
    );

    let rows = proxy.rows(1).await;
    let captured = rows[0]
        .record
        .response_body
        .as_ref()
        .unwrap()
        .as_str()
        .to_string();
    assert!(!captured.contains("CANARY"), "{captured}");
    assert!(captured.contains("[REDACTED]"), "{captured}");

    let dir = proxy.close();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let found = bytes.windows(6).any(|window| window == b"CANARY");
        assert!(!found, "key found in {}", path.display());
    }
}

#[tokio::test]
async fn browser_rejections_are_logged_and_preflights_are_not() {
    let upstream = MockUpstream::start(|_| respond(200, "application/json", b"{}", &[])).await;
    let proxy = LoggedProxy::start(&upstream.base(), LogSettings::default()).await;
    let url = proxy.url("/llm/openai/chat/completions");

    let preflight = client()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let foreign = client()
        .post(&url)
        .header("origin", "https://evil.test")
        .bearer_auth(&proxy.token)
        .body(CHAT_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);

    let rows = proxy.rows(1).await;
    assert_eq!(rows.len(), 1, "the preflight must not be a row");
    let record = &rows[0].record;
    assert_eq!(record.status, Some(403));
    assert_eq!(
        record.error_kind.as_ref().map(|kind| kind.as_str()),
        Some("origin_not_allowed")
    );
    assert_eq!(record.origin.as_deref(), Some("https://evil.test"));
    assert!(upstream.requests().is_empty());
}

// NOTE: a full disk is not simulated here. SQLite reports it as
// SQLITE_FULL, which the writer counts as a write error like the lock
// errors below, but no test fills a file system.
#[tokio::test]
async fn locked_log_database_never_fails_requests() {
    const REQUESTS: usize = 40;
    let upstream =
        MockUpstream::start(|_| respond(200, "application/json", COMPLETION.as_bytes(), &[])).await;
    let settings = LogSettings {
        busy_timeout: Duration::from_millis(50),
        queue_capacity: 8,
        ..LogSettings::default()
    };
    let proxy = LoggedProxy::start(&upstream.base(), settings).await;

    // Another process holds SQLite's write lock for the whole run.
    let path = proxy.dir.as_ref().unwrap().path().join("requests.sqlite3");
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE;").unwrap();

    let mut ok = 0;
    for _ in 0..REQUESTS {
        let response = proxy.chat("/llm/openai/chat/completions", CHAT_BODY).await;
        if response.status() == 200 && response.text().await.unwrap() == COMPLETION {
            ok += 1;
        }
    }
    drop(blocker);
    proxy.log().flush().unwrap();
    let stats = proxy.log().stats();
    println!(
        "locked log: sent {REQUESTS}, correct answers {ok}, rows written {}, lost to errors {}, dropped {}",
        stats.rows_written, stats.write_errors, stats.rows_dropped
    );
    assert_eq!(
        ok, REQUESTS,
        "every request must succeed while the log is locked"
    );
    assert!(stats.write_errors + stats.rows_dropped > 0, "{stats:?}");
    assert_eq!(
        stats.rows_written + stats.write_errors + stats.rows_dropped,
        REQUESTS as u64,
        "every row is written or counted as lost: {stats:?}"
    );
}
