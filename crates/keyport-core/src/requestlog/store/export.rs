//! CSV and JSON Lines export of stored requests.

use std::io::Write;
use std::path::Path;

use rusqlite::{params_from_iter, Connection};

use super::super::record::LoggedRequest;
use super::query::{self, LogFilter};
use super::{schema, LogError};

/// File format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

const CSV_HEADER: [&str; 25] = [
    "id",
    "start_time",
    "token_name",
    "key_label",
    "origin",
    "provider",
    "method",
    "path",
    "model",
    "streamed",
    "status",
    "error_kind",
    "usage_note",
    "latency_ms",
    "ttfb_ms",
    "request_bytes",
    "response_bytes",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cost_usd",
    "upstream_request_id",
    "request_body",
    "response_body",
];

pub(crate) fn export(
    connection: &Connection,
    path: &Path,
    filter: &LogFilter,
    format: ExportFormat,
    output: &mut dyn Write,
) -> Result<u64, LogError> {
    let io_error = |source| LogError::Export { source };
    let (where_sql, values) = query::where_clause(filter, None);
    let sql = format!(
        "SELECT {} FROM requests {where_sql} ORDER BY start_ms DESC, id DESC",
        query::COLUMNS
    );
    let mut statement = connection
        .prepare(&sql)
        .map_err(|error| schema::classify(path, "export", error))?;
    let mut rows = statement
        .query(params_from_iter(values))
        .map_err(|error| schema::classify(path, "export", error))?;

    if format == ExportFormat::Csv {
        write_csv_line(output, CSV_HEADER.iter().map(|name| name.to_string())).map_err(io_error)?;
    }
    let mut count = 0;
    while let Some(row) = rows
        .next()
        .map_err(|error| schema::classify(path, "export", error))?
    {
        let request =
            query::row_to_request(row).map_err(|error| schema::classify(path, "export", error))?;
        match format {
            ExportFormat::Csv => write_csv_line(output, csv_fields(&request)).map_err(io_error)?,
            ExportFormat::JsonLines => {
                serde_json::to_writer(&mut *output, &request)
                    .map_err(|error| io_error(std::io::Error::other(error)))?;
                output.write_all(b"\n").map_err(io_error)?;
            }
        }
        count += 1;
    }
    output.flush().map_err(io_error)?;
    Ok(count)
}

fn csv_fields(request: &LoggedRequest) -> Vec<String> {
    let record = &request.record;
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let number = |value: Option<u64>| value.map(|v| v.to_string()).unwrap_or_default();
    vec![
        request.id.to_string(),
        record
            .start_time
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        text(&record.token_name),
        text(&record.key_label),
        text(&record.origin),
        record.provider.clone(),
        record.method.clone(),
        record.path.as_str().to_string(),
        text(&record.model),
        record.streamed.to_string(),
        number(record.status.map(u64::from)),
        record
            .error_kind
            .as_ref()
            .map(|kind| kind.as_str().to_string())
            .unwrap_or_default(),
        record
            .usage_note
            .map(|note| note.as_str().to_string())
            .unwrap_or_default(),
        record.latency_ms.to_string(),
        number(record.ttfb_ms),
        record.request_bytes.to_string(),
        record.response_bytes.to_string(),
        number(record.input_tokens),
        number(record.output_tokens),
        number(record.cached_tokens),
        number(record.cache_write_tokens),
        record
            .cost_usd
            .map(|cost| cost.to_string())
            .unwrap_or_default(),
        text(&record.upstream_request_id),
        record
            .request_body
            .as_ref()
            .map(|body| body.as_str().to_string())
            .unwrap_or_default(),
        record
            .response_body
            .as_ref()
            .map(|body| body.as_str().to_string())
            .unwrap_or_default(),
    ]
}

/// Writes one CSV record: fields with a comma, quote, CR or LF are quoted,
/// with quotes doubled; lines end in CRLF as RFC 4180 specifies.
fn write_csv_line(
    output: &mut dyn Write,
    fields: impl IntoIterator<Item = String>,
) -> std::io::Result<()> {
    let mut line = String::new();
    for (index, field) in fields.into_iter().enumerate() {
        if index > 0 {
            line.push(',');
        }
        line.push_str(&csv_field(&field));
    }
    line.push_str("\r\n");
    output.write_all(line.as_bytes())
}

/// Quotes a CSV field when needed (RFC 4180). A field that starts with a
/// character spreadsheets read as a formula (`=`, `+`, `-`, `@`, tab or
/// carriage return) gets a leading `'`. Model names, request ids and
/// captured bodies come from upstream responses, so they must not run as
/// formulas when the export is opened.
pub(crate) fn csv_field(field: &str) -> std::borrow::Cow<'_, str> {
    let field: std::borrow::Cow<'_, str> = if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{field}"))
    } else {
        std::borrow::Cow::Borrowed(field)
    };
    if field.contains([',', '"', '\r', '\n']) {
        std::borrow::Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
    } else {
        field
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn csv_fields_never_start_a_formula() {
        assert_eq!(
            csv_field("=HYPERLINK(\"http://evil.test\")"),
            "\"'=HYPERLINK(\"\"http://evil.test\"\")\""
        );
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-2"), "'-2");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("gpt-4o"), "gpt-4o");
    }
}
