//! Measures what client token limits cost per request: the token lookup
//! with and without limits, the limiter's admission with every limit set,
//! and counting a finished call's usage and cost.
//!
//! ```sh
//! cargo run --release -p keyport-core --example limits_bench
//! ```
//!
//! Each figure is the median of 5 runs of 200,000 calls on one thread,
//! plus one run of admissions on 2 threads at once for the contended case.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a benchmark reports its timings on standard output and stops on setup errors"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use keyport_core::limits::{Limiter, ManualClock, TokenLimits};
use keyport_core::requestlog::{PriceTable, Usage};
use keyport_core::secret::ExposeSecret;
use keyport_core::tokens::TokenStore;

const CALLS: u32 = 200_000;
const RUNS: usize = 5;
const STEP: Duration = Duration::from_millis(2);

/// Limits high enough that no call in the benchmark is rejected.
fn every_limit() -> TokenLimits {
    TokenLimits {
        requests_per_minute: Some(100_000),
        tokens_per_minute: Some(10_000_000_000),
        daily_usd: Some(1e12),
        monthly_usd: Some(1e12),
        warn_at_percent: Some(100),
        allow: vec![
            "anthropic:*".into(),
            "*:*embedding*".into(),
            "openai:gpt-4o-mini*".into(),
        ],
    }
}

/// Returns the median time per call of `RUNS` runs of `CALLS` calls.
fn per_call(mut call: impl FnMut()) -> Duration {
    let mut runs: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..CALLS {
                call();
            }
            start.elapsed() / CALLS
        })
        .collect();
    runs.sort();
    runs[RUNS / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = TokenStore::load(&dir.path().join("tokens.json")).unwrap();
    let free = store.create("free").unwrap();
    let limited = store.create("limited").unwrap();
    store.set_limits("limited", Some(every_limit())).unwrap();
    let verifier = store.verifier();

    let free_lookup = per_call(|| {
        let client = verifier.verify_client(black_box(free.expose_secret()));
        black_box(client.and_then(|client| client.limits).is_some());
    });
    let limited_lookup = per_call(|| {
        let client = verifier.verify_client(black_box(limited.expose_secret()));
        black_box(client.and_then(|client| client.limits).is_some());
    });

    let prices = Arc::new(PriceTable::shipped().unwrap());
    // Every call moves the clock 2 ms, so 100,000 requests per minute
    // never fill and every admission passes all checks.
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let limiter = Arc::new(Limiter::new(clock.clone(), Some(prices)));
    let client = verifier.verify_client(limited.expose_secret()).unwrap();
    let limits = client.limits.clone().unwrap();
    let admit = per_call(|| {
        clock.advance(STEP);
        let admission = limiter.admit(
            &client.name,
            &limits,
            "openai",
            Some("gpt-4o-mini-2024-07-18"),
        );
        assert!(admission.is_ok(), "{admission:?}");
    });

    let admission = limiter
        .admit(&client.name, &limits, "openai", Some("gpt-4o-mini"))
        .unwrap();
    let usage = Usage {
        input_tokens: Some(1200),
        output_tokens: Some(300),
        ..Usage::default()
    };
    let record = per_call(|| {
        limiter.record_usage(&admission, "openai", Some("gpt-4o-mini"), black_box(&usage));
    });

    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..CALLS {
                    clock.advance(STEP);
                    let admission =
                        limiter.admit(&client.name, &limits, "anthropic", Some("claude-3-5-haiku"));
                    assert!(admission.is_ok(), "{admission:?}");
                }
            });
        }
    });
    let contended = start.elapsed() / (2 * CALLS);

    println!(
        "token lookup without limits   {:>7.0} ns",
        free_lookup.as_nanos()
    );
    println!(
        "token lookup with limits      {:>7.0} ns",
        limited_lookup.as_nanos()
    );
    println!("admission with every limit    {:>7.0} ns", admit.as_nanos());
    println!(
        "admission, 2 threads at once  {:>7.0} ns per call (wall time / calls)",
        contended.as_nanos()
    );
    println!(
        "usage and cost of a call      {:>7.0} ns",
        record.as_nanos()
    );
}
