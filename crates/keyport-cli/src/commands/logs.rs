//! `keyport logs …`: read the request log that `keyport serve` writes.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keyport_core::requestlog::{
    ExportFormat, GroupBy, LogFilter, LoggedRequest, PageRequest, RequestLog, StatusClass,
};

use super::Context;
use crate::cli::{ExportFormatArg, GroupByArg, LogFilterArgs, LogsArgs, LogsCommand};
use crate::error::CliError;
use crate::output;

/// How often `--follow` checks for new rows.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

pub fn run(context: &Context, args: LogsArgs) -> Result<(), CliError> {
    let path = context.data_dir.request_log();
    if !path.exists() {
        output::notice(&format!(
            "No requests logged yet: {} does not exist. `keyport serve` creates it.",
            path.display()
        ));
        return Ok(());
    }
    let config = context.config()?;
    let log = RequestLog::open(&path, config.log.settings())
        .map_err(|error| CliError::Failed(error.to_string()))?;

    match args.command {
        None => show(&log, &args),
        Some(LogsCommand::Export {
            filter,
            format,
            output,
        }) => export(&log, &filter, format, output.as_deref()),
        Some(LogsCommand::Totals { filter, by, json }) => totals(&log, &filter, by, json),
    }
}

fn show(log: &RequestLog, args: &LogsArgs) -> Result<(), CliError> {
    let filter = build_filter(&args.filter)?;
    let page = log
        .query(&filter, PageRequest::first(args.limit))
        .map_err(|error| CliError::Failed(error.to_string()))?;
    let mut rows = page.items;
    // Oldest first reads naturally in a terminal and when following.
    rows.reverse();
    let mut widths = Vec::new();
    print_rows(&rows, args.json, true, &mut widths)?;
    if !args.follow {
        return Ok(());
    }

    let mut last_id = rows.last().map_or(0, |row| row.id);
    loop {
        std::thread::sleep(FOLLOW_INTERVAL);
        let page = log
            .query(
                &filter,
                PageRequest::first(keyport_core::requestlog::MAX_PAGE_SIZE),
            )
            .map_err(|error| CliError::Failed(error.to_string()))?;
        let mut new_rows: Vec<LoggedRequest> = page
            .items
            .into_iter()
            .filter(|row| row.id > last_id)
            .collect();
        if new_rows.is_empty() {
            continue;
        }
        new_rows.sort_by_key(|row| row.id);
        last_id = new_rows.last().map_or(last_id, |row| row.id);
        print_rows(&new_rows, args.json, false, &mut widths)?;
    }
}

/// Prints `rows` as JSON Lines or as a table. Table columns are at least
/// as wide as `widths`, which keeps the widths for the next call.
fn print_rows(
    rows: &[LoggedRequest],
    json: bool,
    with_header: bool,
    widths: &mut Vec<usize>,
) -> Result<(), CliError> {
    if json {
        for row in rows {
            let line = serde_json::to_string(row)
                .map_err(|error| CliError::Failed(format!("cannot format a log row: {error}")))?;
            output::result_line(&line);
        }
        output::flush();
        return Ok(());
    }
    if rows.is_empty() && with_header {
        output::notice("No matching requests.");
        return Ok(());
    }
    let table_rows: Vec<Vec<String>> = rows.iter().map(table_row).collect();
    let text = output::table_with_widths(
        &[
            "TIME (UTC)",
            "TOKEN",
            "PROVIDER",
            "MODEL",
            "STATUS",
            "LATENCY",
            "IN",
            "OUT",
            "COST",
            "PATH",
        ],
        &table_rows,
        widths,
    );
    let text = if with_header {
        text
    } else {
        text.lines().skip(1).collect::<Vec<_>>().join("\n")
    };
    output::result_line(&text);
    output::flush();
    Ok(())
}

fn table_row(row: &LoggedRequest) -> Vec<String> {
    let record = &row.record;
    let unknown = || "?".to_string();
    let status = match (&record.status, &record.error_kind) {
        (Some(status), Some(kind)) => format!("{status} {}", kind.as_str()),
        (Some(status), None) => status.to_string(),
        (None, Some(kind)) => kind.as_str().to_string(),
        (None, None) => "-".to_string(),
    };
    vec![
        record.start_time.format("%Y-%m-%d %H:%M:%S").to_string(),
        record.token_name.clone().unwrap_or_else(|| "-".into()),
        record.provider.clone(),
        record.model.clone().unwrap_or_else(|| "-".into()),
        status,
        format!("{} ms", record.latency_ms),
        record
            .input_tokens
            .map_or_else(unknown, |count| count.to_string()),
        record
            .output_tokens
            .map_or_else(unknown, |count| count.to_string()),
        record
            .cost_usd
            .map_or_else(unknown, |cost| format!("${cost:.6}")),
        record.path.as_str().to_string(),
    ]
}

