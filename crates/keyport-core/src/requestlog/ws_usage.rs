//! Usage of an OpenAI Realtime session, read from the provider's WebSocket
//! frames as the proxy relays them.
//!
//! The relay copies bytes without parsing frames, so this reader runs its
//! own frame parser over a copy of the provider-to-client direction
//! (RFC 6455 section 5.2). Messages compressed with permessage-deflate
//! (RFC 7692) are inflated, keeping the compression context between
//! messages unless the provider turned it off. Each `response.done` event
//! reports the usage of one response, and the session's usage is their
//! sum. A session that ends between `response.created` and its
//! `response.done` has partial usage, noted as `response_incomplete`.

use flate2::{Decompress, FlushDecompress, Status};
use serde_json::Value;

use super::json_scan::JsonScanner;
use super::usage::{Extractor, Usage, UsageFormat, UsageNote};

/// Most bytes a session's compressed messages may inflate to, about four
/// hours of Realtime audio. Past it the reader stops, which bounds the work
/// a decompression bomb can cause on the relay task.
const MAX_SESSION_INFLATED_BYTES: u64 = 1024 * 1024 * 1024;

/// Largest decoded message that is parsed. Usage events are a few KiB;
/// longer messages (audio deltas, say) are skipped, but still inflated to
/// keep the compression context.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Output buffer of the inflater.
const INFLATE_BUFFER_LEN: usize = 16 * 1024;

/// The bytes that permessage-deflate strips from the end of every message.
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;

/// The parser's position in the current frame.
enum FrameState {
    /// Collecting the header bytes.
    Header,
    /// Reading `remaining` payload bytes of a data frame, or skipping those
    /// of a control frame.
    Payload {
        remaining: u64,
        mask: Option<[u8; 4]>,
        /// Payload bytes already read, for the mask's position.
        read: u64,
        control: bool,
        fin: bool,
    },
}

/// A message being assembled from its frames.
struct Message {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    /// Whether the decoded message grew over [`MAX_MESSAGE_BYTES`].
    too_large: bool,
    /// Whether the message's deflate stream ended with a final block.
    stream_ended: bool,
}

/// Reads the usage of a Realtime session from the provider's frames.
pub(crate) struct WsUsage {
    state: FrameState,
    header: Vec<u8>,
    message: Option<Message>,
    /// Present when the provider accepted permessage-deflate.
    inflater: Option<Decompress>,
    /// Whether the provider resets its compression context per message.
    reset_per_message: bool,
    input: Option<u64>,
    output: Option<u64>,
    cached: Option<u64>,
    responses_started: u64,
    responses_done: u64,
    /// Set on a frame this parser cannot follow; reading stops there.
    failed: bool,
    /// Bytes the session's compressed messages inflated to so far.
    inflated: u64,
    /// [`MAX_SESSION_INFLATED_BYTES`], or less in tests.
    inflate_limit: u64,
    /// Set when `inflated` passed `inflate_limit`; reading stops there.
    over_limit: bool,
    /// Output buffer of the inflater, allocated with the first compressed
    /// message.
    inflate_buffer: Vec<u8>,
}

impl WsUsage {
    /// Creates a reader for a session whose upgrade response carried
    /// `extensions` as `Sec-WebSocket-Extensions`.
    pub(crate) fn new(extensions: Option<&str>) -> Self {
        let deflate = extensions.and_then(|value| {
            value.split(',').find_map(|extension| {
                let mut params = extension.split(';').map(str::trim);
                (params.next() == Some("permessage-deflate")).then(|| {
                    params.any(|param| param.eq_ignore_ascii_case("server_no_context_takeover"))
                })
            })
        });
        Self {
            state: FrameState::Header,
            header: Vec::with_capacity(14),
            message: None,
            inflater: deflate.map(|_| Decompress::new(false)),
            reset_per_message: deflate.unwrap_or(false),
            input: None,
            output: None,
            cached: None,
            responses_started: 0,
            responses_done: 0,
            failed: false,
            inflated: 0,
            inflate_limit: MAX_SESSION_INFLATED_BYTES,
            over_limit: false,
            inflate_buffer: Vec::new(),
        }
    }

