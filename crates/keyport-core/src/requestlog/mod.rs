//! The request log: one row per proxied request, kept in a SQLite file in
//! the data folder.
//!
//! This module owns recording ([`Recorder`], [`RequestLog`]), reading token
//! usage from responses as they stream through the proxy ([`UsageTap`],
//! [`inspect_request`]), cost estimates ([`PriceTable`]) and credential
//! redaction for captured bodies ([`redact`]). It does not touch the
//! forwarded bytes and does not depend on the proxy or the vault. The proxy
//! builds a [`RequestRecord`] per call and hands it to a [`Recorder`].
//!
//! ```no_run
//! use keyport_core::requestlog::{
//!     LogSettings, PriceTable, RequestLog, RequestRecord, UsageFormat, UsageTap,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let log = RequestLog::open("requests.sqlite3".as_ref(), LogSettings::default())?;
//! let prices = PriceTable::shipped()?;
//! let recorder = log.recorder();
//!
//! let mut record = RequestRecord::new(chrono::Utc::now(), "openai", "POST", "/v1/chat/completions");
//! let mut tap = UsageTap::new(UsageFormat::OpenAi, Some("application/json"), None);
//! tap.push(br#"{"model":"gpt-4o-mini","usage":{"prompt_tokens":12,"completion_tokens":3}}"#);
//! record.status = Some(200);
//! record.apply_usage(&tap.finish(), &prices);
//! recorder.record(record);
//! # Ok(())
//! # }
//! ```

pub(crate) mod json_scan;
mod prices;
mod record;
mod redact;
pub(crate) mod request;
mod sse;
mod store;
mod tap;
mod usage;
mod ws_usage;

pub use prices::{ModelPrice, PriceError, PriceTable, TierPrice};
pub use record::{CapturedBody, ErrorKind, LoggedPath, LoggedRequest, RequestRecord};
pub use redact::{redact, REDACTED};
pub use request::{inspect_request, model_from_request, RequestInfo, REQUEST_INSPECT_LIMIT};
pub use store::{
    Cursor, ExportFormat, GroupBy, LogError, LogFilter, LogSettings, LogStats, Page, PageRequest,
    Recorder, RequestLog, StatusClass, Totals, DEFAULT_BODY_CAPTURE_LIMIT, DEFAULT_MAX_ROWS,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_RETENTION_DAYS, MAX_PAGE_SIZE,
};
pub use tap::{BodyCapture, UsageTap};
pub use usage::{Usage, UsageFormat, UsageNote};
