//! Token usage as each provider reports it, normalised to one shape.
//!
//! Providers count differently. OpenAI's `prompt_tokens` and Gemini's
//! `promptTokenCount` include cached tokens, while Anthropic's `input_tokens`
//! excludes cache reads and cache writes. [`Usage`] always uses the
//! inclusive convention: `input_tokens` is every prompt token the provider
//! processed, and `cached_tokens` and `cache_write_tokens` are parts of it.
//! Reasoning tokens (OpenAI) and thinking tokens (Gemini's
//! `thoughtsTokenCount`) are billed as output and are counted in
//! `output_tokens`.

use serde::Serialize;
use serde_json::Value;

use super::json_scan::{JsonScanner, KeyPath};
use super::sse::SseEvent;
use crate::providers::ErrorShape;

/// Provider dialect of the usage fields in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageFormat {
    /// OpenAI Chat Completions and Responses, and OpenAI-compatible APIs.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini `generateContent` and `streamGenerateContent`.
    Google,
    /// Mistral chat completions.
    Mistral,
}

impl From<ErrorShape> for UsageFormat {
    fn from(shape: ErrorShape) -> Self {
        match shape {
            ErrorShape::OpenAi => UsageFormat::OpenAi,
            ErrorShape::Anthropic => UsageFormat::Anthropic,
            ErrorShape::Google => UsageFormat::Google,
            ErrorShape::Mistral => UsageFormat::Mistral,
        }
    }
}

/// Reason that the usage of a response is unknown or partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageNote {
    /// The response ended before the provider's final usage report.
    ResponseIncomplete,
    /// The `Content-Encoding` is not gzip, deflate, br, zstd or identity.
    UnsupportedEncoding,
    /// The compressed body was corrupt or truncated.
    DecodeFailed,
    /// The body decompressed to more than the tap's limit.
    DecodedBodyTooLarge,
    /// The usage parser failed unexpectedly on this body.
    ParserFailed,
}

impl UsageNote {
    /// Returns the value stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageNote::ResponseIncomplete => "response_incomplete",
            UsageNote::UnsupportedEncoding => "unsupported_encoding",
            UsageNote::DecodeFailed => "decode_failed",
            UsageNote::DecodedBodyTooLarge => "decoded_body_too_large",
            UsageNote::ParserFailed => "parser_failed",
        }
    }

    /// Parses a stored value; unknown values give `None`.
    pub fn parse(text: &str) -> Option<Self> {
        [
            UsageNote::ResponseIncomplete,
            UsageNote::UnsupportedEncoding,
            UsageNote::DecodeFailed,
            UsageNote::DecodedBodyTooLarge,
            UsageNote::ParserFailed,
        ]
        .into_iter()
        .find(|note| note.as_str() == text)
    }
}

/// Token counts of one response. `None` means the response did not report
/// the number, which is different from zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Every prompt token, including cached tokens and cache writes.
    pub input_tokens: Option<u64>,
    /// Generated tokens, including reasoning or thinking tokens.
    pub output_tokens: Option<u64>,
    /// Prompt tokens read from the provider's prompt cache.
    pub cached_tokens: Option<u64>,
    /// Prompt tokens written to the provider's prompt cache (Anthropic).
    pub cache_write_tokens: Option<u64>,
    /// The part of `cache_write_tokens` written with Anthropic's one-hour
    /// lifetime, which costs more than the default five minutes.
    pub cache_write_1h_tokens: Option<u64>,
    /// The model that served the response, as the response names it.
    pub model: Option<String>,
    pub note: Option<UsageNote>,
}

impl Usage {
    /// Usage that is unknown for the given reason.
    pub fn unknown(note: UsageNote) -> Self {
        Self {
            note: Some(note),
            ..Self::default()
        }
    }
}

const OPENAI_TARGETS: &[KeyPath] = &[
    &["usage"],
    &["model"],
    &["response", "usage"],
    &["response", "model"],
    &["type"],
];
const ANTHROPIC_TARGETS: &[KeyPath] = &[
    &["usage"],
    &["model"],
    &["message", "usage"],
    &["message", "model"],
    &["type"],
    &["delta", "stop_reason"],
];
const GOOGLE_TARGETS: &[KeyPath] = &[
    &["usageMetadata"],
    &["modelVersion"],
    &["candidates", "finishReason"],
    &["promptFeedback", "blockReason"],
];

/// Maximum length of a model name kept from a response.
const MAX_MODEL_LEN: usize = 128;

/// Accumulates usage over the documents or events of one response.
#[derive(Debug)]
pub(crate) struct Extractor {
    format: UsageFormat,
    input: Option<u64>,
    output: Option<u64>,
    cached: Option<u64>,
    cache_write: Option<u64>,
    cache_write_1h: Option<u64>,
    model: Option<String>,
    /// Whether the provider's end-of-response marker was seen.
    finished: bool,
    /// Whether the last output count is final: Anthropic's message_delta
    /// with a stop reason, or any count outside Anthropic streams.
    output_final: bool,
}