    /// Reads the next bytes that the provider sent.
    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.failed && !self.over_limit {
            bytes = match self.state {
                FrameState::Header => self.read_header(bytes),
                FrameState::Payload { .. } => self.read_payload(bytes),
            };
        }
    }

    /// Returns the summed usage of the session's responses.
    pub(crate) fn finish(self) -> Usage {
        let note = if self.over_limit {
            Some(UsageNote::DecodedBodyTooLarge)
        } else if self.failed {
            Some(UsageNote::ParserFailed)
        } else if self.responses_started > self.responses_done {
            Some(UsageNote::ResponseIncomplete)
        } else {
            None
        };
        Usage {
            input_tokens: self.input,
            output_tokens: self.output,
            cached_tokens: self.cached,
            note,
            ..Usage::default()
        }
    }

    /// Collects header bytes; returns the bytes after the header.
    fn read_header<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let mut bytes = bytes;
        while let Some((&byte, rest)) = bytes.split_first() {
            self.header.push(byte);
            bytes = rest;
            if let Some(length) = header_length(&self.header) {
                if self.header.len() == length {
                    self.start_frame();
                    break;
                }
            }
        }
        bytes
    }

    /// Decodes the complete header in `self.header` and starts its payload.
    fn start_frame(&mut self) {
        let header = &self.header;
        let fin = header[0] & 0x80 != 0;
        let rsv1 = header[0] & 0x40 != 0;
        let opcode = header[0] & 0x0f;
        let masked = header[1] & 0x80 != 0;
        let (remaining, length_end) = match header[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([header[2], header[3]])), 4),
            127 => {
                let mut length = [0_u8; 8];
                length.copy_from_slice(&header[2..10]);
                (u64::from_be_bytes(length), 10)
            }
            short => (u64::from(short), 2),
        };
        let mask = masked.then(|| {
            let mut key = [0_u8; 4];
            key.copy_from_slice(&header[length_end..length_end + 4]);
            key
        });
        self.header.clear();

        let control = opcode >= 0x8;
        if !control {
            let starts = opcode == OPCODE_TEXT || opcode == OPCODE_BINARY;
            // A message starts with text or binary and goes on with
            // continuation frames, never interleaved with another.
            let valid = matches!(
                (&self.message, starts, opcode),
                (None, true, _) | (Some(_), false, OPCODE_CONTINUATION)
            );
            if !valid || (rsv1 && (self.inflater.is_none() || !starts)) {
                self.failed = true;
                return;
            }
            if starts {
                self.message = Some(Message {
                    text: opcode == OPCODE_TEXT,
                    compressed: rsv1,
                    data: Vec::new(),
                    too_large: false,
                    stream_ended: false,
                });
            }
        }
        self.state = FrameState::Payload {
            remaining,
            mask,
            read: 0,
            control,
            fin,
        };
        if remaining == 0 {
            self.end_frame();
        }
    }

    /// Reads payload bytes; returns the bytes after this frame's payload.
    fn read_payload<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let FrameState::Payload {
            remaining,
            mask,
            read,
            control,
            ..
        } = &mut self.state
        else {
            return bytes;
        };
        let take = usize::try_from(*remaining).map_or(bytes.len(), |left| left.min(bytes.len()));
        let (payload, rest) = bytes.split_at(take);
        *remaining -= take as u64;
        let offset = *read;
        *read += take as u64;
        let mask = *mask;
        let control = *control;
        let done = *remaining == 0;

        if !control {
            match mask {
                Some(key) => {
                    let unmasked: Vec<u8> = payload
                        .iter()
                        .enumerate()
                        .map(|(index, byte)| {
                            // The position wraps every 4 bytes, so only the
                            // low bits of the offset matter.
                            let position = (offset as usize).wrapping_add(index) % 4;
                            byte ^ key[position]
                        })
                        .collect();
                    self.append(&unmasked);
                }
                None => self.append(payload),
            }
        }
        if done {
            self.end_frame();
        }
        rest
    }

    /// Adds payload bytes to the current message, inflating them if the
    /// message is compressed.
    fn append(&mut self, payload: &[u8]) {
        let Some(mut message) = self.message.take() else {
            return;
        };
        if message.compressed {
            self.inflate_into(&mut message, payload);
        } else {
            push_limited(&mut message, payload);
        }
        self.message = Some(message);
    }

    /// Inflates compressed payload bytes into `message`. Bytes after the
    /// end of its deflate stream are ignored.
    fn inflate_into(&mut self, message: &mut Message, input: &[u8]) {
        let Some(inflater) = &mut self.inflater else {
            return;
        };
        if message.stream_ended {
            return;
        }
        if self.inflate_buffer.is_empty() {
            self.inflate_buffer = vec![0; INFLATE_BUFFER_LEN];
        }
        let before = inflater.total_out();
        match inflate(inflater, input, message, &mut self.inflate_buffer) {
            Ok(ended) => message.stream_ended = ended,
            Err(()) => self.failed = true,
        }
        self.inflated = self
            .inflated
            .saturating_add(inflater.total_out().saturating_sub(before));
        if self.inflated > self.inflate_limit {
            self.over_limit = true;
        }
    }

    /// Finishes the frame whose payload has been read, and its message if
    /// the frame was the last one.
    fn end_frame(&mut self) {
        let FrameState::Payload { control, fin, .. } = self.state else {
            return;
        };
        self.state = FrameState::Header;
        if control || !fin {
            return;
        }
        let Some(mut message) = self.message.take() else {
            return;
        };
        if message.compressed {
            // The tail completes the sync flush that the provider stripped.
            // A stream that ended with a final block has none to complete.
            self.inflate_into(&mut message, &DEFLATE_TAIL);
            if self.failed {
                return;
            }
            // After a final block the next message starts a new stream,
            // without the old sliding window.
            if let Some(inflater) = &mut self.inflater {
                if self.reset_per_message || message.stream_ended {
                    inflater.reset(false);
                }
            }
        }
        if message.text && !message.too_large {
            self.read_event(&message.data);
        }
    }

    /// Counts a `response.created` event, and adds the usage of a
    /// `response.done` event.
    fn read_event(&mut self, data: &[u8]) {
        let started = memchr::memmem::find(data, b"response.created").is_some();
        let done = memchr::memmem::find(data, b"response.done").is_some();
        if !started && !done {
            return;
        }
        let mut scanner = JsonScanner::new(Extractor::targets(UsageFormat::OpenAi));
        scanner.push(data);
        // Index 4 of the OpenAI targets is the top-level `type`.
        let kind = match scanner.value(4) {
            Some(Value::String(kind)) => kind,
            _ => return,
        };
        match kind.as_str() {
            "response.created" => self.responses_started += 1,
            "response.done" => {
                self.responses_done += 1;
                let mut extractor = Extractor::new(UsageFormat::OpenAi);
                extractor.on_json_body(&scanner);
                let usage = extractor.finish(false);
                add(&mut self.input, usage.input_tokens);
                add(&mut self.output, usage.output_tokens);
                add(&mut self.cached, usage.cached_tokens);
            }
            _ => {}
        }
    }
}

