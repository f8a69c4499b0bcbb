//! Client token limits through the proxy: requests and tokens per minute
//! under concurrent load, spend caps across day and month boundaries on an
//! injected clock, spend seeded from a request log, and model allow-lists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::upstream::{head, respond, sleep_ms, write, MockUpstream, Step};
use common::{client, json, providers_at, RecordingSink, TestKeys};
use keyport_core::config::ProxyConfig;
use keyport_core::limits::{Limiter, ManualClock, Period, TokenLimits};
use keyport_core::proxy::{self, KeySlot, ProxyState};
use keyport_core::requestlog::{LogSettings, PriceTable, RequestLog, RequestRecord};
use keyport_core::secret::ExposeSecret;
use keyport_core::tokens::{LiveTokens, TokenStore};
use tokio::sync::oneshot;

const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
/// 9 input and 4 output tokens, priced by the shipped table.
const COMPLETION: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#;
const TOKEN_NAME: &str = "limited";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

async fn completion_upstream() -> MockUpstream {
    MockUpstream::start(|_| respond(200, "application/json", COMPLETION.as_bytes(), &[])).await
}

/// A proxy whose token `limited` has `limits`, on a manual clock.
struct LimitedProxy {
    addr: SocketAddr,
    token: String,
    store: TokenStore,
    tokens: LiveTokens,
    clock: Arc<ManualClock>,
    limiter: Arc<Limiter>,
    sink: Arc<RecordingSink>,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl LimitedProxy {
    async fn start(upstream: &str, limits: TokenLimits, start: DateTime<Utc>) -> Self {
        Self::start_with(upstream, limits, start, |_| {}).await
    }

    async fn start_with(
        upstream: &str,
        limits: TokenLimits,
        start: DateTime<Utc>,
        seed: impl FnOnce(&Limiter),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let mut store = TokenStore::load(&path).unwrap();
        let token = store
            .create(TOKEN_NAME)
            .unwrap()
            .expose_secret()
            .to_string();
        store.set_limits(TOKEN_NAME, Some(limits)).unwrap();
        let tokens = LiveTokens::load(&path).unwrap();
        let keys = KeySlot::new();
        keys.set(Arc::new(TestKeys::canaries(&[])));

        let clock = Arc::new(ManualClock::new(start));
        let prices = Arc::new(PriceTable::shipped().unwrap());
        let limiter = Arc::new(Limiter::new(clock.clone(), Some(prices)));
        seed(&limiter);
        let sink = Arc::new(RecordingSink::default());
        let state = ProxyState::new(
            ProxyConfig::default(),
            providers_at(upstream),
            tokens.clone(),
            keys,
        )
        .unwrap()
        .with_outcome_sink(sink.clone())
        .with_limiter(limiter.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(proxy::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            token,
            store,
            tokens,
            clock,
            limiter,
            sink,
            stop: Some(stop),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn post(&self, path: &str, body: &str) -> reqwest::Response {
        client()
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// Sends a chat request, reads the whole response and waits until its
    /// outcome was recorded, so its usage has been counted.
    async fn chat(&self, body: &str) -> (u16, serde_json::Value) {
        let before = self.sink.outcomes.lock().unwrap().len();
        let response = self.post("/llm/openai/chat/completions", body).await;
        let status = response.status().as_u16();
        let body = json(response).await;
        self.sink.wait_for(before + 1).await;
        (status, body)
    }
}

impl Drop for LimitedProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn rpm(limit: u32) -> TokenLimits {
    TokenLimits {
        requests_per_minute: Some(limit),
        ..TokenLimits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rpm_admits_exactly_the_limit_under_load() {
    let upstream = completion_upstream().await;
    let proxy = LimitedProxy::start(&upstream.base(), rpm(50), Utc::now()).await;

    // One client with a long timeout: 200 connections at once take a while
    // on a loaded two-core machine.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let url = proxy.url("/llm/openai/chat/completions");
        let request = http
            .post(url)
            .bearer_auth(&proxy.token)
            .header("content-type", "application/json")
            .body(CHAT_BODY);
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            status
        }));
    }
    let mut admitted = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.unwrap() {
            200 => admitted += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    println!("rpm 50 under 200 concurrent requests: {admitted} admitted, {limited} rejected");
    assert_eq!(admitted, 50);
    assert_eq!(limited, 150);
    assert_eq!(upstream.requests().len(), 50);
}

#[tokio::test]
async fn retry_after_says_when_the_next_request_passes() {
    let upstream = completion_upstream().await;
    let proxy = LimitedProxy::start(&upstream.base(), rpm(60), Utc::now()).await;
    for _ in 0..60 {
        assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);
    }
    let response = proxy.post("/llm/openai/chat/completions", CHAT_BODY).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let limited = proxy.sink.wait_for(61).await[60].clone();
    assert_eq!(limited.error_code, Some("rate_limit_exceeded"));
    assert_eq!(limited.model.as_deref(), Some("gpt-4o-mini"));

    proxy.clock.advance(Duration::from_millis(999));
    let response = proxy.post("/llm/openai/chat/completions", CHAT_BODY).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");

    proxy.clock.advance(Duration::from_millis(1));
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);

    let slow = LimitedProxy::start(&upstream.base(), rpm(2), Utc::now()).await;
    assert_eq!(slow.chat(CHAT_BODY).await.0, 200);
    assert_eq!(slow.chat(CHAT_BODY).await.0, 200);
    slow.clock.advance(Duration::from_millis(200));
    let response = slow.post("/llm/openai/chat/completions", CHAT_BODY).await;
    assert_eq!(response.status(), 429);
    // The next unit frees up 30 s after the burst, 29.8 s from now.
    assert_eq!(response.headers()["retry-after"], "30");
}

#[tokio::test]
async fn rate_limit_body_has_each_provider_shape() {
    let upstream = completion_upstream().await;
    let proxy = LimitedProxy::start(&upstream.base(), rpm(1), Utc::now()).await;
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);

    let routes = [
        ("/llm/openai/chat/completions", CHAT_BODY),
        (
            "/llm/anthropic/v1/messages",
            r#"{"model":"claude-3-5-haiku-latest","max_tokens":5,"messages":[]}"#,
        ),
        (
            "/llm/google/v1beta/models/gemini-2.5-flash:generateContent",
            r#"{"contents":[]}"#,
        ),
        (
            "/llm/mistral/v1/chat/completions",
            r#"{"model":"mistral-small-latest","messages":[]}"#,
        ),
    ];
    let mut bodies = Vec::new();
    for (path, body) in routes {
        let response = proxy.post(path, body).await;
        assert_eq!(response.status(), 429, "{path}");
        assert_eq!(response.headers()["retry-after"], "60", "{path}");
        bodies.push(json(response).await);
    }
    let [openai, anthropic, google, mistral] = bodies.try_into().unwrap();
    assert_eq!(openai["error"]["code"], "rate_limit_exceeded");
    assert_eq!(openai["error"]["type"], "invalid_request_error");
    assert_eq!(anthropic["type"], "error");
    assert_eq!(anthropic["error"]["type"], "rate_limit_error");
    assert_eq!(google["error"]["code"], 429);
    assert_eq!(google["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(mistral["object"], "error");
    assert_eq!(mistral["code"], "rate_limit_exceeded");
    for body in [&openai, &anthropic, &google, &mistral] {
        let text = body.to_string();
        assert!(text.contains("\\\"limited\\\""), "{text}");
        assert!(text.contains("1 requests per minute"), "{text}");
    }
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn tpm_counts_finished_calls_in_full() {
    let upstream = completion_upstream().await;
    let limits = TokenLimits {
        tokens_per_minute: Some(20),
        ..TokenLimits::default()
    };
    let proxy = LimitedProxy::start(&upstream.base(), limits.clone(), Utc::now()).await;
    let active = limits.validate().unwrap();

    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);
    assert_eq!(proxy.limiter.tokens_in_window(TOKEN_NAME, &active), 13);
    // 13 of 20: still under, so the call that crosses the limit passes.
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);
    assert_eq!(proxy.limiter.tokens_in_window(TOKEN_NAME, &active), 26);

    let response = proxy.post("/llm/openai/chat/completions", CHAT_BODY).await;
    assert_eq!(response.status(), 429);
    // 26 tokens drain at 20 per minute: under 20 again after 18 s and a bit.
    assert_eq!(response.headers()["retry-after"], "19");
    let body = json(response).await;
    assert!(body.to_string().contains("20 tokens per minute"), "{body}");

    proxy.clock.advance(Duration::from_secs(19));
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);
    assert_eq!(upstream.requests().len(), 3);
}

fn sse_with_usage() -> Vec<Step> {
    let mut steps = vec![head(200, &[("content-type", "text/event-stream")])];
    let events = [
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hel\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":12,\"total_tokens\":42}}\n\n",
        "data: [DONE]\n\n",
    ];
    for event in events {
        steps.push(write(event));
        steps.push(sleep_ms(5));
    }
    steps.push(Step::Close);
    steps
}

#[tokio::test]
async fn streamed_call_counts_its_actual_tokens() {
    let upstream = MockUpstream::start(|_| sse_with_usage()).await;
    let limits = TokenLimits {
        tokens_per_minute: Some(1000),
        daily_usd: Some(100.0),
        ..TokenLimits::default()
    };
    let proxy = LimitedProxy::start(&upstream.base(), limits.clone(), Utc::now()).await;
    let body = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let response = proxy.post("/llm/openai/chat/completions", body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    proxy.sink.wait_for(1).await;

    let active = limits.validate().unwrap();
    assert_eq!(proxy.limiter.tokens_in_window(TOKEN_NAME, &active), 42);
    let expected = PriceTable::shipped()
        .unwrap()
        .lookup("openai", "gpt-4o-mini")
        .unwrap()
        .base;
    let cost = (30.0 * expected.input + 12.0 * expected.output) / 1_000_000.0;
    let spent = proxy.limiter.spent(TOKEN_NAME, Period::Day);
    assert!(
        (spent - cost).abs() < 1e-12,
        "spent {spent}, expected {cost}"
    );
}

/// A cap below the cost of one call, so one call reaches it.
const TINY_CAP: f64 = 0.000_001;

#[tokio::test]
async fn daily_cap_rejects_until_the_next_utc_day() {
    let upstream = completion_upstream().await;
    let limits = TokenLimits {
        daily_usd: Some(TINY_CAP),
        ..TokenLimits::default()
    };
    let proxy = LimitedProxy::start(&upstream.base(), limits, at("2026-03-30T23:58:00Z")).await;
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);

    let (status, body) = proxy.chat(CHAT_BODY).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "spend_cap_reached");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"limited\""), "{message}");
    assert!(message.contains("daily spend cap of $0.00"), "{message}");
    assert!(message.contains("2026-03-31 00:00 UTC"), "{message}");

    proxy.clock.advance(Duration::from_secs(119));
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 403);
    proxy.clock.advance(Duration::from_secs(1));
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn monthly_cap_rejects_until_the_next_utc_month() {
    let upstream = completion_upstream().await;
    let limits = TokenLimits {
        monthly_usd: Some(TINY_CAP),
        ..TokenLimits::default()
    };
    let proxy = LimitedProxy::start(&upstream.base(), limits, at("2026-03-30T23:59:00Z")).await;
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);
    let (status, body) = proxy.chat(CHAT_BODY).await;
    assert_eq!(status, 403);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("monthly spend cap"), "{message}");
    assert!(message.contains("2026-04-01 00:00 UTC"), "{message}");

    // A new day in the same month keeps the monthly cap in force.
    proxy.clock.advance(Duration::from_secs(120));
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 403);
    proxy.clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);
}

