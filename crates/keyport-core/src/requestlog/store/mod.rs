//! [`RequestLog`]: the SQLite file of logged requests.
//!
//! A dedicated thread owns the write connection (see [`writer`]); queries,
//! totals and exports use a second, read-only connection. SQLite runs in WAL
//! mode, so queries do not wait for the writer's transactions.

mod export;
mod query;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{params_from_iter, Connection};
use serde::Serialize;
use tokio::sync::broadcast;

pub use export::ExportFormat;
pub use query::{
    Cursor, GroupBy, LogFilter, Page, PageRequest, StatusClass, Totals, MAX_PAGE_SIZE,
};
pub use writer::Recorder;

use super::record::LoggedRequest;
use writer::{Command, Counters, Writer};

/// Default age after which rows are deleted.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// Default maximum number of rows kept.
pub const DEFAULT_MAX_ROWS: u64 = 100_000;

/// Default maximum bytes kept of each captured body.
pub const DEFAULT_BODY_CAPTURE_LIMIT: usize = 64 * 1024;

/// Default capacity of the queue between the proxy and the writer thread.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// Capacity of the live feed; slower subscribers skip ahead.
const FEED_CAPACITY: usize = 1024;

/// Errors from opening, querying or exporting the request log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot create folder {path} for the request log: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot open request log {path}: {detail}; check that the data folder is writable")]
    Open { path: PathBuf, detail: String },

    #[error(
        "request log {path} is damaged ({detail}); move the file aside or delete it, and Keyport starts a new, empty log"
    )]
    Damaged { path: PathBuf, detail: String },

    #[error(
        "request log {path} is locked by another program ({detail}); stop other Keyport processes that use this data folder and try again"
    )]
    Locked { path: PathBuf, detail: String },

    #[error(
        "request log {path} has schema version {found}, but this Keyport knows versions up to {supported}; update Keyport or move the file aside"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("request log {path}: {operation} failed: {detail}")]
    Sqlite {
        path: PathBuf,
        operation: &'static str,
        detail: String,
    },

    #[error("cannot write the request log export: {source}")]
    Export { source: std::io::Error },

    #[error("the request log writer thread has stopped; restart Keyport")]
    WriterStopped,
}

/// Settings of the request log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    /// Rows older than this many days are deleted; 0 keeps rows of any age.
    pub retention_days: u32,
    /// At most this many rows are kept, the oldest deleted first; 0 means
    /// no limit.
    pub max_rows: u64,
    /// Whether redacted request and response bodies are stored. Off by
    /// default, because bodies contain prompts and answers.
    pub capture_bodies: bool,
    /// Bytes kept of each captured body.
    pub body_capture_limit: usize,
    /// Records waiting to be written beyond this are dropped.
    pub queue_capacity: usize,
    /// How long a write waits for another process's lock before it fails.
    pub busy_timeout: Duration,
    /// Time between automatic retention runs. Retention also runs when the
    /// log opens.
    pub retention_interval: Duration,
    /// Inserted rows after which retention runs before its interval is up.
    pub retention_every_rows: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            retention_days: DEFAULT_RETENTION_DAYS,
            max_rows: DEFAULT_MAX_ROWS,
            capture_bodies: false,
            body_capture_limit: DEFAULT_BODY_CAPTURE_LIMIT,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            busy_timeout: Duration::from_secs(2),
            retention_interval: Duration::from_secs(3600),
            retention_every_rows: 1000,
        }
    }
}

/// Counters since the log was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogStats {
    pub rows_written: u64,
    /// Records dropped because the queue was full or the log had closed.
    pub rows_dropped: u64,
    /// Records lost because SQLite reported an error.
    pub write_errors: u64,
    /// Rows deleted by retention.
    pub rows_deleted: u64,
}

