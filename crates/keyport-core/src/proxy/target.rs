//! The upstream request target: the client's path and query, taken
//! verbatim from the request line, with client credentials removed from
//! the query and the provider's base URL in front.
//!
//! Nothing here decodes and re-encodes the path: `models/x:generateContent`
//! keeps its `:`, `%3A` stays `%3A`, and query parameters keep their order
//! and encoding.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Url;

use super::errors::ProxyError;
use crate::secret::{ExposeSecret, SecretString};

/// Route prefix of every provider route.
const LLM_PREFIX: &str = "/llm/";

/// Characters left as they are in a query value: RFC 3986 unreserved.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Splits `/llm/{provider}{rest}` into the raw provider segment and the
/// rest of the path (empty or starting with `/`).
pub(crate) fn split_llm_path(path: &str) -> Option<(&str, &str)> {
    let after = path.strip_prefix(LLM_PREFIX)?;
    match after.find('/') {
        Some(slash) => Some((&after[..slash], &after[slash..])),
        None => Some((after, "")),
    }
}

/// Returns whether `path` has a `.` or `..` segment, plain or percent-encoded.
/// URL parsers resolve these, so such a path cannot be forwarded verbatim.
/// A backslash also separates segments, because the URL standard treats it
/// as `/` in http and https URLs.
pub(crate) fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// Returns the percent-decoded values of every query parameter called `name`.
pub(crate) fn query_values<'a>(
    query: &'a str,
    name: &'a str,
) -> impl Iterator<Item = Cow<'a, str>> + 'a {
    query.split('&').filter_map(move |pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

/// Removes every parameter whose decoded name is in `names`. The other
/// parameters keep their bytes and order; an untouched query is returned
/// as it was. Returns None when no parameter remains.
pub(crate) fn remove_params(query: &str, names: &[&str]) -> Option<String> {
    let mut removed = false;
    let remaining: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(key, _)| key);
            let drop = names.contains(&decode(key).as_ref());
            removed |= drop;
            !drop
        })
        .collect();
    if !removed {
        return Some(query.to_string());
    }
    let joined = remaining.join("&");
    (!joined.is_empty()).then_some(joined)
}

fn decode(text: &str) -> Cow<'_, str> {
    percent_decode_str(text).decode_utf8_lossy()
}

/// A query parameter that carries the vault key, appended last.
pub(crate) struct KeyParam<'a> {
    pub name: &'a str,
    pub key: &'a SecretString,
}

/// Builds the upstream URL: `base` + `rest` + `?query`, plus the key
/// parameter for query-auth providers. A base whose path is `/` adds no
/// prefix.
///
/// The result contains the key in its query for query-auth providers, so it
/// must never be logged or put in an error.
pub(crate) fn upstream_url(
    base: &Url,
    rest: &str,
    query: Option<&str>,
    key_param: Option<KeyParam<'_>>,
) -> Result<Url, ProxyError> {
    if has_dot_segment(rest) {
        return Err(ProxyError::InvalidPath);
    }
    let mut text = base.as_str().trim_end_matches('/').to_string();
    // URL parsers read `\` in an http(s) path as `/`, which would change the
    // path's segments. Escaped, it reaches the provider as the same character.
    text.push_str(&rest.replace('\\', "%5C"));

    let mut separator = '?';
    if let Some(query) = query {
        text.push(separator);
        text.push_str(query);
        separator = '&';
    }
    if let Some(param) = key_param {
        text.push(separator);
        text.push_str(&utf8_percent_encode(param.name, QUERY_VALUE).to_string());
        text.push('=');
        text.push_str(&utf8_percent_encode(param.key.expose_secret(), QUERY_VALUE).to_string());
    }
    // `Url` percent-encodes characters that are not valid in a URL (a
    // space, `"`, `<`) and leaves everything else, including `%XX`
    // escapes, as it is.
    let url = Url::parse(&text).map_err(|_| ProxyError::InvalidPath)?;

    // The key goes only to the provider's own scheme, host and port, and
    // only below the base URL's path, whatever the request path contains.
    if url.origin() != base.origin() || !is_below(url.path(), base_path(base)) {
        return Err(ProxyError::InvalidPath);
    }
    Ok(url)
}

