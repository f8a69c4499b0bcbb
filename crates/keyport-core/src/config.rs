//! `config.toml`: proxy settings, base-URL overrides and custom providers.
//!
//! Loading happens in two steps. [`RawConfig`] mirrors the file with
//! `deny_unknown_fields`, so a misspelt setting is an error that names it;
//! [`Config::from_raw`] then checks values and builds the provider registry.
//! A missing file means every default applies.
//!
//! ```toml
//! [proxy]
//! bind = "127.0.0.1"
//! port = 7447
//! require_token = true
//! allowed_origins = ["http://localhost:*", "http://127.0.0.1:*"]
//! max_request_body_mib = 32
//! upstream_connect_timeout_secs = 10
//! upstream_response_timeout_secs = 600
//! upstream_idle_timeout_secs = 300
//! client_header_timeout_secs = 30
//!
//! [log]
//! enabled = true
//! retention_days = 30
//! max_rows = 100000
//! capture_bodies = false
//! body_capture_limit_kib = 64
//!
//! [desktop]
//! auto_lock_minutes = 15
//! lock_on_screen_lock = true
//! start_at_login = false
//!
//! [providers.openai]
//! base_url = "https://my-gateway.example.com/openai/v1"
//!
//! [providers.azure]
//! base_url = "https://my-resource.openai.azure.com/openai"
//! auth = "header"
//! auth_name = "api-key"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::providers::{self, AuthStyle, ErrorShape, Provider, ProviderRegistry};
use crate::requestlog::{
    LogSettings, DEFAULT_BODY_CAPTURE_LIMIT, DEFAULT_MAX_ROWS, DEFAULT_RETENTION_DAYS,
};

/// Port the proxy listens on unless configured otherwise.
pub const DEFAULT_PORT: u16 = 7447;

/// Largest request body the proxy forwards by default. Base64 images and
/// audio uploads make LLM requests far larger than typical API calls.
pub const DEFAULT_MAX_REQUEST_BODY_MIB: u64 = 32;

/// Maximum wait for an upstream TCP and TLS connection.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;

/// Maximum wait for upstream response headers. Reasoning models can think
/// for minutes before the first byte of a non-streamed response.
pub const DEFAULT_RESPONSE_TIMEOUT_SECS: u64 = 600;

/// Maximum silence between two chunks of an upstream response body. There is
/// no limit on the total duration of a response.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;

/// Maximum time a client connection may take to send a request's headers,
/// and maximum idle time between two requests on a kept-alive connection.
pub const DEFAULT_CLIENT_HEADER_TIMEOUT_SECS: u64 = 30;

/// Origins allowed by default: pages served from this machine on any port.
pub const DEFAULT_ALLOWED_ORIGINS: [&str; 2] = ["http://localhost:*", "http://127.0.0.1:*"];

/// Errors from reading or checking `config.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },

    #[error("invalid config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// `config.toml` exactly as written, before validation.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub proxy: RawProxyConfig,
    #[serde(default)]
    pub log: RawLogConfig,
    #[serde(default)]
    pub desktop: RawDesktopConfig,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProviderConfig>,
}

/// The `[desktop]` table: settings only the desktop app reads. The CLI
/// accepts and ignores it.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDesktopConfig {
    pub auto_lock_minutes: Option<u32>,
    pub lock_on_screen_lock: Option<bool>,
    pub start_at_login: Option<bool>,
}

/// The `[log]` table: the SQLite request log.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogConfig {
    pub enabled: Option<bool>,
    pub retention_days: Option<u32>,
    pub max_rows: Option<u64>,
    pub capture_bodies: Option<bool>,
    pub body_capture_limit_kib: Option<u64>,
}

/// The `[proxy]` table.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxyConfig {
    pub bind: Option<String>,
    pub port: Option<u16>,
    pub require_token: Option<bool>,
    pub allowed_origins: Option<Vec<String>>,
    pub max_request_body_mib: Option<u64>,
    pub upstream_connect_timeout_secs: Option<u64>,
    pub upstream_response_timeout_secs: Option<u64>,
    pub upstream_idle_timeout_secs: Option<u64>,
    pub client_header_timeout_secs: Option<u64>,
}

