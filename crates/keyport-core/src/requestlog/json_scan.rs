//! An incremental JSON scanner that copies out the values found at a few
//! fixed key paths, such as `usage` or `message.usage`, without holding the
//! document in memory.
//!
//! Response bodies can be many megabytes (long outputs, base64 images), but
//! the usage numbers sit in one small object. The scanner tracks only the
//! nesting of objects and arrays and the current key at each level, so its
//! memory is bounded by [`MAX_TRACKED_DEPTH`] keys of at most [`MAX_KEY_LEN`]
//! bytes plus one capture of at most [`MAX_CAPTURE_LEN`] bytes, whatever the
//! input. It never rejects input: malformed JSON simply yields no captures,
//! or captures that then fail to parse with `serde_json`.
//!
//! Values that cannot contain a target path (a `choices` array next to
//! `usage`, say) are skipped without tracking their keys. The scanner only
//! counts their brackets and jumps over their strings with `memchr`. String
//! contents and scalars elsewhere are also consumed in runs, not byte by
//! byte, so a body costs about one state step per JSON token rather than
//! per byte.
//!
//! A key path lists object keys from the root. Arrays are transparent, so the
//! path `["usageMetadata"]` matches both `{"usageMetadata":…}` and every
//! element of `[{"usageMetadata":…}, …]`, and `["candidates",
//! "finishReason"]` matches `{"candidates":[{"finishReason":…}]}`.

/// Maximum length of a key compared against the paths. Longer keys never
/// match.
const MAX_KEY_LEN: usize = 64;

/// Deepest nesting followed. Deeper input stops the scan, because no usage
/// object is nested that deep and the limit bounds memory. Skipped values
/// keep only a counter, so nesting inside them does not count.
const MAX_TRACKED_DEPTH: usize = 128;

/// Largest value copied out. Usage objects are a few hundred bytes.
pub(crate) const MAX_CAPTURE_LEN: usize = 64 * 1024;

/// Object keys from the root to a value of interest.
pub(crate) type KeyPath = &'static [&'static str];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Key,
    Colon,
    Value,
    CommaOrEnd,
}

#[derive(Debug)]
struct Frame {
    container: Container,
    expect: Expect,
    /// The key whose value is being read, for objects.
    key: Vec<u8>,
    key_too_long: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Between,
    String {
        key: bool,
        escaped: bool,
    },
    Scalar,
    /// Inside a container that cannot hold a target. `depth` counts its
    /// open brackets.
    Skip {
        depth: usize,
        in_string: bool,
        escaped: bool,
    },
}

#[derive(Debug)]
struct ActiveCapture {
    target: usize,
    /// Stack depth at which the captured value started.
    depth: usize,
    bytes: Vec<u8>,
    too_long: bool,
}

/// Scans one or more concatenated JSON documents and keeps, for each target
/// path, the raw bytes of the last value seen at that path.
#[derive(Debug)]
pub(crate) struct JsonScanner {
    targets: &'static [KeyPath],
    /// Frames are reused across pushes and pops; `depth` is the live length.
    frames: Vec<Frame>,
    depth: usize,
    lex: Lex,
    capture: Option<ActiveCapture>,
    results: Vec<Option<Vec<u8>>>,
    /// Number of top-level values that ended.
    completed_values: usize,
    /// Set when the nesting limit was hit; the rest of the input is ignored.
    stopped: bool,
}

impl JsonScanner {
    pub(crate) fn new(targets: &'static [KeyPath]) -> Self {
        Self {
            targets,
            frames: Vec::new(),
            depth: 0,
            lex: Lex::Between,
            capture: None,
            results: vec![None; targets.len()],
            completed_values: 0,
            stopped: false,
        }
    }

    /// Forgets all state and results, keeping allocations.
    pub(crate) fn reset(&mut self) {
        self.depth = 0;
        self.lex = Lex::Between;
        self.capture = None;
        for result in &mut self.results {
            *result = None;
        }
        self.completed_values = 0;
        self.stopped = false;
    }

    /// Raw bytes of the last complete value seen at `targets[index]`.
    pub(crate) fn result(&self, index: usize) -> Option<&[u8]> {
        self.results.get(index)?.as_deref()
    }

