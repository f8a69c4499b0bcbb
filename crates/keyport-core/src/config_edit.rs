//! Changing `config.toml` from a UI without losing what the user wrote.
//!
//! [`ConfigDocument`] edits the file with `toml_edit`, so comments, key
//! order, formatting and tables the UI does not know about stay as they
//! were. Every save first validates the edited text with
//! [`Config::parse`], so a change the proxy would reject is never written.

use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::config::{self, auth_fields, validate_provider_id, Config, ConfigError};
use crate::fsutil;
use crate::providers::{AuthStyle, ProviderRegistry};

/// A provider as the UI edits it: a base-URL override of a built-in
/// provider, or a custom provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    pub id: String,
    pub base_url: String,
    pub auth: AuthStyle,
}

/// The settings a UI changes as one form. Each field maps to one key of
/// `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsUpdate {
    pub port: u16,
    pub allowed_origins: Vec<String>,
    pub require_token: bool,
    pub auto_lock_minutes: u32,
    pub lock_on_screen_lock: bool,
    pub start_at_login: bool,
    pub retention_days: u32,
    pub max_rows: u64,
    pub capture_bodies: bool,
    pub body_capture_limit_kib: u64,
}

impl SettingsUpdate {
    /// Reads the form's values from `config`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            port: config.proxy.port,
            allowed_origins: config
                .proxy
                .allowed_origins
                .iter()
                .map(ToString::to_string)
                .collect(),
            require_token: config.proxy.require_token,
            auto_lock_minutes: config.desktop.auto_lock_minutes,
            lock_on_screen_lock: config.desktop.lock_on_screen_lock,
            start_at_login: config.desktop.start_at_login,
            retention_days: config.log.retention_days,
            max_rows: config.log.max_rows,
            capture_bodies: config.log.capture_bodies,
            body_capture_limit_kib: (config.log.body_capture_limit / 1024) as u64,
        }
    }
}

/// `config.toml` as an editable document.
#[derive(Debug, Clone)]
pub struct ConfigDocument {
    path: PathBuf,
    document: DocumentMut,
}

