//! Browser safety: the `Host` check against DNS rebinding, the `Origin`
//! allow-list, CORS preflights and the CORS headers on every response.
//!
//! Responses never carry `Access-Control-Allow-Credentials`: the proxy
//! drops cookies, and clients authenticate with tokens in headers, which
//! need no credentialed CORS.

use std::net::IpAddr;

use axum::body::Body;
use axum::response::Response;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HOST, ORIGIN, VARY,
};
use http::{Method, StatusCode, Uri};

use super::errors::ProxyError;
use crate::config::ProxyConfig;

/// Methods a preflight allows; the requested method is added if missing.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";

/// How long browsers may cache a preflight, in seconds. Chromium caps this
/// at 7200.
const PREFLIGHT_MAX_AGE_SECS: &str = "7200";

/// Response headers a page can read without being named in
/// `Access-Control-Expose-Headers` (the Fetch standard's CORS-safelisted
/// response headers), and headers no page may read.
const NOT_EXPOSED: [&str; 9] = [
    "cache-control",
    "content-language",
    "content-length",
    "content-type",
    "expires",
    "last-modified",
    "pragma",
    "set-cookie",
    "set-cookie2",
];

/// Chrome's Private Network Access preflight header, sent when a page on a
/// public origin calls a loopback address.
const REQUEST_PRIVATE_NETWORK: &str = "access-control-request-private-network";
const ALLOW_PRIVATE_NETWORK: &str = "access-control-allow-private-network";

/// Rejects a request whose `Host` (or HTTP/2 `:authority`) is not this
/// machine. A DNS-rebinding page reaches 127.0.0.1 under its own domain
/// name, which shows up here.
pub(crate) fn check_host(
    config: &ProxyConfig,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), ProxyError> {
    let mut authorities: Vec<&str> = Vec::new();
    if let Some(authority) = uri.authority() {
        authorities.push(authority.as_str());
    }
    for value in headers.get_all(HOST) {
        authorities.push(value.to_str().unwrap_or("\u{fffd}"));
    }
    if authorities.is_empty() {
        return Err(ProxyError::HostNotAllowed {
            host: String::new(),
        });
    }
    for authority in authorities {
        if !host_allowed(authority, config.bind) {
            return Err(ProxyError::HostNotAllowed {
                host: authority.chars().take(100).collect(),
            });
        }
    }
    Ok(())
}

/// Returns whether `authority` (`host[:port]`) names a loopback address, the bind
/// address, or, when the proxy listens on all interfaces, any IP address.
/// IP literals cannot be rebound, so only host names need the allow-list.
fn host_allowed(authority: &str, bind: IpAddr) -> bool {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return false;
        };
        (host, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if port.is_some_and(|port| port.parse::<u16>().is_err()) {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == bind || bind.is_unspecified(),
        Err(_) => false,
    }
}

/// The CORS decision for one request: the allowed origin to echo, or none
/// when the request carried no `Origin`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cors {
    origin: Option<HeaderValue>,
}

/// Checks `Origin` against the allow-list. Requests without one (command
/// line tools, SDKs outside a browser) pass, unless the browser marked them
/// as coming from another site: a plain link, image or no-cors `fetch` from
/// any web page carries `Sec-Fetch-Site: cross-site` and no `Origin`.
pub(crate) fn check_origin(config: &ProxyConfig, headers: &HeaderMap) -> Result<Cors, ProxyError> {
    let Some(value) = headers.get(ORIGIN) else {
        let site = headers
            .get("sec-fetch-site")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("none");
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Err(ProxyError::CrossSiteRequest {
                site: site.chars().take(20).collect(),
            });
        }
        return Ok(Cors::default());
    };
    let text = value.to_str().unwrap_or("");
    let allowed = !text.is_empty()
        && config
            .allowed_origins
            .iter()
            .any(|pattern| pattern.matches(text));
    if !allowed {
        return Err(ProxyError::OriginNotAllowed {
            origin: text.chars().take(200).collect(),
        });
    }
    Ok(Cors {
        origin: Some(value.clone()),
    })
}