/// A `[providers.NAME]` table.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProviderConfig {
    pub base_url: Option<String>,
    /// `bearer`, `anthropic`, `header`, `query` or `none`.
    pub auth: Option<String>,
    /// Header or query parameter name for `auth = "header"` or `"query"`.
    pub auth_name: Option<String>,
    /// `openai`, `anthropic`, `google` or `mistral`.
    pub error_format: Option<String>,
}

/// Validated proxy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub bind: IpAddr,
    pub port: u16,
    /// When false, requests without a client token are served. Any local
    /// program or web page on an allowed origin can then spend the keys.
    pub require_token: bool,
    pub allowed_origins: Vec<OriginPattern>,
    pub max_request_body_bytes: u64,
    pub upstream_connect_timeout: Duration,
    pub upstream_response_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    /// Time a client has to send its request headers, counted from the
    /// connection's start or from the end of its previous response.
    pub client_header_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: DEFAULT_PORT,
            require_token: true,
            allowed_origins: DEFAULT_ALLOWED_ORIGINS
                .iter()
                .filter_map(|pattern| OriginPattern::parse(pattern).ok())
                .collect(),
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_MIB * 1024 * 1024,
            upstream_connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS),
            upstream_response_timeout: Duration::from_secs(DEFAULT_RESPONSE_TIMEOUT_SECS),
            upstream_idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            client_header_timeout: Duration::from_secs(DEFAULT_CLIENT_HEADER_TIMEOUT_SECS),
        }
    }
}

/// The effective configuration: defaults, overridden by `config.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from; it may not exist.
    pub path: PathBuf,
    pub proxy: ProxyConfig,
    pub log: LogConfig,
    pub desktop: DesktopConfig,
    pub providers: ProviderRegistry,
}

/// Minutes of inactivity after which the desktop app locks the vault.
pub const DEFAULT_AUTO_LOCK_MINUTES: u32 = 15;

/// Maximum auto-lock delay: one day.
pub const MAX_AUTO_LOCK_MINUTES: u32 = 24 * 60;

/// Validated desktop-app settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopConfig {
    /// Minutes without UI activity and without proxied requests before the
    /// vault locks; 0 turns auto-lock off.
    pub auto_lock_minutes: u32,
    /// Whether locking the screen locks the vault.
    pub lock_on_screen_lock: bool,
    /// Whether the app starts when the user logs in.
    pub start_at_login: bool,
}

impl Default for DesktopConfig {
    fn default() -> Self {
        Self {
            auto_lock_minutes: DEFAULT_AUTO_LOCK_MINUTES,
            lock_on_screen_lock: true,
            start_at_login: false,
        }
    }
}

/// Validated request-log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// When false, requests appear only in the `tracing` output.
    pub enabled: bool,
    pub retention_days: u32,
    pub max_rows: u64,
    /// Whether redacted request and response bodies are stored.
    pub capture_bodies: bool,
    pub body_capture_limit: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_days: DEFAULT_RETENTION_DAYS,
            max_rows: DEFAULT_MAX_ROWS,
            capture_bodies: false,
            body_capture_limit: DEFAULT_BODY_CAPTURE_LIMIT,
        }
    }
}

impl LogConfig {
    /// Settings for [`crate::requestlog::RequestLog::open`].
    pub fn settings(&self) -> LogSettings {
        LogSettings {
            retention_days: self.retention_days,
            max_rows: self.max_rows,
            capture_bodies: self.capture_bodies,
            body_capture_limit: self.body_capture_limit,
            ..LogSettings::default()
        }
    }
}

