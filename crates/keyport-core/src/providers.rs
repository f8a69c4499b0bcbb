//! The provider registry: which upstream each `/llm/{provider}/…` route
//! forwards to, how the vault key is attached, and what error JSON the
//! provider's SDKs expect.
//!
//! Built-in providers come with their public base URLs. `config.toml` can
//! override any base URL or auth style and add custom providers; see
//! [`crate::config`].

use std::collections::BTreeMap;
use std::fmt;

use reqwest::Url;

/// Placement of the vault key in an upstream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer KEY` (OpenAI, Mistral and OpenAI-compatible APIs).
    Bearer,
    /// `x-api-key: KEY`, or `Authorization: Bearer KEY` when the client itself
    /// sent a Bearer credential (as `@anthropic-ai/sdk` 1.x does).
    Anthropic,
    /// The key as the value of a named header, such as `x-goog-api-key` or
    /// Azure OpenAI's `api-key`. The name is stored in lower case.
    Header(String),
    /// The key as a query parameter with this name.
    Query(String),
    /// No key at all (a local Ollama server).
    None,
}

impl AuthStyle {
    /// Returns whether requests through this provider need a key from the vault.
    pub fn needs_key(&self) -> bool {
        !matches!(self, AuthStyle::None)
    }
}

impl fmt::Display for AuthStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthStyle::Bearer => f.write_str("bearer"),
            AuthStyle::Anthropic => {
                f.write_str("anthropic (x-api-key, or bearer if the client sends bearer)")
            }
            AuthStyle::Header(name) => write!(f, "header {name}"),
            AuthStyle::Query(name) => write!(f, "query parameter {name}"),
            AuthStyle::None => f.write_str("none"),
        }
    }
}

/// The JSON shape of error bodies that a provider's SDKs parse. Errors that
/// Keyport makes itself use the shape of the route's provider so SDKs show
/// the message instead of a parse failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// `{"error":{"message","type","param","code"}}`
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`
    Anthropic,
    /// `{"error":{"code","message","status"}}`
    Google,
    /// `{"object":"error","message","type","param","code"}`
    Mistral,
}

/// One upstream provider: its route id, base URL, auth style and error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// Route segment and vault name, such as `openai`.
    pub id: String,
    /// Upstream base URL without a trailing slash. The part of the request
    /// path after `/llm/{id}` is appended to it verbatim.
    pub base_url: Url,
    pub auth: AuthStyle,
    pub error_shape: ErrorShape,
    /// False for providers defined in `config.toml`.
    pub builtin: bool,
}

/// A built-in provider's defaults.
struct Preset {
    id: &'static str,
    base_url: &'static str,
    auth: fn() -> AuthStyle,
    error_shape: ErrorShape,
}

/// Public base URLs of the built-in providers. The OpenAI-compatible presets
/// include their API version prefix so that OpenAI SDKs pointed at
/// `/llm/{id}` send the same paths as they would to `/llm/openai`.
#[rustfmt::skip]
const PRESETS: &[Preset] = &[
    Preset { id: "openai", base_url: "https://api.openai.com/v1", auth: || AuthStyle::Bearer, error_shape: ErrorShape::OpenAi },
    Preset { id: "anthropic", base_url: "https://api.anthropic.com", auth: || AuthStyle::Anthropic, error_shape: ErrorShape::Anthropic },
    Preset { id: "google", base_url: "https://generativelanguage.googleapis.com", auth: || AuthStyle::Header("x-goog-api-key".into()), error_shape: ErrorShape::Google },
    Preset { id: "mistral", base_url: "https://api.mistral.ai", auth: || AuthStyle::Bearer, error_shape: ErrorShape::Mistral },
    Preset { id: "groq", base_url: "https://api.groq.com/openai/v1", auth: || AuthStyle::Bearer, error_shape: ErrorShape::OpenAi },
    Preset { id: "deepseek", base_url: "https://api.deepseek.com", auth: || AuthStyle::Bearer, error_shape: ErrorShape::OpenAi },
    Preset { id: "xai", base_url: "https://api.x.ai/v1", auth: || AuthStyle::Bearer, error_shape: ErrorShape::OpenAi },
    Preset { id: "openrouter", base_url: "https://openrouter.ai/api/v1", auth: || AuthStyle::Bearer, error_shape: ErrorShape::OpenAi },
    Preset { id: "together", base_url: "https://api.together.xyz/v1", auth: || AuthStyle::Bearer, error_shape: ErrorShape::OpenAi },
    Preset { id: "fireworks", base_url: "https://api.fireworks.ai/inference/v1", auth: || AuthStyle::Bearer, error_shape: ErrorShape::OpenAi },
    Preset { id: "perplexity", base_url: "https://api.perplexity.ai", auth: || AuthStyle::Bearer, error_shape: ErrorShape::OpenAi },
    Preset { id: "ollama", base_url: "http://127.0.0.1:11434", auth: || AuthStyle::None, error_shape: ErrorShape::OpenAi },
];

/// Ids of the built-in providers, in display order.
pub fn builtin_ids() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|preset| preset.id)
}

/// Returns whether `id` names a built-in provider.
pub fn is_builtin(id: &str) -> bool {
    PRESETS.iter().any(|preset| preset.id == id)
}

/// Every provider the proxy can route to, keyed by id.
#[derive(Debug, Clone)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, Provider>,
}

impl ProviderRegistry {
    /// Creates a registry of the built-in providers with their public base URLs.
    pub fn builtin() -> Self {
        let providers = PRESETS
            .iter()
            .filter_map(|preset| {
                let base_url = Url::parse(preset.base_url).ok()?;
                let provider = Provider {
                    id: preset.id.to_string(),
                    base_url,
                    auth: (preset.auth)(),
                    error_shape: preset.error_shape,
                    builtin: true,
                };
                Some((preset.id.to_string(), provider))
            })
            .collect();
        Self { providers }
    }

    /// Adds or replaces a provider.
    pub fn insert(&mut self, provider: Provider) {
        self.providers.insert(provider.id.clone(), provider);
    }

    pub fn get(&self, id: &str) -> Option<&Provider> {
        self.providers.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Provider> {
        self.providers.get_mut(id)
    }

    /// Returns all providers, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }

    /// Provider ids as a comma-separated list, for error messages.
    pub fn ids_for_message(&self) -> String {
        self.providers
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_has_every_preset() {
        let registry = ProviderRegistry::builtin();
        for id in builtin_ids() {
            assert!(registry.get(id).is_some(), "{id} missing");
        }
        assert_eq!(registry.iter().count(), PRESETS.len());
    }

    #[test]
    fn builtin_base_urls_are_bare() {
        for provider in ProviderRegistry::builtin().iter() {
            let url = provider.base_url.as_str();
            assert!(
                url.starts_with("https://") || provider.id == "ollama",
                "{url}"
            );
            assert!(provider.base_url.query().is_none(), "{url}");
            assert!(provider.base_url.fragment().is_none(), "{url}");
            // Url normalises an empty path to "/", which the proxy treats as
            // no prefix; any other path must not end in a slash.
            let path = provider.base_url.path();
            assert!(path == "/" || !path.ends_with('/'), "{url}");
        }
    }

    #[test]
    fn ollama_needs_no_key_and_others_do() {
        let registry = ProviderRegistry::builtin();
        assert!(!registry.get("ollama").unwrap().auth.needs_key());
        assert!(registry.get("openai").unwrap().auth.needs_key());
    }
}
