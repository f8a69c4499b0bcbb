//! Fills a request log with generated rows and prints how long the first
//! page of each kind of filtered query takes, with SQLite's query plan.
//!
//! ```sh
//! cargo run --release -p keyport-core --example requestlog_bench -- 1000000
//! ```
//!
//! The argument is the row count (default 1,000,000). The log lives in a
//! temporary folder that is deleted at the end.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark reports its timings on standard output"
)]

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use keyport_core::requestlog::{
    ErrorKind, GroupBy, LogFilter, LogSettings, PageRequest, RequestLog, RequestRecord, StatusClass,
};

const PROVIDERS: [&str; 4] = ["openai", "anthropic", "google", "mistral"];
const MODELS: [&str; 8] = [
    "gpt-4o-mini",
    "gpt-4.1",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "mistral-small-latest",
    "a-rare-model",
];
const TOKENS: [&str; 5] = ["ci", "notebook", "kaiban-app", "scripts", "browser"];
const PATHS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    "/v1/responses",
];

/// Builds a deterministic record for row `index`, with start times spread
/// over the last 30 days.
fn generated(index: u64, rows: u64) -> RequestRecord {
    let span_ms = 30 * 86_400_000_i64;
    let start_ms = Utc::now().timestamp_millis() - span_ms + (index as i64 * span_ms / rows as i64);
    let start = Utc
        .timestamp_millis_opt(start_ms)
        .single()
        .unwrap_or_else(Utc::now);
    let mix = index.wrapping_mul(2_654_435_761);

    let provider = PROVIDERS[(mix % 4) as usize];
    // One row in 10,000 uses the rare model, to time a selective filter.
    let model = if index % 10_000 == 7 {
        MODELS[7]
    } else {
        MODELS[((mix >> 8) % 7) as usize]
    };
    let mut record = RequestRecord::new(start, provider, "POST", PATHS[((mix >> 4) % 4) as usize]);
    record.model = Some(model.to_string());
    record.token_name = Some(TOKENS[((mix >> 12) % 5) as usize].to_string());
    record.streamed = mix.is_multiple_of(3);

    match (mix >> 16) % 50 {
        0 => record.error_kind = Some(ErrorKind::UPSTREAM_TIMEOUT),
        1..=3 => record.status = Some(429),
        4 => record.status = Some(500),
        _ => record.status = Some(200),
    }

    record.latency_ms = 200 + (mix >> 20) % 5000;
    record.ttfb_ms = Some(100 + (mix >> 24) % 900);
    record.request_bytes = 500 + (mix >> 28) % 20_000;
    record.response_bytes = 300 + (mix >> 32) % 10_000;
    record.input_tokens = Some(100 + (mix >> 36) % 4000);
    record.output_tokens = Some(10 + (mix >> 40) % 1000);
    record.cached_tokens = Some(0);
    record.cost_usd = Some(0.0001 * ((mix >> 44) % 100) as f64);
    record
}

