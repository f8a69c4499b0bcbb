//! The fuzz targets' properties on seeded random input, so that every test
//! run covers them without a fuzzer. Inputs are built from fragments that
//! matter to the code under test (separators, percent escapes, dot
//! segments, credential names) mixed with random bytes. Each loop is
//! bounded; a failure prints the seed and the input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod invariants;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x6b65_7970_6f72_7401;

/// Fragments for request targets, queries and headers.
const REQUEST_FRAGMENTS: &[&str] = &[
    "/",
    "/",
    "?",
    "&",
    "&",
    "=",
    "=",
    "%",
    "%2e",
    "%2E",
    "%2F",
    "%3A",
    "%3a",
    "%25",
    "%6B",
    "..",
    ".",
    ":",
    "key",
    "key",
    "k%65y",
    "KEY",
    "token",
    "alt=sse",
    "foo=1%2B2",
    "a",
    "Z",
    "0",
    "models/gemini-2.5-flash:streamGenerateContent",
    "v1",
    "chat/completions",
    " ",
    "\"",
    "\\",
    "#",
    "~",
    "@",
    "[",
    "]",
    "!",
    "$",
    "'",
    "(",
    "*",
    "+",
    ",",
    ";",
    "é",
    "\u{7f}",
    "\t",
    "{",
    "|",
    "^",
    "`",
    "<",
    ">",
    "\0",
    "\0",
    "\0",
    "authorization",
    "Authorization",
    "Bearer ",
    "bearer ",
    "Basic ",
    "x-api-key",
    "x-goog-api-key",
    "X-Goog-Api-Key",
    "api-key",
    "cookie",
    "proxy-authorization",
    "x-custom-key",
    "sec-websocket-protocol",
    "openai-insecure-api-key.",
    "kp_x",
    "kp_y",
    "//",
    "/llm/",
    "openai",
    "google",
    "qry",
];

/// Fragments of `config.toml`.
const CONFIG_FRAGMENTS: &[&str] = &[
    "[proxy]\n",
    "[providers.",
    "openai",
    "acme",
    "Acme",
    "ollama",
    "]\n",
    "base_url = ",
    "\"http://127.0.0.1:9/x\"",
    "\"https://api.example.test/v1/\"",
    "\"http://[::1]:1\"",
    "\"ftp://x\"",
    "\"http://u:p@x\"",
    "\"http://x/?a=1\"",
    "\"http://x/a/../b\"",
    "auth = ",
    "\"query\"",
    "\"header\"",
    "\"bearer\"",
    "\"none\"",
    "\"anthropic\"",
    "auth_name = ",
    "\"key\"",
    "\"X-Api-Key\"",
    "port = ",
    "bind = ",
    "\"::1\"",
    "\"0.0.0.0\"",
    "allowed_origins = [",
    "\"http://localhost:*\"",
    "\"https://app.example.test:8443\"",
    "\"http://[::1]:*\"",
    "]",
    ", ",
    "\n",
    "\n",
    "max_request_body_mib = ",
    "upstream_connect_timeout_secs = ",
    "upstream_response_timeout_secs = ",
    "upstream_idle_timeout_secs = ",
    "client_header_timeout_secs = ",
    "require_token = ",
    "true",
    "false",
    "error_format = ",
    "\"google\"",
    "\"mistral\"",
    "0",
    "1",
    "65535",
    "86400",
    "86401",
    "4096",
    "-1",
    "1e3",
    "\"",
    "#",
    "=",
    "{",
    "}",
    "'",
    "\\u00e9",
];

/// Builds one input of up to `max_pieces` fragments and random bytes.
fn input(rng: &mut StdRng, fragments: &[&str], max_pieces: usize) -> Vec<u8> {
    let pieces = rng.gen_range(0..=max_pieces);
    let mut data = Vec::new();
    for _ in 0..pieces {
        if rng.gen_bool(0.15) {
            data.push(rng.gen());
        } else {
            let fragment = fragments[rng.gen_range(0..fragments.len())];
            data.extend_from_slice(fragment.as_bytes());
        }
    }
    data
}

/// A property check over raw input bytes.
type Check = fn(&[u8]);

/// Runs `check` on `rounds` inputs and names the failing one.
fn run(name: &str, rounds: usize, fragments: &[&str], max_pieces: usize, check: Check) {
    let mut rng = StdRng::seed_from_u64(SEED);
    for round in 0..rounds {
        let data = input(&mut rng, fragments, max_pieces);
        let outcome = std::panic::catch_unwind(|| check(&data));
        if outcome.is_err() {
            panic!(
                "{name} failed on round {round} (seed {SEED:#x}) for input {:?}",
                String::from_utf8_lossy(&data)
            );
        }
    }
}

#[test]
fn routing_properties_hold() {
    run(
        "check_route",
        20_000,
        REQUEST_FRAGMENTS,
        24,
        invariants::check_route,
    );
}

#[test]
fn credential_properties_hold() {
    run(
        "check_credentials",
        20_000,
        REQUEST_FRAGMENTS,
        40,
        invariants::check_credentials,
    );
}

#[test]
fn config_properties_hold() {
    run(
        "check_config",
        5_000,
        CONFIG_FRAGMENTS,
        40,
        invariants::check_config,
    );
}

/// Pieces of provider response bodies, for the usage parser.
const USAGE_FRAGMENTS: &[&str] = &[
    "data: ",
    "event: message_delta\n",
    "\n\n",
    "\r\n",
    "\n",
    ": keep-alive\n\n",
    "data: [DONE]\n\n",
    "{\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}",
    "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5}}}",
    "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}",
    "{\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":2}}",
    "\"model\":\"gpt-4o-mini\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "\\u0041",
    "12345678901234567890",
];

#[test]
fn usage_properties_hold() {
    run(
        "check_usage",
        10_000,
        USAGE_FRAGMENTS,
        40,
        invariants::check_usage,
    );
}

/// The seed inputs of the fuzz corpora must keep passing too.
#[test]
fn fuzz_corpus_seeds_pass() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let targets: [(&str, Check); 4] = [
        ("route", invariants::check_route),
        ("credentials", invariants::check_credentials),
        ("config", invariants::check_config),
        ("usage", invariants::check_usage),
    ];
    for (target, check) in targets {
        let dir = root.join(target);
        let mut seeds = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            check(&std::fs::read(&path).unwrap());
            seeds += 1;
        }
        assert!(seeds > 0, "no seeds in {}", dir.display());
    }
}
