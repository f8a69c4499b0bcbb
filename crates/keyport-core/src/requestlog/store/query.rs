//! Filters, pages and totals over the stored requests.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::Row;
use serde::Serialize;

use super::super::record::{CapturedBody, ErrorKind, LoggedPath, LoggedRequest, RequestRecord};
use super::super::usage::UsageNote;

/// Milliseconds in a UTC day.
const DAY_MS: i64 = 86_400_000;

/// Largest page a query returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A range of HTTP statuses, or the failed calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// Calls with an error kind or without any response. A call that
    /// Keyport rejected (for example `unauthorized`, answered with 401) is
    /// in this class, not in [`StatusClass::ClientError`].
    Failed,
}

impl StatusClass {
    /// Returns the stored `status_class` value.
    pub(crate) fn code(self) -> i64 {
        match self {
            StatusClass::Failed => 0,
            StatusClass::Informational => 1,
            StatusClass::Success => 2,
            StatusClass::Redirection => 3,
            StatusClass::ClientError => 4,
            StatusClass::ServerError => 5,
        }
    }

    /// Returns the stored `status_class` value for a record.
    pub(crate) fn code_of(record: &RequestRecord) -> i64 {
        match (&record.error_kind, record.status) {
            (Some(_), _) | (None, None) => 0,
            (None, Some(status @ 100..=599)) => i64::from(status / 100),
            // Not a valid HTTP status; matches no class filter but Failed.
            (None, Some(_)) => 9,
        }
    }
}

impl FromStr for StatusClass {
    type Err = String;

    /// Parses `1xx` … `5xx` or `error`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "1xx" => Ok(StatusClass::Informational),
            "2xx" => Ok(StatusClass::Success),
            "3xx" => Ok(StatusClass::Redirection),
            "4xx" => Ok(StatusClass::ClientError),
            "5xx" => Ok(StatusClass::ServerError),
            "error" | "failed" => Ok(StatusClass::Failed),
            _ => Err(format!(
                "invalid status class {text:?}; use 1xx, 2xx, 3xx, 4xx, 5xx or error"
            )),
        }
    }
}

/// Conditions that select the requests of a query, total or export. Empty
/// fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Requests that started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Requests that started before this time.
    pub until: Option<DateTime<Utc>>,
    pub provider: Option<String>,
    /// Exact model name.
    pub model: Option<String>,
    pub status: Option<StatusClass>,
    pub token_name: Option<String>,
    /// Text the path contains, ignoring ASCII case.
    pub path_contains: Option<String>,
}

/// Position after the last row of a page: rows come newest first, ordered
/// by start time and then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub start_ms: i64,
    pub id: i64,
}

impl Cursor {
    /// Returns the cursor whose page starts with the row after `request`.
    pub fn after(request: &LoggedRequest) -> Self {
        Self {
            start_ms: request.record.start_time.timestamp_millis(),
            id: request.id,
        }
    }
}

impl fmt::Display for Cursor {
    /// Formats as `START_MS.ID`, for passing through a UI or URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.start_ms, self.id)
    }
}

impl FromStr for Cursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid =
            || format!("invalid cursor {text:?}; pass the `next` value of a previous page");
        let (start, id) = text.split_once('.').ok_or_else(invalid)?;
        Ok(Cursor {
            start_ms: start.parse().map_err(|_| invalid())?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

/// Position and size of a requested page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows per page, at most [`MAX_PAGE_SIZE`].
    pub limit: u32,
    /// `None` for the newest rows, else the `next` of the previous page.
    pub after: Option<Cursor>,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        Self { limit, after: None }
    }
}

/// One page of rows, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor of the following page; `None` on the last page.
    #[serde(serialize_with = "serialize_cursor")]
    pub next: Option<Cursor>,
}

fn serialize_cursor<S: serde::Serializer>(
    cursor: &Option<Cursor>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match cursor {
        Some(cursor) => serializer.serialize_str(&cursor.to_string()),
        None => serializer.serialize_none(),
    }
}

