//! WebSocket upgrades: token checks on the handshake (header, query or
//! browser subprotocol), the vault key on the upstream handshake, frames
//! relayed byte for byte in both directions, and both legs closing together.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ws::{WsUpstream, SERVER_HELLO, SERVER_PING};
use common::{count, Proxy, Setup, TestKeys, GOOGLE_KEY, OPENAI_KEY, ORIGIN};
use futures_util::{SinkExt, StreamExt};
use keyport_core::providers::AuthStyle;
use keyport_core::proxy::OutcomeEnd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const REALTIME: &str = "/llm/openai/realtime?model=gpt-realtime";
const GEMINI_LIVE: &str =
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

type Client = WebSocketStream<TcpStream>;

/// Opens a WebSocket to the proxy with extra handshake headers.
async fn connect(
    proxy: &Proxy,
    path: &str,
    headers: &[(&'static str, String)],
) -> Result<(Client, http::Response<Option<Vec<u8>>>), tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{}{path}", proxy.addr)
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    tokio_tungstenite::client_async(request, stream).await
}

/// Reads the next message within 2 s.
async fn next(client: &mut Client) -> Message {
    tokio::time::timeout(Duration::from_secs(2), client.next())
        .await
        .expect("no WebSocket message within 2 s")
        .expect("the WebSocket ended")
        .expect("the WebSocket failed")
}

/// Waits up to 2 s for the client's stream to end, cleanly or not, and
/// returns when it did.
async fn wait_for_end(client: &mut Client) -> Instant {
    tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = client.next().await {}
    })
    .await
    .expect("the client leg stayed open 2 s after the upstream left");
    Instant::now()
}

async fn realtime_proxy() -> (WsUpstream, Proxy) {
    let upstream = WsUpstream::start(&[OPENAI_KEY, GOOGLE_KEY]).await;
    let proxy = Setup::new(&upstream.base()).start().await;
    (upstream, proxy)
}

#[tokio::test]
async fn realtime_session_relays_every_frame_kind() {
    let (upstream, proxy) = realtime_proxy().await;
    let headers = [
        ("authorization", format!("Bearer {}", proxy.token)),
        ("sec-websocket-protocol", "realtime".to_string()),
        ("openai-beta", "realtime=v1".to_string()),
    ];
    let (mut client, response) = connect(&proxy, REALTIME, &headers).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["sec-websocket-protocol"], "realtime");
    assert_eq!(response.headers()["x-request-id"], "req_ws_1");

    let session = upstream.session(0).await;
    assert_eq!(session.target, "/v1/realtime?model=gpt-realtime");
    assert_eq!(
        session.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(session.header("openai-beta"), Some("realtime=v1"));
    assert_eq!(session.header("sec-websocket-protocol"), Some("realtime"));
    assert_eq!(
        session.header("host"),
        Some(upstream.addr.to_string().as_str())
    );
    let head = session.head_text();
    assert_eq!(count(&head, OPENAI_KEY), 1, "{head}");
    assert_eq!(count(&head, &proxy.token), 0, "{head}");

    // Text out, echo back, then the provider's own text and ping.
    let update = r#"{"type":"session.update"}"#;
    client.send(Message::text(update)).await.unwrap();
    assert_eq!(next(&mut client).await, Message::text(update));
    assert_eq!(next(&mut client).await, Message::text(SERVER_HELLO));
    assert_eq!(next(&mut client).await, Message::Ping(SERVER_PING.into()));

    // A 32 KiB binary frame, larger than one relay read.
    let audio: Vec<u8> = (0..32 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    client
        .send(Message::Binary(audio.clone().into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut client).await,
        Message::Binary(audio.clone().into())
    );

    // The client's ping is answered by the provider, and only by it.
    client
        .send(Message::Ping(b"cli-ping".as_slice().into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut client).await,
        Message::Pong(b"cli-ping".as_slice().into())
    );

    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    };
    client.send(Message::Close(Some(frame))).await.unwrap();
    match next(&mut client).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the provider's close, got {other:?}"),
    }
    wait_for_end(&mut client).await;

    let received = session.received();
    let pongs: Vec<&Message> = received
        .iter()
        .filter(|message| matches!(message, Message::Pong(_)))
        .collect();
    assert_eq!(pongs, [&Message::Pong(SERVER_PING.into())]);
    assert!(received.contains(&Message::Binary(audio.into())));
    assert!(received.contains(&Message::Ping(b"cli-ping".as_slice().into())));
    match received.last() {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Normal);
            assert_eq!(frame.reason.as_str(), "done");
        }
        other => panic!("the provider did not receive the close: {other:?}"),
    }

    let outcomes = proxy.sink.wait_for(1).await;
    assert_eq!(outcomes[0].status.map(|status| status.as_u16()), Some(101));
    assert_eq!(outcomes[0].end, OutcomeEnd::Completed);
    assert_eq!(outcomes[0].token_name.as_deref(), Some("test-client"));
    assert!(outcomes[0].request_bytes > 32 * 1024);
    assert!(outcomes[0].response_bytes > 32 * 1024);
}

