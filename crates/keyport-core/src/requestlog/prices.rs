//! Model prices and cost estimates.
//!
//! Keyport ships a dated price table (`data/prices.toml`, compiled in). A
//! `prices.toml` in the data folder, with the same layout, adds models or
//! replaces shipped entries model by model. Costs are estimates: they use
//! the list price of text tokens and ignore batch discounts, audio and image
//! output prices, and per-hour cache storage fees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::usage::Usage;

/// The price table compiled into Keyport.
const SHIPPED_PRICES: &str = include_str!("../../data/prices.toml");

/// Name used for the shipped table in error messages.
const SHIPPED_NAME: &str = "the built-in price table";

/// Errors from loading a price table.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("cannot read price file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("invalid price file {path}: {message}")]
    Invalid { path: String, message: String },
}

/// `prices.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriceFile {
    date: Option<String>,
    source: Option<String>,
    #[serde(default)]
    providers: BTreeMap<String, BTreeMap<String, RawModelPrice>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModelPrice {
    input: f64,
    output: f64,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    cache_write_1h: Option<f64>,
    long_context: Option<RawLongContext>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLongContext {
    above_input_tokens: u64,
    input: f64,
    output: f64,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    cache_write_1h: Option<f64>,
}

/// Prices of one tier, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierPrice {
    pub input: f64,
    pub output: f64,
    pub cached_input: Option<f64>,
    pub cache_write: Option<f64>,
    pub cache_write_1h: Option<f64>,
}

/// Prices of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    pub base: TierPrice,
    /// Prices for the whole request when the prompt exceeds the threshold,
    /// in input tokens.
    pub long_context: Option<(u64, TierPrice)>,
}

/// Model prices by provider id and model name. The default table is
/// empty, so it estimates no cost.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    date: String,
    source: String,
    override_file: Option<PathBuf>,
    providers: BTreeMap<String, BTreeMap<String, ModelPrice>>,
}

impl PriceTable {
    /// Loads the price table compiled into Keyport.
    pub fn shipped() -> Result<Self, PriceError> {
        let raw = parse(SHIPPED_NAME, SHIPPED_PRICES)?;
        let providers = validate(SHIPPED_NAME, raw.providers)?;
        Ok(Self {
            date: raw.date.unwrap_or_default(),
            source: raw.source.unwrap_or_default(),
            override_file: None,
            providers,
        })
    }

    /// Loads the shipped table and applies the entries of `override_file`,
    /// if that file exists.
    pub fn load(override_file: &Path) -> Result<Self, PriceError> {
        let mut table = Self::shipped()?;
        let text = match std::fs::read_to_string(override_file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(table),
            Err(source) => {
                return Err(PriceError::Read {
                    path: override_file.to_path_buf(),
                    source,
                })
            }
        };
        table.apply_override(override_file, &text)?;
        Ok(table)
    }

    /// Applies override text as if read from `path`.
    pub fn apply_override(&mut self, path: &Path, text: &str) -> Result<(), PriceError> {
        let name = path.display().to_string();
        let raw = parse(&name, text)?;
        let overrides = validate(&name, raw.providers)?;
        for (provider, models) in overrides {
            self.providers.entry(provider).or_default().extend(models);
        }
        self.override_file = Some(path.to_path_buf());
        Ok(())
    }

    /// Date of the shipped prices, `YYYY-MM-DD`.
    pub fn date(&self) -> &str {
        &self.date
    }

    /// Returns the source of the shipped prices.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Returns the user file whose entries were applied, if any.
    pub fn override_file(&self) -> Option<&Path> {
        self.override_file.as_deref()
    }

    /// Finds the prices of `model`: an exact entry, else the longest entry
    /// that `model` extends with a date or version suffix
    /// (`gpt-4o-mini-2024-07-18` uses `gpt-4o-mini`). A `models/` prefix,
    /// as Gemini writes model names, is ignored.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        let models = self.providers.get(provider)?;
        let model = model.strip_prefix("models/").unwrap_or(model);
        if let Some(price) = models.get(model) {
            return Some(price);
        }
        models
            .iter()
            .filter(|(name, _)| {
                model
                    .strip_prefix(name.as_str())
                    .is_some_and(is_version_suffix)
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, price)| price)
    }

    /// Estimates the cost of a request in US dollars. Returns `None` when
    /// the model has no price, when input or output tokens are unknown, or
    /// when the usage includes a kind of token the model has no price for.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<f64> {
        let price = self.lookup(provider, model)?;
        price.cost(usage)
    }
}

