//! Turns the observations of every round into one summary per cell and
//! target, with latencies relative to the direct path of the same round.

use std::time::Duration;

use crate::client::StreamSample;
use crate::load::WrkResult;
use crate::scenario::Target;

/// One target's run of one cell in one round.
#[derive(Debug, Clone)]
pub struct Observation {
    pub round: u32,
    pub target: Target,
    /// CPU seconds the proxy process used during the run. None for the
    /// direct path, which has no proxy.
    pub proxy_cpu_s: Option<f64>,
    /// CPU seconds the mock used during the run.
    pub mock_cpu_s: f64,
    /// Highest `VmRSS` of `keyport serve` during the run, in KiB.
    pub peak_rss_kib: Option<u64>,
    pub measured: Measured,
}

#[derive(Debug, Clone)]
pub enum Measured {
    Wrk(WrkResult),
    Streams {
        samples: Vec<StreamSample>,
        wall: Duration,
    },
}

/// Returns the nearest-rank percentile of sorted values, or 0 when there
/// are none.
pub fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// CPU microseconds per unit of work, over all rounds.
fn cpu_per_unit(observations: &[&Observation], units: u64) -> Option<f64> {
    let cpu: Option<f64> = observations.iter().map(|o| o.proxy_cpu_s).sum();
    cpu.filter(|_| units > 0)
        .map(|cpu| cpu * 1e6 / units as f64)
}

fn peak(observations: &[&Observation]) -> Option<u64> {
    observations.iter().filter_map(|o| o.peak_rss_kib).max()
}

fn of_target<'a>(observations: &[&'a Observation], target: Target) -> Vec<&'a Observation> {
    observations
        .iter()
        .copied()
        .filter(|o| o.target == target)
        .collect()
}

/// wrk results of one target over every round.
#[derive(Debug, Clone)]
pub struct WrkSummary {
    pub target: Target,
    pub requests: u64,
    pub errors: u64,
    pub requests_per_s: f64,
    /// Slowest and fastest round, which show how noisy the machine was.
    pub requests_per_s_min: f64,
    pub requests_per_s_max: f64,
    /// Means over rounds of wrk's percentiles, in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The percentile minus the direct path's, so the time the proxy adds.
    pub added_p50_ms: f64,
    pub added_p99_ms: f64,
    pub cpu_us_per_request: Option<f64>,
    pub mock_cpu_us_per_request: f64,
    pub peak_rss_kib: Option<u64>,
}

fn wrk_results<'a>(observations: &[&'a Observation]) -> Vec<&'a WrkResult> {
    observations
        .iter()
        .filter_map(|o| match &o.measured {
            Measured::Wrk(result) => Some(result),
            Measured::Streams { .. } => None,
        })
        .collect()
}

/// Summarises a wrk cell, one summary per target, direct first.
pub fn summarize_wrk(observations: &[&Observation]) -> Vec<WrkSummary> {
    let direct = wrk_results(&of_target(observations, Target::Direct));
    let direct_p50 = mean(&direct.iter().map(|r| r.p50_us / 1e3).collect::<Vec<_>>());
    let direct_p99 = mean(&direct.iter().map(|r| r.p99_us / 1e3).collect::<Vec<_>>());
    Target::ALL
        .iter()
        .map(|&target| {
            let own = of_target(observations, target);
            let results = wrk_results(&own);
            let requests: u64 = results.iter().map(|r| r.requests).sum();
            let seconds: f64 = results.iter().map(|r| r.seconds).sum();
            let p50_ms = mean(&results.iter().map(|r| r.p50_us / 1e3).collect::<Vec<_>>());
            let p99_ms = mean(&results.iter().map(|r| r.p99_us / 1e3).collect::<Vec<_>>());
            let mock_cpu: f64 = own.iter().map(|o| o.mock_cpu_s).sum();
            let round_rates: Vec<f64> = results.iter().map(|r| r.requests_per_second()).collect();
            WrkSummary {
                target,
                requests,
                errors: results.iter().map(|r| r.errors).sum(),
                requests_per_s: if seconds > 0.0 {
                    requests as f64 / seconds
                } else {
                    0.0
                },
                requests_per_s_min: round_rates.iter().copied().reduce(f64::min).unwrap_or(0.0),
                requests_per_s_max: round_rates.iter().copied().reduce(f64::max).unwrap_or(0.0),
                p50_ms,
                p99_ms,
                added_p50_ms: p50_ms - direct_p50,
                added_p99_ms: p99_ms - direct_p99,
                cpu_us_per_request: cpu_per_unit(&own, requests),
                mock_cpu_us_per_request: if requests > 0 {
                    mock_cpu * 1e6 / requests as f64
                } else {
                    0.0
                },
                peak_rss_kib: peak(&own),
            }
        })
        .collect()
}

