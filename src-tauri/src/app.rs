//! The Tauri application: plugins, the tray icon, window behaviour, and
//! the background tasks (auto-lock, screen-lock listener).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keyport_core::paths::{DataDir, DATA_DIR_ENV};
use tauri::menu::{Menu, MenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Emitter, Manager, RunEvent, Runtime, WindowEvent};
use tauri_plugin_autostart::ManagerExt;
use tauri_plugin_window_state::StateFlags;

use crate::error::AppError;
use crate::ipc;
use crate::state::{AppState, EventSink};
use crate::types::{AppStatus, LogRow, ProxyRunState, Settings, VaultState};

const TRAY_ID: &str = "keyport";
const MAIN_WINDOW: &str = "main";

/// Command-line flag that starts the app in the tray without its window.
/// Start at login passes it, so a login brings up the tray icon only.
pub const HIDDEN_FLAG: &str = "--hidden";

/// How often the auto-lock task compares the idle time with the setting.
const AUTO_LOCK_CHECK: Duration = Duration::from_secs(20);

/// Sends events to the webview and keeps the tray tooltip current.
struct TauriEvents(AppHandle);

impl EventSink for TauriEvents {
    fn status_changed(&self, status: &AppStatus) {
        if let Err(error) = self.0.emit("status-changed", status) {
            tracing::warn!(%error, "cannot send status-changed to the window");
        }
        if let Some(tray) = self.0.tray_by_id(TRAY_ID) {
            let _ = tray.set_tooltip(Some(tooltip(status)));
        }
    }

    fn request_logged(&self, row: &LogRow) {
        if let Err(error) = self.0.emit("request-logged", row) {
            tracing::debug!(%error, "cannot send request-logged to the window");
        }
    }
}

/// Returns the tray tooltip for `status`.
pub fn tooltip(status: &AppStatus) -> String {
    match (status.vault, status.proxy.state, &status.proxy.address) {
        (VaultState::Unlocked, ProxyRunState::Serving, Some(address)) => {
            format!("Keyport: serving on {address}")
        }
        (VaultState::Unlocked, ProxyRunState::Failed, _) => "Keyport: proxy stopped".to_string(),
        (VaultState::Unlocked, _, _) => "Keyport: unlocked".to_string(),
        _ => "Keyport: locked".to_string(),
    }
}

/// Registers every Keyport command. `src-tauri/build.rs` lists the same
/// names to generate their permissions; a command missing there is denied
/// to the webview.
pub fn with_commands<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder.invoke_handler(tauri::generate_handler![
        ipc::app_status,
        ipc::password_strength,
        ipc::vault_create,
        ipc::vault_unlock,
        ipc::vault_lock,
        ipc::vault_change_password,
        ipc::keys_list,
        ipc::key_set,
        ipc::key_remove,
        ipc::key_test,
        ipc::providers_list,
        ipc::provider_save,
        ipc::provider_reset,
        ipc::tokens_list,
        ipc::token_create,
        ipc::token_revoke,
        ipc::logs_query,
        ipc::logs_totals,
        ipc::logs_export,
        ipc::settings_get,
        ipc::settings_save,
        ipc::proxy_restart,
        ipc::activity,
    ])
}

