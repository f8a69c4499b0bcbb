//! Cost arithmetic, model matching and price overrides.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on any unexpected error"
)]

use keyport_core::requestlog::{PriceError, PriceTable, Usage};

fn usage(input: u64, output: u64, cached: Option<u64>, write: Option<(u64, u64)>) -> Usage {
    Usage {
        input_tokens: Some(input),
        output_tokens: Some(output),
        cached_tokens: cached,
        cache_write_tokens: write.map(|(all, _)| all),
        cache_write_1h_tokens: write.map(|(_, long)| long),
        ..Usage::default()
    }
}

fn assert_cost(actual: Option<f64>, expected: f64) {
    let actual = actual.expect("expected a cost");
    assert!(
        (actual - expected).abs() < 1e-12,
        "cost {actual} != {expected}"
    );
}

#[test]
fn cached_input_uses_cached_price() {
    let prices = PriceTable::shipped().unwrap();
    // gpt-4o-mini: $0.15 input, $0.075 cached, $0.60 output per million.
    // 93 uncached + 1024 cached input, 46 output.
    let cost = prices.cost("openai", "gpt-4o-mini", &usage(1117, 46, Some(1024), None));
    assert_cost(cost, (93.0 * 0.15 + 1024.0 * 0.075 + 46.0 * 0.60) / 1e6);
}

#[test]
fn unknown_cache_counts_price_as_uncached() {
    let prices = PriceTable::shipped().unwrap();
    let cost = prices.cost(
        "mistral",
        "mistral-small-latest",
        &usage(16, 34, None, None),
    );
    assert_cost(cost, (16.0 * 0.10 + 34.0 * 0.30) / 1e6);
}

#[test]
fn anthropic_cache_writes_use_both_lifetimes() {
    let prices = PriceTable::shipped().unwrap();
    // claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 5-minute write,
    // $6 1-hour write, $15 output. 95 uncached, 1800 read, 1051 + 1000 written.
    let cost = prices.cost(
        "anthropic",
        "claude-sonnet-4-5-20250929",
        &usage(3946, 503, Some(1800), Some((2051, 1000))),
    );
    assert_cost(
        cost,
        (95.0 * 3.0 + 1800.0 * 0.30 + 1051.0 * 3.75 + 1000.0 * 6.0 + 503.0 * 15.0) / 1e6,
    );
}

#[test]
fn long_prompts_use_long_context_prices() {
    let prices = PriceTable::shipped().unwrap();
    let short = prices.cost(
        "google",
        "gemini-2.5-pro",
        &usage(200_000, 1000, Some(0), None),
    );
    assert_cost(short, (200_000.0 * 1.25 + 1000.0 * 10.0) / 1e6);
    let long = prices.cost(
        "google",
        "gemini-2.5-pro",
        &usage(250_000, 1000, Some(0), None),
    );
    assert_cost(long, (250_000.0 * 2.50 + 1000.0 * 15.0) / 1e6);
}

#[test]
fn unknown_model_or_provider_has_no_cost() {
    let prices = PriceTable::shipped().unwrap();
    let known = usage(10, 10, None, None);
    assert_eq!(prices.cost("openai", "gpt-unknown", &known), None);
    assert_eq!(prices.cost("groq", "gpt-4o-mini", &known), None);
    assert_eq!(prices.cost("openai", "gpt-4o-minimal", &known), None);
}

#[test]
fn unknown_tokens_have_no_cost() {
    let prices = PriceTable::shipped().unwrap();
    let no_output = Usage {
        output_tokens: None,
        ..usage(10, 0, None, None)
    };
    assert_eq!(prices.cost("openai", "gpt-4o", &no_output), None);
    let no_input = Usage {
        input_tokens: None,
        ..usage(0, 10, None, None)
    };
    assert_eq!(prices.cost("openai", "gpt-4o", &no_input), None);
}

#[test]
fn cached_tokens_without_cached_price_have_no_cost() {
    let prices = PriceTable::shipped().unwrap();
    assert_eq!(
        prices.cost(
            "google",
            "gemini-2.0-flash",
            &usage(100, 10, Some(50), None)
        ),
        None
    );
    assert!(prices
        .cost("google", "gemini-2.0-flash", &usage(100, 10, Some(0), None))
        .is_some());
}

#[test]
fn inconsistent_usage_has_no_cost() {
    let prices = PriceTable::shipped().unwrap();
    assert_eq!(
        prices.cost("openai", "gpt-4o", &usage(10, 10, Some(11), None)),
        None
    );
}

#[test]
fn dated_names_match_their_family() {
    let prices = PriceTable::shipped().unwrap();
    let cases = [
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("anthropic", "claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("google", "gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("google", "models/gemini-2.5-flash", "gemini-2.5-flash"),
    ];
    for (provider, model, family) in cases {
        assert_eq!(
            prices.lookup(provider, model),
            prices.lookup(provider, family),
            "{model}"
        );
        assert!(prices.lookup(provider, model).is_some(), "{model}");
    }
    assert_ne!(
        prices.lookup("openai", "gpt-4o-2024-08-06"),
        prices.lookup("openai", "gpt-4o-mini")
    );
    assert_eq!(
        prices.lookup("anthropic", "claude-sonnet-4-7-20260101"),
        None
    );
}

#[test]
fn override_file_adds_and_replaces_prices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.toml");
    std::fs::write(
        &path,
        r#"
[providers.azure]
"gpt-4o" = { input = 2.75, output = 11.0 }

[providers.openai]
"gpt-4o" = { input = 1.0, output = 2.0, cached_input = 0.5 }
"#,
    )
    .unwrap();
    let prices = PriceTable::load(&path).unwrap();
    assert_eq!(prices.override_file(), Some(path.as_path()));
    assert_eq!(prices.date(), PriceTable::shipped().unwrap().date());

    let tokens = usage(1_000_000, 1_000_000, Some(0), None);
    assert_cost(prices.cost("azure", "gpt-4o", &tokens), 13.75);
    assert_cost(prices.cost("openai", "gpt-4o", &tokens), 3.0);
    // Entries the file does not mention keep their shipped prices.
    assert_cost(prices.cost("openai", "gpt-4o-mini", &tokens), 0.75);
}

#[test]
fn missing_override_file_gives_shipped_prices() {
    let dir = tempfile::tempdir().unwrap();
    let prices = PriceTable::load(&dir.path().join("prices.toml")).unwrap();
    assert_eq!(prices.override_file(), None);
    assert!(prices.lookup("openai", "gpt-4o").is_some());
}

#[test]
fn override_unknown_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.toml");
    std::fs::write(
        &path,
        "[providers.openai]\n\"gpt-4o\" = { input = 1.0, output = 2.0, cached = 0.5 }\n",
    )
    .unwrap();
    let error = PriceTable::load(&path).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, PriceError::Invalid { .. }), "{message}");
    assert!(message.contains("cached"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");

    std::fs::write(&path, "currency = \"EUR\"\n").unwrap();
    let message = PriceTable::load(&path).unwrap_err().to_string();
    assert!(message.contains("currency"), "{message}");
}

#[test]
fn override_file_with_negative_price_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.toml");
    std::fs::write(
        &path,
        "[providers.openai]\n\"gpt-x\" = { input = -1.0, output = 2.0 }\n",
    )
    .unwrap();
    let message = PriceTable::load(&path).unwrap_err().to_string();
    assert!(message.contains("gpt-x"), "{message}");
    assert!(message.contains("input"), "{message}");
}
