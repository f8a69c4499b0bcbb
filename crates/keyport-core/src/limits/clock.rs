//! The time source of the limits: a monotonic clock for rate windows and a
//! UTC wall clock for daily and monthly spend periods.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Time as the limits see it. Tests pass a [`ManualClock`] to cross a day
/// or month boundary without waiting.
pub trait Clock: Send + Sync + 'static {
    /// Time since a fixed point of this clock. It never goes backwards, so
    /// a wall-clock change cannot reopen or block a rate window.
    fn monotonic(&self) -> Duration;

    /// Returns the current UTC time, which decides the spend period.
    fn now_utc(&self) -> DateTime<Utc>;
}

/// The real clocks: [`Instant`] and the system's UTC time.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        self.start.elapsed()
    }

    fn now_utc(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when [`ManualClock::advance`] is called. Both
/// of its readings move together.
#[derive(Debug)]
pub struct ManualClock {
    start_utc: DateTime<Utc>,
    elapsed_ns: AtomicU64,
}

impl ManualClock {
    /// Starts the clock at `start_utc`, with a monotonic reading of zero.
    pub fn new(start_utc: DateTime<Utc>) -> Self {
        Self {
            start_utc,
            elapsed_ns: AtomicU64::new(0),
        }
    }

    /// Moves both readings forward by `step`.
    pub fn advance(&self, step: Duration) {
        let nanos = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_ns.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.elapsed_ns.load(Ordering::SeqCst))
    }

    fn now_utc(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::nanoseconds(
            i64::try_from(self.elapsed_ns.load(Ordering::SeqCst)).unwrap_or(i64::MAX),
        );
        self.start_utc + elapsed
    }
}
