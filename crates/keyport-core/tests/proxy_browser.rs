//! Browser safety: CORS preflights and headers, the Origin allow-list, the
//! Host check against DNS rebinding, and the headers that must not cross
//! the proxy in either direction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::raw;
use common::upstream::{head, ok_json, respond, write, MockUpstream};
use common::{client, json, Setup, ANTHROPIC_KEY, ORIGIN};
use reqwest::header::HeaderMap;

const OPENAI_SDK_HEADERS: &str = "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout,openai-organization,openai-project";
const ANTHROPIC_SDK_HEADERS: &str = "anthropic-beta,anthropic-dangerous-direct-browser-access,anthropic-version,content-type,x-api-key,x-stainless-arch,x-stainless-lang,x-stainless-os,x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout";
const GEMINI_SDK_HEADERS: &str = "content-type,x-goog-api-client,x-goog-api-key";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

/// Asserts a preflight response allows `ORIGIN`, POST and every requested header.
fn assert_preflight_allows(headers: &HeaderMap, requested: &str) {
    assert_eq!(header(headers, "access-control-allow-origin"), ORIGIN);
    assert!(header(headers, "access-control-allow-methods").contains("POST"));
    let allowed: Vec<String> = header(headers, "access-control-allow-headers")
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    assert!(!allowed.contains(&"*".to_string()));
    for name in requested.split(',') {
        assert!(allowed.contains(&name.to_string()), "{name} not allowed");
    }
    let vary = header(headers, "vary").to_ascii_lowercase();
    for name in [
        "origin",
        "access-control-request-headers",
        "access-control-request-method",
    ] {
        assert!(vary.contains(name), "vary lacks {name}: {vary}");
    }
    assert!(headers.contains_key("access-control-max-age"));
    assert!(!headers.contains_key("access-control-allow-credentials"));
}

#[tokio::test]
async fn sdk_preflights_are_answered_locally() {
    let upstream = MockUpstream::start(|_| ok_json("{\"ok\":true}")).await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let cases = [
        ("/llm/openai/chat/completions", OPENAI_SDK_HEADERS),
        ("/llm/anthropic/v1/messages", ANTHROPIC_SDK_HEADERS),
        (
            "/llm/google/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            GEMINI_SDK_HEADERS,
        ),
    ];
    for (path, requested) in cases {
        let response = http
            .request(reqwest::Method::OPTIONS, proxy.url(path))
            .header("origin", ORIGIN)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", requested)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{path}");
        assert_preflight_allows(response.headers(), requested);
    }
    assert!(upstream.requests().is_empty(), "a preflight was forwarded");

    // The real request that follows carries the same origin.
    let response = http
        .post(proxy.url("/llm/openai/chat/completions"))
        .header("origin", ORIGIN)
        .header("x-stainless-os", "Linux")
        .bearer_auth(&proxy.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        ORIGIN
    );
    assert!(header(response.headers(), "vary").contains("Origin"));
    assert_eq!(upstream.single().header("x-stainless-os"), Some("Linux"));
}

