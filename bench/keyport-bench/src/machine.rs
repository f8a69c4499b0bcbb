//! The machine and software versions a run measured, for the report.

use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpu_model: lscpu_model().unwrap_or_else(|| {
            cpuinfo
                .lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
                .unwrap_or_else(|| "unknown".into())
        }),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        memory_gib: memory_kib / (1024.0 * 1024.0),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|text| text.trim().to_string())
            .unwrap_or_default(),
    }
}

fn lscpu_model() -> Option<String> {
    let text = command_output(&mut Command::new("lscpu"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("Model name:"))
        .map(|rest| rest.trim().to_string())
}

/// Returns the 1, 5 and 15 minute load averages, which show how busy the
/// machine was with other work.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

pub fn rustc_version() -> String {
    command_output(Command::new("rustc").arg("--version"))
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `git describe --always --dirty` of the repository at `repo`.
pub fn git_revision(repo: &Path) -> String {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(repo)
        .args(["describe", "--always", "--dirty"]);
    command_output(&mut command)
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub fn keyport_version(binary: &Path) -> String {
    command_output(Command::new(binary).arg("--version"))
        .map(|text| text.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn command_output(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}
