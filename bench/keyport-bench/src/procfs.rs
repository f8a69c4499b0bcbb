//! Memory and CPU time of another process, read from Linux's `/proc`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::BenchError;

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the highest resident size since the process started or
    /// since [`reset_peak`].
    pub hwm_kib: u64,
    /// The parts of `VmRSS`: heap and stacks (`RssAnon`), mapped files
    /// (`RssFile`) and shared memory such as SQLite's WAL index (`RssShmem`).
    pub anon_kib: u64,
    pub file_kib: u64,
    pub shmem_kib: u64,
}

pub fn memory(pid: u32) -> Result<Memory, BenchError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| BenchError::ReadFile {
        path: path.into(),
        source,
    })?;
    parse_status(&text)
}

fn parse_status(text: &str) -> Result<Memory, BenchError> {
    let field = |name: &str| -> Result<u64, BenchError> {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
            .ok_or_else(|| BenchError::Parse {
                what: "a memory field of /proc/PID/status",
                text: name.to_string(),
            })
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:")?,
        file_kib: field("RssFile:")?,
        shmem_kib: field("RssShmem:")?,
    })
}

/// Resets the process's `VmHWM` to its current resident size (Linux 4.0
/// and later; needs permission to write `/proc/PID/clear_refs`). Returns
/// whether the reset worked.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// User plus system CPU time of every thread of the process, in clock
/// ticks (see [`ticks_per_second`]).
pub fn cpu_ticks(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|source| BenchError::ReadFile {
        path: path.into(),
        source,
    })?;
    parse_stat_ticks(&text)
}

fn parse_stat_ticks(text: &str) -> Result<u64, BenchError> {
    // The command name in field 2 may contain spaces and parentheses, so
    // fields are counted from the last `)`. utime and stime are fields 14
    // and 15 of proc(5), the 12th and 13th after the name.
    let invalid = || BenchError::Parse {
        what: "utime and stime of /proc/PID/stat",
        text: text.chars().take(200).collect(),
    };
    let after_name = text.rsplit_once(')').ok_or_else(invalid)?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| -> Result<u64, BenchError> {
        fields
            .get(index)
            .and_then(|value| value.parse().ok())
            .ok_or_else(invalid)
    };
    Ok(field(11)? + field(12)?)
}

/// Clock ticks per second of `/proc/PID/stat` times, from `getconf
/// CLK_TCK`; 100 when getconf is missing, which is the value on every
/// mainstream Linux architecture.
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

/// Samples a process's resident memory on a background thread and keeps
/// the maximum: the peak of one run where [`reset_peak`] is not permitted.
pub struct RssPoller {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl RssPoller {
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                if let Ok(memory) = memory(pid) {
                    peak = peak.max(memory.rss_kib);
                }
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(every);
            }
        });
        Self { stop, thread }
    }

    /// Stops sampling and returns the highest `VmRSS` seen, in KiB.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_parse() {
        let text = "Name:\tkeyport\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nRssAnon:\t    8000 kB\nRssFile:\t    2000 kB\nRssShmem:\t     240 kB\n";
        let memory = parse_status(text).unwrap();
        assert_eq!(memory.rss_kib, 10240);
        assert_eq!(memory.hwm_kib, 20480);
        assert_eq!(memory.anon_kib + memory.file_kib + memory.shmem_kib, 10240);
        assert!(parse_status("Name:\tx\n").is_err());
    }

    #[test]
    fn stat_ticks_skip_a_name_with_spaces() {
        let text = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_stat_ticks(text).unwrap(), 12);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        let memory = memory(pid).unwrap();
        assert!(memory.rss_kib > 0);
        assert!(memory.hwm_kib >= memory.rss_kib);
        // Spin briefly so the process has used at least a tick.
        let start = std::time::Instant::now();
        let mut sum = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            sum = sum.wrapping_add(1);
        }
        assert!(sum > 0);
        assert!(cpu_ticks(pid).unwrap() > 0);
    }

    #[test]
    fn poller_sees_own_memory() {
        let poller = RssPoller::start(std::process::id(), Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(20));
        assert!(poller.finish() > 0);
    }
}
