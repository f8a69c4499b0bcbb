//! The command logic, one plain function per command over [`AppState`].
//! `ipc.rs` wraps each in a one-line `#[tauri::command]`; tests call these
//! directly. No function here returns a provider key.

use std::collections::BTreeMap;
use std::time::Duration;

use keyport_core::config::Config;
use keyport_core::config_edit::{ConfigDocument, ProviderSettings, SettingsUpdate};
use keyport_core::providers::{self, AuthStyle as CoreAuth, Provider, ProviderRegistry};
use keyport_core::proxy::probe_key;
use keyport_core::secret::SecretString;
use keyport_core::tokens::{collect_pins, PinError, TokenStore};
use keyport_core::vault::{self, KeySelectError};

use crate::error::{AppError, AppErrorCode};
use crate::state::AppState;
use crate::types::{
    AppStatus, AuthStyle, CreatedToken, KeyPin, KeySummary, KeyTestResult, PasswordStrength,
    ProviderInfo, ProviderInput, SetOutcome, Settings, TokenInfo,
};

/// Maximum wait for a provider's model list in `key_test`.
const KEY_TEST_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn app_status(state: &AppState) -> AppStatus {
    let inner = state.lock_inner().await;
    state.status_of(&inner)
}

pub fn password_strength(password: String) -> PasswordStrength {
    let strength = keyport_core::password::password_strength(&SecretString::from(password), &[]);
    PasswordStrength {
        score: strength.score,
        acceptable: strength.acceptable,
        warning: strength.warning,
        suggestions: strength.suggestions,
    }
}

pub async fn vault_create(state: &AppState, password: String) -> Result<AppStatus, AppError> {
    let password = SecretString::from(password);
    let strength = keyport_core::password::password_strength(&password, &[]);
    if !strength.acceptable {
        return Err(AppError::invalid(
            "the password is too weak; use at least 16 characters or add words, digits and symbols",
        ));
    }
    let mut inner = state.lock_inner().await;
    if inner.vault.is_some() {
        return Err(AppError::new(
            AppErrorCode::VaultExists,
            "a vault is already open; lock it before creating another",
        ));
    }
    state.unlock(&mut inner, &password, true).await?;
    Ok(state.publish(&inner))
}

pub async fn vault_unlock(state: &AppState, password: String) -> Result<AppStatus, AppError> {
    let password = SecretString::from(password);
    let mut inner = state.lock_inner().await;
    state.unlock(&mut inner, &password, false).await?;
    Ok(state.publish(&inner))
}

pub async fn vault_lock(state: &AppState) -> AppStatus {
    let mut inner = state.lock_inner().await;
    state.lock_vault(&mut inner).await;
    state.publish(&inner)
}

pub async fn vault_change_password(
    state: &AppState,
    current: String,
    next: String,
) -> Result<(), AppError> {
    let current = SecretString::from(current);
    let next = SecretString::from(next);
    if !keyport_core::password::password_strength(&next, &[]).acceptable {
        return Err(AppError::invalid(
            "the new password is too weak; use at least 16 characters or add words, digits and symbols",
        ));
    }
    let mut inner = state.lock_inner().await;
    let dir = state.data_dir.clone();
    let vault = inner.vault.as_mut().ok_or_else(AppError::locked)?;
    tokio::task::block_in_place(|| {
        // A read-only open checks the current password, so an unlocked app
        // left alone does not let someone else change it.
        vault::Vault::open(&dir, &current, vault::Access::ReadOnly)?.lock();
        vault.change_password(&next)
    })?;
    Ok(())
}

pub async fn keys_list(state: &AppState) -> Result<Vec<KeySummary>, AppError> {
    let inner = state.lock_inner().await;
    let vault = inner.vault.as_ref().ok_or_else(AppError::locked)?;
    Ok(vault
        .list()
        .into_iter()
        .map(|summary| KeySummary {
            provider: summary.provider,
            label: summary.label,
            masked: summary.masked,
            created_at: summary.created_at.to_rfc3339(),
            updated_at: summary.updated_at.to_rfc3339(),
        })
        .collect())
}

