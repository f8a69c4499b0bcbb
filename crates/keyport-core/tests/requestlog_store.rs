//! The SQLite request log: persistence, queries, totals, retention, the
//! live feed, the never-blocking recorder and failure handling.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test on any unexpected error"
)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use keyport_core::requestlog::{
    CapturedBody, ErrorKind, ExportFormat, GroupBy, LogError, LogFilter, LogSettings,
    LoggedRequest, PageRequest, RequestLog, RequestRecord, StatusClass, UsageNote,
};

const PROVIDERS: [&str; 3] = ["openai", "anthropic", "google"];
const MODELS: [&str; 4] = [
    "gpt-4o-mini",
    "claude-sonnet-4-5",
    "gemini-2.5-flash",
    "gpt-4o",
];
const TOKENS: [Option<&str>; 3] = [Some("ci"), Some("notebook"), None];
const PATHS: [&str; 3] = [
    "/v1/chat/completions",
    "/v1/messages?beta=true",
    "/v1beta/models/gemini-2.5-flash:generateContent?key=AIzaSyCanaryKey0123456789abcdefghijk",
];

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn settings() -> LogSettings {
    LogSettings {
        retention_days: 0,
        max_rows: 0,
        ..LogSettings::default()
    }
}

fn open(dir: &Path, settings: LogSettings) -> RequestLog {
    RequestLog::open(&dir.join("requests.sqlite3"), settings).unwrap()
}

/// Builds a varied record from `index`, which decides every field, so that
/// tests can recompute their expectations from the same index.
fn sample(index: usize) -> RequestRecord {
    // Several records share a start time, so ordering needs the id too.
    let start = base_time() + chrono::Duration::minutes((index / 3) as i64 * 37);
    let mut record = RequestRecord::new(
        start,
        PROVIDERS[index % 3],
        if index.is_multiple_of(5) {
            "GET"
        } else {
            "POST"
        },
        PATHS[index % 3],
    );
    record.model = Some(MODELS[index % 4].to_string());
    record.token_name = TOKENS[index % 3].map(str::to_string);
    record.origin = index
        .is_multiple_of(2)
        .then(|| "http://localhost:5173".to_string());
    record.streamed = index % 2 == 1;

    match index % 7 {
        0 => {
            record.status = None;
            record.error_kind = Some(ErrorKind::UPSTREAM_UNREACHABLE);
        }
        1 => record.status = Some(429),
        2 => record.status = Some(503),
        3 => {
            record.status = Some(200);
            record.error_kind = Some(ErrorKind::INCOMPLETE_STREAM);
            record.usage_note = Some(UsageNote::ResponseIncomplete);
        }
        4 => {
            record.status = Some(401);
            record.error_kind = Some(ErrorKind::new("token_invalid"));
        }
        _ => record.status = Some(200),
    }

    record.latency_ms = 100 + index as u64;
    record.ttfb_ms = Some(10 + index as u64);
    record.request_bytes = 1000 + index as u64;
    record.response_bytes = 2000 + index as u64;

    if index % 4 != 3 {
        record.input_tokens = Some(100 + index as u64);
        record.output_tokens = Some(10 + index as u64);
        record.cached_tokens = Some(index as u64 % 50);
        record.cache_write_tokens = Some(0);
        record.cost_usd = Some(0.001 * index as f64);
    }
    record.upstream_request_id = Some(format!("req_{index}"));
    record
}

/// Reads every row matching `filter` page by page.
fn all_pages(log: &RequestLog, filter: &LogFilter, page_size: u32) -> Vec<LoggedRequest> {
    let mut rows = Vec::new();
    let mut page = PageRequest::first(page_size);
    loop {
        let result = log.query(filter, page).unwrap();
        assert!(result.items.len() <= page_size as usize);
        rows.extend(result.items);
        match result.next {
            Some(cursor) => page.after = Some(cursor),
            None => return rows,
        }
    }
}

fn record_all(log: &RequestLog, records: impl IntoIterator<Item = RequestRecord>) {
    let recorder = log.recorder();
    for record in records {
        recorder.record(record);
    }
    log.flush().unwrap();
}

#[test]
fn reopen_keeps_rows_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<RequestRecord> = (0..30).map(sample).collect();
    {
        let log = open(dir.path(), settings());
        record_all(&log, records.clone());
        assert_eq!(log.stats().rows_written, 30);
    }

    let log = open(dir.path(), settings());
    let rows = all_pages(&log, &LogFilter::default(), 1000);
    assert_eq!(rows.len(), 30);
    let mut stored: Vec<LoggedRequest> = rows;
    stored.sort_by_key(|row| row.id);
    for (row, expected) in stored.iter().zip(&records) {
        assert_eq!(&row.record, expected, "row {}", row.id);
    }
}

