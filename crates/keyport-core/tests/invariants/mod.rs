//! Properties of the proxy's pure steps, checked on arbitrary input.
//!
//! The fuzz targets in `fuzz/` include this file by path, and
//! `tests/proxy_properties.rs` runs it on seeded random input, so both
//! check the same properties. Every check takes raw bytes: fields are
//! separated by 0x00, so a fuzzer can grow and mix them freely. A check
//! panics when a property does not hold.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Uri};
use keyport_core::config::Config;
use keyport_core::providers::{self, AuthStyle, ErrorShape, Provider, ProviderRegistry};
use keyport_core::proxy::fuzzing::{self, CLIENT_CREDENTIAL_HEADERS, TOKEN_QUERY_PARAM};
use keyport_core::requestlog::{UsageFormat, UsageNote, UsageTap};
use keyport_core::secret::{ExposeSecret, SecretString};
use percent_encoding::percent_decode_str;

/// The vault key injected by the checks. No input can contain it, because
/// the checks refuse inputs that do.
pub const VAULT_KEY: &str = "VAULTKEY-9f3c";

/// Upstream host of every provider in the checks.
const UPSTREAM: &str = "http://127.0.0.1:9";

/// Ids of the test registry: the built-in providers plus one custom
/// provider per auth style that has a name.
const CUSTOM: [(&str, &str); 3] = [("hdr", "header"), ("qry", "query"), ("qkey", "query-key")];

/// Builds the built-in providers, re-pointed at [`UPSTREAM`] with their
/// base paths, and the custom ones.
pub fn registry() -> ProviderRegistry {
    let mut registry = ProviderRegistry::builtin();
    for id in providers::builtin_ids() {
        let provider = registry.get_mut(id).unwrap();
        let path = provider.base_url.path().trim_end_matches('/').to_string();
        provider.base_url = format!("{UPSTREAM}{path}").parse().unwrap();
    }
    for (id, style) in CUSTOM {
        let auth = match style {
            "header" => AuthStyle::Header("x-custom-key".into()),
            "query" => AuthStyle::Query("token".into()),
            _ => AuthStyle::Query("key".into()),
        };
        registry.insert(Provider {
            id: id.to_string(),
            base_url: format!("{UPSTREAM}/base/{id}").parse().unwrap(),
            auth,
            error_shape: ErrorShape::OpenAi,
            builtin: false,
        });
    }
    registry
}

/// Returns the provider ids the checks route to.
fn provider_ids() -> Vec<String> {
    let mut ids: Vec<String> = providers::builtin_ids().map(str::to_string).collect();
    ids.extend(CUSTOM.iter().map(|(id, _)| id.to_string()));
    ids
}

/// Splits input into at most `count` fields at 0x00 bytes.
fn fields(data: &[u8], count: usize) -> Vec<String> {
    let mut fields: Vec<String> = data
        .splitn(count, |byte| *byte == 0)
        .map(|field| String::from_utf8_lossy(field).into_owned())
        .collect();
    fields.resize(count, String::new());
    fields
}

/// Characters RFC 3986 allows unescaped in a path segment or a query.
fn is_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?%".contains(c)
}