/// Streaming results of one target over every round.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    pub target: Target,
    pub streams: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub ttfb_p50_ms: f64,
    /// TTFB p50 minus the direct path's.
    pub extra_ttfb_ms: f64,
    /// Per event: one-way delay minus the median one-way delay of the
    /// direct path in the same round, so the time the proxy adds.
    pub delay_mean_ms: f64,
    pub delay_p99_ms: f64,
    pub delay_max_ms: f64,
    /// Mean over streams of events per second between a stream's first
    /// and last event.
    pub event_rate: f64,
    /// Slowest stream's event rate.
    pub min_event_rate: f64,
    pub duration_p50_ms: f64,
    pub duration_p99_ms: f64,
    pub streams_per_s: f64,
    pub events_per_s: f64,
    /// Mean body chunks per stream.
    pub chunks_per_stream: f64,
    pub cpu_us_per_stream: Option<f64>,
    pub peak_rss_kib: Option<u64>,
}

fn streams_of(observation: &Observation) -> (&[StreamSample], Duration) {
    match &observation.measured {
        Measured::Streams { samples, wall } => (samples, *wall),
        Measured::Wrk(_) => (&[], Duration::ZERO),
    }
}

/// Median one-way event delay of the direct path in `round`, in µs.
fn direct_median_delay(observations: &[&Observation], round: u32) -> f64 {
    let delays: Vec<f64> = observations
        .iter()
        .filter(|o| o.target == Target::Direct && o.round == round)
        .flat_map(|o| streams_of(o).0)
        .flat_map(|sample| sample.delays_us.iter().map(|&delay| delay as f64))
        .collect();
    percentile(&sorted(delays), 0.5)
}

/// Summarises a streaming cell, one summary per target, direct first.
pub fn summarize_streams(observations: &[&Observation]) -> Vec<StreamSummary> {
    let mut summaries: Vec<StreamSummary> = Target::ALL
        .iter()
        .map(|&target| summarize_target_streams(observations, target))
        .collect();
    let direct_ttfb = summaries[0].ttfb_p50_ms;
    for summary in &mut summaries {
        summary.extra_ttfb_ms = summary.ttfb_p50_ms - direct_ttfb;
    }
    summaries
}

