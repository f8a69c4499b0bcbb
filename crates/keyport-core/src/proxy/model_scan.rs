//! A strict, streaming reader of the top-level `model` fields of a JSON
//! request body, for the allow-list check.
//!
//! The provider parses the body with its own JSON parser, so the guard has
//! to read every model that any common parser could read:
//!
//! - keys and values are decoded with every JSON escape, so `"mod\u0065l"`
//!   is the key `model`;
//! - every top-level key that decodes to `model` counts, because parsers
//!   differ on which of two equal keys they keep (serde_json and Python keep
//!   the last, some streaming parsers the first);
//! - keys match regardless of ASCII case, because Go's `encoding/json`
//!   matches struct fields that way, so `"Model"` reaches a Go server's
//!   `model` field.
//!
//! Input that a strict RFC 8259 parser rejects makes the body unreadable:
//! invalid UTF-8, control characters in strings, a top-level value that is
//! not an object, or anything but whitespace after it. A lenient parser
//! might read a model from such input that this reader does not see. A
//! UTF-8 byte order mark before the object is skipped, as Python's `json`
//! does for bytes.
//!
//! Memory is bounded: one byte per nesting level up to [`MAX_DEPTH`], and
//! one model name of at most [`MAX_MODEL_LEN`] bytes.

use crate::requestlog::request::clean_model;

/// Deepest nesting followed. Deeper bodies are unreadable, which also
/// bounds the memory the scan needs.
pub(super) const MAX_DEPTH: usize = 128;

/// Maximum length of a model name read from a body. Longer values are not model names.
const MAX_MODEL_LEN: usize = 128;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Byte used in place of a decoded character outside ASCII. Neither `model`
/// nor a valid model name contains one, so the exact character never matters.
const NON_ASCII: u8 = 0xFF;

/// Reason the body's model cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unreadable {
    NotJson,
    NotObject,
    TooDeep,
    InvalidModel,
}

impl Unreadable {
    /// Completes the sentence "Keyport cannot check this request because …".
    pub(super) fn reason(self) -> &'static str {
        match self {
            Unreadable::NotJson => "the body is not valid JSON",
            Unreadable::NotObject => "the body is not a JSON object",
            Unreadable::TooDeep => "the JSON body nests deeper than 128 levels",
            Unreadable::InvalidModel => "a top-level \"model\" field is not a model name",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// The token expected next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The top-level value, after an optional byte order mark.
    Start,
    Value,
    /// A key or `}`, right after `{`.
    KeyOrEnd,
    /// A key, after `,` in an object.
    Key,
    Colon,
    CommaOrEnd,
    /// Only whitespace, after the top-level value.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Minus,
    Zero,
    Integer,
    Dot,
    Fraction,
    Exponent,
    ExponentSign,
    ExponentDigits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    Backslash,
    /// Inside `\uXXXX`: hex digits still expected and the value so far.
    Unicode {
        remaining: u8,
        value: u16,
    },
}

/// The string being read and what happens to its decoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringRole {
    /// A key of the top-level object, compared with `model`.
    TopKey,
    /// The value of a top-level `model` key.
    Model,
    /// A key of a nested object.
    NestedKey,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Between,
    String { role: StringRole, escape: Escape },
    Number(Number),
    Literal { word: &'static [u8], matched: u8 },
}

/// Reads the top-level `model` fields of a JSON body fed in chunks.
#[derive(Debug)]
pub(super) struct ModelScanner {
    expect: Expect,
    lex: Lex,
    stack: Vec<Container>,
    /// Decoded bytes of the current top-level key or model value.
    text: Vec<u8>,
    text_too_long: bool,
    /// Set after a top-level key that decodes to `model`, until its value starts.
    model_value_next: bool,
    /// Models read since the last [`ModelScanner::take_models`].
    models: Vec<String>,
    /// Start of a UTF-8 sequence that the previous chunk cut off.
    utf8_pending: Vec<u8>,
    /// First bytes of the body while they may still be a byte order mark.
    head: Vec<u8>,
    bom_checked: bool,
    /// Set right after `[`, where `]` may close an empty array.
    array_just_opened: bool,
    error: Option<Unreadable>,
}

impl Default for ModelScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ModelScanner {
    pub(super) fn new() -> Self {
        Self {
            expect: Expect::Start,
            lex: Lex::Between,
            stack: Vec::new(),
            text: Vec::new(),
            text_too_long: false,
            model_value_next: false,
            models: Vec::new(),
            utf8_pending: Vec::new(),
            head: Vec::new(),
            bom_checked: false,
            array_just_opened: false,
            error: None,
        }
    }

