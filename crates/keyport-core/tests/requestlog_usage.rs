//! Golden tests for usage extraction: every provider, streamed and not,
//! split at every byte, compressed, truncated and garbled.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on any unexpected error"
)]

use std::io::Write;

use keyport_core::requestlog::{PriceTable, Usage, UsageFormat, UsageNote, UsageTap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const JSON: Option<&str> = Some("application/json");
const SSE: Option<&str> = Some("text/event-stream; charset=utf-8");

const OPENAI_CHAT_JSON: &str = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"The \"usage\": {\"prompt_tokens\": 1} text is not usage.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;

const OPENAI_CHAT_SSE: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    ": keepalive\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"The image\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":1117,\"completion_tokens\":46,\"total_tokens\":1163,\"prompt_tokens_details\":{\"cached_tokens\":1024,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
    "data: [DONE]\n\n",
);

/// The same stream when the client did not set `stream_options.include_usage`.
const OPENAI_CHAT_SSE_NO_USAGE: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: [DONE]\n\n",
);

const OPENAI_RESPONSES_JSON: &str = r#"{"id":"resp_67ccd2bed1ec8190","object":"response","created_at":1741476542,"status":"completed","model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"In a peaceful grove...","annotations":[]}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}"#;

const OPENAI_RESPONSES_SSE: &str = concat!(
    "event: response.created\n",
    "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1,\"status\":\"in_progress\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[],\"usage\":null}}\n\n",
    "event: response.output_text.delta\n",
    "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"In a\"}\n\n",
    "event: response.completed\n",
    "data: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1,\"status\":\"completed\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"In a peaceful grove...\",\"annotations\":[]}]}],\"usage\":{\"input_tokens\":36,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":87,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":123}}}\n\n",
);

const ANTHROPIC_JSON: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello! {\"usage\":{\"input_tokens\":5}}"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":95,"cache_creation_input_tokens":2051,"cache_read_input_tokens":1800,"cache_creation":{"ephemeral_5m_input_tokens":1051,"ephemeral_1h_input_tokens":1000},"output_tokens":503,"service_tier":"standard"}}"#;

const ANTHROPIC_SSE: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":95,\"cache_creation_input_tokens\":2051,\"cache_read_input_tokens\":1800,\"cache_creation\":{\"ephemeral_5m_input_tokens\":1051,\"ephemeral_1h_input_tokens\":1000},\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},\"usage\":{\"output_tokens\":250}}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":503}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

/// Newer API versions repeat the input counts in message_delta.
const ANTHROPIC_SSE_FULL_DELTA: &str = concat!(
    "event: message_start\r\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":95,\"cache_creation_input_tokens\":2051,\"cache_read_input_tokens\":1800,\"output_tokens\":1}}}\r\n\r\n",
    "event: message_delta\r\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":95,\"cache_creation_input_tokens\":2051,\"cache_read_input_tokens\":1800,\"cache_creation\":{\"ephemeral_5m_input_tokens\":1051,\"ephemeral_1h_input_tokens\":1000},\"output_tokens\":503}}\r\n\r\n",
    "event: message_stop\r\n",
    "data: {\"type\":\"message_stop\"}\r\n\r\n",
);

const GEMINI_JSON: &str = r#"{"candidates":[{"content":{"parts":[{"text":"Hi there"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1200,"candidatesTokenCount":80,"totalTokenCount":1530,"cachedContentTokenCount":1000,"promptTokensDetails":[{"modality":"TEXT","tokenCount":1200}],"thoughtsTokenCount":250},"modelVersion":"gemini-2.5-flash","responseId":"abc"}"#;

