//! Environment variable names under which SDKs and projects keep provider
//! keys, and the provider ids of [`crate::providers`] they map to.

/// Variable names read by each provider's own SDKs (and by KaibanJS
/// examples), with the Keyport provider id.
#[rustfmt::skip]
const KEY_VARIABLES: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "openai"),
    ("ANTHROPIC_API_KEY", "anthropic"),
    ("GOOGLE_API_KEY", "google"),
    ("GEMINI_API_KEY", "google"),
    ("GOOGLE_GENERATIVE_AI_API_KEY", "google"),
    ("MISTRAL_API_KEY", "mistral"),
    ("GROQ_API_KEY", "groq"),
    ("DEEPSEEK_API_KEY", "deepseek"),
    ("XAI_API_KEY", "xai"),
    ("OPENROUTER_API_KEY", "openrouter"),
    ("TOGETHER_API_KEY", "together"),
    ("FIREWORKS_API_KEY", "fireworks"),
    ("PERPLEXITY_API_KEY", "perplexity"),
    ("PPLX_API_KEY", "perplexity"),
];

/// Prefixes that front-end build tools (Vite, Next.js, Create React App)
/// require on variables they expose to browser code.
pub const FRONTEND_PREFIXES: [&str; 3] = ["VITE_", "NEXT_PUBLIC_", "REACT_APP_"];

/// Base-URL variables that the client constructors of the Node SDKs
/// `openai`, `@anthropic-ai/sdk` and `@google/genai` read from the
/// environment. For other providers the base URL is set in code.
const BASE_URL_VARIABLES: &[(&str, &str)] = &[
    ("openai", "OPENAI_BASE_URL"),
    ("anthropic", "ANTHROPIC_BASE_URL"),
    ("google", "GOOGLE_GEMINI_BASE_URL"),
];

/// Returns the provider id whose key `name` usually contains, such as
/// `openai` for `OPENAI_API_KEY` or `VITE_OPENAI_API_KEY`.
pub fn provider_for(name: &str) -> Option<&'static str> {
    let (_, base) = split_prefix(name);
    KEY_VARIABLES
        .iter()
        .find(|(variable, _)| *variable == base)
        .map(|(_, provider)| *provider)
}

/// Splits a front-end prefix, if any, off `name`.
fn split_prefix(name: &str) -> (&'static str, &str) {
    FRONTEND_PREFIXES
        .iter()
        .find_map(|prefix| Some((*prefix, name.strip_prefix(prefix)?)))
        .unwrap_or(("", name))
}

/// Returns the base-URL variable that goes with the key variable `name`,
/// with the same front-end prefix: `VITE_OPENAI_BASE_URL` for
/// `VITE_OPENAI_API_KEY`. None when `name` is not a key variable or its
/// provider's SDKs read no base URL.
pub fn base_url_variable_for(name: &str) -> Option<String> {
    let (prefix, _) = split_prefix(name);
    let variable = base_url_variable(provider_for(name)?)?;
    Some(format!("{prefix}{variable}"))
}

/// Returns every recognised name: each key variable alone and with each
/// front-end prefix.
pub fn recognised_names() -> Vec<String> {
    let mut names = Vec::with_capacity(KEY_VARIABLES.len() * (FRONTEND_PREFIXES.len() + 1));
    for (variable, _) in KEY_VARIABLES {
        names.push((*variable).to_owned());
        for prefix in FRONTEND_PREFIXES {
            names.push(format!("{prefix}{variable}"));
        }
    }
    names
}

/// Returns the key variables without prefixes, for messages.
pub fn key_variable_names() -> impl Iterator<Item = &'static str> {
    KEY_VARIABLES.iter().map(|(variable, _)| *variable)
}

/// Returns the environment variable from which the provider's SDKs read a
/// base URL, if they read one.
pub fn base_url_variable(provider: &str) -> Option<&'static str> {
    BASE_URL_VARIABLES
        .iter()
        .find(|(id, _)| *id == provider)
        .map(|(_, variable)| *variable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::is_builtin;

    #[test]
    fn every_variable_maps_to_a_builtin_provider() {
        for (variable, provider) in KEY_VARIABLES {
            assert!(is_builtin(provider), "{variable} maps to {provider}");
        }
        for (provider, _) in BASE_URL_VARIABLES {
            assert!(is_builtin(provider), "{provider}");
        }
    }

    #[test]
    fn prefixed_names_map_like_plain_names() {
        assert_eq!(provider_for("OPENAI_API_KEY"), Some("openai"));
        assert_eq!(provider_for("VITE_OPENAI_API_KEY"), Some("openai"));
        assert_eq!(provider_for("NEXT_PUBLIC_GEMINI_API_KEY"), Some("google"));
        assert_eq!(provider_for("REACT_APP_PPLX_API_KEY"), Some("perplexity"));
        assert_eq!(provider_for("GOOGLE_GENERATIVE_AI_API_KEY"), Some("google"));
    }

    #[test]
    fn unrelated_names_map_to_nothing() {
        for name in [
            "OPENAI_BASE_URL",
            "openai_api_key",
            "VITE_VITE_OPENAI_API_KEY",
            "MY_OPENAI_API_KEY",
            "DATABASE_URL",
            "",
        ] {
            assert_eq!(provider_for(name), None, "{name}");
        }
    }

    #[test]
    fn base_url_variables_keep_the_key_variables_prefix() {
        assert_eq!(
            base_url_variable_for("OPENAI_API_KEY").as_deref(),
            Some("OPENAI_BASE_URL")
        );
        assert_eq!(
            base_url_variable_for("VITE_ANTHROPIC_API_KEY").as_deref(),
            Some("VITE_ANTHROPIC_BASE_URL")
        );
        assert_eq!(
            base_url_variable_for("NEXT_PUBLIC_GEMINI_API_KEY").as_deref(),
            Some("NEXT_PUBLIC_GOOGLE_GEMINI_BASE_URL")
        );
        assert_eq!(base_url_variable_for("MISTRAL_API_KEY"), None);
        assert_eq!(base_url_variable_for("OPENAI_BASE_URL"), None);
    }

    #[test]
    fn recognised_names_cover_every_prefix() {
        let names = recognised_names();
        assert_eq!(names.len(), KEY_VARIABLES.len() * 4);
        for name in &names {
            assert!(provider_for(name).is_some(), "{name}");
        }
        assert!(names.iter().any(|name| name == "NEXT_PUBLIC_XAI_API_KEY"));
    }
}