fn summarize_target_streams(observations: &[&Observation], target: Target) -> StreamSummary {
    let own = of_target(observations, target);
    let mut ttfb = Vec::new();
    let mut durations = Vec::new();
    let mut delays = Vec::new();
    let mut rates = Vec::new();
    let mut streams = 0;
    let mut failed = 0;
    let mut first_error = None;
    let mut events = 0;
    let mut chunks = 0;
    let mut wall = 0.0;

    for observation in &own {
        let baseline = direct_median_delay(observations, observation.round);
        let (samples, run_wall) = streams_of(observation);
        wall += run_wall.as_secs_f64();
        for sample in samples {
            streams += 1;
            events += sample.events;
            chunks += sample.chunks;
            if let Some(error) = &sample.error {
                failed += 1;
                first_error.get_or_insert_with(|| error.clone());
            }
            if let Some(first_byte) = sample.ttfb {
                ttfb.push(first_byte.as_secs_f64() * 1e3);
            }
            durations.push(sample.total.as_secs_f64() * 1e3);
            delays.extend(
                sample
                    .delays_us
                    .iter()
                    .map(|&delay| (delay as f64 - baseline) / 1e3),
            );
            rates.extend(sample.event_rate());
        }
    }

    let ttfb = sorted(ttfb);
    let durations = sorted(durations);
    let delays = sorted(delays);
    let per_second = |count: usize| if wall > 0.0 { count as f64 / wall } else { 0.0 };
    StreamSummary {
        target,
        streams,
        failed,
        first_error,
        ttfb_p50_ms: percentile(&ttfb, 0.5),
        extra_ttfb_ms: 0.0,
        delay_mean_ms: mean(&delays),
        delay_p99_ms: percentile(&delays, 0.99),
        delay_max_ms: delays.last().copied().unwrap_or(0.0),
        event_rate: mean(&rates),
        min_event_rate: rates.iter().copied().reduce(f64::min).unwrap_or(0.0),
        duration_p50_ms: percentile(&durations, 0.5),
        duration_p99_ms: percentile(&durations, 0.99),
        streams_per_s: per_second(streams),
        events_per_s: per_second(events),
        chunks_per_stream: if streams > 0 {
            chunks as f64 / streams as f64
        } else {
            0.0
        },
        cpu_us_per_stream: cpu_per_unit(&own, streams as u64),
        peak_rss_kib: peak(&own),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    fn wrk_observation(round: u32, target: Target, requests: u64, p50_us: f64) -> Observation {
        Observation {
            round,
            target,
            proxy_cpu_s: (target != Target::Direct).then_some(1.0),
            mock_cpu_s: 0.5,
            peak_rss_kib: None,
            measured: Measured::Wrk(WrkResult {
                requests,
                seconds: 1.0,
                p50_us,
                p99_us: p50_us * 2.0,
                ..WrkResult::default()
            }),
        }
    }

    #[test]
    fn wrk_added_latency_is_relative_to_direct() {
        let observations = [
            wrk_observation(0, Target::Direct, 1000, 100.0),
            wrk_observation(0, Target::Floor, 500, 300.0),
            wrk_observation(1, Target::Floor, 1500, 500.0),
        ];
        let refs: Vec<&Observation> = observations.iter().collect();
        let summaries = summarize_wrk(&refs);
        let floor = &summaries[1];
        assert_eq!(floor.requests, 2000);
        assert!((floor.requests_per_s - 1000.0).abs() < 1e-9);
        assert!((floor.requests_per_s_min - 500.0).abs() < 1e-9);
        assert!((floor.requests_per_s_max - 1500.0).abs() < 1e-9);
        assert!((floor.p50_ms - 0.4).abs() < 1e-9);
        assert!((floor.added_p50_ms - 0.3).abs() < 1e-9);
        assert!((floor.cpu_us_per_request.unwrap() - 1000.0).abs() < 1e-9);
        assert_eq!(summaries[0].cpu_us_per_request, None);
    }

    fn stream_observation(round: u32, target: Target, delay_us: i64) -> Observation {
        let start = Instant::now();
        let sample = StreamSample {
            ttfb: Some(Duration::from_micros(200 + delay_us as u64)),
            total: Duration::from_secs(1),
            delays_us: vec![delay_us; 10],
            first_event: Some(start),
            last_event: Some(start + Duration::from_millis(90)),
            events: 10,
            chunks: 10,
            error: None,
        };
        Observation {
            round,
            target,
            proxy_cpu_s: None,
            mock_cpu_s: 0.0,
            peak_rss_kib: None,
            measured: Measured::Streams {
                samples: vec![sample],
                wall: Duration::from_secs(1),
            },
        }
    }

    #[test]
    fn stream_delays_subtract_round_median() {
        let observations = [
            stream_observation(0, Target::Direct, 100),
            stream_observation(0, Target::Keyport, 400),
            stream_observation(1, Target::Direct, 1100),
            stream_observation(1, Target::Keyport, 1300),
        ];
        let refs: Vec<&Observation> = observations.iter().collect();
        let summaries = summarize_streams(&refs);
        let keyport = &summaries[2];
        assert_eq!(keyport.target, Target::Keyport);
        assert!((keyport.delay_mean_ms - 0.25).abs() < 1e-9);
        assert!((keyport.delay_max_ms - 0.3).abs() < 1e-9);
        assert!((keyport.event_rate - 100.0).abs() < 1e-6);
        assert!(keyport.extra_ttfb_ms > 0.0);
        assert!((keyport.chunks_per_stream - 10.0).abs() < 1e-9);
        assert_eq!(summaries[0].delay_mean_ms, 0.0);
    }
}
