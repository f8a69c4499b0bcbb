//! Limits per client token: requests and tokens per minute, spend caps per
//! UTC day and month, and model allow-lists.
//!
//! Limits are stored with the tokens in `tokens.json` ([`TokenLimits`]) and
//! applied by the proxy through one shared [`Limiter`], which keeps the
//! counters of every limited token in memory. Tokens without limits never
//! reach the limiter. This module decides; the proxy turns a [`Rejection`]
//! into a provider-shaped error response.
//!
//! Spend counters start from the request log's costs of the current day and
//! month ([`Limiter::seed_from_log`]) and then grow as calls finish. Rate
//! counters start empty at every start.

mod clock;
mod pattern;
mod rate;
mod settings;
mod spend;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use clock::{Clock, ManualClock, SystemClock};
pub use pattern::{ModelPattern, PatternError};
pub use settings::{
    ActiveLimits, LimitsError, TokenLimits, DEFAULT_WARN_AT_PERCENT, MAX_REQUESTS_PER_MINUTE,
    MAX_TOKENS_PER_MINUTE,
};
pub use spend::{period_end, period_start, Period};

use crate::requestlog::{GroupBy, LogError, LogFilter, PriceTable, RequestLog, Usage};
use rate::Gcra;
use spend::{PeriodKey, Spend};

/// The per-minute limit that rejected a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    Requests,
    Tokens,
}

impl RateKind {
    /// Returns the unit of the limit, for messages.
    pub fn unit(self) -> &'static str {
        match self {
            RateKind::Requests => "requests per minute",
            RateKind::Tokens => "tokens per minute",
        }
    }
}

/// Reason the limiter rejected a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The model is not on the token's allow-list.
    ModelNotAllowed { provider: String, model: String },
    /// The token has an allow-list but the request names no model that
    /// Keyport can read.
    ModelUnknown,
    /// A spend cap is reached; requests pass again at `resets_at`.
    SpendCap {
        period: Period,
        cap_usd: f64,
        spent_usd: f64,
        resets_at: DateTime<Utc>,
    },
    /// A per-minute limit is reached; retry after `retry_after_secs`.
    RateLimited {
        kind: RateKind,
        limit: u64,
        retry_after_secs: u64,
    },
}

/// Counters of one client token.
#[derive(Debug)]
struct TokenCounters {
    requests: Gcra,
    tokens: Gcra,
    spend: Mutex<Spend>,
}

/// An admitted request; hand it to [`Limiter::record_usage`] when the call ends.
#[derive(Debug, Clone)]
pub struct Admission {
    token: Arc<str>,
    limits: Arc<ActiveLimits>,
    counters: Arc<TokenCounters>,
    period: PeriodKey,
}

/// The counters of every client token that made a call, shared by all requests.
pub struct Limiter {
    clock: Arc<dyn Clock>,
    prices: Option<Arc<PriceTable>>,
    counters: RwLock<HashMap<Arc<str>, Arc<TokenCounters>>>,
    /// Limits of the admissions from [`Limiter::track_spend`].
    no_limits: Arc<ActiveLimits>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("tokens", &self.read_counters().len())
            .finish_non_exhaustive()
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock::new()), None)
    }
}

impl Limiter {
    /// Creates a limiter on `clock`. Without `prices`, no call has a known
    /// cost, so spend caps never fill.
    pub fn new(clock: Arc<dyn Clock>, prices: Option<Arc<PriceTable>>) -> Self {
        Self {
            clock,
            prices,
            counters: RwLock::new(HashMap::new()),
            no_limits: Arc::new(ActiveLimits::none()),
        }
    }