impl Config {
    /// Loads `path`, or the defaults when the file does not exist.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &read_text(path)?)
    }

    /// Parses and validates config text; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.to_string().trim_end().to_string(),
        })?;
        Self::from_raw(path, raw)
    }

    /// Validates a parsed file.
    pub fn from_raw(path: &Path, raw: RawConfig) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let proxy = validate_proxy(raw.proxy).map_err(&invalid)?;
        let log = validate_log(raw.log).map_err(&invalid)?;
        let desktop = validate_desktop(raw.desktop).map_err(&invalid)?;
        let mut providers = ProviderRegistry::builtin();
        for (id, settings) in raw.providers {
            apply_provider(&mut providers, &id, settings)
                .map_err(|message| invalid(format!("[providers.{id}]: {message}")))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            proxy,
            log,
            desktop,
            providers,
        })
    }

    /// Renders the effective configuration as `config.toml` text, with every
    /// default written out.
    pub fn to_toml(&self) -> String {
        let proxy = &self.proxy;
        let origins: Vec<String> = proxy
            .allowed_origins
            .iter()
            .map(|origin| format!("{:?}", origin.to_string()))
            .collect();
        let mut out = format!(
            "[proxy]\nbind = \"{}\"\nport = {}\nrequire_token = {}\nallowed_origins = [{}]\n\
             max_request_body_mib = {}\nupstream_connect_timeout_secs = {}\n\
             upstream_response_timeout_secs = {}\nupstream_idle_timeout_secs = {}\n\
             client_header_timeout_secs = {}\n",
            proxy.bind,
            proxy.port,
            proxy.require_token,
            origins.join(", "),
            proxy.max_request_body_bytes / (1024 * 1024),
            proxy.upstream_connect_timeout.as_secs(),
            proxy.upstream_response_timeout.as_secs(),
            proxy.upstream_idle_timeout.as_secs(),
            proxy.client_header_timeout.as_secs(),
        );
        let log = &self.log;
        out.push_str(&format!(
            "\n[log]\nenabled = {}\nretention_days = {}\nmax_rows = {}\ncapture_bodies = {}\n\
             body_capture_limit_kib = {}\n",
            log.enabled,
            log.retention_days,
            log.max_rows,
            log.capture_bodies,
            log.body_capture_limit / 1024,
        ));
        let desktop = &self.desktop;
        out.push_str(&format!(
            "\n[desktop]\nauto_lock_minutes = {}\nlock_on_screen_lock = {}\nstart_at_login = {}\n",
            desktop.auto_lock_minutes, desktop.lock_on_screen_lock, desktop.start_at_login,
        ));
        for provider in self.providers.iter() {
            out.push_str(&render_provider(provider));
        }
        out
    }
}

/// Reads `config.toml` text; a missing file reads as empty.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Returns the `auth` and `auth_name` values that configure `auth`.
pub fn auth_fields(auth: &AuthStyle) -> (&'static str, Option<&str>) {
    match auth {
        AuthStyle::Bearer => ("bearer", None),
        AuthStyle::Anthropic => ("anthropic", None),
        AuthStyle::Header(name) => ("header", Some(name)),
        AuthStyle::Query(name) => ("query", Some(name)),
        AuthStyle::None => ("none", None),
    }
}

fn render_provider(provider: &Provider) -> String {
    let (auth, auth_name) = auth_fields(&provider.auth);
    let mut out = format!(
        "\n[providers.{}]\nbase_url = {:?}\nauth = \"{auth}\"\n",
        provider.id,
        base_url_text(&provider.base_url),
    );
    if let Some(name) = auth_name {
        out.push_str(&format!("auth_name = {name:?}\n"));
    }
    let error_format = match provider.error_shape {
        ErrorShape::OpenAi => "openai",
        ErrorShape::Anthropic => "anthropic",
        ErrorShape::Google => "google",
        ErrorShape::Mistral => "mistral",
    };
    out.push_str(&format!("error_format = \"{error_format}\"\n"));
    out
}