/// Characters that reach the provider unchanged in a query. The WHATWG URL
/// parser behind reqwest also escapes `'` in http(s) queries.
fn is_query_char(c: char) -> bool {
    is_uri_char(c) && c != '\''
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Checks routing and upstream URL building for a request target.
///
/// Fields: a provider selector byte, then the path and query after
/// `/llm/{provider}`. Properties: the route splits back into the path; the
/// upstream URL keeps the provider's scheme, host, port and base path;
/// paths and queries made of URI characters pass byte for byte, others
/// decode to the same text; credential parameters are gone; the vault key
/// appears exactly once.
pub fn check_route(data: &[u8]) {
    let fields = fields(data, 2);
    let ids = provider_ids();
    let selector = fields[0].bytes().next().unwrap_or(0) as usize;
    let raw = if selector % (ids.len() + 1) == ids.len() {
        // An arbitrary target, to exercise the split on any path.
        fields[1].clone()
    } else {
        format!("/llm/{}{}", ids[selector % (ids.len() + 1)], fields[1])
    };
    if raw.contains(VAULT_KEY) {
        return;
    }
    let Ok(uri) = raw.parse::<Uri>() else {
        return;
    };
    if uri.scheme().is_some() || uri.authority().is_some() {
        return;
    }

    let Some((id, rest)) = fuzzing::split_llm_path(uri.path()) else {
        assert!(!uri.path().starts_with("/llm/"), "{raw:?} not split");
        return;
    };
    assert_eq!(format!("/llm/{id}{rest}"), uri.path(), "{raw:?}");
    assert!(rest.is_empty() || rest.starts_with('/'), "{raw:?}");
    assert!(!id.contains('/'), "{raw:?}");

    let registry = registry();
    let Some(provider) = registry.get(id) else {
        return;
    };
    let key = SecretString::from(VAULT_KEY);
    let Ok(upstream) = fuzzing::build_upstream(provider, &uri, &HeaderMap::new(), &key) else {
        // The handler rejects such paths with 400; nothing is sent.
        return;
    };
    let url = &upstream.url;
    let base = &provider.base_url;
    assert_eq!(url.scheme(), base.scheme(), "{raw:?}");
    assert_eq!(url.host_str(), base.host_str(), "{raw:?} changed the host");
    assert_eq!(url.port(), base.port(), "{raw:?} changed the port");
    let prefix = base.path().trim_end_matches('/');
    assert!(
        url.path().starts_with(prefix),
        "{raw:?} left the base path: {url}"
    );

    let expected_path = format!("{prefix}{rest}");
    if expected_path.chars().all(is_uri_char) && !expected_path.is_empty() {
        assert_eq!(url.path(), expected_path, "{raw:?}");
    } else {
        assert_eq!(
            decode(url.path()).trim_start_matches('/'),
            decode(&expected_path).trim_start_matches('/'),
            "{raw:?}"
        );
    }

    let names = fuzzing::credential_params(&provider.auth);
    let kept = uri
        .query()
        .and_then(|query| fuzzing::remove_params(query, &names));
    let key_param = match &provider.auth {
        AuthStyle::Query(name) => Some(format!("{name}={VAULT_KEY}")),
        _ => None,
    };
    let expected_query = match (kept, key_param) {
        (Some(kept), Some(param)) => Some(format!("{kept}&{param}")),
        (Some(kept), None) => Some(kept),
        (None, param) => param,
    };
    match (&expected_query, url.query()) {
        (Some(expected), Some(actual)) if expected.chars().all(is_query_char) => {
            assert_eq!(actual, expected, "{raw:?}")
        }
        (Some(expected), Some(actual)) => {
            assert_eq!(decode(actual), decode(expected), "{raw:?}")
        }
        (None, None) => {}
        (Some(expected), None) if expected.is_empty() => {}
        (expected, actual) => panic!("{raw:?}: query {actual:?}, expected {expected:?}"),
    }

    let text = format!("{url}{:?}", header_text(&upstream.headers));
    let expected_keys = usize::from(provider.auth.needs_key());
    assert_eq!(
        text.matches(VAULT_KEY).count(),
        expected_keys,
        "{raw:?}: {text}"
    );
}

fn header_text(headers: &HeaderMap) -> String {
    headers
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
        .collect()
}

/// Checks credential extraction and removal.
///
/// Fields: an auth-style selector byte, a query, then header names and
/// values in turn. Properties: every credential in a header or in the `key`
/// parameter is found; the upstream request carries no client credential
/// header, no credential parameter and no `Sec-WebSocket-*` header, only
/// the vault key once; `remove_params` keeps the other parameters byte for
/// byte and in order.
pub fn check_credentials(data: &[u8]) {
    let fields = fields(data, 10);
    let ids = provider_ids();
    let selector = fields[0].bytes().next().unwrap_or(0) as usize;
    let id = &ids[selector % ids.len()];
    let query = &fields[1];
    if data
        .windows(VAULT_KEY.len())
        .any(|window| window == VAULT_KEY.as_bytes())
    {
        return;
    }
    let mut headers = HeaderMap::new();
    for pair in fields[2..].chunks(2) {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(pair[0].as_bytes()),
            HeaderValue::from_bytes(pair[1].as_bytes()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    check_remove_params(
        query,
        &fuzzing::credential_params(&AuthStyle::Query("token".into())),
    );

    let registry = registry();
    let provider = registry.get(id).unwrap();
    let query_part = (!query.is_empty()).then_some(query.as_str());
    let found: Vec<String> = fuzzing::client_credentials(&headers, query_part, &provider.auth)
        .iter()
        .map(|secret| secret.expose_secret().to_string())
        .collect();
    assert!(found.iter().all(|value| !value.is_empty()));
    for value in headers.get_all("authorization") {
        if let Some(token) = value.to_str().ok().and_then(fuzzing::bearer_token) {
            assert!(
                token.is_empty() || found.iter().any(|f| f == token),
                "{token:?} missed"
            );
        }
    }
    for name in ["x-api-key", "x-goog-api-key", "api-key"] {
        for value in headers.get_all(name) {
            if let Ok(text) = value.to_str() {
                let text = text.trim();
                assert!(
                    text.is_empty() || found.iter().any(|f| f == text),
                    "{name}: {text:?} missed"
                );
            }
        }
    }
    if let Some(query) = query_part {
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if decode(name) == TOKEN_QUERY_PARAM && !value.is_empty() {
                let value = decode(value);
                assert!(found.contains(&value), "key={value:?} missed");
            }
        }
    }

    let target = format!("/llm/{id}/v1/x?{query}");
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let key = SecretString::from(VAULT_KEY);
    let Ok(upstream) = fuzzing::build_upstream(provider, &uri, &headers, &key) else {
        return;
    };
    let injected = match &provider.auth {
        AuthStyle::Bearer => Some("authorization"),
        AuthStyle::Anthropic if upstream.headers.contains_key("authorization") => {
            Some("authorization")
        }
        AuthStyle::Anthropic => Some("x-api-key"),
        AuthStyle::Header(name) => Some(name.as_str()),
        AuthStyle::Query(_) | AuthStyle::None => None,
    };
    for name in upstream.headers.keys() {
        let name = name.as_str();
        if Some(name) == injected {
            continue;
        }
        assert!(
            !CLIENT_CREDENTIAL_HEADERS.contains(&name),
            "{name} forwarded"
        );
        assert!(!name.starts_with("sec-websocket-"), "{name} forwarded");
        let own_header = matches!(&provider.auth, AuthStyle::Header(own) if own == name);
        assert!(!own_header, "{name} forwarded");
    }
    if let Some(name) = injected {
        let values: Vec<&HeaderValue> = upstream.headers.get_all(name).iter().collect();
        assert_eq!(values.len(), 1, "{name} sent {} times", values.len());
        assert!(values[0].to_str().unwrap().ends_with(VAULT_KEY));
    }
    let names = fuzzing::credential_params(&provider.auth);
    for pair in upstream.url.query().unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if names.contains(&decode(name).as_str()) {
            assert_eq!(value, VAULT_KEY, "credential parameter {pair:?} forwarded");
        }
    }
}

/// Checks that `remove_params` keeps every other parameter byte for byte
/// and in order, and removes all parameters named in `names`.
fn check_remove_params(query: &str, names: &[&str]) {
    let result = fuzzing::remove_params(query, names);
    let is_credential = |pair: &&str| {
        let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
        names.contains(&decode(name).as_str())
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !is_credential(pair))
        .collect();
    let removed = kept.len() != query.split('&').count();
    if !removed {
        assert_eq!(result.as_deref(), Some(query), "untouched query changed");
        return;
    }
    let joined = kept.join("&");
    let expected = (!joined.is_empty()).then_some(joined);
    assert_eq!(result, expected, "{query:?}");
}

/// Checks the config loader on arbitrary text: it never panics, and a
/// configuration it accepts renders to TOML that loads back to the same
/// settings.
pub fn check_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz/config.toml");
    let Ok(config) = Config::parse(path, &text) else {
        return;
    };
    let rendered = config.to_toml();
    let again = Config::parse(path, &rendered)
        .unwrap_or_else(|error| panic!("rendered config does not load: {error}\n{rendered}"));
    assert_eq!(again.proxy, config.proxy, "{rendered}");
    let before: Vec<&Provider> = config.providers.iter().collect();
    let after: Vec<&Provider> = again.providers.iter().collect();
    assert_eq!(after, before, "{rendered}");
}

