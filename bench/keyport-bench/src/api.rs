//! The three provider APIs the benchmark speaks: their paths on each
//! target, the client headers and the request bodies.

/// JSON field the mock puts in every stamped event: its send time in
/// microseconds since the Unix epoch. The mock and the client run on one
/// machine, so both read the same realtime clock.
pub const SENT_MARKER: &[u8] = b"\"bench_sent_us\":";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Api {
    pub const ALL: [Api; 3] = [Api::OpenAi, Api::Anthropic, Api::Gemini];

    /// Recognises the API from a path on the mock.
    pub fn from_mock_path(path: &str) -> Option<Api> {
        if path.ends_with("/chat/completions") {
            Some(Api::OpenAi)
        } else if path.ends_with("/v1/messages") {
            Some(Api::Anthropic)
        } else if path.ends_with(":streamGenerateContent") || path.ends_with(":generateContent") {
            Some(Api::Gemini)
        } else {
            None
        }
    }

    /// Path on the mock, which the floor forwards verbatim.
    pub fn mock_path(self, stream: bool) -> &'static str {
        match (self, stream) {
            (Api::OpenAi, _) => "/v1/chat/completions",
            (Api::Anthropic, _) => "/v1/messages",
            (Api::Gemini, true) => "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            (Api::Gemini, false) => "/v1beta/models/gemini-2.5-flash:generateContent",
        }
    }

    /// Path on `keyport serve`, whose config points each provider at the
    /// mock: OpenAI's base URL ends in `/v1`, the others are the mock's root.
    pub fn keyport_path(self, stream: bool) -> &'static str {
        match (self, stream) {
            (Api::OpenAi, _) => "/llm/openai/chat/completions",
            (Api::Anthropic, _) => "/llm/anthropic/v1/messages",
            (Api::Gemini, true) => {
                "/llm/google/v1beta/models/gemini-2.5-flash:streamGenerateContent"
            }
            (Api::Gemini, false) => "/llm/google/v1beta/models/gemini-2.5-flash:generateContent",
        }
    }

    /// Query parameter the provider's SDK always sends: Gemini requests
    /// Server-Sent Events with `alt=sse`.
    pub fn fixed_query(self, stream: bool) -> Option<&'static str> {
        (self == Api::Gemini && stream).then_some("alt=sse")
    }

    /// Headers an SDK for this API sends, with the Keyport client token
    /// where the provider key would go. Direct and floor requests carry the
    /// same headers; the mock ignores them.
    pub fn headers(self, token: &str) -> Vec<(&'static str, String)> {
        let mut headers = vec![("content-type", "application/json".to_string())];
        match self {
            Api::OpenAi => headers.push(("authorization", format!("Bearer {token}"))),
            Api::Anthropic => {
                headers.push(("x-api-key", token.to_string()));
                headers.push(("anthropic-version", "2023-06-01".to_string()));
            }
            Api::Gemini => headers.push(("x-goog-api-key", token.to_string())),
        }
        headers
    }

    /// Builds a small chat request body that requests a stream when
    /// `stream` is set.
    pub fn request_body(self, stream: bool) -> String {
        let prompt = "Say hello to the benchmark.";
        match self {
            Api::OpenAi => format!(
                r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{prompt}"}}],"stream":{stream},"stream_options":{{"include_usage":true}}}}"#
            ),
            Api::Anthropic => format!(
                r#"{{"model":"claude-haiku-4-5","max_tokens":1024,"messages":[{{"role":"user","content":"{prompt}"}}],"stream":{stream}}}"#
            ),
            Api::Gemini => {
                format!(r#"{{"contents":[{{"role":"user","parts":[{{"text":"{prompt}"}}]}}]}}"#)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_recognises_every_path_it_is_sent() {
        for api in Api::ALL {
            for stream in [false, true] {
                let path = api.mock_path(stream);
                assert_eq!(Api::from_mock_path(path), Some(api), "{path}");
            }
        }
        assert_eq!(Api::from_mock_path("/v1/models"), None);
    }

    #[test]
    fn request_bodies_are_json() {
        for api in Api::ALL {
            for stream in [false, true] {
                let body = api.request_body(stream);
                let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert!(parsed.is_object(), "{body}");
            }
        }
    }
}