/// Formats a base URL as users write it, without the trailing slash that
/// `Url` adds to an empty path.
pub fn base_url_text(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

fn validate_proxy(raw: RawProxyConfig) -> Result<ProxyConfig, String> {
    let defaults = ProxyConfig::default();
    let bind = match raw.bind {
        Some(text) => text.parse::<IpAddr>().map_err(|_| {
            format!("proxy.bind = {text:?} is not an IP address; use \"127.0.0.1\"")
        })?,
        None => defaults.bind,
    };
    let allowed_origins = match raw.allowed_origins {
        Some(patterns) => patterns
            .iter()
            .map(|pattern| OriginPattern::parse(pattern))
            .collect::<Result<Vec<_>, _>>()?,
        None => defaults.allowed_origins,
    };
    let max_body_mib = raw
        .max_request_body_mib
        .unwrap_or(DEFAULT_MAX_REQUEST_BODY_MIB);
    if !(1..=4096).contains(&max_body_mib) {
        return Err(format!(
            "proxy.max_request_body_mib = {max_body_mib} is out of range; use 1 to 4096"
        ));
    }
    Ok(ProxyConfig {
        bind,
        port: raw.port.unwrap_or(defaults.port),
        require_token: raw.require_token.unwrap_or(true),
        allowed_origins,
        max_request_body_bytes: max_body_mib * 1024 * 1024,
        upstream_connect_timeout: seconds(
            "upstream_connect_timeout_secs",
            raw.upstream_connect_timeout_secs,
            DEFAULT_CONNECT_TIMEOUT_SECS,
        )?,
        upstream_response_timeout: seconds(
            "upstream_response_timeout_secs",
            raw.upstream_response_timeout_secs,
            DEFAULT_RESPONSE_TIMEOUT_SECS,
        )?,
        upstream_idle_timeout: seconds(
            "upstream_idle_timeout_secs",
            raw.upstream_idle_timeout_secs,
            DEFAULT_IDLE_TIMEOUT_SECS,
        )?,
        client_header_timeout: seconds(
            "client_header_timeout_secs",
            raw.client_header_timeout_secs,
            DEFAULT_CLIENT_HEADER_TIMEOUT_SECS,
        )?,
    })
}

fn validate_log(raw: RawLogConfig) -> Result<LogConfig, String> {
    let defaults = LogConfig::default();
    let limit_kib = raw
        .body_capture_limit_kib
        .unwrap_or((defaults.body_capture_limit / 1024) as u64);
    if !(1..=10 * 1024).contains(&limit_kib) {
        return Err(format!(
            "log.body_capture_limit_kib = {limit_kib} is out of range; use 1 to 10240"
        ));
    }
    Ok(LogConfig {
        enabled: raw.enabled.unwrap_or(defaults.enabled),
        retention_days: raw.retention_days.unwrap_or(defaults.retention_days),
        max_rows: raw.max_rows.unwrap_or(defaults.max_rows),
        capture_bodies: raw.capture_bodies.unwrap_or(defaults.capture_bodies),
        body_capture_limit: (limit_kib * 1024) as usize,
    })
}

fn validate_desktop(raw: RawDesktopConfig) -> Result<DesktopConfig, String> {
    let defaults = DesktopConfig::default();
    let minutes = raw.auto_lock_minutes.unwrap_or(defaults.auto_lock_minutes);
    if minutes > MAX_AUTO_LOCK_MINUTES {
        return Err(format!(
            "desktop.auto_lock_minutes = {minutes} is out of range; use 0 (off) to {MAX_AUTO_LOCK_MINUTES}"
        ));
    }
    Ok(DesktopConfig {
        auto_lock_minutes: minutes,
        lock_on_screen_lock: raw
            .lock_on_screen_lock
            .unwrap_or(defaults.lock_on_screen_lock),
        start_at_login: raw.start_at_login.unwrap_or(defaults.start_at_login),
    })
}

/// Checks a timeout setting: at least one second and at most one day.
fn seconds(name: &str, value: Option<u64>, default: u64) -> Result<Duration, String> {
    let value = value.unwrap_or(default);
    if !(1..=86_400).contains(&value) {
        return Err(format!(
            "proxy.{name} = {value} is out of range; use 1 to 86400 seconds"
        ));
    }
    Ok(Duration::from_secs(value))
}

/// Applies one `[providers.ID]` table to the registry.
fn apply_provider(
    registry: &mut ProviderRegistry,
    id: &str,
    raw: RawProviderConfig,
) -> Result<(), String> {
    validate_provider_id(id)?;
    let base_url = raw.base_url.as_deref().map(parse_base_url).transpose()?;
    let auth = parse_auth(raw.auth.as_deref(), raw.auth_name.as_deref())?;
    let error_shape = raw
        .error_format
        .as_deref()
        .map(parse_error_format)
        .transpose()?;

    if let Some(provider) = registry.get_mut(id) {
        if let Some(base_url) = base_url {
            provider.base_url = base_url;
        }
        if let Some(auth) = auth {
            provider.auth = auth;
        }
        if let Some(error_shape) = error_shape {
            provider.error_shape = error_shape;
        }
        return Ok(());
    }

    // A table for an unknown id defines a custom provider, which must set
    // both its base URL and its auth style. Requiring both keeps a misspelt
    // built-in (`[providers.opneai]`) from silently becoming a new provider.
    let (Some(base_url), Some(auth)) = (base_url, auth) else {
        let builtins: Vec<&str> = providers::builtin_ids().collect();
        return Err(format!(
            "{id:?} is not a built-in provider ({}); to add a custom provider, set both base_url and auth",
            builtins.join(", ")
        ));
    };
    registry.insert(Provider {
        id: id.to_string(),
        base_url,
        auth,
        error_shape: error_shape.unwrap_or(ErrorShape::OpenAi),
        builtin: false,
    });
    Ok(())
}

/// Checks that a provider id can be used as a route segment and vault name.
pub fn validate_provider_id(id: &str) -> Result<(), String> {
    let mut chars = id.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok && id.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "provider name {id:?} is invalid; use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit"
        ))
    }
}