impl ConfigDocument {
    /// Reads `path`; a missing file is an empty document.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = config::read_text(path)?;
        let document = text
            .parse::<DocumentMut>()
            .map_err(|error| ConfigError::Parse {
                path: path.to_path_buf(),
                message: error.to_string().trim_end().to_string(),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            document,
        })
    }

    /// Returns the document's text as it would be saved.
    pub fn text(&self) -> String {
        self.document.to_string()
    }

    /// Validates the edited document and writes it atomically with
    /// owner-only permissions. Returns the configuration it now holds.
    pub fn save(&self) -> Result<Config, ConfigError> {
        let text = self.text();
        let config = Config::parse(&self.path, &text)?;
        fsutil::write_atomic(&self.path, text.as_bytes()).map_err(|source| ConfigError::Read {
            path: self.path.clone(),
            source,
        })?;
        Ok(config)
    }

    /// Writes a base-URL override for a built-in provider, or defines a
    /// custom provider. For a built-in provider, an auth style equal to
    /// the preset's is left out of the file, so a later Keyport release
    /// can change the preset.
    pub fn set_provider(&mut self, provider: &ProviderSettings) -> Result<(), ConfigError> {
        validate_provider_id(&provider.id).map_err(|message| self.invalid(message))?;
        let preset_auth = ProviderRegistry::builtin()
            .get(&provider.id)
            .map(|preset| preset.auth.clone());
        let id = provider.id.clone();
        let Some(table) = self.table(&["providers", &id]) else {
            return Err(self.invalid(format!("cannot create the table [providers.{id}]")));
        };
        set_value(table, "base_url", provider.base_url.trim_end_matches('/'));

        if preset_auth.as_ref() == Some(&provider.auth) {
            table.remove("auth");
            table.remove("auth_name");
            return Ok(());
        }
        let (style, name) = auth_fields(&provider.auth);
        set_value(table, "auth", style);
        match name {
            Some(name) => set_value(table, "auth_name", name),
            None => {
                table.remove("auth_name");
            }
        }
        Ok(())
    }

    /// Removes the `[providers.ID]` table: a built-in provider returns to
    /// its preset and a custom provider disappears. Returns false when the
    /// file had no such table.
    pub fn reset_provider(&mut self, id: &str) -> bool {
        let Some(providers) = self
            .document
            .get_mut("providers")
            .and_then(Item::as_table_like_mut)
        else {
            return false;
        };
        let removed = providers.remove(id).is_some();
        if providers.is_empty() {
            self.document.remove("providers");
        }
        removed
    }

    /// Applies the settings form. A key is written when its value differs
    /// from `current` or when the file already sets it, so saving an
    /// unchanged form adds nothing to the file.
    pub fn apply_settings(
        &mut self,
        current: &Config,
        update: &SettingsUpdate,
    ) -> Result<(), ConfigError> {
        let before = SettingsUpdate::from_config(current);
        let origins: Array = update.allowed_origins.iter().map(String::as_str).collect();
        let (new, old) = (update, &before);

        self.put("proxy", "port", i64::from(new.port), new.port != old.port)?;
        let origins_changed = new.allowed_origins != old.allowed_origins;
        self.put("proxy", "allowed_origins", origins, origins_changed)?;
        let changed = new.require_token != old.require_token;
        self.put("proxy", "require_token", new.require_token, changed)?;

        let minutes = new.auto_lock_minutes;
        let changed = minutes != old.auto_lock_minutes;
        self.put("desktop", "auto_lock_minutes", i64::from(minutes), changed)?;
        let changed = new.lock_on_screen_lock != old.lock_on_screen_lock;
        self.put(
            "desktop",
            "lock_on_screen_lock",
            new.lock_on_screen_lock,
            changed,
        )?;
        let changed = new.start_at_login != old.start_at_login;
        self.put("desktop", "start_at_login", new.start_at_login, changed)?;

        let days = new.retention_days;
        let changed = days != old.retention_days;
        self.put("log", "retention_days", i64::from(days), changed)?;
        let rows = saturating_i64(new.max_rows);
        self.put("log", "max_rows", rows, new.max_rows != old.max_rows)?;
        let changed = new.capture_bodies != old.capture_bodies;
        self.put("log", "capture_bodies", new.capture_bodies, changed)?;
        let limit = saturating_i64(new.body_capture_limit_kib);
        let changed = new.body_capture_limit_kib != old.body_capture_limit_kib;
        self.put("log", "body_capture_limit_kib", limit, changed)
    }

    /// Writes `table.key = value` when the value changed or the file
    /// already sets the key.
    fn put(
        &mut self,
        table: &str,
        key: &str,
        value: impl Into<Value>,
        changed: bool,
    ) -> Result<(), ConfigError> {
        let present = self
            .document
            .get(table)
            .and_then(|item| item.get(key))
            .is_some();
        if !(changed || present) {
            return Ok(());
        }
        let Some(target) = self.table(&[table]) else {
            return Err(self.invalid(format!("cannot create the table [{table}]")));
        };
        set_value(target, key, value);
        Ok(())
    }

    /// Returns the table at `path`, creating missing tables on the way and
    /// replacing a value or inline table of that name. Returns None only
    /// if toml_edit stops treating `Item::Table` as a table.
    fn table(&mut self, path: &[&str]) -> Option<&mut Table> {
        let mut table = self.document.as_table_mut();
        for name in path {
            let entry = table
                .entry(name)
                .or_insert_with(|| Item::Table(implicit_table()));
            if !entry.is_table() {
                // An inline table (`providers = { … }`) or a value: the
                // value check in `save` reports what was wrong with it.
                *entry = Item::Table(implicit_table());
            }
            table = entry.as_table_mut()?;
        }
        Some(table)
    }

    fn invalid(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            message,
        }
    }
}

/// A table that is only written as a header when it contains keys, so
/// `[providers]` does not appear above `[providers.azure]`.
fn implicit_table() -> Table {
    let mut table = Table::new();
    table.set_implicit(true);
    table
}

/// Sets `key` to `value`, keeping the comments around an existing value.
fn set_value(table: &mut Table, key: &str, value: impl Into<Value>) {
    let mut value = value.into();
    if let Some(existing) = table.get(key).and_then(Item::as_value) {
        *value.decor_mut() = existing.decor().clone();
    }
    table[key] = Item::Value(value);
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
