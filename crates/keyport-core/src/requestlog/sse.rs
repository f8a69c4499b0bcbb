//! An incremental Server-Sent Events parser that streams each event's data
//! straight into a [`JsonScanner`].
//!
//! It follows the WHATWG event-stream rules that matter for LLM APIs:
//! - lines end in `\n`, `\r\n` or `\r`, and a `\r\n` pair may be split
//!   across chunks;
//! - a line starting with `:` is a comment;
//! - `field: value` loses one leading space;
//! - several `data:` lines join with `\n`;
//! - a blank line ends the event.
//!
//! Memory stays bounded because data bytes are scanned as they
//! arrive instead of being collected into an event buffer.

use super::json_scan::{JsonScanner, KeyPath};

/// Maximum length of a field name or `event:` value kept. Longer ones never
/// match.
const MAX_FIELD_LEN: usize = 32;

/// Start of an event's data kept to recognise OpenAI's `[DONE]` terminator.
const DATA_PREFIX_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinePart {
    /// Reading the field name at the start of a line.
    Field,
    /// Right after `field:`, where one space is dropped.
    ValueStart,
    Value,
    Comment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Data,
    Event,
    Ignored,
}

/// One dispatched event: its `event:` name and the scanned data.
pub(crate) struct SseEvent<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) data: &'a JsonScanner,
    /// Whether the data was exactly `[DONE]`.
    pub(crate) done_marker: bool,
}

#[derive(Debug)]
pub(crate) struct SseParser {
    part: LinePart,
    field: Vec<u8>,
    kind: FieldKind,
    after_cr: bool,
    at_stream_start: bool,
    event_name: Vec<u8>,
    data_lines: usize,
    data_prefix: Vec<u8>,
    data_len: usize,
    scanner: JsonScanner,
}

impl SseParser {
    pub(crate) fn new(targets: &'static [KeyPath]) -> Self {
        Self {
            part: LinePart::Field,
            field: Vec::new(),
            kind: FieldKind::Ignored,
            after_cr: false,
            at_stream_start: true,
            event_name: Vec::new(),
            data_lines: 0,
            data_prefix: Vec::new(),
            data_len: 0,
            scanner: JsonScanner::new(targets),
        }
    }

