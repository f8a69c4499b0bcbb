//! Request-log commands: pages, totals and exports, converted between the
//! core's types and the webview's.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Datelike, Local, NaiveDate, TimeZone, Utc};
use keyport_core::requestlog::{
    self, Cursor, GroupBy, LogFilter as CoreFilter, LoggedRequest, PageRequest,
};
use keyport_core::service::LogHandle;

use crate::error::{AppError, AppErrorCode};
use crate::state::AppState;
use crate::types::{
    ExportFormat, ExportResult, LogFilter, LogPage, LogRow, LogTotals, StatusClass, Totals,
};

/// Maximum page size the webview may request.
pub const MAX_LIMIT: u32 = 500;

/// Converts a stored row for the webview. Captured bodies stay out: the
/// table shows metadata only.
pub fn to_row(logged: &LoggedRequest) -> LogRow {
    let record = &logged.record;
    let outcome = match (&record.error_kind, record.status) {
        (None, Some(200..=399)) => "ok",
        (None, Some(400..=599)) => "http_error",
        _ => "failed",
    };
    LogRow {
        id: logged.id,
        started_at: record.start_time.to_rfc3339(),
        token: record.token_name.clone(),
        key_label: record.key_label.clone(),
        origin: record.origin.clone(),
        provider: record.provider.clone(),
        method: record.method.clone(),
        path: record.path.as_str().to_string(),
        model: record.model.clone(),
        streamed: record.streamed,
        status: record.status,
        error_kind: record
            .error_kind
            .as_ref()
            .map(|kind| kind.as_str().to_string()),
        outcome: outcome.to_string(),
        latency_ms: Some(record.latency_ms),
        ttfb_ms: record.ttfb_ms,
        request_bytes: record.request_bytes,
        response_bytes: record.response_bytes,
        input_tokens: record.input_tokens,
        output_tokens: record.output_tokens,
        cached_tokens: record.cached_tokens,
        cost_usd: record.cost_usd,
        upstream_request_id: record.upstream_request_id.clone(),
        cursor: Cursor::after(logged).to_string(),
    }
}

fn log_of(state: &AppState) -> Result<LogHandle, AppError> {
    state.log_handle().ok_or_else(|| {
        AppError::new(
            AppErrorCode::Config,
            "the request log is off or could not be opened; check [log] in config.toml and the app's log output",
        )
    })
}

fn parse_time(name: &str, text: &Option<String>) -> Result<Option<DateTime<Utc>>, AppError> {
    text.as_deref()
        .filter(|text| !text.is_empty())
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|time| time.with_timezone(&Utc))
                .map_err(|_| {
                    AppError::invalid(format!(
                        "{name} {text:?} is not an RFC 3339 time such as 2026-01-31T09:00:00Z"
                    ))
                })
        })
        .transpose()
}

fn non_empty(text: &Option<String>) -> Option<String> {
    text.as_ref()
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
}

pub(crate) fn core_filter(filter: &LogFilter) -> Result<CoreFilter, AppError> {
    Ok(CoreFilter {
        since: parse_time("since", &filter.since)?,
        until: parse_time("until", &filter.until)?,
        provider: non_empty(&filter.provider),
        model: non_empty(&filter.model),
        status: filter.status.map(|class| match class {
            StatusClass::Success => requestlog::StatusClass::Success,
            StatusClass::ClientError => requestlog::StatusClass::ClientError,
            StatusClass::ServerError => requestlog::StatusClass::ServerError,
            StatusClass::Error => requestlog::StatusClass::Failed,
        }),
        token_name: non_empty(&filter.token),
        path_contains: non_empty(&filter.path_contains),
    })
}

/// Returns one page of rows, newest first.
pub fn query(
    state: &AppState,
    filter: &LogFilter,
    cursor: Option<&str>,
    limit: u32,
) -> Result<LogPage, AppError> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::invalid(format!(
            "limit {limit} is out of range; use 1 to {MAX_LIMIT}"
        )));
    }
    let after = cursor
        .filter(|cursor| !cursor.is_empty())
        .map(|cursor| cursor.parse::<Cursor>().map_err(AppError::invalid))
        .transpose()?;
    let filter = core_filter(filter)?;
    let log = log_of(state)?;
    let page =
        tokio::task::block_in_place(|| log.log.query(&filter, PageRequest { limit, after }))?;
    Ok(LogPage {
        rows: page.items.iter().map(to_row).collect(),
        next_cursor: page.next.map(|cursor| cursor.to_string()),
    })
}

/// Sums requests, tokens and cost since local midnight and since the first
/// of this month.
pub fn totals(state: &AppState) -> Result<LogTotals, AppError> {
    let log = log_of(state)?;
    let now = Local::now();
    let today = now.date_naive();
    let month_start = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
    Ok(LogTotals {
        today: sum_since(&log, local_midnight(today))?,
        month: sum_since(&log, local_midnight(month_start))?,
    })
}

fn local_midnight(day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Where a DST change skips midnight, the day starts an hour later.
    // Where midnight happens twice, `earliest` picks the first.
    let start = Local.from_local_datetime(&midnight).earliest().or_else(|| {
        let later = midnight + chrono::Duration::hours(1);
        Local.from_local_datetime(&later).earliest()
    });
    start
        .unwrap_or_else(|| Local.from_utc_datetime(&midnight))
        .with_timezone(&Utc)
}

fn sum_since(log: &LogHandle, since: DateTime<Utc>) -> Result<Totals, AppError> {
    let filter = CoreFilter {
        since: Some(since),
        ..CoreFilter::default()
    };
    let groups = tokio::task::block_in_place(|| log.log.totals(&filter, GroupBy::Provider))?;
    let mut totals = Totals::default();
    for group in groups {
        totals.requests += group.requests;
        totals.input_tokens += group.input_tokens;
        totals.output_tokens += group.output_tokens;
        totals.cost_usd += group.cost_usd;
    }
    Ok(totals)
}

/// Writes the matching rows to a new file in the export folder, readable
/// only by the user.
pub fn export(
    state: &AppState,
    format: ExportFormat,
    filter: &LogFilter,
) -> Result<ExportResult, AppError> {
    let filter = core_filter(filter)?;
    let log = log_of(state)?;
    let (extension, core_format) = match format {
        ExportFormat::Csv => ("csv", requestlog::ExportFormat::Csv),
        ExportFormat::Jsonl => ("jsonl", requestlog::ExportFormat::JsonLines),
    };
    let stamp = Local::now().format("%Y%m%d-%H%M%S-%3f");
    let path = state
        .export_dir
        .join(format!("keyport-requests-{stamp}.{extension}"));
    let rows = tokio::task::block_in_place(|| {
        let mut file = create_private(&path)?;
        let rows = log.log.export(&filter, core_format, &mut file)?;
        file.flush().map_err(|error| io_error(&path, error))?;
        Ok::<_, AppError>(rows)
    })?;
    Ok(ExportResult {
        path: path.display().to_string(),
        rows,
    })
}

/// Creates `path` with mode 0600 on Unix, failing if it exists.
fn create_private(path: &Path) -> Result<std::io::BufWriter<std::fs::File>, AppError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(|error| io_error(path, error))?;
    Ok(std::io::BufWriter::new(file))
}

fn io_error(path: &Path, error: std::io::Error) -> AppError {
    AppError::new(
        AppErrorCode::Io,
        format!(
            "cannot write the export {}: {error}; check that the folder is writable",
            path.display()
        ),
    )
}