/// Returns the full length of a frame header that starts with `header`,
/// once its first two bytes are known.
fn header_length(header: &[u8]) -> Option<usize> {
    let second = *header.get(1)?;
    let length_bytes = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask_bytes = if second & 0x80 != 0 { 4 } else { 0 };
    Some(2 + length_bytes + mask_bytes)
}

/// Appends `bytes` to the message while it stays under the size limit.
fn push_limited(message: &mut Message, bytes: &[u8]) {
    if message.too_large {
        return;
    }
    if message.data.len() + bytes.len() > MAX_MESSAGE_BYTES {
        message.too_large = true;
        message.data = Vec::new();
        return;
    }
    message.data.extend_from_slice(bytes);
}

/// Inflates `input` into the message, using `buffer` for output. Returns
/// whether the deflate stream ended: a message may end with a block marked
/// final (RFC 7692 section 7.2.3.3).
fn inflate(
    inflater: &mut Decompress,
    input: &[u8],
    message: &mut Message,
    buffer: &mut [u8],
) -> Result<bool, ()> {
    let mut input = input;
    loop {
        let before_in = inflater.total_in();
        let before_out = inflater.total_out();
        let status = inflater
            .decompress(input, buffer, FlushDecompress::Sync)
            .map_err(|_| ())?;
        let consumed = usize::try_from(inflater.total_in() - before_in).map_err(|_| ())?;
        let produced = usize::try_from(inflater.total_out() - before_out).map_err(|_| ())?;
        push_limited(message, &buffer[..produced]);
        input = &input[consumed..];
        if status == Status::StreamEnd {
            return Ok(true);
        }
        let stalled = consumed == 0 && produced == 0;
        if stalled || (input.is_empty() && produced < buffer.len()) {
            return Ok(false);
        }
    }
}