/// Builds a client frame: FIN bit, opcode, masked payload.
fn masked_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![(u8::from(fin) << 7) | opcode];
    if payload.len() < 126 {
        frame.push(0x80 | payload.len() as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ mask[i % 4]),
    );
    frame
}

/// Builds a server frame: FIN set, unmasked.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode, payload.len() as u8];
    frame.extend_from_slice(payload);
    frame
}

/// Reads an HTTP head byte by byte, so no frame byte after it is consumed.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = stream.read_u8().await.unwrap();
        head.push(byte);
    }
    String::from_utf8(head).unwrap()
}

fn head_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

/// A provider that does the handshake by hand, records the next
/// `expected` raw bytes, then writes `reply` and closes the connection.
async fn raw_ws_upstream(
    expected: usize,
    reply: Vec<u8>,
) -> (
    SocketAddr,
    tokio::task::JoinHandle<(String, Vec<u8>, Instant)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let head = read_head(&mut stream).await;
        let key = head_value(&head, "sec-websocket-key").unwrap();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: realtime\r\n\r\n"
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        let mut received = vec![0u8; expected];
        stream.read_exact(&mut received).await.unwrap();
        stream.write_all(&reply).await.unwrap();
        stream.shutdown().await.unwrap();
        let closed = Instant::now();
        (head, received, closed)
    });
    (addr, task)
}

#[tokio::test]
async fn realtime_usage_is_summed_from_provider_events() {
    let (_upstream, proxy) = realtime_proxy().await;
    let headers = [
        ("authorization", format!("Bearer {}", proxy.token)),
        ("sec-websocket-protocol", "realtime".to_string()),
    ];
    let (mut client, _) = connect(&proxy, REALTIME, &headers).await.unwrap();
    let created = r#"{"type":"response.created","response":{"id":"resp_1"}}"#;
    let done = |input: u64, output: u64, cached: u64| {
        format!(
            r#"{{"type":"response.done","response":{{"status":"completed","usage":{{"input_tokens":{input},"output_tokens":{output},"input_token_details":{{"cached_tokens":{cached}}}}}}}}}"#
        )
    };
    // The mock echoes every message, so these come back from the provider's
    // side, where the proxy reads usage. The client's own copies do not count.
    let events = [
        created.to_string(),
        done(120, 30, 100),
        created.to_string(),
        done(40, 9, 0),
    ];
    for (index, event) in events.iter().enumerate() {
        client.send(Message::text(event.as_str())).await.unwrap();
        assert_eq!(next(&mut client).await, Message::text(event.as_str()));
        if index == 0 {
            assert_eq!(next(&mut client).await, Message::text(SERVER_HELLO));
            assert_eq!(next(&mut client).await, Message::Ping(SERVER_PING.into()));
        }
    }
    client.send(Message::Close(None)).await.unwrap();
    wait_for_end(&mut client).await;

    let outcomes = proxy.sink.wait_for(1).await;
    let usage = outcomes[0]
        .usage
        .clone()
        .expect("no usage recorded for the session");
    assert_eq!(usage.input_tokens, Some(160));
    assert_eq!(usage.output_tokens, Some(39));
    assert_eq!(usage.cached_tokens, Some(100));
    assert_eq!(usage.note, None);
}

