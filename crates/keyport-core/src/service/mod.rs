//! The proxy runtime that both shells start: `keyport serve` and the
//! desktop app.
//!
//! [`ProxyService::start`] binds the listener, loads client tokens and keeps
//! them fresh, fills the key slot (from a vault it follows on disk, or from a
//! vault the caller holds open), wires the request log into the proxy and
//! serves on the caller's tokio runtime. The returned [`RunningProxy`] stops
//! gracefully and reports what the request log lost.
//!
//! This module does not print: conditions the user should hear about come
//! back as [`StartWarning`]s, and each shell phrases them.

mod log;
mod watcher;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::limits::{Limiter, SystemClock};
use crate::paths::DataDir;
use crate::proxy::{self, KeySlot, ProxyActivity, ProxyError, ProxyState, RequestLogSink};
use crate::requestlog::LogStats;
use crate::secret::SecretString;
use crate::tokens::{LiveTokens, TokenError};
use crate::vault::{Vault, VaultError, VaultFollower};

pub use log::{open_request_log, LogHandle};
use watcher::VaultWatcher;

/// How often the proxy checks `tokens.json` for tokens created or revoked
/// by another `keyport` process.
const TOKEN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Errors from starting or running the proxy service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "port {port} on {ip} is already in use; pick another port (0 picks a free one)",
        port = .address.port(),
        ip = .address.ip()
    )]
    PortInUse { address: SocketAddr },

    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },

    #[error(transparent)]
    Vault(#[from] VaultError),

    #[error(transparent)]
    Tokens(#[from] TokenError),

    #[error("cannot set up the proxy: {0}")]
    Proxy(#[from] ProxyError),

    #[error("the proxy stopped with an error: {0}")]
    Serve(std::io::Error),

    #[error("the proxy task failed: {0}; restart Keyport")]
    Task(String),
}

/// Source of the proxy's provider keys.
pub enum KeySupply<'a> {
    /// Open the vault read-only with this password and reload the keys
    /// whenever another process changes the vault files (`keyport serve`).
    Follow(SecretString),
    /// Serve the keys of a vault the caller holds open. The caller puts new
    /// key rings into [`RunningProxy::keys`] after changing the vault.
    Unlocked(&'a Vault),
}

/// Something that makes requests fail or the setup unsafe, reported at
/// start so the shell can tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartWarning {
    /// The vault contains no keys.
    NoKeys,
    /// Tokens are required but none exist, so every request is rejected.
    NoTokens,
    /// `proxy.require_token` is false.
    TokenNotRequired,
    /// The proxy listens on an address other machines may reach.
    NotLoopback(IpAddr),
    /// `prices.toml` could not be read; the shipped prices apply.
    PricesFallback(String),
    /// No price table could be loaded, so costs are not estimated.
    NoPrices(String),
    /// The request log could not be opened; requests go only to `tracing`.
    RequestLogOff(String),
    /// This month's spend could not be read from the request log, so the
    /// client tokens' spend caps count from zero.
    SpendNotSeeded(String),
}

/// What to start: the data folder, the effective configuration and the
/// caller's overrides.
pub struct ProxyService {
    data_dir: DataDir,
    config: Config,
    port: Option<u16>,
    bind: Option<IpAddr>,
    request_log: Option<Option<LogHandle>>,
}

impl ProxyService {
    pub fn new(data_dir: DataDir, config: Config) -> Self {
        Self {
            data_dir,
            config,
            port: None,
            bind: None,
            request_log: None,
        }
    }

    /// Listens on `port` instead of `proxy.port`; 0 picks a free port.
    pub fn port(mut self, port: Option<u16>) -> Self {
        self.port = port.or(self.port);
        self
    }

    /// Listens on `bind` instead of `proxy.bind`.
    pub fn bind(mut self, bind: Option<IpAddr>) -> Self {
        self.bind = bind.or(self.bind);
        self
    }

    /// Records requests in a log the caller has opened, or in none, instead
    /// of opening `requests.sqlite3` as the config says.
    pub fn request_log(mut self, log: Option<LogHandle>) -> Self {
        self.request_log = Some(log);
        self
    }

    /// Loads the keys and tokens, binds the listener and starts serving on
    /// the current tokio runtime.
    pub async fn start(self, keys: KeySupply<'_>) -> Result<RunningProxy, ServiceError> {
        let mut proxy_config = self.config.proxy.clone();
        if let Some(port) = self.port {
            proxy_config.port = port;
        }
        if let Some(bind) = self.bind {
            proxy_config.bind = bind;
        }
        let tokens = LiveTokens::load(&self.data_dir.tokens())?;
        let mut warnings = Vec::new();

        let slot = KeySlot::default();
        let watcher = match keys {
            KeySupply::Follow(password) => {
                let data_dir = self.data_dir.clone();
                let (follower, vault) =
                    tokio::task::spawn_blocking(move || VaultFollower::open(&data_dir, password))
                        .await
                        .map_err(|error| ServiceError::Task(error.to_string()))??;
                slot.set(Arc::new(vault.keyring()));
                warnings.extend(setup_warnings(&vault, &tokens, &proxy_config));
                vault.lock();
                Some(VaultWatcher::start(follower, slot.clone()))
            }
            KeySupply::Unlocked(vault) => {
                slot.set(Arc::new(vault.keyring()));
                warnings.extend(setup_warnings(vault, &tokens, &proxy_config));
                None
            }
        };
        // From here on, a failure must stop the watcher it started.
        let started = self.serve(proxy_config, tokens, slot.clone(), &mut warnings);
        match started.await {
            Ok(serving) => Ok(RunningProxy {
                address: serving.address,
                activity: serving.activity,
                keys: slot,
                warnings,
                request_log: serving.request_log,
                server: serving.server,
                shutdown: serving.shutdown,
                refresh: serving.refresh,
                watcher,
            }),
            Err(error) => {
                slot.clear();
                if let Some(watcher) = watcher {
                    let _ = tokio::task::spawn_blocking(move || watcher.stop()).await;
                }
                Err(error)
            }
        }
    }

    async fn serve(
        self,
        proxy_config: crate::config::ProxyConfig,
        tokens: LiveTokens,
        keys: KeySlot,
        warnings: &mut Vec<StartWarning>,
    ) -> Result<Serving, ServiceError> {
        let request_log = match self.request_log {
            Some(shared) => shared,
            None => {
                let (handle, log_warnings) = open_request_log(&self.data_dir, &self.config);
                warnings.extend(log_warnings);
                handle
            }
        };

        let address = SocketAddr::new(proxy_config.bind, proxy_config.port);
        let listener = bind(address).await?;
        let local = listener
            .local_addr()
            .map_err(|source| ServiceError::Bind { address, source })?;

        let mut state = ProxyState::new(proxy_config, self.config.providers, tokens.clone(), keys)?;
        if let Some(handle) = &request_log {
            let sink = RequestLogSink::new(handle.log.recorder(), handle.prices.clone());
            state = state.with_outcome_sink(Arc::new(sink));
        }
        let log = request_log.clone();
        let limiter = tokio::task::spawn_blocking(move || start_limiter(log.as_ref()))
            .await
            .map_err(|error| ServiceError::Task(error.to_string()))?;
        warnings.extend(limiter.1);
        state = state.with_limiter(limiter.0);

        let activity = state.activity();
        let refresh = tokens.spawn_refresh(TOKEN_REFRESH_INTERVAL);
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(proxy::serve(listener, state, async {
            let _ = stop.await;
        }));
        Ok(Serving {
            address: local,
            activity,
            server,
            shutdown,
            refresh,
            request_log,
        })
    }
}

/// The tasks and handles of a proxy that has started serving.
struct Serving {
    address: SocketAddr,
    activity: Arc<ProxyActivity>,
    server: JoinHandle<std::io::Result<()>>,
    shutdown: oneshot::Sender<()>,
    refresh: JoinHandle<()>,
    request_log: Option<LogHandle>,
}

/// A proxy serving in the background. Call [`RunningProxy::stop`] to end
/// it. Dropping it also stops the server, the token refresh and the vault
/// watcher, but waits for none of them and leaves the key slot filled.
pub struct RunningProxy {
    address: SocketAddr,
    activity: Arc<ProxyActivity>,
    keys: KeySlot,
    warnings: Vec<StartWarning>,
    request_log: Option<LogHandle>,
    server: JoinHandle<std::io::Result<()>>,
    shutdown: oneshot::Sender<()>,
    refresh: JoinHandle<()>,
    watcher: Option<VaultWatcher>,
}

/// Report of a stopped proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// Request-log counters after the last row was written, when the log
    /// was on and lost rows (dropped or failed to write).
    pub log_losses: Option<LogStats>,
}