/// Grouping of totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// UTC calendar day, as `YYYY-MM-DD`.
    Day,
    Provider,
    Model,
    /// Client token name.
    Token,
}

/// Sums over one group of requests. Token and cost sums cover only the
/// requests where the number is known, and the `*_unknown` fields count the
/// requests left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// The group's day, provider, model or token name; `None` for requests
    /// without a model or token.
    pub key: Option<String>,
    pub requests: u64,
    /// Requests in [`StatusClass::Failed`].
    pub failed: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    /// Requests whose input or output token count is unknown.
    pub usage_unknown: u64,
    pub cost_usd: f64,
    /// Requests without a cost estimate.
    pub cost_unknown: u64,
}

/// Columns read for a [`LoggedRequest`], in [`row_to_request`] order.
pub(crate) const COLUMNS: &str =
    "id, start_ms, token_name, origin, provider, method, path, model, \
    streamed, status, error_kind, usage_note, latency_ms, ttfb_ms, request_bytes, response_bytes, \
    input_tokens, output_tokens, cached_tokens, cache_write_tokens, cost_usd, upstream_request_id, \
    request_body, response_body, key_label";

/// Builds `WHERE …` for a filter and an optional cursor.
pub(crate) fn where_clause(filter: &LogFilter, after: Option<Cursor>) -> (String, Vec<SqlValue>) {
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();

    if let Some(since) = filter.since {
        conditions.push("start_ms >= ?");
        values.push(SqlValue::Integer(since.timestamp_millis()));
    }
    if let Some(until) = filter.until {
        conditions.push("start_ms < ?");
        values.push(SqlValue::Integer(until.timestamp_millis()));
    }
    let text_filters = [
        ("provider = ?", &filter.provider),
        ("model = ?", &filter.model),
        ("token_name = ?", &filter.token_name),
    ];
    for (condition, value) in text_filters {
        if let Some(value) = value {
            conditions.push(condition);
            values.push(SqlValue::Text(value.clone()));
        }
    }
    if let Some(status) = filter.status {
        conditions.push("status_class = ?");
        values.push(SqlValue::Integer(status.code()));
    }
    if let Some(text) = &filter.path_contains {
        // NOTE: no index serves a substring match, so SQLite walks the
        // `requests_by_time_path` index newest first until the page is
        // full. A text that matches nothing reads that whole index.
        conditions.push("path LIKE ? ESCAPE '\\'");
        values.push(SqlValue::Text(format!("%{}%", escape_like(text))));
    }
    if let Some(cursor) = after {
        conditions.push("(start_ms, id) < (?, ?)");
        values.push(SqlValue::Integer(cursor.start_ms));
        values.push(SqlValue::Integer(cursor.id));
    }

    if conditions.is_empty() {
        (String::new(), values)
    } else {
        (format!("WHERE {}", conditions.join(" AND ")), values)
    }
}

fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Builds the SQL and parameters of one page query.
pub(crate) fn page_sql(filter: &LogFilter, page: PageRequest) -> (String, Vec<SqlValue>) {
    let (where_sql, mut values) = where_clause(filter, page.after);
    // One extra row shows whether another page follows.
    let limit = page.limit.clamp(1, MAX_PAGE_SIZE) + 1;
    values.push(SqlValue::Integer(i64::from(limit)));
    let sql = format!(
        "SELECT {COLUMNS} FROM requests {where_sql} ORDER BY start_ms DESC, id DESC LIMIT ?"
    );
    (sql, values)
}

/// Builds the SQL and parameters of a totals query.
pub(crate) fn totals_sql(filter: &LogFilter, group: GroupBy) -> (String, Vec<SqlValue>) {
    let key = match group {
        GroupBy::Day => format!("start_ms / {DAY_MS}"),
        GroupBy::Provider => "provider".to_string(),
        GroupBy::Model => "model".to_string(),
        GroupBy::Token => "token_name".to_string(),
    };
    let (where_sql, values) = where_clause(filter, None);
    let sql = format!(
        "SELECT {key} AS group_key, count(*), total(status_class = 0), \
         total(input_tokens), total(output_tokens), total(cached_tokens), \
         total(cache_write_tokens), \
         total(input_tokens IS NULL OR output_tokens IS NULL), \
         total(cost_usd), total(cost_usd IS NULL) \
         FROM requests {where_sql} GROUP BY group_key ORDER BY group_key"
    );
    (sql, values)
}