#[tokio::test]
async fn spend_is_seeded_from_the_request_log() {
    let dir = tempfile::tempdir().unwrap();
    let settings = LogSettings {
        retention_days: 0,
        max_rows: 0,
        ..LogSettings::default()
    };
    let log = RequestLog::open(&dir.path().join("requests.sqlite3"), settings).unwrap();
    let recorder = log.recorder();
    let rows = [
        ("2026-03-15T01:00:00Z", TOKEN_NAME, Some(1.25)),
        ("2026-03-15T02:00:00Z", TOKEN_NAME, None),
        ("2026-03-03T10:00:00Z", TOKEN_NAME, Some(2.0)),
        ("2026-02-28T23:59:59Z", TOKEN_NAME, Some(5.0)),
        ("2026-03-15T03:00:00Z", "other", Some(0.5)),
    ];
    for (time, token, cost) in rows {
        let mut record =
            RequestRecord::new(at(time), "openai", "POST", "/llm/openai/chat/completions");
        record.token_name = Some(token.to_string());
        record.cost_usd = cost;
        record.status = Some(200);
        recorder.record(record);
    }
    log.flush().unwrap();

    let clock = Arc::new(ManualClock::new(at("2026-03-15T12:00:00Z")));
    let limiter = Limiter::new(clock.clone(), None);
    assert_eq!(limiter.seed_from_log(&log).unwrap(), 2);
    assert_eq!(limiter.spent(TOKEN_NAME, Period::Day), 1.25);
    assert_eq!(limiter.spent(TOKEN_NAME, Period::Month), 3.25);
    assert_eq!(limiter.spent("other", Period::Day), 0.5);
    clock.advance(Duration::from_secs(12 * 3600));
    assert_eq!(limiter.spent(TOKEN_NAME, Period::Day), 0.0);
    assert_eq!(limiter.spent(TOKEN_NAME, Period::Month), 3.25);

    // The seeded spend decides admission through the proxy.
    let upstream = completion_upstream().await;
    let limits = TokenLimits {
        daily_usd: Some(1.25),
        ..TokenLimits::default()
    };
    let proxy = LimitedProxy::start_with(
        &upstream.base(),
        limits,
        at("2026-03-15T12:00:00Z"),
        |limiter| {
            limiter.seed_from_log(&log).unwrap();
        },
    )
    .await;
    let (status, body) = proxy.chat(CHAT_BODY).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("spent $1.25"), "{body}");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn cap_set_while_serving_counts_earlier_spend() {
    let upstream = completion_upstream().await;
    let cap = TokenLimits {
        daily_usd: Some(TINY_CAP),
        ..TokenLimits::default()
    };
    // A token without limits, and one with a rate limit but no cap.
    for before in [TokenLimits::default(), rpm(100)] {
        let mut proxy =
            LimitedProxy::start(&upstream.base(), before.clone(), at("2026-03-15T12:00:00Z")).await;
        assert_eq!(proxy.chat(CHAT_BODY).await.0, 200, "{before:?}");

        proxy
            .store
            .set_limits(TOKEN_NAME, Some(cap.clone()))
            .unwrap();
        assert!(proxy.tokens.refresh().unwrap());
        let (status, body) = proxy.chat(CHAT_BODY).await;
        assert_eq!(status, 403, "{before:?}: {body}");
        assert_eq!(body["error"]["code"], "spend_cap_reached", "{before:?}");
        assert!(proxy.limiter.spent(TOKEN_NAME, Period::Day) > 0.0);
    }
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn allow_list_rejects_other_models_before_upstream() {
    let upstream = completion_upstream().await;
    let limits = TokenLimits {
        allow: vec!["openai:gpt-4o-mini*".into(), "anthropic:*".into()],
        ..TokenLimits::default()
    };
    let proxy = LimitedProxy::start(&upstream.base(), limits, Utc::now()).await;

    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);
    let anthropic = proxy
        .post(
            "/llm/anthropic/v1/messages",
            r#"{"model":"claude-3-5-haiku-latest","max_tokens":5,"messages":[]}"#,
        )
        .await;
    assert_eq!(anthropic.status(), 200);
    assert_eq!(upstream.requests().len(), 2);

    let (status, body) = proxy.chat(r#"{"model":"gpt-4o","messages":[]}"#).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert!(body.to_string().contains("gpt-4o"), "{body}");
    // The rejected request's log row names the model it asked for.
    let rejected = proxy.sink.outcomes.lock().unwrap().last().unwrap().clone();
    assert_eq!(rejected.error_code, Some("model_not_allowed"));
    assert_eq!(rejected.model.as_deref(), Some("gpt-4o"));

    let gemini = proxy
        .post(
            "/llm/google/v1beta/models/gemini-2.5-flash:generateContent",
            r#"{"contents":[]}"#,
        )
        .await;
    assert_eq!(gemini.status(), 403);
    let gemini = json(gemini).await;
    assert_eq!(gemini["error"]["status"], "PERMISSION_DENIED");
    assert!(gemini.to_string().contains("gemini-2.5-flash"), "{gemini}");

    let unknown = client()
        .get(proxy.url("/llm/openai/models"))
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 403);
    let unknown = json(unknown).await;
    assert_eq!(unknown["error"]["code"], "model_unknown");
    assert!(unknown.to_string().contains("allow-list"), "{unknown}");

    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn allow_list_forwards_large_bodies_unchanged() {
    let upstream = completion_upstream().await;
    let limits = TokenLimits {
        allow: vec!["openai:gpt-4o-mini".into()],
        ..TokenLimits::default()
    };
    let proxy = LimitedProxy::start(&upstream.base(), limits, Utc::now()).await;
    let filler = "x".repeat(300 * 1024);
    let body =
        format!(r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{filler}"}}]}}"#);
    let (status, _) = proxy.chat(&body).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.single().body, body.as_bytes());

    // The model sits past the 64 KiB that are read, so it is unknown.
    let late =
        format!(r#"{{"messages":[{{"role":"user","content":"{filler}"}}],"model":"gpt-4o-mini"}}"#);
    let (status, body) = proxy.chat(&late).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "model_unknown");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn changed_limits_apply_to_a_running_proxy() {
    let upstream = completion_upstream().await;
    let mut proxy = LimitedProxy::start(&upstream.base(), rpm(100), Utc::now()).await;
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);

    proxy
        .store
        .set_limits(
            TOKEN_NAME,
            Some(TokenLimits {
                allow: vec!["anthropic:*".into()],
                ..TokenLimits::default()
            }),
        )
        .unwrap();
    assert!(proxy.tokens.refresh().unwrap());
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 403);

    proxy.store.set_limits(TOKEN_NAME, None).unwrap();
    assert!(proxy.tokens.refresh().unwrap());
    assert_eq!(proxy.chat(CHAT_BODY).await.0, 200);
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn later_model_field_cannot_pass_the_allow_list() {
    let upstream = completion_upstream().await;
    let limits = TokenLimits {
        allow: vec!["openai:gpt-4o-mini*".into()],
        ..TokenLimits::default()
    };
    let proxy = LimitedProxy::start(&upstream.base(), limits, Utc::now()).await;
    let filler = "x".repeat(200 * 1024);

    // Most JSON parsers keep the last of two equal keys.
    let smuggled = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{filler}"}}],"model":"gpt-4o"}}"#
    );
    let (status, body) = proxy.chat(&smuggled).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert!(body.to_string().contains("gpt-4o"), "{body}");
    assert!(
        upstream.requests().is_empty(),
        "a complete body reached the provider"
    );

    let too_deep = format!(
        r#"{{"model":"gpt-4o-mini","content":"{filler}","x":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let (status, body) = proxy.chat(&too_deep).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model_unknown");
    assert!(upstream.requests().is_empty());

    let short_and_deep = format!(
        r#"{{"model":"gpt-4o-mini","x":{}1{},"model":"gpt-4o"}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let (status, body) = proxy.chat(&short_and_deep).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model_unknown");
    assert!(upstream.requests().is_empty());

    let allowed_twice = format!(
        r#"{{"model":"gpt-4o-mini","content":"{filler}","model":"gpt-4o-mini-2024-07-18"}}"#
    );
    let (status, _) = proxy.chat(&allowed_twice).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.single().body, allowed_twice.as_bytes());
}

/// A proxy whose token may call only `gpt-4o-mini*` on OpenAI and
/// `gemini-2.5-flash` on Google.
async fn mini_only_proxy(upstream: &MockUpstream) -> LimitedProxy {
    let limits = TokenLimits {
        allow: vec![
            "openai:gpt-4o-mini*".into(),
            "google:gemini-2.5-flash".into(),
        ],
        ..TokenLimits::default()
    };
    LimitedProxy::start(&upstream.base(), limits, Utc::now()).await
}

/// Sends `body` to `path` with extra `headers` and returns the status and
/// the error code, if the response is an OpenAI-shaped error.
async fn send_raw(
    proxy: &LimitedProxy,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let mut request = client()
        .post(proxy.url(path))
        .bearer_auth(&proxy.token)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let code = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|body| body["error"]["code"].as_str().map(str::to_string))
        .unwrap_or(text);
    (status, code)
}

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