/// Parses a base URL: http or https, a host, no query, fragment or
/// credentials; a trailing slash is removed.
pub fn parse_base_url(text: &str) -> Result<Url, String> {
    let mut url = Url::parse(text)
        .map_err(|error| format!("base_url {text:?} is not a valid URL ({error})"))?;
    // Trailing slashes go after parsing, because removing `.` and `..`
    // segments can leave new ones ("…/v1/." becomes "…/v1/").
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "base_url {text:?} must start with http:// or https://"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("base_url {text:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "base_url {text:?} must not have a query or fragment; put API keys in the vault"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "base_url must not contain a user name or password; store credentials with `keyport key set`"
                .to_string(),
        );
    }
    Ok(url)
}

fn parse_auth(style: Option<&str>, name: Option<&str>) -> Result<Option<AuthStyle>, String> {
    let Some(style) = style else {
        if name.is_some() {
            return Err(
                "auth_name is set but auth is not; set auth = \"header\" or \"query\"".into(),
            );
        }
        return Ok(None);
    };
    let needs_name = matches!(style, "header" | "query");
    if needs_name != name.is_some() {
        return Err(if needs_name {
            format!("auth = {style:?} needs auth_name, the header or query parameter that carries the key")
        } else {
            format!("auth_name only applies to auth = \"header\" or \"query\", not {style:?}")
        });
    }
    let name = name.map(validate_auth_name).transpose()?;
    let auth = match (style, name) {
        ("bearer", _) => AuthStyle::Bearer,
        ("anthropic", _) => AuthStyle::Anthropic,
        ("none", _) => AuthStyle::None,
        ("header", Some(name)) => AuthStyle::Header(name),
        ("query", Some(name)) => AuthStyle::Query(name),
        (other, _) => {
            return Err(format!(
                "auth = {other:?} is not supported; use \"bearer\", \"anthropic\", \"header\", \"query\" or \"none\""
            ))
        }
    };
    Ok(Some(auth))
}

/// Checks a header or query parameter name and returns it in lower case.
fn validate_auth_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!(
            "auth_name {name:?} is invalid; use letters, digits, '-' or '_'"
        ))
    }
}

fn parse_error_format(text: &str) -> Result<ErrorShape, String> {
    match text {
        "openai" => Ok(ErrorShape::OpenAi),
        "anthropic" => Ok(ErrorShape::Anthropic),
        "google" => Ok(ErrorShape::Google),
        "mistral" => Ok(ErrorShape::Mistral),
        other => Err(format!(
            "error_format = {other:?} is not supported; use \"openai\", \"anthropic\", \"google\" or \"mistral\""
        )),
    }
}

/// An allowed browser origin such as `http://localhost:*`.
///
/// The scheme and host must match exactly (case-insensitively); the port
/// matches exactly, or any port with `*`. Without a port the pattern matches
/// only the scheme's default port, as browsers omit it from `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: String,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Default,
    Any,
    Exact(u16),
}

