//! The limits of one client token as stored in `tokens.json`, and their
//! validated form.

use serde::{Deserialize, Serialize};

use super::pattern::{ModelPattern, PatternError};

/// Warning threshold when none is set, in percent of a spend cap.
pub const DEFAULT_WARN_AT_PERCENT: u8 = 80;

/// Highest requests-per-minute limit. Larger values would make the GCRA
/// interval round to a point where more than the limit fit in a minute.
pub const MAX_REQUESTS_PER_MINUTE: u32 = 100_000;

/// Highest tokens-per-minute limit: ten billion, far above any provider's.
pub const MAX_TOKENS_PER_MINUTE: u64 = 10_000_000_000;

/// Limits of one token, as written in `tokens.json`. Every field is
/// optional; a missing one does not limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Input plus output tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Spend cap per UTC day, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_usd: Option<f64>,
    /// Spend cap per UTC calendar month, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_usd: Option<f64>,
    /// Percentage of a spend cap at which a warning is logged once per
    /// period; [`DEFAULT_WARN_AT_PERCENT`] when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_at_percent: Option<u8>,
    /// `PROVIDER:MODEL` patterns; when not empty, only matching models may
    /// be called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

/// Reason a limit value was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitsError {
    #[error("requests per minute must be between 1 and {MAX_REQUESTS_PER_MINUTE}, not {0}")]
    RequestsPerMinute(u32),

    #[error("tokens per minute must be between 1 and {MAX_TOKENS_PER_MINUTE}, not {0}")]
    TokensPerMinute(u64),

    #[error("the {period} spend cap must be a positive number of US dollars, not {value}")]
    SpendCap { period: &'static str, value: f64 },

    #[error("the warning threshold must be between 1 and 100 percent, not {0}")]
    WarnAt(u8),

    #[error(transparent)]
    Pattern(#[from] PatternError),
}

impl TokenLimits {
    /// Returns whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self == &TokenLimits::default()
    }

    /// Returns the warning threshold in percent.
    pub fn warn_at(&self) -> u8 {
        self.warn_at_percent.unwrap_or(DEFAULT_WARN_AT_PERCENT)
    }

    /// Checks every value and compiles the patterns.
    pub fn validate(&self) -> Result<ActiveLimits, LimitsError> {
        if let Some(rpm) = self.requests_per_minute {
            if rpm == 0 || rpm > MAX_REQUESTS_PER_MINUTE {
                return Err(LimitsError::RequestsPerMinute(rpm));
            }
        }
        if let Some(tpm) = self.tokens_per_minute {
            if tpm == 0 || tpm > MAX_TOKENS_PER_MINUTE {
                return Err(LimitsError::TokensPerMinute(tpm));
            }
        }
        for (period, cap) in [("daily", self.daily_usd), ("monthly", self.monthly_usd)] {
            if let Some(value) = cap {
                if !(value.is_finite() && value > 0.0) {
                    return Err(LimitsError::SpendCap { period, value });
                }
            }
        }
        let warn_at = self.warn_at();
        if warn_at == 0 || warn_at > 100 {
            return Err(LimitsError::WarnAt(warn_at));
        }
        let allow = self
            .allow
            .iter()
            .map(|text| ModelPattern::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ActiveLimits {
            requests_per_minute: self.requests_per_minute.map(u64::from),
            tokens_per_minute: self.tokens_per_minute,
            daily_usd: self.daily_usd,
            monthly_usd: self.monthly_usd,
            warn_fraction: f64::from(warn_at) / 100.0,
            allow,
        })
    }
}

/// Validated limits, as the proxy applies them.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    /// Warning threshold as a fraction of a cap, such as 0.8.
    pub warn_fraction: f64,
    /// Empty when every model is allowed.
    pub allow: Vec<ModelPattern>,
}

impl ActiveLimits {
    /// Limits that limit nothing.
    pub(crate) fn none() -> Self {
        Self {
            requests_per_minute: None,
            tokens_per_minute: None,
            daily_usd: None,
            monthly_usd: None,
            warn_fraction: f64::from(DEFAULT_WARN_AT_PERCENT) / 100.0,
            allow: Vec::new(),
        }
    }

    /// Returns whether `provider` and `model` pass the allow-list.
    pub fn allows(&self, provider: &str, model: &str) -> bool {
        self.allow.is_empty()
            || self
                .allow
                .iter()
                .any(|pattern| pattern.matches(provider, model))
    }

    pub(crate) fn has_spend_caps(&self) -> bool {
        self.daily_usd.is_some() || self.monthly_usd.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_are_rejected() {
        let cases = [
            TokenLimits {
                requests_per_minute: Some(0),
                ..Default::default()
            },
            TokenLimits {
                tokens_per_minute: Some(0),
                ..Default::default()
            },
            TokenLimits {
                daily_usd: Some(-1.0),
                ..Default::default()
            },
            TokenLimits {
                monthly_usd: Some(f64::NAN),
                ..Default::default()
            },
            TokenLimits {
                warn_at_percent: Some(101),
                ..Default::default()
            },
            TokenLimits {
                allow: vec!["gpt-4o".into()],
                ..Default::default()
            },
        ];
        for limits in cases {
            assert!(limits.validate().is_err(), "{limits:?}");
        }
    }

    #[test]
    fn empty_allow_list_allows_everything() {
        let active = TokenLimits::default().validate().unwrap();
        assert!(active.allows("openai", "gpt-4o"));
        let active = TokenLimits {
            allow: vec!["anthropic:*".into()],
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert!(active.allows("anthropic", "claude-3-5-haiku"));
        assert!(!active.allows("openai", "gpt-4o"));
    }
}
