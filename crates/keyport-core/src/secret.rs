//! Types and helpers for values that must never leak.
//!
//! Provider keys and client tokens are held in [`SecretString`], which zeroizes
//! its buffer on drop, prints as `[REDACTED]` under `Debug` and has no
//! `Serialize` implementation. Code reads the value with
//! [`ExposeSecret::expose_secret`] only where it is written to an upstream
//! header or hashed.

pub use secrecy::{ExposeSecret, SecretString};

/// Number of trailing characters a masked key shows.
const MASK_TAIL: usize = 4;

/// Shortest key whose tail is shown; shorter keys are masked entirely so that
/// a mask never reveals a large share of a key.
const MASK_MIN_LEN: usize = 16;

/// Masks a key for display as `sk-…3xYz`.
///
/// The mask keeps a well-known vendor prefix (such as `sk-`, `sk-ant-` or
/// `AIza`), which carries no secret, and at most the last four characters.
pub fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let prefix = known_prefix(key);
    if chars.len() < MASK_MIN_LEN {
        return format!("{prefix}…");
    }
    let tail: String = chars[chars.len() - MASK_TAIL..].iter().collect();
    format!("{prefix}…{tail}")
}

/// Returns the vendor prefix of a key, or an empty string.
fn known_prefix(key: &str) -> &'static str {
    const PREFIXES: [&str; 9] = [
        "sk-ant-", "sk-proj-", "sk-or-", "sk-", "AIza", "gsk_", "xai-", "pplx-", "fw_",
    ];
    PREFIXES
        .iter()
        .find(|prefix| key.starts_with(**prefix) && key.len() >= MASK_MIN_LEN)
        .copied()
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_keeps_prefix_and_tail() {
        assert_eq!(mask_key("sk-abcdefghijklmnop3xYz"), "sk-…3xYz");
        assert_eq!(mask_key("sk-ant-api03-abcdefghijkl9876"), "sk-ant-…9876");
        assert_eq!(mask_key("AIzaSyABCDEFGHIJKLMNOP1234"), "AIza…1234");
    }

    #[test]
    fn mask_hides_short_keys_entirely() {
        assert_eq!(mask_key("short-key"), "…");
        assert_eq!(mask_key(""), "…");
    }

    #[test]
    fn mask_handles_multibyte_characters() {
        assert_eq!(mask_key("ключ-ключ-ключ-ключ-1234"), "…1234");
    }
}