    /// Checks a request of `token` against its `limits`, in this order:
    /// allow-list, spend caps, tokens per minute, requests per minute. Only
    /// an admitted request counts against the requests-per-minute limit.
    pub fn admit(
        &self,
        token: &Arc<str>,
        limits: &Arc<ActiveLimits>,
        provider: &str,
        model: Option<&str>,
    ) -> Result<Admission, Rejection> {
        if !limits.allow.is_empty() {
            let model = model.ok_or(Rejection::ModelUnknown)?;
            if !limits.allows(provider, model) {
                return Err(Rejection::ModelNotAllowed {
                    provider: provider.to_string(),
                    model: model.to_string(),
                });
            }
        }

        let counters = self.counters_of(token);
        let now_utc = self.clock.now_utc();
        if limits.has_spend_caps() {
            check_spend(&counters, limits, now_utc)?;
        }

        let now = self.clock.monotonic();
        if let Some(limit) = limits.tokens_per_minute {
            counters
                .tokens
                .check(now)
                .map_err(|wait| rate_limited(RateKind::Tokens, limit, wait))?;
        }
        if let Some(limit) = limits.requests_per_minute {
            counters
                .requests
                .acquire(now, limit)
                .map_err(|wait| rate_limited(RateKind::Requests, limit, wait))?;
        }
        Ok(Admission {
            token: token.clone(),
            limits: limits.clone(),
            counters,
            period: PeriodKey::of(now_utc),
        })
    }

    /// Starts counting the spend of a call by `token`, which has no limits.
    /// A spend cap set while the proxy runs then includes that spend, as
    /// `keyport token list` does. Returns None when costs are unknown.
    pub fn track_spend(&self, token: &Arc<str>) -> Option<Admission> {
        self.prices.as_ref()?;
        Some(Admission {
            token: token.clone(),
            limits: self.no_limits.clone(),
            counters: self.counters_of(token),
            period: PeriodKey::of(self.clock.now_utc()),
        })
    }

    /// Counts the tokens and the cost of a finished call. Unknown token
    /// counts add nothing, and a call whose cost is unknown costs zero.
    pub fn record_usage(
        &self,
        admission: &Admission,
        provider: &str,
        request_model: Option<&str>,
        usage: &Usage,
    ) {
        let limits = &admission.limits;
        if let Some(limit) = limits.tokens_per_minute {
            let tokens = usage.input_tokens.unwrap_or(0) + usage.output_tokens.unwrap_or(0);
            if tokens > 0 {
                admission
                    .counters
                    .tokens
                    .add(self.clock.monotonic(), tokens, limit);
            }
        }
        // Spend is counted even without a cap, because a cap set while the
        // proxy runs must include what the token spent before it.
        let Some(cost) = self.cost(provider, request_model, usage) else {
            return;
        };
        let now = self.clock.now_utc();
        let mut spend = lock(&admission.counters.spend);
        spend.add(now, admission.period, cost);
        warn_near_caps(&admission.token, limits, &mut spend);
    }

    /// Sets the spend of the current day and month for `token`, replacing
    /// what was counted before.
    pub fn seed_spend(&self, token: &str, day_usd: f64, month_usd: f64) {
        let counters = self.counters_of(&Arc::from(token));
        let mut spend = lock(&counters.spend);
        *spend = Spend::new(self.clock.now_utc());
        spend.day_usd = day_usd;
        spend.month_usd = month_usd;
    }

    /// Seeds the spend of every token from the request log: the sum of
    /// `cost_usd` per token since the start of the current UTC day and
    /// month. Rows without a cost count as zero. Returns the number of
    /// tokens seeded.
    pub fn seed_from_log(&self, log: &RequestLog) -> Result<usize, LogError> {
        let now = self.clock.now_utc();
        let sums = |period| -> Result<HashMap<String, f64>, LogError> {
            let filter = LogFilter {
                since: Some(period_start(period, now)),
                ..LogFilter::default()
            };
            let totals = log.totals(&filter, GroupBy::Token)?;
            Ok(totals
                .into_iter()
                .filter_map(|total| Some((total.key?, total.cost_usd)))
                .collect())
        };
        let days = sums(Period::Day)?;
        let months = sums(Period::Month)?;
        for (token, month_usd) in &months {
            let day_usd = days.get(token).copied().unwrap_or(0.0);
            self.seed_spend(token, day_usd, *month_usd);
        }
        Ok(months.len())
    }

    /// Returns the dollars `token` spent in the current `period`, as counted
    /// in memory.
    pub fn spent(&self, token: &str, period: Period) -> f64 {
        let Some(counters) = self.read_counters().get(token).cloned() else {
            return 0.0;
        };
        let mut spend = lock(&counters.spend);
        spend.roll(self.clock.now_utc());
        spend.spent(period)
    }

