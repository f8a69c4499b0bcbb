//! [`UsageTap`]: reads token usage from a response body as the proxy
//! forwards it.
//!
//! The proxy hands the tap a reference to each chunk after (or while)
//! forwarding it; the tap never changes or holds back the forwarded bytes.
//! Compressed bodies are decoded inside the tap, chunk by chunk. Memory is
//! bounded: a decoder window, the JSON scanner's small state and, when body
//! capture is on, at most the capture limit.

use std::io::{self, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use flate2::{Decompress, FlushDecompress, Status};

use super::json_scan::JsonScanner;
use super::record::CapturedBody;
use super::sse::{SseEvent, SseParser};
use super::usage::{Extractor, Usage, UsageFormat, UsageNote};
use super::ws_usage::WsUsage;

/// Maximum number of bytes a compressed body may decode to before the tap
/// gives up. The limit bounds the work a decompression bomb can cause on
/// the proxy's worker threads, which decode inline, and LLM responses are
/// far smaller.
const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

/// Output buffer for the inflate and zstd decoders.
const DECODE_BUFFER_LEN: usize = 32 * 1024;

/// zstd window limit: 8 MiB, the limit RFC 9659 sets for HTTP.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Parser for the decoded body.
enum BodyParser {
    /// No content type given, so the first non-blank byte decides.
    Undecided,
    Json {
        scanner: JsonScanner,
        /// Whether the body's first non-blank byte is `[`; `None` until
        /// that byte arrives. A JSON array is Gemini's stream without SSE.
        is_array: Option<bool>,
    },
    Sse(SseParser),
}

/// Receives decoded bytes: parses them and optionally keeps a copy.
struct Sink {
    extractor: Extractor,
    parser: BodyParser,
    format: UsageFormat,
    capture: Option<BodyCapture>,
    decoded: u64,
    limit: Option<u64>,
    over_limit: bool,
}

impl Sink {
    fn feed(&mut self, bytes: &[u8]) -> Result<(), UsageNote> {
        self.decoded = self.decoded.saturating_add(bytes.len() as u64);
        if self.limit.is_some_and(|limit| self.decoded > limit) {
            self.over_limit = true;
            return Err(UsageNote::DecodedBodyTooLarge);
        }
        if let Some(capture) = &mut self.capture {
            capture.push(bytes);
        }

        let mut bytes = bytes;
        if let BodyParser::Undecided = self.parser {
            let Some(first) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else {
                return Ok(());
            };
            bytes = &bytes[first..];
            let targets = Extractor::targets(self.format);
            self.parser = match bytes[0] {
                b'{' | b'[' => BodyParser::Json {
                    scanner: JsonScanner::new(targets),
                    is_array: Some(bytes[0] == b'['),
                },
                _ => BodyParser::Sse(SseParser::new(targets)),
            };
        }
        match &mut self.parser {
            BodyParser::Undecided => {}
            BodyParser::Json { scanner, is_array } => {
                // Decided once: a scanner that failed on its first byte has
                // not started, and a later chunk must not decide again.
                if is_array.is_none() {
                    if let Some(&first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) {
                        *is_array = Some(first == b'[');
                    }
                }
                scanner.push(bytes);
            }
            BodyParser::Sse(parser) => {
                let extractor = &mut self.extractor;
                parser.push(bytes, &mut |event: SseEvent<'_>| {
                    extractor.on_sse_event(&event)
                });
            }
        }
        Ok(())
    }

    fn finish(self) -> (Usage, Option<CapturedBody>) {
        let mut extractor = self.extractor;
        let streamed = match self.parser {
            BodyParser::Undecided => false,
            BodyParser::Json { scanner, is_array } => {
                extractor.on_json_body(&scanner);
                is_array.unwrap_or(false)
            }
            BodyParser::Sse(parser) => {
                parser.finish(&mut |event: SseEvent<'_>| extractor.on_sse_event(&event));
                true
            }
        };
        let body = self.capture.map(BodyCapture::finish);
        (extractor.finish(streamed), body)
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.feed(buf)
            .map_err(|note| io::Error::other(note.as_str()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An inflate stream (zlib-wrapped or raw deflate) with end detection.
struct Inflate {
    decompress: Decompress,
    ended: bool,
    buffer: Vec<u8>,
}

impl Inflate {
    fn new(zlib_header: bool) -> Self {
        Self {
            decompress: Decompress::new(zlib_header),
            ended: false,
            buffer: vec![0; DECODE_BUFFER_LEN],
        }
    }

    fn push(&mut self, mut input: &[u8], sink: &mut Sink) -> Result<(), UsageNote> {
        loop {
            if input.is_empty() {
                return Ok(());
            }
            if self.ended {
                // Bytes after the end of the stream are not part of a
                // well-formed body.
                return Err(UsageNote::DecodeFailed);
            }
            let read_before = self.decompress.total_in();
            let written_before = self.decompress.total_out();
            let status = self
                .decompress
                .decompress(input, &mut self.buffer, FlushDecompress::None)
                .map_err(|_| UsageNote::DecodeFailed)?;
            let read = (self.decompress.total_in() - read_before) as usize;
            let written = (self.decompress.total_out() - written_before) as usize;
            sink.feed(&self.buffer[..written])?;
            input = input.get(read..).unwrap_or_default();
            match status {
                Status::StreamEnd => self.ended = true,
                Status::Ok | Status::BufError if read == 0 && written == 0 => {
                    return Err(UsageNote::DecodeFailed);
                }
                Status::Ok | Status::BufError => {}
            }
        }
    }

    fn finish(mut self, sink: &mut Sink) -> Result<(), UsageNote> {
        // Drain output that did not fit the buffer on the last push.
        while !self.ended {
            let written_before = self.decompress.total_out();
            let status = self
                .decompress
                .decompress(&[], &mut self.buffer, FlushDecompress::Finish)
                .map_err(|_| UsageNote::DecodeFailed)?;
            let written = (self.decompress.total_out() - written_before) as usize;
            sink.feed(&self.buffer[..written])?;
            if status == Status::StreamEnd {
                self.ended = true;
            } else if written == 0 {
                return Err(UsageNote::DecodeFailed);
            }
        }
        Ok(())
    }
}

/// A zstd stream with end-of-frame detection.
struct Zstd {
    decoder: zstd::stream::raw::Decoder<'static>,
    frame_ended: bool,
    buffer: Vec<u8>,
}

impl Zstd {
    fn new() -> Result<Self, UsageNote> {
        use zstd::stream::raw::DParameter;

        let mut decoder = zstd::stream::raw::Decoder::new().map_err(|_| UsageNote::ParserFailed)?;
        decoder
            .set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
            .map_err(|_| UsageNote::ParserFailed)?;
        Ok(Self {
            decoder,
            frame_ended: false,
            buffer: vec![0; DECODE_BUFFER_LEN],
        })
    }

    /// Decodes `input`; an empty `input` drains output still buffered in
    /// the decoder.
    fn push(&mut self, mut input: &[u8], sink: &mut Sink) -> Result<(), UsageNote> {
        use zstd::stream::raw::Operation;

        loop {
            let status = self
                .decoder
                .run_on_buffers(input, &mut self.buffer)
                .map_err(|_| UsageNote::DecodeFailed)?;
            sink.feed(&self.buffer[..status.bytes_written])?;
            input = input.get(status.bytes_read..).unwrap_or_default();
            let progressed = status.bytes_read > 0 || status.bytes_written > 0;
            if progressed {
                // Zero means a frame was fully decoded and flushed.
                self.frame_ended = status.remaining == 0;
            }
            let output_full = status.bytes_written == self.buffer.len();
            if input.is_empty() && !output_full {
                return Ok(());
            }
            if !progressed {
                return Err(UsageNote::DecodeFailed);
            }
        }
    }

    fn finish(mut self, sink: &mut Sink) -> Result<(), UsageNote> {
        self.push(&[], sink)?;
        if self.frame_ended {
            Ok(())
        } else {
            Err(UsageNote::DecodeFailed)
        }
    }
}

enum Stage {
    Identity(Sink),
    Gzip(Box<flate2::write::MultiGzDecoder<Sink>>),
    /// `deflate` is zlib-wrapped by the standard but raw in some servers;
    /// the first two bytes decide.
    DeflatePending {
        header: Vec<u8>,
        sink: Sink,
    },
    Inflate {
        inflate: Box<Inflate>,
        sink: Sink,
    },
    Brotli(Box<brotli_decompressor::DecompressorWriter<Sink>>),
    Zstd {
        zstd: Box<Zstd>,
        sink: Sink,
    },
    /// The provider's side of a WebSocket session.
    WebSocket(Box<WsUsage>),
    Failed(UsageNote),
}

/// Reads token usage from a response body as it streams past.
///
/// ```
/// use keyport_core::requestlog::{UsageFormat, UsageTap};
///
/// let mut tap = UsageTap::new(UsageFormat::OpenAi, Some("application/json"), None);
/// tap.push(br#"{"model":"gpt-4o-mini","usage":{"prompt_tokens":9,"#);
/// tap.push(br#""completion_tokens":3}}"#);
/// let usage = tap.finish();
/// assert_eq!(usage.input_tokens, Some(9));
/// assert_eq!(usage.output_tokens, Some(3));
/// ```
pub struct UsageTap {
    stage: Stage,
    /// Whether any body bytes arrived; an empty body has nothing to decode.
    received: bool,
}

impl UsageTap {
    /// Creates a tap for a response with the given `Content-Type` and
    /// `Content-Encoding` header values.
    pub fn new(
        format: UsageFormat,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Self {
        Self::build(format, content_type, content_encoding, None)
    }

    /// Creates a tap for the provider's side of an OpenAI Realtime
    /// WebSocket session, whose upgrade response carried `extensions` as
    /// `Sec-WebSocket-Extensions`. It sums the usage of the session's
    /// responses.
    pub fn websocket(extensions: Option<&str>) -> Self {
        Self {
            stage: Stage::WebSocket(Box::new(WsUsage::new(extensions))),
            received: false,
        }
    }

    /// Like [`UsageTap::new`], and also keeps the first `limit` bytes of the
    /// decoded body for [`UsageTap::finish_with_body`].
    pub fn with_body_capture(
        format: UsageFormat,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        limit: usize,
    ) -> Self {
        Self::build(format, content_type, content_encoding, Some(limit))
    }

    fn build(
        format: UsageFormat,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        capture_limit: Option<usize>,
    ) -> Self {
        let targets = Extractor::targets(format);
        let media_type = content_type
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase());
        let parser = match media_type.as_deref() {
            Some("text/event-stream") => BodyParser::Sse(SseParser::new(targets)),
            Some(kind) if kind == "application/json" || kind.ends_with("+json") => {
                BodyParser::Json {
                    scanner: JsonScanner::new(targets),
                    is_array: None,
                }
            }
            _ => BodyParser::Undecided,
        };
        let mut sink = Sink {
            extractor: Extractor::new(format),
            parser,
            format,
            capture: capture_limit.map(BodyCapture::new),
            decoded: 0,
            limit: None,
            over_limit: false,
        };

        let encoding = content_encoding
            .map(|value| value.trim().to_ascii_lowercase())
            .filter(|value| !value.is_empty() && value != "identity");
        let Some(encoding) = encoding else {
            return Self {
                stage: Stage::Identity(sink),
                received: false,
            };
        };
        sink.limit = Some(MAX_DECODED_BYTES);
        let stage = match encoding.as_str() {
            "gzip" | "x-gzip" => Stage::Gzip(Box::new(flate2::write::MultiGzDecoder::new(sink))),
            "deflate" => Stage::DeflatePending {
                header: Vec::new(),
                sink,
            },
            "br" => Stage::Brotli(Box::new(brotli_decompressor::DecompressorWriter::new(
                sink, 0,
            ))),
            "zstd" => match Zstd::new() {
                Ok(zstd) => Stage::Zstd {
                    zstd: Box::new(zstd),
                    sink,
                },
                Err(note) => Stage::Failed(note),
            },
            // Several codings ("gzip, br") or unknown ones are not decoded.
            _ => Stage::Failed(UsageNote::UnsupportedEncoding),
        };
        Self {
            stage,
            received: false,
        }
    }

    /// Reads the next chunk of the body as received from upstream. Never
    /// panics: a decoder or parser failure makes the usage unknown.
    pub fn push(&mut self, chunk: &[u8]) {
        if chunk.is_empty() || matches!(self.stage, Stage::Failed(_)) {
            return;
        }
        self.received = true;
        let result = catch_unwind(AssertUnwindSafe(|| push_stage(&mut self.stage, chunk)));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(note)) => self.stage = Stage::Failed(note),
            Err(_) => self.stage = Stage::Failed(UsageNote::ParserFailed),
        }
    }

    /// Returns the usage found in the body.
    pub fn finish(self) -> Usage {
        self.finish_with_body().0
    }

    /// Returns the usage and, for a tap made with
    /// [`UsageTap::with_body_capture`], the redacted start of the decoded
    /// body. No body is returned when decoding failed.
    pub fn finish_with_body(self) -> (Usage, Option<CapturedBody>) {
        let mut stage = self.stage;
        let decoding = !matches!(stage, Stage::Identity(_) | Stage::Failed(_));
        if decoding && !self.received {
            return (Usage::default(), None);
        }
        let result = catch_unwind(AssertUnwindSafe(move || finish_stage(&mut stage)));
        match result {
            Ok(Ok(output)) => output,
            Ok(Err(note)) => (Usage::unknown(note), None),
            Err(_) => (Usage::unknown(UsageNote::ParserFailed), None),
        }
    }
}

fn push_stage(stage: &mut Stage, chunk: &[u8]) -> Result<(), UsageNote> {
    match stage {
        Stage::Identity(sink) => sink.feed(chunk),
        Stage::Gzip(decoder) => write_decoder(decoder.as_mut(), chunk, |d| d.get_ref()),
        Stage::DeflatePending { .. } => start_inflate(stage, chunk),
        Stage::Inflate { inflate, sink } => inflate.push(chunk, sink),
        Stage::Brotli(decoder) => write_decoder(decoder.as_mut(), chunk, |d| d.get_ref()),
        Stage::Zstd { zstd, sink } => zstd.push(chunk, sink),
        Stage::WebSocket(session) => {
            session.push(chunk);
            Ok(())
        }
        Stage::Failed(_) => Ok(()),
    }
}

/// Buffers the first two bytes of a `deflate` body, then starts a zlib or
/// raw inflate stream as they indicate.
fn start_inflate(stage: &mut Stage, chunk: &[u8]) -> Result<(), UsageNote> {
    if let Stage::DeflatePending { header, .. } = stage {
        header.extend_from_slice(chunk);
        if header.len() < 2 {
            return Ok(());
        }
    }
    let pending = std::mem::replace(stage, Stage::Failed(UsageNote::ParserFailed));
    let Stage::DeflatePending { header, mut sink } = pending else {
        *stage = pending;
        return Ok(());
    };
    let mut inflate = Box::new(Inflate::new(is_zlib_header(header[0], header[1])));
    let result = inflate.push(&header, &mut sink);
    *stage = Stage::Inflate { inflate, sink };
    result
}

/// Writes `chunk` into a `Write`-based decoder whose inner writer is the
/// sink, telling a size-limit stop apart from corrupt data.
fn write_decoder<D: Write>(
    decoder: &mut D,
    chunk: &[u8],
    sink: impl Fn(&D) -> &Sink,
) -> Result<(), UsageNote> {
    match decoder.write_all(chunk) {
        Ok(()) => Ok(()),
        Err(_) if sink(decoder).over_limit => Err(UsageNote::DecodedBodyTooLarge),
        Err(_) => Err(UsageNote::DecodeFailed),
    }
}

fn finish_stage(stage: &mut Stage) -> Result<(Usage, Option<CapturedBody>), UsageNote> {
    let stage = std::mem::replace(stage, Stage::Failed(UsageNote::ParserFailed));
    let sink = match stage {
        Stage::Identity(sink) => sink,
        Stage::Gzip(decoder) => decoder.finish().map_err(|_| UsageNote::DecodeFailed)?,
        // Fewer than two bytes of a deflate body.
        Stage::DeflatePending { header, sink } if header.is_empty() => sink,
        Stage::DeflatePending { .. } => return Err(UsageNote::DecodeFailed),
        Stage::Inflate { inflate, mut sink } => {
            inflate.finish(&mut sink)?;
            sink
        }
        Stage::Brotli(decoder) => decoder.into_inner().map_err(|_| UsageNote::DecodeFailed)?,
        Stage::Zstd { zstd, mut sink } => {
            zstd.finish(&mut sink)?;
            sink
        }
        Stage::WebSocket(session) => return Ok((session.finish(), None)),
        Stage::Failed(note) => return Err(note),
    };
    Ok(sink.finish())
}

/// Whether two bytes start a zlib stream (RFC 1950: deflate method, window
/// at most 32 KiB, header checksum divisible by 31).
fn is_zlib_header(cmf: u8, flg: u8) -> bool {
    cmf & 0x0F == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

/// Keeps the first bytes of a body for the log, up to a limit.
#[derive(Debug, Clone)]
pub struct BodyCapture {
    limit: usize,
    bytes: Vec<u8>,
    total: u64,
}

/// Extra bytes kept past the limit so that a credential crossing the limit
/// is still recognised, and redacted, as a whole before the cut.
const CAPTURE_MARGIN: usize = 512;

impl BodyCapture {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            bytes: Vec::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.total = self.total.saturating_add(chunk.len() as u64);
        let room = (self.limit + CAPTURE_MARGIN).saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(&chunk[..room.min(chunk.len())]);
    }

    /// Redacts and cuts the captured bytes.
    pub fn finish(self) -> CapturedBody {
        CapturedBody::from_bytes(&self.bytes, self.limit, self.total)
    }
}
