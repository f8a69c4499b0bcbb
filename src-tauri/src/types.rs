//! The values commands and events exchange with the webview. Each type is
//! also generated as TypeScript into `ui/src/generated/` (see the
//! `bindings` test), so the two sides cannot drift apart.
//!
//! Timestamps are RFC 3339 strings. No type here can hold a provider key;
//! [`CreatedToken`] is the only one that carries a client token.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum VaultState {
    Missing,
    Locked,
    Unlocked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(rename = "ProxyState")]
pub enum ProxyRunState {
    Stopped,
    Serving,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatus {
    pub state: ProxyRunState,
    /// `127.0.0.1:7447` while serving.
    pub address: Option<String>,
    pub port: Option<u16>,
    /// The reason the proxy failed to start, while `state` is `failed`.
    pub error: Option<AppError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    pub vault: VaultState,
    pub proxy: ProxyStatus,
    pub data_dir: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct PasswordStrength {
    /// zxcvbn's score, 0 (weakest) to 4.
    pub score: u8,
    pub acceptable: bool,
    pub warning: Option<String>,
    pub suggestions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct KeySummary {
    pub provider: String,
    pub label: String,
    /// The key with all but a few characters hidden, such as `sk-…3xYz`.
    pub masked: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum SetOutcome {
    Added,
    Replaced,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct KeyTestResult {
    pub ok: bool,
    /// The provider's HTTP status; null when no response arrived.
    pub status: Option<u16>,
    #[ts(type = "number")]
    pub latency_ms: u64,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum AuthStyle {
    Bearer,
    Anthropic,
    Header,
    Query,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ProviderInfo {
    pub id: String,
    pub base_url: String,
    pub auth: AuthStyle,
    /// Header or query parameter name for `header` and `query` auth.
    pub auth_name: Option<String>,
    pub built_in: bool,
    /// True for a built-in provider whose base URL or auth config.toml changes.
    pub overridden: bool,
    pub needs_key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ProviderInput {
    pub id: String,
    pub base_url: String,
    pub auth: AuthStyle,
    pub auth_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub name: String,
    /// The first characters of the token, such as `kp_3f9a`.
    pub prefix: String,
    pub created_at: String,
    /// Keys the token's requests use in place of the providers' default
    /// keys, by provider id; set with `keyport token pin`.
    pub keys: Vec<KeyPin>,
}

/// A client token's choice of a labelled key for one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct KeyPin {
    pub provider: String,
    pub label: String,
}

/// A new client token, shown once.
#[derive(Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    pub name: String,
    pub prefix: String,
    pub created_at: String,
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
pub enum StatusClass {
    #[serde(rename = "2xx")]
    Success,
    #[serde(rename = "4xx")]
    ClientError,
    #[serde(rename = "5xx")]
    ServerError,
    #[serde(rename = "error")]
    Error,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct LogFilter {
    /// RFC 3339; requests that started at or after it.
    pub since: Option<String>,
    /// RFC 3339; requests that started before it.
    pub until: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub status: Option<StatusClass>,
    /// Client token name.
    pub token: Option<String>,
    pub path_contains: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct LogRow {
    #[ts(type = "number")]
    pub id: i64,
    pub started_at: String,
    /// Name of the client token that made the request.
    pub token: Option<String>,
    /// Label of the vault key the token's pin or the `x-keyport-key`
    /// header chose; null for the provider's default key.
    pub key_label: Option<String>,
    pub origin: Option<String>,
    pub provider: String,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub streamed: bool,
    pub status: Option<u16>,
    pub error_kind: Option<String>,
    /// `ok` (2xx or 3xx), `http_error` (4xx or 5xx from the provider) or
    /// `failed` (rejected by Keyport, or no response).
    pub outcome: String,
    #[ts(type = "number | null")]
    pub latency_ms: Option<u64>,
    #[ts(type = "number | null")]
    pub ttfb_ms: Option<u64>,
    #[ts(type = "number")]
    pub request_bytes: u64,
    #[ts(type = "number")]
    pub response_bytes: u64,
    #[ts(type = "number | null")]
    pub input_tokens: Option<u64>,
    #[ts(type = "number | null")]
    pub output_tokens: Option<u64>,
    #[ts(type = "number | null")]
    pub cached_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub upstream_request_id: Option<String>,
    /// Pass as `cursor` to `logs_query` for the rows older than this one.
    pub cursor: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    pub rows: Vec<LogRow>,
    /// Pass back as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    #[ts(type = "number")]
    pub requests: u64,
    #[ts(type = "number")]
    pub input_tokens: u64,
    #[ts(type = "number")]
    pub output_tokens: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct LogTotals {
    /// Since local midnight.
    pub today: Totals,
    /// Since the first day of this calendar month, local time.
    pub month: Totals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ExportResult {
    pub path: String,
    #[ts(type = "number")]
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub port: u16,
    pub allowed_origins: Vec<String>,
    pub require_token: bool,
    /// 0 turns auto-lock off.
    pub auto_lock_minutes: u32,
    pub lock_on_screen_lock: bool,
    pub start_at_login: bool,
    /// 0 keeps rows of any age.
    pub retention_days: u32,
    /// 0 means no limit.
    #[ts(type = "number")]
    pub max_rows: u64,
    pub capture_bodies: bool,
    #[ts(type = "number")]
    pub body_capture_limit_kib: u64,
}
