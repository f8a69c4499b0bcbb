//! Errors the proxy responds with itself, and the provider-shaped JSON
//! bodies that carry them.
//!
//! Upstream error responses never pass through here: they reach the client
//! unchanged. A `ProxyError` message is written for the client and names the
//! cause and the fix; internal detail (the underlying I/O or HTTP error) goes
//! only to the log.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::StatusCode;
use serde_json::json;
use tracing::Level;

use crate::providers::ErrorShape;

/// Every reason the proxy responds to a request itself, plus the one
/// start-up failure of [`super::ProxyState::new`].
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "cannot build the upstream HTTP client ({source}); check the TLS setup of this machine"
    )]
    HttpClient { source: reqwest::Error },

    #[error("no route for {path}; send provider requests to /llm/PROVIDER/..., for example /llm/openai/chat/completions")]
    NotFound { path: String },

    #[error("method {method} is not supported on this route")]
    MethodNotAllowed { method: String },

    #[error("unknown provider {provider:?}; known providers: {known}. Custom providers are added under [providers.NAME] in config.toml")]
    UnknownProvider { provider: String, known: String },

    #[error("the request path contains '.' or '..' segments, which cannot be forwarded unchanged; remove them")]
    InvalidPath,

    #[error("Host {host:?} is not allowed; connect to 127.0.0.1, localhost or [::1]")]
    HostNotAllowed { host: String },

    #[error("origin {origin:?} is not allowed; add it to proxy.allowed_origins in config.toml")]
    OriginNotAllowed { origin: String },

    #[error("browser request from another site (Sec-Fetch-Site: {site}) without an Origin header; only pages on proxy.allowed_origins may call Keyport")]
    CrossSiteRequest { site: String },

    #[error("missing Keyport client token; send it as `Authorization: Bearer TOKEN`, `x-api-key`, `x-goog-api-key`, `api-key` or the `key` query parameter. Create one with `keyport token create NAME`")]
    TokenMissing,

    #[error("invalid or revoked Keyport client token; `keyport token list` shows the live tokens and `keyport token create NAME` makes a new one")]
    TokenInvalid,

    #[error(
        "the Keyport vault is locked; unlock it in the Keyport app or restart `keyport serve`"
    )]
    VaultLocked,

    #[error("no API key stored for {provider}; run `keyport key set {provider}`")]
    KeyNotStored { provider: String },

    #[error("no key labelled {label:?} is stored for {provider}; `keyport key list` shows the labels, `keyport key set {provider} --label {label}` adds one")]
    KeyLabelNotFound { provider: String, label: String },

    #[error("{provider} has several keys ({}) and none is labelled \"default\"; pin the client token to one with `keyport token pin NAME {provider}=LABEL`, or send the header `x-keyport-key: LABEL`", labels.join(", "))]
    KeyAmbiguous {
        provider: String,
        labels: Vec<String>,
    },

    #[error("the x-keyport-key header is not a valid key label; send one header with 1 to 64 ASCII letters, digits, '.', '-' or '_', starting with a letter or digit (labels are case-sensitive)")]
    InvalidKeyLabel,

    #[error("client token {token:?} uses the {provider} key labelled {label:?}, which is not stored; add it with `keyport key set {provider} --label {label}` or change the token's key with `keyport token pin {token} {provider}=LABEL`")]
    PinnedKeyNotStored {
        token: String,
        provider: String,
        label: String,
    },

    #[error("client token {token:?} may use only the {provider} key labelled {pinned:?}, so the x-keyport-key header cannot choose {requested:?}; remove the header or change the token's key with `keyport token pin {token} {provider}=LABEL`")]
    KeyPinConflict {
        token: String,
        provider: String,
        pinned: String,
        requested: String,
    },

    #[error("the stored {provider} key contains characters that cannot be sent in an HTTP header; store it again with `keyport key set {provider}`")]
    KeyNotUsable { provider: String },

    #[error("request body is larger than the proxy limit of {limit_bytes} bytes; send a smaller request or raise proxy.max_request_body_mib in config.toml")]
    BodyTooLarge { limit_bytes: u64 },

    #[error("the request body could not be read from the client; send the request again")]
    RequestBodyFailed {
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("the request came back to this Keyport proxy on the {provider} route: a provider's base_url in config.toml points at Keyport itself, at that route. Set it to the provider's API, or remove it to use the default")]
    ProxyLoop { provider: String },

    #[error("cannot reach the {provider} API; check the network connection and the provider's base_url in config.toml")]
    UpstreamUnreachable {
        provider: String,
        source: reqwest::Error,
    },

    #[error("the {provider} API did not respond within {} s; try again, or raise {setting} in config.toml", timeout.as_secs())]
    UpstreamTimeout {
        provider: String,
        timeout: Duration,
        setting: &'static str,
    },

    #[error("the request to the {provider} API failed before a response arrived; try again")]
    UpstreamFailed {
        provider: String,
        source: reqwest::Error,
    },

    #[error("client token {token:?} is over its limit of {limit} {unit}; retry after {retry_after_secs} s, or change the limit with `keyport token limit {token}`")]
    RateLimited {
        token: String,
        unit: &'static str,
        limit: u64,
        retry_after_secs: u64,
    },

    #[error("client token {token:?} has reached its {period} spend cap of ${cap_usd:.2} (spent ${spent_usd:.2}); requests are accepted again from {resets_at}, or change the cap with `keyport token limit {token}`")]
    SpendCapReached {
        token: String,
        period: &'static str,
        cap_usd: f64,
        spent_usd: f64,
        resets_at: String,
    },

    #[error("client token {token:?} may not call {provider} model {model:?}; `keyport token list` shows its allowed models and `keyport token limit {token} --allow PROVIDER:MODEL` adds one")]
    ModelNotAllowed {
        token: String,
        provider: String,
        model: String,
    },

    #[error("client token {token:?} may call only the models on its allow-list, and Keyport cannot check this request because {reason}; send a JSON body with a \"model\" field, or drop the allow-list with `keyport token limit {token} --clear`")]
    ModelUnknown { token: String, reason: &'static str },

    #[error("invalid WebSocket handshake: {reason}; connect over HTTP/1.1 with `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`")]
    WebSocketHandshakeInvalid { reason: &'static str },

    #[error("the {provider} API accepted the WebSocket upgrade with an invalid handshake ({reason}); check the provider's base_url in config.toml")]
    UpstreamWebSocketInvalid {
        provider: String,
        reason: &'static str,
    },
}

impl ProxyError {
    /// Returns the HTTP status of the response to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::HttpClient { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::NotFound { .. } => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::UnknownProvider { .. } => StatusCode::NOT_FOUND,
            ProxyError::InvalidPath => StatusCode::BAD_REQUEST,
            ProxyError::HostNotAllowed { .. } => StatusCode::FORBIDDEN,
            ProxyError::OriginNotAllowed { .. } => StatusCode::FORBIDDEN,
            ProxyError::CrossSiteRequest { .. } => StatusCode::FORBIDDEN,
            ProxyError::TokenMissing => StatusCode::UNAUTHORIZED,
            ProxyError::TokenInvalid => StatusCode::UNAUTHORIZED,
            ProxyError::VaultLocked => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::KeyNotStored { .. } => StatusCode::UNAUTHORIZED,
            ProxyError::KeyLabelNotFound { .. } => StatusCode::BAD_REQUEST,
            ProxyError::KeyAmbiguous { .. } => StatusCode::BAD_REQUEST,
            ProxyError::InvalidKeyLabel => StatusCode::BAD_REQUEST,
            ProxyError::PinnedKeyNotStored { .. } => StatusCode::BAD_REQUEST,
            ProxyError::KeyPinConflict { .. } => StatusCode::FORBIDDEN,
            ProxyError::KeyNotUsable { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::RequestBodyFailed { .. } => StatusCode::BAD_REQUEST,
            ProxyError::ProxyLoop { .. } => StatusCode::LOOP_DETECTED,
            ProxyError::UpstreamUnreachable { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::SpendCapReached { .. } => StatusCode::FORBIDDEN,
            ProxyError::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
            ProxyError::ModelUnknown { .. } => StatusCode::FORBIDDEN,
            ProxyError::WebSocketHandshakeInvalid { .. } => StatusCode::BAD_REQUEST,
            ProxyError::UpstreamWebSocketInvalid { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// Returns the stable machine-readable code. It is sent as `code` in
    /// the OpenAI and Mistral shapes and recorded in the request log.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::HttpClient { .. } => "http_client_failed",
            ProxyError::NotFound { .. } => "not_found",
            ProxyError::MethodNotAllowed { .. } => "method_not_allowed",
            ProxyError::UnknownProvider { .. } => "unknown_provider",
            ProxyError::InvalidPath => "invalid_path",
            ProxyError::HostNotAllowed { .. } => "host_not_allowed",
            ProxyError::OriginNotAllowed { .. } => "origin_not_allowed",
            ProxyError::CrossSiteRequest { .. } => "cross_site_request",
            ProxyError::TokenMissing => "token_missing",
            ProxyError::TokenInvalid => "token_invalid",
            ProxyError::VaultLocked => "vault_locked",
            ProxyError::KeyNotStored { .. } => "key_not_stored",
            ProxyError::KeyLabelNotFound { .. } => "key_label_not_found",
            ProxyError::KeyAmbiguous { .. } => "key_label_required",
            ProxyError::InvalidKeyLabel => "invalid_key_label",
            ProxyError::PinnedKeyNotStored { .. } => "pinned_key_not_stored",
            ProxyError::KeyPinConflict { .. } => "key_pin_conflict",
            ProxyError::KeyNotUsable { .. } => "key_not_usable",
            ProxyError::BodyTooLarge { .. } => "request_too_large",
            ProxyError::RequestBodyFailed { .. } => "request_body_failed",
            ProxyError::ProxyLoop { .. } => "proxy_loop",
            ProxyError::UpstreamUnreachable { .. } => "upstream_unreachable",
            ProxyError::UpstreamTimeout { .. } => "upstream_timeout",
            ProxyError::UpstreamFailed { .. } => "upstream_failed",
            ProxyError::RateLimited { .. } => "rate_limit_exceeded",
            ProxyError::SpendCapReached { .. } => "spend_cap_reached",
            ProxyError::ModelNotAllowed { .. } => "model_not_allowed",
            ProxyError::ModelUnknown { .. } => "model_unknown",
            ProxyError::WebSocketHandshakeInvalid { .. } => "invalid_websocket_handshake",
            ProxyError::UpstreamWebSocketInvalid { .. } => "upstream_websocket_invalid",
        }
    }

    /// Returns the level at which the proxy logs this error. Client mistakes are info,
    /// possible attacks and upstream trouble are warn, faults of this
    /// machine's setup are error.
    pub fn level(&self) -> Level {
        match self {
            ProxyError::HttpClient { .. } => Level::ERROR,
            ProxyError::NotFound { .. } => Level::INFO,
            ProxyError::MethodNotAllowed { .. } => Level::INFO,
            ProxyError::UnknownProvider { .. } => Level::INFO,
            ProxyError::InvalidPath => Level::INFO,
            ProxyError::HostNotAllowed { .. } => Level::WARN,
            ProxyError::OriginNotAllowed { .. } => Level::WARN,
            ProxyError::CrossSiteRequest { .. } => Level::WARN,
            ProxyError::TokenMissing => Level::INFO,
            ProxyError::TokenInvalid => Level::WARN,
            ProxyError::VaultLocked => Level::INFO,
            ProxyError::KeyNotStored { .. } => Level::INFO,
            ProxyError::KeyLabelNotFound { .. } => Level::INFO,
            ProxyError::KeyAmbiguous { .. } => Level::INFO,
            ProxyError::InvalidKeyLabel => Level::INFO,
            ProxyError::PinnedKeyNotStored { .. } => Level::INFO,
            ProxyError::KeyPinConflict { .. } => Level::WARN,
            ProxyError::KeyNotUsable { .. } => Level::ERROR,
            ProxyError::BodyTooLarge { .. } => Level::INFO,
            ProxyError::RequestBodyFailed { .. } => Level::INFO,
            ProxyError::ProxyLoop { .. } => Level::WARN,
            ProxyError::UpstreamUnreachable { .. } => Level::WARN,
            ProxyError::UpstreamTimeout { .. } => Level::WARN,
            ProxyError::UpstreamFailed { .. } => Level::WARN,
            ProxyError::RateLimited { .. } => Level::INFO,
            ProxyError::SpendCapReached { .. } => Level::WARN,
            ProxyError::ModelNotAllowed { .. } => Level::WARN,
            ProxyError::ModelUnknown { .. } => Level::INFO,
            ProxyError::WebSocketHandshakeInvalid { .. } => Level::INFO,
            ProxyError::UpstreamWebSocketInvalid { .. } => Level::WARN,
        }
    }

    /// Returns the underlying error chain, for the log only. Upstream errors had
    /// their URL removed when they were wrapped, because a URL can carry a
    /// key in its query.
    fn detail(&self) -> Option<String> {
        let source: &(dyn std::error::Error + 'static) = match self {
            ProxyError::HttpClient { source }
            | ProxyError::UpstreamUnreachable { source, .. }
            | ProxyError::UpstreamFailed { source, .. } => source,
            ProxyError::RequestBodyFailed { source } => source.as_ref(),
            _ => return None,
        };
        let mut text = source.to_string();
        let mut next = source.source();
        while let Some(cause) = next {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            next = cause.source();
        }
        Some(text)
    }

    /// Writes this error to the log at its level.
    pub(crate) fn log(&self) {
        let code = self.code();
        let status = self.status().as_u16();
        let detail = self.detail();
        let detail = detail.as_deref().map(tracing::field::display);
        match self.level() {
            Level::ERROR => tracing::error!(%code, status, detail, "{self}"),
            Level::WARN => tracing::warn!(%code, status, detail, "{self}"),
            Level::INFO => tracing::info!(%code, status, detail, "{self}"),
            Level::DEBUG => tracing::debug!(%code, status, detail, "{self}"),
            Level::TRACE => tracing::trace!(%code, status, detail, "{self}"),
        }
    }

    /// Returns the JSON error body in `shape`.
    pub fn body(&self, shape: ErrorShape) -> serde_json::Value {
        error_body(shape, self.status(), self.code(), &self.to_string())
    }

    /// Builds the complete response: status, JSON body, Content-Type and,
    /// for rate limits, `retry-after` in whole seconds, which the official
    /// SDKs wait for before they retry.
    pub(crate) fn to_response(&self, shape: ErrorShape) -> Response {
        let body = self.body(shape).to_string();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let ProxyError::RateLimited {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response
    }
}

/// Builds an error body in the JSON shape that `shape`'s SDKs parse.
fn error_body(
    shape: ErrorShape,
    status: StatusCode,
    code: &str,
    message: &str,
) -> serde_json::Value {
    match shape {
        ErrorShape::OpenAi => json!({
            "error": {
                "message": message,
                "type": openai_type(status),
                "param": null,
                "code": code,
            }
        }),
        ErrorShape::Mistral => json!({
            "object": "error",
            "message": message,
            "type": openai_type(status),
            "param": null,
            "code": code,
        }),
        ErrorShape::Anthropic => json!({
            "type": "error",
            "error": {
                "type": anthropic_type(status),
                "message": message,
            }
        }),
        ErrorShape::Google => json!({
            "error": {
                "code": status.as_u16(),
                "message": message,
                "status": google_status(status),
            }
        }),
    }
}

/// Returns the `type` OpenAI uses for a status: client errors are
/// `invalid_request_error` (also for 401), server errors `server_error`.
fn openai_type(status: StatusCode) -> &'static str {
    if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    }
}

/// Anthropic's documented error types by HTTP status.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Returns the google.rpc.Code name that Google APIs pair with an HTTP status.
fn google_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 => "UNIMPLEMENTED",
        429 => "RESOURCE_EXHAUSTED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_carries_message_and_code() {
        let error = ProxyError::VaultLocked;
        let openai = error.body(ErrorShape::OpenAi);
        assert_eq!(openai["error"]["code"], "vault_locked");
        assert_eq!(openai["error"]["type"], "server_error");
        assert!(openai["error"]["param"].is_null());

        let anthropic = error.body(ErrorShape::Anthropic);
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "api_error");

        let google = error.body(ErrorShape::Google);
        assert_eq!(google["error"]["code"], 503);
        assert_eq!(google["error"]["status"], "UNAVAILABLE");

        let mistral = error.body(ErrorShape::Mistral);
        assert_eq!(mistral["object"], "error");
        assert_eq!(mistral["code"], "vault_locked");

        for body in [openai, anthropic, google, mistral] {
            assert!(body.to_string().contains("vault is locked"), "{body}");
        }
    }

    #[test]
    fn missing_token_message_names_the_fix() {
        let message = ProxyError::TokenMissing.to_string();
        assert!(message.contains("keyport token create NAME"), "{message}");
        assert!(message.contains("Authorization: Bearer"), "{message}");
    }
}
