//! Removal of credentials from text that the log stores: captured bodies and
//! request paths.
//!
//! Two rules apply, and both over-redact rather than miss:
//! - the value after a credential name (`Authorization`, `x-api-key`,
//!   `x-goog-api-key`, `api-key`, `api_key`, `apiKey`, `access_token`,
//!   `client_secret`, `password`, a `key=` query parameter, …) in header,
//!   JSON or query form, and the word after `Bearer`;
//! - any run of letters, digits, `_` and `-` that looks like an API key.
//!   Such a run starts with a known vendor prefix (`sk-`, `AIza`, `kp_`, …)
//!   and has a digit, or it is at least 32 characters long and mixes letters
//!   and digits. This rule also hides long ids, UUIDs and base64 data.

/// Replacement text for a removed credential.
pub const REDACTED: &str = "[REDACTED]";

/// Names whose value is a credential. Matched case-insensitively, as whole
/// words, followed by `:` or `=`.
const SECRET_NAMES: &[&str] = &[
    "proxy-authorization",
    "authorization",
    "x-goog-api-key",
    "x-api-key",
    "api-key",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "password",
    "x-keyport-token",
];

/// Names whose value can contain spaces (`Authorization: Bearer KEY`).
const SPACED_VALUE_NAMES: &[&str] = &["proxy-authorization", "authorization"];

/// Vendor prefixes of API keys and tokens.
const KEY_PREFIXES: &[&str] = &[
    "sk-",
    "sk_",
    "rk_",
    "pk_",
    "AIza",
    "kp_",
    "gsk_",
    "xai-",
    "pplx-",
    "fw_",
    "hf_",
    "r8_",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "AKIA",
    "nvapi-",
];

/// Characters after a prefix before a run counts as a key.
const MIN_PREFIXED_TAIL: usize = 12;

/// Length from which an unprefixed run of mixed letters and digits counts as
/// a key (Mistral and Azure keys are 32 characters).
const MIN_BARE_KEY_LEN: usize = 32;