#[cfg(unix)]
#[test]
fn database_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), settings());
    record_all(&log, [sample(1)]);
    for name in [
        "requests.sqlite3",
        "requests.sqlite3-wal",
        "requests.sqlite3-shm",
    ] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[test]
fn path_is_stored_without_query() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), settings());
    record_all(&log, [sample(2)]);
    let rows = all_pages(&log, &LogFilter::default(), 10);
    assert_eq!(
        rows[0].record.path.as_str(),
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
}

fn matches(record: &RequestRecord, filter: &LogFilter) -> bool {
    let class = match (&record.error_kind, record.status) {
        (Some(_), _) | (None, None) => StatusClass::Failed,
        (None, Some(status)) => match status / 100 {
            1 => StatusClass::Informational,
            2 => StatusClass::Success,
            3 => StatusClass::Redirection,
            4 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        },
    };
    filter.since.is_none_or(|since| record.start_time >= since)
        && filter.until.is_none_or(|until| record.start_time < until)
        && filter
            .provider
            .as_ref()
            .is_none_or(|p| &record.provider == p)
        && filter
            .model
            .as_ref()
            .is_none_or(|m| record.model.as_ref() == Some(m))
        && filter
            .token_name
            .as_ref()
            .is_none_or(|t| record.token_name.as_ref() == Some(t))
        && filter.status.is_none_or(|status| status == class)
        && filter.path_contains.as_ref().is_none_or(|text| {
            record
                .path
                .as_str()
                .to_ascii_lowercase()
                .contains(&text.to_ascii_lowercase())
        })
}

fn filters() -> Vec<LogFilter> {
    let base = base_time();
    vec![
        LogFilter::default(),
        LogFilter {
            provider: Some("anthropic".into()),
            ..LogFilter::default()
        },
        LogFilter {
            model: Some("gpt-4o".into()),
            ..LogFilter::default()
        },
        LogFilter {
            token_name: Some("ci".into()),
            ..LogFilter::default()
        },
        LogFilter {
            status: Some(StatusClass::Success),
            ..LogFilter::default()
        },
        LogFilter {
            status: Some(StatusClass::ClientError),
            ..LogFilter::default()
        },
        LogFilter {
            status: Some(StatusClass::ServerError),
            ..LogFilter::default()
        },
        LogFilter {
            status: Some(StatusClass::Failed),
            ..LogFilter::default()
        },
        LogFilter {
            path_contains: Some("MESSAGES".into()),
            ..LogFilter::default()
        },
        LogFilter {
            path_contains: Some("%".into()),
            ..LogFilter::default()
        },
        LogFilter {
            since: Some(base + chrono::Duration::hours(5)),
            until: Some(base + chrono::Duration::hours(30)),
            ..LogFilter::default()
        },
        LogFilter {
            provider: Some("openai".into()),
            model: Some("gpt-4o-mini".into()),
            status: Some(StatusClass::Success),
            since: Some(base + chrono::Duration::hours(2)),
            ..LogFilter::default()
        },
    ]
}

#[test]
fn filters_and_pages_match_expected_rows() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), settings());
    let records: Vec<RequestRecord> = (0..300).map(sample).collect();
    record_all(&log, records.clone());

    for filter in filters() {
        // Ids are assigned in insertion order, starting at 1.
        let mut expected: Vec<(DateTime<Utc>, i64)> = records
            .iter()
            .enumerate()
            .filter(|(_, record)| matches(record, &filter))
            .map(|(index, record)| (record.start_time, index as i64 + 1))
            .collect();
        expected.sort_by(|a, b| b.cmp(a));
        let expected_ids: Vec<i64> = expected.iter().map(|(_, id)| *id).collect();

        for page_size in [1, 7, 50, 1000] {
            let rows = all_pages(&log, &filter, page_size);
            let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
            assert_eq!(
                ids, expected_ids,
                "filter {filter:?}, page size {page_size}"
            );
            let unique: HashSet<i64> = ids.iter().copied().collect();
            assert_eq!(unique.len(), ids.len(), "duplicates for {filter:?}");
        }
    }
}

