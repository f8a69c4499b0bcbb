//! The `#[tauri::command]` wrappers: one line each over [`crate::commands`]
//! and [`crate::logs`], so the logic stays testable without a window.
//! Commands that touch files are `async`, because Tauri runs synchronous
//! commands on the main thread, where they would stall the window.

use tauri::{AppHandle, Runtime, State};

use crate::commands;
use crate::error::AppError;
use crate::logs;
use crate::state::AppState;
use crate::types::{
    AppStatus, CreatedToken, ExportFormat, ExportResult, KeyPin, KeySummary, KeyTestResult,
    LogFilter, LogPage, LogTotals, PasswordStrength, ProviderInfo, ProviderInput, SetOutcome,
    Settings, TokenInfo,
};

type Reply<T> = Result<T, AppError>;

#[tauri::command]
pub async fn app_status(state: State<'_, AppState>) -> Reply<AppStatus> {
    Ok(commands::app_status(&state).await)
}

#[tauri::command]
pub fn password_strength(password: String) -> PasswordStrength {
    commands::password_strength(password)
}

#[tauri::command]
pub async fn vault_create(state: State<'_, AppState>, password: String) -> Reply<AppStatus> {
    commands::vault_create(&state, password).await
}

#[tauri::command]
pub async fn vault_unlock(state: State<'_, AppState>, password: String) -> Reply<AppStatus> {
    commands::vault_unlock(&state, password).await
}

#[tauri::command]
pub async fn vault_lock(state: State<'_, AppState>) -> Reply<AppStatus> {
    Ok(commands::vault_lock(&state).await)
}

#[tauri::command]
pub async fn vault_change_password(
    state: State<'_, AppState>,
    current: String,
    next: String,
) -> Reply<()> {
    commands::vault_change_password(&state, current, next).await
}

#[tauri::command]
pub async fn keys_list(state: State<'_, AppState>) -> Reply<Vec<KeySummary>> {
    commands::keys_list(&state).await
}

#[tauri::command]
pub async fn key_set(
    state: State<'_, AppState>,
    provider: String,
    label: String,
    key: String,
) -> Reply<SetOutcome> {
    commands::key_set(&state, provider, label, key).await
}

#[tauri::command]
pub async fn key_remove(state: State<'_, AppState>, provider: String, label: String) -> Reply<()> {
    commands::key_remove(&state, provider, label).await
}

#[tauri::command]
pub async fn key_test(
    state: State<'_, AppState>,
    provider: String,
    label: String,
) -> Reply<KeyTestResult> {
    commands::key_test(&state, provider, label).await
}

#[tauri::command]
pub async fn providers_list(state: State<'_, AppState>) -> Reply<Vec<ProviderInfo>> {
    commands::providers_list(&state)
}

#[tauri::command]
pub async fn provider_save(
    state: State<'_, AppState>,
    provider: ProviderInput,
) -> Reply<Vec<ProviderInfo>> {
    commands::provider_save(&state, provider).await
}

#[tauri::command]
pub async fn provider_reset(state: State<'_, AppState>, id: String) -> Reply<Vec<ProviderInfo>> {
    commands::provider_reset(&state, id).await
}

#[tauri::command]
pub async fn tokens_list(state: State<'_, AppState>) -> Reply<Vec<TokenInfo>> {
    commands::tokens_list(&state)
}

#[tauri::command]
pub async fn token_create(
    state: State<'_, AppState>,
    name: String,
    keys: Vec<KeyPin>,
) -> Reply<CreatedToken> {
    commands::token_create(&state, name, keys)
}

#[tauri::command]
pub async fn token_pin(state: State<'_, AppState>, name: String, keys: Vec<KeyPin>) -> Reply<()> {
    commands::token_pin(&state, name, keys)
}

#[tauri::command]
pub async fn token_revoke(state: State<'_, AppState>, name: String) -> Reply<()> {
    commands::token_revoke(&state, name)
}

#[tauri::command]
pub async fn logs_query(
    state: State<'_, AppState>,
    filter: LogFilter,
    cursor: Option<String>,
    limit: u32,
) -> Reply<LogPage> {
    logs::query(&state, &filter, cursor.as_deref(), limit)
}

#[tauri::command]
pub async fn logs_totals(state: State<'_, AppState>) -> Reply<LogTotals> {
    logs::totals(&state)
}

#[tauri::command]
pub async fn logs_export(
    state: State<'_, AppState>,
    format: ExportFormat,
    filter: LogFilter,
) -> Reply<ExportResult> {
    logs::export(&state, format, &filter)
}

#[tauri::command]
pub async fn settings_get(state: State<'_, AppState>) -> Reply<Settings> {
    commands::settings_get(&state)
}

#[tauri::command]
pub async fn settings_save<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    settings: Settings,
) -> Reply<Settings> {
    crate::app::apply_start_at_login(&app, commands::settings_save(&state, settings).await?)
}

#[tauri::command]
pub async fn proxy_restart(state: State<'_, AppState>, port: Option<u16>) -> Reply<AppStatus> {
    commands::proxy_restart(&state, port).await
}

#[tauri::command]
pub fn activity(state: State<'_, AppState>) {
    commands::activity(&state)
}