/// `streamGenerateContent` without `alt=sse`: a JSON array of chunks.
const GEMINI_ARRAY: &str = "[{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 1200,\"candidatesTokenCount\": 2,\"totalTokenCount\": 1202,\"cachedContentTokenCount\": 1000},\"modelVersion\": \"gemini-2.5-flash\"}\r\n,\r\n{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" there\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 1200,\"candidatesTokenCount\": 80,\"totalTokenCount\": 1530,\"cachedContentTokenCount\": 1000,\"thoughtsTokenCount\": 250},\"modelVersion\": \"gemini-2.5-flash\"}\r\n]";

/// `alt=sse`, with the CRLF line endings Gemini sends.
const GEMINI_SSE: &str = concat!(
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 1200,\"candidatesTokenCount\": 2,\"totalTokenCount\": 1202,\"cachedContentTokenCount\": 1000},\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" there\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 1200,\"candidatesTokenCount\": 80,\"totalTokenCount\": 1530,\"cachedContentTokenCount\": 1000,\"thoughtsTokenCount\": 250},\"modelVersion\": \"gemini-2.5-flash\"}\r\n\r\n",
);

const MISTRAL_JSON: &str = r#"{"id":"cmpl-e5cc70bb28c444948073e77776eb30ef","object":"chat.completion","model":"mistral-small-latest","usage":{"prompt_tokens":16,"completion_tokens":34,"total_tokens":50},"created":1702256327,"choices":[{"index":0,"message":{"content":"Bonjour","tool_calls":null,"prefix":false,"role":"assistant"},"finish_reason":"stop"}]}"#;

const MISTRAL_SSE: &str = concat!(
    "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mistral-small-latest\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mistral-small-latest\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Bonjour\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"mistral-small-latest\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":16,\"total_tokens\":50,\"completion_tokens\":34}}\n\n",
    "data: [DONE]\n\n",
);

/// One golden response and the usage it must produce.
struct Golden {
    name: &'static str,
    format: UsageFormat,
    content_type: Option<&'static str>,
    body: &'static str,
    expected: Usage,
}

fn usage(
    input: u64,
    output: u64,
    cached: u64,
    cache_write: Option<(u64, u64)>,
    model: &str,
) -> Usage {
    Usage {
        input_tokens: Some(input),
        output_tokens: Some(output),
        cached_tokens: Some(cached),
        cache_write_tokens: cache_write.map(|(all, _)| all),
        cache_write_1h_tokens: cache_write.map(|(_, long)| long),
        model: Some(model.to_string()),
        note: None,
    }
}

fn goldens() -> Vec<Golden> {
    let openai = usage(1117, 46, 1024, None, "gpt-4o-mini-2024-07-18");
    let responses = usage(36, 87, 0, None, "gpt-4.1-2025-04-14");
    // 95 uncached + 1800 cache reads + 2051 cache writes.
    let anthropic = usage(
        3946,
        503,
        1800,
        Some((2051, 1000)),
        "claude-sonnet-4-5-20250929",
    );
    // 80 candidate tokens + 250 thinking tokens.
    let gemini = usage(1200, 330, 1000, None, "gemini-2.5-flash");
    let mistral = Usage {
        cached_tokens: None,
        ..usage(16, 34, 0, None, "mistral-small-latest")
    };
    vec![
        Golden {
            name: "openai chat json",
            format: UsageFormat::OpenAi,
            content_type: JSON,
            body: OPENAI_CHAT_JSON,
            expected: openai.clone(),
        },
        Golden {
            name: "openai chat sse",
            format: UsageFormat::OpenAi,
            content_type: SSE,
            body: OPENAI_CHAT_SSE,
            expected: openai,
        },
        Golden {
            name: "openai responses json",
            format: UsageFormat::OpenAi,
            content_type: JSON,
            body: OPENAI_RESPONSES_JSON,
            expected: responses.clone(),
        },
        Golden {
            name: "openai responses sse",
            format: UsageFormat::OpenAi,
            content_type: SSE,
            body: OPENAI_RESPONSES_SSE,
            expected: responses,
        },
        Golden {
            name: "anthropic json",
            format: UsageFormat::Anthropic,
            content_type: JSON,
            body: ANTHROPIC_JSON,
            expected: anthropic.clone(),
        },
        Golden {
            name: "anthropic sse",
            format: UsageFormat::Anthropic,
            content_type: SSE,
            body: ANTHROPIC_SSE,
            expected: anthropic.clone(),
        },
        Golden {
            name: "anthropic sse full delta",
            format: UsageFormat::Anthropic,
            content_type: SSE,
            body: ANTHROPIC_SSE_FULL_DELTA,
            expected: anthropic,
        },
        Golden {
            name: "gemini json",
            format: UsageFormat::Google,
            content_type: JSON,
            body: GEMINI_JSON,
            expected: gemini.clone(),
        },
        Golden {
            name: "gemini array",
            format: UsageFormat::Google,
            content_type: JSON,
            body: GEMINI_ARRAY,
            expected: gemini.clone(),
        },
        Golden {
            name: "gemini sse",
            format: UsageFormat::Google,
            content_type: SSE,
            body: GEMINI_SSE,
            expected: gemini,
        },
        Golden {
            name: "mistral json",
            format: UsageFormat::Mistral,
            content_type: JSON,
            body: MISTRAL_JSON,
            expected: mistral.clone(),
        },
        Golden {
            name: "mistral sse",
            format: UsageFormat::Mistral,
            content_type: SSE,
            body: MISTRAL_SSE,
            expected: mistral,
        },
    ]
}