/// The request log: owns the SQLite file and its writer thread.
pub struct RequestLog {
    path: PathBuf,
    settings: LogSettings,
    reader: Mutex<Connection>,
    sender: mpsc::SyncSender<Command>,
    counters: Arc<Counters>,
    feed: broadcast::Sender<LoggedRequest>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLog")
            .field("path", &self.path)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RequestLog {
    /// Opens or creates the log at `path` (owner-only permissions, WAL,
    /// schema migrated) and starts its writer thread, which applies
    /// retention first.
    pub fn open(path: &Path, settings: LogSettings) -> Result<Self, LogError> {
        let connection = schema::open_writer(path, settings.busy_timeout)?;
        let reader = schema::open_reader(path, settings.busy_timeout)?;

        let (sender, receiver) = mpsc::sync_channel(settings.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let writer = Writer {
            path: path.to_path_buf(),
            connection,
            receiver,
            counters: Arc::clone(&counters),
            feed: feed.clone(),
            settings: settings.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("keyport-request-log".into())
            .spawn(move || writer.run())
            .map_err(|error| LogError::Open {
                path: path.to_path_buf(),
                detail: format!("cannot start the writer thread: {error}"),
            })?;

        Ok(Self {
            path: path.to_path_buf(),
            settings,
            reader: Mutex::new(reader),
            sender,
            counters,
            feed,
            writer: Some(handle),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn settings(&self) -> &LogSettings {
        &self.settings
    }

    /// Returns a handle for logging requests. Clones are cheap.
    pub fn recorder(&self) -> Recorder {
        let limit = self
            .settings
            .capture_bodies
            .then_some(self.settings.body_capture_limit);
        Recorder::new(self.sender.clone(), Arc::clone(&self.counters), limit)
    }

    /// Subscribes to every row stored from now on, in insertion order. A
    /// subscriber that falls more than 1,024 rows behind skips ahead and
    /// receives `RecvError::Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<LoggedRequest> {
        self.feed.subscribe()
    }

    pub fn stats(&self) -> LogStats {
        LogStats {
            rows_written: self.counters.written.load(Ordering::Relaxed),
            rows_dropped: self.counters.dropped.load(Ordering::Relaxed),
            write_errors: self.counters.write_errors.load(Ordering::Relaxed),
            rows_deleted: self.counters.deleted.load(Ordering::Relaxed),
        }
    }

    /// Waits until every record queued before this call has been written or
    /// counted as an error. Blocks; call it off the async runtime.
    pub fn flush(&self) -> Result<(), LogError> {
        let (reply, done) = mpsc::channel();
        self.sender
            .send(Command::Flush(reply))
            .map_err(|_| LogError::WriterStopped)?;
        done.recv().map_err(|_| LogError::WriterStopped)
    }

    /// Deletes rows past the retention age and row limit now, and returns
    /// how many were deleted. Blocks; call it off the async runtime.
    pub fn apply_retention(&self) -> Result<usize, LogError> {
        let (reply, done) = mpsc::channel();
        self.sender
            .send(Command::Retention(reply))
            .map_err(|_| LogError::WriterStopped)?;
        done.recv().map_err(|_| LogError::WriterStopped)?
    }

    /// Returns one page of rows matching `filter`, newest first.
    pub fn query(
        &self,
        filter: &LogFilter,
        page: PageRequest,
    ) -> Result<Page<LoggedRequest>, LogError> {
        let limit = page.limit.clamp(1, MAX_PAGE_SIZE) as usize;
        let (sql, values) = query::page_sql(filter, page);
        let reader = self.reader();
        let mut statement = reader
            .prepare_cached(&sql)
            .map_err(|error| self.error("query", error))?;
        let mut items = statement
            .query_map(params_from_iter(values), query::row_to_request)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|error| self.error("query", error))?;

        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(Cursor::after)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Sums of requests, tokens and cost per group, for rows matching
    /// `filter`, sorted by group key.
    pub fn totals(&self, filter: &LogFilter, group: GroupBy) -> Result<Vec<Totals>, LogError> {
        let (sql, values) = query::totals_sql(filter, group);
        let reader = self.reader();
        let mut statement = reader
            .prepare_cached(&sql)
            .map_err(|error| self.error("compute totals", error))?;
        statement
            .query_map(params_from_iter(values), |row| {
                query::row_to_totals(row, group)
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|error| self.error("compute totals", error))
    }

    /// SQLite's plan for the first page of `filter`, one line per step.
    /// For checking that a filter uses an index.
    pub fn query_plan(&self, filter: &LogFilter) -> Result<Vec<String>, LogError> {
        let (sql, values) = query::page_sql(filter, PageRequest::first(50));
        let reader = self.reader();
        let mut statement = reader
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .map_err(|error| self.error("explain query", error))?;
        statement
            .query_map(params_from_iter(values), |row| row.get::<_, String>(3))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|error| self.error("explain query", error))
    }

    /// Writes every row matching `filter`, newest first, as CSV with a
    /// header line or as JSON Lines. Returns the number of rows written.
    pub fn export(
        &self,
        filter: &LogFilter,
        format: ExportFormat,
        output: &mut dyn std::io::Write,
    ) -> Result<u64, LogError> {
        let reader = self.reader();
        export::export(&reader, &self.path, filter, format, output)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable.
        self.reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn error(&self, operation: &'static str, error: rusqlite::Error) -> LogError {
        schema::classify(&self.path, operation, error)
    }
}

impl Drop for RequestLog {
    /// Writes what is queued and stops the writer thread.
    fn drop(&mut self) {
        let _ = self.sender.send(Command::Shutdown);
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}
