//! Routing, client tokens, key selection and injection, and the errors the
//! proxy responds with itself, against a mock provider on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use keyport_core::secret::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

use common::upstream::{ok_json, respond, sleep_ms, MockUpstream, Recorded};
use common::{client, count, json, vault_key, Setup, TestKeys, GOOGLE_KEY, OPENAI_KEY};
use keyport_core::providers::{self, AuthStyle};
use serde_json::Value;

/// Starts a mock that responds 200 `{}` to everything.
async fn ok_upstream() -> MockUpstream {
    MockUpstream::start(|_| ok_json("{}")).await
}

/// Asserts the request carries `key` exactly once and `token` nowhere.
fn assert_key_once(request: &Recorded, key: &str, token: &str) {
    let head = request.head_text();
    assert_eq!(count(&head, key), 1, "vault key count in:\n{head}");
    assert_eq!(count(&head, token), 0, "client token leaked in:\n{head}");
}

#[tokio::test]
async fn builtin_providers_route_to_their_base_path() {
    let upstream = ok_upstream().await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let builtin = keyport_core::providers::ProviderRegistry::builtin();

    for id in providers::builtin_ids() {
        let response = http
            .post(proxy.url(&format!("/llm/{id}/some/path:action?b=2&a=1%2B1")))
            .bearer_auth(&proxy.token)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{id}");
        let request = upstream.requests().pop().unwrap();
        let prefix = builtin
            .get(id)
            .unwrap()
            .base_url
            .path()
            .trim_end_matches('/');
        assert_eq!(
            request.target,
            format!("{prefix}/some/path:action?b=2&a=1%2B1"),
            "{id}"
        );
        assert_eq!(request.body, b"{}", "{id}");
        assert_eq!(count(&request.head_text(), &proxy.token), 0, "{id}");
        if builtin.get(id).unwrap().auth.needs_key() {
            assert_key_once(&request, vault_key(id), &proxy.token);
        }
    }
}

#[tokio::test]
async fn gemini_targets_arrive_byte_for_byte() {
    let upstream = ok_upstream().await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let targets = [
        ("POST", "/v1beta/models/gemini-2.5-flash:generateContent"),
        (
            "POST",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        ),
        ("POST", "/v1beta/models/gemini-2.5-flash:countTokens"),
        (
            "POST",
            "/v1beta/models/text-embedding-004:batchEmbedContents",
        ),
        ("POST", "/v1beta/tunedModels/my-model-42:generateContent"),
        ("GET", "/v1beta/models?pageSize=5"),
        ("POST", "/v1beta/models/gemini-2.5-flash%3AgenerateContent"),
        (
            "POST",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&foo=1%2B2",
        ),
    ];
    for (method, target) in targets {
        let response = http
            .request(
                method.parse().unwrap(),
                proxy.url(&format!("/llm/google{target}")),
            )
            .header("x-goog-api-key", &proxy.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{target}");
        let request = upstream.requests().pop().unwrap();
        assert_eq!(request.target, target);
        assert_eq!(request.method, method);
    }
}

#[tokio::test]
async fn google_key_replaces_client_credential_in_every_place() {
    let upstream = ok_upstream().await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let path = "/llm/google/v1beta/models/gemini-2.5-flash:generateContent";
    let token = proxy.token.clone();

    let variants: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "header",
            http.post(proxy.url(&format!("{path}?alt=sse")))
                .header("x-goog-api-key", &token),
        ),
        (
            "query",
            http.post(proxy.url(&format!("{path}?alt=sse&key={token}"))),
        ),
        (
            "both",
            http.post(proxy.url(&format!("{path}?key={token}&alt=sse")))
                .header("x-goog-api-key", &token),
        ),
        (
            "upper-case header",
            http.post(proxy.url(&format!("{path}?alt=sse")))
                .header("X-GOOG-API-KEY", &token),
        ),
        (
            "openai-compatible bearer",
            http.post(proxy.url("/llm/google/v1beta/openai/chat/completions?alt=sse"))
                .bearer_auth(&token),
        ),
    ];
    for (name, builder) in variants {
        let response = builder.body("{}").send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let request = upstream.requests().pop().unwrap();
        assert_key_once(&request, GOOGLE_KEY, &token);
        assert_eq!(request.header("x-goog-api-key"), Some(GOOGLE_KEY), "{name}");
        assert!(!request.has_header("authorization"), "{name}");
        assert!(
            !request.target.contains("key="),
            "{name}: {}",
            request.target
        );
        assert!(
            request.target.ends_with("?alt=sse"),
            "{name}: {}",
            request.target
        );
    }
}

