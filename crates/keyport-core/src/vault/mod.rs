//! The encrypted key vault: provider keys in a Stronghold snapshot, unlocked
//! with a password.
//!
//! A vault is two files in the data folder. `vault.stronghold` is a plain
//! iota_stronghold snapshot whose key comes from the password through
//! Argon2id. `vault.header.json` contains the Argon2id parameters, the salt
//! and a key check value that distinguishes a wrong password from a damaged
//! snapshot. Each snapshot opens only with the header written with it, so
//! backups must keep the two together. A third file, `vault.lock`, is the
//! write lock.
//!
//! This module owns those files and the keys in memory. It does not prompt
//! for passwords, pick keys for requests (the proxy does that through
//! [`KeyRing`]) or decide which providers exist.
//!
//! Every change is saved before the method returns. The snapshot is replaced
//! atomically, so a process killed during a save leaves the old or the new
//! contents. See docs/vault.md for the format and the measured costs.

mod error;
mod files;
mod follow;
mod header;
mod kdf;
mod keyring;
mod lock;
mod open;
mod record;
mod snapshot;
mod validate;

use std::fmt;
use std::fs;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use error::VaultError;
pub use follow::VaultFollower;
pub use keyring::{KeyRing, KeySelectError};
pub use snapshot::SNAPSHOT_WORK_FACTOR;
pub use validate::{check_key, validate_label, KeyProblem, DEFAULT_LABEL, MAX_KEY_BYTES};

use files::Presence;
use header::{prev_header_path, Header};
use kdf::{KdfParams, SnapshotKey};
use lock::WriteLock;
use record::{Entries, Entry, EntryId};
use validate::validate_provider;

use crate::fsutil::{ensure_private_dir, sync_dir};
use crate::paths::DataDir;
use crate::secret::{mask_key, ExposeSecret, SecretString};

/// Access mode of an open vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads the keys without taking the write lock, so it works while
    /// another process has the vault open for writing. Changes are rejected.
    ReadOnly,
    /// Takes the write lock for the lifetime of the [`Vault`].
    ReadWrite,
}

/// Result of [`Vault::set_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SetOutcome {
    Added,
    Replaced,
}

/// A stored key as shown to the user: the key itself only masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeySummary {
    pub provider: String,
    pub label: String,
    /// The key as [`mask_key`] shows it, for example `sk-…3xYz`.
    pub masked: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A key to store with [`Vault::set_keys`].
pub struct NewKey {
    pub provider: String,
    /// `None` stores the key under [`DEFAULT_LABEL`].
    pub label: Option<String>,
    pub key: SecretString,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("provider", &self.provider)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// An unlocked vault.
///
/// The keys and the snapshot key are zeroized when the vault is dropped or
/// [locked](Vault::lock). `Debug` shows providers and labels, never keys.
pub struct Vault {
    dir: DataDir,
    header: Header,
    snapshot_key: SnapshotKey,
    entries: Entries,
    /// Present exactly when the vault was opened with [`Access::ReadWrite`].
    write_lock: Option<WriteLock>,
}

impl Vault {
    /// Returns whether `dir` contains a vault header or snapshot, complete or
    /// not. Returns `true` if the files cannot be checked, so that callers
    /// deciding whether to create a vault never overwrite one.
    pub fn exists(dir: &DataDir) -> bool {
        Presence::check(dir).map_or(true, |presence| presence.header || presence.snapshot)
    }

    /// Creates an empty vault protected by `password` and opens it for
    /// writing. Creates the data folder with mode 0700 if needed and fails if
    /// a header or snapshot is already there.
    pub fn create(dir: &DataDir, password: &SecretString) -> Result<Self, VaultError> {
        check_password(password)?;
        ensure_private_dir(dir.root())
            .map_err(VaultError::io("create the data folder", dir.root()))?;
        let write_lock = WriteLock::acquire(dir)?;
        Presence::check(dir)?.require_none(dir)?;

        let kdf = KdfParams::generate();
        let keys = kdf.derive(password)?;
        let vault = Self {
            dir: dir.clone(),
            header: Header::new(kdf, &keys),
            snapshot_key: keys.snapshot_key,
            entries: Entries::new(),
            write_lock: Some(write_lock),
        };

        if let Err(error) = vault.write_new_files() {
            // Any snapshot present is the empty one written above, because the
            // lock is held and no snapshot existed before. It is useless
            // without its header.
            let _ = fs::remove_file(dir.snapshot());
            return Err(error);
        }
        Ok(vault)
    }