impl Extractor {
    pub(crate) fn new(format: UsageFormat) -> Self {
        Self {
            format,
            input: None,
            output: None,
            cached: None,
            cache_write: None,
            cache_write_1h: None,
            model: None,
            finished: false,
            output_final: format != UsageFormat::Anthropic,
        }
    }

    pub(crate) fn targets(format: UsageFormat) -> &'static [KeyPath] {
        match format {
            UsageFormat::OpenAi | UsageFormat::Mistral => OPENAI_TARGETS,
            UsageFormat::Anthropic => ANTHROPIC_TARGETS,
            UsageFormat::Google => GOOGLE_TARGETS,
        }
    }

    /// Takes the usage from a plain JSON body: an object, or Gemini's array
    /// of chunks.
    pub(crate) fn on_json_body(&mut self, scanner: &JsonScanner) {
        match self.format {
            UsageFormat::OpenAi | UsageFormat::Mistral => {
                self.take_model(scanner, &[1, 3]);
                for index in [0, 2] {
                    if let Some(usage) = scanner.value(index) {
                        self.openai_usage(&usage);
                    }
                }
                self.finished = scanner.is_complete();
            }
            UsageFormat::Anthropic => {
                self.take_model(scanner, &[1]);
                if let Some(usage) = scanner.value(0) {
                    self.anthropic_usage(&usage, true);
                }
                self.finished = scanner.is_complete();
                self.output_final = true;
            }
            UsageFormat::Google => {
                self.google_document(scanner);
                // In an array of chunks a finish reason can arrive before
                // the usage of its own chunk, so only the closed array or
                // object counts as final.
                self.finished = scanner.is_complete();
            }
        }
    }

    /// Takes the usage from one Server-Sent Event.
    pub(crate) fn on_sse_event(&mut self, event: &SseEvent<'_>) {
        if event.done_marker {
            self.finished = true;
            return;
        }
        let data = event.data;
        match self.format {
            UsageFormat::OpenAi | UsageFormat::Mistral => {
                self.take_model(data, &[1, 3]);
                for index in [0, 2] {
                    if let Some(usage) = data.value(index) {
                        self.openai_usage(&usage);
                    }
                }
                // The Responses API ends with one of these events and no
                // `[DONE]`.
                let kind = event_type(data, 4, event.name);
                if matches!(
                    kind.as_deref(),
                    Some("response.completed" | "response.incomplete" | "response.failed")
                ) {
                    self.finished = true;
                }
            }
            UsageFormat::Anthropic => {
                self.take_model(data, &[1, 3]);
                let kind = event_type(data, 4, event.name);
                match kind.as_deref() {
                    // message_start reports a placeholder output count; the
                    // real, cumulative one comes in message_delta.
                    Some("message_start") => {
                        if let Some(usage) = data.value(2) {
                            self.anthropic_usage(&usage, false);
                        }
                    }
                    Some("message_delta") => {
                        if let Some(usage) = data.value(0) {
                            self.anthropic_usage(&usage, true);
                        }
                        // Only the delta that carries the stop reason has
                        // the final output count.
                        self.output_final = matches!(data.value(5), Some(Value::String(reason)) if !reason.is_empty());
                    }
                    Some("message_stop") => self.finished = true,
                    _ => {}
                }
            }
            UsageFormat::Google => self.google_document(data),
        }
    }

    /// Returns the usage gathered so far. Gemini reports running totals in
    /// every chunk, so without a finish reason its output count is partial
    /// and is reported as unknown.
    pub(crate) fn finish(mut self, streamed: bool) -> Usage {
        let saw_usage = self.input.is_some() || self.output.is_some();
        let mut note = None;
        if !self.finished && (streamed || saw_usage) {
            note = Some(UsageNote::ResponseIncomplete);
            if self.format == UsageFormat::Google {
                self.output = None;
            }
        }
        if !self.finished && !self.output_final {
            self.output = None;
        }
        if self.format == UsageFormat::Anthropic {
            // Anthropic's input_tokens excludes cache reads and writes.
            if let Some(input) = self.input {
                let cached = self.cached.unwrap_or(0);
                let written = self.cache_write.unwrap_or(0);
                self.input = Some(input.saturating_add(cached).saturating_add(written));
            }
        }
        Usage {
            input_tokens: self.input,
            output_tokens: self.output,
            cached_tokens: self.cached,
            cache_write_tokens: self.cache_write,
            cache_write_1h_tokens: self.cache_write_1h,
            model: self.model,
            note,
        }
    }

    fn take_model(&mut self, scanner: &JsonScanner, indices: &[usize]) {
        for &index in indices {
            // Streams repeat the model in every event; the same raw value
            // needs no second parse.
            if let Some(model) = &self.model {
                if scanner.result_is_string(index, model) {
                    continue;
                }
            }
            if let Some(model) = scanner.string(index) {
                if !model.is_empty() && model.len() <= MAX_MODEL_LEN {
                    self.model = Some(model);
                }
            }
        }
    }

    /// Chat Completions (`prompt_tokens`) or Responses (`input_tokens`)
    /// usage. Each report is complete, so the last one replaces earlier ones.
    fn openai_usage(&mut self, usage: &Value) {
        if !usage.is_object() {
            return;
        }
        let input = count(usage, &["prompt_tokens"]).or_else(|| count(usage, &["input_tokens"]));
        let output =
            count(usage, &["completion_tokens"]).or_else(|| count(usage, &["output_tokens"]));
        if input.is_none() && output.is_none() {
            return;
        }
        self.input = input;
        self.output = output;
        // Chat Completions, the Responses API and the Realtime API name the
        // details object differently.
        self.cached = count(usage, &["prompt_tokens_details", "cached_tokens"])
            .or_else(|| count(usage, &["input_tokens_details", "cached_tokens"]))
            .or_else(|| count(usage, &["input_token_details", "cached_tokens"]));
    }

    /// Anthropic usage. Fields absent from a report keep their earlier
    /// value, because message_delta may repeat only some of them.
    fn anthropic_usage(&mut self, usage: &Value, take_output: bool) {
        if !usage.is_object() {
            return;
        }
        if let Some(input) = count(usage, &["input_tokens"]) {
            self.input = Some(input);
            // Older API versions omit the cache fields when nothing was cached.
            self.cached.get_or_insert(0);
            self.cache_write.get_or_insert(0);
        }
        if take_output {
            if let Some(output) = count(usage, &["output_tokens"]) {
                self.output = Some(output);
            }
        }
        if let Some(cached) = count(usage, &["cache_read_input_tokens"]) {
            self.cached = Some(cached);
        }
        if let Some(written) = count(usage, &["cache_creation_input_tokens"]) {
            self.cache_write = Some(written);
        }
        if let Some(written_1h) = count(usage, &["cache_creation", "ephemeral_1h_input_tokens"]) {
            self.cache_write_1h = Some(written_1h);
        }
    }

    /// Takes the usage of one Gemini response object or chunk. Each chunk's
    /// usageMetadata contains
    /// running totals, so the last one wins. Gemini omits zero counts.
    fn google_document(&mut self, scanner: &JsonScanner) {
        self.take_model(scanner, &[1]);
        if let Some(metadata) = scanner.value(0) {
            if metadata.is_object() {
                let prompt = count(&metadata, &["promptTokenCount"]).unwrap_or(0);
                let tool_prompt = count(&metadata, &["toolUsePromptTokenCount"]).unwrap_or(0);
                let candidates = count(&metadata, &["candidatesTokenCount"]).unwrap_or(0);
                let thoughts = count(&metadata, &["thoughtsTokenCount"]).unwrap_or(0);
                self.input = Some(prompt.saturating_add(tool_prompt));
                self.output = Some(candidates.saturating_add(thoughts));
                self.cached = Some(count(&metadata, &["cachedContentTokenCount"]).unwrap_or(0));
            }
        }
        let reason_given = |index| matches!(scanner.value(index), Some(Value::String(reason)) if !reason.is_empty());
        if reason_given(2) || reason_given(3) {
            self.finished = true;
        }
    }
}

/// Returns the JSON `type` field of an event, or its SSE `event:` name.
fn event_type(data: &JsonScanner, index: usize, sse_name: &[u8]) -> Option<String> {
    match data.string(index) {
        Some(kind) => Some(kind),
        _ if !sse_name.is_empty() => Some(String::from_utf8_lossy(sse_name).into_owned()),
        _ => None,
    }
}

/// Returns the non-negative integer at `path` inside `value`.
fn count(value: &Value, path: &[&str]) -> Option<u64> {
    let mut current = value;
    for key in path {
        current = current.get(key)?;
    }
    current.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_note_round_trips() {
        let notes = [
            UsageNote::ResponseIncomplete,
            UsageNote::UnsupportedEncoding,
            UsageNote::DecodeFailed,
            UsageNote::DecodedBodyTooLarge,
            UsageNote::ParserFailed,
        ];
        for note in notes {
            assert_eq!(UsageNote::parse(note.as_str()), Some(note));
            let json = serde_json::to_string(&note).unwrap();
            assert_eq!(json, format!("\"{}\"", note.as_str()));
        }
        assert_eq!(UsageNote::parse("unknown"), None);
    }
}
