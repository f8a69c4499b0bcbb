//! The writer thread that owns the SQLite write connection, and the
//! [`Recorder`] handle that feeds it.
//!
//! Records travel through a bounded queue. [`Recorder::record`] only tries
//! to enqueue: when the queue is full the record is dropped and counted, so
//! the proxy never waits on the disk. The thread inserts records in batches,
//! one transaction per batch, publishes each stored row to subscribers and
//! applies retention.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tokio::sync::broadcast;

use super::super::record::{ErrorKind, LoggedRequest, RequestRecord};
use super::query::StatusClass;
use super::{schema, LogError, LogSettings};

/// Most records inserted in one transaction.
const MAX_BATCH: usize = 512;

/// Time the writer collects records after the first of a batch. Rows reach
/// the database and the live feed about this much later.
const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// Rows deleted per retention statement, so that a large clean-up does not
/// hold the write lock for long.
const RETENTION_CHUNK: i64 = 10_000;

/// Minimum time between two warnings of the same kind.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// How often the thread wakes up when idle, to report drops.
const IDLE_WAKE: Duration = Duration::from_secs(5);

/// Maximum length in bytes of short text fields.
const MAX_SHORT_TEXT: usize = 256;

const MS_PER_DAY: i64 = 86_400_000;

/// Counters shared by the recorders, the writer and [`super::RequestLog`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) written: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) deleted: AtomicU64,
}

pub(crate) enum Command {
    Record(Box<RequestRecord>),
    Flush(mpsc::Sender<()>),
    Retention(mpsc::Sender<Result<usize, LogError>>),
    Shutdown,
}

/// A cheap, cloneable handle the proxy uses to log requests.
#[derive(Debug, Clone)]
pub struct Recorder {
    sender: SyncSender<Command>,
    counters: Arc<Counters>,
    body_capture_limit: Option<usize>,
}

impl Recorder {
    pub(crate) fn new(
        sender: SyncSender<Command>,
        counters: Arc<Counters>,
        body_capture_limit: Option<usize>,
    ) -> Self {
        Self {
            sender,
            counters,
            body_capture_limit,
        }
    }

    /// Queues `record` for writing. Never blocks and never fails: when the
    /// queue is full or the log has closed, the record is dropped and
    /// counted in [`super::LogStats::rows_dropped`].
    pub fn record(&self, record: RequestRecord) {
        match self.sender.try_send(Command::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Returns the body capture limit in bytes when body capture is on. The proxy
    /// captures bodies only then; the log discards bodies otherwise.
    pub fn body_capture_limit(&self) -> Option<usize> {
        self.body_capture_limit
    }
}

/// State owned by the writer thread.
pub(crate) struct Writer {
    pub(crate) path: PathBuf,
    pub(crate) connection: Connection,
    pub(crate) receiver: Receiver<Command>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) feed: broadcast::Sender<LoggedRequest>,
    pub(crate) settings: LogSettings,
}

/// Rate limit for one kind of warning, with a count of what it held back.
struct Warning {
    last: Option<Instant>,
    reported: u64,
}

impl Warning {
    fn new() -> Self {
        Self {
            last: None,
            reported: 0,
        }
    }

