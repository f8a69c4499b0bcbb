//! The Keyport desktop app: a Tauri 2 shell over `keyport-core`.
//!
//! [`commands`] and [`logs`] hold the command logic as plain functions over
//! [`state::AppState`]; [`ipc`] wraps each in a `#[tauri::command]`;
//! [`app`] wires plugins, the tray, window behaviour and background tasks.

pub mod app;
pub mod commands;
pub mod error;
pub mod ipc;
pub mod logs;
#[cfg(target_os = "linux")]
mod screenlock;
pub mod state;
pub mod types;

/// Sends Keyport's log lines to standard error; `RUST_LOG` sets the level
/// (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
