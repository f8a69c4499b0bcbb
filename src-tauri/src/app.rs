//! The Tauri application: plugins, the tray icon, window behaviour, and
//! the background tasks (auto-lock, screen-lock listener).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyport_core::paths::{DataDir, DATA_DIR_ENV};
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
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

/// Sends events to the webview and keeps the tray current.
struct TauriEvents(AppHandle);

impl EventSink for TauriEvents {
    fn status_changed(&self, status: &AppStatus) {
        if let Err(error) = self.0.emit("status-changed", status) {
            tracing::warn!(%error, "cannot send status-changed to the window");
        }
        // The tray changes run on the main thread later. Called from a
        // worker, menu calls wait for the main thread, which may itself be
        // waiting for the lock held around this call (quitting, say).
        let app = self.0.clone();
        let status = status.clone();
        let queued = self.0.run_on_main_thread(move || {
            if let Some(tray) = app.try_state::<Tray>() {
                tray.show(&app, &status);
            }
        });
        if let Err(error) = queued {
            tracing::debug!(%error, "cannot update the tray");
        }
    }

    fn request_logged(&self, row: &LogRow) {
        if let Err(error) = self.0.emit("request-logged", row) {
            tracing::debug!(%error, "cannot send request-logged to the window");
        }
    }
}

/// Returns the state line at the top of the tray menu.
pub fn status_line(status: &AppStatus) -> String {
    match (status.vault, status.proxy.state, &status.proxy.address) {
        (VaultState::Unlocked, ProxyRunState::Serving, Some(address)) => {
            format!("Serving on {address}")
        }
        (VaultState::Unlocked, ProxyRunState::Failed, _) => "Proxy stopped".to_string(),
        (VaultState::Unlocked, _, _) => "Unlocked".to_string(),
        (VaultState::Locked, _, _) => "Locked".to_string(),
        (VaultState::Missing, _, _) => "No vault yet".to_string(),
    }
}

/// Returns the tray tooltip for `status`. Tauri sets no tooltip on Linux,
/// so the menu's first line carries the same text there.
pub fn tooltip(status: &AppStatus) -> String {
    format!("Keyport: {}", status_line(status))
}

/// Returns `icon` in grey at half opacity, the tray icon while the vault
/// is locked.
pub fn locked_icon(icon: &Image<'_>) -> Image<'static> {
    let rgba: Vec<u8> = icon
        .rgba()
        .chunks_exact(4)
        .flat_map(|pixel| {
            let [red, green, blue, alpha] = [pixel[0], pixel[1], pixel[2], pixel[3]].map(u32::from);
            // ITU-R BT.601 luma weights, in percent.
            let grey = u8::try_from((red * 30 + green * 59 + blue * 11) / 100).unwrap_or(u8::MAX);
            let alpha = u8::try_from(alpha / 2).unwrap_or(u8::MAX);
            [grey, grey, grey, alpha]
        })
        .collect();
    Image::new_owned(rgba, icon.width(), icon.height())
}

/// The parts of the tray that follow the app's state.
struct Tray {
    status: MenuItem<tauri::Wry>,
    lock: MenuItem<tauri::Wry>,
    /// The app icon, shown while the vault is unlocked.
    unlocked_icon: Option<Image<'static>>,
    locked_icon: Option<Image<'static>>,
    /// Whether the icon now shown is the unlocked one, so the icon is set
    /// only when the vault's state changes.
    showing_unlocked: Mutex<Option<bool>>,
}

impl Tray {
    fn show(&self, app: &AppHandle, status: &AppStatus) {
        let unlocked = status.vault == VaultState::Unlocked;
        let _ = self.status.set_text(status_line(status));
        let _ = self.lock.set_enabled(unlocked);
        let Some(tray) = app.tray_by_id(TRAY_ID) else {
            return;
        };
        let _ = tray.set_tooltip(Some(tooltip(status)));

        let mut showing = self
            .showing_unlocked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *showing != Some(unlocked) {
            let icon = if unlocked {
                &self.unlocked_icon
            } else {
                &self.locked_icon
            };
            if let Err(error) = tray.set_icon(icon.clone()) {
                tracing::warn!(%error, unlocked, "failed to change the tray icon");
            }
            *showing = Some(unlocked);
        }
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
        ipc::token_pin,
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
            let status = tauri::async_runtime::block_on(crate::commands::app_status(
                &handle.state::<AppState>(),
            ));
            handle.state::<Tray>().show(&handle, &status);
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

/// Builds the tray icon and its menu: a state line, Open, Lock and Quit.
fn build_tray(app: &AppHandle) -> Result<(), tauri::Error> {
    let status = MenuItem::with_id(app, "status", "Keyport", false, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open", true, None::<&str>)?;
    let lock = MenuItem::with_id(app, "lock", "Lock", false, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&status, &separator, &open, &lock, &quit])?;
    let unlocked_icon = app
        .default_window_icon()
        .map(|icon| icon.clone().to_owned());
    let mut builder = TrayIconBuilder::with_id(TRAY_ID)
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
    if let Some(icon) = &unlocked_icon {
        builder = builder.icon(locked_icon(icon));
    }
    builder.build(app)?;
    app.manage(Tray {
        status,
        lock,
        locked_icon: unlocked_icon.as_ref().map(locked_icon),
        unlocked_icon,
        showing_unlocked: Mutex::new(Some(false)),
    });
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
