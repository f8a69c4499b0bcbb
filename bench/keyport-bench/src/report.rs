//! The Markdown report: machine and versions, the target checks, and one
//! table per kind of measurement, with ratios to the floor.
//!
//! `docs/benchmarks.md` keeps hand-written text around the results, so
//! only the part between [`START_MARKER`] and [`END_MARKER`] is replaced.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::error::BenchError;
use crate::procfs::Memory;
use crate::run::{RunData, AFTER_LOAD_WAIT};
use crate::scenario::{
    Cell, Target, BURST_CELL, BURST_EVENTS, BURST_SIZE, PACED_EVENTS, PACED_INTERVAL, PACED_STREAMS,
};
use crate::summary::{self, Observation, StreamSummary, WrkSummary};

pub const START_MARKER: &str =
    "<!-- keyport-bench results: bench/run.sh rewrites everything up to the end marker -->";
pub const END_MARKER: &str = "<!-- end of keyport-bench results -->";

/// Limits the run is checked against.
const MIN_THROUGHPUT_RATIO: f64 = 0.8;
const MAX_LATENCY_RATIO: f64 = 1.5;
const MAX_CPU_RATIO: f64 = 1.5;
const MAX_EXTRA_TTFB_MS: f64 = 1.0;
const MAX_DELAY_MEAN_MS: f64 = 0.5;
const MAX_DELAY_MS: f64 = 2.0;
/// Paced streams through Keyport keep at least this share of the direct
/// path's event rate.
const MIN_RATE_RATIO: f64 = 0.99;
const MAX_IDLE_MIB: f64 = 20.0;
const MAX_PEAK_MIB: f64 = 64.0;
/// Highest memory after the load, as a multiple of idle memory, that
/// still counts as back near idle.
const MAX_AFTER_LOAD_RATIO: f64 = 1.5;
const MAX_LARGE_RATIO: f64 = 1.5;
const MAX_UNLOCK_MS: f64 = 1000.0;
const MAX_SAVE_MS: f64 = 300.0;
const MAX_VAULT_PEAK_MIB: f64 = 150.0;
const MAX_FIRST_PAGE_MS: f64 = 50.0;

pub fn print(results: &str) {
    #[allow(clippy::print_stdout, reason = "the report is the program's output")]
    {
        println!("{results}");
    }
}