fn tap_chunks(golden: &Golden, encoding: Option<&str>, chunks: &[&[u8]]) -> Usage {
    let mut tap = UsageTap::new(golden.format, golden.content_type, encoding);
    for chunk in chunks {
        tap.push(chunk);
    }
    tap.finish()
}

#[test]
fn goldens_give_expected_usage() {
    for golden in goldens() {
        let usage = tap_chunks(&golden, None, &[golden.body.as_bytes()]);
        assert_eq!(usage, golden.expected, "{}", golden.name);
    }
}

#[test]
fn goldens_split_at_every_byte_give_same_usage() {
    for golden in goldens() {
        let body = golden.body.as_bytes();
        for split in 0..=body.len() {
            let (head, tail) = body.split_at(split);
            let usage = tap_chunks(&golden, None, &[head, tail]);
            assert_eq!(usage, golden.expected, "{} split at {split}", golden.name);
        }
    }
}

#[test]
fn goldens_in_one_byte_chunks_give_same_usage() {
    for golden in goldens() {
        let chunks: Vec<&[u8]> = golden.body.as_bytes().chunks(1).collect();
        assert_eq!(
            tap_chunks(&golden, None, &chunks),
            golden.expected,
            "{}",
            golden.name
        );
    }
}

#[test]
fn goldens_without_content_type_are_sniffed() {
    for golden in goldens() {
        let mut tap = UsageTap::new(golden.format, None, None);
        tap.push(golden.body.as_bytes());
        assert_eq!(tap.finish(), golden.expected, "{}", golden.name);
    }
}

#[test]
fn sse_with_cr_only_line_endings() {
    let body = OPENAI_CHAT_SSE.replace('\n', "\r");
    let mut tap = UsageTap::new(UsageFormat::OpenAi, SSE, None);
    for chunk in body.as_bytes().chunks(7) {
        tap.push(chunk);
    }
    assert_eq!(tap.finish(), goldens()[1].expected);
}

#[test]
fn sse_multi_line_data_field() {
    let body = concat!(
        "data: {\"model\":\"mistral-small-latest\",\n",
        "data: \"usage\":{\"prompt_tokens\":16,\n",
        "data:\"completion_tokens\":34}}\n\n",
        "data: [DONE]\n\n"
    );
    let mut tap = UsageTap::new(UsageFormat::Mistral, SSE, None);
    tap.push(body.as_bytes());
    let usage = tap.finish();
    assert_eq!(usage.input_tokens, Some(16));
    assert_eq!(usage.output_tokens, Some(34));
}

