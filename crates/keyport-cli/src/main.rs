//! The `keyport` command: manages the key vault and client tokens, and runs
//! the proxy without a display. All logic lives in `keyport-core`; this crate
//! parses arguments, reads passwords and keys, and prints results.

mod cli;
mod commands;
mod error;
mod input;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.command.default_log_level());

    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            output::error_line(&error.to_string());
            error.exit_code()
        }
    }
}

/// Sends logs to stderr, filtered by `RUST_LOG` (default: `level` for
/// Keyport's own crates, warnings for libraries).
fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("warn,keyport_core={level},keyport={level}"))
    });
    // Colours only on a terminal, and never with NO_COLOR set, so log
    // files and pipes get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}