impl ModelPrice {
    /// Computes the cost of `usage` at these prices, as [`PriceTable::cost`]
    /// describes.
    pub fn cost(&self, usage: &Usage) -> Option<f64> {
        let input = usage.input_tokens?;
        let output = usage.output_tokens?;
        let tier = match self.long_context {
            Some((threshold, long)) if input > threshold => long,
            _ => self.base,
        };

        // Unknown cache counts mean the provider reported none.
        let cached = usage.cached_tokens.unwrap_or(0);
        let written = usage.cache_write_tokens.unwrap_or(0);
        let written_1h = usage.cache_write_1h_tokens.unwrap_or(0).min(written);
        let written_5m = written - written_1h;
        let uncached = input.checked_sub(cached)?.checked_sub(written)?;

        let priced = |tokens: u64, price: Option<f64>| -> Option<f64> {
            match (tokens, price) {
                (0, _) => Some(0.0),
                (_, Some(price)) => Some(tokens as f64 * price),
                (_, None) => None,
            }
        };
        let total = uncached as f64 * tier.input
            + priced(cached, tier.cached_input)?
            + priced(written_5m, tier.cache_write)?
            + priced(written_1h, tier.cache_write_1h)?
            + output as f64 * tier.output;
        Some(total / 1_000_000.0)
    }
}

/// Whether `rest` (what follows a table entry in a model name) is a date or
/// version suffix: `-latest`, `-2024-07-18`, `-20241022`, `-2411`, `-001`,
/// or the same after `@`.
fn is_version_suffix(rest: &str) -> bool {
    let Some(tail) = rest.strip_prefix('-').or_else(|| rest.strip_prefix('@')) else {
        return false;
    };
    let all_digits = |text: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
    };
    if tail == "latest" || all_digits(tail, 3..=8) {
        return true;
    }
    let parts: Vec<&str> = tail.split('-').collect();
    matches!(parts.as_slice(), [year, month, day]
        if all_digits(year, 4..=4) && all_digits(month, 2..=2) && all_digits(day, 2..=2))
}

fn parse(name: &str, text: &str) -> Result<RawPriceFile, PriceError> {
    toml::from_str(text).map_err(|error| PriceError::Invalid {
        path: name.to_string(),
        message: error.to_string().trim_end().to_string(),
    })
}

fn validate(
    name: &str,
    raw: BTreeMap<String, BTreeMap<String, RawModelPrice>>,
) -> Result<BTreeMap<String, BTreeMap<String, ModelPrice>>, PriceError> {
    let mut providers = BTreeMap::new();
    for (provider, models) in raw {
        let mut checked = BTreeMap::new();
        for (model, price) in models {
            let invalid = |message: String| PriceError::Invalid {
                path: name.to_string(),
                message: format!("[providers.{provider}] \"{model}\": {message}"),
            };
            let base = tier(
                price.input,
                price.output,
                price.cached_input,
                price.cache_write,
                price.cache_write_1h,
            )
            .map_err(invalid)?;
            let long_context = match price.long_context {
                Some(long) => {
                    let tier = tier(
                        long.input,
                        long.output,
                        long.cached_input,
                        long.cache_write,
                        long.cache_write_1h,
                    )
                    .map_err(|message| invalid(format!("long_context: {message}")))?;
                    Some((long.above_input_tokens, tier))
                }
                None => None,
            };
            checked.insert(model, ModelPrice { base, long_context });
        }
        providers.insert(provider, checked);
    }
    Ok(providers)
}

fn tier(
    input: f64,
    output: f64,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    cache_write_1h: Option<f64>,
) -> Result<TierPrice, String> {
    let fields = [
        ("input", Some(input)),
        ("output", Some(output)),
        ("cached_input", cached_input),
        ("cache_write", cache_write),
        ("cache_write_1h", cache_write_1h),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            if !value.is_finite() || value < 0.0 {
                return Err(format!(
                    "{field} = {value} is not a price; use dollars per million tokens, 0 or more"
                ));
            }
        }
    }
    Ok(TierPrice {
        input,
        output,
        cached_input,
        cache_write,
        cache_write_1h,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_parses_and_is_dated() {
        let table = PriceTable::shipped().unwrap();
        assert_eq!(table.date().len(), 10);
        assert!(chrono::NaiveDate::parse_from_str(table.date(), "%Y-%m-%d").is_ok());
        for provider in ["openai", "anthropic", "google", "mistral"] {
            assert!(table.providers.get(provider).is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn version_suffixes() {
        for rest in [
            "-latest",
            "-2024-07-18",
            "-20241022",
            "-2411",
            "-001",
            "@20240229",
        ] {
            assert!(is_version_suffix(rest), "{rest}");
        }
        for rest in [
            "",
            "-mini",
            "-5",
            "-1-20250805",
            "-preview-05-20",
            "latest",
            "-2024-7-18",
        ] {
            assert!(!is_version_suffix(rest), "{rest}");
        }
    }
}