impl OriginPattern {
    /// Parses `scheme://host[:port|:*]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "allowed origin {text:?} is invalid; write scheme://host or scheme://host:port, where port may be *"
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(invalid)?;
        if scheme != "http" && scheme != "https" {
            return Err(invalid());
        }
        let (host, port) = split_host_port(rest).ok_or_else(invalid)?;
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(digits) => PortPattern::Exact(digits.parse().map_err(|_| invalid())?),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
        if !host_ok {
            return Err(invalid());
        }
        Ok(Self {
            scheme: scheme.to_string(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Returns whether an `Origin` header value matches this pattern.
    pub fn matches(&self, origin: &str) -> bool {
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        let Some((host, port)) = split_host_port(rest) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(&self.scheme) || !host.eq_ignore_ascii_case(&self.host) {
            return false;
        }
        match (&self.port, port) {
            (PortPattern::Default, None) => true,
            (PortPattern::Any, _) => true,
            (PortPattern::Exact(expected), Some(port)) => port.parse::<u16>() == Ok(*expected),
            _ => false,
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            PortPattern::Default => Ok(()),
            PortPattern::Any => f.write_str(":*"),
            PortPattern::Exact(port) => write!(f, ":{port}"),
        }
    }
}

/// Splits `host[:port]`, where host may be a bracketed IPv6 address. Returns
/// None if anything follows the authority (a path, query or user info).
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let host = &authority[..=end];
        return match &authority[end + 1..] {
            "" => Some((host, None)),
            rest => rest.strip_prefix(':').map(|port| (host, Some(port))),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/tmp/config.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.proxy, ProxyConfig::default());
        assert_eq!(config.proxy.port, DEFAULT_PORT);
        assert!(config.proxy.require_token);
        assert_eq!(
            config.providers.get("openai").unwrap().base_url.as_str(),
            "https://api.openai.com/v1"
        );
    }

    #[test]
    fn desktop_section_is_read() {
        let config =
            parse("[desktop]\nauto_lock_minutes = 0\nlock_on_screen_lock = false\nstart_at_login = true\n")
                .unwrap();
        assert_eq!(config.desktop.auto_lock_minutes, 0);
        assert!(!config.desktop.lock_on_screen_lock);
        assert!(config.desktop.start_at_login);
        assert_eq!(parse("").unwrap().desktop, DesktopConfig::default());
        assert_eq!(DesktopConfig::default().auto_lock_minutes, 15);
    }

    #[test]
    fn desktop_section_rejects_bad_values() {
        let error = parse("[desktop]\nauto_lock_minutes = 5000\n").unwrap_err();
        assert!(
            error.to_string().contains("auto_lock_minutes = 5000"),
            "{error}"
        );
        let error = parse("[desktop]\ntheme = \"dark\"\n").unwrap_err();
        assert!(error.to_string().contains("theme"), "{error}");
    }

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(&dir.path().join("config.toml")).unwrap();
        assert_eq!(config.proxy, ProxyConfig::default());
    }

    #[test]
    fn base_url_override_replaces_builtin() {
        let config = parse("[providers.openai]\nbase_url = \"http://127.0.0.1:9/v1/\"\n").unwrap();
        let openai = config.providers.get("openai").unwrap();
        assert_eq!(openai.base_url.as_str(), "http://127.0.0.1:9/v1");
        assert_eq!(openai.auth, AuthStyle::Bearer);
    }

    #[test]
    fn base_url_text_parses_back_to_itself() {
        for (written, expected) in [
            ("http://127.0.0.1:9/v1/./", "http://127.0.0.1:9/v1"),
            ("http://127.0.0.1:9/v1/beta/../", "http://127.0.0.1:9/v1"),
            ("http://127.0.0.1:9//v1//.//", "http://127.0.0.1:9//v1"),
            ("https://api.example.test///", "https://api.example.test/"),
        ] {
            let url = parse_base_url(written).unwrap();
            assert_eq!(url.as_str(), expected, "{written}");
            let again = parse_base_url(&base_url_text(&url)).unwrap();
            assert_eq!(again, url, "{written}");
        }
    }

    #[test]
    fn unknown_top_level_key_is_named() {
        let message = parse("prxy = 1\n").unwrap_err().to_string();
        assert!(message.contains("prxy"), "{message}");
        assert!(message.contains("/tmp/config.toml"), "{message}");
    }