/// Returns whether the request is a CORS preflight, which the proxy
/// responds to itself.
pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

impl Cors {
    /// Builds the 204 response to a preflight. It needs no token because
    /// browsers send preflights without credentials.
    pub(crate) fn preflight_response(&self, request: &HeaderMap) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let Some(origin) = &self.origin else {
            return response;
        };

        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, allowed_methods(request));

        // Echo the requested names. A bare `*` would not cover
        // `Authorization`, which the Fetch standard never lets a wildcard
        // allow.
        if let Some(requested) = requested_headers(request) {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, requested);
        }
        if request
            .get(REQUEST_PRIVATE_NETWORK)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"true"))
        {
            headers.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
        }

        headers.insert(
            ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
        );
        headers.append(
            VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
            ),
        );
        response
    }

    /// Adds `Access-Control-Allow-Origin`, `Vary: Origin` and
    /// `Access-Control-Expose-Headers` to a response for an allowed origin.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        let Some(origin) = &self.origin else {
            return;
        };
        let exposed: Vec<&str> = headers
            .keys()
            .map(HeaderName::as_str)
            .filter(|name| !NOT_EXPOSED.contains(name) && !name.starts_with("access-control-"))
            .collect();
        // Header names are tokens, so the joined list is a valid value.
        let exposed = HeaderValue::from_str(&exposed.join(", ")).ok();

        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.append(VARY, HeaderValue::from_static("Origin"));
        if let Some(exposed) = exposed.filter(|value| !value.is_empty()) {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, exposed);
        }
    }
}

fn allowed_methods(request: &HeaderMap) -> HeaderValue {
    let requested = request
        .get(ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| Method::from_bytes(text.trim().as_bytes()).ok());
    match requested {
        Some(method) if !ALLOWED_METHODS.split(", ").any(|m| m == method.as_str()) => {
            HeaderValue::from_str(&format!("{ALLOWED_METHODS}, {method}"))
                .unwrap_or(HeaderValue::from_static(ALLOWED_METHODS))
        }
        _ => HeaderValue::from_static(ALLOWED_METHODS),
    }
}

/// Returns the requested header names, lower-cased and validated, as one list.
fn requested_headers(request: &HeaderMap) -> Option<HeaderValue> {
    let names: Vec<HeaderName> = request
        .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    if names.is_empty() {
        return None;
    }
    let list: Vec<&str> = names.iter().map(HeaderName::as_str).collect();
    HeaderValue::from_str(&list.join(", ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_pass_and_names_do_not() {
        let bind = IpAddr::from([127, 0, 0, 1]);
        for host in [
            "127.0.0.1:7447",
            "localhost",
            "LOCALHOST:1",
            "[::1]:7447",
            "127.0.0.2",
        ] {
            assert!(host_allowed(host, bind), "{host}");
        }
        for host in [
            "evil.test",
            "evil.test:7447",
            "localhost.evil.test",
            "192.168.1.2:7447",
            "127.0.0.1:x",
            "[::1",
        ] {
            assert!(!host_allowed(host, bind), "{host}");
        }
    }

    #[test]
    fn any_ip_passes_when_bound_to_all_interfaces() {
        let bind = IpAddr::from([0, 0, 0, 0]);
        assert!(host_allowed("192.168.1.2:7447", bind));
        assert!(!host_allowed("evil.test:7447", bind));
    }

    #[test]
    fn expose_list_skips_safelisted_headers() {
        let cors = Cors {
            origin: Some(HeaderValue::from_static("http://localhost:5173")),
        };
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("retry-after", HeaderValue::from_static("20"));
        headers.insert("x-request-id", HeaderValue::from_static("r"));
        cors.apply(&mut headers);
        assert_eq!(
            headers.get(ACCESS_CONTROL_EXPOSE_HEADERS).unwrap(),
            "retry-after, x-request-id"
        );
        assert_eq!(headers.get(VARY).unwrap(), "Origin");
    }
}
