//! Vault password strength, estimated with zxcvbn.

use crate::secret::{ExposeSecret, SecretString};

/// Minimum zxcvbn score (0..=4) a vault password needs. zxcvbn 3.1 puts
/// score 3 at more than 10^8 guesses and at most 10^10; each guess here
/// costs an Argon2id derivation with 64 MiB of memory.
pub const MIN_ACCEPTABLE_SCORE: u8 = 3;

/// A password this long is accepted whatever its score, because a long
/// passphrase of common words scores low while resisting guessing well.
pub const LONG_PASSWORD_CHARS: usize = 16;

/// zxcvbn's estimate of a password, with its feedback in English.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordStrength {
    /// 0 (cracked in 10^3 guesses or fewer) to 4 (more than 10^10).
    pub score: u8,
    /// Whether the vault accepts the password: score of at least
    /// [`MIN_ACCEPTABLE_SCORE`] or length of at least
    /// [`LONG_PASSWORD_CHARS`] characters.
    pub acceptable: bool,
    pub warning: Option<String>,
    pub suggestions: Vec<String>,
}

/// Estimates `password`'s strength. `user_inputs` are words the password
/// should not be built from, such as the user name.
pub fn password_strength(password: &SecretString, user_inputs: &[&str]) -> PasswordStrength {
    let password = password.expose_secret();
    if password.is_empty() {
        return PasswordStrength {
            score: 0,
            acceptable: false,
            warning: Some("The password is empty.".to_string()),
            suggestions: Vec::new(),
        };
    }
    let entropy = zxcvbn::zxcvbn(password, user_inputs);
    let score = u8::from(entropy.score());
    let feedback = entropy.feedback();
    PasswordStrength {
        score,
        acceptable: score >= MIN_ACCEPTABLE_SCORE
            || password.chars().count() >= LONG_PASSWORD_CHARS,
        warning: feedback
            .and_then(|feedback| feedback.warning())
            .map(|warning| warning.to_string()),
        suggestions: feedback
            .map(|feedback| {
                feedback
                    .suggestions()
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strength(text: &str) -> PasswordStrength {
        password_strength(&SecretString::from(text.to_string()), &[])
    }

    #[test]
    fn common_password_is_rejected_with_feedback() {
        let result = strength("password1");
        assert!(result.score < MIN_ACCEPTABLE_SCORE, "{result:?}");
        assert!(!result.acceptable);
        assert!(result.warning.is_some() || !result.suggestions.is_empty());
    }

    #[test]
    fn random_password_is_accepted() {
        let result = strength("vT9#qL2!mZ8@wR");
        assert!(result.score >= MIN_ACCEPTABLE_SCORE, "{result:?}");
        assert!(result.acceptable);
    }

    #[test]
    fn long_weak_password_is_accepted() {
        let text = "aaaaaaaaaaaaaaaa";
        let result = strength(text);
        assert!(result.score < MIN_ACCEPTABLE_SCORE, "{result:?}");
        assert!(result.acceptable);
        assert!(!strength(&text[..15]).acceptable);
    }

    #[test]
    fn empty_password_scores_zero() {
        let result = strength("");
        assert_eq!(result.score, 0);
        assert!(!result.acceptable);
    }

    #[test]
    fn user_inputs_lower_the_score() {
        let text = "keyportalice2026";
        let plain = password_strength(&SecretString::from(text.to_string()), &[]);
        let with_inputs =
            password_strength(&SecretString::from(text.to_string()), &["keyport", "alice"]);
        assert!(
            with_inputs.score <= plain.score,
            "{plain:?} {with_inputs:?}"
        );
    }
}
