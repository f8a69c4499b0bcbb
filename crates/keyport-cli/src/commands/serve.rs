//! `keyport serve`: unlock the vault and run the proxy until interrupted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyport_core::config::Config;
use keyport_core::limits::{Limiter, SystemClock};
use keyport_core::paths::DataDir;
use keyport_core::proxy::{self, KeySlot, ProxyState, RequestLogSink};
use keyport_core::requestlog::{PriceTable, RequestLog};
use keyport_core::tokens::LiveTokens;
use keyport_core::vault::{VaultError, VaultFollower};
use tokio::net::TcpListener;

use super::Context;
use crate::cli::ServeArgs;
use crate::error::CliError;
use crate::output;

/// How often the proxy checks `tokens.json` for tokens created or revoked
/// by another `keyport` process.
const TOKEN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

pub fn run(context: &Context, args: ServeArgs) -> Result<(), CliError> {
    let config = context.config()?;
    let mut proxy_config = config.proxy.clone();
    if let Some(port) = args.port {
        proxy_config.port = port;
    }
    if let Some(bind) = args.bind {
        proxy_config.bind = bind;
    }
    let tokens = LiveTokens::load(&context.data_dir.tokens())?;

    // The proxy reads the vault without its write lock and follows changes,
    // so `keyport key set` works while it serves.
    context.require_vault()?;
    let password = context.password()?;
    let (follower, vault) = VaultFollower::open(&context.data_dir, password)
        .map_err(|error| context.vault_error(error))?;
    let keys = KeySlot::default();
    keys.set(Arc::new(vault.keyring()));
    warn_about_setup(
        &vault,
        &tokens,
        proxy_config.require_token,
        proxy_config.bind,
    );
    vault.lock();
    let watcher = VaultWatcher::start(follower, keys.clone());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::Failed(format!("cannot start the async runtime: {error}")))?;
    let request_log = open_request_log(&context.data_dir, &config);
    let result = runtime.block_on(async {
        let address = SocketAddr::new(proxy_config.bind, proxy_config.port);
        let listener = bind(address).await?;
        let local = listener
            .local_addr()
            .map_err(|error| CliError::Failed(format!("cannot read the bound address: {error}")))?;

        let refresh = tokens.spawn_refresh(TOKEN_REFRESH_INTERVAL);
        let mut state = ProxyState::new(proxy_config, config.providers, tokens, keys.clone())
            .map_err(|error| CliError::Failed(error.to_string()))?;
        if let Some((log, prices)) = &request_log {
            let sink = RequestLogSink::new(log.recorder(), prices.clone());
            state = state.with_outcome_sink(Arc::new(sink));
        }
        state = state.with_limiter(start_limiter(request_log.as_ref()));

        output::result_line(&format!("Keyport proxy listening on http://{local}"));
        output::flush();

        let served = proxy::serve(listener, state, shutdown_signal()).await;
        refresh.abort();
        served
            .map_err(|error| CliError::Failed(format!("the proxy stopped with an error: {error}")))
    });

    watcher.stop();
    keys.clear();
    if let Some((log, _)) = request_log {
        report_log_losses(&log);
    }
    result
}

