//! The harness: starts the mock, the floor and `keyport serve`, runs
//! every cell against every target in interleaved rounds, and writes the
//! report.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::Api;
use crate::client::{self, StreamCall, Workload};
use crate::error::BenchError;
use crate::external::{self, RequestLogNumbers, VaultNumbers};
use crate::keyport::{self, KeyportSetup};
use crate::load::{self, WrkSpec};
use crate::machine::{self, Machine};
use crate::process::Server;
use crate::procfs::{self, Memory, RssPoller};
use crate::report;
use crate::scenario::{self, Cell, Endpoints, Target};
use crate::summary::{Measured, Observation};

/// Prefix of the line the mock and the floor print once they listen.
pub const READY_PREFIX: &str = "listening on ";

/// How often `keyport serve`'s memory is sampled during a run.
const RSS_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Pause between runs, so connections of the last run are closed.
const SETTLE: Duration = Duration::from_millis(300);

/// Wait after start before idle memory is read, and after the last run
/// before the memory after load is read.
const IDLE_WAIT: Duration = Duration::from_secs(1);
pub const AFTER_LOAD_WAIT: Duration = Duration::from_secs(5);

const WARM_UP: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub keyport: PathBuf,
    pub wrk_script: PathBuf,
    pub seconds: u64,
    pub rounds: u32,
    pub out: PathBuf,
    pub vault_report: Option<PathBuf>,
    pub requestlog_report: Option<PathBuf>,
    pub repo: PathBuf,
}

/// Memory of `keyport serve` and of the floor before and after the load.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryPoints {
    /// 1 s after start; its `hwm_kib` is the peak of the start-up, which
    /// includes the vault unlock.
    pub keyport_idle: Memory,
    /// [`AFTER_LOAD_WAIT`] after the last run.
    pub keyport_after: Memory,
    pub floor_idle: Memory,
    pub floor_after: Memory,
    /// Whether per-run peaks come from a reset `VmHWM`, so they are exact,
    /// rather than from sampling alone.
    pub exact_peaks: bool,
}

/// Everything a run measured, for the report.
pub struct RunData {
    pub options: RunOptions,
    pub started: DateTime<Utc>,
    pub machine: Machine,
    pub rustc: String,
    pub keyport_version: String,
    pub keyport_revision: String,
    pub wrk_version: String,
    pub load_before: String,
    pub load_after: String,
    pub cells: Vec<Cell>,
    /// Index into `cells`, and what one target measured in one round.
    pub observations: Vec<(usize, Observation)>,
    pub memory: MemoryPoints,
    pub lost_log_rows: u64,
    pub vault: Option<(VaultNumbers, String)>,
    pub requestlog: Option<(RequestLogNumbers, String)>,
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    endpoints: Endpoints,
    wrk_script: PathBuf,
    mock_pid: u32,
    floor_pid: u32,
    keyport_pid: u32,
    ticks_per_second: f64,
    /// Cleared when resetting `VmHWM` fails once.
    exact_peaks: std::cell::Cell<bool>,
}