#[test]
fn openai_stream_without_usage_is_unknown_not_zero() {
    let mut tap = UsageTap::new(UsageFormat::OpenAi, SSE, None);
    tap.push(OPENAI_CHAT_SSE_NO_USAGE.as_bytes());
    let usage = tap.finish();
    assert_eq!(usage.input_tokens, None);
    assert_eq!(usage.output_tokens, None);
    assert_eq!(usage.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(usage.note, None);
}

#[test]
fn streamed_and_unstreamed_calls_cost_the_same() {
    let prices = PriceTable::shipped().unwrap();
    let pairs = [
        ("openai", 0, 1),
        ("openai", 2, 3),
        ("anthropic", 4, 5),
        ("google", 7, 8),
        ("google", 7, 9),
        ("mistral", 10, 11),
    ];
    let goldens = goldens();
    for (provider, plain, streamed) in pairs {
        let plain = &goldens[plain];
        let streamed = &goldens[streamed];
        let plain_usage = tap_chunks(plain, None, &[plain.body.as_bytes()]);
        let streamed_usage = tap_chunks(streamed, None, &[streamed.body.as_bytes()]);
        assert_eq!(
            plain_usage, streamed_usage,
            "{} vs {}",
            plain.name, streamed.name
        );

        let model = plain_usage.model.clone().unwrap();
        let plain_cost = prices.cost(provider, &model, &plain_usage);
        let streamed_cost = prices.cost(provider, &model, &streamed_usage);
        assert!(
            plain_cost.is_some(),
            "{} has no price for {model}",
            plain.name
        );
        assert_eq!(plain_cost, streamed_cost, "{}", plain.name);
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut output = Vec::new();
    {
        let mut encoder = brotli::CompressorWriter::new(&mut output, 4096, 5, 22);
        encoder.write_all(data).unwrap();
    }
    output
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

type Encoder = fn(&[u8]) -> Vec<u8>;

const ENCODINGS: [(&str, Encoder); 5] = [
    ("gzip", gzip),
    ("deflate", zlib),
    ("deflate", raw_deflate),
    ("br", brotli),
    ("zstd", zstd),
];

#[test]
fn compressed_goldens_split_at_every_byte() {
    for golden in goldens() {
        for (encoding, encode) in ENCODINGS {
            let compressed = encode(golden.body.as_bytes());
            for split in 0..=compressed.len() {
                let (head, tail) = compressed.split_at(split);
                let usage = tap_chunks(&golden, Some(encoding), &[head, tail]);
                assert_eq!(
                    usage, golden.expected,
                    "{} {encoding} split at {split}",
                    golden.name
                );
            }
            let chunks: Vec<&[u8]> = compressed.chunks(1).collect();
            let usage = tap_chunks(&golden, Some(encoding), &chunks);
            assert_eq!(
                usage, golden.expected,
                "{} {encoding} 1-byte chunks",
                golden.name
            );
        }
    }
}

#[test]
fn large_compressed_body_needs_many_decoder_buffers() {
    // Several megabytes of generated text before the usage object make each
    // decoder refill its output buffer many times within one push.
    let filler = "lorem ipsum dolor sit amet ".repeat(200_000);
    let body = format!(
        r#"{{"model":"gpt-4o-mini","choices":[{{"message":{{"content":"{filler}"}}}}],"usage":{{"prompt_tokens":7,"completion_tokens":1500000}}}}"#
    );
    for (encoding, encode) in ENCODINGS {
        let compressed = encode(body.as_bytes());
        let mut tap = UsageTap::new(UsageFormat::OpenAi, JSON, Some(encoding));
        tap.push(&compressed);
        let usage = tap.finish();
        assert_eq!(usage.output_tokens, Some(1_500_000), "{encoding}");
        assert_eq!(usage.note, None, "{encoding}");
    }
}

#[test]
fn corrupt_compressed_body_gives_unknown_usage_with_note() {
    for golden in goldens() {
        for (encoding, encode) in ENCODINGS {
            let mut compressed = encode(golden.body.as_bytes());
            let middle = compressed.len() / 2;
            for byte in &mut compressed[middle..] {
                *byte ^= 0x5A;
            }
            let usage = tap_chunks(&golden, Some(encoding), &[&compressed]);
            assert_eq!(usage.input_tokens, None, "{} {encoding}", golden.name);
            assert_eq!(usage.output_tokens, None, "{} {encoding}", golden.name);
            assert_eq!(
                usage.note,
                Some(UsageNote::DecodeFailed),
                "{} {encoding}",
                golden.name
            );
        }
    }
}

#[test]
fn truncated_compressed_body_gives_unknown_usage() {
    let golden = &goldens()[0];
    for (encoding, encode) in ENCODINGS {
        let compressed = encode(golden.body.as_bytes());
        let usage = tap_chunks(
            golden,
            Some(encoding),
            &[&compressed[..compressed.len() - 3]],
        );
        assert_eq!(usage, Usage::unknown(UsageNote::DecodeFailed), "{encoding}");
    }
}

#[test]
fn uncompressed_body_labelled_gzip_fails_cleanly() {
    let golden = &goldens()[0];
    let usage = tap_chunks(golden, Some("gzip"), &[golden.body.as_bytes()]);
    assert_eq!(usage, Usage::unknown(UsageNote::DecodeFailed));
}

#[test]
fn unsupported_encodings_are_noted() {
    let golden = &goldens()[0];
    for encoding in ["compress", "gzip, br", "x-custom"] {
        let usage = tap_chunks(golden, Some(encoding), &[golden.body.as_bytes()]);
        assert_eq!(
            usage,
            Usage::unknown(UsageNote::UnsupportedEncoding),
            "{encoding}"
        );
    }
    let identity = tap_chunks(golden, Some("identity"), &[golden.body.as_bytes()]);
    assert_eq!(identity, golden.expected);
}

#[test]
fn decompression_bomb_stops_at_limit() {
    // 300 MiB of string content, more than the tap's 256 MiB limit.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    encoder.write_all(b"{\"text\":\"").unwrap();
    let block = vec![b'a'; 1024 * 1024];
    for _ in 0..300 {
        encoder.write_all(&block).unwrap();
    }
    let compressed = encoder.finish().unwrap();
    assert!(compressed.len() < 1024 * 1024);
    let mut tap = UsageTap::new(UsageFormat::OpenAi, JSON, Some("zstd"));
    tap.push(&compressed);
    assert_eq!(tap.finish(), Usage::unknown(UsageNote::DecodedBodyTooLarge));
}

#[test]
fn empty_compressed_body_is_not_an_error() {
    let mut tap = UsageTap::new(UsageFormat::OpenAi, JSON, Some("gzip"));
    tap.push(b"");
    assert_eq!(tap.finish(), Usage::default());
}

#[test]
fn truncated_streams_report_full_counts_or_none() {
    for golden in goldens() {
        let body = golden.body.as_bytes();
        let expected = &golden.expected;
        for end in 0..body.len() {
            let usage = tap_chunks(&golden, None, &[&body[..end]]);
            let context = format!("{} cut at {end}", golden.name);
            for (field, got, want) in [
                ("input", usage.input_tokens, expected.input_tokens),
                ("output", usage.output_tokens, expected.output_tokens),
                ("cached", usage.cached_tokens, expected.cached_tokens),
            ] {
                assert!(got.is_none() || got == want, "{context}: {field} {got:?}");
            }
            if usage.output_tokens.is_some() && usage.note.is_none() {
                assert_eq!(&usage, expected, "{context}");
            }
        }
    }
}

#[test]
fn gemini_stream_cut_before_finish_has_unknown_output() {
    let first_event_end = GEMINI_SSE.find("\r\n\r\n").unwrap() + 4;
    let mut tap = UsageTap::new(UsageFormat::Google, SSE, None);
    tap.push(&GEMINI_SSE.as_bytes()[..first_event_end]);
    let usage = tap.finish();
    assert_eq!(usage.input_tokens, Some(1200));
    assert_eq!(usage.output_tokens, None);
    assert_eq!(usage.note, Some(UsageNote::ResponseIncomplete));
}

#[test]
fn anthropic_stream_cut_before_final_delta() {
    let cut = ANTHROPIC_SSE.find("event: message_delta").unwrap();
    let mut tap = UsageTap::new(UsageFormat::Anthropic, SSE, None);
    tap.push(&ANTHROPIC_SSE.as_bytes()[..cut]);
    let usage = tap.finish();
    assert_eq!(usage.input_tokens, Some(3946));
    assert_eq!(usage.output_tokens, None);
    assert_eq!(usage.note, Some(UsageNote::ResponseIncomplete));
}

#[test]
fn random_bytes_never_panic() {
    let formats = [
        UsageFormat::OpenAi,
        UsageFormat::Anthropic,
        UsageFormat::Google,
        UsageFormat::Mistral,
    ];
    let encodings = [
        None,
        Some("gzip"),
        Some("deflate"),
        Some("br"),
        Some("zstd"),
    ];
    let content_types = [JSON, SSE, None];
    let mut rng = StdRng::seed_from_u64(0x006b_6579_706f_7274);
    for round in 0..400 {
        let format = formats[round % formats.len()];
        let encoding = encodings[(round / 4) % encodings.len()];
        let content_type = content_types[(round / 20) % content_types.len()];
        let mut tap = UsageTap::new(format, content_type, encoding);
        for _ in 0..rng.gen_range(1..20) {
            let len = rng.gen_range(0..2048);
            let chunk: Vec<u8> = (0..len).map(|_| random_byte(&mut rng)).collect();
            tap.push(&chunk);
        }
        let usage = tap.finish();
        assert_ne!(usage.note, Some(UsageNote::ParserFailed), "round {round}");
    }
}

/// Random bytes biased towards JSON and SSE syntax, so that the parsers
/// reach deep states.
fn random_byte(rng: &mut StdRng) -> u8 {
    const SYNTAX: &[u8] = b"{}[]\":,\\ \n\r0123456789-.eE:datusgeinmolrf";
    if rng.gen_bool(0.7) {
        SYNTAX[rng.gen_range(0..SYNTAX.len())]
    } else {
        rng.gen()
    }
}

#[test]
fn mutated_goldens_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    for golden in goldens() {
        for _ in 0..50 {
            let mut body = golden.body.as_bytes().to_vec();
            for _ in 0..rng.gen_range(1..8) {
                let index = rng.gen_range(0..body.len());
                body[index] = random_byte(&mut rng);
            }
            let cut = rng.gen_range(0..=body.len());
            let usage = tap_chunks(&golden, None, &[&body[..cut]]);
            assert_ne!(usage.note, Some(UsageNote::ParserFailed), "{}", golden.name);
        }
    }
}

#[test]
fn body_capture_keeps_decoded_redacted_text() {
    let body = r#"{"echo":"Authorization: Bearer sk-proj-Canary0123456789abcdefXYZ","usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
    let mut tap = UsageTap::with_body_capture(UsageFormat::OpenAi, JSON, Some("gzip"), 1024);
    tap.push(&gzip(body.as_bytes()));
    let (usage, captured) = tap.finish_with_body();
    assert_eq!(usage.output_tokens, Some(2));
    let captured = captured.unwrap();
    assert!(
        captured.as_str().contains("\"usage\""),
        "{}",
        captured.as_str()
    );
    assert!(
        !captured.as_str().contains("Canary0123456789"),
        "{}",
        captured.as_str()
    );
}

#[test]
fn tap_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<UsageTap>();
}