    /// Feeds the next bytes of the body. After an error, every later call
    /// returns the same error.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Result<(), Unreadable> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let result = self.push_checked(chunk);
        if let Err(error) = result {
            self.error = Some(error);
        }
        result
    }

    /// Checks that the body ended after one complete JSON object.
    pub(super) fn finish(&mut self) -> Result<(), Unreadable> {
        if let Some(error) = self.error {
            return Err(error);
        }
        // A number is the only token that ends at the end of the input,
        // and a top-level number is not an object.
        let complete = self.expect == Expect::End
            && self.lex == Lex::Between
            && self.utf8_pending.is_empty()
            && self.head.is_empty();
        if complete {
            return Ok(());
        }
        let nothing_read = self.expect == Expect::Start && self.lex == Lex::Between;
        let error = if nothing_read && self.head.is_empty() {
            Unreadable::NotObject
        } else {
            Unreadable::NotJson
        };
        self.error = Some(error);
        Err(error)
    }

    /// Returns the model names read since the last call.
    pub(super) fn take_models(&mut self) -> Vec<String> {
        std::mem::take(&mut self.models)
    }

    fn push_checked(&mut self, mut chunk: &[u8]) -> Result<(), Unreadable> {
        if !self.bom_checked {
            // The mark may arrive split across chunks, so up to three bytes
            // are held back until it is clear whether they are one.
            let taken = chunk.len().min(BOM.len() - self.head.len());
            self.head.extend_from_slice(&chunk[..taken]);
            chunk = &chunk[taken..];
            if self.head.len() < BOM.len() && BOM.starts_with(&self.head) {
                return Ok(());
            }
            self.bom_checked = true;
            let head = std::mem::take(&mut self.head);
            if head != BOM {
                self.check_utf8(&head)?;
                self.scan(&head)?;
            }
        }
        self.check_utf8(chunk)?;
        self.scan(chunk)
    }

    /// Validates UTF-8 across chunk boundaries. Outside strings JSON is
    /// ASCII, so checking the whole body covers every string.
    fn check_utf8(&mut self, mut chunk: &[u8]) -> Result<(), Unreadable> {
        if let Some(&lead) = self.utf8_pending.first() {
            let width = utf8_width(lead);
            let take = width
                .saturating_sub(self.utf8_pending.len())
                .min(chunk.len());
            self.utf8_pending.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.utf8_pending.len() < width {
                return Ok(());
            }
            std::str::from_utf8(&self.utf8_pending).map_err(|_| Unreadable::NotJson)?;
            self.utf8_pending.clear();
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(error) if error.error_len().is_none() => {
                self.utf8_pending
                    .extend_from_slice(&chunk[error.valid_up_to()..]);
                Ok(())
            }
            Err(_) => Err(Unreadable::NotJson),
        }
    }

    fn scan(&mut self, input: &[u8]) -> Result<(), Unreadable> {
        let mut index = 0;
        while index < input.len() {
            // Skip ordinary string contents in bulk: nearly all bytes of a
            // long prompt are string contents.
            if let Lex::String {
                role: StringRole::Other,
                escape: Escape::None,
            } = self.lex
            {
                let rest = &input[index..];
                match rest
                    .iter()
                    .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
                {
                    Some(offset) => index += offset,
                    None => return Ok(()),
                }
            }
            self.step(input[index])?;
            index += 1;
        }
        Ok(())
    }

    fn step(&mut self, byte: u8) -> Result<(), Unreadable> {
        match self.lex {
            Lex::String { role, escape } => self.string_byte(role, escape, byte),
            Lex::Number(state) => match next_number_state(state, byte) {
                Some(next) => {
                    self.lex = Lex::Number(next);
                    Ok(())
                }
                None if number_can_end(state) => {
                    self.lex = Lex::Between;
                    self.value_done();
                    self.between(byte)
                }
                None => Err(Unreadable::NotJson),
            },
            Lex::Literal { word, matched } => {
                if word.get(usize::from(matched)) != Some(&byte) {
                    return Err(Unreadable::NotJson);
                }
                let matched = matched + 1;
                if usize::from(matched) == word.len() {
                    self.lex = Lex::Between;
                    self.value_done();
                } else {
                    self.lex = Lex::Literal { word, matched };
                }
                Ok(())
            }
            Lex::Between => self.between(byte),
        }
    }