/// Replaces the results between the markers in `path`, or writes a new
/// page when the file or its markers are missing.
pub fn write_page(path: &Path, results: &str) -> Result<(), BenchError> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(BenchError::ReadFile {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let block = format!("{START_MARKER}\n{results}\n{END_MARKER}");
    let page = match existing.as_deref().and_then(|text| splice(text, &block)) {
        Some(page) => page,
        None => format!("# Benchmarks\n\n{block}\n"),
    };
    std::fs::write(path, page)
        .map_err(|source| BenchError::io(format!("write {}", path.display()), source))
}

fn splice(text: &str, block: &str) -> Option<String> {
    let start = text.find(START_MARKER)?;
    let end = text[start..].find(END_MARKER)? + start + END_MARKER.len();
    Some(format!("{}{block}{}", &text[..start], &text[end..]))
}

/// A target limit and how the run did against it.
struct Check {
    name: String,
    limit: String,
    measured: String,
    verdict: Verdict,
}

enum Verdict {
    Met,
    Missed(String),
    NotMeasured,
}

impl Verdict {
    fn text(&self) -> String {
        match self {
            Verdict::Met => "met".into(),
            Verdict::Missed(by) => format!("**missed** by {by}"),
            Verdict::NotMeasured => "not measured".into(),
        }
    }
}

/// Summaries of every cell, by cell id.
struct Summaries {
    /// Cell ids in the order the run measured them.
    order: Vec<&'static str>,
    wrk: BTreeMap<&'static str, Vec<WrkSummary>>,
    streams: BTreeMap<&'static str, Vec<StreamSummary>>,
    titles: BTreeMap<&'static str, &'static str>,
}

impl Summaries {
    fn new(data: &RunData) -> Self {
        let mut summaries = Self {
            order: data.cells.iter().map(Cell::id).collect(),
            wrk: BTreeMap::new(),
            streams: BTreeMap::new(),
            titles: BTreeMap::new(),
        };
        for (index, cell) in data.cells.iter().enumerate() {
            let observations: Vec<&Observation> = data
                .observations
                .iter()
                .filter(|(cell_index, _)| *cell_index == index)
                .map(|(_, observation)| observation)
                .collect();
            match cell {
                Cell::Wrk(cell) => {
                    summaries.titles.insert(cell.id, cell.title);
                    summaries
                        .wrk
                        .insert(cell.id, summary::summarize_wrk(&observations));
                }
                Cell::Stream(cell) => {
                    summaries.titles.insert(cell.id, cell.title);
                    summaries
                        .streams
                        .insert(cell.id, summary::summarize_streams(&observations));
                }
            }
        }
        summaries
    }

    fn wrk_cells(&self) -> impl Iterator<Item = (&'static str, &Vec<WrkSummary>)> {
        self.order
            .iter()
            .filter_map(|id| Some((*id, self.wrk.get(id)?)))
    }

    fn stream_cells(&self) -> impl Iterator<Item = (&'static str, &Vec<StreamSummary>)> {
        self.order
            .iter()
            .filter_map(|id| Some((*id, self.streams.get(id)?)))
    }

    fn title(&self, id: &'static str) -> &'static str {
        self.titles.get(id).copied().unwrap_or(id)
    }

    fn wrk_target(&self, id: &str, target: Target) -> Option<&WrkSummary> {
        self.wrk.get(id)?.iter().find(|s| s.target == target)
    }

    fn stream_target(&self, id: &str, target: Target) -> Option<&StreamSummary> {
        self.streams.get(id)?.iter().find(|s| s.target == target)
    }
}

fn ratio(value: f64, base: f64) -> Option<f64> {
    let ratio = value / base;
    (base > 0.0 && ratio.is_finite()).then_some(ratio)
}

fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".into(), |ratio| format!("{ratio:.2}×"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn optional_mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "–".into(), |kib| format!("{:.1}", mib(kib)))
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".into(), |value| format!("{value:.decimals$}"))
}

/// Renders the results section, without the markers.
pub fn render(data: &RunData) -> String {
    let summaries = Summaries::new(data);
    let mut out = String::new();
    render_header(&mut out, data);
    let checks = checks(data, &summaries);
    render_checks(&mut out, &checks);
    render_wrk(&mut out, &summaries);
    render_streams(&mut out, &summaries);
    render_memory(&mut out, data, &summaries);
    render_vault(&mut out, data);
    render_requestlog(&mut out, data);
    out
}

fn render_header(out: &mut String, data: &RunData) {
    let machine = &data.machine;
    let options = &data.options;
    let _ = writeln!(out, "## Results of the last run\n");

    let _ = writeln!(
        out,
        "Measured on {} by `bench/run.sh`: {} rounds, {} s per timed run, targets interleaved (direct, floor, keyport, then backwards in the next round).\n",
        data.started.format("%Y-%m-%d %H:%M UTC"),
        options.rounds,
        options.seconds
    );

    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(
        out,
        "| CPU | {} ({} cores) |",
        machine.cpu_model, machine.cores
    );
    let _ = writeln!(out, "| memory | {:.1} GiB |", machine.memory_gib);
    let _ = writeln!(out, "| Linux | {} |", machine.kernel);
    let _ = writeln!(out, "| Rust | {} |", data.rustc);
    let _ = writeln!(
        out,
        "| Keyport | {}, git `{}` |",
        data.keyport_version, data.keyport_revision
    );
    let _ = writeln!(out, "| load generator | {}, 1 thread |", data.wrk_version);
    let _ = writeln!(
        out,
        "| load average (1, 5, 15 min) | {} before, {} after |",
        data.load_before, data.load_after
    );
    let _ = writeln!(out);
}

fn render_checks(out: &mut String, checks: &[Check]) {
    let _ = writeln!(out, "### Targets\n");
    let _ = writeln!(
        out,
        "| target | limit | measured | result |\n|---|---|---|---|"
    );
    for check in checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            check.name,
            check.limit,
            check.measured,
            check.verdict.text()
        );
    }
    let _ = writeln!(out);
}

fn checks(data: &RunData, summaries: &Summaries) -> Vec<Check> {
    let mut checks = Vec::new();
    for (id, label) in [("json-c16", "c=16"), ("json-c64", "c=64")] {
        checks.push(throughput_check(summaries, id, label));
    }
    checks.push(added_latency_check(summaries, "json-c1", "p50", "c=1"));
    checks.push(added_latency_check(summaries, "json-c16", "p99", "c=16"));
    checks.push(cpu_check(summaries));
    checks.push(no_errors_check(summaries));
    checks.extend(streaming_checks(summaries));
    checks.extend(memory_checks(data, summaries));
    for (id, name) in [
        ("request-1mib", "1 MiB request bodies, c=16"),
        ("response-1mib", "1 MiB response bodies, c=16"),
    ] {
        checks.push(large_body_check(summaries, id, name));
    }
    checks.push(long_stream_check(summaries));
    checks.push(burst_check(summaries));
    checks.extend(vault_checks(data));
    checks.push(requestlog_check(data));
    checks
}

fn not_measured(name: &str, limit: &str) -> Check {
    Check {
        name: name.into(),
        limit: limit.into(),
        measured: "–".into(),
        verdict: Verdict::NotMeasured,
    }
}