#[tokio::test]
async fn session_bytes_count_as_activity() {
    let (_upstream, proxy) = realtime_proxy().await;
    let headers = [
        ("authorization", format!("Bearer {}", proxy.token)),
        ("sec-websocket-protocol", "realtime".to_string()),
    ];
    let (mut client, _) = connect(&proxy, REALTIME, &headers).await.unwrap();
    // The mock echoes the first message, then sends its hello and a ping.
    client.send(Message::text("{}")).await.unwrap();
    assert_eq!(next(&mut client).await, Message::text("{}"));
    assert_eq!(next(&mut client).await, Message::text(SERVER_HELLO));
    assert_eq!(next(&mut client).await, Message::Ping(SERVER_PING.into()));
    assert_eq!(proxy.activity.in_flight(), 1);

    // Without bytes the stamp stays; a message and its echo move it.
    for _ in 0..2 {
        let before = proxy.activity.last_activity().unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            proxy.activity.last_activity(),
            Some(before),
            "stamped without bytes"
        );
        client.send(Message::text("{}")).await.unwrap();
        assert_eq!(next(&mut client).await, Message::text("{}"));
        let after = proxy.activity.last_activity().unwrap();
        assert!(
            after > before,
            "no activity stamped for the session's bytes"
        );
    }
    assert_eq!(proxy.activity.in_flight(), 1);

    drop(client);
    tokio::time::timeout(Duration::from_secs(2), async {
        while proxy.activity.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the session stayed open 2 s after the client left");
}

#[tokio::test]
async fn raw_frames_cross_byte_for_byte() {
    let mut sent = masked_frame(false, 0x1, b"hel", [1, 2, 3, 4]);
    sent.extend(masked_frame(true, 0x0, b"lo", [5, 6, 7, 8]));
    sent.extend(masked_frame(true, 0x9, b"p1", [9, 9, 9, 9]));
    let binary: Vec<u8> = (0..300).map(|i| (i % 256) as u8).collect();
    sent.extend(masked_frame(true, 0x2, &binary, [0xde, 0xad, 0xbe, 0xef]));
    sent.extend(masked_frame(true, 0x8, b"\x03\xe8bye", [1, 1, 1, 1]));
    let mut reply = server_frame(0x1, b"hi");
    reply.extend(server_frame(0x9, b"sp"));
    reply.extend(server_frame(0xA, b"p1"));
    reply.extend(server_frame(0x8, b"\x03\xe8bye"));

    let (addr, upstream) = raw_ws_upstream(sent.len(), reply.clone()).await;
    let proxy = Setup::new(&format!("http://{addr}")).start().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!(
        "GET {REALTIME} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: realtime\r\nAuthorization: Bearer {}\r\n\r\n",
        proxy.addr, proxy.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The RFC 6455 example: this accept value belongs to that key.
    assert_eq!(
        head_value(&head, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(
        head_value(&head, "sec-websocket-protocol"),
        Some("realtime")
    );
    assert_eq!(head_value(&head, "upgrade"), Some("websocket"));

    stream.write_all(&sent).await.unwrap();
    let mut received = vec![0u8; reply.len()];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut received))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received, reply, "server frames changed on the way");

    let (upstream_head, upstream_received, upstream_closed) = upstream.await.unwrap();
    assert_eq!(upstream_received, sent, "client frames changed on the way");
    // The proxy uses its own key upstream, never the client's.
    assert!(!upstream_head.contains("dGhlIHNhbXBsZSBub25jZQ=="));
    assert_eq!(
        head_value(&upstream_head, "authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );

    // The provider closed its connection; the client's follows within 1 s.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut rest))
        .await
        .expect("client leg still open 1 s after the provider closed")
        .unwrap();
    assert!(rest.is_empty());
    assert!(upstream_closed.elapsed() <= Duration::from_secs(1));
}

#[tokio::test]
async fn browser_subprotocol_token_is_replaced_by_the_key() {
    let (upstream, proxy) = realtime_proxy().await;
    let protocols = format!(
        "realtime, openai-insecure-api-key.{}, openai-beta.realtime-v1",
        proxy.token
    );
    let headers = [
        ("sec-websocket-protocol", protocols),
        ("origin", ORIGIN.to_string()),
    ];
    let (mut client, response) = connect(&proxy, REALTIME, &headers).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "realtime");
    client.send(Message::text("hi")).await.unwrap();
    assert_eq!(next(&mut client).await, Message::text("hi"));

    let session = upstream.session(0).await;
    assert_eq!(
        session.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(
        session.header("sec-websocket-protocol"),
        Some("realtime, openai-beta.realtime-v1")
    );
    assert_eq!(session.header("origin"), None);
    let head = session.head_text();
    assert_eq!(count(&head, &proxy.token), 0, "{head}");
    assert!(!head.contains("insecure"), "{head}");

    // An unknown token in the subprotocol is rejected before any upstream call.
    let headers = [(
        "sec-websocket-protocol",
        "realtime, openai-insecure-api-key.sk-client-PLACEHOLDER".to_string(),
    )];
    let error = connect(&proxy, REALTIME, &headers).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
        panic!("expected an HTTP refusal, got {error:?}");
    };
    assert_eq!(response.status(), 401);
    let body = String::from_utf8(response.body().clone().unwrap()).unwrap();
    assert!(body.contains("token_invalid"), "{body}");
    assert!(!body.contains("PLACEHOLDER"), "{body}");

    // Pages on other origins cannot open a session at all.
    let headers = [
        ("authorization", format!("Bearer {}", proxy.token)),
        ("origin", "https://evil.test".to_string()),
    ];
    let error = connect(&proxy, REALTIME, &headers).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
        panic!("expected an HTTP refusal, got {error:?}");
    };
    assert_eq!(response.status(), 403);
    assert_eq!(upstream.sessions().len(), 1);
    assert!(upstream.refused().is_empty());
}

#[tokio::test]
async fn gemini_live_gets_the_key_in_its_auth_style() {
    const QUERY_KEY: &str = "live-query-CANARY0009";
    let upstream = WsUpstream::start(&[GOOGLE_KEY, QUERY_KEY]).await;
    let mut setup = Setup::new(&upstream.base());
    common::add_provider(
        &mut setup.providers,
        "livequery",
        &upstream.base(),
        AuthStyle::Query("key".into()),
    );
    setup.keys = TestKeys::canaries(&[]).with("livequery", "default", QUERY_KEY);
    let proxy = setup.start().await;

    // Browsers put the key in the query string: the Google SDKs do so for Live.
    let path = format!("/llm/google{GEMINI_LIVE}?key={}&alt=x", proxy.token);
    let (mut client, _) = connect(&proxy, &path, &[]).await.unwrap();
    client.send(Message::text("{\"setup\":{}}")).await.unwrap();
    assert_eq!(next(&mut client).await, Message::text("{\"setup\":{}}"));
    let session = upstream.session(0).await;
    assert_eq!(session.target, format!("{GEMINI_LIVE}?alt=x"));
    assert_eq!(session.header("x-goog-api-key"), Some(GOOGLE_KEY));
    assert_eq!(session.header("authorization"), None);
    assert_eq!(count(&session.head_text(), &proxy.token), 0);

    let headers = [("x-goog-api-key", proxy.token.clone())];
    let path = format!("/llm/livequery{GEMINI_LIVE}");
    let (mut client, _) = connect(&proxy, &path, &headers).await.unwrap();
    client.send(Message::text("ping")).await.unwrap();
    assert_eq!(next(&mut client).await, Message::text("ping"));
    let session = upstream.session(1).await;
    assert_eq!(session.target, format!("{GEMINI_LIVE}?key={QUERY_KEY}"));
    assert_eq!(session.header("x-goog-api-key"), None);
    assert_eq!(count(&session.head_text(), &proxy.token), 0);
}

#[tokio::test]
async fn dropped_leg_closes_the_other_within_a_second() {
    let (upstream, proxy) = realtime_proxy().await;
    let headers = [("authorization", format!("Bearer {}", proxy.token))];

    // The client vanishes without a close frame.
    let (mut client, _) = connect(&proxy, REALTIME, &headers).await.unwrap();
    client.send(Message::text("hi")).await.unwrap();
    assert_eq!(next(&mut client).await, Message::text("hi"));
    let session = upstream.session(0).await;
    drop(client);
    let dropped = Instant::now();
    for _ in 0..100 {
        if session.ended_at().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ended = session
        .ended_at()
        .expect("upstream leg still open 1 s after the client left");
    assert!(ended.duration_since(dropped) <= Duration::from_secs(1));

    // The provider vanishes without a close frame.
    let (mut client, _) = connect(&proxy, REALTIME, &headers).await.unwrap();
    client.send(Message::text("please-drop")).await.unwrap();
    let session = upstream.session(1).await;
    let ended = wait_for_end(&mut client).await;
    let upstream_ended = session.ended_at().unwrap();
    assert!(ended.duration_since(upstream_ended) <= Duration::from_secs(1));

    // A close from the provider reaches the client with its code.
    let (mut client, _) = connect(&proxy, REALTIME, &headers).await.unwrap();
    client.send(Message::text("please-close")).await.unwrap();
    match next(&mut client).await {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Normal);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected the provider's close, got {other:?}"),
    }
    wait_for_end(&mut client).await;

    let outcomes = proxy.sink.wait_for(3).await;
    for outcome in &outcomes {
        assert_eq!(outcome.status.map(|status| status.as_u16()), Some(101));
    }
}

#[tokio::test]
async fn refused_or_invalid_handshakes_get_http_errors() {
    let (upstream, proxy) = realtime_proxy().await;
    let base = format!(
        "Host: {}\nConnection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nAuthorization: Bearer {}",
        proxy.addr, proxy.token
    );

    // The provider's refusal passes through unchanged.
    let head =
        format!("GET /llm/openai/realtime-denied HTTP/1.1\n{base}\nSec-WebSocket-Version: 13");
    let response = common::raw::request(proxy.addr, &head, b"").await;
    assert_eq!(response.status, 403);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert!(response.body_text().contains("model not available"));
    assert_eq!(
        upstream.refused(),
        [("/v1/realtime-denied".to_string(), 403)]
    );

    // A handshake the proxy cannot complete is rejected before any upstream call.
    let head = format!("GET {REALTIME} HTTP/1.1\n{base}\nSec-WebSocket-Version: 8");
    let response = common::raw::request(proxy.addr, &head, b"").await;
    assert_eq!(response.status, 400);
    assert!(response.body_text().contains("invalid_websocket_handshake"));

    // Without a token nothing reaches the provider either.
    let head = format!(
        "GET {REALTIME} HTTP/1.1\nHost: {}\nConnection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        proxy.addr
    );
    let response = common::raw::request(proxy.addr, &head, b"").await;
    assert_eq!(response.status, 401);
    assert_eq!(upstream.refused().len(), 1);
    assert!(upstream.sessions().is_empty());
}

#[tokio::test]
async fn shutdown_closes_open_sessions() {
    let (upstream, proxy) = realtime_proxy().await;
    let headers = [("authorization", format!("Bearer {}", proxy.token))];
    let (mut client, _) = connect(&proxy, REALTIME, &headers).await.unwrap();
    client.send(Message::text("hi")).await.unwrap();
    assert_eq!(next(&mut client).await, Message::text("hi"));
    let session = upstream.session(0).await;

    let started = Instant::now();
    proxy.stop().await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1_500), "{elapsed:?}");
    assert!(elapsed <= Duration::from_secs(4), "{elapsed:?}");
    wait_for_end(&mut client).await;
    for _ in 0..100 {
        if session.ended_at().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(session.ended_at().is_some(), "upstream leg left open");
}