/// How often the proxy checks the vault files for changes made by
/// `keyport key set`, `key remove` or `passwd` in another process.
const VAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A thread that reloads the keys when the vault files change.
struct VaultWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VaultWatcher {
    fn start(mut follower: VaultFollower, keys: KeySlot) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last_error: Option<String> = None;
            while !sleep_unless_stopped(&stop_flag, VAULT_CHECK_INTERVAL) {
                match follower.reload_if_changed() {
                    Ok(None) => {}
                    Ok(Some(vault)) => {
                        keys.set(Arc::new(vault.keyring()));
                        tracing::info!(keys = vault.list().len(), "vault changed; keys reloaded");
                        vault.lock();
                        last_error = None;
                    }
                    Err(error) => {
                        // Report each distinct failure once, not every second.
                        let message = match error {
                            VaultError::WrongPassword => "the vault password was changed by another process; restart keyport serve with the new password to load key changes".to_string(),
                            other => other.to_string(),
                        };
                        if last_error.as_deref() != Some(message.as_str()) {
                            tracing::warn!(error = %message, "keeping the keys loaded before");
                            last_error = Some(message);
                        }
                    }
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sleeps for `duration` in short steps; returns true as soon as `stop` is set.
fn sleep_unless_stopped(stop: &AtomicBool, duration: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < duration {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(step);
        slept += step;
    }
    stop.load(Ordering::Relaxed)
}

/// Opens the request log and the price table. A log that cannot be opened
/// is reported and skipped: the proxy serves without it rather than not at
/// all.
fn open_request_log(data_dir: &DataDir, config: &Config) -> Option<(RequestLog, Arc<PriceTable>)> {
    if !config.log.enabled {
        return None;
    }
    let prices = match PriceTable::load(&data_dir.prices()) {
        Ok(prices) => prices,
        Err(error) => {
            output::notice(&format!("warning: {error}; using the shipped prices"));
            match PriceTable::shipped() {
                Ok(prices) => prices,
                Err(error) => {
                    output::notice(&format!("warning: {error}; costs will not be estimated"));
                    PriceTable::default()
                }
            }
        }
    };
    match RequestLog::open(&data_dir.request_log(), config.log.settings()) {
        Ok(log) => Some((log, Arc::new(prices))),
        Err(error) => {
            output::notice(&format!(
                "warning: the request log is off for this run: {error}"
            ));
            None
        }
    }
}

/// Creates the client token limiter with the log's prices, and seeds the
/// spend caps with the costs logged today and this month. Without a log,
/// costs are unknown and spend caps never fill, which is reported.
fn start_limiter(request_log: Option<&(RequestLog, Arc<PriceTable>)>) -> Arc<Limiter> {
    let clock = Arc::new(SystemClock::new());
    let Some((log, prices)) = request_log else {
        tracing::info!("the request log is off, so spend caps of client tokens count nothing");
        return Arc::new(Limiter::new(clock, None));
    };
    let limiter = Limiter::new(clock, Some(prices.clone()));
    match limiter.seed_from_log(log) {
        Ok(tokens) => tracing::debug!(tokens, "spend of client tokens read from the request log"),
        Err(error) => output::notice(&format!(
            "warning: cannot read this month's spend from the request log ({error}); spend caps count from zero"
        )),
    }
    Arc::new(limiter)
}

/// Tells the user how many request-log rows were lost, if any.
fn report_log_losses(log: &RequestLog) {
    let _ = log.flush();
    let stats = log.stats();
    if stats.rows_dropped > 0 || stats.write_errors > 0 {
        output::notice(&format!(
            "warning: the request log lost {} rows ({} dropped because the writer fell behind, {} failed to write)",
            stats.rows_dropped + stats.write_errors,
            stats.rows_dropped,
            stats.write_errors
        ));
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, CliError> {
    TcpListener::bind(address).await.map_err(|error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            CliError::Failed(format!(
                "port {} on {} is already in use; pick another with --port (0 picks a free one) or set proxy.port in config.toml",
                address.port(),
                address.ip()
            ))
        } else {
            CliError::Failed(format!("cannot listen on {address}: {error}"))
        }
    })
}

/// Prints what would make requests fail or the setup unsafe.
fn warn_about_setup(
    vault: &keyport_core::vault::Vault,
    tokens: &LiveTokens,
    require_token: bool,
    bind: std::net::IpAddr,
) {
    if vault.list().is_empty() {
        output::notice(
            "warning: the vault holds no keys yet; add one with `keyport key set PROVIDER`",
        );
    }
    if require_token && tokens.current().is_empty() {
        output::notice(
            "warning: no client tokens exist, so every request will be rejected; create one with `keyport token create NAME`",
        );
    }
    if !require_token {
        output::notice(
            "warning: proxy.require_token is false: any local program, and any web page on an allowed origin, can use your keys",
        );
    }
    if !bind.is_loopback() {
        output::notice(&format!(
            "warning: listening on {bind}, which is not a loopback address; other machines may reach the proxy"
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