fn time_first_page(log: &RequestLog, name: &str, filter: &LogFilter) {
    // The first run warms SQLite's page cache, as an open log window would.
    let _ = log.query(filter, PageRequest::first(50));
    let mut best = Duration::MAX;
    let mut rows = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let page = log.query(filter, PageRequest::first(50));
        best = best.min(started.elapsed());
        rows = page.map(|page| page.items.len()).unwrap_or(0);
    }
    let plan = log.query_plan(filter).unwrap_or_default().join("; ");
    println!(
        "{name:<34} {:>9.2} ms  {rows:>3} rows  {plan}",
        best.as_secs_f64() * 1000.0
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u64 = match std::env::args().nth(1) {
        Some(text) => text.parse()?,
        None => 1_000_000,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("requests.sqlite3");
    let settings = LogSettings {
        retention_days: 0,
        max_rows: 0,
        queue_capacity: 50_000,
        ..LogSettings::default()
    };
    let log = RequestLog::open(&path, settings)?;
    let recorder = log.recorder();

    let started = Instant::now();
    let mut index = 0;
    while index < rows {
        let end = (index + 20_000).min(rows);
        for row in index..end {
            recorder.record(generated(row, rows));
        }
        // Waiting per block keeps the queue from overflowing.
        log.flush()?;
        index = end;
    }
    let stats = log.stats();
    let elapsed = started.elapsed();
    println!(
        "inserted {} rows in {:.1} s ({:.0} rows/s), {} dropped",
        stats.rows_written,
        elapsed.as_secs_f64(),
        stats.rows_written as f64 / elapsed.as_secs_f64(),
        stats.rows_dropped
    );
    println!(
        "database size {:.1} MiB",
        std::fs::metadata(&path)?.len() as f64 / 1048576.0
    );

    let now = Utc::now();
    let cases = [
        ("no filter", LogFilter::default()),
        (
            "provider = anthropic",
            LogFilter {
                provider: Some("anthropic".into()),
                ..LogFilter::default()
            },
        ),
        (
            "model = gemini-2.5-pro",
            LogFilter {
                model: Some("gemini-2.5-pro".into()),
                ..LogFilter::default()
            },
        ),
        (
            "model = a-rare-model",
            LogFilter {
                model: Some("a-rare-model".into()),
                ..LogFilter::default()
            },
        ),
        (
            "token = scripts",
            LogFilter {
                token_name: Some("scripts".into()),
                ..LogFilter::default()
            },
        ),
        (
            "status = 5xx",
            LogFilter {
                status: Some(StatusClass::ServerError),
                ..LogFilter::default()
            },
        ),
        (
            "status = error",
            LogFilter {
                status: Some(StatusClass::Failed),
                ..LogFilter::default()
            },
        ),
        (
            "last 24 hours",
            LogFilter {
                since: Some(now - chrono::Duration::hours(24)),
                ..LogFilter::default()
            },
        ),
        (
            "10 to 9 days ago",
            LogFilter {
                since: Some(now - chrono::Duration::days(10)),
                until: Some(now - chrono::Duration::days(9)),
                ..LogFilter::default()
            },
        ),
        (
            "path contains 'messages'",
            LogFilter {
                path_contains: Some("messages".into()),
                ..LogFilter::default()
            },
        ),
        (
            "path contains 'nowhere'",
            LogFilter {
                path_contains: Some("nowhere".into()),
                ..LogFilter::default()
            },
        ),
        (
            "provider + model + 4xx + 7 days",
            LogFilter {
                provider: Some("openai".into()),
                model: Some("gpt-4.1".into()),
                status: Some(StatusClass::ClientError),
                since: Some(now - chrono::Duration::days(7)),
                ..LogFilter::default()
            },
        ),
    ];
    println!("\nfirst page of 50 rows, best of 5 runs:");
    for (name, filter) in &cases {
        time_first_page(&log, name, filter);
    }

    // A deep page: the cursor must seek, not rescan.
    let mut page = log.query(&LogFilter::default(), PageRequest::first(1000))?;
    for _ in 0..20 {
        page = log.query(
            &LogFilter::default(),
            PageRequest {
                limit: 1000,
                after: page.next,
            },
        )?;
    }
    let started = Instant::now();
    let deep = log.query(
        &LogFilter::default(),
        PageRequest {
            limit: 50,
            after: page.next,
        },
    )?;
    println!(
        "{:<34} {:>9.2} ms  {:>3} rows",
        "page after 21,000 rows",
        started.elapsed().as_secs_f64() * 1000.0,
        deep.items.len()
    );

    println!("\ntotals over all rows:");
    for group in [
        GroupBy::Day,
        GroupBy::Provider,
        GroupBy::Model,
        GroupBy::Token,
    ] {
        let started = Instant::now();
        let totals = log.totals(&LogFilter::default(), group)?;
        println!(
            "{:<34} {:>9.2} ms  {:>3} groups",
            format!("{group:?}"),
            started.elapsed().as_secs_f64() * 1000.0,
            totals.len()
        );
    }

    let started = Instant::now();
    let deleted = {
        let limited = LogSettings {
            max_rows: rows / 2,
            ..log.settings().clone()
        };
        drop(log);
        let log = RequestLog::open(&path, limited)?;
        log.flush()?;
        log.stats().rows_deleted
    };
    println!(
        "\nretention to {} rows deleted {deleted} rows in {:.1} s",
        rows / 2,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