#[test]
fn pagination_stable_under_new_rows() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), settings());
    record_all(&log, (0..40).map(sample));

    let first = log
        .query(&LogFilter::default(), PageRequest::first(15))
        .unwrap();
    // Newer rows written after the first page do not shift later pages.
    record_all(&log, (40..60).map(sample));
    let mut seen: Vec<i64> = first.items.iter().map(|row| row.id).collect();
    let mut page = PageRequest {
        limit: 15,
        after: first.next,
    };
    while page.after.is_some() {
        let result = log.query(&LogFilter::default(), page).unwrap();
        seen.extend(result.items.iter().map(|row| row.id));
        page.after = result.next;
    }
    let mut expected: Vec<i64> = (1..=40).collect();
    expected.sort_by_key(|id| std::cmp::Reverse((sample(*id as usize - 1).start_time, *id)));
    assert_eq!(seen, expected);
}

/// Requests, input, output, usage unknown, cost and cost unknown.
type Expected = (u64, u64, u64, u64, f64, u64);

#[test]
fn totals_per_group_match_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), settings());
    let records: Vec<RequestRecord> = (0..300).map(sample).collect();
    record_all(&log, records.clone());

    type KeyOf = fn(&RequestRecord) -> Option<String>;
    let groups: [(GroupBy, KeyOf); 4] = [
        (GroupBy::Day, |r| {
            Some(r.start_time.date_naive().to_string())
        }),
        (GroupBy::Provider, |r| Some(r.provider.clone())),
        (GroupBy::Model, |r| r.model.clone()),
        (GroupBy::Token, |r| r.token_name.clone()),
    ];
    for filter in [
        LogFilter::default(),
        LogFilter {
            provider: Some("google".into()),
            ..LogFilter::default()
        },
    ] {
        for (group, key_of) in groups {
            let mut expected: BTreeMap<Option<String>, Expected> = BTreeMap::new();
            for record in records.iter().filter(|record| matches(record, &filter)) {
                let entry = expected.entry(key_of(record)).or_default();
                entry.0 += 1;
                entry.1 += record.input_tokens.unwrap_or(0);
                entry.2 += record.output_tokens.unwrap_or(0);
                entry.3 +=
                    u64::from(record.input_tokens.is_none() || record.output_tokens.is_none());
                entry.4 += record.cost_usd.unwrap_or(0.0);
                entry.5 += u64::from(record.cost_usd.is_none());
            }
            let totals = log.totals(&filter, group).unwrap();
            assert_eq!(totals.len(), expected.len(), "{group:?}");
            for (totals, (key, want)) in totals.iter().zip(&expected) {
                assert_eq!(&totals.key, key, "{group:?}");
                assert_eq!(totals.requests, want.0, "{group:?} {key:?}");
                assert_eq!(totals.input_tokens, want.1, "{group:?} {key:?}");
                assert_eq!(totals.output_tokens, want.2, "{group:?} {key:?}");
                assert_eq!(totals.usage_unknown, want.3, "{group:?} {key:?}");
                assert!((totals.cost_usd - want.4).abs() < 1e-9, "{group:?} {key:?}");
                assert_eq!(totals.cost_unknown, want.5, "{group:?} {key:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_receives_new_rows() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), settings());
    let mut feed = log.subscribe();
    let recorder = log.recorder();
    for index in 0..5 {
        recorder.record(sample(index));
    }
    for index in 0..5 {
        let row = tokio::time::timeout(Duration::from_secs(10), feed.recv())
            .await
            .expect("no row within 10 s")
            .unwrap();
        assert_eq!(row.id, index as i64 + 1);
        assert_eq!(row.record, sample(index));
    }
}

fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::days(days)
}

#[test]
fn retention_deletes_rows_older_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogSettings {
            retention_days: 30,
            ..settings()
        },
    );
    let ages = [45, 31, 29, 1, 0];
    record_all(
        &log,
        ages.iter().map(|&age| {
            RequestRecord::new(days_ago(age), "openai", "POST", "/v1/chat/completions")
        }),
    );
    assert_eq!(log.apply_retention().unwrap(), 2);
    let rows = all_pages(&log, &LogFilter::default(), 100);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|row| row.record.start_time > days_ago(30)));
    assert_eq!(log.stats().rows_deleted, 2);
}

#[test]
fn retention_runs_when_the_log_opens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), settings());
        record_all(
            &log,
            [40, 35, 2]
                .iter()
                .map(|&age| RequestRecord::new(days_ago(age), "openai", "POST", "/v1/x")),
        );
    }
    let log = open(
        dir.path(),
        LogSettings {
            retention_days: 30,
            ..settings()
        },
    );
    log.flush().unwrap();
    assert_eq!(all_pages(&log, &LogFilter::default(), 100).len(), 1);
    assert_eq!(log.stats().rows_deleted, 2);
}

