//! Location of Keyport's data folder and the files inside it.
//!
//! The folder is the platform's standard app-data folder
//! (`~/.local/share/keyport` on Linux, `~/Library/Application Support/dev.keyport.Keyport`
//! on macOS, `%APPDATA%\keyport\Keyport\data` on Windows), unless the caller
//! passes one explicitly (the CLI's `--data-dir` and `KEYPORT_DATA_DIR`).

use std::path::{Path, PathBuf};

/// Environment variable that overrides the data folder.
pub const DATA_DIR_ENV: &str = "KEYPORT_DATA_DIR";

/// Error returned when no data folder can be determined.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot determine the platform's app-data folder (is HOME set?); pass --data-dir or set {DATA_DIR_ENV}"
)]
pub struct NoDataDir;

/// Paths of every file Keyport keeps in its data folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Uses `root` as the data folder.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Uses `explicit` if given, else the platform's app-data folder.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Self, NoDataDir> {
        if let Some(root) = explicit {
            return Ok(Self::new(root));
        }
        directories::ProjectDirs::from("dev", "keyport", "Keyport")
            .map(|dirs| Self::new(dirs.data_dir()))
            .ok_or(NoDataDir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the path of the encrypted Stronghold snapshot with the provider keys.
    pub fn snapshot(&self) -> PathBuf {
        self.root.join("vault.stronghold")
    }

    /// Returns the path of the vault header: key-derivation parameters and salt, no secrets.
    pub fn vault_header(&self) -> PathBuf {
        self.root.join("vault.header.json")
    }

    /// Returns the path of the lock file of the process that is changing the vault.
    pub fn vault_lock(&self) -> PathBuf {
        self.root.join("vault.lock")
    }

    /// Hashes and metadata of the client tokens.
    pub fn tokens(&self) -> PathBuf {
        self.root.join("tokens.json")
    }

    /// Returns the path of the user's configuration.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The SQLite database of proxied requests.
    pub fn request_log(&self) -> PathBuf {
        self.root.join("requests.sqlite3")
    }

    /// The user's additions and corrections to the shipped model prices.
    pub fn prices(&self) -> PathBuf {
        self.root.join("prices.toml")
    }
}
