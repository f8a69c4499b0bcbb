//! One row of the request log and the field types that keep credentials out
//! of it.
//!
//! The path is stored without its query string (Gemini clients may send
//! `?key=…`), and captured bodies are redacted when they are created.
//! Neither type can be built from unchecked text, so a record cannot carry
//! a credential in those fields.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::prices::PriceTable;
use super::redact::{redact, REDACTED};
use super::usage::{Usage, UsageNote};

/// Maximum length of a stored path, in bytes.
const MAX_PATH_LEN: usize = 2048;

/// Maximum length of an error kind.
const MAX_ERROR_KIND_LEN: usize = 64;

/// Cause of a failed proxied call, as a short `snake_case` code such as
/// `upstream_timeout`. Records of successful calls have none.
///
/// Codes come from string constants in the program ([`ErrorKind::new`]
/// takes only `&'static str`), so client input or a credential cannot end
/// up in this field. The constants below are the common kinds; the proxy
/// may also pass its own error codes, such as `token_invalid`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ErrorKind(Cow<'static, str>);

impl ErrorKind {
    /// No connection to the upstream (DNS, refused, TLS handshake).
    pub const UPSTREAM_UNREACHABLE: Self = Self::new("upstream_unreachable");
    /// The upstream sent no response headers in time.
    pub const UPSTREAM_TIMEOUT: Self = Self::new("upstream_timeout");
    /// The upstream went silent in the middle of a response body.
    pub const UPSTREAM_IDLE_TIMEOUT: Self = Self::new("upstream_idle_timeout");
    /// The upstream connection failed after the request was sent.
    pub const UPSTREAM_FAILED: Self = Self::new("upstream_failed");
    /// The client went away before the response was complete.
    pub const CLIENT_CANCELLED: Self = Self::new("client_cancelled");
    /// The upstream closed a response body before its end.
    pub const INCOMPLETE_STREAM: Self = Self::new("incomplete_stream");
    /// The request body exceeded the proxy's limit.
    pub const BODY_TOO_LARGE: Self = Self::new("body_too_large");
    /// The vault is locked, so no provider key could be read.
    pub const VAULT_LOCKED: Self = Self::new("vault_locked");
    /// The client sent no valid Keyport token.
    pub const UNAUTHORIZED: Self = Self::new("unauthorized");
    /// A fault inside Keyport.
    pub const INTERNAL: Self = Self::new("internal");

    /// Wraps a code fixed in the program, such as a proxy error code.
    pub const fn new(code: &'static str) -> Self {
        Self(Cow::Borrowed(code))
    }

    /// Returns the code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a code read back from the log. A value that is not a short
    /// `snake_case` code becomes `other`.
    pub(crate) fn from_stored(code: String) -> Self {
        if is_code(&code) {
            Self(Cow::Owned(code))
        } else {
            Self::new("other")
        }
    }

    /// Returns the code as the log stores it: `other` unless it is a short
    /// `snake_case` code.
    pub(crate) fn stored(&self) -> &str {
        if is_code(&self.0) {
            &self.0
        } else {
            "other"
        }
    }
}