#[tokio::test]
async fn bearer_providers_get_authorization() {
    let upstream = ok_upstream().await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    for (id, path) in [
        ("openai", "/chat/completions"),
        ("mistral", "/v1/chat/completions"),
    ] {
        // A client may put the token in x-api-key; it still never travels.
        let response = http
            .post(proxy.url(&format!("/llm/{id}{path}")))
            .header("x-api-key", &proxy.token)
            .header("authorization", "Bearer sk-client-PLACEHOLDER")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{id}");
        let request = upstream.requests().pop().unwrap();
        let expected = format!("Bearer {}", vault_key(id));
        assert_eq!(request.header("authorization"), Some(expected.as_str()));
        assert!(!request.has_header("x-api-key"), "{id}");
        assert!(!request.head_text().contains("PLACEHOLDER"), "{id}");
        assert_key_once(&request, vault_key(id), &proxy.token);
    }
}

#[tokio::test]
async fn anthropic_key_follows_the_client_style() {
    let upstream = ok_upstream().await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let url = proxy.url("/llm/anthropic/v1/messages");
    let key = vault_key("anthropic");

    let response = http
        .post(&url)
        .header("x-api-key", &proxy.token)
        .header("anthropic-version", "2023-06-01")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = upstream.requests().pop().unwrap();
    assert_eq!(request.target, "/v1/messages");
    assert_eq!(request.header("x-api-key"), Some(key));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert!(!request.has_header("authorization"));
    assert_key_once(&request, key, &proxy.token);

    let response = http
        .post(&url)
        .bearer_auth(&proxy.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = upstream.requests().pop().unwrap();
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    assert!(!request.has_header("x-api-key"));
    assert_key_once(&request, key, &proxy.token);
}

#[tokio::test]
async fn custom_header_query_and_keyless_providers() {
    let upstream = ok_upstream().await;
    let mut setup = Setup::new(&upstream.base());
    let base = format!("{}/openai", upstream.base());
    common::add_provider(
        &mut setup.providers,
        "azure",
        &base,
        AuthStyle::Header("api-key".into()),
    );
    common::add_provider(
        &mut setup.providers,
        "acme",
        &upstream.base(),
        AuthStyle::Query("token".into()),
    );
    setup.keys = TestKeys::canaries(&[])
        .with("azure", "default", "azure-vault-CANARY0006")
        .with("acme", "default", "acme+vault/CANARY=0007");
    let proxy = setup.start().await;
    let http = client();

    let response = http
        .post(proxy.url("/llm/azure/deployments/d/chat/completions?api-version=2024-06-01"))
        .header("api-key", &proxy.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = upstream.requests().pop().unwrap();
    assert_eq!(
        request.target,
        "/openai/deployments/d/chat/completions?api-version=2024-06-01"
    );
    assert_eq!(request.header("api-key"), Some("azure-vault-CANARY0006"));
    assert_key_once(&request, "azure-vault-CANARY0006", &proxy.token);

    // The provider's own parameter and `key` are both client credentials.
    let response = http
        .get(proxy.url("/llm/acme/v2/items?token=sk-client-PLACEHOLDER&x=1&key=kp_other"))
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = upstream.requests().pop().unwrap();
    assert_eq!(
        request.target,
        "/v2/items?x=1&token=acme%2Bvault%2FCANARY%3D0007"
    );
    assert!(!request.has_header("authorization"));

    // Ollama takes no key, so it works even while the vault is locked.
    proxy.keys.clear();
    let response = http
        .post(proxy.url("/llm/ollama/api/chat"))
        .bearer_auth(&proxy.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = upstream.requests().pop().unwrap();
    assert_eq!(request.target, "/api/chat");
    assert!(!request.has_header("authorization"));
}

async fn error_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    (status, json(response).await)
}

#[tokio::test]
async fn missing_and_invalid_tokens_get_401() {
    let upstream = ok_upstream().await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let url = proxy.url("/llm/openai/chat/completions");

    let (status, body) = error_json(http.post(&url).body("{}").send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_missing");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("keyport token create NAME"), "{message}");
    assert!(message.contains("Authorization: Bearer"), "{message}");

    for bad in [
        "sk-client-PLACEHOLDER",
        "kp_0000",
        &format!("{}x", proxy.token),
    ] {
        let response = http.post(&url).bearer_auth(bad).send().await.unwrap();
        let (status, body) = error_json(response).await;
        assert_eq!(status, 401, "{bad}");
        assert_eq!(body["error"]["code"], "token_invalid", "{bad}");
        assert!(!body.to_string().contains(bad), "token echoed: {body}");
    }
    assert!(
        upstream.requests().is_empty(),
        "rejected requests went upstream"
    );
}

#[tokio::test]
async fn revoked_token_is_rejected_while_running() {
    let upstream = ok_upstream().await;
    let mut proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let url = proxy.url("/llm/openai/models");

    let response = http
        .get(&url)
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    proxy.store.revoke("test-client").unwrap();
    assert!(proxy.tokens.refresh().unwrap());
    let response = http
        .get(&url)
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    let (status, body) = error_json(response).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_invalid");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn new_token_works_at_once() {
    let upstream = ok_upstream().await;
    let mut proxy = Setup::new(&upstream.base()).start().await;
    let url = proxy.url("/llm/openai/models");

    // No explicit refresh: the proxy re-reads the token file when it
    // receives an unknown token.
    let token = proxy.store.create("fresh").unwrap();
    let response = client()
        .get(&url)
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn tokenless_mode_serves_and_still_strips() {
    let upstream = ok_upstream().await;
    let mut setup = Setup::new(&upstream.base());
    setup.config.require_token = false;
    let proxy = setup.start().await;
    let http = client();

    let response = http
        .post(proxy.url("/llm/openai/chat/completions?key=AIzaCLIENT"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = http
        .post(proxy.url("/llm/openai/chat/completions"))
        .header("x-api-key", "sk-client-PLACEHOLDER")
        .header("cookie", "s=1")
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let requests = upstream.requests();
    assert_eq!(requests[0].target, "/v1/chat/completions");
    for request in &requests {
        assert_key_once(request, OPENAI_KEY, &proxy.token);
        assert!(!request.head_text().contains("CLIENT"));
        assert!(!request.head_text().contains("PLACEHOLDER"));
        assert!(!request.has_header("cookie"));
    }
    // A valid token still names the client in the log.
    let outcomes = proxy.sink.wait_for(2).await;
    assert_eq!(outcomes[0].token_name, None);
    assert_eq!(outcomes[1].token_name.as_deref(), Some("test-client"));
}

#[tokio::test]
async fn locked_vault_gets_503_until_unlocked() {
    let upstream = ok_upstream().await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let url = proxy.url("/llm/anthropic/v1/messages");

    proxy.keys.clear();
    let health = json(http.get(proxy.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(
        health,
        serde_json::json!({"status": "ok", "vault": "locked"})
    );
    let response = http
        .post(&url)
        .header("x-api-key", &proxy.token)
        .send()
        .await
        .unwrap();
    let (status, body) = error_json(response).await;
    assert_eq!(status, 503);
    assert_eq!(body["type"], "error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("vault is locked"));
    assert!(upstream.requests().is_empty());

    proxy.keys.set(Arc::new(TestKeys::canaries(&[])));
    let health = json(http.get(proxy.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(health["vault"], "unlocked");
    let response = http
        .post(&url)
        .header("x-api-key", &proxy.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn key_lookup_errors_name_the_fix() {
    let upstream = ok_upstream().await;
    let mut setup = Setup::new(&upstream.base());
    setup.keys = TestKeys::canaries(&[])
        .without("anthropic")
        .without("mistral")
        .with("mistral", "work", "mistral-work-CANARY")
        .with("mistral", "home", "mistral-home-CANARY");
    let proxy = setup.start().await;
    let http = client();

    let response = http
        .post(proxy.url("/llm/anthropic/v1/messages"))
        .header("x-api-key", &proxy.token)
        .send()
        .await
        .unwrap();
    let (status, body) = error_json(response).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "authentication_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no API key stored for anthropic"),
        "{message}"
    );
    assert!(message.contains("keyport key set anthropic"), "{message}");

    let mistral = proxy.url("/llm/mistral/v1/chat/completions");
    let response = http
        .post(&mistral)
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    let (status, body) = error_json(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "key_label_required");
    assert!(body["message"].as_str().unwrap().contains("x-keyport-key"));
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("keyport token pin NAME mistral=LABEL"));

    let response = http
        .post(&mistral)
        .bearer_auth(&proxy.token)
        .header("x-keyport-key", "play")
        .send()
        .await
        .unwrap();
    let (status, body) = error_json(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "key_label_not_found");
    assert!(body["message"].as_str().unwrap().contains("--label play"));

    let response = http
        .post(&mistral)
        .bearer_auth(&proxy.token)
        .header("X-Keyport-Key", "home")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = upstream.single();
    assert_eq!(
        request.header("authorization"),
        Some("Bearer mistral-home-CANARY")
    );
    assert!(!request.has_header("x-keyport-key"));
}

#[tokio::test]
async fn pinned_tokens_use_only_their_key() {
    let upstream = ok_upstream().await;
    let mut setup = Setup::new(&upstream.base());
    setup.keys = TestKeys::canaries(&[])
        .with("openai", "client-a", "openai-client-a-CANARY")
        .with("openai", "client-b", "openai-client-b-CANARY");
    let mut proxy = setup.start().await;
    let pins = |label: &str| [("openai".to_string(), label.to_string())].into();
    let token_a = proxy
        .store
        .create_pinned("project-a", pins("client-a"))
        .unwrap();
    let token_b = proxy
        .store
        .create_pinned("project-b", pins("client-b"))
        .unwrap();
    let token_gone = proxy
        .store
        .create_pinned("project-c", pins("gone"))
        .unwrap();
    proxy.tokens.refresh().unwrap();
    let http = client();
    let url = proxy.url("/llm/openai/chat/completions");
    let send = |token: &str, header: Option<&str>| {
        let mut request = http.post(&url).bearer_auth(token);
        if let Some(label) = header {
            request = request.header("x-keyport-key", label);
        }
        request.send()
    };

    // Each pinned token gets its own key; the unpinned token the default.
    let default = format!("Bearer {OPENAI_KEY}");
    let cases = [
        (token_a.expose_secret(), "Bearer openai-client-a-CANARY"),
        (token_b.expose_secret(), "Bearer openai-client-b-CANARY"),
        (proxy.token.as_str(), default.as_str()),
    ];
    for (token, expected) in cases {
        let before = upstream.requests().len();
        assert_eq!(send(token, None).await.unwrap().status(), 200);
        let requests = upstream.requests();
        assert_eq!(requests.len(), before + 1);
        assert_eq!(requests[before].header("authorization"), Some(expected));
    }
    // The header may repeat the pin, but not choose another key.
    let response = send(token_a.expose_secret(), Some("client-a"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let before = upstream.requests().len();
    let response = send(token_a.expose_secret(), Some("client-b"))
        .await
        .unwrap();
    let (status, body) = error_json(response).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "key_pin_conflict");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"project-a\""), "{message}");
    assert!(
        message.contains("keyport token pin project-a openai=LABEL"),
        "{message}"
    );
    assert_eq!(
        upstream.requests().len(),
        before,
        "a refused request went upstream"
    );

    // A pin to a label the vault lacks names the token and the fix.
    let response = send(token_gone.expose_secret(), None).await.unwrap();
    let (status, body) = error_json(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "pinned_key_not_stored");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("keyport key set openai --label gone"),
        "{message}"
    );
    assert!(!message.contains("CANARY"), "{message}");

    // Other providers are not pinned and keep using their default key.
    let response = http
        .post(proxy.url("/llm/anthropic/v1/messages"))
        .header("x-api-key", token_a.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.requests().last().unwrap().header("x-api-key"),
        Some(vault_key("anthropic"))
    );

    // The log names the key each request used.
    let outcomes = proxy.sink.wait_for(7).await;
    let labels: Vec<_> = outcomes.iter().map(|o| o.key_label.as_deref()).collect();
    assert_eq!(
        labels,
        [
            Some("client-a"),
            Some("client-b"),
            None,
            Some("client-a"),
            Some("client-b"),
            Some("gone"),
            None
        ]
    );
}

#[tokio::test]
async fn ambiguous_label_headers_are_rejected_and_logged() {
    let upstream = ok_upstream().await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let url = proxy.url("/llm/openai/chat/completions");

    for labels in [vec!["default", "home"], vec![".hidden"]] {
        let mut request = http.post(&url).bearer_auth(&proxy.token);
        for label in &labels {
            request = request.header("x-keyport-key", *label);
        }
        let (status, body) = error_json(request.send().await.unwrap()).await;
        assert_eq!(status, 400, "{labels:?}");
        assert_eq!(body["error"]["code"], "invalid_key_label", "{labels:?}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("send one header"), "{message}");
    }
    assert!(
        upstream.requests().is_empty(),
        "a rejected request went upstream"
    );
    // The rows name the valid token that sent the bad header.
    let outcomes = proxy.sink.wait_for(2).await;
    for outcome in outcomes {
        assert_eq!(outcome.token_name.as_deref(), Some("test-client"));
    }
}

#[tokio::test]
async fn unknown_routes_get_json_404() {
    let upstream = ok_upstream().await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();

    let response = http
        .post(proxy.url("/llm/opneai/chat/completions"))
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    let (status, body) = error_json(response).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "unknown_provider");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"opneai\""), "{message}");
    assert!(message.contains("anthropic, deepseek"), "{message}");

    for path in ["/", "/v1/chat/completions", "/llm"] {
        let (status, body) = error_json(http.get(proxy.url(path)).send().await.unwrap()).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }

    // URL parsers resolve dot segments, so the raw client sends them.
    for path in ["/llm/openai/%2e%2e/admin", "/llm/openai/x/../admin"] {
        let head = format!(
            "GET {path} HTTP/1.1\nHost: {}\nAuthorization: Bearer {}\nConnection: close",
            proxy.addr, proxy.token
        );
        let response = common::raw::request(proxy.addr, &head, b"").await;
        assert_eq!(response.status, 400, "{path}");
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["error"]["code"], "invalid_path", "{path}");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn upstream_errors_pass_through_unchanged() {
    let upstream = MockUpstream::start(|request| {
        let status: u16 = request.header("x-want-status").unwrap().parse().unwrap();
        let body = format!(
            "{{\"error\":{{\"message\":\"mock {status}\",\"type\":\"invalid_request_error\",\"param\":\"messages\",\"code\":\"context_length_exceeded\"}}}}"
        );
        respond(
            status,
            "application/json; charset=utf-8",
            body.as_bytes(),
            &[("x-request-id", "req_mock_1"), ("request-id", "req_mock_2")],
        )
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();
    let routes = [
        "/llm/openai/chat/completions",
        "/llm/anthropic/v1/messages",
        "/llm/google/v1beta/models/gemini-2.5-flash:generateContent",
    ];
    for route in routes {
        for status in [400u16, 401, 403, 404, 413, 422, 429, 500, 503, 529] {
            let response = http
                .post(proxy.url(route))
                .bearer_auth(&proxy.token)
                .header("x-want-status", status.to_string())
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), status, "{route}");
            let headers = response.headers().clone();
            assert_eq!(headers["content-type"], "application/json; charset=utf-8");
            assert_eq!(headers["x-request-id"], "req_mock_1");
            assert_eq!(headers["request-id"], "req_mock_2");
            let body = response.text().await.unwrap();
            assert_eq!(
                body,
                format!("{{\"error\":{{\"message\":\"mock {status}\",\"type\":\"invalid_request_error\",\"param\":\"messages\",\"code\":\"context_length_exceeded\"}}}}")
            );
        }
    }
    assert_eq!(upstream.requests().len(), 30, "no retries");
}

/// Route, error shape check, for one provider of each shape.
const SHAPED_ROUTES: [(&str, &str); 4] = [
    ("openai", "/llm/openai/chat/completions"),
    ("anthropic", "/llm/anthropic/v1/messages"),
    ("google", "/llm/google/v1beta/models/g:generateContent"),
    ("mistral", "/llm/mistral/v1/chat/completions"),
];

/// Checks a proxy-made error body has `provider`'s shape and `code`.
fn assert_shape(provider: &str, status: u16, body: &Value, code: &str) {
    match provider {
        "openai" => {
            assert_eq!(body["error"]["code"], code, "{body}");
            assert!(body["error"]["param"].is_null(), "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
            assert_eq!(body["error"]["type"], "server_error", "{body}");
        }
        "anthropic" => {
            assert_eq!(body["type"], "error", "{body}");
            assert!(body["error"]["type"].is_string(), "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
        }
        "google" => {
            assert_eq!(body["error"]["code"], status, "{body}");
            assert!(body["error"]["status"].is_string(), "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
        }
        "mistral" => {
            assert_eq!(body["object"], "error", "{body}");
            assert_eq!(body["code"], code, "{body}");
            assert!(body["message"].is_string(), "{body}");
        }
        other => panic!("no shape check for {other}"),
    }
}

#[tokio::test]
async fn unreachable_upstream_gets_502_in_provider_shape() {
    // A port that was just free: connections to it are refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let proxy = Setup::new(&base).start().await;
    let http = client();
    for (provider, route) in SHAPED_ROUTES {
        let response = http
            .post(proxy.url(route))
            .bearer_auth(&proxy.token)
            .body("{}")
            .send()
            .await
            .unwrap();
        let (status, body) = error_json(response).await;
        assert_eq!(status, 502, "{provider}");
        assert_shape(provider, status, &body, "upstream_unreachable");
        assert!(body.to_string().contains("cannot reach the"), "{body}");
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "internal detail: {body}"
        );
    }
}

#[tokio::test]
async fn slow_upstream_gets_504_in_provider_shape() {
    let upstream = MockUpstream::start(|_| {
        let mut steps = vec![sleep_ms(3_000)];
        steps.extend(ok_json("{}"));
        steps
    })
    .await;
    let mut setup = Setup::new(&upstream.base());
    setup.config.upstream_response_timeout = Duration::from_secs(1);
    let proxy = setup.start().await;
    let http = client();

    let calls = SHAPED_ROUTES.map(|(provider, route)| {
        let request = http
            .post(proxy.url(route))
            .bearer_auth(&proxy.token)
            .body("{}")
            .send();
        async move { (provider, tokio::time::Instant::now(), request.await) }
    });
    for (provider, started, response) in futures_util::future::join_all(calls).await {
        let elapsed = started.elapsed();
        let (status, body) = error_json(response.unwrap()).await;
        assert_eq!(status, 504, "{provider}");
        assert_shape(provider, status, &body, "upstream_timeout");
        assert!(
            elapsed < Duration::from_millis(2_500),
            "{provider}: {elapsed:?}"
        );
    }
    assert_eq!(upstream.requests().len(), 4, "no retries");
}

#[tokio::test]
async fn http2_clients_are_served() {
    let upstream = ok_upstream().await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = http2
        .post(proxy.url("/llm/google/v1beta/models/g:generateContent?alt=sse"))
        .header("x-goog-api-key", &proxy.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let request = upstream.single();
    assert_eq!(request.target, "/v1beta/models/g:generateContent?alt=sse");
    assert_eq!(
        request.header("host"),
        Some(upstream.addr.to_string().as_str())
    );
    assert_key_once(&request, GOOGLE_KEY, &proxy.token);
}

#[tokio::test]
async fn bodyless_responses_complete() {
    let upstream = MockUpstream::start(|request| {
        if request.method == "HEAD" {
            vec![common::upstream::head(
                200,
                &[
                    ("content-type", "application/json"),
                    ("content-length", "120"),
                ],
            )]
        } else if request.target.ends_with("/files/f1") {
            vec![common::upstream::head(204, &[("x-request-id", "req_d1")])]
        } else {
            ok_json(r#"{"data":[]}"#)
        }
    })
    .await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let http = client();

    let response = http
        .head(proxy.url("/llm/openai/models"))
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "120");
    assert!(response.bytes().await.unwrap().is_empty());

    let response = http
        .delete(proxy.url("/llm/openai/files/f1"))
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.headers()["x-request-id"], "req_d1");

    let response = http
        .get(proxy.url("/llm/openai/models"))
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), r#"{"data":[]}"#);

    let outcomes = proxy.sink.wait_for(3).await;
    for outcome in &outcomes {
        assert_eq!(
            outcome.end,
            keyport_core::proxy::OutcomeEnd::Completed,
            "{outcome:?}"
        );
        assert_eq!(outcome.token_name.as_deref(), Some("test-client"));
    }
    assert_eq!(outcomes[2].response_bytes, 11);
}

#[tokio::test]
async fn connect_timeout_gets_504() {
    // A listener that never accepts, with its accept queue filled: the
    // kernel then drops new SYNs and connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let attempt = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        match attempt {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }

    let mut setup = Setup::new(&format!("http://{addr}"));
    setup.config.upstream_connect_timeout = Duration::from_secs(1);
    let proxy = setup.start().await;
    let started = std::time::Instant::now();
    let response = client()
        .post(proxy.url("/llm/openai/chat/completions"))
        .bearer_auth(&proxy.token)
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let (status, body) = error_json(response).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "upstream_timeout");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("upstream_connect_timeout_secs"),
        "{message}"
    );
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    drop(fillers);
}

#[tokio::test]
async fn upstream_requests_name_the_proxy_in_via() {
    let upstream = ok_upstream().await;
    let proxy = Setup::new(&upstream.base()).start().await;
    let response = client()
        .post(proxy.url("/llm/openai/chat/completions"))
        .bearer_auth(&proxy.token)
        .header("via", "1.1 corporate-gateway")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request = upstream.requests().pop().unwrap();
    let head = request.head_text().to_ascii_lowercase();
    let entries: Vec<&str> = head
        .lines()
        .filter_map(|line| line.strip_prefix("via: "))
        .collect();
    assert_eq!(entries.len(), 2, "{head}");
    assert_eq!(entries[0], "1.1 corporate-gateway");
    let own = entries[1];
    assert!(own.starts_with("1.1 keyport-"), "{own}");

    // A request that carries the proxy's own entry has come round a loop.
    let looped = client()
        .post(proxy.url("/llm/openai/chat/completions"))
        .bearer_auth(&proxy.token)
        .header("via", own)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(looped.status(), 508);
    let body = json(looped).await;
    assert_eq!(body["error"]["code"], "proxy_loop");
    assert_eq!(
        upstream.requests().len(),
        1,
        "the looped request went upstream"
    );
}

#[tokio::test]
async fn self_pointing_base_url_gets_508() {
    for require_token in [true, false] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let own = listener.local_addr().unwrap();
        let mut setup = Setup::new("http://127.0.0.1:9");
        setup.config.require_token = require_token;
        setup.providers.get_mut("openai").unwrap().base_url =
            reqwest::Url::parse(&format!("http://{own}/llm/openai")).unwrap();
        let proxy = common::Proxy::start_on(setup, listener).await;

        let response = tokio::time::timeout(
            Duration::from_secs(10),
            client()
                .post(proxy.url("/llm/openai/chat/completions"))
                .bearer_auth(&proxy.token)
                .body("{}")
                .send(),
        )
        .await
        .expect("the loop did not end within 10 s")
        .unwrap();
        assert_eq!(response.status(), 508, "require_token = {require_token}");
        let body = json(response).await;
        assert_eq!(body["error"]["code"], "proxy_loop");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("on the openai route"), "{message}");
        assert!(message.contains("points at Keyport itself"), "{message}");
        assert_eq!(count(message, OPENAI_KEY), 0, "{message}");
    }
}