    /// Returns the tokens `token` has in its per-minute bucket now.
    pub fn tokens_in_window(&self, token: &str, limits: &ActiveLimits) -> u64 {
        let (Some(counters), Some(limit)) = (
            self.read_counters().get(token).cloned(),
            limits.tokens_per_minute,
        ) else {
            return 0;
        };
        counters.tokens.level(self.clock.monotonic(), limit)
    }

    fn cost(&self, provider: &str, request_model: Option<&str>, usage: &Usage) -> Option<f64> {
        let prices = self.prices.as_ref()?;
        [usage.model.as_deref(), request_model]
            .into_iter()
            .flatten()
            .find_map(|model| prices.cost(provider, model, usage))
    }

    fn counters_of(&self, token: &Arc<str>) -> Arc<TokenCounters> {
        if let Some(counters) = self.read_counters().get(token) {
            return counters.clone();
        }
        let mut map = match self.counters.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(token.clone())
            .or_insert_with(|| {
                Arc::new(TokenCounters {
                    requests: Gcra::default(),
                    tokens: Gcra::default(),
                    spend: Mutex::new(Spend::new(self.clock.now_utc())),
                })
            })
            .clone()
    }

    fn read_counters(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<TokenCounters>>> {
        match self.counters.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Admission {
    /// Name of the admitted token.
    pub fn token(&self) -> &Arc<str> {
        &self.token
    }
}

fn rate_limited(kind: RateKind, limit: u64, wait: Duration) -> Rejection {
    Rejection::RateLimited {
        kind,
        limit,
        retry_after_secs: rate::retry_after_secs(wait),
    }
}

/// Rejects when the day's or the month's spend has reached its cap. The
/// check runs at admission, so calls already in flight can take the spend
/// past the cap.
fn check_spend(
    counters: &TokenCounters,
    limits: &ActiveLimits,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    let mut spend = lock(&counters.spend);
    spend.roll(now);
    for (period, cap) in [
        (Period::Day, limits.daily_usd),
        (Period::Month, limits.monthly_usd),
    ] {
        let Some(cap_usd) = cap else { continue };
        let spent_usd = spend.spent(period);
        if spent_usd >= cap_usd {
            return Err(Rejection::SpendCap {
                period,
                cap_usd,
                spent_usd,
                resets_at: period_end(period, now),
            });
        }
    }
    Ok(())
}

/// Logs a warning the first time in a period that the spend reaches the
/// token's warning threshold.
fn warn_near_caps(token: &str, limits: &ActiveLimits, spend: &mut Spend) {
    for (period, cap) in [
        (Period::Day, limits.daily_usd),
        (Period::Month, limits.monthly_usd),
    ] {
        let Some(cap_usd) = cap else { continue };
        let spent_usd = spend.spent(period);
        if spent_usd >= cap_usd * limits.warn_fraction && spend.mark_warned(period) {
            tracing::warn!(
                token,
                period = period.as_str(),
                spent_usd,
                cap_usd,
                warn_at_percent = (limits.warn_fraction * 100.0).round() as u64,
                "client token reached the warning threshold of its spend cap"
            );
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> (Arc<ManualClock>, Limiter) {
        let start = DateTime::parse_from_rfc3339("2026-05-10T12:00:00Z").unwrap();
        let clock = Arc::new(ManualClock::new(start.with_timezone(&Utc)));
        (clock.clone(), Limiter::new(clock, None))
    }

    #[test]
    fn concurrent_admissions_are_exact() {
        let (_clock, limiter) = limiter();
        let limiter = Arc::new(limiter);
        let limits = Arc::new(
            TokenLimits {
                requests_per_minute: Some(500),
                ..TokenLimits::default()
            }
            .validate()
            .unwrap(),
        );
        let token: Arc<str> = Arc::from("t");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (limiter, limits, token) = (limiter.clone(), limits.clone(), token.clone());
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| limiter.admit(&token, &limits, "openai", None).is_ok())
                        .count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, 500);
    }

    #[test]
    fn concurrent_spend_loses_no_update() {
        let start = DateTime::parse_from_rfc3339("2026-05-10T12:00:00Z").unwrap();
        let clock = Arc::new(ManualClock::new(start.with_timezone(&Utc)));
        let prices = Arc::new(PriceTable::shipped().unwrap());
        let limiter = Limiter::new(clock, Some(prices.clone()));
        let limits = Arc::new(
            TokenLimits {
                monthly_usd: Some(1_000_000.0),
                ..TokenLimits::default()
            }
            .validate()
            .unwrap(),
        );
        let token: Arc<str> = Arc::from("t");
        let admission = limiter.admit(&token, &limits, "openai", None).unwrap();
        let usage = Usage {
            input_tokens: Some(1_000_000),
            output_tokens: Some(0),
            ..Usage::default()
        };
        let cost = prices.cost("openai", "gpt-4o-mini", &usage).unwrap();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        limiter.record_usage(&admission, "openai", Some("gpt-4o-mini"), &usage);
                    }
                });
            }
        });
        // Every addition adds the same amount, so the order of the threads
        // does not change the floating-point sum.
        let expected = (0..8000).fold(0.0, |sum, _| sum + cost);
        assert_eq!(limiter.spent("t", Period::Month), expected);
    }

    #[test]
    fn allow_list_comes_before_other_limits() {
        let (_clock, limiter) = limiter();
        let limits = Arc::new(
            TokenLimits {
                requests_per_minute: Some(1),
                allow: vec!["openai:gpt-4o-mini*".into()],
                ..TokenLimits::default()
            }
            .validate()
            .unwrap(),
        );
        let token: Arc<str> = Arc::from("t");
        assert_eq!(
            limiter.admit(&token, &limits, "openai", None).unwrap_err(),
            Rejection::ModelUnknown
        );
        assert!(matches!(
            limiter.admit(&token, &limits, "openai", Some("gpt-4o")),
            Err(Rejection::ModelNotAllowed { .. })
        ));
        // Rejected requests used none of the one request per minute.
        assert!(limiter
            .admit(&token, &limits, "openai", Some("gpt-4o-mini"))
            .is_ok());
        assert!(matches!(
            limiter.admit(&token, &limits, "openai", Some("gpt-4o-mini")),
            Err(Rejection::RateLimited {
                retry_after_secs: 60,
                ..
            })
        ));
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn warning_is_logged_once_per_period() {
        let start = DateTime::parse_from_rfc3339("2026-05-10T12:00:00Z").unwrap();
        let clock = Arc::new(ManualClock::new(start.with_timezone(&Utc)));
        let prices = Arc::new(PriceTable::shipped().unwrap());
        let limiter = Limiter::new(clock.clone(), Some(prices.clone()));
        let limits = Arc::new(
            TokenLimits {
                daily_usd: Some(1.0),
                warn_at_percent: Some(50),
                ..TokenLimits::default()
            }
            .validate()
            .unwrap(),
        );
        let usage = Usage {
            input_tokens: Some(1_000_000),
            output_tokens: Some(0),
            ..Usage::default()
        };
        let cost = prices.cost("openai", "gpt-4o-mini", &usage).unwrap();
        let calls_to_warn = (0.5 / cost).ceil() as usize;
        let token: Arc<str> = Arc::from("agent");

        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let warnings = || {
            let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
            text.matches("reached the warning threshold").count()
        };
        tracing::subscriber::with_default(subscriber, || {
            let call = || {
                let admission = limiter.admit(&token, &limits, "openai", None).unwrap();
                limiter.record_usage(&admission, "openai", Some("gpt-4o-mini"), &usage);
            };
            for _ in 0..calls_to_warn - 1 {
                call();
            }
            assert_eq!(warnings(), 0);
            call();
            assert_eq!(warnings(), 1);
            call();
            assert_eq!(warnings(), 1);

            clock.advance(Duration::from_secs(24 * 3600));
            for _ in 0..calls_to_warn {
                call();
            }
            assert_eq!(warnings(), 2);
        });
        let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
        assert!(
            text.contains("token=\"agent\"") || text.contains("token=agent"),
            "{text}"
        );
        assert!(
            text.contains("period=\"daily\"") || text.contains("period=daily"),
            "{text}"
        );
    }
}