pub(crate) fn row_to_totals(row: &Row<'_>, group: GroupBy) -> rusqlite::Result<Totals> {
    let key = match group {
        GroupBy::Day => {
            let day: i64 = row.get(0)?;
            Utc.timestamp_millis_opt(day.saturating_mul(DAY_MS))
                .single()
                .map(|time| time.date_naive().to_string())
        }
        _ => row.get::<_, Option<String>>(0)?,
    };
    // total() returns a float; counts and token sums are whole numbers.
    let whole =
        |index: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, f64>(index)?.max(0.0) as u64) };
    Ok(Totals {
        key,
        requests: row.get::<_, i64>(1)?.max(0) as u64,
        failed: whole(2)?,
        input_tokens: whole(3)?,
        output_tokens: whole(4)?,
        cached_tokens: whole(5)?,
        cache_write_tokens: whole(6)?,
        usage_unknown: whole(7)?,
        cost_usd: row.get(8)?,
        cost_unknown: whole(9)?,
    })
}

fn get_u64(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<u64>> {
    Ok(row
        .get::<_, Option<i64>>(index)?
        .map(|value| value.max(0) as u64))
}

pub(crate) fn row_to_request(row: &Row<'_>) -> rusqlite::Result<LoggedRequest> {
    let start_ms: i64 = row.get(1)?;
    let start_time = Utc
        .timestamp_millis_opt(start_ms)
        .single()
        .unwrap_or_default();
    let record = RequestRecord {
        start_time,
        token_name: row.get(2)?,
        key_label: row.get(24)?,
        origin: row.get(3)?,
        provider: row.get(4)?,
        method: row.get(5)?,
        path: LoggedPath::from_stored(row.get(6)?),
        model: row.get(7)?,
        streamed: row.get(8)?,
        status: row
            .get::<_, Option<i64>>(9)?
            .and_then(|status| u16::try_from(status).ok()),
        error_kind: row
            .get::<_, Option<String>>(10)?
            .map(ErrorKind::from_stored),
        usage_note: row
            .get::<_, Option<String>>(11)?
            .and_then(|note| UsageNote::parse(&note)),
        latency_ms: get_u64(row, 12)?.unwrap_or(0),
        ttfb_ms: get_u64(row, 13)?,
        request_bytes: get_u64(row, 14)?.unwrap_or(0),
        response_bytes: get_u64(row, 15)?.unwrap_or(0),
        input_tokens: get_u64(row, 16)?,
        output_tokens: get_u64(row, 17)?,
        cached_tokens: get_u64(row, 18)?,
        cache_write_tokens: get_u64(row, 19)?,
        cost_usd: row.get(20)?,
        upstream_request_id: row.get(21)?,
        request_body: row
            .get::<_, Option<String>>(22)?
            .map(CapturedBody::from_stored),
        response_body: row
            .get::<_, Option<String>>(23)?
            .map(CapturedBody::from_stored),
    };
    Ok(LoggedRequest {
        id: row.get(0)?,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let cursor = Cursor {
            start_ms: 1_700_000_000_123,
            id: 42,
        };
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        assert!("17.x".parse::<Cursor>().is_err());
        assert!("17".parse::<Cursor>().is_err());
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("a%b_c\\"), "a\\%b\\_c\\\\");
    }

    #[test]
    fn status_class_parses() {
        assert_eq!("4XX".parse::<StatusClass>(), Ok(StatusClass::ClientError));
        assert_eq!("error".parse::<StatusClass>(), Ok(StatusClass::Failed));
        assert!("6xx".parse::<StatusClass>().is_err());
    }
}
