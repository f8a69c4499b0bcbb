//! Faults and load, all on 127.0.0.1 and bounded in count and time:
//! providers that reset, stall, send broken framing or oversized headers;
//! 1,000 concurrent clients; slow, malformed and vanishing clients; and the
//! vault locking with requests in flight. Each test prints how many
//! requests it sent and checks that every one got the right response or
//! the right error, and that the proxy kept serving afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::raw::{self, RawResponse};
use common::upstream::{head, ok_json, sleep_ms, write, MockUpstream, Step};
use common::{client, Proxy, Setup};
use keyport_core::proxy::OutcomeEnd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const SSE: &str = "text/event-stream";
const CHAT: &str = "/llm/openai/chat/completions";

fn event(i: usize) -> String {
    format!("data: {{\"n\":{i}}}\n\n")
}

/// Sends one POST with the token and reads the whole response, for at
/// most 10 s.
async fn post(proxy: &Proxy, path: &str) -> RawResponse {
    let head = format!(
        "POST {path} HTTP/1.1\nHost: {}\nAuthorization: Bearer {}\nContent-Length: 2",
        proxy.addr, proxy.token
    );
    raw::request(proxy.addr, &head, b"{}").await
}

/// Asserts the proxy still serves a normal request.
async fn assert_still_serving(proxy: &Proxy) {
    let response = post(proxy, &format!("{CHAT}?ok")).await;
    assert_eq!(response.status, 200, "the proxy stopped serving");
    assert!(response.complete);
}

/// Reads everything until the peer closes, for at most `limit`, and
/// returns the bytes; None if the connection stayed open.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| received)
}

/// Returns the status code of the first response in `bytes`, if any.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A provider that misbehaves on purpose, chosen by the path's last query
/// parameter: `reset` sends an event and then a TCP reset, `badchunk`
/// invalid chunked framing, `hugeheader` a 1 MiB header, `manyheaders`
/// 500 headers, `stall` an event and then silence; anything else is a
/// normal JSON response. Every connection serves one request.
async fn faulty_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            connections.spawn(misbehave(stream));
        }
    });
    addr
}