    #[test]
    fn unknown_proxy_key_is_named() {
        let message = parse("[proxy]\nport = 1\nrequire_tokens = false\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("require_tokens"), "{message}");
    }

    #[test]
    fn unknown_provider_key_is_named() {
        let message = parse("[providers.openai]\nbase_uri = \"http://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("base_uri"), "{message}");
    }

    #[test]
    fn misspelt_builtin_is_not_a_custom_provider() {
        let message = parse("[providers.opneai]\nbase_url = \"http://127.0.0.1:9\"\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("opneai"), "{message}");
        assert!(message.contains("not a built-in provider"), "{message}");
    }

    #[test]
    fn custom_provider_with_header_auth() {
        let config = parse(
            "[providers.azure]\nbase_url = \"https://res.example.test/openai\"\nauth = \"header\"\nauth_name = \"Api-Key\"\n",
        )
        .unwrap();
        let azure = config.providers.get("azure").unwrap();
        assert_eq!(azure.auth, AuthStyle::Header("api-key".into()));
        assert_eq!(azure.error_shape, ErrorShape::OpenAi);
        assert!(!azure.builtin);
    }

    #[test]
    fn custom_provider_with_query_auth() {
        let config =
            parse("[providers.acme]\nbase_url = \"http://127.0.0.1:9\"\nauth = \"query\"\nauth_name = \"token\"\nerror_format = \"google\"\n")
                .unwrap();
        let acme = config.providers.get("acme").unwrap();
        assert_eq!(acme.auth, AuthStyle::Query("token".into()));
        assert_eq!(acme.error_shape, ErrorShape::Google);
    }

    #[test]
    fn header_auth_without_name_is_rejected() {
        let message =
            parse("[providers.acme]\nbase_url = \"http://127.0.0.1:9\"\nauth = \"header\"\n")
                .unwrap_err()
                .to_string();
        assert!(message.contains("auth_name"), "{message}");
    }

    #[test]
    fn bad_values_are_rejected_with_the_value() {
        let cases = [
            ("[proxy]\nbind = \"localhost:1\"\n", "localhost:1"),
            (
                "[proxy]\nmax_request_body_mib = 0\n",
                "max_request_body_mib = 0",
            ),
            (
                "[proxy]\nupstream_idle_timeout_secs = 0\n",
                "upstream_idle_timeout_secs = 0",
            ),
            (
                "[proxy]\nallowed_origins = [\"localhost\"]\n",
                "\"localhost\"",
            ),
            ("[providers.openai]\nbase_url = \"ftp://x\"\n", "ftp://x"),
            (
                "[providers.openai]\nbase_url = \"http://x/?key=1\"\n",
                "query",
            ),
            ("[providers.openai]\nauth = \"basic\"\n", "basic"),
            (
                "[providers.Bad]\nbase_url = \"http://x\"\nauth = \"none\"\n",
                "Bad",
            ),
            ("[proxy]\nport = 70000\n", "port"),
            (
                "[log]\nbody_capture_limit_kib = 0\n",
                "body_capture_limit_kib = 0",
            ),
            ("[log]\nretention = 3\n", "retention"),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text:?} gave {message:?}");
        }
    }

    #[test]
    fn base_url_credentials_are_not_echoed() {
        let message = parse("[providers.openai]\nbase_url = \"https://user:s3cret@x.test\"\n")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[test]
    fn to_toml_round_trips() {
        let text = "[proxy]\nport = 0\nrequire_token = false\n\n[log]\nmax_rows = 5\ncapture_bodies = true\n\n[providers.acme]\nbase_url = \"http://127.0.0.1:9/x\"\nauth = \"query\"\nauth_name = \"key\"\n";
        let config = parse(text).unwrap();
        let again = parse(&config.to_toml()).unwrap();
        assert_eq!(again.proxy, config.proxy);
        assert_eq!(again.log, config.log);
        assert_eq!(
            again.providers.iter().collect::<Vec<_>>(),
            config.providers.iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn origin_patterns_match() {
        let any_port = OriginPattern::parse("http://localhost:*").unwrap();
        assert!(any_port.matches("http://localhost:5173"));
        assert!(any_port.matches("http://LOCALHOST:80"));
        assert!(any_port.matches("http://localhost"));
        assert!(!any_port.matches("https://localhost:5173"));
        assert!(!any_port.matches("http://localhost.evil.test:5173"));
        assert!(!any_port.matches("http://evil.test"));
        assert!(!any_port.matches("null"));

        let exact = OriginPattern::parse("https://app.example.test:8443").unwrap();
        assert!(exact.matches("https://app.example.test:8443"));
        assert!(!exact.matches("https://app.example.test:8444"));
        assert!(!exact.matches("https://app.example.test"));

        let default_port = OriginPattern::parse("https://app.example.test").unwrap();
        assert!(default_port.matches("https://app.example.test"));
        assert!(!default_port.matches("https://app.example.test:1"));

        let ipv6 = OriginPattern::parse("http://[::1]:*").unwrap();
        assert!(ipv6.matches("http://[::1]:3000"));
    }
}
