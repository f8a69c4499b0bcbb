//! The app's state: the vault while unlocked, the proxy, the request log
//! and the activity clock for auto-lock. Commands are plain functions over
//! [`AppState`], so they run in tests without a window.
//!
//! The desktop app is the vault's writer: while unlocked it holds the vault
//! open with [`Access::ReadWrite`], so `keyport key set` in a terminal
//! reports the vault busy instead of racing the app.

use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use keyport_core::config::Config;
use keyport_core::paths::DataDir;
use keyport_core::secret::SecretString;
use keyport_core::service::{open_request_log, KeySupply, LogHandle, ProxyService, RunningProxy};
use keyport_core::vault::{Access, Vault};
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::JoinHandle;

use crate::error::AppError;
use crate::logs::to_row;
use crate::types::{AppStatus, LogRow, ProxyRunState, ProxyStatus, VaultState};

/// Receiver of the app's events for the webview. The Tauri shell emits
/// them and tests record them.
pub trait EventSink: Send + Sync + 'static {
    fn status_changed(&self, status: &AppStatus);
    fn request_logged(&self, row: &LogRow);
}

/// The proxy's state as the app tracks it.
pub(crate) enum Proxy {
    Stopped,
    Serving(RunningProxy),
    Failed(AppError),
}

/// State behind the async mutex: changed only by one command at a time.
pub(crate) struct Inner {
    pub(crate) vault: Option<Vault>,
    pub(crate) proxy: Proxy,
    /// Port from `proxy_restart`, used instead of `proxy.port` until the
    /// settings change the port.
    pub(crate) port_override: Option<u16>,
}

/// Everything the commands share.
pub struct AppState {
    pub(crate) data_dir: DataDir,
    pub(crate) export_dir: PathBuf,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) log: StdMutex<Option<LogHandle>>,
    feed: StdMutex<Option<JoinHandle<()>>>,
    pub(crate) events: Arc<dyn EventSink>,
    pub(crate) last_activity: StdMutex<Instant>,
}

impl AppState {
    /// Creates the state for `data_dir`. Exports go to `export_dir`. Call
    /// [`AppState::open_log`] on the async runtime before serving.
    pub fn new(data_dir: DataDir, export_dir: PathBuf, events: Arc<dyn EventSink>) -> Self {
        Self {
            data_dir,
            export_dir,
            inner: Mutex::new(Inner {
                vault: None,
                proxy: Proxy::Stopped,
                port_override: None,
            }),
            log: StdMutex::new(None),
            feed: StdMutex::new(None),
            events,
            last_activity: StdMutex::new(Instant::now()),
        }
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }

    pub(crate) fn config(&self) -> Result<Config, AppError> {
        Ok(Config::load(&self.data_dir.config())?)
    }

