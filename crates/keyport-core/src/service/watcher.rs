//! A thread that reloads the proxy's keys when another process changes the
//! vault files.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::proxy::KeySlot;
use crate::vault::{VaultError, VaultFollower};

/// How often the proxy checks the vault files for changes made by
/// `keyport key set`, `key remove` or `passwd` in another process.
const VAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A thread that reloads the keys when the vault files change.
pub(crate) struct VaultWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VaultWatcher {
    pub(crate) fn start(mut follower: VaultFollower, keys: KeySlot) -> Self {
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
                            VaultError::WrongPassword => "the vault password was changed by another process; restart the proxy with the new password to load key changes".to_string(),
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

    /// Stops the thread and waits for it. Blocks for up to one reload.
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for VaultWatcher {
    /// Tells a watcher that was not stopped to end after its current sleep
    /// step, without waiting for it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
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
