//! Syntax rules for provider ids, key labels and key values.

use std::fmt;

use super::error::VaultError;

/// Label used when the caller gives none.
pub const DEFAULT_LABEL: &str = "default";

/// Maximum length of a key value in bytes. Real provider keys are well under
/// 1 KiB; the limit stops a pasted file from landing in the vault.
pub const MAX_KEY_BYTES: usize = 8 * 1024;

/// Maximum length of a provider id or a label in bytes.
const MAX_NAME_BYTES: usize = 64;

/// Reason a key value was rejected. It never contains the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    Empty,
    TooLong { bytes: usize },
    WhitespaceOrControl,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the key is empty"),
            Self::TooLong { bytes } => write!(
                f,
                "the key is {bytes} bytes long, more than the maximum of {MAX_KEY_BYTES}"
            ),
            Self::WhitespaceOrControl => f.write_str(
                "the key contains whitespace or a control character. Check for spaces or a \
                 line break copied along with it.",
            ),
        }
    }
}

/// Checks a provider id against `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn validate_provider(provider: &str) -> Result<(), VaultError> {
    let valid = is_valid_name(provider, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
    });
    if valid {
        Ok(())
    } else {
        Err(VaultError::InvalidProvider {
            provider: provider.to_owned(),
        })
    }
}

/// Checks a label against `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`.
pub fn validate_label(label: &str) -> Result<(), VaultError> {
    let valid = is_valid_name(label, |c| {
        c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
    });
    if valid {
        Ok(())
    } else {
        Err(VaultError::InvalidLabel {
            label: label.to_owned(),
        })
    }
}

/// Checks that a key value can go into an HTTP header unchanged.
pub fn check_key(key: &str) -> Result<(), KeyProblem> {
    if key.is_empty() {
        return Err(KeyProblem::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyProblem::TooLong { bytes: key.len() });
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(KeyProblem::WhitespaceOrControl);
    }
    Ok(())
}

/// Applies a name rule: 1 to 64 bytes, the first one alphanumeric ASCII and
/// every one accepted by `allowed`.
fn is_valid_name(name: &str, allowed: impl Fn(char) -> bool) -> bool {
    let Some(first) = name.chars().next() else {
        return false;
    };
    name.len() <= MAX_NAME_BYTES && first.is_ascii_alphanumeric() && name.chars().all(allowed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn provider_rule_accepts_and_rejects() {
        for good in ["openai", "a", "0", "open-ai_2", &"x".repeat(64)] {
            assert!(validate_provider(good).is_ok(), "{good} should be valid");
        }
        for bad in [
            "",
            "OpenAI",
            "-openai",
            "_x",
            "open ai",
            "open/ai",
            "é",
            &"x".repeat(65),
        ] {
            assert!(validate_provider(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn label_rule_accepts_and_rejects() {
        for good in ["default", "Work", "v1.2", "a-b_c", "9", &"L".repeat(64)] {
            assert!(validate_label(good).is_ok(), "{good} should be valid");
        }
        for bad in ["", ".hidden", "-x", "a b", "a/b", "ключ", &"L".repeat(65)] {
            assert!(validate_label(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn key_rule_reports_each_problem() {
        assert_eq!(check_key(""), Err(KeyProblem::Empty));
        assert_eq!(
            check_key(&"k".repeat(MAX_KEY_BYTES + 1)),
            Err(KeyProblem::TooLong {
                bytes: MAX_KEY_BYTES + 1
            })
        );
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        for bad in [
            "sk-abc\n",
            " sk-abc",
            "sk\tabc",
            "sk\u{7f}abc",
            "sk\u{a0}abc",
        ] {
            assert_eq!(
                check_key(bad),
                Err(KeyProblem::WhitespaceOrControl),
                "{bad:?}"
            );
        }
        assert!(check_key("sk-proj-AbC_123-xyz").is_ok());
    }
}