#[test]
fn retention_by_row_count_keeps_newest() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogSettings {
            max_rows: 10,
            ..settings()
        },
    );
    // Insertion order differs from time order.
    let records: Vec<RequestRecord> = (0..25)
        .map(|index| {
            let minutes = (index * 7 % 25) as i64;
            RequestRecord::new(
                base_time() + chrono::Duration::minutes(minutes),
                "openai",
                "POST",
                "/v1/x",
            )
        })
        .collect();
    record_all(&log, records.clone());
    assert_eq!(log.apply_retention().unwrap(), 15);

    let rows = all_pages(&log, &LogFilter::default(), 100);
    let kept: Vec<DateTime<Utc>> = rows.iter().map(|row| row.record.start_time).collect();
    let mut newest: Vec<DateTime<Utc>> = records.iter().map(|record| record.start_time).collect();
    newest.sort_by(|a, b| b.cmp(a));
    newest.truncate(10);
    assert_eq!(kept, newest);
}

#[test]
fn retention_runs_automatically_after_many_inserts() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogSettings {
            max_rows: 50,
            retention_every_rows: 100,
            ..settings()
        },
    );
    record_all(&log, (0..450).map(sample));
    log.flush().unwrap();
    let remaining = all_pages(&log, &LogFilter::default(), 1000).len();
    assert!(remaining < 450, "no automatic retention: {remaining} rows");
    assert_eq!(log.stats().rows_deleted as usize, 450 - remaining);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recorder_never_blocks_and_counts_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogSettings {
            queue_capacity: 8,
            ..settings()
        },
    );
    const TASKS: usize = 16;
    const PER_TASK: usize = 500;

    let mut handles = Vec::new();
    for task in 0..TASKS {
        let recorder = log.recorder();
        handles.push(tokio::spawn(async move {
            let mut durations = Vec::with_capacity(PER_TASK);
            for index in 0..PER_TASK {
                let record = sample(task * PER_TASK + index);
                let started = Instant::now();
                recorder.record(record);
                durations.push(started.elapsed());
            }
            durations
        }));
    }
    let mut durations = Vec::new();
    for handle in handles {
        durations.extend(handle.await.unwrap());
    }
    tokio::task::spawn_blocking(move || {
        log.flush().unwrap();
        let stats = log.stats();
        assert_eq!(
            stats.rows_written + stats.rows_dropped,
            (TASKS * PER_TASK) as u64,
            "{stats:?}"
        );
        assert_eq!(stats.write_errors, 0);
        let stored = log
            .totals(&LogFilter::default(), GroupBy::Provider)
            .unwrap();
        let stored: u64 = stored.iter().map(|totals| totals.requests).sum();
        assert_eq!(stored, stats.rows_written);
    })
    .await
    .unwrap();

    durations.sort();
    let median = durations[durations.len() / 2];
    let max = durations[durations.len() - 1];
    // A record() call is a non-blocking queue push; the bounds leave room
    // for a loaded CI machine descheduling the thread.
    assert!(median < Duration::from_micros(100), "median {median:?}");
    assert!(max < Duration::from_millis(50), "max {max:?}");
}

/// Holds SQLite's write lock on `path` until dropped.
fn lock_database(path: &Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    connection
}

#[test]
fn locked_database_counts_write_errors_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.sqlite3");
    let log = RequestLog::open(
        &path,
        LogSettings {
            busy_timeout: Duration::from_millis(100),
            queue_capacity: 4,
            ..settings()
        },
    )
    .unwrap();
    let recorder = log.recorder();
    let lock = lock_database(&path);

    let mut times = Vec::with_capacity(200);
    for index in 0..200 {
        let started = Instant::now();
        recorder.record(sample(index));
        times.push(started.elapsed());
    }
    log.flush().unwrap();
    let stats = log.stats();
    assert_eq!(stats.rows_written, 0, "{stats:?}");
    assert!(stats.write_errors >= 1, "{stats:?}");
    assert!(stats.rows_dropped >= 1, "{stats:?}");
    assert_eq!(stats.write_errors + stats.rows_dropped, 200, "{stats:?}");
    // A record() that waited for the lock would take the busy timeout of
    // 100 ms, every time. A preempted thread on a busy machine can make one
    // or two calls slow, so those are allowed.
    let slow = times
        .iter()
        .filter(|time| **time >= Duration::from_millis(50))
        .count();
    assert!(slow <= 2, "{slow} of 200 record() calls took 50 ms or more");

    drop(lock);
    record_all(&log, [sample(1)]);
    assert_eq!(log.stats().rows_written, 1);
}

