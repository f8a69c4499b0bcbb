//! `keyport serve`: unlock the vault and run the proxy until interrupted.
//! The runtime itself is `keyport_core::service`, shared with the desktop
//! app; this file reads the options and prints.

use keyport_core::service::{KeySupply, ProxyService, ServiceError, StartWarning, StopReport};

use super::Context;
use crate::cli::ServeArgs;
use crate::error::CliError;
use crate::output;

pub fn run(context: &Context, args: ServeArgs) -> Result<(), CliError> {
    let config = context.config()?;
    // The proxy reads the vault without its write lock and follows changes,
    // so `keyport key set` works while it serves.
    context.require_vault()?;
    let password = context.password()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::Failed(format!("cannot start the async runtime: {error}")))?;
    runtime.block_on(async {
        let service = ProxyService::new(context.data_dir.clone(), config)
            .port(args.port)
            .bind(args.bind);
        let running = service
            .start(KeySupply::Follow(password))
            .await
            .map_err(|error| service_error(context, error))?;
        for warning in running.warnings() {
            output::notice(&describe_warning(warning));
        }
        output::result_line(&format!(
            "Keyport proxy listening on http://{}",
            running.address()
        ));
        output::flush();

        let report = running
            .run_until(shutdown_signal())
            .await
            .map_err(|error| service_error(context, error))?;
        report_log_losses(&report);
        Ok(())
    })
}

fn service_error(context: &Context, error: ServiceError) -> CliError {
    match error {
        ServiceError::Vault(error) => context.vault_error(error),
        ServiceError::Tokens(error) => CliError::Token(error),
        ServiceError::PortInUse { address } => CliError::Failed(format!(
            "port {} on {} is already in use; pick another with --port (0 picks a free one) or set proxy.port in config.toml",
            address.port(),
            address.ip()
        )),
        other => CliError::Failed(other.to_string()),
    }
}

/// Phrases a start-up warning with the CLI command that fixes it.
fn describe_warning(warning: &StartWarning) -> String {
    match warning {
        StartWarning::NoKeys => {
            "warning: the vault holds no keys yet; add one with `keyport key set PROVIDER`".into()
        }
        StartWarning::NoTokens => "warning: no client tokens exist, so every request will be rejected; create one with `keyport token create NAME`".into(),
        StartWarning::TokenNotRequired => "warning: proxy.require_token is false: any local program, and any web page on an allowed origin, can use your keys".into(),
        StartWarning::NotLoopback(bind) => format!(
            "warning: listening on {bind}, which is not a loopback address; other machines may reach the proxy"
        ),
        StartWarning::PricesFallback(error) => format!("warning: {error}; using the shipped prices"),
        StartWarning::NoPrices(error) => format!("warning: {error}; costs will not be estimated"),
        StartWarning::RequestLogOff(error) => {
            format!("warning: the request log is off for this run: {error}")
        }
        StartWarning::SpendNotSeeded(error) => format!(
            "warning: cannot read this month's spend from the request log ({error}); spend caps count from zero"
        ),
    }
}

/// Tells the user how many request-log rows were lost, if any.
fn report_log_losses(report: &StopReport) {
    if let Some(stats) = report.log_losses {
        output::notice(&format!(
            "warning: the request log lost {} rows ({} dropped because the writer fell behind, {} failed to write)",
            stats.rows_dropped + stats.write_errors,
            stats.rows_dropped,
            stats.write_errors
        ));
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop the proxy with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
