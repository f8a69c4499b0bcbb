//! Per-minute rate limits with the generic cell rate algorithm (GCRA).
//!
//! A limit of N per minute is a bucket that contains at most N units and drains
//! continuously at N per 60 seconds. GCRA stores one number per bucket, the
//! theoretical arrival time (TAT): the moment the bucket would be empty.
//! Its fill level at time `now` is `TAT - now`, in time units where one
//! unit is `60 s / N`.
//!
//! Requests per minute: a request adds one unit and is admitted if the
//! bucket then contains at most N. So N requests pass at once, and after that
//! one every `60 s / N`; in any 60-second window at most 2N - 1 requests
//! pass (a full burst, then a full refill).
//!
//! Tokens per minute: usage is known only when a call ends, so admission
//! only checks that the bucket contains less than N tokens, and the finished
//! call then adds all of its tokens. The call that crosses the limit is
//! counted in full and pushes the next admission further out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The period of every rate limit, in nanoseconds.
const WINDOW_NS: u64 = 60_000_000_000;

/// One GCRA bucket. Lock-free: every update is a compare-and-swap on the
/// TAT, so concurrent admissions are exact.
#[derive(Debug, Default)]
pub(crate) struct Gcra {
    /// Theoretical arrival time, in nanoseconds of the limits' monotonic clock.
    tat_ns: AtomicU64,
}

impl Gcra {
    /// Admits one request under `limit` per minute, or returns how long to
    /// wait until one would be admitted.
    pub(crate) fn acquire(&self, now: Duration, limit: u64) -> Result<(), Duration> {
        let now = nanos(now);
        let interval = unit_ns(1, limit);
        let mut tat = self.tat_ns.load(Ordering::Acquire);
        loop {
            let next = tat.max(now).saturating_add(interval);
            if next - now > WINDOW_NS {
                return Err(Duration::from_nanos(next - now - WINDOW_NS));
            }
            match self
                .tat_ns
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Checks that the bucket contains less than a full window, without adding
    /// anything; else returns how long until it does.
    pub(crate) fn check(&self, now: Duration) -> Result<(), Duration> {
        let now = nanos(now);
        let tat = self.tat_ns.load(Ordering::Acquire);
        let level = tat.saturating_sub(now);
        if level < WINDOW_NS {
            Ok(())
        } else {
            // One nanosecond past the point where the level equals the
            // window, because admission needs it strictly below.
            Err(Duration::from_nanos(level - WINDOW_NS + 1))
        }
    }

    /// Adds `amount` units under `limit` per minute, such as the tokens of
    /// a finished call.
    pub(crate) fn add(&self, now: Duration, amount: u64, limit: u64) {
        let now = nanos(now);
        let cost = unit_ns(amount, limit);
        let _ = self
            .tat_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.max(now).saturating_add(cost))
            });
    }

    /// Returns the units the bucket contains at `now`, under `limit` per minute.
    pub(crate) fn level(&self, now: Duration, limit: u64) -> u64 {
        let level_ns = self
            .tat_ns
            .load(Ordering::Acquire)
            .saturating_sub(nanos(now));
        let level = u128::from(level_ns) * u128::from(limit) / u128::from(WINDOW_NS);
        u64::try_from(level).unwrap_or(u64::MAX)
    }
}

/// Returns the bucket time of `amount` units under `limit` per minute,
/// rounded down, so that exactly `limit` single units fit in a window.
fn unit_ns(amount: u64, limit: u64) -> u64 {
    let cost = u128::from(amount) * u128::from(WINDOW_NS) / u128::from(limit.max(1));
    u64::try_from(cost).unwrap_or(u64::MAX)
}

fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

/// Converts a wait into whole seconds for `retry-after`: rounded up and at
/// least 1, so a client that waits that long is admitted.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn burst_of_limit_then_one_per_interval() {
        let bucket = Gcra::default();
        for _ in 0..60 {
            assert!(bucket.acquire(Duration::ZERO, 60).is_ok());
        }
        let wait = bucket.acquire(Duration::ZERO, 60).unwrap_err();
        assert_eq!(wait, S);
        assert!(bucket.acquire(S / 2, 60).is_err());
        assert!(bucket.acquire(S, 60).is_ok());
        assert!(bucket.acquire(S, 60).is_err());
    }

    #[test]
    fn limits_that_do_not_divide_a_minute() {
        for limit in [1, 7, 50, 997, 100_000] {
            let bucket = Gcra::default();
            for _ in 0..limit {
                assert!(bucket.acquire(Duration::ZERO, limit).is_ok(), "{limit}");
            }
            assert!(bucket.acquire(Duration::ZERO, limit).is_err(), "{limit}");
        }
    }

    #[test]
    fn token_bucket_admits_while_under_limit() {
        let bucket = Gcra::default();
        assert!(bucket.check(Duration::ZERO).is_ok());
        bucket.add(Duration::ZERO, 999, 1000);
        assert!(bucket.check(Duration::ZERO).is_ok());
        // The call that crosses the limit counts in full: 1,500 tokens.
        bucket.add(Duration::ZERO, 501, 1000);
        assert_eq!(bucket.level(Duration::ZERO, 1000), 1500);
        let wait = bucket.check(Duration::ZERO).unwrap_err();
        assert_eq!(retry_after_secs(wait), 31);
        assert!(bucket.check(30 * S).is_err());
        assert!(bucket.check(31 * S).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(S), 1);
        assert_eq!(retry_after_secs(S + Duration::from_millis(1)), 2);
        assert_eq!(retry_after_secs(59 * S), 59);
    }
}