impl RunningProxy {
    /// The address the proxy listens on, with the port the system picked
    /// when port 0 was asked for.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Requests in flight and the end of the last one.
    pub fn activity(&self) -> &ProxyActivity {
        &self.activity
    }

    /// The proxy's key slot. Put a new key ring in after changing the vault.
    pub fn keys(&self) -> &KeySlot {
        &self.keys
    }

    pub fn warnings(&self) -> &[StartWarning] {
        &self.warnings
    }

    /// The request log the proxy records into, if it is on.
    pub fn request_log(&self) -> Option<&LogHandle> {
        self.request_log.as_ref()
    }

    /// Serves until `signal` resolves or the server fails, then stops.
    pub async fn run_until(
        mut self,
        signal: impl Future<Output = ()>,
    ) -> Result<StopReport, ServiceError> {
        let ended = tokio::select! {
            () = signal => None,
            result = &mut self.server => Some(result),
        };
        match ended {
            None => self.stop().await,
            Some(result) => {
                let report = self.clean_up().await;
                join_result(result)?;
                Ok(report)
            }
        }
    }

    /// Stops accepting, lets open requests finish for the server's grace
    /// period, stops following the vault, empties the key slot and writes
    /// the request log's queue.
    pub async fn stop(mut self) -> Result<StopReport, ServiceError> {
        let shutdown = std::mem::replace(&mut self.shutdown, oneshot::channel().0);
        let _ = shutdown.send(());
        let result = (&mut self.server).await;
        let report = self.clean_up().await;
        join_result(result)?;
        Ok(report)
    }

