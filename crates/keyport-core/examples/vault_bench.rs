//! Times the vault operations on real files in a temporary folder and prints
//! a table and the process's peak resident memory.
//!
//! Run with `cargo run --release -p keyport-core --example vault_bench`.
//! Both arguments are optional. A number sets how many saves and unlocks the
//! medians are taken over (default 5). `--compare-default-work-factor` then
//! also times age encryption of the snapshot at Keyport's scrypt work factor
//! and at the engine default. The default needs about 512 MiB, so this runs
//! after the peak memory is reported.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use iota_stronghold::engine::snapshot as engine_snapshot;
use keyport_core::paths::DataDir;
use keyport_core::secret::SecretString;
use keyport_core::vault::{Access, Vault, SNAPSHOT_WORK_FACTOR};

/// Number of keys stored before timing a save, about what a heavy user keeps.
const STORED_KEYS: usize = 20;

/// Work factor iota_stronghold 2.1 encrypts with by default
/// (`RECOMMENDED_MINIMUM_ENCRYPT_WORK_FACTOR` in iota-crypto 0.23).
const ENGINE_DEFAULT_WORK_FACTOR: u8 = 19;

const COMPARE_FLAG: &str = "--compare-default-work-factor";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let compare = args.iter().any(|arg| arg == COMPARE_FLAG);
    let runs = args
        .iter()
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(5usize);
    if let Err(error) = run(runs, compare) {
        eprintln!("vault_bench failed: {error}");
        std::process::exit(1);
    }
}

fn run(runs: usize, compare: bool) -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = DataDir::new(temp.path().join("data"));
    let password = SecretString::from("correct horse battery staple");
    let mut rows = Vec::new();

    let (vault, create) = timed(|| Vault::create(&dir, &password))?;
    rows.push(("create (empty vault)", create));
    vault.lock();

    let mut vault = Vault::open(&dir, &password, Access::ReadWrite)?;
    for index in 0..STORED_KEYS {
        let key = SecretString::from(format!("sk-bench-{index:04}-{}", "x".repeat(48)));
        vault.set_key(&format!("provider-{index}"), None, key)?;
    }
    let mut saves = Vec::with_capacity(runs);
    for run in 0..runs {
        let key = SecretString::from(format!("sk-bench-replaced-{run:04}-{}", "y".repeat(48)));
        let (_, save) = timed(|| vault.set_key("provider-0", None, key))?;
        saves.push(save);
    }
    rows.push(("set_key + save, 20 keys (median)", median(saves)));
    vault.lock();

    let mut unlocks = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (vault, unlock) = timed(|| Vault::open(&dir, &password, Access::ReadOnly))?;
        unlocks.push(unlock);
        vault.lock();
    }
    rows.push(("unlock (median)", median(unlocks)));

    let mut vault = Vault::open(&dir, &password, Access::ReadWrite)?;
    let new_password = SecretString::from("another correct horse");
    let ((), change) = timed(|| vault.change_password(&new_password))?;
    rows.push(("change_password", change));
    vault.lock();

    print_report(&rows, runs);
    if compare {
        compare_default_work_factor(&dir.snapshot())?;
    }
    Ok(())
}

/// Times age encryption and decryption of the snapshot file's bytes at
/// Keyport's work factor and at the engine default, with a fixed key: the
/// scrypt cost does not depend on the key.
fn compare_default_work_factor(
    snapshot: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let contents = std::fs::read(snapshot)?;
    println!();
    println!("age encryption alone, by scrypt work factor:");
    println!("| work factor | encrypt, each save (ms) | decrypt, each unlock (ms) |");
    println!("|---:|---:|---:|");
    for work_factor in [SNAPSHOT_WORK_FACTOR, ENGINE_DEFAULT_WORK_FACTOR] {
        let (encrypt, decrypt) = time_age(&contents, work_factor)?;
        println!(
            "| {work_factor} | {:.1} | {:.1} |",
            encrypt.as_secs_f64() * 1000.0,
            decrypt.as_secs_f64() * 1000.0
        );
    }
    if let Some(kib) = peak_rss_kib() {
        println!(
            "peak RSS after the comparison: {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
    Ok(())
}

fn time_age(contents: &[u8], work_factor: u8) -> Result<(Duration, Duration), String> {
    let key = [7u8; 32];
    let mut encrypted = Vec::new();
    let ((), encrypt) = timed(|| {
        engine_snapshot::encrypt_content_with_work_factor(
            contents,
            &mut encrypted,
            &key,
            work_factor,
        )
        .map_err(|error| error.to_string())
    })?;
    let (_, decrypt) = timed(|| {
        engine_snapshot::decrypt_content(&mut encrypted.as_slice(), &key)
            .map_err(|error| error.to_string())
    })?;
    Ok((encrypt, decrypt))
}

fn median(mut durations: Vec<Duration>) -> Duration {
    durations.sort();
    durations
        .get(durations.len() / 2)
        .copied()
        .unwrap_or_default()
}

fn timed<T, E>(operation: impl FnOnce() -> Result<T, E>) -> Result<(T, Duration), E> {
    let start = Instant::now();
    let value = operation()?;
    Ok((value, start.elapsed()))
}

fn print_report(rows: &[(&str, Duration)], runs: usize) {
    println!("| operation | time (ms) |");
    println!("|---|---:|");
    for (name, duration) in rows {
        println!("| {name} | {:.0} |", duration.as_secs_f64() * 1000.0);
    }
    println!();
    println!("runs per median: {runs}");
    match peak_rss_kib() {
        Some(kib) => println!("peak RSS (VmHWM): {:.1} MiB", kib as f64 / 1024.0),
        None => println!("peak RSS: not available (reads /proc/self/status, Linux only)"),
    }
}

/// Reads the peak resident set size from `/proc/self/status`; `None` off Linux.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