fn label_arg(label: &str) -> Option<&str> {
    let label = label.trim();
    (!label.is_empty()).then_some(label)
}

pub async fn key_set(
    state: &AppState,
    provider: String,
    label: String,
    key: String,
) -> Result<SetOutcome, AppError> {
    let key = SecretString::from(key.trim().to_string());
    let config = state.config()?;
    if config.providers.get(&provider).is_none() {
        return Err(unknown_provider(&provider, &config.providers));
    }
    let mut inner = state.lock_inner().await;
    let vault = inner.vault.as_mut().ok_or_else(AppError::locked)?;
    let outcome = tokio::task::block_in_place(|| vault.set_key(&provider, label_arg(&label), key))?;
    state.refresh_proxy_keys(&inner);
    Ok(match outcome {
        vault::SetOutcome::Added => SetOutcome::Added,
        vault::SetOutcome::Replaced => SetOutcome::Replaced,
    })
}

pub async fn key_remove(state: &AppState, provider: String, label: String) -> Result<(), AppError> {
    let mut inner = state.lock_inner().await;
    let vault = inner.vault.as_mut().ok_or_else(AppError::locked)?;
    tokio::task::block_in_place(|| vault.remove_key(&provider, label_arg(&label)))?;
    state.refresh_proxy_keys(&inner);
    Ok(())
}

pub async fn key_test(
    state: &AppState,
    provider: String,
    label: String,
) -> Result<KeyTestResult, AppError> {
    let config = state.config()?;
    let target = config
        .providers
        .get(&provider)
        .ok_or_else(|| unknown_provider(&provider, &config.providers))?
        .clone();
    let key = if target.auth.needs_key() {
        let inner = state.lock_inner().await;
        let vault = inner.vault.as_ref().ok_or_else(AppError::locked)?;
        let keyring = vault.keyring();
        let key = keyring
            .select(&provider, label_arg(&label))
            .map_err(select_error)?
            .clone();
        Some(key)
    } else {
        None
    };
    let result = probe_key(&config.proxy, &target, key.as_ref(), KEY_TEST_TIMEOUT).await;
    Ok(KeyTestResult {
        ok: result.ok,
        status: result.status,
        latency_ms: u64::try_from(result.latency.as_millis()).unwrap_or(u64::MAX),
        message: result.message,
    })
}

fn select_error(error: KeySelectError) -> AppError {
    AppError::new(AppErrorCode::NotFound, error.to_string())
}

fn unknown_provider(id: &str, registry: &ProviderRegistry) -> AppError {
    AppError::new(
        AppErrorCode::NotFound,
        format!(
            "unknown provider {id:?}; known providers: {}",
            registry.ids_for_message()
        ),
    )
}

pub fn providers_list(state: &AppState) -> Result<Vec<ProviderInfo>, AppError> {
    let config = state.config()?;
    let presets = ProviderRegistry::builtin();
    Ok(config
        .providers
        .iter()
        .map(|provider| provider_info(provider, presets.get(&provider.id)))
        .collect())
}

fn provider_info(provider: &Provider, preset: Option<&Provider>) -> ProviderInfo {
    let (auth, auth_name) = match &provider.auth {
        CoreAuth::Bearer => (AuthStyle::Bearer, None),
        CoreAuth::Anthropic => (AuthStyle::Anthropic, None),
        CoreAuth::Header(name) => (AuthStyle::Header, Some(name.clone())),
        CoreAuth::Query(name) => (AuthStyle::Query, Some(name.clone())),
        CoreAuth::None => (AuthStyle::None, None),
    };
    ProviderInfo {
        id: provider.id.clone(),
        base_url: keyport_core::config::base_url_text(&provider.base_url),
        auth,
        auth_name,
        built_in: provider.builtin,
        overridden: preset.is_some_and(|preset| preset != provider),
        needs_key: provider.auth.needs_key(),
    }
}