    /// Parses the last value seen at `targets[index]`.
    pub(crate) fn value(&self, index: usize) -> Option<serde_json::Value> {
        serde_json::from_slice(self.result(index)?).ok()
    }

    /// Returns the string at `targets[index]`, or None when the value there
    /// is not a JSON string. A string without escapes is copied as it is,
    /// without going through `serde_json`.
    pub(crate) fn string(&self, index: usize) -> Option<String> {
        let raw = self.result(index)?;
        let inner = plain_string(raw)?;
        match inner {
            Some(inner) => std::str::from_utf8(inner).ok().map(str::to_string),
            None => serde_json::from_slice(raw).ok(),
        }
    }

    /// Returns whether the value at `targets[index]` is the JSON string
    /// `text` written without escapes.
    pub(crate) fn result_is_string(&self, index: usize, text: &str) -> bool {
        self.result(index)
            .and_then(plain_string)
            .flatten()
            .is_some_and(|inner| inner == text.as_bytes())
    }

    /// Returns whether at least one top-level value ended and no value is open.
    pub(crate) fn is_complete(&self) -> bool {
        self.completed_values > 0 && self.depth == 0 && self.lex == Lex::Between
    }

    /// Feeds the next bytes of the document.
    pub(crate) fn push(&mut self, input: &[u8]) {
        let mut index = 0;
        while index < input.len() && !self.stopped {
            let rest = &input[index..];
            match self.lex {
                Lex::String {
                    key,
                    escaped: false,
                } => {
                    let run = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                    self.string_bytes(key, &rest[..run]);
                    index += run;
                }
                Lex::Scalar => {
                    let run = rest
                        .iter()
                        .position(|&byte| is_delimiter(byte))
                        .unwrap_or(rest.len());
                    self.record_slice(&rest[..run]);
                    index += run;
                }
                Lex::Skip { .. } => {
                    index += self.skip(rest);
                    continue;
                }
                Lex::Between | Lex::String { escaped: true, .. } => {}
            }
            // The byte that ends a run, or any byte between tokens, goes
            // through the state machine.
            if let Some(&byte) = input.get(index) {
                self.step(byte);
                index += 1;
            }
        }
    }

    /// Consumes bytes of a skipped container and returns how many. Ends the
    /// skip, and the value, at the bracket that closes the container.
    fn skip(&mut self, input: &[u8]) -> usize {
        let Lex::Skip {
            mut depth,
            mut in_string,
            mut escaped,
        } = self.lex
        else {
            return 0;
        };
        let mut index = 0;
        while index < input.len() {
            if escaped {
                escaped = false;
                index += 1;
                continue;
            }
            let rest = &input[index..];
            if in_string {
                let Some(offset) = memchr::memchr2(b'"', b'\\', rest) else {
                    index = input.len();
                    break;
                };
                index += offset + 1;
                match rest[offset] {
                    b'"' => in_string = false,
                    _ => escaped = true,
                }
                continue;
            }
            let Some(offset) = rest.iter().position(|&byte| STRUCTURAL[usize::from(byte)]) else {
                index = input.len();
                break;
            };
            index += offset + 1;
            match rest[offset] {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                _ => {
                    depth -= 1;
                    if depth == 0 {
                        self.lex = Lex::Between;
                        self.value_done();
                        return index;
                    }
                }
            }
        }
        self.lex = Lex::Skip {
            depth,
            in_string,
            escaped,
        };
        index
    }

    fn step(&mut self, byte: u8) {
        match self.lex {
            Lex::String { key, escaped: true } => {
                self.string_byte(key, byte);
                self.lex = Lex::String {
                    key,
                    escaped: false,
                };
            }
            Lex::String {
                key,
                escaped: false,
            } => match byte {
                b'\\' => {
                    self.string_byte(key, byte);
                    self.lex = Lex::String { key, escaped: true };
                }
                b'"' => {
                    self.lex = Lex::Between;
                    self.record(byte);
                    if key {
                        if let Some(frame) = self.top_mut() {
                            frame.expect = Expect::Colon;
                        }
                    } else {
                        self.value_done();
                    }
                }
                _ => self.string_byte(key, byte),
            },
            Lex::Scalar => {
                if is_delimiter(byte) {
                    self.lex = Lex::Between;
                    self.value_done();
                    self.step_between(byte);
                } else {
                    self.record(byte);
                }
            }
            Lex::Between => self.step_between(byte),
            // `push` hands skipped bytes to `skip`, never to `step`.
            Lex::Skip { .. } => {}
        }
    }