fn add(total: &mut Option<u64>, value: Option<u64>) {
    if let Some(value) = value {
        *total = Some(total.unwrap_or(0).saturating_add(value));
    }
}

#[cfg(test)]
mod tests {
    use flate2::{Compress, Compression, FlushCompress};

    use super::*;

    const CREATED: &str = r#"{"type":"response.created","response":{"id":"resp_1"}}"#;

    fn done(input: u64, output: u64, cached: u64) -> String {
        format!(
            r#"{{"type":"response.done","event_id":"ev","response":{{"status":"completed","usage":{{"total_tokens":{},"input_tokens":{input},"output_tokens":{output},"input_token_details":{{"cached_tokens":{cached},"text_tokens":1,"audio_tokens":2}}}}}}}}"#,
            input + output
        )
    }

    /// Builds one frame as a server sends it, optionally masked.
    fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode];
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            short @ 0..=125 => out.push(mask_bit | short as u8),
            medium @ 126..=0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(medium as u16).to_be_bytes());
            }
            long => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(long as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(
                    payload
                        .iter()
                        .enumerate()
                        .map(|(i, byte)| byte ^ key[i % 4]),
                );
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn text(payload: &str) -> Vec<u8> {
        frame(true, false, OPCODE_TEXT, payload.as_bytes(), None)
    }

    fn read(extensions: Option<&str>, stream: &[u8]) -> Usage {
        let mut session = WsUsage::new(extensions);
        session.push(stream);
        session.finish()
    }

    fn session_stream() -> Vec<u8> {
        let mut stream = text(r#"{"type":"session.created","session":{"model":"gpt-realtime"}}"#);
        stream.extend(text(CREATED));
        // An audio delta longer than 65,535 bytes needs the 8-byte length.
        let audio = format!(
            r#"{{"type":"response.audio.delta","delta":"{}"}}"#,
            "A".repeat(70_000)
        );
        stream.extend(text(&audio));
        stream.extend(text(&done(100, 20, 64)));
        stream.extend(text(CREATED));
        // A fragmented message with a ping between its frames.
        let second = done(50, 7, 0);
        let (first_half, second_half) = second.as_bytes().split_at(40);
        stream.extend(frame(false, false, OPCODE_TEXT, first_half, None));
        stream.extend(frame(true, false, 0x9, b"ping", None));
        stream.extend(frame(true, false, OPCODE_CONTINUATION, second_half, None));
        stream.extend(frame(true, false, OPCODE_BINARY, b"\x00\x01", None));
        stream
    }

    fn expected() -> Usage {
        Usage {
            input_tokens: Some(150),
            output_tokens: Some(27),
            cached_tokens: Some(64),
            ..Usage::default()
        }
    }

    #[test]
    fn responses_are_summed() {
        assert_eq!(read(None, &session_stream()), expected());
    }

    #[test]
    fn any_split_gives_the_same_sum() {
        let stream = session_stream();
        // Every split point in the short frames, and a few in the audio.
        let points = (0..400).chain((400..stream.len()).step_by(997));
        for split in points {
            let mut session = WsUsage::new(None);
            session.push(&stream[..split]);
            session.push(&stream[split..]);
            assert_eq!(session.finish(), expected(), "split at {split}");
        }
        let mut session = WsUsage::new(None);
        for byte in stream.chunks(1) {
            session.push(byte);
        }
        assert_eq!(session.finish(), expected(), "one byte at a time");
    }

    #[test]
    fn masked_frames_are_read() {
        let mut stream = frame(
            true,
            false,
            OPCODE_TEXT,
            CREATED.as_bytes(),
            Some([1, 2, 3, 4]),
        );
        stream.extend(frame(
            true,
            false,
            OPCODE_TEXT,
            done(3, 4, 0).as_bytes(),
            Some([9, 8, 7, 6]),
        ));
        let usage = read(None, &stream);
        assert_eq!(
            (usage.input_tokens, usage.output_tokens),
            (Some(3), Some(4))
        );
        assert_eq!(usage.note, None);
    }

    /// Compresses each message as permessage-deflate does: one raw deflate
    /// stream, sync-flushed per message, without the final 4 bytes.
    fn compressed_stream(messages: &[String], reset_per_message: bool) -> Vec<u8> {
        let mut compress = Compress::new(Compression::default(), false);
        let mut stream = Vec::new();
        for message in messages {
            if reset_per_message {
                compress.reset();
            }
            let mut out = Vec::with_capacity(message.len() + 64);
            compress
                .compress_vec(message.as_bytes(), &mut out, FlushCompress::Sync)
                .unwrap();
            assert!(out.ends_with(&DEFLATE_TAIL));
            out.truncate(out.len() - DEFLATE_TAIL.len());
            // Split over two frames, to cross a frame boundary mid-stream.
            let (head, tail) = out.split_at(out.len() / 2);
            stream.extend(frame(false, true, OPCODE_TEXT, head, None));
            stream.extend(frame(true, false, OPCODE_CONTINUATION, tail, None));
        }
        stream
    }

    #[test]
    fn compressed_messages_are_inflated() {
        let messages = [
            CREATED.to_string(),
            done(10, 2, 1),
            CREATED.to_string(),
            done(5, 1, 0),
        ];
        let with_context = compressed_stream(&messages, false);
        let usage = read(
            Some("permessage-deflate; client_max_window_bits"),
            &with_context,
        );
        assert_eq!(
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_tokens,
                usage.note
            ),
            (Some(15), Some(3), Some(1), None)
        );

        let without_context = compressed_stream(&messages, true);
        let usage = read(
            Some("permessage-deflate; server_no_context_takeover"),
            &without_context,
        );
        assert_eq!(
            (usage.input_tokens, usage.output_tokens),
            (Some(15), Some(3))
        );

        // Compressed frames without the negotiated extension cannot be read.
        let usage = read(None, &with_context);
        assert_eq!(usage.note, Some(UsageNote::ParserFailed));
    }

    #[test]
    fn final_deflate_blocks_start_a_new_stream() {
        let mut stream = Vec::new();
        for message in [
            CREATED.to_string(),
            done(1, 2, 0),
            CREATED.to_string(),
            done(10, 20, 3),
        ] {
            // Each message compressed on its own and ended with a final block.
            let mut compress = Compress::new(Compression::default(), false);
            let mut out = Vec::with_capacity(message.len() + 64);
            compress
                .compress_vec(message.as_bytes(), &mut out, FlushCompress::Finish)
                .unwrap();
            stream.extend(frame(true, true, OPCODE_TEXT, &out, None));
        }
        let usage = read(Some("permessage-deflate"), &stream);
        assert_eq!(
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_tokens,
                usage.note
            ),
            (Some(11), Some(22), Some(3), None)
        );
    }

    #[test]
    fn inflating_stops_at_the_session_limit() {
        let mut compress = Compress::new(Compression::default(), false);
        let mut stream = Vec::new();
        for message in [CREATED.to_string(), " ".repeat(200_000), done(1, 1, 0)] {
            let mut out = Vec::with_capacity(message.len() + 64);
            compress
                .compress_vec(message.as_bytes(), &mut out, FlushCompress::Sync)
                .unwrap();
            out.truncate(out.len() - DEFLATE_TAIL.len());
            stream.extend(frame(true, true, OPCODE_TEXT, &out, None));
        }
        let mut session = WsUsage::new(Some("permessage-deflate"));
        session.inflate_limit = 100_000;
        session.push(&stream);
        let usage = session.finish();
        assert_eq!(usage.note, Some(UsageNote::DecodedBodyTooLarge));
        assert_eq!(usage.input_tokens, None);
    }

    #[test]
    fn open_response_marks_usage_incomplete() {
        let mut stream = text(CREATED);
        stream.extend(text(&done(8, 2, 0)));
        stream.extend(text(CREATED));
        let usage = read(None, &stream);
        assert_eq!(
            (usage.input_tokens, usage.output_tokens),
            (Some(8), Some(2))
        );
        assert_eq!(usage.note, Some(UsageNote::ResponseIncomplete));
    }

    #[test]
    fn session_without_responses_has_unknown_usage() {
        let usage = read(None, &text(r#"{"type":"session.created"}"#));
        assert_eq!(usage, Usage::default());
    }

    #[test]
    fn event_names_inside_other_text_do_not_count() {
        let quoted =
            r#"{"type":"response.text.delta","delta":"say response.done and response.created"}"#;
        assert_eq!(read(None, &text(quoted)), Usage::default());
    }
}
