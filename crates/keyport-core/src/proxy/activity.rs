//! Requests in flight and the end time of the last one, for idle timers
//! such as the desktop app's auto-lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts the proxy's open requests. A request stays open until its
/// response body has ended or the client has gone, so a long stream counts
/// as activity for as long as it runs, and a WebSocket session until it
/// closes or reaches the idle timeout.
#[derive(Debug)]
pub struct ProxyActivity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds from `epoch` to the end of the latest request, or 0 if
    /// none has ended.
    last_end_nanos: AtomicU64,
}

impl Default for ProxyActivity {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_nanos: AtomicU64::new(0),
        }
    }
}

impl ProxyActivity {
    /// Number of requests whose response has not ended yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// When the latest request ended; `None` if none has ended yet.
    pub fn last_request_end(&self) -> Option<Instant> {
        match self.last_end_nanos.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.epoch + Duration::from_nanos(nanos)),
        }
    }

    /// Counts a request as open until the returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

/// One open request of a [`ProxyActivity`].
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ProxyActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        // At least 1, so that 0 keeps meaning "none ended yet".
        let nanos = u64::try_from(activity.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        // The end time is stored before the count drops, so a reader that
        // finds no request in flight also reads this end.
        activity.last_end_nanos.fetch_max(nanos, Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_until_dropped() {
        let activity = Arc::new(ProxyActivity::default());
        assert_eq!(activity.in_flight(), 0);
        assert_eq!(activity.last_request_end(), None);

        let first = activity.begin();
        let second = activity.begin();
        assert_eq!(activity.in_flight(), 2);
        assert_eq!(activity.last_request_end(), None);

        let before = Instant::now();
        drop(first);
        assert_eq!(activity.in_flight(), 1);
        let ended = activity.last_request_end().unwrap();
        assert!(
            ended >= before,
            "end {ended:?} before the drop at {before:?}"
        );
        assert!(ended <= Instant::now());

        std::thread::sleep(Duration::from_millis(5));
        drop(second);
        assert_eq!(activity.in_flight(), 0);
        assert!(activity.last_request_end().unwrap() > ended);
    }
}