    fn step_between(&mut self, byte: u8) {
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => self.record(byte),
            b'{' | b'[' => {
                self.begin_value();
                if self.capture.is_none() && !self.may_hold_target() {
                    self.lex = Lex::Skip {
                        depth: 1,
                        in_string: false,
                        escaped: false,
                    };
                    return;
                }
                self.record(byte);
                let container = if byte == b'{' {
                    Container::Object
                } else {
                    Container::Array
                };
                self.push_frame(container);
            }
            b'"' => {
                let expecting_key = self.top().is_some_and(|frame| {
                    frame.container == Container::Object && frame.expect == Expect::Key
                });
                if expecting_key {
                    self.record(byte);
                    if let Some(frame) = self.top_mut() {
                        frame.key.clear();
                        frame.key_too_long = false;
                    }
                    self.lex = Lex::String {
                        key: true,
                        escaped: false,
                    };
                } else {
                    self.begin_value();
                    self.record(byte);
                    self.lex = Lex::String {
                        key: false,
                        escaped: false,
                    };
                }
            }
            b':' => {
                self.record(byte);
                if let Some(frame) = self.top_mut() {
                    if frame.expect == Expect::Colon {
                        frame.expect = Expect::Value;
                    }
                }
            }
            b',' => {
                self.record(byte);
                if let Some(frame) = self.top_mut() {
                    frame.expect = match frame.container {
                        Container::Object => Expect::Key,
                        Container::Array => Expect::Value,
                    };
                }
            }
            b'}' | b']' => {
                if self.depth == 0 {
                    return;
                }
                self.record(byte);
                self.depth -= 1;
                self.value_done();
            }
            _ => {
                self.begin_value();
                self.record(byte);
                self.lex = Lex::Scalar;
            }
        }
    }

    fn top(&self) -> Option<&Frame> {
        self.depth.checked_sub(1).and_then(|i| self.frames.get(i))
    }

    fn top_mut(&mut self) -> Option<&mut Frame> {
        let index = self.depth.checked_sub(1)?;
        self.frames.get_mut(index)
    }

    fn push_frame(&mut self, container: Container) {
        if self.depth >= MAX_TRACKED_DEPTH {
            self.stopped = true;
            self.capture = None;
            return;
        }
        let expect = match container {
            Container::Object => Expect::Key,
            Container::Array => Expect::Value,
        };
        if let Some(frame) = self.frames.get_mut(self.depth) {
            frame.container = container;
            frame.expect = expect;
            frame.key.clear();
            frame.key_too_long = false;
        } else {
            self.frames.push(Frame {
                container,
                expect,
                key: Vec::new(),
                key_too_long: false,
            });
        }
        self.depth += 1;
    }

    fn string_byte(&mut self, key: bool, byte: u8) {
        self.string_bytes(key, std::slice::from_ref(&byte));
    }

    fn string_bytes(&mut self, key: bool, bytes: &[u8]) {
        self.record_slice(bytes);
        if key {
            if let Some(frame) = self.top_mut() {
                let room = MAX_KEY_LEN.saturating_sub(frame.key.len());
                frame.key.extend_from_slice(&bytes[..room.min(bytes.len())]);
                if bytes.len() > room {
                    frame.key_too_long = true;
                }
            }
        }
    }

    fn record(&mut self, byte: u8) {
        self.record_slice(std::slice::from_ref(&byte));
    }

    fn record_slice(&mut self, bytes: &[u8]) {
        if let Some(capture) = &mut self.capture {
            let room = MAX_CAPTURE_LEN.saturating_sub(capture.bytes.len());
            capture
                .bytes
                .extend_from_slice(&bytes[..room.min(bytes.len())]);
            if bytes.len() > room {
                capture.too_long = true;
            }
        }
    }

    /// Starts a capture if a value starting here sits at a target path.
    fn begin_value(&mut self) {
        if self.capture.is_some() {
            return;
        }
        if let Some(target) = self.matching_target() {
            self.capture = Some(ActiveCapture {
                target,
                depth: self.depth,
                bytes: Vec::new(),
                too_long: false,
            });
        }
    }

    /// Returns whether a container starting here could contain a target
    /// path. The enclosing frames do not change until the container ends,
    /// so when their keys lead to no target, nothing inside can match.
    fn may_hold_target(&self) -> bool {
        let Some(frames) = self.frames.get(..self.depth) else {
            return true;
        };
        let keys = frames
            .iter()
            .filter(|frame| frame.container == Container::Object);
        self.targets.iter().any(|path| {
            let mut prefix = path.iter();
            keys.clone().all(|frame| {
                prefix.next().is_some_and(|key| {
                    !frame.key_too_long
                        && frame.expect == Expect::Value
                        && frame.key == key.as_bytes()
                })
            })
        })
    }

    fn matching_target(&self) -> Option<usize> {
        let frames = self.frames.get(..self.depth)?;
        let object_frames = || {
            frames
                .iter()
                .filter(|frame| frame.container == Container::Object)
        };
        let key_count = object_frames().count();
        self.targets.iter().position(|path| {
            path.len() == key_count
                && object_frames().zip(path.iter()).all(|(frame, key)| {
                    !frame.key_too_long
                        && frame.expect == Expect::Value
                        && frame.key == key.as_bytes()
                })
        })
    }

    /// Called when a value ends at the current depth.
    fn value_done(&mut self) {
        let finished = self
            .capture
            .as_ref()
            .is_some_and(|capture| capture.depth == self.depth);
        if finished {
            if let Some(capture) = self.capture.take() {
                if !capture.too_long {
                    if let Some(slot) = self.results.get_mut(capture.target) {
                        *slot = Some(capture.bytes);
                    }
                }
            }
        }
        match self.top_mut() {
            Some(frame) => frame.expect = Expect::CommaOrEnd,
            None => self.completed_values += 1,
        }
    }
}