    async fn clean_up(mut self) -> StopReport {
        self.refresh.abort();
        self.keys.clear();
        if let Some(watcher) = self.watcher.take() {
            let _ = tokio::task::spawn_blocking(move || watcher.stop()).await;
        }
        let Some(handle) = self.request_log.take() else {
            return StopReport { log_losses: None };
        };
        let log = handle.log.clone();
        let stats = tokio::task::spawn_blocking(move || {
            let _ = log.flush();
            log.stats()
        })
        .await
        .ok();
        let losses = stats.filter(|stats| stats.rows_dropped > 0 || stats.write_errors > 0);
        if let Some(stats) = losses {
            tracing::warn!(
                dropped = stats.rows_dropped,
                write_errors = stats.write_errors,
                "the request log lost rows"
            );
        }
        StopReport { log_losses: losses }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.refresh.abort();
    }
}

fn join_result(
    result: Result<std::io::Result<()>, tokio::task::JoinError>,
) -> Result<(), ServiceError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(ServiceError::Serve(error)),
        Err(error) => Err(ServiceError::Task(error.to_string())),
    }
}

/// Creates the client token limiter with the log's prices, and seeds the
/// spend caps with the costs logged today and this month. Without a log,
/// costs are unknown and spend caps never fill, which is logged.
fn start_limiter(request_log: Option<&LogHandle>) -> (Arc<Limiter>, Option<StartWarning>) {
    let clock = Arc::new(SystemClock::new());
    let Some(handle) = request_log else {
        tracing::info!("the request log is off, so spend caps of client tokens count nothing");
        return (Arc::new(Limiter::new(clock, None)), None);
    };
    let limiter = Limiter::new(clock, Some(handle.prices.clone()));
    let warning = match limiter.seed_from_log(&handle.log) {
        Ok(tokens) => {
            tracing::debug!(tokens, "spend of client tokens read from the request log");
            None
        }
        Err(error) => Some(StartWarning::SpendNotSeeded(error.to_string())),
    };
    (Arc::new(limiter), warning)
}

async fn bind(address: SocketAddr) -> Result<TcpListener, ServiceError> {
    TcpListener::bind(address).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ServiceError::PortInUse { address }
        } else {
            ServiceError::Bind { address, source }
        }
    })
}

/// Lists what would make requests fail or the setup unsafe.
fn setup_warnings(
    vault: &Vault,
    tokens: &LiveTokens,
    config: &crate::config::ProxyConfig,
) -> Vec<StartWarning> {
    let mut warnings = Vec::new();
    if vault.list().is_empty() {
        warnings.push(StartWarning::NoKeys);
    }
    if config.require_token && tokens.current().is_empty() {
        warnings.push(StartWarning::NoTokens);
    }
    if !config.require_token {
        warnings.push(StartWarning::TokenNotRequired);
    }
    if !config.bind.is_loopback() {
        warnings.push(StartWarning::NotLoopback(config.bind));
    }
    warnings
}