fn core_auth(auth: AuthStyle, name: Option<&str>) -> Result<CoreAuth, AppError> {
    let name = name.map(str::trim).filter(|name| !name.is_empty());
    let named = |kind: &str| {
        name.map(|name| name.to_ascii_lowercase()).ok_or_else(|| {
            AppError::invalid(format!(
                "{kind} auth needs the name of the {kind} parameter that carries the key"
            ))
        })
    };
    Ok(match auth {
        AuthStyle::Bearer => CoreAuth::Bearer,
        AuthStyle::Anthropic => CoreAuth::Anthropic,
        AuthStyle::Header => CoreAuth::Header(named("header")?),
        AuthStyle::Query => CoreAuth::Query(named("query")?),
        AuthStyle::None => CoreAuth::None,
    })
}

pub async fn provider_save(
    state: &AppState,
    input: ProviderInput,
) -> Result<Vec<ProviderInfo>, AppError> {
    let settings = ProviderSettings {
        id: input.id.trim().to_string(),
        base_url: input.base_url.trim().to_string(),
        auth: core_auth(input.auth, input.auth_name.as_deref())?,
    };
    let mut document = ConfigDocument::load(&state.data_dir.config())?;
    document.set_provider(&settings)?;
    tokio::task::block_in_place(|| document.save())?;
    restart_if_serving(state).await;
    providers_list(state)
}

pub async fn provider_reset(state: &AppState, id: String) -> Result<Vec<ProviderInfo>, AppError> {
    let mut document = ConfigDocument::load(&state.data_dir.config())?;
    if !document.reset_provider(&id) {
        let what = if providers::is_builtin(&id) {
            "has no override"
        } else {
            "is not a custom provider"
        };
        return Err(AppError::new(
            AppErrorCode::NotFound,
            format!("provider {id:?} {what} in config.toml"),
        ));
    }
    tokio::task::block_in_place(|| document.save())?;
    restart_if_serving(state).await;
    providers_list(state)
}

/// Restarts a serving proxy so it routes with the new config.
async fn restart_if_serving(state: &AppState) {
    let mut inner = state.lock_inner().await;
    if inner.vault.is_some() {
        if let Err(error) = state.start_proxy(&mut inner).await {
            tracing::warn!(error = %error.message, "the proxy did not restart");
        }
        state.publish(&inner);
    }
}

pub fn tokens_list(state: &AppState) -> Result<Vec<TokenInfo>, AppError> {
    let store = TokenStore::load(&state.data_dir.tokens())?;
    Ok(store
        .list()
        .iter()
        .map(|record| TokenInfo {
            name: record.name.clone(),
            prefix: record.prefix.clone(),
            created_at: record.created_at.to_rfc3339(),
            keys: record
                .keys
                .iter()
                .map(|(provider, label)| KeyPin {
                    provider: provider.clone(),
                    label: label.clone(),
                })
                .collect(),
        })
        .collect())
}

/// Creates a client token whose requests use the pinned keys, if any.
pub fn token_create(
    state: &AppState,
    name: String,
    keys: Vec<KeyPin>,
) -> Result<CreatedToken, AppError> {
    use keyport_core::secret::ExposeSecret;

    let name = name.trim().to_string();
    let keys = checked_pins(&state.config()?, keys)?;
    let mut store = TokenStore::load(&state.data_dir.tokens())?;
    let token = store.create_pinned(&name, keys)?;
    let record = store
        .list()
        .iter()
        .find(|record| record.name == name)
        .ok_or_else(|| AppError::internal(format!("token {name:?} was not saved; try again")))?;
    Ok(CreatedToken {
        name: record.name.clone(),
        prefix: record.prefix.clone(),
        created_at: record.created_at.to_rfc3339(),
        token: token.expose_secret().to_string(),
    })
}