fn at_least(value: f64, limit: f64, by: impl FnOnce() -> String) -> Verdict {
    if value >= limit {
        Verdict::Met
    } else {
        Verdict::Missed(by())
    }
}

fn at_most(value: f64, limit: f64, by: impl FnOnce() -> String) -> Verdict {
    if value <= limit {
        Verdict::Met
    } else {
        Verdict::Missed(by())
    }
}

fn throughput_check(summaries: &Summaries, id: &str, label: &str) -> Check {
    let name = format!("Throughput, JSON {label}");
    let limit = format!("≥ {MIN_THROUGHPUT_RATIO}× floor");
    let (Some(keyport), Some(floor)) = (
        summaries.wrk_target(id, Target::Keyport),
        summaries.wrk_target(id, Target::Floor),
    ) else {
        return not_measured(&name, &limit);
    };
    let Some(ratio) = ratio(keyport.requests_per_s, floor.requests_per_s) else {
        return not_measured(&name, &limit);
    };
    Check {
        name,
        measured: format!(
            "{ratio:.2}× ({:.0} vs {:.0} req/s)",
            keyport.requests_per_s, floor.requests_per_s
        ),
        verdict: at_least(ratio, MIN_THROUGHPUT_RATIO, || {
            format!("{:.2}× of the floor", MIN_THROUGHPUT_RATIO - ratio)
        }),
        limit,
    }
}

fn added_latency_check(summaries: &Summaries, id: &str, which: &str, label: &str) -> Check {
    let name = format!("Added latency {which}, JSON {label}");
    let limit = format!("≤ {MAX_LATENCY_RATIO}× floor's");
    let (Some(keyport), Some(floor)) = (
        summaries.wrk_target(id, Target::Keyport),
        summaries.wrk_target(id, Target::Floor),
    ) else {
        return not_measured(&name, &limit);
    };
    let (keyport_added, floor_added) = if which == "p50" {
        (keyport.added_p50_ms, floor.added_p50_ms)
    } else {
        (keyport.added_p99_ms, floor.added_p99_ms)
    };
    let Some(ratio) = ratio(keyport_added, floor_added) else {
        return Check {
            name,
            limit,
            measured: format!("{keyport_added:.3} vs {floor_added:.3} ms"),
            verdict: Verdict::NotMeasured,
        };
    };
    Check {
        name,
        measured: format!("{ratio:.2}× ({keyport_added:.3} vs {floor_added:.3} ms)"),
        verdict: at_most(ratio, MAX_LATENCY_RATIO, || {
            format!(
                "{:.3} ms ({:.2}× over)",
                keyport_added - MAX_LATENCY_RATIO * floor_added,
                ratio - MAX_LATENCY_RATIO
            )
        }),
        limit,
    }
}

/// Checks CPU per request over the three JSON cells together, weighted by
/// requests, so the cells with the most requests weigh the most.
fn cpu_check(summaries: &Summaries) -> Check {
    let name = "CPU per request, JSON c=1, 16, 64".to_string();
    let limit = format!("≤ {MAX_CPU_RATIO}× floor's");
    let weighted = |target: Target| -> Option<f64> {
        let mut cpu = 0.0;
        let mut requests = 0u64;
        for id in ["json-c1", "json-c16", "json-c64"] {
            let summary = summaries.wrk_target(id, target)?;
            cpu += summary.cpu_us_per_request? * summary.requests as f64;
            requests += summary.requests;
        }
        ratio(cpu, requests as f64)
    };
    let (Some(keyport), Some(floor)) = (weighted(Target::Keyport), weighted(Target::Floor)) else {
        return not_measured(&name, &limit);
    };
    let Some(ratio) = ratio(keyport, floor) else {
        return not_measured(&name, &limit);
    };
    Check {
        name,
        measured: format!("{ratio:.2}× ({keyport:.0} vs {floor:.0} µs)"),
        verdict: at_most(ratio, MAX_CPU_RATIO, || {
            format!(
                "{:.0} µs per request ({:.2}× over)",
                keyport - MAX_CPU_RATIO * floor,
                ratio - MAX_CPU_RATIO
            )
        }),
        limit,
    }
}

fn no_errors_check(summaries: &Summaries) -> Check {
    let wrk_errors: u64 = summaries
        .wrk
        .values()
        .flatten()
        .filter(|s| s.target == Target::Keyport)
        .map(|s| s.errors)
        .sum();
    let failed_streams: usize = summaries
        .streams
        .values()
        .flatten()
        .filter(|s| s.target == Target::Keyport)
        .map(|s| s.failed)
        .sum();
    let total = wrk_errors + failed_streams as u64;
    Check {
        name: "Failed requests through Keyport".into(),
        limit: "0".into(),
        measured: format!("{wrk_errors} wrk errors, {failed_streams} failed streams"),
        verdict: at_most(total as f64, 0.0, || format!("{total}")),
    }
}

