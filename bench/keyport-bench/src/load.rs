//! Closed-loop HTTP load with `wrk` and the Lua script in `bench/wrk/`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::error::BenchError;

/// Prefix of the line the Lua script's `done()` prints.
const RESULT_PREFIX: &str = "KPBENCH ";

/// Socket timeout for one request; far above any latency the benchmark
/// expects, so a timeout means the target stalled.
const REQUEST_TIMEOUT: &str = "10s";

/// One wrk run.
#[derive(Debug, Clone, Copy)]
pub struct WrkSpec<'a> {
    pub url: &'a str,
    pub connections: u32,
    pub duration: Duration,
    pub token: &'a str,
    /// Bytes of filler in the request's prompt.
    pub request_pad: usize,
}

/// wrk's totals and latency distribution for one run. Latencies are in
/// microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub seconds: f64,
    pub bytes: u64,
    /// Connect, read, write and timeout errors, and responses with a
    /// status of 400 or more.
    pub errors: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl WrkResult {
    pub fn requests_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Runs wrk with one thread, which on a two-core machine leaves the other
/// core to the proxy and the mock.
pub fn run_wrk(script: &Path, spec: &WrkSpec<'_>) -> Result<WrkResult, BenchError> {
    let seconds = spec.duration.as_secs().max(1);
    let output = Command::new("wrk")
        .arg("--threads")
        .arg("1")
        .arg("--connections")
        .arg(spec.connections.to_string())
        .arg("--duration")
        .arg(format!("{seconds}s"))
        .arg("--timeout")
        .arg(REQUEST_TIMEOUT)
        .arg("--script")
        .arg(script)
        .arg(spec.url)
        .env("KP_BENCH_TOKEN", spec.token)
        .env("KP_BENCH_REQUEST_PAD", spec.request_pad.to_string())
        .output()
        .map_err(|source| BenchError::Spawn {
            program: "wrk".into(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(BenchError::command(
            "wrk",
            format!(
                "exit status {}: {}{}",
                output.status,
                stdout.trim(),
                stderr.trim()
            ),
        ));
    }
    parse_result(&stdout)
}

fn parse_result(stdout: &str) -> Result<WrkResult, BenchError> {
    let missing = || BenchError::Parse {
        what: "wrk's result line",
        text: stdout.chars().take(500).collect(),
    };
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(RESULT_PREFIX))
        .ok_or_else(missing)?;
    let value: Value = serde_json::from_str(line).map_err(|_| missing())?;
    let number = |name: &str| value.get(name).and_then(Value::as_f64).ok_or_else(missing);
    let count = |name: &str| number(name).map(|value| value as u64);
    let errors = [
        "connect_errors",
        "read_errors",
        "write_errors",
        "status_errors",
        "timeouts",
    ]
    .iter()
    .map(|name| count(name))
    .sum::<Result<u64, BenchError>>()?;
    Ok(WrkResult {
        requests: count("requests")?,
        seconds: number("duration_us")? / 1e6,
        bytes: count("bytes")?,
        errors,
        mean_us: number("mean_us")?,
        p50_us: number("p50_us")?,
        p90_us: number("p90_us")?,
        p99_us: number("p99_us")?,
        max_us: number("max_us")?,
    })
}

/// wrk's version line, for the report.
pub fn wrk_version() -> Option<String> {
    // `wrk -v` prints its version and usage, and exits with status 1.
    let output = Command::new("wrk").arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    text.lines()
        .find(|line| line.starts_with("wrk "))
        .map(|line| {
            line.split(" Copyright")
                .next()
                .unwrap_or(line)
                .trim()
                .to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_line_parses() {
        let stdout = "Running 1s test\nKPBENCH {\"requests\":100,\"duration_us\":2000000,\"bytes\":5000,\"connect_errors\":0,\"read_errors\":1,\"write_errors\":0,\"status_errors\":2,\"timeouts\":0,\"mean_us\":150.5,\"p50_us\":120,\"p90_us\":200,\"p99_us\":400,\"max_us\":900}\n";
        let result = parse_result(stdout).unwrap();
        assert_eq!(result.requests, 100);
        assert_eq!(result.errors, 3);
        assert_eq!(result.p99_us, 400.0);
        assert!((result.requests_per_second() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn missing_result_line_is_an_error() {
        assert!(parse_result("Running 1s test\n").is_err());
    }
}