fn export(
    log: &RequestLog,
    filter: &LogFilterArgs,
    format: ExportFormatArg,
    path: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let filter = build_filter(filter)?;
    let format = match format {
        ExportFormatArg::Csv => ExportFormat::Csv,
        ExportFormatArg::Jsonl => ExportFormat::JsonLines,
    };
    let count = match path {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|error| {
                CliError::Failed(format!("cannot create {}: {error}", path.display()))
            })?;
            let mut writer = std::io::BufWriter::new(file);
            let count = log
                .export(&filter, format, &mut writer)
                .map_err(|error| CliError::Failed(error.to_string()))?;
            writer.flush().map_err(|error| {
                CliError::Failed(format!("cannot write {}: {error}", path.display()))
            })?;
            count
        }
        None => {
            let stdout = std::io::stdout();
            let mut writer = std::io::BufWriter::new(stdout.lock());
            let count = log
                .export(&filter, format, &mut writer)
                .map_err(|error| CliError::Failed(error.to_string()))?;
            let _ = writer.flush();
            count
        }
    };
    output::notice(&format!("Exported {count} rows."));
    Ok(())
}

fn totals(
    log: &RequestLog,
    filter: &LogFilterArgs,
    by: GroupByArg,
    json: bool,
) -> Result<(), CliError> {
    let filter = build_filter(filter)?;
    let group = match by {
        GroupByArg::Day => GroupBy::Day,
        GroupByArg::Provider => GroupBy::Provider,
        GroupByArg::Model => GroupBy::Model,
        GroupByArg::Token => GroupBy::Token,
    };
    let totals = log
        .totals(&filter, group)
        .map_err(|error| CliError::Failed(error.to_string()))?;
    if json {
        let text = serde_json::to_string_pretty(&totals)
            .map_err(|error| CliError::Failed(format!("cannot format totals: {error}")))?;
        output::result_line(&text);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = totals
        .iter()
        .map(|total| {
            vec![
                total.key.clone().unwrap_or_else(|| "-".into()),
                total.requests.to_string(),
                total.failed.to_string(),
                total.input_tokens.to_string(),
                total.output_tokens.to_string(),
                format!("${:.6}", total.cost_usd),
                total.usage_unknown.to_string(),
            ]
        })
        .collect();
    output::result_line(&output::table(
        &[
            "GROUP",
            "REQUESTS",
            "FAILED",
            "IN",
            "OUT",
            "COST",
            "USAGE UNKNOWN",
        ],
        &rows,
    ));
    Ok(())
}

fn build_filter(args: &LogFilterArgs) -> Result<LogFilter, CliError> {
    let status = args
        .status
        .as_deref()
        .map(|text| text.parse::<StatusClass>())
        .transpose()
        .map_err(CliError::Usage)?;
    Ok(LogFilter {
        since: args
            .since
            .as_deref()
            .map(|text| parse_time("--since", text))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|text| parse_time("--until", text))
            .transpose()?,
        provider: args.provider.clone(),
        model: args.model.clone(),
        status,
        token_name: args.token.clone(),
        path_contains: args.path.clone(),
    })
}

/// Parses RFC 3339, or an age such as `30m`, `24h` or `7d` before now.
fn parse_time(option: &str, text: &str) -> Result<DateTime<Utc>, CliError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let invalid = || {
        CliError::Usage(format!(
            "{option} {text:?} is invalid; use RFC 3339 (2026-12-01T00:00:00Z) or an age such as 30m, 24h or 7d"
        ))
    };
    let split = text.len().checked_sub(1).ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let count: i64 = number.parse().map_err(|_| invalid())?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let age = count
        .checked_mul(seconds_per_unit)
        .and_then(chrono::TimeDelta::try_seconds)
        .ok_or_else(invalid)?;
    Ok(Utc::now() - age)
}