#[tokio::test]
async fn escaped_model_keys_are_checked() {
    let upstream = completion_upstream().await;
    let proxy = mini_only_proxy(&upstream).await;
    let chat = "/llm/openai/chat/completions";

    for body in [
        r#"{"mod\u0065l":"gpt-4o","messages":[]}"#,
        r#"{"\u006dodel":"gpt-4o","messages":[]}"#,
        r#"{"\u006D\u006F\u0064\u0065\u006C":"gpt-4o"}"#,
        r#"{"model":"gpt-4o-mini","mod\u0065l":"gpt-4o"}"#,
        r#"{"model":"gpt\u002d4o"}"#,
        r#"{"MODEL":"gpt-4o","model":"gpt-4o-mini"}"#,
    ] {
        let (status, code) = send_raw(&proxy, chat, JSON, body.into()).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(code, "model_not_allowed", "{body}");
    }
    assert!(upstream.requests().is_empty());

    // An escaped key that names an allowed model passes unchanged.
    let allowed = r#"{"mod\u0065l":"gpt-4o-mini","messages":[]}"#;
    let (status, _) = send_raw(&proxy, chat, JSON, allowed.into()).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.single().body, allowed.as_bytes());

    // Past the first 64 KiB, the escaped key still ends the body.
    let filler = "x".repeat(200 * 1024);
    let late = format!(r#"{{"model":"gpt-4o-mini","content":"{filler}","mod\u0065l":"gpt-4o"}}"#);
    let (status, code) = send_raw(&proxy, chat, JSON, late.into()).await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_not_allowed");
    assert_eq!(
        upstream.requests().len(),
        1,
        "a complete body reached the provider"
    );
}