async fn misbehave(mut stream: TcpStream) {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        request.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&request).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map_or(0, |value| value.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    if stream.read_exact(&mut body).await.is_err() {
        return;
    }
    let target = head.split(' ').nth(1).unwrap_or("").to_string();
    let fault = target.rsplit('&').next().unwrap_or("");
    let first_event = format!("{:x}\r\n{}\r\n", event(0).len(), event(0));
    let chunked_head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: {SSE}\r\ntransfer-encoding: chunked\r\n\r\n");
    match fault {
        "reset" => {
            let _ = stream.write_all(chunked_head.as_bytes()).await;
            let _ = stream.write_all(first_event.as_bytes()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        "badchunk" => {
            let _ = stream.write_all(chunked_head.as_bytes()).await;
            let _ = stream.write_all(first_event.as_bytes()).await;
            let _ = stream.write_all(b"zz\r\nnot a chunk\r\n").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        "hugeheader" => {
            let value = "a".repeat(1024 * 1024);
            let response =
                format!("HTTP/1.1 200 OK\r\nx-huge: {value}\r\ncontent-length: 2\r\n\r\n{{}}");
            let _ = stream.write_all(response.as_bytes()).await;
        }
        "manyheaders" => {
            let mut response = "HTTP/1.1 200 OK\r\n".to_string();
            for i in 0..500 {
                response.push_str(&format!("x-h{i}: {i}\r\n"));
            }
            response.push_str("content-length: 2\r\n\r\n{}");
            let _ = stream.write_all(response.as_bytes()).await;
        }
        "stall" => {
            let _ = stream.write_all(chunked_head.as_bytes()).await;
            let _ = stream.write_all(first_event.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        _ => {
            let response =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}";
            let _ = stream.write_all(response.as_bytes()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_end_cleanly() {
    const ROUNDS: usize = 10;
    let addr = faulty_upstream().await;
    let mut setup = Setup::new(&format!("http://{addr}"));
    setup.config.upstream_idle_timeout = Duration::from_secs(1);
    let proxy = setup.start().await;

    let faults = [
        "reset",
        "badchunk",
        "hugeheader",
        "manyheaders",
        "stall",
        "ok",
    ];
    let mut calls = JoinSet::new();
    for round in 0..ROUNDS {
        for fault in faults {
            let head = format!(
                "POST {CHAT}?r{round}&{fault} HTTP/1.1\nHost: {}\nAuthorization: Bearer {}\nContent-Length: 2",
                proxy.addr, proxy.token
            );
            let addr = proxy.addr;
            calls.spawn(async move { (fault, raw::request(addr, &head, b"{}").await) });
        }
    }
    let mut correct = 0;
    let total = calls.len();
    while let Some(result) = calls.join_next().await {
        let (fault, response) = result.unwrap();
        match fault {
            // Truncation after a 200: no final chunk, only the event sent.
            "reset" | "badchunk" | "stall" => {
                assert_eq!(response.status, 200, "{fault}");
                assert!(!response.complete, "{fault}: truncation hidden");
                assert_eq!(response.body_text(), event(0), "{fault}");
            }
            "hugeheader" | "manyheaders" => {
                assert_eq!(response.status, 502, "{fault}");
                assert!(response.body_text().contains("upstream_failed"), "{fault}");
                assert!(!response.body_text().contains("x-h"), "{fault}");
            }
            _ => {
                assert_eq!(response.status, 200, "{fault}");
                assert_eq!(response.body_text(), "{\"ok\":true}");
            }
        }
        correct += 1;
    }
    println!(
        "upstream faults: sent {total} requests, {correct} got the expected response or error"
    );
    assert_eq!(correct, ROUNDS * faults.len());

    let outcomes = proxy.sink.wait_for(total).await;
    let count = |end: OutcomeEnd| outcomes.iter().filter(|outcome| outcome.end == end).count();
    assert_eq!(count(OutcomeEnd::UpstreamBodyFailed), 2 * ROUNDS);
    assert_eq!(count(OutcomeEnd::UpstreamIdleTimeout), ROUNDS);
    assert_eq!(count(OutcomeEnd::Rejected), 2 * ROUNDS);
    assert_eq!(count(OutcomeEnd::Completed), ROUNDS);
    assert_still_serving(&proxy).await;
}

#[tokio::test]
async fn unreachable_upstream_gets_502_every_time() {
    const REQUESTS: usize = 50;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let proxy = Setup::new(&base).start().await;
    let http = client();
    let calls = (0..REQUESTS).map(|_| {
        http.post(proxy.url(CHAT))
            .bearer_auth(&proxy.token)
            .body("{}")
            .send()
    });
    let mut correct = 0;
    for response in futures_util::future::join_all(calls).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 502);
        let body = response.text().await.unwrap();
        assert!(body.contains("upstream_unreachable"), "{body}");
        correct += 1;
    }
    println!(
        "unreachable upstream: sent {REQUESTS} requests, {correct} got 502 upstream_unreachable"
    );
    let health = client().get(proxy.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// Raises the open-file limit to `wanted` if the hard limit allows it, and
/// returns whether it is at least that now.
fn ensure_open_files(wanted: u64) -> bool {
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) => limit >= wanted,
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_connections_are_served() {
    const CONNECTIONS: usize = 1_000;
    // Each request holds four sockets in this process: client, proxy's
    // accepted side, proxy's upstream side and the mock's accepted side.
    if !ensure_open_files(5 * CONNECTIONS as u64) {
        println!(
            "skipped: the open-file limit cannot be raised to {} for {CONNECTIONS} connections",
            5 * CONNECTIONS
        );
        return;
    }
    let upstream = MockUpstream::start(|_| {
        let mut steps = vec![sleep_ms(300)];
        steps.extend(ok_json(r#"{"ok":true}"#));
        steps
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let started = Instant::now();

    // Open every connection first, so all of them are held at once.
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        streams.push(TcpStream::connect(proxy.addr).await.unwrap());
    }
    let request = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Length: 2\r\n\r\n{{}}",
        proxy.addr, proxy.token
    );
    let mut calls = JoinSet::new();
    for mut stream in streams {
        let request = request.clone();
        calls.spawn(async move {
            stream.write_all(request.as_bytes()).await.unwrap();
            tokio::time::timeout(Duration::from_secs(15), raw::read_response(&mut stream))
                .await
                .expect("no response within 15 s")
        });
    }
    let mut correct = 0;
    while let Some(response) = calls.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body_text(), r#"{"ok":true}"#);
        correct += 1;
    }
    let elapsed = started.elapsed();
    println!(
        "{CONNECTIONS} concurrent connections: sent {CONNECTIONS} requests, {correct} correct responses in {elapsed:?}"
    );
    assert_eq!(correct, CONNECTIONS);
    assert_eq!(upstream.requests().len(), CONNECTIONS);
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert_still_serving_with(&proxy, &upstream).await;
}

async fn assert_still_serving_with(proxy: &Proxy, upstream: &MockUpstream) {
    let before = upstream.requests().len();
    let response = post(proxy, CHAT).await;
    assert_eq!(response.status, 200, "the proxy stopped serving");
    assert_eq!(upstream.requests().len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_hit_the_header_timeout() {
    const SLOW_CLIENTS: usize = 40;
    const NORMAL_REQUESTS: usize = 20;
    let upstream = MockUpstream::start(|_| ok_json("{}")).await;
    let mut setup = Setup::new(&upstream.base());
    setup.config.client_header_timeout = Duration::from_secs(2);
    let proxy = setup.start().await;
    let addr = proxy.addr;

    // Slow clients of three kinds: silent, one byte of the HTTP/2 preface,
    // and request headers trickled a byte every 300 ms.
    let mut slow = JoinSet::new();
    for i in 0..SLOW_CLIENTS {
        slow.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            match i % 3 {
                0 => {}
                1 => stream.write_all(b"P").await.unwrap(),
                _ => {
                    let line = format!("POST {CHAT} HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
                    stream.write_all(line.as_bytes()).await.unwrap();
                    let trickle = async {
                        for _ in 0..30 {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            if stream.write_all(b"a").await.is_err() {
                                return;
                            }
                        }
                    };
                    trickle.await;
                }
            }
            let received = read_until_closed(&mut stream, Duration::from_secs(5)).await;
            (i % 3, started.elapsed(), received)
        });
    }

    // Normal requests go through while the slow ones wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = client();
    let calls = (0..NORMAL_REQUESTS).map(|_| {
        http.post(proxy.url(CHAT))
            .bearer_auth(&proxy.token)
            .body("{}")
            .send()
    });
    let mut served = 0;
    for response in futures_util::future::join_all(calls).await {
        assert_eq!(response.unwrap().status(), 200);
        served += 1;
    }

    let mut closed = 0;
    while let Some(result) = slow.join_next().await {
        let (kind, elapsed, received) = result.unwrap();
        let received =
            received.unwrap_or_else(|| panic!("slow client {kind} still open after 5 s"));
        assert!(
            elapsed >= Duration::from_millis(1_900),
            "kind {kind}: {elapsed:?}"
        );
        assert!(
            elapsed <= Duration::from_millis(3_500),
            "kind {kind}: {elapsed:?}"
        );
        // hyper closes without a response, or with 408 where it sends one.
        assert!(
            received.is_empty() || status_of(&received) == Some(408),
            "kind {kind}: {:?}",
            String::from_utf8_lossy(&received)
        );
        closed += 1;
    }
    println!(
        "slow clients: {SLOW_CLIENTS} slow connections all closed after the 2 s header timeout; {served} of {NORMAL_REQUESTS} normal requests served meanwhile"
    );
    assert_eq!(closed, SLOW_CLIENTS);
    assert_eq!(served, NORMAL_REQUESTS);
    assert_eq!(upstream.requests().len(), NORMAL_REQUESTS);
}

#[tokio::test]
async fn malformed_requests_are_rejected() {
    let upstream = MockUpstream::start(|_| ok_json("{}")).await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let host = proxy.addr;
    let token = &proxy.token;
    let cases: Vec<(&str, String, u16)> = vec![
        ("garbage request line", "GARBAGE\r\n\r\n".into(), 400),
        (
            "header without colon",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nBad Header\r\n\r\n"),
            400,
        ),
        (
            "space in header name",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX Bad: 1\r\n\r\n"),
            400,
        ),
        (
            "control byte in header value",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Bad: a\x01b\r\n\r\n"),
            400,
        ),
        (
            "non-numeric Content-Length",
            format!("POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Length: abc\r\n\r\n"),
            400,
        ),
        (
            "two different Content-Lengths",
            format!("POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"),
            400,
        ),
        // Not an error: hyper follows RFC 9112, reads the body as chunked,
        // drops Content-Length and closes the connection afterwards, so
        // the trailing bytes are never read as a second request.
        (
            "Transfer-Encoding and Content-Length",
            format!("POST {CHAT}?smuggle HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\nGET /llm/openai/smuggled HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"),
            200,
        ),
        (
            "invalid chunk size",
            format!("POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"),
            400,
        ),
        (
            "unknown HTTP version",
            format!("GET /healthz HTTP/9.9\r\nHost: {host}\r\n\r\n"),
            400,
        ),
        (
            "request headers over the size limit",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\n\r\n", "a".repeat(1024 * 1024)),
            431,
        ),
        (
            "absolute target for a foreign host",
            "GET http://evil.test/llm/openai/models HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n".into(),
            403,
        ),
    ];
    let total = cases.len();
    let mut correct = 0;
    for (name, request, expected) in &cases {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        // A large request may be cut off by the proxy's early response.
        let _ = stream.write_all(request.as_bytes()).await;
        let received = read_until_closed(&mut stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{name}: the connection stayed open"));
        assert_eq!(
            status_of(&received),
            Some(*expected),
            "{name}: {:?}",
            String::from_utf8_lossy(&received)
        );
        correct += 1;
        assert_still_serving_with(&proxy, &upstream).await;
    }
    println!("malformed requests: sent {total}, {correct} got the expected status and the proxy kept serving");
    let requests = upstream.requests();
    for request in &requests {
        assert_eq!(request.body, b"{}", "{}", request.target);
        assert!(!request.target.contains("smuggled"));
    }
    let framed = requests
        .iter()
        .find(|request| request.target.ends_with("?smuggle"))
        .unwrap();
    assert!(framed.chunked);
    assert!(!framed.has_header("content-length"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_at_every_stage() {
    const ROUNDS: usize = 8;
    let upstream = MockUpstream::start(|request| {
        if request.target.ends_with("wait") {
            let mut steps = vec![sleep_ms(10_000)];
            steps.extend(ok_json("{}"));
            steps
        } else if request.target.ends_with("stream") {
            let mut steps = vec![head(200, &[("content-type", SSE)])];
            for i in 0..100 {
                steps.push(write(event(i)));
                steps.push(sleep_ms(100));
            }
            steps.push(Step::Close);
            steps
        } else {
            ok_json("{}")
        }
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let addr = proxy.addr;
    let token = proxy.token.clone();
    let head = |target: &str, length: usize| {
        format!("POST {CHAT}?{target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n")
    };

    let mut sent = 0;
    for round in 0..ROUNDS {
        // During the request headers.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let partial = head("headers", 2);
        stream
            .write_all(&partial.as_bytes()[..partial.len() / 2])
            .await
            .unwrap();
        drop(stream);

        // During the body upload.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(head(&format!("r{round}-upload"), 100_000).as_bytes())
            .await
            .unwrap();
        stream.write_all(&[b'x'; 1000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(stream);

        // While the provider thinks.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = head(&format!("r{round}-wait"), 2) + "{}";
        stream.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(stream);

        // In the middle of a stream.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = head(&format!("r{round}-stream"), 2) + "{}";
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = [0u8; 4096];
        assert!(stream.read(&mut buffer).await.unwrap() > 0);
        drop(stream);
        sent += 4;
    }

    // Every request that reached the provider had its connection closed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = upstream.requests();
    let reached = requests.len();
    for _ in 0..200 {
        if requests
            .iter()
            .all(|request| request.peer_closed_at().is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for request in &requests {
        assert!(
            request.peer_closed_at().is_some(),
            "{}: upstream connection left open",
            request.target
        );
    }
    // The upload is cut before the provider has its whole body, so it never
    // records one: only the waiting and streaming calls arrive whole.
    assert_eq!(reached, 2 * ROUNDS);

    // Every request that reached the handler was logged as cut short.
    let outcomes = proxy.sink.wait_for(3 * ROUNDS).await;
    for outcome in &outcomes {
        assert!(
            matches!(
                outcome.end,
                OutcomeEnd::ClientCancelled | OutcomeEnd::Rejected
            ),
            "{outcome:?}"
        );
    }
    println!(
        "client disconnects: sent {sent} requests cut at four stages; {reached} reached the provider and all were cancelled, {} outcomes recorded",
        outcomes.len()
    );
    assert_still_serving_with(&proxy, &upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locking_the_vault_spares_requests_in_flight() {
    const IN_FLIGHT: usize = 20;
    const AFTER_LOCK: usize = 20;
    let events: Vec<String> = (0..5).map(event).collect();
    let body = events.concat();
    let upstream = MockUpstream::start(move |_| {
        let mut steps = vec![head(200, &[("content-type", SSE)])];
        for event in (0..5).map(event) {
            steps.push(sleep_ms(200));
            steps.push(write(event));
        }
        steps.push(Step::Close);
        steps
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;

    let mut in_flight = JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let addr = proxy.addr;
        let head = format!(
            "POST /llm/anthropic/v1/messages HTTP/1.1\nHost: {addr}\nx-api-key: {}\nContent-Length: 2",
            proxy.token
        );
        in_flight.spawn(async move { raw::request(addr, &head, b"{}").await });
    }
    for _ in 0..300 {
        if upstream.requests().len() == IN_FLIGHT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(upstream.requests().len(), IN_FLIGHT);
    proxy.keys.clear();

    let http = client();
    let calls = (0..AFTER_LOCK).map(|_| {
        http.post(proxy.url("/llm/anthropic/v1/messages"))
            .header("x-api-key", &proxy.token)
            .body("{}")
            .send()
    });
    let mut locked_out = 0;
    for response in futures_util::future::join_all(calls).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 503);
        let error = common::json(response).await;
        assert_eq!(error["type"], "error");
        assert!(error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("vault is locked"));
        locked_out += 1;
    }
    let mut finished = 0;
    while let Some(response) = in_flight.join_next().await {
        let response = response.unwrap();
        assert_eq!(response.status, 200);
        assert!(response.complete);
        assert_eq!(response.body_text(), body);
        finished += 1;
    }
    println!(
        "vault locked mid-flight: {IN_FLIGHT} requests in flight all finished whole, {locked_out} of {AFTER_LOCK} later requests got 503"
    );
    assert_eq!(finished, IN_FLIGHT);
    assert_eq!(locked_out, AFTER_LOCK);
    assert_eq!(upstream.requests().len(), IN_FLIGHT);
}