    /// Unlocks the vault in `dir` with `password`.
    ///
    /// A failed open leaves the header and snapshot untouched. With
    /// [`Access::ReadWrite`] it takes the write lock first, which creates
    /// `vault.lock` if it is missing. After a successful `ReadWrite` open it
    /// also finishes an interrupted password change and deletes temporary
    /// files that a killed save left behind.
    pub fn open(
        dir: &DataDir,
        password: &SecretString,
        access: Access,
    ) -> Result<Self, VaultError> {
        Presence::check(dir)?.require_both(dir)?;
        let write_lock = match access {
            Access::ReadOnly => None,
            Access::ReadWrite => Some(WriteLock::acquire(dir)?),
        };

        let unlocked = open::unlock(dir, password)?;
        if write_lock.is_some() {
            open::settle(dir, &unlocked)?;
            files::remove_stale_temp_files(dir)?;
            tighten_modes(dir);
        }
        Ok(Self {
            dir: dir.clone(),
            header: unlocked.header,
            snapshot_key: unlocked.keys.snapshot_key,
            entries: unlocked.entries,
            write_lock,
        })
    }

    pub fn access(&self) -> Access {
        if self.write_lock.is_some() {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        }
    }

    /// Stores `key` for `provider` under `label` (`default` if `None`),
    /// replacing any key with the same provider and label, and saves.
    pub fn set_key(
        &mut self,
        provider: &str,
        label: Option<&str>,
        key: SecretString,
    ) -> Result<SetOutcome, VaultError> {
        self.require_write()?;
        let mut entries = self.entries.clone();
        let outcome = stage_key(&mut entries, provider, label, key, Utc::now())?;
        self.save(entries)?;
        Ok(outcome)
    }

