//! Requests in flight and the time of the proxy's latest activity, for
//! idle timers such as the desktop app's auto-lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts the proxy's open requests and stamps its latest activity: the
/// start and end of a request, and each chunk of a response body or
/// WebSocket session. A request stays open until its response body has
/// ended or the client has gone. A stream whose client stopped reading
/// therefore stays open, but stops counting as activity. A request still
/// waiting for the provider's response headers (uploading its body, or a
/// long non-streamed generation) is counted apart, because it moves no
/// response bytes while it waits.
#[derive(Debug)]
pub struct ProxyActivity {
    epoch: Instant,
    in_flight: AtomicUsize,
    awaiting_response: AtomicUsize,
    /// Nanoseconds from `epoch` to the latest activity, or 0 if none.
    last_activity_nanos: AtomicU64,
}

impl Default for ProxyActivity {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            awaiting_response: AtomicUsize::new(0),
            last_activity_nanos: AtomicU64::new(0),
        }
    }
}

impl ProxyActivity {
    /// Number of requests whose response has not ended yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Number of open requests without response headers yet.
    pub fn awaiting_response(&self) -> usize {
        self.awaiting_response.load(Ordering::Acquire)
    }

    /// When a request last started, ended or moved bytes; `None` if no
    /// request has started yet.
    pub fn last_activity(&self) -> Option<Instant> {
        match self.last_activity_nanos.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(self.epoch + Duration::from_nanos(nanos)),
        }
    }

    /// Counts a request as open until the returned guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.awaiting_response.fetch_add(1, Ordering::AcqRel);
        self.stamp();
        InFlight {
            activity: self.clone(),
            awaiting_response: true,
        }
    }

    /// Records activity now.
    pub(crate) fn stamp(&self) {
        // At least 1, so that 0 keeps meaning "none yet".
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.last_activity_nanos.fetch_max(nanos, Ordering::AcqRel);
    }
}

/// One open request of a [`ProxyActivity`].
#[derive(Debug)]
pub(crate) struct InFlight {
    activity: Arc<ProxyActivity>,
    awaiting_response: bool,
}

impl InFlight {
    /// Records that the request moved bytes.
    pub(crate) fn progressed(&self) {
        self.activity.stamp();
    }

    /// Records that the response headers arrived, or that the proxy
    /// responded itself.
    pub(crate) fn responded(&mut self) {
        if std::mem::take(&mut self.awaiting_response) {
            self.activity.stamp();
            self.activity
                .awaiting_response
                .fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn activity(&self) -> Arc<ProxyActivity> {
        self.activity.clone()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The end is stamped before the counts drop, so a reader that finds
        // no request in flight also reads this end.
        self.activity.stamp();
        if self.awaiting_response {
            self.activity
                .awaiting_response
                .fetch_sub(1, Ordering::AcqRel);
        }
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_until_dropped() {
        let activity = Arc::new(ProxyActivity::default());
        assert_eq!(activity.in_flight(), 0);

        let mut first = activity.begin();
        let second = activity.begin();
        assert_eq!(activity.in_flight(), 2);
        assert_eq!(activity.awaiting_response(), 2);

        first.responded();
        first.responded();
        assert_eq!(activity.awaiting_response(), 1);
        assert_eq!(activity.in_flight(), 2);

        drop(first);
        assert_eq!(activity.in_flight(), 1);
        assert_eq!(activity.awaiting_response(), 1);
        drop(second);
        assert_eq!(activity.in_flight(), 0);
        assert_eq!(activity.awaiting_response(), 0);
    }

    #[test]
    fn start_progress_and_end_stamp_activity() {
        let activity = Arc::new(ProxyActivity::default());
        assert_eq!(activity.last_activity(), None);

        let before = Instant::now();
        let request = activity.begin();
        let started = activity.last_activity().unwrap();
        assert!(started >= before, "start {started:?} before {before:?}");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(activity.last_activity(), Some(started));

        request.progressed();
        let progressed = activity.last_activity().unwrap();
        assert!(progressed > started);

        std::thread::sleep(Duration::from_millis(5));
        drop(request);
        let ended = activity.last_activity().unwrap();
        assert!(ended > progressed);
        assert!(ended <= Instant::now());
    }
}