#[tokio::test]
async fn cross_site_request_without_origin_gets_403() {
    let upstream = MockUpstream::start(|_| ok_json("{}")).await;
    let mut setup = Setup::new(&upstream.base());
    // Without tokens, a page on any site could otherwise spend the keys
    // with a plain link or a no-cors fetch, which send no Origin header.
    setup.config.require_token = false;
    let proxy = setup.start().await;
    let http = client();
    let url = proxy.url("/llm/openai/models");
    for site in ["cross-site", "same-site", "CROSS-SITE"] {
        let response = http
            .get(&url)
            .header("sec-fetch-site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{site}");
        let body = json(response).await;
        assert_eq!(body["error"]["code"], "cross_site_request", "{site}");
    }
    for site in ["same-origin", "none"] {
        let response = http
            .get(&url)
            .header("sec-fetch-site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{site}");
    }
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn disallowed_origin_gets_403_without_cors() {
    let upstream = MockUpstream::start(|_| ok_json("{}")).await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let url = proxy.url("/llm/openai/chat/completions");
    for origin in [
        "https://evil.test",
        "null",
        "http://localhost.evil.test:5173",
    ] {
        let preflight = http
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        let post = http
            .post(&url)
            .header("origin", origin)
            .bearer_auth(&proxy.token)
            .send()
            .await
            .unwrap();
        for response in [preflight, post] {
            assert_eq!(response.status(), 403, "{origin}");
            let names: Vec<&str> = response.headers().keys().map(|n| n.as_str()).collect();
            assert!(
                !names.iter().any(|name| name.starts_with("access-control-")),
                "{origin}: {names:?}"
            );
            let body = json(response).await;
            assert_eq!(body["error"]["code"], "origin_not_allowed");
        }
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn rate_limit_headers_are_exposed_to_pages() {
    let upstream = MockUpstream::start(|request| {
        if request.target.starts_with("/v1/messages") {
            respond(
                429,
                "application/json",
                br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
                &[
                    ("retry-after", "7"),
                    ("anthropic-ratelimit-requests-remaining", "0"),
                    ("request-id", "req_a1"),
                ],
            )
        } else {
            respond(
                429,
                "application/json",
                br#"{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
                &[
                    ("retry-after", "20"),
                    ("retry-after-ms", "20000"),
                    ("x-ratelimit-limit-requests", "500"),
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", "12s"),
                    ("x-request-id", "req_t1"),
                    ("openai-processing-ms", "3"),
                    ("access-control-allow-origin", "*"),
                ],
            )
        }
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let cases = [
        (
            "/llm/openai/chat/completions",
            vec![
                "retry-after",
                "retry-after-ms",
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
                "x-request-id",
                "openai-processing-ms",
            ],
        ),
        (
            "/llm/anthropic/v1/messages",
            vec![
                "retry-after",
                "anthropic-ratelimit-requests-remaining",
                "request-id",
            ],
        ),
    ];
    for (path, expected) in cases {
        let response = http
            .post(proxy.url(path))
            .header("origin", ORIGIN)
            .bearer_auth(&proxy.token)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 429);
        let headers = response.headers();
        // The provider's own wildcard is replaced by the echoed origin.
        let origins: Vec<_> = headers
            .get_all("access-control-allow-origin")
            .iter()
            .collect();
        assert_eq!(origins, [ORIGIN]);
        let exposed: Vec<String> = header(headers, "access-control-expose-headers")
            .split(',')
            .map(|name| name.trim().to_string())
            .collect();
        for name in expected {
            assert!(
                exposed.contains(&name.to_string()),
                "{path}: {name} not exposed"
            );
            assert!(headers.contains_key(name), "{path}: {name} dropped");
        }
        assert!(response.text().await.unwrap().contains("slow down"));
    }
}

#[tokio::test]
async fn proxy_made_errors_carry_cors() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut setup = Setup::new(&base);
    setup.config.max_request_body_bytes = 1024;
    let proxy = setup.start().await;
    let http = client();
    let url = proxy.url("/llm/openai/chat/completions");

    let unreachable = http
        .post(&url)
        .header("origin", ORIGIN)
        .bearer_auth(&proxy.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    let too_large = http
        .post(&url)
        .header("origin", ORIGIN)
        .bearer_auth(&proxy.token)
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    let no_token = http
        .post(&url)
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    for (response, status) in [(unreachable, 502), (too_large, 413), (no_token, 401)] {
        assert_eq!(response.status(), status);
        assert_eq!(
            header(response.headers(), "access-control-allow-origin"),
            ORIGIN
        );
        assert!(header(response.headers(), "vary").contains("Origin"));
        assert!(!response
            .headers()
            .contains_key("access-control-allow-credentials"));
        assert!(json(response).await["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn foreign_host_is_rejected() {
    let upstream = MockUpstream::start(|_| ok_json("{}")).await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let port = proxy.addr.port();

    for host in [
        "evil.test",
        &format!("evil.test:{port}"),
        "localhost.evil.test",
    ] {
        let head = format!(
            "POST /llm/openai/chat/completions HTTP/1.1\nHost: {host}\nAuthorization: Bearer {}\nContent-Length: 2\nConnection: close",
            proxy.token
        );
        let response = raw::request(proxy.addr, &head, b"{}").await;
        assert_eq!(response.status, 403, "{host}");
        assert!(response.body_text().contains("host_not_allowed"), "{host}");
        let head = format!("GET /healthz HTTP/1.1\nHost: {host}\nConnection: close");
        assert_eq!(
            raw::request(proxy.addr, &head, b"").await.status,
            403,
            "{host}"
        );
    }
    assert!(upstream.requests().is_empty());

    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let head = format!(
            "POST /llm/openai/chat/completions HTTP/1.1\nHost: {host}\nAuthorization: Bearer {}\nContent-Length: 2\nConnection: close",
            proxy.token
        );
        let response = raw::request(proxy.addr, &head, b"{}").await;
        assert_eq!(response.status, 200, "{host}");
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_both_ways() {
    let upstream = MockUpstream::start(|_| {
        vec![
            head(
                200,
                &[
                    ("content-type", "application/json"),
                    ("content-length", "2"),
                    ("connection", "keep-alive, X-Resp-Drop"),
                    ("x-resp-drop", "1"),
                    ("keep-alive", "timeout=5"),
                    ("proxy-authenticate", "Basic"),
                    ("upgrade", "h2c"),
                    ("x-request-id", "req_h1"),
                ],
            ),
            write("{}"),
        ]
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let head = format!(
        "POST /llm/openai/chat/completions HTTP/1.1
Host: 127.0.0.1:{}
Authorization: Bearer {}
Connection: keep-alive, X-Drop-Me
X-Drop-Me: 1
Keep-Alive: timeout=5
Proxy-Connection: keep-alive
TE: trailers
Upgrade: h2c
Proxy-Authorization: Basic Zm9vOmJhcg==
X-Keep-Me: yes
Content-Type: application/json
Content-Length: 2",
        proxy.addr.port(),
        proxy.token
    );
    let response = raw::request(proxy.addr, &head, b"{}").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"{}");
    for name in ["x-resp-drop", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert!(response.header(name).is_none(), "{name} reached the client");
    }
    assert_eq!(response.header("x-request-id"), Some("req_h1"));

    let request = upstream.single();
    assert_eq!(
        request.header("host"),
        Some(upstream.addr.to_string().as_str())
    );
    for name in [
        "connection",
        "x-drop-me",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(!request.has_header(name), "{name} reached the provider");
    }
    assert_eq!(request.header("x-keep-me"), Some("yes"));
    // reqwest's one default header, for clients that sent no Accept.
    assert_eq!(request.header("accept"), Some("*/*"));
    assert_eq!(request.header("content-length"), Some("2"));
}

#[tokio::test]
async fn browser_headers_stay_local() {
    // Like Anthropic: a request with Origin needs the browser opt-in header.
    let upstream = MockUpstream::start(|request| {
        let opted_in = request.header("anthropic-dangerous-direct-browser-access") == Some("true");
        if request.has_header("origin") && !opted_in {
            respond(
                401,
                "application/json",
                br#"{"type":"error","error":{"type":"authentication_error","message":"browser request without opt-in header"}}"#,
                &[],
            )
        } else {
            ok_json(r#"{"type":"message"}"#)
        }
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let response = client()
        .post(proxy.url("/llm/anthropic/v1/messages"))
        .header("origin", ORIGIN)
        .header("referer", "http://localhost:5173/app")
        .header("sec-fetch-mode", "cors")
        .header("sec-fetch-site", "cross-site")
        .header("cookie", "s=CANARY-COOKIE")
        .header("x-api-key", &proxy.token)
        .header("anthropic-version", "2023-06-01")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        ORIGIN
    );

    let request = upstream.single();
    for name in [
        "origin",
        "referer",
        "cookie",
        "sec-fetch-mode",
        "sec-fetch-site",
    ] {
        assert!(!request.has_header(name), "{name} reached the provider");
    }
    assert!(!request.head_text().contains("CANARY-COOKIE"));
    assert_eq!(request.header("x-api-key"), Some(ANTHROPIC_KEY));
}