/// Checks the response usage parser on an arbitrary body. The first byte
/// picks the provider format and the content type, the second how the body
/// is split into chunks, and the rest is the body. The parser never fails
/// internally on an uncompressed body, and splitting the body into chunks
/// never changes the usage it reads, as a stream's network reads may split
/// it anywhere.
pub fn check_usage(data: &[u8]) {
    let [choice, split, body @ ..] = data else {
        return;
    };
    let format = [
        UsageFormat::OpenAi,
        UsageFormat::Anthropic,
        UsageFormat::Google,
        UsageFormat::Mistral,
    ][usize::from(choice % 4)];
    let content_type = [
        Some("text/event-stream"),
        Some("application/json"),
        Some("text/event-stream; charset=utf-8"),
        None,
    ][usize::from((choice / 4) % 4)];
    // Bit 4 reads the body as the provider's side of a Realtime WebSocket
    // session, bit 5 with permessage-deflate negotiated.
    let websocket = choice & 0x10 != 0;
    let extensions = (choice & 0x20 != 0).then_some("permessage-deflate");
    let new_tap = || {
        if websocket {
            UsageTap::websocket(extensions)
        } else {
            UsageTap::new(format, content_type, None)
        }
    };

    let mut whole = new_tap();
    whole.push(body);
    let whole = whole.finish();
    // Frames can be malformed, and then the WebSocket reader gives up on
    // purpose; a body of any other kind never makes the parser fail.
    if !websocket {
        assert_ne!(whole.note, Some(UsageNote::ParserFailed), "{whole:?}");
    }

    // Chunks of 1 to 16 bytes, in a pattern that `split` picks.
    let mut split_tap = new_tap();
    let mut rest = body;
    let mut step = usize::from(*split);
    while !rest.is_empty() {
        step = step.wrapping_mul(31).wrapping_add(7);
        let size = (step % 16 + 1).min(rest.len());
        let (chunk, after) = rest.split_at(size);
        split_tap.push(chunk);
        rest = after;
    }
    let split = split_tap.finish();
    assert_eq!(
        split, whole,
        "{format:?} {content_type:?} websocket={websocket}"
    );
}