#[tokio::test]
async fn every_top_level_model_must_be_allowed() {
    let upstream = completion_upstream().await;
    let proxy = mini_only_proxy(&upstream).await;
    let chat = "/llm/openai/chat/completions";

    // Parsers that keep the first of two equal keys would call gpt-4o.
    let first_wins = r#"{"model":"gpt-4o","messages":[],"model":"gpt-4o-mini"}"#;
    let (status, code) = send_raw(&proxy, chat, JSON, first_wins.into()).await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_not_allowed");

    let null_first = r#"{"model":null,"model":"gpt-4o-mini"}"#;
    let (status, code) = send_raw(&proxy, chat, JSON, null_first.into()).await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_unknown");
    assert!(upstream.requests().is_empty());

    // A nested "model" is not the request's model.
    let nested = r#"{"model":"gpt-4o-mini","metadata":{"model":"gpt-4o"}}"#;
    let (status, _) = send_raw(&proxy, chat, JSON, nested.into()).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn path_and_query_models_do_not_skip_the_body() {
    let upstream = completion_upstream().await;
    let proxy = mini_only_proxy(&upstream).await;
    let body = r#"{"model":"gpt-4o","messages":[]}"#;

    let (status, code) = send_raw(
        &proxy,
        "/llm/openai/chat/completions?model=gpt-4o-mini",
        JSON,
        body.into(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_not_allowed");

    let two_queries = "/llm/openai/chat/completions?model=gpt-4o-mini&mod%65l=gpt-4o";
    let allowed_body = r#"{"model":"gpt-4o-mini"}"#;
    let (status, code) = send_raw(&proxy, two_queries, JSON, allowed_body.into()).await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_not_allowed");

    // Google decodes %3A, so this path calls gemini-2.5-pro whatever the body says.
    let encoded_path = "/llm/google/v1beta/models/gemini-2.5-pro%3AgenerateContent";
    let gemini_body = r#"{"model":"gemini-2.5-flash","contents":[]}"#;
    let (status, _) = send_raw(&proxy, encoded_path, JSON, gemini_body.into()).await;
    assert_eq!(status, 403);

    // A provider that decodes %2F may resolve the `..` and call gemini-2.5-pro.
    for path in [
        "/llm/google/v1beta/models/gemini-2.5-flash%2F..%2Fgemini-2.5-pro:generateContent",
        "/llm/google/v1beta/models/gemini-2.5-flash%2F%2e%2e%5Cgemini-2.5-pro:generateContent",
    ] {
        let (status, _) = send_raw(&proxy, path, JSON, br#"{"contents":[]}"#.to_vec()).await;
        assert_eq!(status, 403, "{path}");
    }

    // Azure takes the model from the deployment in the path.
    let deployment = "/llm/openai/deployments/gpt-4o/chat/completions";
    let (status, code) = send_raw(&proxy, deployment, JSON, allowed_body.into()).await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_not_allowed");
    assert!(upstream.requests().is_empty());

    let gemini = "/llm/google/v1beta/models/gemini-2.5-flash:generateContent";
    let (status, _) = send_raw(&proxy, gemini, JSON, br#"{"contents":[]}"#.to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn bodies_that_cannot_be_checked_are_rejected() {
    use std::io::Write as _;

    let upstream = completion_upstream().await;
    let proxy = mini_only_proxy(&upstream).await;
    let chat = "/llm/openai/chat/completions";

    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(br#"{"model":"gpt-4o"}"#).unwrap();
    let gzip = gzip.finish().unwrap();
    let gzip_headers = [
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    let with_query = "/llm/openai/chat/completions?model=gpt-4o-mini";
    let (status, code) = send_raw(&proxy, with_query, &gzip_headers, gzip).await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_unknown");

    // A multipart parser skips the JSON preamble and reads the form field.
    let multipart = b"{\"model\":\"gpt-4o-mini\"}\r\n--XYZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o\r\n--XYZ--\r\n";
    let form_type = [("content-type", "multipart/form-data; boundary=XYZ")];
    let transcriptions = "/llm/openai/audio/transcriptions";
    let (status, code) = send_raw(&proxy, transcriptions, &form_type, multipart.to_vec()).await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_unknown");
    let (status, code) = send_raw(&proxy, transcriptions, JSON, multipart.to_vec()).await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_unknown");

    let urlencoded = r#"{"model":"gpt-4o-mini","x":"&model=gpt-4o&"}"#;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, code) = send_raw(&proxy, chat, &form, urlencoded.into()).await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_unknown");

    // A provider that reads the last Content-Type would parse a form.
    let mut two_types = client()
        .post(proxy.url(chat))
        .bearer_auth(&proxy.token)
        .body(urlencoded);
    for value in ["application/json", "application/x-www-form-urlencoded"] {
        two_types = two_types.header(reqwest::header::CONTENT_TYPE, value);
    }
    let response = two_types.send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(json(response).await["error"]["code"], "model_unknown");

    let trailing = r#"{"model":"gpt-4o-mini"}{"model":"gpt-4o"}"#;
    let (status, code) = send_raw(&proxy, chat, JSON, trailing.into()).await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_unknown");
    assert!(upstream.requests().is_empty());

    // A byte order mark is skipped, as Python's json does for bytes.
    let bom_allowed = b"\xEF\xBB\xBF{\"model\":\"gpt-4o-mini\"}".to_vec();
    let (status, _) = send_raw(&proxy, chat, JSON, bom_allowed).await;
    assert_eq!(status, 200);
    let bom_other = b"\xEF\xBB\xBF{\"model\":\"gpt-4o\"}".to_vec();
    let (status, code) = send_raw(&proxy, chat, JSON, bom_other).await;
    assert_eq!(status, 403);
    assert_eq!(code, "model_not_allowed");
    assert_eq!(upstream.requests().len(), 1);
}
