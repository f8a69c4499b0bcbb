//! Opening the SQLite file: permissions, pragmas, schema migrations and
//! error classification.

use std::fs::OpenOptions;
use std::path::Path;
use std::time::Duration;

#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::LogError;
use crate::fsutil;

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run. Never edit a shipped entry: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the requests table. status_class is 0 for failed calls (an error
    // kind or no status) and otherwise the status's hundreds digit, so
    // that a status filter is an equality the indexes can serve in time
    // order.
    "CREATE TABLE requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        start_ms INTEGER NOT NULL,
        token_name TEXT,
        origin TEXT,
        provider TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        model TEXT,
        streamed INTEGER NOT NULL,
        status INTEGER,
        status_class INTEGER NOT NULL,
        error_kind TEXT,
        usage_note TEXT,
        latency_ms INTEGER NOT NULL,
        ttfb_ms INTEGER,
        request_bytes INTEGER NOT NULL,
        response_bytes INTEGER NOT NULL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        cached_tokens INTEGER,
        cache_write_tokens INTEGER,
        cost_usd REAL,
        upstream_request_id TEXT,
        request_body TEXT,
        response_body TEXT
    );
    CREATE INDEX requests_by_time ON requests (start_ms);
    CREATE INDEX requests_by_provider ON requests (provider, start_ms);
    CREATE INDEX requests_by_model ON requests (model, start_ms);
    CREATE INDEX requests_by_token ON requests (token_name, start_ms);
    CREATE INDEX requests_by_status_class ON requests (status_class, start_ms);",
    // 2: the time index also carries id and path, so that a path text
    // filter tests the index entries, which are much smaller than the
    // rows, and reads only the rows that match.
    "DROP INDEX requests_by_time;
    CREATE INDEX requests_by_time_path ON requests (start_ms, id, path);",
    // 3: the label of the vault key a request used, so that users can
    // check which key a client token's pin or header chose.
    "ALTER TABLE requests ADD COLUMN key_label TEXT;",
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens the writer connection: creates the file owner-only if missing,
/// switches to WAL and brings the schema up to date.
pub(crate) fn open_writer(path: &Path, busy_timeout: Duration) -> Result<Connection, LogError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fsutil::ensure_private_dir(dir).map_err(|source| LogError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    create_private_file(path)?;

    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| classify(path, "open", error))?;
    connection
        .busy_timeout(busy_timeout)
        .map_err(|error| classify(path, "set busy timeout", error))?;

    // Reading the header happens here, so a file that is not SQLite fails
    // on this line.
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|error| classify(path, "switch to WAL", error))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LogError::Sqlite {
            path: path.to_path_buf(),
            operation: "switch to WAL",
            detail: format!("journal mode stayed {mode}"),
        });
    }
    connection
        .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;")
        .map_err(|error| classify(path, "set pragmas", error))?;

    migrate(path, &connection)?;
    Ok(connection)
}

/// Opens a read-only connection for queries, after [`open_writer`].
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, LogError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| classify(path, "open for reading", error))?;
    connection
        .busy_timeout(busy_timeout)
        .map_err(|error| classify(path, "set busy timeout", error))?;
    Ok(connection)
}

/// Creates `path` with owner-only permissions if it does not exist, and
/// tightens an existing file. SQLite gives its `-wal` and `-shm` files the
/// permissions of the database file.
fn create_private_file(path: &Path) -> Result<(), LogError> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    options.mode(fsutil::FILE_MODE);
    let open_error = |source: std::io::Error| LogError::Open {
        path: path.to_path_buf(),
        detail: source.to_string(),
    };
    options.open(path).map_err(open_error)?;
    fsutil::make_private(path).map_err(open_error)
}

fn migrate(path: &Path, connection: &Connection) -> Result<(), LogError> {
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|error| classify(path, "read schema version", error))?;
    if version > SCHEMA_VERSION {
        return Err(LogError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }

    // auto_vacuum only takes effect before the first table exists; it lets
    // retention give freed pages back to the file system.
    if version == 0 {
        connection
            .execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
            .map_err(|error| classify(path, "set auto_vacuum", error))?;
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let target = index as i64 + 1;
        let script =
            format!("BEGIN IMMEDIATE; {migration}; PRAGMA user_version = {target}; COMMIT;");
        if let Err(error) = connection.execute_batch(&script) {
            let _ = connection.execute_batch("ROLLBACK;");
            return Err(classify(path, "migrate the schema", error));
        }
    }
    Ok(())
}

/// Turns a SQLite error into a [`LogError`] whose message names the next step.
pub(crate) fn classify(path: &Path, operation: &'static str, error: rusqlite::Error) -> LogError {
    let detail = error.to_string();
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => LogError::Damaged {
            path: path.to_path_buf(),
            detail,
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => LogError::Locked {
            path: path.to_path_buf(),
            detail,
        },
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure,
        ) => LogError::Open {
            path: path.to_path_buf(),
            detail,
        },
        _ => LogError::Sqlite {
            path: path.to_path_buf(),
            operation,
            detail,
        },
    }
}