    /// Stores several keys with one save, each as [`Vault::set_key`] would.
    /// Every provider, label and key is validated before anything is
    /// written, so on any error the vault keeps its previous contents. A
    /// later key with the same provider and label replaces an earlier one in
    /// the same call. Returns one outcome per key, in order.
    pub fn set_keys(&mut self, keys: Vec<NewKey>) -> Result<Vec<SetOutcome>, VaultError> {
        self.require_write()?;
        let now = Utc::now();
        let mut entries = self.entries.clone();
        let outcomes = keys
            .into_iter()
            .map(|new| {
                stage_key(
                    &mut entries,
                    &new.provider,
                    new.label.as_deref(),
                    new.key,
                    now,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.save(entries)?;
        Ok(outcomes)
    }

    /// Deletes the key of `provider` under `label` (`default` if `None`) and
    /// saves.
    pub fn remove_key(&mut self, provider: &str, label: Option<&str>) -> Result<(), VaultError> {
        self.require_write()?;
        let id = entry_id(provider, label)?;
        let mut entries = self.entries.clone();
        if entries.remove(&id).is_none() {
            return Err(VaultError::KeyNotFound {
                provider: id.provider,
                label: id.label,
            });
        }
        self.save(entries)
    }

    /// Lists the stored keys, masked, sorted by provider and label.
    pub fn list(&self) -> Vec<KeySummary> {
        self.entries
            .iter()
            .map(|(id, entry)| KeySummary {
                provider: id.provider.clone(),
                label: id.label.clone(),
                masked: mask_key(entry.key.expose_secret()),
                created_at: entry.created_at,
                updated_at: entry.updated_at,
            })
            .collect()
    }

    /// Re-encrypts the vault under `new_password` with a new salt. Afterwards
    /// the old password no longer opens the vault.
    ///
    /// The writes are ordered so that a crash at any point leaves a vault
    /// that opens with the old or the new password (see the `open` module).
    pub fn change_password(&mut self, new_password: &SecretString) -> Result<(), VaultError> {
        self.require_write()?;
        check_password(new_password)?;
        let kdf = KdfParams::generate();
        let keys = kdf.derive(new_password)?;
        let new_header = Header::new(kdf, &keys);
        let header_path = self.dir.vault_header();
        let prev_path = prev_header_path(&self.dir);

        self.header.write(&prev_path)?;
        if let Err(error) = new_header.write(&header_path) {
            let _ = fs::remove_file(&prev_path);
            return Err(error);
        }
        if let Err(error) = snapshot::write(&self.dir.snapshot(), &keys.snapshot_key, &self.entries)
        {
            self.roll_back_header_change();
            return Err(error);
        }

        self.header = new_header;
        self.snapshot_key = keys.snapshot_key;
        files::finish_snapshot_write(&self.dir)?;
        fs::remove_file(&prev_path).map_err(VaultError::io(
            "remove the previous vault header",
            &prev_path,
        ))?;
        sync_dir(self.dir.root()).map_err(VaultError::io("sync the data folder", self.dir.root()))
    }

    /// Returns a copy of the keys for the proxy.
    pub fn keyring(&self) -> KeyRing {
        KeyRing::from_entries(&self.entries)
    }

    /// Zeroizes the keys and the snapshot key in memory and releases the
    /// write lock. Dropping the vault does the same, so this method only
    /// makes the intent visible at the call site.
    pub fn lock(self) {
        drop(self);
    }

    fn require_write(&self) -> Result<(), VaultError> {
        match self.access() {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(VaultError::ReadOnly),
        }
    }

    /// Writes `entries` to the snapshot and makes them the vault's contents.
    /// If the write fails, the snapshot and the contents in memory are
    /// unchanged. If only the permission change or folder sync after it
    /// fails, the new contents are in place and the error is still returned.
    fn save(&mut self, entries: Entries) -> Result<(), VaultError> {
        self.write_snapshot(&entries)?;
        self.entries = entries;
        files::finish_snapshot_write(&self.dir)
    }

    fn write_new_files(&self) -> Result<(), VaultError> {
        self.write_snapshot(&self.entries)?;
        files::finish_snapshot_write(&self.dir)?;
        self.header.write(&self.dir.vault_header())
    }

    fn write_snapshot(&self, entries: &Entries) -> Result<(), VaultError> {
        let result = snapshot::write(&self.dir.snapshot(), &self.snapshot_key, entries);
        if result.is_err() {
            let _ = files::remove_stale_temp_files(&self.dir);
        }
        result
    }

    /// Puts the current header back after a failed password change. If this
    /// fails too, `open` still finds the old header in the `.prev` file.
    fn roll_back_header_change(&self) {
        let _ = files::remove_stale_temp_files(&self.dir);
        if self.header.write(&self.dir.vault_header()).is_ok() {
            let _ = fs::remove_file(prev_header_path(&self.dir));
        }
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self
            .entries
            .keys()
            .map(|id| format!("{}/{}", id.provider, id.label))
            .collect();
        f.debug_struct("Vault")
            .field("dir", &self.dir.root())
            .field("access", &self.access())
            .field("keys", &ids)
            .finish_non_exhaustive()
    }
}

fn entry_id(provider: &str, label: Option<&str>) -> Result<EntryId, VaultError> {
    let label = label.unwrap_or(DEFAULT_LABEL);
    validate_provider(provider)?;
    validate_label(label)?;
    Ok(EntryId {
        provider: provider.to_owned(),
        label: label.to_owned(),
    })
}

/// Validates a key and puts it into `entries`, which are not saved yet.
fn stage_key(
    entries: &mut Entries,
    provider: &str,
    label: Option<&str>,
    key: SecretString,
    now: DateTime<Utc>,
) -> Result<SetOutcome, VaultError> {
    let id = entry_id(provider, label)?;
    check_key(key.expose_secret()).map_err(|problem| VaultError::InvalidKey {
        provider: id.provider.clone(),
        label: id.label.clone(),
        problem,
    })?;

    let outcome = match entries.get_mut(&id) {
        Some(entry) => {
            entry.key = key;
            entry.updated_at = now;
            SetOutcome::Replaced
        }
        None => {
            let entry = Entry {
                key,
                created_at: now,
                updated_at: now,
            };
            entries.insert(id, entry);
            SetOutcome::Added
        }
    };
    Ok(outcome)
}

fn check_password(password: &SecretString) -> Result<(), VaultError> {
    if password.expose_secret().is_empty() {
        Err(VaultError::EmptyPassword)
    } else {
        Ok(())
    }
}

/// Restricts the data folder and the vault files to the owner again, in
/// case a restore from backup or a copy loosened their permissions.
fn tighten_modes(dir: &DataDir) {
    let result = crate::fsutil::ensure_private_dir(dir.root())
        .and_then(|()| crate::fsutil::make_private(&dir.snapshot()))
        .and_then(|()| crate::fsutil::make_private(&dir.vault_header()));
    if let Err(error) = result {
        tracing::warn!(%error, folder = %dir.root().display(), "cannot restrict vault file permissions to the owner");
    }
}
