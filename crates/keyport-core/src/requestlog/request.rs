//! Facts the log reads from a client's request: the model, and whether the
//! client requested a stream with usage.

use serde_json::Value;

use super::json_scan::{JsonScanner, KeyPath};

/// Bytes of a request body inspected for `"model"`. SDKs put `model` before
/// or right after a short message list, and a full scan of a 32 MiB upload
/// would cost more than the log is worth.
pub const REQUEST_INSPECT_LIMIT: usize = 64 * 1024;

/// Maximum length of a model name taken from a request.
const MAX_MODEL_LEN: usize = 128;

const REQUEST_TARGETS: &[KeyPath] = &[
    &["model"],
    &["stream"],
    &["stream_options", "include_usage"],
];

/// Facts taken from a request's path and the start of its JSON body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// The `model` field, or the model in a Gemini path
    /// (`…/models/NAME:generateContent`).
    pub model: Option<String>,
    /// The body's `stream` field, when present.
    pub stream: Option<bool>,
    /// The body's `stream_options.include_usage`, which OpenAI-compatible
    /// APIs need before they report usage on a stream.
    pub include_usage: Option<bool>,
}

/// Reads the model from a Gemini-style path or from the first
/// [`REQUEST_INSPECT_LIMIT`] bytes of a JSON body.
pub fn model_from_request(path: &str, body_prefix: &[u8]) -> Option<String> {
    inspect_request(path, body_prefix).model
}

/// Reads [`RequestInfo`] from the path and the first
/// [`REQUEST_INSPECT_LIMIT`] bytes of the body. Bytes past the limit are
/// ignored, so callers may pass the whole body.
pub fn inspect_request(path: &str, body_prefix: &[u8]) -> RequestInfo {
    let body = &body_prefix[..body_prefix.len().min(REQUEST_INSPECT_LIMIT)];
    let mut scanner = JsonScanner::new(REQUEST_TARGETS);
    let starts_like_json = body
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|&byte| byte == b'{');
    if starts_like_json {
        scanner.push(body);
    }

    let body_model = match scanner.value(0) {
        Some(Value::String(model)) => clean_model(&model),
        _ => None,
    };
    let as_bool = |index| match scanner.value(index) {
        Some(Value::Bool(flag)) => Some(flag),
        _ => None,
    };
    RequestInfo {
        model: model_from_path(path).or(body_model),
        stream: as_bool(1),
        include_usage: as_bool(2),
    }
}

/// Returns the model in a Gemini path: the segment after `models/` up to `:`.
/// Tuned models (`tunedModels/NAME:…`) are handled the same way.
fn model_from_path(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let mut segments = path.split('/');
    while let Some(segment) = segments.next() {
        if segment == "models" || segment == "tunedModels" {
            let name = segments.next()?;
            let model = name.split(':').next()?;
            return clean_model(model);
        }
    }
    None
}

/// Accepts model names made of the characters providers use, so that
/// arbitrary client text never reaches the log through this field.
pub(crate) fn clean_model(model: &str) -> Option<String> {
    let valid = !model.is_empty()
        && model.len() <= MAX_MODEL_LEN
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:/@+".contains(&b));
    valid.then(|| model.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_and_stream_flags_from_json() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"model\": x"}],"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}"#;
        let info = inspect_request("/v1/chat/completions", body);
        assert_eq!(info.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(info.stream, Some(true));
        assert_eq!(info.include_usage, Some(true));
    }

    #[test]
    fn reads_model_from_gemini_path() {
        let model = model_from_request(
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            b"{\"contents\":[]}",
        );
        assert_eq!(model.as_deref(), Some("gemini-2.5-flash"));
    }

    #[test]
    fn ignores_model_beyond_the_limit() {
        let padding = "x".repeat(REQUEST_INSPECT_LIMIT);
        let body = format!(r#"{{"input":"{padding}","model":"gpt-4o"}}"#);
        assert_eq!(model_from_request("/v1/responses", body.as_bytes()), None);
    }

    #[test]
    fn rejects_nested_or_odd_model_values() {
        assert_eq!(model_from_request("/", br#"{"x":{"model":"a"}}"#), None);
        assert_eq!(model_from_request("/", br#"{"model":"a b"}"#), None);
        assert_eq!(model_from_request("/", br#"{"model":7}"#), None);
        assert_eq!(model_from_request("/", b"model=gpt-4o"), None);
    }
}