#[test]
fn open_reports_a_locked_database_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.sqlite3");
    {
        // A rollback-journal database, where a writer also blocks readers.
        let setup = rusqlite::Connection::open(&path).unwrap();
        setup.execute_batch("CREATE TABLE other (x);").unwrap();
    }
    let _lock = lock_database(&path);

    let error = RequestLog::open(
        &path,
        LogSettings {
            busy_timeout: Duration::from_millis(100),
            ..settings()
        },
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, LogError::Locked { .. }), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("stop other Keyport processes"),
        "{message}"
    );
}

#[test]
fn open_reports_a_damaged_file_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.sqlite3");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).unwrap();

    let error = RequestLog::open(&path, settings()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, LogError::Damaged { .. }), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("move the file aside or delete it"),
        "{message}"
    );
}

#[test]
fn open_rejects_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.sqlite3");
    drop(RequestLog::open(&path, settings()).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();

    let error = RequestLog::open(&path, settings()).unwrap_err();
    assert!(
        matches!(error, LogError::NewerSchema { found: 99, .. }),
        "{error}"
    );
}

#[test]
fn version_2_log_gains_key_label() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.sqlite3");
    let log = open(dir.path(), settings());
    log.recorder().record(sample(0));
    log.flush().unwrap();
    drop(log);
    // The file as Keyport wrote it before the key_label column existed.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("ALTER TABLE requests DROP COLUMN key_label; PRAGMA user_version = 2;")
        .unwrap();

    let log = open(dir.path(), settings());
    let mut pinned = sample(1);
    pinned.key_label = Some("client-a".to_string());
    log.recorder().record(pinned);
    log.flush().unwrap();
    let rows = log
        .query(&LogFilter::default(), PageRequest::first(10))
        .unwrap()
        .items;
    let labels: Vec<_> = rows
        .iter()
        .map(|row| row.record.key_label.as_deref())
        .collect();
    assert_eq!(labels.len(), 2);
    assert!(labels.contains(&Some("client-a")), "{labels:?}");
    assert!(labels.contains(&None), "{labels:?}");
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 3);
}

#[test]
fn closed_log_counts_records_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), settings());
    let recorder = log.recorder();
    drop(log);
    recorder.record(sample(0));
    recorder.record(sample(1));
}

/// Splits RFC 4180 CSV text into records of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

#[test]
fn export_writes_escaped_csv_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogSettings {
            capture_bodies: true,
            ..settings()
        },
    );
    let body = "line 1, \"quoted\"\r\nline 2\n";
    let mut tricky = sample(4);
    tricky.token_name = Some("team \"a\", ops".to_string());
    // Control characters have no place in short fields and are dropped.
    tricky.origin = Some("http://x\r\ny".to_string());
    tricky.model = Some("m,1".to_string());
    tricky.request_body = Some(CapturedBody::from_bytes(
        body.as_bytes(),
        1024,
        body.len() as u64,
    ));
    record_all(&log, [sample(0), tricky.clone(), sample(5)]);

    let mut csv = Vec::new();
    assert_eq!(
        log.export(&LogFilter::default(), ExportFormat::Csv, &mut csv)
            .unwrap(),
        3
    );
    let rows = parse_csv(&String::from_utf8(csv).unwrap());
    assert_eq!(rows.len(), 4);
    let header = &rows[0];
    assert!(rows.iter().all(|row| row.len() == header.len()));
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let tricky_row = rows.iter().find(|row| row[column("id")] == "2").unwrap();
    assert_eq!(tricky_row[column("token_name")], "team \"a\", ops");
    assert_eq!(tricky_row[column("model")], "m,1");
    assert_eq!(tricky_row[column("origin")], "http://xy");
    assert_eq!(tricky_row[column("request_body")], body);
    assert_eq!(tricky_row[column("response_body")], "");
    assert_eq!(
        tricky_row[column("input_tokens")],
        tricky.input_tokens.unwrap().to_string()
    );
    assert_eq!(tricky_row[column("error_kind")], "token_invalid");

    let mut lines = Vec::new();
    let filter = LogFilter {
        provider: Some("openai".into()),
        ..LogFilter::default()
    };
    let count = log
        .export(&filter, ExportFormat::JsonLines, &mut lines)
        .unwrap();
    let text = String::from_utf8(lines).unwrap();
    assert_eq!(text.lines().count() as u64, count);
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["provider"], "openai");
        assert!(value["id"].is_i64());
    }
}