pub fn run(options: RunOptions) -> Result<(), BenchError> {
    let vault = read_report(options.vault_report.as_ref())?
        .map(|text| (external::parse_vault(&text), text));
    let requestlog = read_report(options.requestlog_report.as_ref())?
        .map(|text| (external::parse_requestlog(&text), text));
    let started = Utc::now();
    let load_before = machine::load_average();
    let exe = std::env::current_exe()
        .map_err(|source| BenchError::io("find the keyport-bench executable", source))?;

    let mut mock_command = Command::new(&exe);
    mock_command.arg("mock");
    let mock = Server::start("the mock provider", mock_command, READY_PREFIX)?;
    let mut floor_command = Command::new(&exe);
    floor_command.args(["floor", "--upstream", &mock.address]);
    let floor = Server::start("the floor proxy", floor_command, READY_PREFIX)?;
    progress("creating the vault, keys and token through the keyport CLI");
    let setup = KeyportSetup::create(&options.keyport, &mock.address)?;
    let served = setup.serve()?;
    std::thread::sleep(IDLE_WAIT);
    let keyport_idle = procfs::memory(served.pid())?;
    let floor_idle = procfs::memory(floor.pid())?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::io("start the async runtime", source))?;
    let harness = Harness {
        runtime,
        endpoints: Endpoints {
            mock: mock.address.clone(),
            floor: floor.address.clone(),
            keyport: served.address.clone(),
            token: setup.token.clone(),
        },
        wrk_script: options.wrk_script.clone(),
        mock_pid: mock.pid(),
        floor_pid: floor.pid(),
        keyport_pid: served.pid(),
        ticks_per_second: procfs::ticks_per_second() as f64,
        exact_peaks: std::cell::Cell::new(true),
    };
    harness.check_targets()?;
    harness.warm_up()?;

    let cells = scenario::cells(Duration::from_secs(options.seconds));
    let mut observations = Vec::new();
    for round in 0..options.rounds {
        for (index, cell) in cells.iter().enumerate() {
            for target in Target::order(round) {
                let observation = harness.measure(cell, target, round)?;
                progress(&format!(
                    "round {}/{} {:<16} {:<8} {}",
                    round + 1,
                    options.rounds,
                    cell.id(),
                    target.name(),
                    brief(&observation.measured)
                ));
                observations.push((index, observation));
                std::thread::sleep(SETTLE);
            }
        }
    }

    std::thread::sleep(AFTER_LOAD_WAIT);
    let memory = MemoryPoints {
        keyport_idle,
        keyport_after: procfs::memory(served.pid())?,
        floor_idle,
        floor_after: procfs::memory(floor.pid())?,
        exact_peaks: harness.exact_peaks.get(),
    };
    let status = served.stop()?;
    let serve_log = setup.serve_log()?;
    if !status.success() {
        return Err(BenchError::command(
            "keyport serve",
            format!("exited with {status} on SIGTERM; its log:\n{serve_log}"),
        ));
    }
    drop(floor);
    drop(mock);

    let data = RunData {
        started,
        machine: machine::machine(),
        rustc: machine::rustc_version(),
        keyport_version: machine::keyport_version(&options.keyport),
        keyport_revision: machine::git_revision(&options.repo),
        wrk_version: load::wrk_version().unwrap_or_else(|| "wrk".into()),
        load_before,
        load_after: machine::load_average(),
        cells,
        observations,
        memory,
        lost_log_rows: keyport::lost_log_rows(&serve_log),
        vault,
        requestlog,
        options,
    };
    let results = report::render(&data);
    report::print(&results);
    report::write_page(&data.options.out, &results)?;
    progress(&format!("wrote {}", data.options.out.display()));
    Ok(())
}

fn read_report(path: Option<&PathBuf>) -> Result<Option<String>, BenchError> {
    path.map(|path| {
        std::fs::read_to_string(path).map_err(|source| BenchError::ReadFile {
            path: path.clone(),
            source,
        })
    })
    .transpose()
}

#[allow(
    clippy::print_stderr,
    reason = "progress goes to standard error, results to standard output"
)]
fn progress(message: &str) {
    eprintln!("keyport-bench: {message}");
}

fn brief(measured: &Measured) -> String {
    match measured {
        Measured::Wrk(result) => format!(
            "{:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {}",
            result.requests_per_second(),
            result.p50_us / 1e3,
            result.p99_us / 1e3,
            result.errors
        ),
        Measured::Streams { samples, wall } => {
            let failed = samples.iter().filter(|s| s.error.is_some()).count();
            let events: usize = samples.iter().map(|s| s.events).sum();
            format!(
                "{} streams, {} events in {:.2} s, {} failed",
                samples.len(),
                events,
                wall.as_secs_f64(),
                failed
            )
        }
    }
}

impl Harness {
    fn proxy_pid(&self, target: Target) -> Option<u32> {
        match target {
            Target::Direct => None,
            Target::Floor => Some(self.floor_pid),
            Target::Keyport => Some(self.keyport_pid),
        }
    }