    fn between(&mut self, byte: u8) -> Result<(), Unreadable> {
        if matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            return Ok(());
        }
        match self.expect {
            Expect::Start | Expect::Value => self.begin_value(byte),
            Expect::KeyOrEnd | Expect::Key => match byte {
                b'"' => {
                    let role = if self.stack.len() == 1 {
                        self.text.clear();
                        self.text_too_long = false;
                        StringRole::TopKey
                    } else {
                        StringRole::NestedKey
                    };
                    self.lex = Lex::String {
                        role,
                        escape: Escape::None,
                    };
                    Ok(())
                }
                b'}' if self.expect == Expect::KeyOrEnd => self.close(Container::Object),
                _ => Err(Unreadable::NotJson),
            },
            Expect::Colon if byte == b':' => {
                self.expect = Expect::Value;
                Ok(())
            }
            Expect::CommaOrEnd => match (byte, self.stack.last()) {
                (b',', Some(Container::Object)) => {
                    self.expect = Expect::Key;
                    Ok(())
                }
                (b',', Some(Container::Array)) => {
                    self.expect = Expect::Value;
                    Ok(())
                }
                (b'}', Some(Container::Object)) => self.close(Container::Object),
                (b']', Some(Container::Array)) => self.close(Container::Array),
                _ => Err(Unreadable::NotJson),
            },
            // Anything after the object, even a second object, is read by
            // some parsers and ignored by others.
            Expect::Colon | Expect::End => Err(Unreadable::NotJson),
        }
    }

    fn begin_value(&mut self, byte: u8) -> Result<(), Unreadable> {
        let is_model = std::mem::take(&mut self.model_value_next);
        let array_just_opened = std::mem::take(&mut self.array_just_opened);
        if self.expect == Expect::Start && byte != b'{' {
            return Err(Unreadable::NotObject);
        }
        if is_model && byte != b'"' {
            return Err(Unreadable::InvalidModel);
        }
        match byte {
            b'{' | b'[' => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(Unreadable::TooDeep);
                }
                if byte == b'{' {
                    self.stack.push(Container::Object);
                    self.expect = Expect::KeyOrEnd;
                } else {
                    self.stack.push(Container::Array);
                    self.expect = Expect::Value;
                    self.array_just_opened = true;
                }
                Ok(())
            }
            b'"' => {
                let role = if is_model {
                    self.text.clear();
                    self.text_too_long = false;
                    StringRole::Model
                } else {
                    StringRole::Other
                };
                self.lex = Lex::String {
                    role,
                    escape: Escape::None,
                };
                Ok(())
            }
            b'-' => {
                self.lex = Lex::Number(Number::Minus);
                Ok(())
            }
            b'0' => {
                self.lex = Lex::Number(Number::Zero);
                Ok(())
            }
            b'1'..=b'9' => {
                self.lex = Lex::Number(Number::Integer);
                Ok(())
            }
            b't' | b'f' | b'n' => {
                let word: &'static [u8] = match byte {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                self.lex = Lex::Literal { word, matched: 1 };
                Ok(())
            }
            b']' if array_just_opened => self.close(Container::Array),
            _ => Err(Unreadable::NotJson),
        }
    }

    fn close(&mut self, container: Container) -> Result<(), Unreadable> {
        if self.stack.pop() != Some(container) {
            return Err(Unreadable::NotJson);
        }
        self.value_done();
        Ok(())
    }

    /// Moves on after a complete value at the current depth.
    fn value_done(&mut self) {
        self.expect = if self.stack.is_empty() {
            Expect::End
        } else {
            Expect::CommaOrEnd
        };
    }

    fn string_byte(
        &mut self,
        role: StringRole,
        escape: Escape,
        byte: u8,
    ) -> Result<(), Unreadable> {
        let next = match escape {
            Escape::None => match byte {
                b'"' => return self.string_done(role),
                b'\\' => Escape::Backslash,
                0x00..=0x1F => return Err(Unreadable::NotJson),
                _ => {
                    self.decoded(role, if byte < 0x80 { byte } else { NON_ASCII });
                    Escape::None
                }
            },
            Escape::Backslash => {
                let decoded = match byte {
                    b'"' | b'\\' | b'/' => byte,
                    b'b' => 0x08,
                    b'f' => 0x0C,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'u' => {
                        self.lex = Lex::String {
                            role,
                            escape: Escape::Unicode {
                                remaining: 4,
                                value: 0,
                            },
                        };
                        return Ok(());
                    }
                    _ => return Err(Unreadable::NotJson),
                };
                self.decoded(role, decoded);
                Escape::None
            }
            Escape::Unicode { remaining, value } => {
                let digit = char::from(byte).to_digit(16).ok_or(Unreadable::NotJson)?;
                // Four hex digits fit in u16, so the shift cannot overflow.
                let value = (value << 4) | digit as u16;
                if remaining > 1 {
                    Escape::Unicode {
                        remaining: remaining - 1,
                        value,
                    }
                } else {
                    // Surrogates and other code points above ASCII are
                    // never part of `model` or a model name.
                    let decoded = u8::try_from(value).ok().filter(u8::is_ascii);
                    self.decoded(role, decoded.unwrap_or(NON_ASCII));
                    Escape::None
                }
            }
        };
        self.lex = Lex::String { role, escape: next };
        Ok(())
    }

    fn decoded(&mut self, role: StringRole, byte: u8) {
        let limit = match role {
            StringRole::NestedKey | StringRole::Other => return,
            StringRole::TopKey => "model".len(),
            StringRole::Model => MAX_MODEL_LEN,
        };
        if self.text.len() < limit {
            self.text.push(byte);
        } else {
            self.text_too_long = true;
        }
    }

    fn string_done(&mut self, role: StringRole) -> Result<(), Unreadable> {
        self.lex = Lex::Between;
        match role {
            StringRole::TopKey => {
                self.model_value_next =
                    !self.text_too_long && self.text.eq_ignore_ascii_case(b"model");
                self.expect = Expect::Colon;
                return Ok(());
            }
            StringRole::NestedKey => {
                self.expect = Expect::Colon;
                return Ok(());
            }
            StringRole::Model => {
                let name = std::str::from_utf8(&self.text)
                    .ok()
                    .filter(|_| !self.text_too_long)
                    .and_then(clean_model)
                    .ok_or(Unreadable::InvalidModel)?;
                self.models.push(name);
            }
            StringRole::Other => {}
        }
        self.value_done();
        Ok(())
    }
}

