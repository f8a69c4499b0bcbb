//! Model allow-list patterns such as `openai:gpt-4o-mini*`, `anthropic:*`
//! or `*:*embedding*`.
//!
//! A pattern is `PROVIDER:MODEL`, split at its first `:`, so model names
//! that contain `:` (Ollama's `llama3:8b`) still match. In each half, `*`
//! matches any run of characters, including none; every other character
//! matches itself, ignoring ASCII case. Provider ids never contain `:`.

use std::fmt;

/// Maximum pattern length, in bytes.
const MAX_PATTERN_LEN: usize = 200;

/// A validated `PROVIDER:MODEL` glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPattern {
    text: String,
    split: usize,
}

/// Reason a pattern text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model pattern {pattern:?} is invalid: {reason}; write PROVIDER:MODEL with `*` as the wildcard, such as openai:gpt-4o-mini* or anthropic:*")]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

impl ModelPattern {
    /// Parses `text`. Both halves must be non-empty and use the characters
    /// of provider ids and model names, plus `*`.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let invalid = |reason| PatternError {
            pattern: text.chars().take(MAX_PATTERN_LEN).collect(),
            reason,
        };
        if text.len() > MAX_PATTERN_LEN {
            return Err(invalid("it is longer than 200 characters"));
        }
        let Some(split) = text.find(':') else {
            return Err(invalid("it has no ':' between provider and model"));
        };
        let (provider, model) = (&text[..split], &text[split + 1..]);
        if provider.is_empty() || model.is_empty() {
            return Err(invalid("the provider or the model part is empty"));
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._:/@+*".contains(&b);
        if !text.bytes().all(allowed) {
            return Err(invalid(
                "it contains a character other than letters, digits, '-', '.', '_', ':', '/', '@', '+' and '*'",
            ));
        }
        Ok(Self {
            text: text.to_string(),
            split,
        })
    }

    /// Returns whether `provider` and `model` match this pattern.
    pub fn matches(&self, provider: &str, model: &str) -> bool {
        let (provider_glob, model_glob) = (&self.text[..self.split], &self.text[self.split + 1..]);
        glob_match(provider_glob.as_bytes(), provider.as_bytes())
            && glob_match(model_glob.as_bytes(), model.as_bytes())
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ModelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Matches `text` against `glob`, where `*` is the only wildcard.
///
/// Greedy matching with one backtrack point: on a mismatch after a `*`, the
/// star takes one more character. This runs in O(glob × text) at worst and
/// never recurses, whatever the input.
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g, t));
            g += 1;
        } else if g < glob.len() && glob[g].eq_ignore_ascii_case(&text[t]) {
            g += 1;
            t += 1;
        } else if let Some((star_g, star_t)) = star {
            g = star_g + 1;
            t = star_t + 1;
            star = Some((star_g, star_t + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, provider: &str, model: &str) -> bool {
        ModelPattern::parse(pattern)
            .unwrap()
            .matches(provider, model)
    }

    #[test]
    fn prefix_star_and_exact() {
        assert!(matches("openai:gpt-4o-mini*", "openai", "gpt-4o-mini"));
        assert!(matches(
            "openai:gpt-4o-mini*",
            "openai",
            "gpt-4o-mini-2024-07-18"
        ));
        assert!(!matches("openai:gpt-4o-mini*", "openai", "gpt-4o"));
        assert!(!matches("openai:gpt-4o-mini*", "groq", "gpt-4o-mini"));
        assert!(matches("openai:gpt-4o", "openai", "gpt-4o"));
        assert!(!matches("openai:gpt-4o", "openai", "gpt-4o-mini"));
    }

    #[test]
    fn stars_in_both_halves() {
        assert!(matches(
            "anthropic:*",
            "anthropic",
            "claude-3-5-haiku-latest"
        ));
        assert!(matches("*:*embedding*", "openai", "text-embedding-3-small"));
        assert!(matches("*:*embedding*", "mistral", "mistral-embedding"));
        assert!(!matches("*:*embedding*", "openai", "gpt-4o"));
        assert!(matches("*:*", "x", "y"));
        assert!(matches("open*:g*o*i", "openai", "gpt-4o-mini"));
        assert!(!matches("open*:g*o*i", "openai", "gpt-4o-mini-x"));
    }

    #[test]
    fn case_and_colons_in_models() {
        assert!(matches("google:Gemini-2.5*", "google", "gemini-2.5-flash"));
        assert!(matches("ollama:llama3:*", "ollama", "llama3:8b"));
        assert!(!matches("ollama:llama3:*", "ollama", "llama3"));
    }

    #[test]
    fn backtracking_finds_late_matches() {
        assert!(matches("p:*ab*ab", "p", "aababab"));
        assert!(!matches("p:*ab*abc", "p", "aababab"));
        let long = "a".repeat(150);
        assert!(!matches("p:*a*a*a*a*a*b", "p", &long));
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        for text in [
            "gpt-4o",
            ":gpt",
            "openai:",
            "open ai:gpt",
            "openai:gpt?",
            &"a".repeat(201),
        ] {
            assert!(ModelPattern::parse(text).is_err(), "{text:?}");
        }
        let error = ModelPattern::parse("gpt-4o").unwrap_err().to_string();
        assert!(error.contains("PROVIDER:MODEL"), "{error}");
    }
}