/// Returns None when `raw` is not a JSON string, Some(None) for a string
/// that needs `serde_json` (escapes or control bytes), and otherwise the
/// bytes between its quotes.
fn plain_string(raw: &[u8]) -> Option<Option<&[u8]>> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let plain = memchr::memchr(b'\\', inner).is_none() && inner.iter().all(|&byte| byte >= 0x20);
    Some(plain.then_some(inner))
}

/// Bytes that open or close a string or container, the only ones that
/// matter inside a skipped value.
const STRUCTURAL: [bool; 256] = {
    let mut table = [false; 256];
    table[b'"' as usize] = true;
    table[b'{' as usize] = true;
    table[b'[' as usize] = true;
    table[b'}' as usize] = true;
    table[b']' as usize] = true;
    table
};

fn is_delimiter(byte: u8) -> bool {
    matches!(
        byte,
        b' ' | b'\t' | b'\n' | b'\r' | b',' | b'}' | b']' | b':' | b'"' | b'{' | b'['
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGETS: &[KeyPath] = &[&["usage"], &["message", "usage"], &["model"]];

    fn scan(input: &[u8]) -> JsonScanner {
        let mut scanner = JsonScanner::new(TARGETS);
        scanner.push(input);
        scanner
    }

    #[test]
    fn captures_top_level_and_nested_paths() {
        let scanner = scan(
            br#"{"id":"x","message":{"usage":{"a":1},"model":"m"},"usage":{"b":[1,2]},"model":"top"}"#,
        );
        assert_eq!(scanner.result(0), Some(&br#"{"b":[1,2]}"#[..]));
        assert_eq!(scanner.result(1), Some(&br#"{"a":1}"#[..]));
        assert_eq!(scanner.result(2), Some(&br#""top""#[..]));
        assert!(scanner.is_complete());
    }

    #[test]
    fn ignores_keys_inside_strings_and_deeper_objects() {
        let scanner = scan(br#"{"text":"\"usage\": {1}","choices":[{"usage":5}],"x":{"usage":7}}"#);
        assert_eq!(scanner.result(0), None);
    }

    #[test]
    fn arrays_are_transparent_and_last_value_wins() {
        let scanner = scan(br#"[{"usage":1},{"usage":2}, {"usage" : 3 }]"#);
        assert_eq!(scanner.result(0), Some(&b"3"[..]));
        assert!(scanner.is_complete());
    }

    #[test]
    fn scalar_values_end_at_delimiters() {
        let scanner = scan(br#"{"usage":null,"model":true}"#);
        assert_eq!(scanner.result(0), Some(&b"null"[..]));
        assert_eq!(scanner.value(2), Some(serde_json::Value::Bool(true)));
    }

    #[test]
    fn truncated_document_is_not_complete() {
        let scanner = scan(br#"{"usage":{"a":1},"model":"gp"#);
        assert_eq!(scanner.result(0), Some(&br#"{"a":1}"#[..]));
        assert_eq!(scanner.result(2), None);
        assert!(!scanner.is_complete());
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        let scanner = scan(br#"{"model":"a\"b\\","usage":{"k":"\"}"}}"#);
        assert_eq!(scanner.value(2), Some(serde_json::json!("a\"b\\")));
        assert_eq!(scanner.value(0), Some(serde_json::json!({"k":"\"}"})));
    }

    #[test]
    fn oversized_capture_is_dropped() {
        let big = "x".repeat(MAX_CAPTURE_LEN + 10);
        let text = format!(r#"{{"usage":"{big}","model":"m"}}"#);
        let scanner = scan(text.as_bytes());
        assert_eq!(scanner.result(0), None);
        assert_eq!(scanner.value(2), Some(serde_json::json!("m")));
    }

    #[test]
    fn deep_nesting_stops_the_scan() {
        let mut text = "[".repeat(MAX_TRACKED_DEPTH + 5);
        text.push_str(r#"{"usage":1}"#);
        let scanner = scan(text.as_bytes());
        assert_eq!(scanner.result(0), None);
    }

    #[test]
    fn skipped_values_split_anywhere_match_whole() {
        let input = br#"{"choices":[{"text":"}]\"{[","n":[1,[2,{"usage":9}]]},"x\\"],"usage":{"a":1},"model":"m"}"#;
        let whole = scan(input);
        assert_eq!(whole.result(0), Some(&br#"{"a":1}"#[..]));
        assert_eq!(whole.value(2), Some(serde_json::json!("m")));
        assert!(whole.is_complete());
        for cut in 0..=input.len() {
            let mut split = JsonScanner::new(TARGETS);
            split.push(&input[..cut]);
            split.push(&input[cut..]);
            for index in 0..TARGETS.len() {
                assert_eq!(whole.result(index), split.result(index), "cut {cut}");
            }
            assert!(split.is_complete(), "cut {cut}");
        }
    }

    #[test]
    fn skipped_value_is_not_complete_until_closed() {
        let scanner = scan(br#"{"choices":[{"text":"a"}"#);
        assert!(!scanner.is_complete());
    }

    #[test]
    fn deep_nesting_inside_skipped_value_is_only_counted() {
        let depth = MAX_TRACKED_DEPTH + 5;
        let text = format!(
            r#"{{"choices":{}{},"usage":2}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let scanner = scan(text.as_bytes());
        assert_eq!(scanner.result(0), Some(&b"2"[..]));
        assert!(scanner.is_complete());
    }

    #[test]
    fn string_values_match_serde() {
        let cases: [&[u8]; 6] = [
            br#"{"model":"gpt-4o"}"#,
            br#"{"model":"a\"b\u00e9"}"#,
            br#"{"model":""}"#,
            br#"{"model":7}"#,
            br#"{"model":"tab	here"}"#,
            b"{\"model\":\"raw\tcontrol\"}",
        ];
        for case in cases {
            let scanner = scan(case);
            let expected = match scanner.value(2) {
                Some(serde_json::Value::String(text)) => Some(text),
                _ => None,
            };
            assert_eq!(
                scanner.string(2),
                expected,
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        let scanner = scan(br#"{"model":"gpt-4o"}"#);
        assert!(scanner.result_is_string(2, "gpt-4o"));
        assert!(!scanner.result_is_string(2, "gpt-4"));
    }

    #[test]
    fn byte_by_byte_matches_whole() {
        let input =
            br#" {"message":{"usage":{"x":"a\\\"b"}}, "usage": [1, {"y":-2.5e3}] , "model":"m"} "#;
        let whole = scan(input);
        let mut split = JsonScanner::new(TARGETS);
        for byte in input.iter() {
            split.push(std::slice::from_ref(byte));
        }
        for index in 0..TARGETS.len() {
            assert_eq!(whole.result(index), split.result(index), "target {index}");
        }
    }
}