/// Length of the UTF-8 sequence that starts with `lead`, for a lead byte
/// that `str::from_utf8` accepted as the start of an incomplete sequence.
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// Advances the RFC 8259 number grammar by one byte, or returns None when
/// `byte` cannot continue the number.
fn next_number_state(state: Number, byte: u8) -> Option<Number> {
    let digit = byte.is_ascii_digit();
    match (state, byte) {
        (Number::Minus, b'0') => Some(Number::Zero),
        (Number::Minus, _) if digit => Some(Number::Integer),
        (Number::Integer, _) if digit => Some(Number::Integer),
        (Number::Zero | Number::Integer, b'.') => Some(Number::Dot),
        (Number::Dot | Number::Fraction, _) if digit => Some(Number::Fraction),
        (Number::Zero | Number::Integer | Number::Fraction, b'e' | b'E') => Some(Number::Exponent),
        (Number::Exponent, b'+' | b'-') => Some(Number::ExponentSign),
        (Number::Exponent | Number::ExponentSign | Number::ExponentDigits, _) if digit => {
            Some(Number::ExponentDigits)
        }
        _ => None,
    }
}

fn number_can_end(state: Number) -> bool {
    matches!(
        state,
        Number::Zero | Number::Integer | Number::Fraction | Number::ExponentDigits
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(body: &[u8]) -> Result<Vec<String>, Unreadable> {
        let mut scanner = ModelScanner::new();
        scanner.push(body)?;
        scanner.finish()?;
        Ok(scanner.take_models())
    }

    fn scan_bytewise(body: &[u8]) -> Result<Vec<String>, Unreadable> {
        let mut scanner = ModelScanner::new();
        for byte in body {
            scanner.push(std::slice::from_ref(byte))?;
        }
        scanner.finish()?;
        Ok(scanner.take_models())
    }

    fn models(names: &[&str]) -> Result<Vec<String>, Unreadable> {
        Ok(names.iter().map(|name| name.to_string()).collect())
    }

    #[test]
    fn escaped_keys_and_values_are_decoded() {
        let cases: &[(&[u8], &[&str])] = &[
            (br#"{"model":"gpt-4o"}"#, &["gpt-4o"]),
            (br#"{"mod\u0065l":"gpt-4o"}"#, &["gpt-4o"]),
            (br#"{"\u006dodel":"gpt-4o"}"#, &["gpt-4o"]),
            (
                br#"{"\u006D\u006F\u0064\u0065\u006C":"gpt-4o"}"#,
                &["gpt-4o"],
            ),
            (br#"{"model":"gpt\u002d4o\/x"}"#, &["gpt-4o/x"]),
            (br#"{"Model":"gpt-4o"}"#, &["gpt-4o"]),
        ];
        for (body, expected) in cases {
            let text = String::from_utf8_lossy(body);
            assert_eq!(scan(body), models(expected), "{text}");
            assert_eq!(scan_bytewise(body), models(expected), "bytewise {text}");
        }
    }

    #[test]
    fn every_top_level_model_is_read() {
        let body =
            br#"{"model":"a","messages":[{"model":"nested"}],"x":{"model":"deep"},"model":"b"}"#;
        assert_eq!(scan(body), models(&["a", "b"]));
        assert_eq!(
            scan(br#"{"modell":"a","mode":"b","text":"\"model\":\"c\""}"#),
            models(&[])
        );
    }

    #[test]
    fn model_values_that_are_not_names_are_rejected() {
        for body in [
            &br#"{"model":null}"#[..],
            br#"{"model":["gpt-4o"]}"#,
            br#"{"model":"gpt 4o"}"#,
            br#"{"model":"gpt-4\u00f6"}"#,
            br#"{"model":""}"#,
        ] {
            let text = String::from_utf8_lossy(body);
            assert_eq!(scan(body), Err(Unreadable::InvalidModel), "{text}");
        }
        let long = format!(r#"{{"model":"{}"}}"#, "a".repeat(MAX_MODEL_LEN + 1));
        assert_eq!(scan(long.as_bytes()), Err(Unreadable::InvalidModel));
    }

    #[test]
    fn strict_grammar_is_enforced() {
        let valid: &[&[u8]] = &[
            br#"{}"#,
            br#" { "a" : [ ] , "b":[1,-0.5e+3,true,false,null,{}], "c":"\"\\\b\f\n\r\t" } "#,
            "{\"a\":\"caf\u{e9} \u{1f600}\"}".as_bytes(),
        ];
        for body in valid {
            assert!(scan(body).is_ok(), "{}", String::from_utf8_lossy(body));
            assert!(
                scan_bytewise(body).is_ok(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let invalid: &[&[u8]] = &[
            br#"{"model":"gpt-4o-mini",}"#,
            br#"{"a":[1,]}"#,
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":NaN}"#,
            br#"{"a":tru}"#,
            br#"{'model':'gpt-4o'}"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12"}"#,
            b"{\"a\":\"line\nbreak\"}",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":\"\xc1\xad\"}",
            br#"{"model":"gpt-4o-mini"}{"model":"gpt-4o"}"#,
            b"{\"model\":\"gpt-4o-mini\"}\r\n--XYZ\r\n",
            br#"{"model":"gpt-4o-mini""#,
            b"{\0\"\0",
        ];
        for body in invalid {
            assert_eq!(
                scan(body),
                Err(Unreadable::NotJson),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for body in [&b"[{\"model\":\"a\"}]"[..], b"\"model\"", b"", b"  "] {
            assert_eq!(scan(body), Err(Unreadable::NotObject));
        }
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let body = b"\xEF\xBB\xBF{\"model\":\"gpt-4o\"}";
        assert_eq!(scan(body), models(&["gpt-4o"]));
        assert_eq!(scan_bytewise(body), models(&["gpt-4o"]));
        assert_eq!(scan(b"\xEF\xBB"), Err(Unreadable::NotJson));
    }

    #[test]
    fn nesting_is_limited() {
        let deep = format!(
            r#"{{"a":{}{}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(scan(deep.as_bytes()), Err(Unreadable::TooDeep));
        let depth_ok = MAX_DEPTH - 1;
        let fits = format!(
            r#"{{"a":{}{}}}"#,
            "[".repeat(depth_ok),
            "]".repeat(depth_ok)
        );
        assert!(scan(fits.as_bytes()).is_ok());
    }

    #[test]
    fn errors_are_sticky() {
        let mut scanner = ModelScanner::new();
        assert_eq!(scanner.push(b"{\"a\":x"), Err(Unreadable::NotJson));
        assert_eq!(scanner.push(b"}"), Err(Unreadable::NotJson));
        assert_eq!(scanner.finish(), Err(Unreadable::NotJson));
    }
}