/// Returns whether `path` is `prefix` or a path inside it.
fn is_below(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Returns the base URL's path without a trailing slash, or nothing for `/`.
fn base_path(base: &Url) -> &str {
    base.path().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_rest_verbatim() {
        assert_eq!(
            split_llm_path("/llm/google/v1beta/models/g:generateContent"),
            Some(("google", "/v1beta/models/g:generateContent"))
        );
        assert_eq!(split_llm_path("/llm/openai"), Some(("openai", "")));
        assert_eq!(split_llm_path("/llm/openai/"), Some(("openai", "/")));
        assert_eq!(split_llm_path("/healthz"), None);
    }

    #[test]
    fn dot_segments_are_found_in_any_spelling() {
        assert!(has_dot_segment("/v1/../x"));
        assert!(has_dot_segment("/v1/%2E%2e/x"));
        assert!(has_dot_segment("/./x"));
        assert!(has_dot_segment("/x\\..\\..\\y"));
        assert!(has_dot_segment("/x/%2e%2e\\y"));
        assert!(!has_dot_segment("/v1/models/a..b:x"));
        assert!(!has_dot_segment("/v1/.well-known"));
    }

    #[test]
    fn remove_params_keeps_the_rest_byte_identical() {
        assert_eq!(
            remove_params("alt=sse&key=AIza&foo=1%2B2", &["key"]).as_deref(),
            Some("alt=sse&foo=1%2B2")
        );
        assert_eq!(remove_params("key=a&k%65y=b", &["key"]), None);
        assert_eq!(
            remove_params("b=2&&a=1", &["key"]).as_deref(),
            Some("b=2&&a=1")
        );
        assert_eq!(remove_params("", &["key"]).as_deref(), Some(""));
    }

    #[test]
    fn query_values_decode() {
        let values: Vec<_> = query_values("a=1&key=kp%5Fx&key=y", "key").collect();
        assert_eq!(values, ["kp_x", "y"]);
    }

    #[test]
    fn url_joins_base_and_rest_without_double_slash() {
        let base = Url::parse("http://127.0.0.1:9/v1").unwrap();
        let url = upstream_url(&base, "/chat/completions", Some("a=1"), None).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/v1/chat/completions?a=1");

        let root = Url::parse("http://127.0.0.1:9").unwrap();
        let url = upstream_url(&root, "/v1beta/models/g%3AgenerateContent", None, None).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/v1beta/models/g%3AgenerateContent"
        );
    }

    #[test]
    fn path_cannot_leave_the_base_path() {
        let base = Url::parse("http://127.0.0.1:9/team-a/v1").unwrap();
        for rest in [
            "/x\\..\\..\\stolen",
            "/..\\..\\y",
            "/x/%2e%2e\\y",
            "\\..\\team-b",
        ] {
            let result = upstream_url(&base, rest, None, None);
            assert!(result.is_err(), "{rest:?} gave {result:?}");
        }
        let url = upstream_url(&base, "/chat/completions", None, None).unwrap();
        assert_eq!(url.path(), "/team-a/v1/chat/completions");
    }

    #[test]
    fn path_cannot_change_the_host() {
        let base = Url::parse("https://api.example.test").unwrap();
        for rest in ["//evil.test/x", "/@evil.test", "/\\evil.test"] {
            let url = upstream_url(&base, rest, None, None).unwrap();
            assert_eq!(url.host_str(), Some("api.example.test"), "{rest}");
        }
    }

    #[test]
    fn backslash_stays_inside_its_segment() {
        let base = Url::parse("http://127.0.0.1:9/v1").unwrap();
        let url = upstream_url(&base, "/files/a\\b", Some("q=a\\b"), None).unwrap();
        assert_eq!(url.path(), "/v1/files/a%5Cb");
        assert_eq!(url.query(), Some("q=a\\b"));
    }

    #[test]
    fn key_param_is_percent_encoded() {
        let base = Url::parse("http://127.0.0.1:9").unwrap();
        let key = SecretString::from("a+b/c=d");
        let param = KeyParam {
            name: "key",
            key: &key,
        };
        let url = upstream_url(&base, "/x", Some("alt=sse"), Some(param)).unwrap();
        assert_eq!(url.query(), Some("alt=sse&key=a%2Bb%2Fc%3Dd"));
    }
}