    /// Returns the number of new events if a warning about `total` events
    /// so far is due now.
    fn due(&mut self, total: u64) -> Option<u64> {
        let new = total.saturating_sub(self.reported);
        let ready = self.last.is_none_or(|last| last.elapsed() >= WARN_INTERVAL);
        if new == 0 || !ready {
            return None;
        }
        self.last = Some(Instant::now());
        self.reported = total;
        Some(new)
    }
}

impl Writer {
    pub(crate) fn run(mut self) {
        let mut drop_warning = Warning::new();
        let mut error_warning = Warning::new();
        let mut last_retention = Instant::now();
        let mut rows_since_retention = 0_u64;
        let mut last_error = String::new();

        self.scheduled_retention(&mut last_error);
        loop {
            let until_retention = self
                .settings
                .retention_interval
                .saturating_sub(last_retention.elapsed());
            let command = match self.receiver.recv_timeout(until_retention.min(IDLE_WAKE)) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };

            let mut batch = Vec::new();
            let mut control = None;
            match command {
                Some(Command::Record(record)) => batch.push(*record),
                Some(other) => control = Some(other),
                None => {}
            }
            // Under load, collecting records for a short window lets one
            // transaction, and one WAL sync, cover many rows. The thread
            // sleeps through the window instead of waiting on the queue,
            // so that senders find no parked receiver to wake: a wake-up per
            // record cost each request a futex call and a context switch.
            if control.is_none() && !batch.is_empty() {
                std::thread::sleep(BATCH_WINDOW);
                while batch.len() < MAX_BATCH {
                    match self.receiver.try_recv() {
                        Ok(Command::Record(record)) => batch.push(*record),
                        Ok(other) => {
                            control = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            if !batch.is_empty() {
                rows_since_retention += batch.len() as u64;
                if let Err(error) = self.write_batch(batch) {
                    last_error = error;
                }
            }

            let mut stop = false;
            match control {
                Some(Command::Flush(reply)) => {
                    let _ = reply.send(());
                }
                Some(Command::Retention(reply)) => {
                    let result = self.retention();
                    let _ = reply.send(result);
                    last_retention = Instant::now();
                    rows_since_retention = 0;
                }
                Some(Command::Shutdown) => stop = true,
                Some(Command::Record(_)) | None => {}
            }
            if stop {
                self.drain();
                break;
            }

            let retention_due = last_retention.elapsed() >= self.settings.retention_interval
                || rows_since_retention >= self.settings.retention_every_rows;
            if retention_due {
                self.scheduled_retention(&mut last_error);
                last_retention = Instant::now();
                rows_since_retention = 0;
            }

            self.warn_if_due(&mut drop_warning, &mut error_warning, &last_error);
        }

        // Lets SQLite refresh the statistics its query planner uses.
        let _ = self.connection.execute_batch("PRAGMA optimize;");
    }

    /// Writes what is still queued after a shutdown request.
    fn drain(&mut self) {
        let mut batch = Vec::new();
        while let Ok(command) = self.receiver.try_recv() {
            match command {
                Command::Record(record) => batch.push(*record),
                Command::Flush(reply) => {
                    let _ = reply.send(());
                }
                Command::Retention(reply) => {
                    let _ = reply.send(Err(LogError::WriterStopped));
                }
                Command::Shutdown => {}
            }
        }
        if !batch.is_empty() {
            let _ = self.write_batch(batch);
        }
    }

    fn warn_if_due(&self, drops: &mut Warning, errors: &mut Warning, last_error: &str) {
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        if let Some(new) = drops.due(dropped) {
            tracing::warn!(
                path = %self.path.display(),
                dropped = new,
                "request log queue was full; records were dropped and the proxy continued"
            );
        }
        let failed = self.counters.write_errors.load(Ordering::Relaxed);
        if let Some(new) = errors.due(failed) {
            tracing::warn!(
                path = %self.path.display(),
                failed = new,
                error = %last_error,
                "cannot write to the request log; records were lost and the proxy continued"
            );
        }
    }

    /// Inserts a batch in one transaction and publishes the rows. On error
    /// every record of the batch counts as lost, and the message is returned.
    fn write_batch(&mut self, batch: Vec<RequestRecord>) -> Result<(), String> {
        let count = batch.len() as u64;
        let capture = self.settings.capture_bodies;
        let result = insert_all(&mut self.connection, &batch, capture);
        match result {
            Ok(ids) => {
                self.counters.written.fetch_add(count, Ordering::Relaxed);
                if self.feed.receiver_count() > 0 {
                    for (id, record) in ids.into_iter().zip(batch) {
                        let _ = self.feed.send(LoggedRequest {
                            id,
                            record: sanitized(record, capture),
                        });
                    }
                }
                Ok(())
            }
            Err(error) => {
                self.counters
                    .write_errors
                    .fetch_add(count, Ordering::Relaxed);
                Err(error.to_string())
            }
        }
    }

    fn scheduled_retention(&mut self, last_error: &mut String) {
        if let Err(error) = self.retention() {
            *last_error = error.to_string();
            tracing::warn!(path = %self.path.display(), %error, "request log retention failed");
        }
    }

    fn retention(&mut self) -> Result<usize, LogError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let deleted = apply_retention(&self.connection, &self.settings, now_ms)
            .map_err(|error| schema::classify(&self.path, "apply retention", error))?;
        if deleted > 0 {
            self.counters
                .deleted
                .fetch_add(deleted as u64, Ordering::Relaxed);
            // Frees pages at the end of the file; failure only costs space.
            let _ = self.connection.execute_batch("PRAGMA incremental_vacuum;");
        }
        Ok(deleted)
    }
}

/// Deletes rows older than the retention period and the oldest rows beyond
/// the row limit. Returns the number of rows deleted.
pub(crate) fn apply_retention(
    connection: &Connection,
    settings: &LogSettings,
    now_ms: i64,
) -> rusqlite::Result<usize> {
    let mut deleted = 0;

    if settings.retention_days > 0 {
        let cutoff = now_ms.saturating_sub(i64::from(settings.retention_days) * MS_PER_DAY);
        loop {
            let removed = connection.execute(
                "DELETE FROM requests WHERE id IN \
                 (SELECT id FROM requests WHERE start_ms < ?1 ORDER BY start_ms LIMIT ?2)",
                params![cutoff, RETENTION_CHUNK],
            )?;
            deleted += removed;
            if (removed as i64) < RETENTION_CHUNK {
                break;
            }
        }
    }

    if settings.max_rows > 0 {
        let rows: i64 =
            connection.query_row("SELECT count(*) FROM requests", [], |row| row.get(0))?;
        let max_rows = i64::try_from(settings.max_rows).unwrap_or(i64::MAX);
        let mut excess = rows.saturating_sub(max_rows);
        while excess > 0 {
            let removed = connection.execute(
                "DELETE FROM requests WHERE id IN \
                 (SELECT id FROM requests ORDER BY start_ms, id LIMIT ?1)",
                params![excess.min(RETENTION_CHUNK)],
            )?;
            if removed == 0 {
                break;
            }
            deleted += removed;
            excess -= removed as i64;
        }
    }
    Ok(deleted)
}

fn insert_all(
    connection: &mut Connection,
    batch: &[RequestRecord],
    capture_bodies: bool,
) -> rusqlite::Result<Vec<i64>> {
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut ids = Vec::with_capacity(batch.len());
    {
        let mut statement = transaction.prepare_cached(
            "INSERT INTO requests (start_ms, token_name, origin, provider, method, path, model, \
             streamed, status, status_class, error_kind, usage_note, latency_ms, ttfb_ms, \
             request_bytes, response_bytes, input_tokens, output_tokens, cached_tokens, \
             cache_write_tokens, cost_usd, upstream_request_id, request_body, response_body, \
             key_label) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
             ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
        )?;
        for record in batch {
            let short = |text: &Option<String>| text.as_deref().map(short_text);
            let int = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
            let body = |body: &Option<super::super::record::CapturedBody>| {
                body.as_ref()
                    .filter(|_| capture_bodies)
                    .map(|body| body.as_str().to_string())
            };
            statement.execute(params![
                record.start_time.timestamp_millis(),
                short(&record.token_name),
                short(&record.origin),
                short_text(&record.provider),
                short_text(&record.method),
                record.path.as_str(),
                short(&record.model),
                record.streamed,
                record.status,
                StatusClass::code_of(record),
                record.error_kind.as_ref().map(ErrorKind::stored),
                record.usage_note.map(|note| note.as_str()),
                int(record.latency_ms),
                record.ttfb_ms.map(int),
                int(record.request_bytes),
                int(record.response_bytes),
                record.input_tokens.map(int),
                record.output_tokens.map(int),
                record.cached_tokens.map(int),
                record.cache_write_tokens.map(int),
                record.cost_usd.filter(|cost| cost.is_finite()),
                short(&record.upstream_request_id),
                body(&record.request_body),
                body(&record.response_body),
                short(&record.key_label),
            ])?;
            ids.push(transaction.last_insert_rowid());
        }
    }
    transaction.commit()?;
    Ok(ids)
}

/// Cuts a short field to [`MAX_SHORT_TEXT`] bytes and drops control
/// characters, which have no place in names, origins or ids.
fn short_text(text: &str) -> String {
    // Nearly every value is short ASCII without control characters, which
    // needs no per-character filtering.
    let plain =
        text.len() <= MAX_SHORT_TEXT && text.bytes().all(|byte| (0x20..0x7f).contains(&byte));
    if plain {
        return text.to_string();
    }
    let mut clean: String = text.chars().filter(|c| !c.is_control()).collect();
    if clean.len() > MAX_SHORT_TEXT {
        let mut end = MAX_SHORT_TEXT;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}

/// Cleans a record the way the insert does, so that the live feed matches
/// the stored row.
fn sanitized(mut record: RequestRecord, capture_bodies: bool) -> RequestRecord {
    let short = |text: Option<String>| text.map(|text| short_text(&text));
    record.token_name = short(record.token_name);
    record.key_label = short(record.key_label);
    record.origin = short(record.origin);
    record.provider = short_text(&record.provider);
    record.method = short_text(&record.method);
    record.model = short(record.model);
    record.upstream_request_id = short(record.upstream_request_id);
    record.start_time =
        chrono::DateTime::from_timestamp_millis(record.start_time.timestamp_millis())
            .unwrap_or(record.start_time);
    record.cost_usd = record.cost_usd.filter(|cost| cost.is_finite());
    record.error_kind = record
        .error_kind
        .map(|kind| ErrorKind::from_stored(kind.stored().to_string()));
    if !capture_bodies {
        record.request_body = None;
        record.response_body = None;
    }
    record
}
