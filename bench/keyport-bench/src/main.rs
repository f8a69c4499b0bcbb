//! `keyport-bench`: measures `keyport serve` against a mock provider and
//! against a floor proxy that only forwards. `bench/run.sh` builds it and
//! runs `keyport-bench run`, which starts `mock` and `floor` as child
//! processes of this same binary. See `docs/benchmarks.md`.

mod api;
mod client;
mod error;
mod external;
mod floor;
mod keyport;
mod load;
mod machine;
mod mock;
mod process;
mod procfs;
mod report;
mod run;
mod scenario;
mod summary;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::io::Read;
use tokio::net::TcpListener;

use crate::error::BenchError;
use crate::run::{RunOptions, READY_PREFIX};

#[derive(Debug, Parser)]
#[command(
    name = "keyport-bench",
    about = "Benchmarks keyport serve against a passthrough floor proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Run the whole benchmark and write the report.
    Run(RunArgs),
    /// Serve the mock provider on 127.0.0.1 until standard input closes.
    Mock {
        /// Port on 127.0.0.1; 0 picks a free one
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Serve the floor proxy on 127.0.0.1 until standard input closes.
    Floor {
        /// Base URL of the mock, such as http://127.0.0.1:8080; only
        /// loopback addresses are accepted
        #[arg(long)]
        upstream: String,
        /// Port on 127.0.0.1; 0 picks a free one
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The keyport binary to measure
    #[arg(long)]
    keyport: PathBuf,
    /// The wrk script
    #[arg(long, default_value = "bench/wrk/request.lua")]
    wrk_script: PathBuf,
    /// Length of each timed run, in seconds
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=60))]
    seconds: u64,
    /// Rounds over every cell and target
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// The Markdown page to write; text outside its results markers is kept
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Output of keyport-core's vault_bench example, to include
    #[arg(long)]
    vault_report: Option<PathBuf>,
    /// Output of keyport-core's requestlog_bench example, to include
    #[arg(long)]
    requestlog_report: Option<PathBuf>,
    /// The Keyport repository, for its git revision
    #[arg(long, default_value = ".")]
    repo: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        BenchCommand::Run(args) => run::run(RunOptions {
            keyport: args.keyport,
            wrk_script: args.wrk_script,
            seconds: args.seconds,
            rounds: args.rounds,
            out: args.out,
            vault_report: args.vault_report,
            requestlog_report: args.requestlog_report,
            repo: args.repo,
        }),
        BenchCommand::Mock { port } => serve_child(port, |listener| async move {
            mock::serve(listener).await;
            Ok(())
        }),
        BenchCommand::Floor { upstream, port } => match check_loopback(&upstream) {
            Ok(()) => serve_child(port, |listener| floor::serve(listener, upstream)),
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(
                clippy::print_stderr,
                reason = "the error is the program's last output"
            )]
            {
                eprintln!("keyport-bench: {error}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Runs a server on 127.0.0.1:`port`, prints its address and serves until
/// standard input closes, which happens when the parent harness exits,
/// however it exits.
fn serve_child<F, Fut>(port: u16, server: F) -> Result<(), BenchError>
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: std::future::Future<Output = Result<(), BenchError>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::io("start the async runtime", source))?;
    runtime.block_on(async move {
        let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| BenchError::io(format!("listen on {address}"), source))?;
        let local = listener
            .local_addr()
            .map_err(|source| BenchError::io("read the bound address", source))?;
        announce(&format!("{READY_PREFIX}http://{local}"));
        tokio::select! {
            result = server(listener) => result,
            () = stdin_closed() => Ok(()),
        }
    })
}

#[allow(
    clippy::print_stdout,
    reason = "the parent reads the address from standard output"
)]
fn announce(line: &str) {
    use std::io::Write;
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// Resolves when standard input reaches its end. A plain thread reads it
/// because tokio's stdin needs a feature the workspace does not enable.
async fn stdin_closed() {
    let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buffer = [0u8; 64];
        while matches!(stdin.read(&mut buffer), Ok(read) if read > 0) {}
        let _ = sender.send(());
    });
    let _ = receiver.await;
}

/// Rejects an upstream that is not on this machine, so the floor, like
/// every benchmark server, sends traffic only to loopback addresses.
fn check_loopback(upstream: &str) -> Result<(), BenchError> {
    let url = reqwest::Url::parse(upstream)
        .map_err(|_| BenchError::Usage(format!("--upstream {upstream:?} is not a URL")))?;
    let host = url.host_str().unwrap_or_default();
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || ip.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback || url.scheme() != "http" {
        return Err(BenchError::Usage(format!(
            "--upstream {upstream:?} must be an http:// URL on a loopback address such as 127.0.0.1"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_upstream_must_be_loopback() {
        assert!(check_loopback("http://127.0.0.1:8080").is_ok());
        assert!(check_loopback("http://[::1]:8080").is_ok());
        assert!(check_loopback("http://localhost:1").is_ok());
        assert!(check_loopback("http://10.0.0.1:8080").is_err());
        assert!(check_loopback("https://127.0.0.1:8080").is_err());
        assert!(check_loopback("not a url").is_err());
    }
}