fn is_code(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ERROR_KIND_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A request path without query string or fragment, with key-like
/// segments redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LoggedPath(String);

impl LoggedPath {
    /// Takes a path as received, such as `/v1beta/models/x:generateContent?key=…`.
    pub fn new(path_and_query: &str) -> Self {
        let path = path_and_query.split(['?', '#']).next().unwrap_or_default();
        let path = truncate_at_char(path, MAX_PATH_LEN);
        Self(redact(path))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a path read back from the log, where it was stored cleaned.
    pub(crate) fn from_stored(path: String) -> Self {
        Self(path)
    }
}

/// Start of the note that ends a body cut at the capture limit.
const TRUNCATED_NOTE: &str = "\n[truncated; the body has ";

/// Shortest start of a secret that is redacted where a captured body was
/// cut. Shorter ends are too likely to be other text and reveal at most a
/// key's fixed prefix, such as `sk-`.
const MIN_CUT_SECRET_LEN: usize = 4;

/// The redacted start of a request or response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CapturedBody(String);

impl CapturedBody {
    /// Redacts `bytes` (the first bytes of a body of `total_len` bytes) and
    /// cuts the text to `limit` bytes. Bodies that are not UTF-8 text are
    /// stored as a size note only.
    pub fn from_bytes(bytes: &[u8], limit: usize, total_len: u64) -> Self {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            // The capture may end inside a multi-byte character.
            Err(error) if error.error_len().is_none() => {
                std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => return Self(format!("[binary body, {total_len} bytes]")),
        };
        let redacted = redact(text);
        let mut body = truncate_at_char(&redacted, limit).to_string();
        if total_len > body.len() as u64 || redacted.len() > limit {
            body.push_str(&format!("{TRUNCATED_NOTE}{total_len} bytes]"));
        }
        Self(body)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the body with every occurrence of `secret` replaced by the
    /// redaction marker: as is, with `/` escaped as JSON encoders may do it,
    /// and percent-encoded the ways query encoders commonly do it (every
    /// non-alphanumeric byte, or all but `-._~`, with upper- or lower-case
    /// hex digits). In a body cut at the capture limit, a start of `secret`
    /// of [`MIN_CUT_SECRET_LEN`] or more bytes at the cut is redacted too.
    pub fn without_secret(&self, secret: &str) -> Self {
        if secret.is_empty() {
            return self.clone();
        }
        const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        let mut forms = vec![secret.to_string()];
        for set in [percent_encoding::NON_ALPHANUMERIC, UNRESERVED] {
            let encoded = percent_encoding::utf8_percent_encode(secret, set).to_string();
            forms.push(lower_hex_escapes(&encoded));
            forms.push(encoded);
        }
        if secret.contains('/') {
            forms.push(secret.replace('/', "\\/"));
        }
        let mut text = self.0.clone();
        for form in &forms {
            text = text.replace(form.as_str(), REDACTED);
        }
        if let Some(note) = text.rfind(TRUNCATED_NOTE) {
            let before_note = &text[..note];
            let cut_secret = forms.iter().find_map(|form| {
                (MIN_CUT_SECRET_LEN..form.len())
                    .rev()
                    .filter(|len| form.is_char_boundary(*len))
                    .find(|len| before_note.ends_with(&form[..*len]))
            });
            if let Some(len) = cut_secret {
                text.replace_range(note - len..note, REDACTED);
            }
        }
        Self(text)
    }

    pub(crate) fn from_stored(body: String) -> Self {
        Self(body)
    }
}

fn truncate_at_char(text: &str, max_len: usize) -> &str {
    if text.len() <= max_len {
        return text;
    }
    let mut end = max_len;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Lower-cases the hex digits of every `%XX` escape, leaving other
/// characters as they are.
fn lower_hex_escapes(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut escape_digits = 0;
    for character in encoded.chars() {
        if character == '%' {
            escape_digits = 2;
            out.push(character);
        } else if escape_digits > 0 {
            escape_digits -= 1;
            out.push(character.to_ascii_lowercase());
        } else {
            out.push(character);
        }
    }
    out
}

/// One proxied request, as the proxy reports it to the log.
///
/// Token counts and cost are `None` when unknown, which is different from
/// zero. Build one with [`RequestRecord::new`], fill in what the call
/// produced, and add the response's usage with
/// [`RequestRecord::apply_usage`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRecord {
    /// When the proxy received the request, in UTC; stored to the
    /// millisecond.
    pub start_time: DateTime<Utc>,
    /// Name of the client token that authorised the request.
    pub token_name: Option<String>,
    /// Label of the vault key chosen for the request by the token's pin or
    /// the `x-keyport-key` header; `None` for the provider's default key.
    pub key_label: Option<String>,
    /// The request's `Origin` header, for browser clients.
    pub origin: Option<String>,
    pub provider: String,
    pub method: String,
    pub path: LoggedPath,
    pub model: Option<String>,
    /// Whether the response was a stream (Server-Sent Events or a JSON
    /// array of chunks).
    pub streamed: bool,
    /// HTTP status sent to the client; `None` if no response was sent.
    pub status: Option<u16>,
    pub error_kind: Option<ErrorKind>,
    /// Reason that usage is unknown or partial.
    pub usage_note: Option<UsageNote>,
    /// Milliseconds from receiving the request to the end of the response.
    pub latency_ms: u64,
    /// Milliseconds from receiving the request to the first response byte.
    pub ttfb_ms: Option<u64>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Every prompt token, including cached tokens and cache writes.
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Prompt tokens read from the provider's cache.
    pub cached_tokens: Option<u64>,
    /// Prompt tokens written to the provider's cache.
    pub cache_write_tokens: Option<u64>,
    /// Estimated cost in US dollars; `None` for models without a price.
    pub cost_usd: Option<f64>,
    /// The upstream's id for the request (`x-request-id`, `request-id`).
    pub upstream_request_id: Option<String>,
    /// Stored only when body capture is on.
    pub request_body: Option<CapturedBody>,
    /// Stored only when body capture is on.
    pub response_body: Option<CapturedBody>,
}

impl RequestRecord {
    /// Creates a record for a request with nothing yet known about its outcome.
    /// `path_and_query` is the path as received; only the path is kept.
    pub fn new(
        start_time: DateTime<Utc>,
        provider: &str,
        method: &str,
        path_and_query: &str,
    ) -> Self {
        Self {
            start_time,
            token_name: None,
            key_label: None,
            origin: None,
            provider: provider.to_string(),
            method: method.to_string(),
            path: LoggedPath::new(path_and_query),
            model: None,
            streamed: false,
            status: None,
            error_kind: None,
            usage_note: None,
            latency_ms: 0,
            ttfb_ms: None,
            request_bytes: 0,
            response_bytes: 0,
            input_tokens: None,
            output_tokens: None,
            cached_tokens: None,
            cache_write_tokens: None,
            cost_usd: None,
            upstream_request_id: None,
            request_body: None,
            response_body: None,
        }
    }

    /// Copies token counts from `usage` and prices them. The model the
    /// client requested stays the record's model when known, because dated
    /// names in responses (`gpt-4o-mini-2024-07-18`) would split the totals.
    /// Pricing tries the response's model first.
    pub fn apply_usage(&mut self, usage: &Usage, prices: &PriceTable) {
        self.input_tokens = usage.input_tokens;
        self.output_tokens = usage.output_tokens;
        self.cached_tokens = usage.cached_tokens;
        self.cache_write_tokens = usage.cache_write_tokens;
        self.usage_note = usage.note;

        let candidates = [usage.model.as_deref(), self.model.as_deref()];
        self.cost_usd = candidates
            .into_iter()
            .flatten()
            .find_map(|model| prices.cost(&self.provider, model, usage));
        if self.model.is_none() {
            self.model = usage.model.clone();
        }
    }
}

/// A record as stored, with the id the log gave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedRequest {
    /// Row id, increasing in insertion order.
    pub id: i64,
    #[serde(flatten)]
    pub record: RequestRecord,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_secret_removes_plain_and_encoded_forms() {
        let secret = "qp-vault+CANARY/0005=";
        let body = CapturedBody(format!(
            "a {secret} b qp-vault%2BCANARY%2F0005%3D c qp%2dvault%2bCANARY%2f0005%3d d"
        ));
        let cleaned = body.without_secret(secret);
        assert!(!cleaned.as_str().contains("CANARY"), "{}", cleaned.as_str());
        assert_eq!(cleaned.as_str().matches(REDACTED).count(), 3);
    }

    #[test]
    fn without_secret_removes_json_escaped_and_cut_forms() {
        let secret = "sk/FAKE+SLASH/0010";
        let body = CapturedBody(r#"{"echo":"sk\/FAKE+SLASH\/0010"}"#.to_string());
        let cleaned = body.without_secret(secret);
        assert!(!cleaned.as_str().contains("FAKE"), "{}", cleaned.as_str());

        // The capture limit cuts the key after its first 10 bytes.
        let text = format!("{} sk/FAKE+SL", " ".repeat(20));
        let body = CapturedBody::from_bytes(text.as_bytes(), text.len(), 4096);
        let cleaned = body.without_secret(secret);
        assert!(!cleaned.as_str().contains("FAKE"), "{}", cleaned.as_str());
        assert!(cleaned.as_str().contains(REDACTED), "{}", cleaned.as_str());
        assert!(cleaned
            .as_str()
            .contains("[truncated; the body has 4096 bytes]"));

        // Three bytes of a key's start at the cut are left as they are.
        let text = format!("{} sk/", " ".repeat(20));
        let body = CapturedBody::from_bytes(text.as_bytes(), text.len(), 4096);
        assert_eq!(body.without_secret(secret), body);
        // An untruncated body ending like a key's start is left as it is.
        let body = CapturedBody("ends with sk/FAKE".to_string());
        assert_eq!(body.without_secret(secret), body);
    }

    #[test]
    fn path_drops_query_and_fragment() {
        let path = LoggedPath::new(
            "/v1beta/models/gemini-2.5-flash:generateContent?key=AIzaSyX&alt=sse#f",
        );
        assert_eq!(
            path.as_str(),
            "/v1beta/models/gemini-2.5-flash:generateContent"
        );
    }

    #[test]
    fn path_redacts_key_segments() {
        let path = LoggedPath::new("/v1/sk-proj-abcdefghijklmnop0123/chat");
        assert_eq!(path.as_str(), "/v1/[REDACTED]/chat");
    }

    #[test]
    fn captured_body_cut_at_char_boundary() {
        let body = CapturedBody::from_bytes("ééééé".as_bytes(), 5, 10);
        assert!(
            body.as_str().starts_with("éé\n[truncated"),
            "{}",
            body.as_str()
        );
    }

    #[test]
    fn captured_body_keeps_short_text_whole() {
        let body = CapturedBody::from_bytes(b"{\"a\":1}", 100, 7);
        assert_eq!(body.as_str(), "{\"a\":1}");
    }

    #[test]
    fn captured_binary_body_is_a_size_note() {
        let body = CapturedBody::from_bytes(&[0xff, 0xfe, 0x00, 0x41], 100, 4000);
        assert_eq!(body.as_str(), "[binary body, 4000 bytes]");
    }

    #[test]
    fn error_kind_keeps_codes_and_rejects_odd_text() {
        let kind = ErrorKind::UPSTREAM_TIMEOUT;
        assert_eq!(kind.as_str(), "upstream_timeout");
        assert_eq!(
            serde_json::to_string(&kind).unwrap(),
            "\"upstream_timeout\""
        );
        assert_eq!(ErrorKind::new("token_invalid").stored(), "token_invalid");
        assert_eq!(ErrorKind::new("Not A Code").stored(), "other");
        assert_eq!(
            ErrorKind::from_stored("key_not_stored".into()).as_str(),
            "key_not_stored"
        );
        assert_eq!(ErrorKind::from_stored("x".repeat(65)).as_str(), "other");
    }
}