const CANARIES: [&str; 6] = [
    "sk-proj-CanaryOpenAi0123456789abcdefABCDEF",
    "AIzaSyCanaryGoogle0123456789abcdefghijk",
    "sk-ant-api03-CanaryAnthropic0123456789abcdef",
    "kp_c4a7a0c4a7a0c4a7a0c4a7a0c4a7a0c4a7a0c4a7a0c4a7a0c4a7a0c4a7a0c4a7",
    "Canary7mistral7bare7key7of7thirty7two",
    "canary-short-password-9",
];

/// Reads every byte of the log's database and WAL files.
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["requests.sqlite3", "requests.sqlite3-wal"] {
        let path: PathBuf = dir.join(name);
        if let Ok(content) = std::fs::read(path) {
            bytes.extend(content);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn canary_record(capture: bool) -> RequestRecord {
    let [openai, google, anthropic, token, mistral, password] = CANARIES;
    let mut record = RequestRecord::new(
        Utc::now(),
        "google",
        "POST",
        &format!("/v1beta/models/gemini-2.5-flash:generateContent?key={google}&alt=sse"),
    );
    record.status = Some(200);
    let request_body = format!(
        r#"{{"model":"gpt-4o","api_key":"{anthropic}","messages":[{{"role":"user","content":"my keys are {openai} and {mistral}"}}],"password":"{password}"}}"#
    );
    let response_body = format!("echo: Authorization: Bearer {token}\nx-goog-api-key: {google}\n");
    if capture {
        record.request_body = Some(CapturedBody::from_bytes(
            request_body.as_bytes(),
            65536,
            request_body.len() as u64,
        ));
        record.response_body = Some(CapturedBody::from_bytes(
            response_body.as_bytes(),
            65536,
            response_body.len() as u64,
        ));
    }
    record
}

#[test]
fn canaries_never_reach_the_database_or_exports() {
    for capture in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(
            dir.path(),
            LogSettings {
                capture_bodies: capture,
                ..settings()
            },
        );
        let mut feed = log.subscribe();
        record_all(&log, [canary_record(true), canary_record(capture)]);

        let mut exports = Vec::new();
        log.export(&LogFilter::default(), ExportFormat::Csv, &mut exports)
            .unwrap();
        log.export(&LogFilter::default(), ExportFormat::JsonLines, &mut exports)
            .unwrap();
        let fed = feed.try_recv().unwrap();
        exports.extend(serde_json::to_vec(&fed).unwrap());
        let stored = all_pages(&log, &LogFilter::default(), 10);
        assert_eq!(stored.len(), 2);
        assert_eq!(
            stored[0].record.request_body.is_some(),
            capture,
            "capture {capture}"
        );
        drop(log);

        let bytes = database_bytes(dir.path());
        assert!(contains(&bytes, "generateContent"), "database has no rows");
        for canary in CANARIES {
            assert!(
                !contains(&bytes, canary),
                "{canary} in database (capture {capture})"
            );
            assert!(
                !contains(&exports, canary),
                "{canary} in export (capture {capture})"
            );
        }
        if capture {
            assert!(contains(&exports, "[REDACTED]"));
        }
    }
}

#[test]
fn filtered_first_pages_use_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), settings());
    record_all(&log, (0..20_000).map(sample));

    for filter in filters() {
        let plan = log.query_plan(&filter).unwrap().join("; ");
        assert!(plan.contains("USING INDEX"), "{filter:?}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{filter:?}: {plan}");

        // Far below the 50 ms budget for a million rows measured by the
        // requestlog_bench example; generous for a debug build on a busy
        // machine.
        let started = Instant::now();
        let page = log.query(&filter, PageRequest::first(50)).unwrap();
        let elapsed = started.elapsed();
        let matches_nothing = filter.path_contains.as_deref() == Some("%");
        assert_eq!(page.items.is_empty(), matches_nothing, "{filter:?}");
        assert!(
            elapsed < Duration::from_millis(50),
            "{filter:?} took {elapsed:?}"
        );
    }
}

#[test]
fn log_and_recorder_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RequestLog>();
    assert_send_sync::<keyport_core::requestlog::Recorder>();
}