#[tokio::test]
async fn silent_session_closes_after_idle_timeout() {
    let upstream = WsUpstream::start(&[OPENAI_KEY, GOOGLE_KEY]).await;
    let mut setup = Setup::new(&upstream.base());
    let idle = Duration::from_millis(400);
    setup.config.upstream_idle_timeout = idle;
    let proxy = setup.start().await;
    let headers = [("authorization", format!("Bearer {}", proxy.token))];
    let (mut client, _) = connect(&proxy, REALTIME, &headers).await.unwrap();

    // Messages more often than the timeout keep the session open for
    // several timeouts.
    let open_since = Instant::now();
    let mut last_message = open_since;
    let mut round = 0;
    while open_since.elapsed() < idle * 3 {
        let text = format!("keep-{round}");
        client.send(Message::text(text.clone())).await.unwrap();
        // The upstream greets and pings once, after its first echo.
        loop {
            match next(&mut client).await {
                Message::Text(reply) if reply.as_str() == text => break,
                Message::Text(reply) if reply.as_str() == SERVER_HELLO => {}
                Message::Ping(_) => {}
                other => panic!("unexpected message {other:?}"),
            }
        }
        last_message = Instant::now();
        tokio::time::sleep(idle / 4).await;
        round += 1;
    }

    let ended = wait_for_end(&mut client).await;
    let silent_for = ended.duration_since(last_message);
    assert!(silent_for >= idle, "closed after {silent_for:?} of silence");
    let session = upstream.session(0).await;
    for _ in 0..100 {
        if session.ended_at().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(session.ended_at().is_some(), "upstream leg still open");

    let outcomes = proxy.sink.wait_for(1).await;
    assert_eq!(outcomes[0].end, OutcomeEnd::UpstreamIdleTimeout);
    assert_eq!(outcomes[0].status.map(|status| status.as_u16()), Some(101));
}
