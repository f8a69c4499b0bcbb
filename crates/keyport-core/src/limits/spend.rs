//! Spend per UTC day and UTC calendar month, for the spend caps.
//!
//! Periods are UTC, like the days of `keyport logs totals --by day`, and a
//! call counts in the period in which it was admitted, as the log files it
//! under its start time.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// A spend-cap period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }
}

/// The day and month a time falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeriodKey {
    pub(crate) day: NaiveDate,
    pub(crate) month: (i32, u32),
}

impl PeriodKey {
    pub(crate) fn of(time: DateTime<Utc>) -> Self {
        let day = time.date_naive();
        Self {
            day,
            month: (day.year(), day.month()),
        }
    }
}

/// Returns the start of the period `period` that contains `time`.
pub fn period_start(period: Period, time: DateTime<Utc>) -> DateTime<Utc> {
    let day = time.date_naive();
    let first = match period {
        Period::Day => day,
        Period::Month => day.with_day(1).unwrap_or(day),
    };
    Utc.from_utc_datetime(&first.and_time(chrono::NaiveTime::MIN))
}

/// Returns when the period `period` that contains `time` ends.
pub fn period_end(period: Period, time: DateTime<Utc>) -> DateTime<Utc> {
    let start = period_start(period, time);
    match period {
        Period::Day => start + chrono::Duration::days(1),
        Period::Month => start
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(start + chrono::Duration::days(31)),
    }
}

/// Dollars spent in the current day and month, with the warnings already
/// logged for them.
#[derive(Debug, Clone)]
pub(crate) struct Spend {
    pub(crate) key: PeriodKey,
    pub(crate) day_usd: f64,
    pub(crate) month_usd: f64,
    pub(crate) warned_day: bool,
    pub(crate) warned_month: bool,
}

impl Spend {
    pub(crate) fn new(now: DateTime<Utc>) -> Self {
        Self {
            key: PeriodKey::of(now),
            day_usd: 0.0,
            month_usd: 0.0,
            warned_day: false,
            warned_month: false,
        }
    }

    /// Starts new periods when `now` is past the stored ones.
    pub(crate) fn roll(&mut self, now: DateTime<Utc>) {
        let key = PeriodKey::of(now);
        if key.month != self.key.month {
            self.month_usd = 0.0;
            self.warned_month = false;
        }
        if key.day != self.key.day {
            self.day_usd = 0.0;
            self.warned_day = false;
        }
        self.key = key;
    }

    /// Adds `usd` spent by a call admitted in `admitted`. Calls admitted in
    /// a period that has already ended add nothing to the new one.
    pub(crate) fn add(&mut self, now: DateTime<Utc>, admitted: PeriodKey, usd: f64) {
        self.roll(now);
        if admitted.month == self.key.month {
            self.month_usd += usd;
        }
        if admitted.day == self.key.day {
            self.day_usd += usd;
        }
    }

    pub(crate) fn spent(&self, period: Period) -> f64 {
        match period {
            Period::Day => self.day_usd,
            Period::Month => self.month_usd,
        }
    }

    /// Marks the warning of `period` as logged; returns false if it was already.
    pub(crate) fn mark_warned(&mut self, period: Period) -> bool {
        let flag = match period {
            Period::Day => &mut self.warned_day,
            Period::Month => &mut self.warned_month,
        };
        !std::mem::replace(flag, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn period_bounds_are_utc() {
        let time = at("2026-02-28T23:30:00Z");
        assert_eq!(period_start(Period::Day, time), at("2026-02-28T00:00:00Z"));
        assert_eq!(period_end(Period::Day, time), at("2026-03-01T00:00:00Z"));
        assert_eq!(
            period_start(Period::Month, time),
            at("2026-02-01T00:00:00Z")
        );
        assert_eq!(period_end(Period::Month, time), at("2026-03-01T00:00:00Z"));
        let december = at("2026-12-31T12:00:00Z");
        assert_eq!(
            period_end(Period::Month, december),
            at("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn late_call_counts_in_its_own_period() {
        let mut spend = Spend::new(at("2026-03-31T23:59:00Z"));
        let admitted = PeriodKey::of(at("2026-03-31T23:59:00Z"));
        spend.add(at("2026-03-31T23:59:30Z"), admitted, 1.0);
        assert_eq!(spend.spent(Period::Day), 1.0);
        spend.add(at("2026-04-01T00:00:10Z"), admitted, 2.0);
        assert_eq!(spend.spent(Period::Day), 0.0);
        assert_eq!(spend.spent(Period::Month), 0.0);
    }
}