    /// Sends one short stream of each API through each target and fails
    /// unless every event arrives, so a broken setup stops the run early.
    fn check_targets(&self) -> Result<(), BenchError> {
        for target in Target::ALL {
            for api in Api::ALL {
                let url = self.endpoints.url(target, api, true, "events=3");
                let call = self.stream_call(url.clone(), api)?;
                let (samples, _) =
                    self.runtime
                        .block_on(client::run(Arc::new(call), 1, Workload::Count(1)))?;
                let sample = samples.first().cloned().unwrap_or_default();
                if let Some(error) = sample.error {
                    return Err(BenchError::Request {
                        url,
                        message: error,
                    });
                }
                if sample.events != 3 {
                    return Err(BenchError::Request {
                        url,
                        message: format!("expected 3 stamped events, received {}", sample.events),
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs wrk briefly against each target, so connection pools, caches
    /// and the request log are warm when measuring starts.
    fn warm_up(&self) -> Result<(), BenchError> {
        for target in Target::ALL {
            let url = self.endpoints.url(target, Api::OpenAi, false, "");
            let result = load::run_wrk(
                &self.wrk_script,
                &WrkSpec {
                    url: &url,
                    connections: 16,
                    duration: WARM_UP,
                    token: &self.endpoints.token,
                    request_pad: 0,
                },
            )?;
            if result.errors > 0 || result.requests == 0 {
                return Err(BenchError::Request {
                    url,
                    message: format!(
                        "{} of {} warm-up requests failed",
                        result.errors, result.requests
                    ),
                });
            }
        }
        Ok(())
    }

    fn stream_call(&self, url: String, api: Api) -> Result<StreamCall, BenchError> {
        StreamCall::new(
            url,
            &api.headers(&self.endpoints.token),
            api.request_body(true),
        )
    }

    fn measure(&self, cell: &Cell, target: Target, round: u32) -> Result<Observation, BenchError> {
        let proxy_pid = self.proxy_pid(target);
        let proxy_before = proxy_pid.map(procfs::cpu_ticks).transpose()?;
        let mock_before = procfs::cpu_ticks(self.mock_pid)?;
        let poller = (target == Target::Keyport).then(|| {
            if !procfs::reset_peak(self.keyport_pid) {
                self.exact_peaks.set(false);
            }
            RssPoller::start(self.keyport_pid, RSS_POLL_INTERVAL)
        });

        let measured = match cell {
            Cell::Wrk(cell) => {
                let url = self.endpoints.url(target, Api::OpenAi, false, cell.params);
                Measured::Wrk(load::run_wrk(
                    &self.wrk_script,
                    &WrkSpec {
                        url: &url,
                        connections: cell.connections,
                        duration: cell.duration,
                        token: &self.endpoints.token,
                        request_pad: cell.request_pad,
                    },
                )?)
            }
            Cell::Stream(cell) => {
                let url = self.endpoints.url(target, cell.api, true, &cell.params());
                let call = Arc::new(self.stream_call(url, cell.api)?);
                let (samples, wall) =
                    self.runtime
                        .block_on(client::run(call, cell.workers, cell.workload))?;
                Measured::Streams { samples, wall }
            }
        };

        // The sampled peak, or the reset VmHWM when that is higher,
        // because VmHWM also records spikes between two samples.
        let peak_rss_kib = match poller {
            Some(poller) => {
                let sampled = poller.finish();
                let hwm = procfs::memory(self.keyport_pid)?.hwm_kib;
                Some(if self.exact_peaks.get() {
                    sampled.max(hwm)
                } else {
                    sampled
                })
            }
            None => None,
        };
        let seconds =
            |before: u64, after: u64| after.saturating_sub(before) as f64 / self.ticks_per_second;
        let proxy_cpu_s = match (proxy_pid, proxy_before) {
            (Some(pid), Some(before)) => Some(seconds(before, procfs::cpu_ticks(pid)?)),
            _ => None,
        };
        let mock_cpu_s = seconds(mock_before, procfs::cpu_ticks(self.mock_pid)?);
        Ok(Observation {
            round,
            target,
            proxy_cpu_s,
            mock_cpu_s,
            peak_rss_kib,
            measured,
        })
    }
}