/// Checks that each pinned provider exists and takes a key, and collects
/// the pins. The token store checks the labels.
fn checked_pins(config: &Config, pins: Vec<KeyPin>) -> Result<BTreeMap<String, String>, AppError> {
    let pairs = pins.into_iter().map(|pin| (pin.provider, pin.label));
    collect_pins(&config.providers, pairs).map_err(|error| {
        let code = match error {
            PinError::UnknownProvider { .. } => AppErrorCode::NotFound,
            PinError::TakesNoKey { .. } | PinError::GivenTwice { .. } => AppErrorCode::InvalidInput,
        };
        AppError::new(code, error.to_string())
    })
}

/// Replaces every key pin of the token called `name`; an empty list
/// unpins it. A running proxy applies the change within about a second.
pub fn token_pin(state: &AppState, name: String, keys: Vec<KeyPin>) -> Result<(), AppError> {
    let keys = checked_pins(&state.config()?, keys)?;
    let mut store = TokenStore::load(&state.data_dir.tokens())?;
    store.update_pins(&name, |_| keys)?;
    Ok(())
}

pub fn token_revoke(state: &AppState, name: String) -> Result<(), AppError> {
    let mut store = TokenStore::load(&state.data_dir.tokens())?;
    store.revoke(&name)?;
    Ok(())
}

pub fn settings_get(state: &AppState) -> Result<Settings, AppError> {
    Ok(settings_of(&SettingsUpdate::from_config(&state.config()?)))
}

fn settings_of(update: &SettingsUpdate) -> Settings {
    Settings {
        port: update.port,
        allowed_origins: update.allowed_origins.clone(),
        require_token: update.require_token,
        auto_lock_minutes: update.auto_lock_minutes,
        lock_on_screen_lock: update.lock_on_screen_lock,
        start_at_login: update.start_at_login,
        retention_days: update.retention_days,
        max_rows: update.max_rows,
        capture_bodies: update.capture_bodies,
        body_capture_limit_kib: update.body_capture_limit_kib,
    }
}

/// Saves the settings. Restarts the proxy when a setting it reads changed
/// and reopens the request log when its settings changed.
pub async fn settings_save(state: &AppState, settings: Settings) -> Result<Settings, AppError> {
    let current = state.config()?;
    let update = SettingsUpdate {
        port: settings.port,
        allowed_origins: settings.allowed_origins,
        require_token: settings.require_token,
        auto_lock_minutes: settings.auto_lock_minutes,
        lock_on_screen_lock: settings.lock_on_screen_lock,
        start_at_login: settings.start_at_login,
        retention_days: settings.retention_days,
        max_rows: settings.max_rows,
        capture_bodies: settings.capture_bodies,
        body_capture_limit_kib: settings.body_capture_limit_kib,
    };
    let mut document = ConfigDocument::load(&state.data_dir.config())?;
    document.apply_settings(&current, &update)?;
    let saved = tokio::task::block_in_place(|| document.save())?;

    let proxy_changed = saved.proxy != current.proxy;
    let log_changed = saved.log != current.log;
    if proxy_changed || log_changed {
        let mut inner = state.lock_inner().await;
        if saved.proxy.port != current.proxy.port {
            inner.port_override = None;
        }
        // The proxy keeps the log open, so it stops before the log is replaced.
        state.stop_proxy(&mut inner).await;
        if log_changed {
            state.open_log()?;
        }
        if inner.vault.is_some() {
            state.start_proxy(&mut inner).await?;
        }
        state.publish(&inner);
    }
    Ok(settings_of(&SettingsUpdate::from_config(&saved)))
}

/// Restarts the proxy; `port` None uses the configured port and 0 any free one.
pub async fn proxy_restart(state: &AppState, port: Option<u16>) -> Result<AppStatus, AppError> {
    let mut inner = state.lock_inner().await;
    if inner.vault.is_none() {
        return Err(AppError::locked());
    }
    inner.port_override = port;
    state.start_proxy(&mut inner).await?;
    Ok(state.publish(&inner))
}

pub fn activity(state: &AppState) {
    state.touch();
}