/// Builds and runs the app until the user quits.
pub fn run() -> Result<(), tauri::Error> {
    with_commands(tauri::Builder::default())
        .plugin(tauri_plugin_single_instance::init(|app, args, _cwd| {
            if !starts_hidden(args) {
                show_main_window(app);
            }
        }))
        // Size, position and maximised state are restored, visibility is
        // not: quitting from the tray while the window is hidden must not
        // start the next run without a window.
        .plugin(
            tauri_plugin_window_state::Builder::default()
                .with_state_flags(StateFlags::all() & !StateFlags::VISIBLE)
                .build(),
        )
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec![HIDDEN_FLAG]),
        ))
        .setup(|app| {
            let handle = app.handle().clone();
            // KEYPORT_DATA_DIR points the app at another folder, as it does the CLI.
            let explicit = std::env::var_os(DATA_DIR_ENV)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from);
            let data_dir = DataDir::resolve(explicit)?;
            let state = AppState::new(
                data_dir.clone(),
                export_dir(&data_dir),
                Arc::new(TauriEvents(handle.clone())),
            );
            tauri::async_runtime::block_on(async { state.open_log() })?;
            app.manage(state);
            build_tray(&handle)?;
            // The window is created hidden (tauri.conf.json), so a start at
            // login does not flash it.
            if !starts_hidden(std::env::args_os()) {
                show_main_window(&handle);
            }
            sync_start_at_login(&handle);
            tauri::async_runtime::spawn(auto_lock(handle.clone()));
            #[cfg(target_os = "linux")]
            tauri::async_runtime::spawn(crate::screenlock::listen(handle.clone()));
            Ok(())
        })
        .on_window_event(|window, event| {
            // Closing the window hides it; the proxy keeps serving until
            // Quit in the tray menu.
            if let WindowEvent::CloseRequested { api, .. } = event {
                api.prevent_close();
                let _ = window.hide();
            }
        })
        .build(tauri::generate_context!())?
        .run(|app, event| {
            if let RunEvent::Exit = event {
                let state = app.state::<AppState>();
                tauri::async_runtime::block_on(state.shut_down());
            }
        });
    Ok(())
}

/// Returns whether the command line (program name first) contains
/// [`HIDDEN_FLAG`].
pub fn starts_hidden<I, S>(args: I) -> bool
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter()
        .skip(1)
        .any(|arg| arg.as_ref() == OsStr::new(HIDDEN_FLAG))
}

/// Returns the user's download folder, or the data folder when there is none.
fn export_dir(data_dir: &DataDir) -> PathBuf {
    directories::UserDirs::new()
        .and_then(|dirs| dirs.download_dir().map(PathBuf::from))
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| data_dir.root().to_path_buf())
}

fn show_main_window(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
    }
}

fn build_tray(app: &AppHandle) -> Result<(), tauri::Error> {
    let open = MenuItem::with_id(app, "open", "Open", true, None::<&str>)?;
    let lock = MenuItem::with_id(app, "lock", "Lock", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&open, &lock, &quit])?;
    let mut builder = TrayIconBuilder::with_id(TRAY_ID)
        .tooltip("Keyport: locked")
        .menu(&menu)
        .on_menu_event(|app, event| match event.id.as_ref() {
            "open" => show_main_window(app),
            "lock" => {
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    crate::commands::vault_lock(&app.state::<AppState>()).await;
                });
            }
            "quit" => {
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    app.state::<AppState>().shut_down().await;
                    app.exit(0);
                });
            }
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    builder.build(app)?;
    Ok(())
}

/// Locks the vault after the configured idle time. Checks every
/// [`AUTO_LOCK_CHECK`], so a lock comes up to that much late.
async fn auto_lock(app: AppHandle) {
    let mut ticker = tokio::time::interval(AUTO_LOCK_CHECK);
    loop {
        ticker.tick().await;
        let state = app.state::<AppState>();
        if state.lock_if_idle(std::time::Instant::now()).await {
            tracing::info!("vault locked after the idle time");
        }
    }
}

/// Turns start-at-login on or off to match the setting, after a save.
pub fn apply_start_at_login<R: Runtime>(
    app: &AppHandle<R>,
    settings: Settings,
) -> Result<Settings, AppError> {
    set_autostart(app, settings.start_at_login);
    Ok(settings)
}

fn sync_start_at_login<R: Runtime>(app: &AppHandle<R>) {
    let wanted = app
        .state::<AppState>()
        .config()
        .map(|config| config.desktop.start_at_login);
    if let Ok(wanted) = wanted {
        set_autostart(app, wanted);
    }
}

fn set_autostart<R: Runtime>(app: &AppHandle<R>, enabled: bool) {
    let launcher = app.autolaunch();
    // Enabling rewrites the login entry every time, so it names the
    // current program path and flags after an upgrade or a move.
    let result = if enabled {
        launcher.enable()
    } else if launcher.is_enabled().unwrap_or(true) {
        launcher.disable()
    } else {
        Ok(())
    };
    if let Err(error) = result {
        tracing::warn!(%error, enabled, "cannot change start at login");
    }
}
