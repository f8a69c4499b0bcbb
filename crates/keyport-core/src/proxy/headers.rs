//! Header filtering in each direction.
//!
//! Requests: everything the client sent goes upstream except hop-by-hop
//! headers, `Host` (reqwest sets the upstream authority), every client
//! credential, the browser-only headers, the WebSocket handshake headers
//! and Keyport's own `x-keyport-*` headers. Responses: everything the provider sent comes back except
//! hop-by-hop headers, its CORS headers (the proxy sets its own) and
//! `alt-svc`, which describes the provider's host and not the proxy's.

use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};

use crate::providers::AuthStyle;

/// Hop-by-hop headers (RFC 9110 section 7.6.1, plus the legacy
/// `keep-alive` and `proxy-connection`). They describe one connection and
/// must not be forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Every header in which a client may present a credential. None of them
/// reaches the provider, whether it held a Keyport token or a placeholder.
pub(crate) const CLIENT_CREDENTIAL_HEADERS: [&str; 6] = [
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "proxy-authorization",
    "cookie",
];

/// Headers a browser adds that describe the page, not the API call. The
/// upstream call is server to server; Anthropic, for one, rejects requests
/// with an `Origin` unless a browser opt-in header is present.
const BROWSER_HEADERS: [&str; 3] = ["origin", "referer", "cookie"];
const BROWSER_HEADER_PREFIX: &str = "sec-fetch-";

/// Prefix of Keyport's own request headers, such as `x-keyport-key`.
const KEYPORT_HEADER_PREFIX: &str = "x-keyport-";

/// Prefix of the WebSocket handshake headers. They belong to one leg of the
/// connection: the WebSocket route sends its own upstream, and on other
/// routes a `Sec-WebSocket-Protocol` could carry a client credential.
const WEBSOCKET_HEADER_PREFIX: &str = "sec-websocket-";

/// Other request headers that must not be copied: reqwest derives `Host`
/// from the upstream URL, and hyper's client does not implement
/// `Expect: 100-continue`.
const REQUEST_ONLY: [&str; 2] = ["host", "expect"];

/// Response headers the proxy drops: it sets its own CORS headers, and `alt-svc`
/// would point browsers at an alternative service for the proxy's address.
const RESPONSE_DROPPED_PREFIX: &str = "access-control-";
const RESPONSE_DROPPED: [&str; 1] = ["alt-svc"];

/// Names listed in `Connection`, which are hop-by-hop for this message.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// Copies the headers for which `keep` holds, in their original order, and
/// never a hop-by-hop header. (`HeaderMap::remove` would reorder the rest.)
fn copy_headers(source: &HeaderMap, keep: impl Fn(&str) -> bool) -> HeaderMap {
    let listed = connection_listed(source);
    let mut copy = HeaderMap::with_capacity(source.len());
    for (name, value) in source {
        let hop_by_hop = HOP_BY_HOP.contains(&name.as_str()) || listed.contains(name);
        if !hop_by_hop && keep(name.as_str()) {
            copy.append(name.clone(), value.clone());
        }
    }
    copy
}

/// Returns the client's headers as they go upstream, before the vault key is added.
pub(crate) fn upstream_request_headers(client: &HeaderMap, auth: &AuthStyle) -> HeaderMap {
    let provider_header = match auth {
        AuthStyle::Header(name) => Some(name.as_str()),
        _ => None,
    };
    copy_headers(client, |name| {
        !(REQUEST_ONLY.contains(&name)
            || CLIENT_CREDENTIAL_HEADERS.contains(&name)
            || BROWSER_HEADERS.contains(&name)
            || provider_header == Some(name)
            || name.starts_with(BROWSER_HEADER_PREFIX)
            || name.starts_with(KEYPORT_HEADER_PREFIX)
            || name.starts_with(WEBSOCKET_HEADER_PREFIX))
    })
}

/// Returns the provider's response headers as they go to the client, before CORS
/// headers are added.
pub(crate) fn client_response_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut headers = copy_headers(upstream, |name| {
        !(name.starts_with(RESPONSE_DROPPED_PREFIX) || RESPONSE_DROPPED.contains(&name))
    });
    if is_event_stream(&headers) {
        // Ask caches and buffering reverse proxies in front of the client
        // (nginx honours `x-accel-buffering`) to pass events through at once.
        if !headers.contains_key(CACHE_CONTROL) {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        headers
            .entry("x-accel-buffering")
            .or_insert(HeaderValue::from_static("no"));
    }
    headers
}

/// Returns whether the response is a server-sent event stream.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn connection_listed_headers_are_removed() {
        let headers = map(&[
            ("connection", "keep-alive, X-Drop-Me"),
            ("x-drop-me", "1"),
            ("x-keep", "1"),
            ("te", "trailers"),
        ]);
        let headers = copy_headers(&headers, |_| true);
        assert!(headers.get("x-drop-me").is_none());
        assert!(headers.get("te").is_none());
        assert!(headers.get("connection").is_none());
        assert_eq!(headers.get("x-keep").unwrap(), "1");
    }

    #[test]
    fn request_drops_credentials_and_browser_headers() {
        let client = map(&[
            ("host", "127.0.0.1:1"),
            ("authorization", "Bearer x"),
            ("x-goog-api-key", "x"),
            ("custom-key", "x"),
            ("origin", "http://localhost:5173"),
            ("sec-fetch-mode", "cors"),
            ("x-keyport-key", "work"),
            ("sec-websocket-protocol", "openai-insecure-api-key.x"),
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
        ]);
        let headers = upstream_request_headers(&client, &AuthStyle::Header("custom-key".into()));
        let names: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
        assert_eq!(names, ["content-type", "anthropic-version"]);
    }

    #[test]
    fn event_stream_gets_no_buffering_headers_once() {
        let upstream = map(&[
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-store"),
            ("access-control-allow-origin", "*"),
        ]);
        let headers = client_response_headers(&upstream);
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
        assert_eq!(headers.get("x-accel-buffering").unwrap(), "no");
        assert!(headers.get("access-control-allow-origin").is_none());
    }
}
