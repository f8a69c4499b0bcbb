//! Secrets never reach the log or the proxy's own error bodies, with every
//! crate logging at TRACE. This binary installs a global subscriber, so its
//! tests share one capture buffer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::upstream::{head, ok_json, respond, sleep_ms, write, MockUpstream, Step};
use common::{client, Setup, TestKeys, ANTHROPIC_KEY, GOOGLE_KEY, MISTRAL_KEY, OPENAI_KEY};
use keyport_core::providers::AuthStyle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Key of a custom provider that sends it in the query string.
const QUERY_KEY: &str = "query-vault-CANARY0008";

const CLIENT_CANARIES: [&str; 7] = [
    "sk-client-CANARY-A1",
    "sk-ant-client-CANARY-B2",
    "AIzaCLIENT-CANARY-C3",
    "CANARY-D4",
    "CANARY-E5",
    // `Q0FOQVJZLUY2` is base64 of "CANARY-F6".
    "Q0FOQVJZLUY2",
    "CANARY-Q7",
];

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the TRACE subscriber (and the `log` bridge) once per process.
fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish()
                .try_init()
                .unwrap();
            capture
        })
        .clone()
}

fn logs(capture: &Capture) -> String {
    String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned()
}

/// Adds the valid token in one place and canaries in all the others.
fn with_canaries(builder: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
    builder
        .header("authorization", format!("Bearer {token}"))
        .header("x-api-key", "sk-ant-client-CANARY-B2")
        .header("x-goog-api-key", "AIzaCLIENT-CANARY-C3")
        .header("api-key", "CANARY-D4")
        .header("cookie", "s=CANARY-E5")
        .header("proxy-authorization", "Basic Q0FOQVJZLUY2")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_and_error_bodies() {
    let capture = capture();
    let upstream = MockUpstream::start(|request| {
        if request.target.contains("stream") {
            let mut steps = vec![head(200, &[("content-type", "text/event-stream")])];
            for i in 0..30 {
                steps.push(write(format!("data: {{\"n\":{i}}}\n\n")));
                steps.push(sleep_ms(100));
            }
            steps.push(Step::Close);
            steps
        } else if request.target.contains("bad-key") {
            respond(
                401,
                "application/json",
                br#"{"error":{"message":"Incorrect API key provided: sk-vaul************0001","code":"invalid_api_key"}}"#,
                &[],
            )
        } else if request.target.contains("slow") {
            let mut steps = vec![sleep_ms(3_000)];
            steps.extend(ok_json("{}"));
            steps
        } else {
            ok_json(r#"{"choices":[{"message":{"content":"PROMPT-ANSWER"}}]}"#)
        }
    })
    .await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);

    let mut setup = Setup::new(&upstream.base());
    common::add_provider(
        &mut setup.providers,
        "deadquery",
        &dead,
        AuthStyle::Query("key".into()),
    );
    common::add_provider(&mut setup.providers, "deadheader", &dead, AuthStyle::Bearer);
    setup.keys = TestKeys::canaries(&[])
        .with("deadquery", "default", QUERY_KEY)
        .with("deadheader", "default", OPENAI_KEY);
    setup.config.upstream_response_timeout = Duration::from_secs(1);
    setup.config.max_request_body_bytes = 64 * 1024;
    let proxy = setup.start().await;
    let http = client();
    let token = proxy.token.clone();
    let mut proxy_bodies = Vec::new();

    // Success, with a prompt and a query credential.
    let url = proxy.url("/llm/openai/chat/completions?key=CANARY-Q7&marker=QUERY-MARKER");
    let response = with_canaries(http.post(url), &token)
        .body(r#"{"messages":[{"role":"user","content":"PROMPT-CANARY"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("PROMPT-ANSWER"));

    // Malformed JSON passes through like any body.
    let response = with_canaries(http.post(proxy.url("/llm/anthropic/v1/messages")), &token)
        .body("{not json PROMPT-CANARY")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The provider rejects the key and echoes a masked form of it.
    let response = with_canaries(http.post(proxy.url("/llm/openai/bad-key")), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // Proxy-made errors: unreachable (key in header, key in query), too
    // large, slow upstream, invalid token, locked vault.
    for path in ["/llm/deadquery/v1/x?alt=sse", "/llm/deadheader/v1/x"] {
        let response = with_canaries(http.post(proxy.url(path)), &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502, "{path}");
        proxy_bodies.push(response.text().await.unwrap());
    }
    let response = with_canaries(
        http.post(proxy.url("/llm/google/v1beta/models/g:generateContent")),
        &token,
    )
    .body(vec![b'x'; 100 * 1024])
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 413);
    proxy_bodies.push(response.text().await.unwrap());
    let response = with_canaries(http.post(proxy.url("/llm/mistral/v1/slow")), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    proxy_bodies.push(response.text().await.unwrap());
    let response = with_canaries(
        http.post(proxy.url("/llm/openai/chat/completions")),
        "sk-client-CANARY-A1",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 401);
    proxy_bodies.push(response.text().await.unwrap());
    proxy.keys.clear();
    let response = with_canaries(http.post(proxy.url("/llm/anthropic/v1/messages")), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    proxy_bodies.push(response.text().await.unwrap());
    proxy.keys.set(Arc::new(TestKeys::canaries(&[])));

    // The client leaves in the middle of a stream.
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "POST /llm/openai/stream?key=CANARY-Q7 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nx-api-key: sk-ant-client-CANARY-B2\r\nContent-Length: 2\r\n\r\n{{}}",
        proxy.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = [0u8; 1024];
    assert!(stream.read(&mut buffer).await.unwrap() > 0);
    drop(stream);

    let outcomes = proxy.sink.wait_for(10).await;
    assert!(outcomes
        .iter()
        .any(|outcome| outcome.end == keyport_core::proxy::OutcomeEnd::ClientCancelled));
    proxy.stop().await.unwrap();

    let text = logs(&capture);
    assert!(text.contains("proxy started"), "capture is not working");
    assert!(text.contains("proxy stopped"));
    assert!(
        text.contains("token=test-client"),
        "request lines lack the token name"
    );
    assert!(text.contains("path=/llm/openai/chat/completions"));
    let mut secrets = vec![
        OPENAI_KEY,
        ANTHROPIC_KEY,
        GOOGLE_KEY,
        MISTRAL_KEY,
        QUERY_KEY,
        token.as_str(),
    ];
    secrets.extend(CLIENT_CANARIES);
    for secret in &secrets {
        assert!(!text.contains(secret), "{secret} appears in the log");
        for body in &proxy_bodies {
            assert!(!body.contains(secret), "{secret} appears in {body}");
        }
    }
    for private in [
        "QUERY-MARKER",
        "PROMPT-CANARY",
        "PROMPT-ANSWER",
        "0001\"",
        "alt=sse",
    ] {
        assert!(!text.contains(private), "{private} appears in the log");
    }
}

#[tokio::test]
async fn idle_timeout_is_logged() {
    let capture = capture();
    let upstream = MockUpstream::start(|_| {
        vec![
            head(200, &[("content-type", "text/event-stream")]),
            write("data: {}\n\n"),
            sleep_ms(4_000),
        ]
    })
    .await;
    let mut setup = Setup::new(&upstream.base());
    setup.config.upstream_idle_timeout = Duration::from_secs(1);
    let proxy = setup.start().await;
    let response = client()
        .post(proxy.url("/llm/openai/idle-check"))
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    assert!(response.bytes().await.is_err(), "idle stream ended cleanly");
    let outcomes = proxy.sink.wait_for(1).await;
    assert_eq!(
        outcomes[0].end,
        keyport_core::proxy::OutcomeEnd::UpstreamIdleTimeout
    );
    let text = logs(&capture);
    let line = text
        .lines()
        .find(|line| line.contains("upstream idle timeout"))
        .expect("no idle timeout line");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("/llm/openai/idle-check"), "{line}");
}

#[tokio::test]
async fn websocket_credentials_stay_out_of_logs() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    const CANARY: &str = "sk-client-CANARY-WS9";
    let capture = capture();
    let upstream = common::ws::WsUpstream::start(&[OPENAI_KEY]).await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let connect = |credential: String| {
        let mut request = format!("ws://{}/llm/openai/realtime?model=m", proxy.addr)
            .into_client_request()
            .unwrap();
        let protocols = format!("realtime, openai-insecure-api-key.{credential}");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
        async move {
            let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
            tokio_tungstenite::client_async(request, stream).await
        }
    };

    let (mut socket, _) = connect(proxy.token.clone()).await.unwrap();
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("hello")
    );
    socket.close(None).await.unwrap();
    while let Some(Ok(_)) = socket.next().await {}
    assert!(connect(CANARY.to_string()).await.is_err());

    let outcomes = proxy.sink.wait_for(2).await;
    assert!(outcomes
        .iter()
        .any(|outcome| outcome.status.map(|s| s.as_u16()) == Some(101)));
    // The test's own WebSocket client traces the handshake it sends; only
    // what the proxy and the libraries it drives write counts.
    let text: String = logs(&capture)
        .lines()
        .filter(|line| !line.contains(" tungstenite::handshake::client:"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("path=/llm/openai/realtime status=101"),
        "no request line for the session"
    );
    for secret in [CANARY, proxy.token.as_str(), OPENAI_KEY, "insecure-api-key"] {
        assert!(!text.contains(secret), "{secret} appears in the log");
    }
}