/// Returns `text` with every credential replaced by [`REDACTED`].
pub fn redact(text: &str) -> String {
    let named = redact_named_values(text);
    redact_key_runs(&named)
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// Replaces the values of [`SECRET_NAMES`], of `key=` query parameters and
/// of `Bearer` credentials.
fn redact_named_values(text: &str) -> String {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let lower = lower.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut index = 0;

    while index < bytes.len() {
        let at_word_start = index == 0 || !is_word_byte(bytes[index - 1]);
        if !at_word_start || !bytes[index].is_ascii_alphabetic() {
            index += 1;
            continue;
        }
        if let Some((start, end)) = named_value_at(bytes, lower, index) {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
            index = end.max(index + 1);
        } else {
            index += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// If a credential name starts at `index`, returns the byte range of its
/// value.
fn named_value_at(bytes: &[u8], lower: &[u8], index: usize) -> Option<(usize, usize)> {
    let rest = &lower[index..];
    let whole_word = |len: usize| bytes.get(index + len).is_none_or(|&b| !is_word_byte(b));

    if rest.starts_with(b"bearer ") {
        let start = skip_blanks(bytes, index + "bearer".len());
        let end = scan_while(bytes, start, |b| {
            !b.is_ascii_whitespace() && !b"\"'&,;".contains(&b)
        });
        return (end > start).then_some((start, end));
    }

    // `key=VALUE` is only a credential as a query or form parameter.
    if rest.starts_with(b"key=") {
        let after_separator = index > 0 && b"?&;".contains(&bytes[index - 1]);
        if index == 0 || after_separator {
            let start = index + "key=".len();
            let end = scan_while(bytes, start, |b| !b"&#\"' \t\r\n".contains(&b));
            return (end > start).then_some((start, end));
        }
        return None;
    }

    let name = SECRET_NAMES
        .iter()
        .find(|name| rest.starts_with(name.as_bytes()) && whole_word(name.len()))?;
    let spaced = SPACED_VALUE_NAMES.contains(name);

    // Accept `name: v`, `name=v`, `"name": "v"` and `'name' = 'v'`.
    let mut position = index + name.len();
    if matches!(bytes.get(position), Some(b'"' | b'\'')) {
        position += 1;
    }
    position = skip_blanks(bytes, position);
    if !matches!(bytes.get(position), Some(b':' | b'=')) {
        return None;
    }
    position = skip_blanks(bytes, position + 1);

    match bytes.get(position) {
        Some(&quote @ (b'"' | b'\'')) => {
            let start = position + 1;
            let end = closing_quote(bytes, start, quote);
            (end > start).then_some((start, end))
        }
        Some(_) => {
            let end = if spaced {
                scan_while(bytes, position, |b| !b"\r\n&,;\"'".contains(&b))
            } else {
                scan_while(bytes, position, |b| {
                    !b.is_ascii_whitespace() && !b"&,;}]\"'#".contains(&b)
                })
            };
            (end > position).then_some((position, end))
        }
        None => None,
    }
}

fn skip_blanks(bytes: &[u8], from: usize) -> usize {
    scan_while(bytes, from, |b| b == b' ' || b == b'\t')
}

fn scan_while(bytes: &[u8], from: usize, keep: impl Fn(u8) -> bool) -> usize {
    let mut end = from;
    while end < bytes.len() && keep(bytes[end]) {
        end += 1;
    }
    end
}

/// Index of the quote that closes a string starting at `from`, skipping
/// backslash escapes; the end of the line or text if there is none.
fn closing_quote(bytes: &[u8], from: usize, quote: u8) -> usize {
    let mut index = from;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b'\n' | b'\r' => return index,
            byte if byte == quote => return index,
            _ => index += 1,
        }
    }
    bytes.len()
}

/// Replaces runs of key characters that look like API keys.
fn redact_key_runs(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut index = 0;

    while index < bytes.len() {
        if !is_word_byte(bytes[index]) {
            index += 1;
            continue;
        }
        let end = scan_while(bytes, index, is_word_byte);
        if looks_like_key(&text[index..end]) {
            out.push_str(&text[copied..index]);
            out.push_str(REDACTED);
            copied = end;
        }
        index = end;
    }
    out.push_str(&text[copied..]);
    out
}

fn looks_like_key(run: &str) -> bool {
    let has_digit = run.bytes().any(|b| b.is_ascii_digit());
    let prefixed = KEY_PREFIXES.iter().any(|prefix| {
        run.strip_prefix(prefix)
            .is_some_and(|tail| tail.len() >= MIN_PREFIXED_TAIL)
    });
    if prefixed && has_digit {
        return true;
    }
    let has_letter = run.bytes().any(|b| b.is_ascii_alphabetic());
    run.len() >= MIN_BARE_KEY_LEN && has_digit && has_letter
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI: &str = "sk-proj-Canary0123456789abcdefXYZ";
    const GOOGLE: &str = "AIzaSyCanary0123456789abcdefghijklm";
    const MISTRAL: &str = "Canary9mistral8key7without6prefixQ";

    fn assert_clean(input: &str, secrets: &[&str]) -> String {
        let output = redact(input);
        for secret in secrets {
            assert!(!output.contains(secret), "{secret} survived in {output}");
        }
        output
    }

    #[test]
    fn removes_header_values() {
        let input = format!(
            "Authorization: Bearer {OPENAI}\r\nx-api-key: short-secret\r\nX-Goog-Api-Key:{GOOGLE}\r\napi-key = azure123\r\n"
        );
        let output = assert_clean(&input, &[OPENAI, GOOGLE, "short-secret", "azure123"]);
        assert!(output.starts_with("Authorization: [REDACTED]"), "{output}");
    }

    #[test]
    fn removes_json_values() {
        let input = r#"{"authorization":"Bearer abc def","api_key": "k1", "apiKey":"k2","x-goog-api-key" : "k3","password":"p\"w"}"#;
        let output = assert_clean(input, &["abc def", "k1", "k2", "k3", "p\\\"w"]);
        assert!(output.contains(r#""api_key": "[REDACTED]""#), "{output}");
    }

    #[test]
    fn removes_query_key_parameters() {
        let input =
            format!("/v1beta/models/x:generateContent?alt=sse&key={GOOGLE}&b=1 key=notquery");
        let output = assert_clean(&input, &[GOOGLE]);
        assert!(output.contains("&b=1"), "{output}");
        assert!(output.contains(" key=notquery"), "{output}");
    }

    #[test]
    fn removes_bare_keys_anywhere() {
        let input = format!("text {OPENAI}, then {MISTRAL}; kp_0123456789abcdef0123 end");
        let output = assert_clean(&input, &[OPENAI, MISTRAL, "kp_0123456789abcdef0123"]);
        assert!(output.starts_with("text [REDACTED], then [REDACTED]; [REDACTED] end"));
    }

    #[test]
    fn keeps_ordinary_text() {
        let input =
            "The keyboard's api design: use a monkey-wrench; key points = 3, sk-learn is fine.";
        assert_eq!(redact(input), input);
    }

    #[test]
    fn handles_multibyte_text_around_secrets() {
        let input = format!("ключ → {OPENAI} ✓ authorization: Bearer ü{OPENAI}");
        assert_clean(&input, &[OPENAI]);
    }
}