    /// Feeds the next bytes and calls `on_event` for every completed event.
    pub(crate) fn push(&mut self, input: &[u8], on_event: &mut dyn FnMut(SseEvent<'_>)) {
        let mut input = input;
        if self.at_stream_start && !input.is_empty() {
            // A UTF-8 byte order mark may precede the first field.
            if let Some(rest) = input.strip_prefix(b"\xEF\xBB\xBF") {
                input = rest;
            }
            self.at_stream_start = false;
        }

        let mut index = 0;
        while index < input.len() {
            let byte = input[index];
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    index += 1;
                    continue;
                }
            }
            if byte == b'\r' || byte == b'\n' {
                self.after_cr = byte == b'\r';
                self.end_line(on_event);
                index += 1;
                continue;
            }

            // Data values go to the scanner as one slice up to the line end.
            if self.part == LinePart::Value && self.kind == FieldKind::Data {
                let rest = &input[index..];
                let end = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                self.data_bytes(&rest[..end]);
                index += end;
                continue;
            }
            self.line_byte(byte);
            index += 1;
        }
    }

    /// Ends the stream. Per the event-stream rules an event without its
    /// closing blank line is dropped, except that data which already forms
    /// a complete JSON value is still delivered, because some servers omit
    /// the final blank line.
    pub(crate) fn finish(mut self, on_event: &mut dyn FnMut(SseEvent<'_>)) {
        if self.part != LinePart::Field || !self.field.is_empty() {
            self.end_line(on_event);
        }
        if self.data_lines > 0 && self.scanner.is_complete() {
            self.dispatch(on_event);
        }
    }

    fn line_byte(&mut self, byte: u8) {
        match self.part {
            LinePart::Field => {
                if byte == b':' {
                    if self.field.is_empty() {
                        self.part = LinePart::Comment;
                    } else {
                        self.start_value();
                    }
                } else if self.field.len() < MAX_FIELD_LEN {
                    self.field.push(byte);
                } else {
                    // An overlong field name matches nothing.
                    self.field.push(b'?');
                    self.field.truncate(MAX_FIELD_LEN);
                }
            }
            LinePart::ValueStart => {
                self.part = LinePart::Value;
                if byte != b' ' {
                    self.value_byte(byte);
                }
            }
            LinePart::Value => self.value_byte(byte),
            LinePart::Comment => {}
        }
    }

    fn start_value(&mut self) {
        self.kind = match self.field.as_slice() {
            b"data" => FieldKind::Data,
            b"event" => FieldKind::Event,
            _ => FieldKind::Ignored,
        };
        match self.kind {
            FieldKind::Data => self.begin_data_line(),
            FieldKind::Event => self.event_name.clear(),
            FieldKind::Ignored => {}
        }
        self.part = LinePart::ValueStart;
    }

    fn begin_data_line(&mut self) {
        if self.data_lines > 0 {
            self.data_bytes(b"\n");
        }
        self.data_lines += 1;
    }

    fn value_byte(&mut self, byte: u8) {
        match self.kind {
            FieldKind::Data => self.data_bytes(&[byte]),
            FieldKind::Event => {
                if self.event_name.len() < MAX_FIELD_LEN {
                    self.event_name.push(byte);
                }
            }
            FieldKind::Ignored => {}
        }
    }

    fn data_bytes(&mut self, bytes: &[u8]) {
        let room = DATA_PREFIX_LEN.saturating_sub(self.data_prefix.len());
        self.data_prefix
            .extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.data_len = self.data_len.saturating_add(bytes.len());
        self.scanner.push(bytes);
    }

    fn end_line(&mut self, on_event: &mut dyn FnMut(SseEvent<'_>)) {
        match self.part {
            LinePart::Field if self.field.is_empty() => self.dispatch(on_event),
            LinePart::Field => {
                // A line with no colon is a field with an empty value.
                self.start_value();
            }
            _ => {}
        }
        self.part = LinePart::Field;
        self.field.clear();
        self.kind = FieldKind::Ignored;
    }

    fn dispatch(&mut self, on_event: &mut dyn FnMut(SseEvent<'_>)) {
        if self.data_lines > 0 {
            let done_marker = self.data_len == 6 && self.data_prefix == b"[DONE]";
            on_event(SseEvent {
                name: &self.event_name,
                data: &self.scanner,
                done_marker,
            });
        }
        self.event_name.clear();
        self.data_lines = 0;
        self.data_prefix.clear();
        self.data_len = 0;
        self.scanner.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGETS: &[KeyPath] = &[&["n"]];

    /// Parses `input` and returns (event name, captured `n`, done) per event.
    fn events(chunks: &[&[u8]]) -> Vec<(String, Option<String>, bool)> {
        let mut parser = SseParser::new(TARGETS);
        let mut out = Vec::new();
        let mut collect = |event: SseEvent<'_>| {
            out.push((
                String::from_utf8_lossy(event.name).into_owned(),
                event
                    .data
                    .result(0)
                    .map(|raw| String::from_utf8_lossy(raw).into_owned()),
                event.done_marker,
            ));
        };
        for chunk in chunks {
            parser.push(chunk, &mut collect);
        }
        parser.finish(&mut collect);
        out
    }

    #[test]
    fn parses_events_with_each_line_ending() {
        for ending in ["\n", "\r\n", "\r"] {
            let text = format!(
                "event: a{e}data: {{\"n\":1}}{e}{e}: keepalive{e}{e}data:{{\"n\":2}}{e}{e}",
                e = ending
            );
            let parsed = events(&[text.as_bytes()]);
            assert_eq!(
                parsed,
                vec![
                    ("a".into(), Some("1".into()), false),
                    ("".into(), Some("2".into()), false)
                ],
                "line ending {ending:?}"
            );
        }
    }

    #[test]
    fn joins_multi_line_data() {
        let parsed = events(&[b"data: {\"n\":\ndata: 7}\n\n"]);
        assert_eq!(parsed, vec![("".into(), Some("7".into()), false)]);
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_ending() {
        let parsed = events(&[b"data: {\"n\":3}\r", b"\n\r", b"\n"]);
        assert_eq!(parsed, vec![("".into(), Some("3".into()), false)]);
    }

    #[test]
    fn recognises_done_marker() {
        let parsed = events(&[b"data: [DONE]\n\ndata: [DONE]x\n\n"]);
        assert_eq!(parsed.len(), 2);
        assert!(parsed[0].2);
        assert!(!parsed[1].2);
    }

    #[test]
    fn unterminated_event_counts_only_when_json_is_complete() {
        assert_eq!(events(&[b"data: {\"n\":4}"]).len(), 1);
        assert_eq!(events(&[b"data: {\"n\":4"]).len(), 0);
    }

    #[test]
    fn comments_and_unknown_fields_are_ignored() {
        let parsed = events(&[b":{\"n\":9}\nid: 5\nretry: 10\ndata: {\"n\":1}\n\n"]);
        assert_eq!(parsed, vec![("".into(), Some("1".into()), false)]);
    }
}