fn streaming_checks(summaries: &Summaries) -> Vec<Check> {
    let mut checks = Vec::new();
    let name = "Streaming extra TTFB, c=1";
    let limit = format!("≤ {MAX_EXTRA_TTFB_MS} ms");
    checks.push(match summaries.stream_target("ttfb-c1", Target::Keyport) {
        Some(keyport) => Check {
            name: name.into(),
            measured: match summaries.stream_target("ttfb-c1", Target::Floor) {
                Some(floor) => format!(
                    "{:.3} ms (floor {:.3} ms)",
                    keyport.extra_ttfb_ms, floor.extra_ttfb_ms
                ),
                None => format!("{:.3} ms", keyport.extra_ttfb_ms),
            },
            verdict: at_most(keyport.extra_ttfb_ms, MAX_EXTRA_TTFB_MS, || {
                format!("{:.3} ms", keyport.extra_ttfb_ms - MAX_EXTRA_TTFB_MS)
            }),
            limit,
        },
        None => not_measured(name, &limit),
    });

    let paced: Vec<(&'static str, &StreamSummary, &StreamSummary)> =
        ["paced-openai", "paced-anthropic", "paced-gemini"]
            .iter()
            .filter_map(|id| {
                Some((
                    *id,
                    summaries.stream_target(id, Target::Keyport)?,
                    summaries.stream_target(id, Target::Direct)?,
                ))
            })
            .collect();
    // The worst of the three APIs for a target, with the cell's title.
    let worst = |target: Target, value: fn(&StreamSummary) -> f64| {
        paced
            .iter()
            .filter_map(|(id, _, _)| {
                let summary = summaries.stream_target(id, target)?;
                Some((value(summary), summaries.title(id)))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    let paced_label = format!("{PACED_STREAMS} paced streams");
    for (name, limit, value) in [
        (
            "Per-event delay, mean",
            MAX_DELAY_MEAN_MS,
            (|s: &StreamSummary| s.delay_mean_ms) as fn(&StreamSummary) -> f64,
        ),
        ("Per-event delay, max", MAX_DELAY_MS, |s: &StreamSummary| {
            s.delay_max_ms
        }),
    ] {
        let name = format!("{name}, {paced_label}");
        let limit_text = format!("≤ {limit} ms");
        // The floor's worst shows how much of the delay the machine adds
        // to any proxy.
        let floor = worst(Target::Floor, value).map_or(String::new(), |(floor, _)| {
            format!("; floor's worst {floor:.3} ms")
        });
        checks.push(match worst(Target::Keyport, value) {
            Some((measured, title)) => Check {
                name,
                measured: format!("{measured:.3} ms (worst: {title}{floor})"),
                verdict: at_most(measured, limit, || format!("{:.3} ms", measured - limit)),
                limit: limit_text,
            },
            None => not_measured(&name, &limit_text),
        });
    }

    let name = format!("Event rate, {paced_label}");
    let limit = format!("≥ {MIN_RATE_RATIO}× direct, no failed stream");
    let lowest = paced
        .iter()
        .filter_map(|(id, keyport, direct)| {
            let ratio = ratio(keyport.event_rate, direct.event_rate)?;
            Some((ratio, *id, keyport.failed))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0));
    checks.push(match lowest {
        Some((rate_ratio, id, _)) => {
            let failed: usize = paced.iter().map(|(_, keyport, _)| keyport.failed).sum();
            let title = summaries.title(id);
            let met = rate_ratio >= MIN_RATE_RATIO && failed == 0;
            Check {
                name,
                measured: format!("{rate_ratio:.3}× (lowest: {title}), {failed} failed"),
                verdict: if met {
                    Verdict::Met
                } else {
                    Verdict::Missed(format!(
                        "{:.3}× of the direct rate, {failed} failed streams",
                        (MIN_RATE_RATIO - rate_ratio).max(0.0)
                    ))
                },
                limit,
            }
        }
        None => not_measured(&name, &limit),
    });
    checks
}

fn memory_checks(data: &RunData, summaries: &Summaries) -> Vec<Check> {
    let idle = mib(data.memory.keyport_idle.rss_kib);
    let after = mib(data.memory.keyport_after.rss_kib);
    let mut checks = vec![Check {
        name: "keyport serve memory, idle".into(),
        limit: format!("≤ {MAX_IDLE_MIB} MiB"),
        measured: format!("{idle:.1} MiB"),
        verdict: at_most(idle, MAX_IDLE_MIB, || {
            format!("{:.1} MiB", idle - MAX_IDLE_MIB)
        }),
    }];
    let limit = format!("≤ {MAX_PEAK_MIB} MiB");
    let name = "keyport serve memory, peak at JSON c=64";
    checks.push(
        match summaries
            .wrk_target("json-c64", Target::Keyport)
            .and_then(|s| s.peak_rss_kib)
        {
            Some(kib) => {
                let peak = mib(kib);
                Check {
                    name: name.into(),
                    measured: format!("{peak:.1} MiB"),
                    verdict: at_most(peak, MAX_PEAK_MIB, || {
                        format!("{:.1} MiB", peak - MAX_PEAK_MIB)
                    }),
                    limit,
                }
            }
            None => not_measured(name, &limit),
        },
    );
    let near = MAX_AFTER_LOAD_RATIO * idle;
    checks.push(Check {
        name: format!(
            "keyport serve memory, {} s after the load",
            AFTER_LOAD_WAIT.as_secs()
        ),
        limit: format!("near idle: ≤ {MAX_AFTER_LOAD_RATIO}× idle ({near:.1} MiB)"),
        measured: format!("{after:.1} MiB"),
        verdict: at_most(after, near, || format!("{:.1} MiB", after - near)),
    });
    checks
}

fn large_body_check(summaries: &Summaries, id: &str, name: &str) -> Check {
    let limit = format!("p50 ≤ {MAX_LARGE_RATIO}× floor's, req/s ≥ floor's ÷ {MAX_LARGE_RATIO}");
    let (Some(keyport), Some(floor)) = (
        summaries.wrk_target(id, Target::Keyport),
        summaries.wrk_target(id, Target::Floor),
    ) else {
        return not_measured(name, &limit);
    };
    let latency = ratio(keyport.p50_ms, floor.p50_ms).unwrap_or(f64::INFINITY);
    let throughput = ratio(keyport.requests_per_s, floor.requests_per_s).unwrap_or(0.0);
    within_floor(name, limit, latency, throughput)
}

fn long_stream_check(summaries: &Summaries) -> Check {
    let name = "1,000-event streams, c=16";
    let limit =
        format!("stream p50 ≤ {MAX_LARGE_RATIO}× floor's, streams/s ≥ floor's ÷ {MAX_LARGE_RATIO}");
    let (Some(keyport), Some(floor)) = (
        summaries.stream_target("events-1000", Target::Keyport),
        summaries.stream_target("events-1000", Target::Floor),
    ) else {
        return not_measured(name, &limit);
    };
    let latency = ratio(keyport.duration_p50_ms, floor.duration_p50_ms).unwrap_or(f64::INFINITY);
    let throughput = ratio(keyport.streams_per_s, floor.streams_per_s).unwrap_or(0.0);
    within_floor(name, limit, latency, throughput)
}

/// Checks that events the provider wrote together reach the client
/// together. The mock writes each burst in one frame and paces bursts
/// apart. A proxy that forwards each upstream read in one write gives the
/// client as many chunks as the direct path, and one that splits events
/// gives up to one chunk per event.
fn burst_check(summaries: &Summaries) -> Check {
    let name = "Events buffered together, one write";
    let limit = "chunks per stream ≤ direct's + 1".to_string();
    let (Some(keyport), Some(direct)) = (
        summaries.stream_target(BURST_CELL, Target::Keyport),
        summaries.stream_target(BURST_CELL, Target::Direct),
    ) else {
        return not_measured(name, &limit);
    };
    let floor = summaries
        .stream_target(BURST_CELL, Target::Floor)
        .map_or(String::new(), |floor| {
            format!(", floor {:.1}", floor.chunks_per_stream)
        });
    let allowed = direct.chunks_per_stream + 1.0;
    Check {
        name: name.into(),
        limit,
        measured: format!(
            "{:.1} chunks per stream (direct {:.1}{floor}) for {BURST_EVENTS} events written {BURST_SIZE} at a time",
            keyport.chunks_per_stream, direct.chunks_per_stream
        ),
        verdict: at_most(keyport.chunks_per_stream, allowed, || {
            format!("{:.1} chunks", keyport.chunks_per_stream - allowed)
        }),
    }
}

fn within_floor(name: &str, limit: String, latency: f64, throughput: f64) -> Check {
    let measured = format!("p50 {latency:.2}×, throughput {throughput:.3}×");
    let mut misses = Vec::new();
    if latency > MAX_LARGE_RATIO {
        misses.push(format!("p50 {:.2}× over", latency - MAX_LARGE_RATIO));
    }
    if throughput * MAX_LARGE_RATIO < 1.0 {
        misses.push(format!(
            "throughput {:.3}× under",
            1.0 / MAX_LARGE_RATIO - throughput
        ));
    }
    Check {
        name: name.into(),
        limit,
        measured,
        verdict: if misses.is_empty() {
            Verdict::Met
        } else {
            Verdict::Missed(misses.join(", "))
        },
    }
}

fn vault_checks(data: &RunData) -> Vec<Check> {
    let vault = data.vault.as_ref().map(|(numbers, _)| numbers);
    let millis_check =
        |name: &str, prefix: &str, limit: f64| match vault.and_then(|v| v.millis(prefix)) {
            Some(ms) => Check {
                name: name.into(),
                limit: format!("≤ {limit:.0} ms"),
                measured: format!("{ms:.0} ms"),
                verdict: at_most(ms, limit, || format!("{:.0} ms", ms - limit)),
            },
            None => not_measured(name, &format!("≤ {limit:.0} ms")),
        };
    let mut checks = vec![
        millis_check("Vault unlock (median)", "unlock", MAX_UNLOCK_MS),
        millis_check(
            "Vault save, 20 keys (median)",
            "set_key + save",
            MAX_SAVE_MS,
        ),
    ];
    let limit = format!("≤ {MAX_VAULT_PEAK_MIB:.0} MiB");
    checks.push(match vault.and_then(|v| v.peak_rss_mib) {
        Some(peak) => Check {
            name: "Vault benchmark peak memory".into(),
            measured: format!("{peak:.1} MiB"),
            verdict: at_most(peak, MAX_VAULT_PEAK_MIB, || {
                format!("{:.1} MiB", peak - MAX_VAULT_PEAK_MIB)
            }),
            limit,
        },
        None => not_measured("Vault benchmark peak memory", &limit),
    });
    checks
}

fn requestlog_check(data: &RunData) -> Check {
    let name = "Request log first page, every filter";
    let limit = format!("≤ {MAX_FIRST_PAGE_MS:.0} ms");
    let Some((numbers, _)) = &data.requestlog else {
        return not_measured(name, &limit);
    };
    let Some(slowest) = numbers
        .pages
        .iter()
        .max_by(|a, b| a.millis.total_cmp(&b.millis))
    else {
        return not_measured(name, &limit);
    };
    let over: Vec<String> = numbers
        .pages
        .iter()
        .filter(|page| page.millis > MAX_FIRST_PAGE_MS)
        .map(|page| format!("{} {:.0} ms", page.filter, page.millis))
        .collect();
    Check {
        name: name.into(),
        measured: format!("slowest: {} {:.2} ms", slowest.filter, slowest.millis),
        verdict: if over.is_empty() {
            Verdict::Met
        } else {
            Verdict::Missed(format!(
                "{:.0} ms ({} of {} filters over: {})",
                slowest.millis - MAX_FIRST_PAGE_MS,
                over.len(),
                numbers.pages.len(),
                over.join("; ")
            ))
        },
        limit,
    }
}

fn render_wrk(out: &mut String, summaries: &Summaries) {
    let _ = writeln!(
        out,
        "### HTTP load\n\nwrk, one thread, closed loop: OpenAI chat completion POSTs with a JSON response of about 600 bytes unless the cell says otherwise. Latencies are wrk's percentiles, averaged over rounds; \"added\" subtracts the direct path's. CPU is user + system time of the proxy process per request.\n"
    );
    let _ = writeln!(
        out,
        "| cell | target | req/s | req/s per round | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU µs/req | errors | req/s ÷ floor | added p50 ÷ floor | added p99 ÷ floor | CPU ÷ floor |"
    );
    let _ = writeln!(
        out,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for (id, rows) in summaries.wrk_cells() {
        let Some(floor) = rows.iter().find(|s| s.target == Target::Floor) else {
            continue;
        };
        let title = summaries.title(id);
        for row in rows {
            let proxied = row.target != Target::Direct;
            let cpu_ratio = row
                .cpu_us_per_request
                .zip(floor.cpu_us_per_request)
                .and_then(|(cpu, base)| ratio(cpu, base));
            let _ = writeln!(
                out,
                "| {title} | {} | {:.0} | {:.0}–{:.0} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.target.name(),
                row.requests_per_s,
                row.requests_per_s_min,
                row.requests_per_s_max,
                row.p50_ms,
                row.p99_ms,
                if proxied {
                    format!("{:.3}", row.added_p50_ms)
                } else {
                    "–".into()
                },
                if proxied {
                    format!("{:.3}", row.added_p99_ms)
                } else {
                    "–".into()
                },
                optional(row.cpu_us_per_request, 0),
                row.errors,
                times(ratio(row.requests_per_s, floor.requests_per_s)),
                if proxied {
                    times(ratio(row.added_p50_ms, floor.added_p50_ms))
                } else {
                    "–".into()
                },
                if proxied {
                    times(ratio(row.added_p99_ms, floor.added_p99_ms))
                } else {
                    "–".into()
                },
                if proxied {
                    times(cpu_ratio)
                } else {
                    "–".into()
                },
            );
        }
    }
    let mock_cpu: Vec<String> = summaries
        .wrk_cells()
        .filter_map(|(id, rows)| {
            let direct = rows.iter().find(|s| s.target == Target::Direct)?;
            Some(format!(
                "{} {:.0} µs",
                summaries.title(id),
                direct.mock_cpu_us_per_request
            ))
        })
        .collect();
    let _ = writeln!(
        out,
        "\nThe mock's own CPU per request, direct: {}.\n",
        mock_cpu.join(", ")
    );
}

fn render_streams(out: &mut String, summaries: &Summaries) {
    let _ = writeln!(
        out,
        "### Streaming\n\nThe Rust streaming client in `bench/keyport-bench` timestamps every chunk. Each event carries the mock's send time, so an event's delay is its arrival minus its send time on the shared realtime clock. The table subtracts the median delay of the direct path in the same round, which leaves the time the proxy adds. Paced cells: {PACED_STREAMS} concurrent streams of {PACED_EVENTS} events, one every {} ms. TTFB counts from sending the request to the first body chunk; \"extra\" subtracts the direct path's p50. Event rate: events per second between a stream's first and last event, mean over streams and the slowest stream.\n",
        PACED_INTERVAL.as_millis()
    );
    let _ = writeln!(
        out,
        "| cell | target | streams (failed) | TTFB p50 ms | extra TTFB ms | delay mean ms | delay p99 ms | delay max ms | events/s per stream | slowest stream | CPU µs/stream | extra TTFB ÷ floor | delay mean ÷ floor | CPU ÷ floor |"
    );
    let _ = writeln!(
        out,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for (id, rows) in summaries.stream_cells() {
        if id == "events-1000" {
            continue;
        }
        let Some(floor) = rows.iter().find(|s| s.target == Target::Floor) else {
            continue;
        };
        let title = summaries.title(id);
        let paced = id.starts_with("paced-");
        for row in rows {
            let proxied = row.target != Target::Direct;
            let cpu_ratio = row
                .cpu_us_per_stream
                .zip(floor.cpu_us_per_stream)
                .and_then(|(cpu, base)| ratio(cpu, base));
            let _ = writeln!(
                out,
                "| {title} | {} | {} ({}) | {:.3} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} |",
                row.target.name(),
                row.streams,
                row.failed,
                row.ttfb_p50_ms,
                if proxied { format!("{:.3}", row.extra_ttfb_ms) } else { "–".into() },
                row.delay_mean_ms,
                row.delay_p99_ms,
                row.delay_max_ms,
                rate(paced, row.event_rate),
                rate(paced, row.min_event_rate),
                optional(row.cpu_us_per_stream, 0),
                if proxied { times(ratio(row.extra_ttfb_ms, floor.extra_ttfb_ms)) } else { "–".into() },
                if proxied { times(ratio(row.delay_mean_ms, floor.delay_mean_ms)) } else { "–".into() },
                if proxied { times(cpu_ratio) } else { "–".into() },
            );
        }
    }
    render_long_streams(out, summaries);
    render_stream_errors(out, summaries);
}

/// Formats the event rate of a paced cell. Unpaced streams have no rate to
/// keep, so they get a dash.
fn rate(paced: bool, rate: f64) -> String {
    if paced {
        format!("{rate:.1}")
    } else {
        "–".into()
    }
}

fn render_long_streams(out: &mut String, summaries: &Summaries) {
    let Some(rows) = summaries.streams.get("events-1000") else {
        return;
    };
    let Some(floor) = rows.iter().find(|s| s.target == Target::Floor) else {
        return;
    };
    let _ = writeln!(
        out,
        "\n{}, unpaced: the mock writes the events as fast as the connection takes them.\n",
        summaries.title("events-1000")
    );
    let _ = writeln!(
        out,
        "| target | streams (failed) | streams/s | events/s | stream p50 ms | stream p99 ms | CPU µs/stream | streams/s ÷ floor | p50 ÷ floor | CPU ÷ floor |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        let proxied = row.target != Target::Direct;
        let cpu_ratio = row
            .cpu_us_per_stream
            .zip(floor.cpu_us_per_stream)
            .and_then(|(cpu, base)| ratio(cpu, base));
        let _ = writeln!(
            out,
            "| {} | {} ({}) | {:.1} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} |",
            row.target.name(),
            row.streams,
            row.failed,
            row.streams_per_s,
            row.events_per_s,
            row.duration_p50_ms,
            row.duration_p99_ms,
            optional(row.cpu_us_per_stream, 0),
            times(ratio(row.streams_per_s, floor.streams_per_s)),
            times(ratio(row.duration_p50_ms, floor.duration_p50_ms)),
            if proxied {
                times(cpu_ratio)
            } else {
                "–".into()
            },
        );
    }
    let _ = writeln!(out);
}

fn render_stream_errors(out: &mut String, summaries: &Summaries) {
    for (id, rows) in summaries.stream_cells() {
        for row in rows.iter().filter(|row| row.failed > 0) {
            let _ = writeln!(
                out,
                "- {} through {}: {} of {} streams failed, first error: {}",
                summaries.title(id),
                row.target.name(),
                row.failed,
                row.streams,
                row.first_error.as_deref().unwrap_or("unknown")
            );
        }
    }
}

fn render_memory(out: &mut String, data: &RunData, summaries: &Summaries) {
    let memory = &data.memory;
    let how = if memory.exact_peaks {
        "the highest of `VmHWM`, reset before each run through `/proc/PID/clear_refs`, and `VmRSS` sampled every 20 ms"
    } else {
        "`VmRSS` sampled every 20 ms, which can miss short spikes"
    };
    let _ = writeln!(
        out,
        "### Memory of keyport serve\n\nResident memory from `/proc/PID/status`. Peaks per cell are {how}, highest over rounds. The floor's memory is there for comparison.\n"
    );
    let _ = writeln!(
        out,
        "| when | keyport MiB | heap and stacks | files | shared | floor MiB |\n|---|--:|--:|--:|--:|--:|"
    );
    let row = |out: &mut String, when: &str, keyport: &Memory, floor: &Memory| {
        let _ = writeln!(
            out,
            "| {when} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            mib(keyport.rss_kib),
            mib(keyport.anon_kib),
            mib(keyport.file_kib),
            mib(keyport.shmem_kib),
            mib(floor.rss_kib)
        );
    };
    row(
        out,
        "idle, 1 s after start",
        &memory.keyport_idle,
        &memory.floor_idle,
    );
    let _ = writeln!(
        out,
        "| peak of the start-up, vault unlock included (`VmHWM`) | {:.1} | | | | |",
        mib(memory.keyport_idle.hwm_kib)
    );
    for &id in &summaries.order {
        let peak = summaries
            .wrk_target(id, Target::Keyport)
            .and_then(|s| s.peak_rss_kib)
            .or_else(|| {
                summaries
                    .stream_target(id, Target::Keyport)
                    .and_then(|s| s.peak_rss_kib)
            });
        let _ = writeln!(
            out,
            "| peak during {} | {} | | | | |",
            summaries.title(id),
            optional_mib(peak)
        );
    }
    let after = format!("{} s after the last run", AFTER_LOAD_WAIT.as_secs());
    row(out, &after, &memory.keyport_after, &memory.floor_after);
    let _ = writeln!(
        out,
        "\nRequest log rows lost (from `keyport serve`'s shutdown report): {}.\n",
        data.lost_log_rows
    );
}

fn render_vault(out: &mut String, data: &RunData) {
    let Some((_, text)) = &data.vault else {
        return;
    };
    let _ = writeln!(
        out,
        "### Vault\n\n`bench/vault.sh` (keyport-core's `vault_bench` example), real Stronghold files in a temporary folder:\n"
    );
    let _ = writeln!(out, "```text\n{}\n```\n", text.trim_end());
}

fn render_requestlog(out: &mut String, data: &RunData) {
    let Some((numbers, text)) = &data.requestlog else {
        return;
    };
    let _ = writeln!(
        out,
        "### Request log queries\n\nkeyport-core's `requestlog_bench` example: {}. First page of 50 rows, best of 5 runs:\n",
        numbers.inserted.as_deref().unwrap_or("rows inserted")
    );
    let _ = writeln!(
        out,
        "| filter | ms | rows | SQLite plan |\n|---|--:|--:|---|"
    );
    for page in &numbers.pages {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {} | {} |",
            page.filter,
            page.millis,
            page.rows,
            if page.plan.is_empty() {
                "–"
            } else {
                &page.plan
            }
        );
    }
    let _ = writeln!(
        out,
        "\n<details><summary>Full output</summary>\n\n```text\n{}\n```\n\n</details>",
        text.trim_end()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_keeps_text_around_the_markers() {
        let page = format!("# B\n\nintro\n\n{START_MARKER}\nold\n{END_MARKER}\n\n## Analysis\n");
        let block = format!("{START_MARKER}\nnew\n{END_MARKER}");
        let spliced = splice(&page, &block).unwrap();
        assert_eq!(
            spliced,
            format!("# B\n\nintro\n\n{START_MARKER}\nnew\n{END_MARKER}\n\n## Analysis\n")
        );
        assert!(splice("# B\n", &block).is_none());
    }

    #[test]
    fn within_floor_reports_both_misses() {
        let check = within_floor("x", String::new(), 2.0, 0.5);
        let Verdict::Missed(by) = check.verdict else {
            panic!("expected a miss");
        };
        assert!(by.contains("p50 0.50× over"), "{by}");
        assert!(by.contains("throughput 0.167× under"), "{by}");
        assert!(matches!(
            within_floor("x", String::new(), 1.2, 0.9).verdict,
            Verdict::Met
        ));
    }
}
