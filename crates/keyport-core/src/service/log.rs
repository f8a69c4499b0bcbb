//! Opening the request log and the price table for a proxy run.

use std::sync::Arc;

use super::StartWarning;
use crate::config::Config;
use crate::paths::DataDir;
use crate::requestlog::{PriceTable, RequestLog};

/// An open request log and the prices its rows are costed with.
#[derive(Debug, Clone)]
pub struct LogHandle {
    pub log: Arc<RequestLog>,
    pub prices: Arc<PriceTable>,
}

/// Opens the request log and the price table as `config` says. A log that
/// cannot be opened comes back as a warning and `None`: the proxy serves
/// without it rather than not at all.
pub fn open_request_log(
    data_dir: &DataDir,
    config: &Config,
) -> (Option<LogHandle>, Vec<StartWarning>) {
    let mut warnings = Vec::new();
    if !config.log.enabled {
        return (None, warnings);
    }
    let prices = match PriceTable::load(&data_dir.prices()) {
        Ok(prices) => prices,
        Err(error) => {
            warnings.push(StartWarning::PricesFallback(error.to_string()));
            match PriceTable::shipped() {
                Ok(prices) => prices,
                Err(error) => {
                    warnings.push(StartWarning::NoPrices(error.to_string()));
                    PriceTable::default()
                }
            }
        }
    };
    match RequestLog::open(&data_dir.request_log(), config.log.settings()) {
        Ok(log) => {
            let handle = LogHandle {
                log: Arc::new(log),
                prices: Arc::new(prices),
            };
            (Some(handle), warnings)
        }
        Err(error) => {
            warnings.push(StartWarning::RequestLogOff(error.to_string()));
            (None, warnings)
        }
    }
}