    pub(crate) async fn lock_inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().await
    }

    /// Opens the request log with the `[log]` settings and forwards its new rows
    /// as `request-logged` events. Replaces a log opened before.
    pub fn open_log(&self) -> Result<(), AppError> {
        let config = self.config()?;
        let (handle, warnings) = open_request_log(&self.data_dir, &config);
        for warning in warnings {
            tracing::warn!(?warning, "request log set-up");
        }
        let feed = handle.as_ref().map(|handle| self.forward_feed(handle));
        if let Some(old) = std::mem::replace(&mut *lock(&self.feed), feed) {
            old.abort();
        }
        *lock(&self.log) = handle;
        Ok(())
    }

    fn forward_feed(&self, handle: &LogHandle) -> JoinHandle<()> {
        let mut feed = handle.log.subscribe();
        let events = self.events.clone();
        tokio::spawn(async move {
            loop {
                match feed.recv().await {
                    Ok(logged) => events.request_logged(&to_row(&logged)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "the live request feed fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    pub(crate) fn log_handle(&self) -> Option<LogHandle> {
        lock(&self.log).clone()
    }

    /// Returns the status the webview shows.
    pub(crate) fn status_of(&self, inner: &Inner) -> AppStatus {
        let vault = if inner.vault.is_some() {
            VaultState::Unlocked
        } else if Vault::exists(&self.data_dir) {
            VaultState::Locked
        } else {
            VaultState::Missing
        };
        let proxy = match &inner.proxy {
            Proxy::Stopped => ProxyStatus {
                state: ProxyRunState::Stopped,
                address: None,
                port: None,
                error: None,
            },
            Proxy::Serving(running) => ProxyStatus {
                state: ProxyRunState::Serving,
                address: Some(running.address().to_string()),
                port: Some(running.address().port()),
                error: None,
            },
            Proxy::Failed(error) => ProxyStatus {
                state: ProxyRunState::Failed,
                address: None,
                port: None,
                error: Some(error.clone()),
            },
        };
        AppStatus {
            vault,
            proxy,
            data_dir: self.data_dir.root().display().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Emits `status-changed` and returns the status.
    pub(crate) fn publish(&self, inner: &Inner) -> AppStatus {
        let status = self.status_of(inner);
        self.events.status_changed(&status);
        status
    }

    /// Starts the proxy over the unlocked vault. A failure to bind leaves the
    /// proxy `failed` with the error, so the UI can offer another port.
    pub(crate) async fn start_proxy(&self, inner: &mut Inner) -> Result<(), AppError> {
        self.stop_proxy(inner).await;
        let Some(vault) = inner.vault.as_ref() else {
            return Err(AppError::locked());
        };
        let config = self.config()?;
        let service = ProxyService::new(self.data_dir.clone(), config)
            .port(inner.port_override)
            .request_log(self.log_handle());
        match service.start(KeySupply::Unlocked(vault)).await {
            Ok(running) => {
                for warning in running.warnings() {
                    tracing::warn!(?warning, "proxy set-up");
                }
                tracing::info!(address = %running.address(), "proxy serving");
                // Unlocking or restarting restarts the idle time.
                self.touch();
                inner.proxy = Proxy::Serving(running);
            }
            Err(error) => {
                let error = AppError::from(error);
                tracing::warn!(error = %error.message, "the proxy did not start");
                inner.proxy = Proxy::Failed(error);
            }
        }
        Ok(())
    }

    /// Stops the proxy gracefully if it runs.
    pub(crate) async fn stop_proxy(&self, inner: &mut Inner) {
        if let Proxy::Serving(running) = std::mem::replace(&mut inner.proxy, Proxy::Stopped) {
            match running.stop().await {
                Ok(report) => {
                    if let Some(stats) = report.log_losses {
                        tracing::warn!(?stats, "the request log lost rows in this run");
                    }
                }
                Err(error) => tracing::warn!(%error, "the proxy stopped with an error"),
            }
        }
    }

    /// Opens the vault for writing and starts the proxy. An unlocked vault
    /// stays as it is; `proxy_restart` retries a proxy that failed.
    pub(crate) async fn unlock(
        &self,
        inner: &mut Inner,
        password: &SecretString,
        create: bool,
    ) -> Result<(), AppError> {
        if inner.vault.is_some() {
            return Ok(());
        }
        let dir = self.data_dir.clone();
        let vault = tokio::task::block_in_place(|| {
            if create {
                Vault::create(&dir, password)
            } else {
                Vault::open(&dir, password, Access::ReadWrite)
            }
        })?;
        inner.vault = Some(vault);
        self.touch();
        self.start_proxy(inner).await
    }

    /// Stops the proxy and zeroizes the keys.
    pub(crate) async fn lock_vault(&self, inner: &mut Inner) {
        self.stop_proxy(inner).await;
        if let Some(vault) = inner.vault.take() {
            vault.lock();
            tracing::info!("vault locked");
        }
    }

    /// Puts the vault's current keys into the running proxy.
    pub(crate) fn refresh_proxy_keys(&self, inner: &Inner) {
        if let (Some(vault), Proxy::Serving(running)) = (&inner.vault, &inner.proxy) {
            running.keys().set(Arc::new(vault.keyring()));
        }
    }

    /// Records UI activity for auto-lock.
    pub fn touch(&self) {
        *lock(&self.last_activity) = Instant::now();
    }

    /// Returns the later of the last UI activity and the proxy's last
    /// activity (a request's start or end, or bytes of an open stream), or
    /// `None` while a request waits for the provider's response headers.
    fn last_busy(&self, inner: &Inner) -> Option<Instant> {
        let activity = *lock(&self.last_activity);
        let Proxy::Serving(running) = &inner.proxy else {
            return Some(activity);
        };
        let proxy = running.activity();
        if proxy.awaiting_response() > 0 {
            return None;
        }
        Some(
            proxy
                .last_activity()
                .map_or(activity, |proxied| proxied.max(activity)),
        )
    }

    /// Locks the vault when it has been idle longer than
    /// `desktop.auto_lock_minutes`: no UI activity and no proxied request,
    /// an open stream counting while its bytes flow and a request waiting
    /// for its response headers counting until they arrive. Returns whether
    /// it locked.
    pub async fn lock_if_idle(&self, now: Instant) -> bool {
        let minutes = match self.config() {
            Ok(config) => config.desktop.auto_lock_minutes,
            Err(error) => {
                tracing::warn!(error = %error.message, "cannot read the auto-lock setting");
                return false;
            }
        };
        if minutes == 0 {
            return false;
        }
        let limit = std::time::Duration::from_secs(u64::from(minutes) * 60);
        let mut inner = self.lock_inner().await;
        if inner.vault.is_none() {
            return false;
        }
        match self.last_busy(&inner) {
            Some(busy) if now.saturating_duration_since(busy) >= limit => {}
            _ => return false,
        }
        self.lock_vault(&mut inner).await;
        self.publish(&inner);
        true
    }

    /// Locks the vault when `desktop.lock_on_screen_lock` is on.
    pub async fn lock_for_screen_lock(&self) -> bool {
        let wanted = self
            .config()
            .map(|config| config.desktop.lock_on_screen_lock)
            .unwrap_or(true);
        let mut inner = self.lock_inner().await;
        if !wanted || inner.vault.is_none() {
            return false;
        }
        self.lock_vault(&mut inner).await;
        self.publish(&inner);
        true
    }

    /// Stops the proxy and locks the vault, for quitting the app.
    pub async fn shut_down(&self) {
        let mut inner = self.lock_inner().await;
        self.lock_vault(&mut inner).await;
        if let Some(feed) = lock(&self.feed).take() {
            feed.abort();
        }
    }
}

/// Locks a std mutex, recovering the data from a poisoned one: every value
/// behind these mutexes is replaced whole, so it is never half-written.
pub(crate) fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
